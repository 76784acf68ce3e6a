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

int env_init(void)
{
        static const struct {
                const char *name;
                size_t offset;
        } vars[] = {
            {"XDG_CACHE_HOME", offsetof(ProviumEnv, xdg_cache_home)},
            {"HOME", offsetof(ProviumEnv, home)},
            {"PROVIUM_SOURCE_DIR", offsetof(ProviumEnv, source_dir)},
            {"PROVIUM_AGENT", offsetof(ProviumEnv, agent)},
            {"PROVIUM_QEMU", offsetof(ProviumEnv, qemu)},
            {"PATH", offsetof(ProviumEnv, path)},
            {"PROVIUM_KVM_DEVICE", offsetof(ProviumEnv, kvm_device)},
            {"PROVIUM_KVM_PROBE_TIMEOUT", offsetof(ProviumEnv, kvm_probe_timeout)},
            {"PROVIUM_RUN_DIR", offsetof(ProviumEnv, run_dir)},
            {"TMPDIR", offsetof(ProviumEnv, tmpdir)},
            {"PROVIUM_IMAGE_PATH", offsetof(ProviumEnv, image_path)},
            {"PROVIUM_HOST_NETNS", offsetof(ProviumEnv, host_netns)},
        };
        int r = 0;

        for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
                const char **field = (const char **) ((char *) &env + vars[i].offset);
                if (env_set(field, getenv(vars[i].name)) < 0)
                        r = -ENOMEM;
        }
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
