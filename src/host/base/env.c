/* env.c: the environment, read once into one record (see env.h). */
#include "env.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static ProviumEnv env;
static bool env_ready;

int env_set(const char **field, const char *value)
{
        char *copy = NULL;

        if (value && *value && !(copy = strdup(value)))
                return -ENOMEM;
        free((char *) *field);
        *field = copy;
        return 0;
}

/* The variables behind ProviumEnv.vars, in its fields' order. */
static const char *const names[] = {"XDG_CACHE_HOME",
                                    "HOME",
                                    "PROVIUM_SOURCE_DIR",
                                    "PROVIUM_AGENT",
                                    "PROVIUM_QEMU",
                                    "PATH",
                                    "PROVIUM_KVM_DEVICE",
                                    "PROVIUM_KVM_PROBE_TIMEOUT",
                                    "PROVIUM_RUN_DIR",
                                    "TMPDIR",
                                    "PROVIUM_IMAGE_PATH",
                                    "PROVIUM_HOST_NETNS",
                                    "XML_OUTPUT_FILE",
                                    "TEST_TOTAL_SHARDS",
                                    "TEST_SHARD_INDEX",
                                    "TEST_SHARD_STATUS_FILE",
                                    "JOB_COMPLETION_INDEX",
                                    "CI_NODE_INDEX",
                                    "CI_NODE_TOTAL",
                                    "TEST_UNDECLARED_OUTPUTS_DIR",
                                    "TEST_PREMATURE_EXIT_FILE",
                                    "PROVIUM_EVENTS_QUEUE",
                                    "PROVIUM_QMP_TIMEOUT",
                                    "TERM",
                                    "PROVIUM_BUILD_TIMEOUT",
                                    "PROVIUM_LUA_MEMORY",
                                    "PROVIUM_CACHE_MAX",
                                    "PROVIUM_AGENT_HEARTBEAT"};
_Static_assert(sizeof names / sizeof names[0] == sizeof env.vars / sizeof env.vars[0],
               "a name for each variable");
_Static_assert(offsetof(ProviumEnv, agent_heartbeat) == offsetof(ProviumEnv, vars[27]),
               "the fields and vars line up");

int env_init(void)
{
        int r = 0;

        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
                if (env_set(&env.vars[i], getenv(names[i])) < 0)
                        r = -ENOMEM;
        env.no_color = getenv("NO_COLOR") != NULL;
        env_ready = true;
        return r;
}

ProviumEnv *env_setup(void)
{
        if (!env_ready)
                (void) env_init();
        return &env;
}

const ProviumEnv *env_get(void)
{
        return env_setup();
}
