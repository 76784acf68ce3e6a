/* env.h: the environment, read once: main calls env_init() before any thread starts, fills
 * in what its parent handed it (env_setup), and from then on every module reads the one
 * record (env_get), which nobody changes. Nothing calls getenv or setenv after that.
 *
 * A file runner learns from its dispatcher, on its command line (dispatcher.c, file_runner.c),
 * what the dispatcher found once for the whole run: QEMU's version, why KVM cannot be used,
 * the default image's directory. */
#pragma once

#include <stdbool.h>

typedef struct ProviumEnv {
        union {
                /* From the environment, in the order of env.c's names: */
                struct {
                        const char *xdg_cache_home; /* XDG_CACHE_HOME: the cache is below */
                        const char *home;           /* HOME, else the cache is in ~/.cache */
                        const char *source_dir; /* PROVIUM_SOURCE_DIR: the build scripts' tree */
                        const char *agent;      /* PROVIUM_AGENT: the provium-agent binary */
                        const char *qemu;       /* PROVIUM_QEMU: the QEMU program (qemu.c) */
                        const char *path;       /* PATH, where qemu.c looks it up */
                        const char *kvm_device; /* PROVIUM_KVM_DEVICE, else /dev/kvm */
                        const char *kvm_probe_timeout; /* PROVIUM_KVM_PROBE_TIMEOUT, seconds */
                        const char *run_dir;           /* PROVIUM_RUN_DIR: runners' directories */
                        const char *tmpdir;            /* TMPDIR */
                        const char *image_path;        /* PROVIUM_IMAGE_PATH: recipe directories,
                                                        * ':'-separated; a runner and `image
                                                        * build` put theirs first */
                        const char *host_netns;        /* PROVIUM_HOST_NETNS: the host's network
                                                        * namespace, as a dispatcher tells its
                                                        * runners and their children */
                        /* What CI engines set (docs/ci.md): */
                        const char *xml_output_file;        /* Bazel: where the JUnit report goes */
                        const char *test_total_shards;      /* Bazel: the shards... */
                        const char *test_shard_index;       /* ...and this one's, 0-based */
                        const char *test_shard_status_file; /* Bazel: touched when sharding */
                        const char *job_completion_index;   /* Kubernetes Indexed Job, 0-based */
                        const char *ci_node_index;          /* GitLab parallel:, 1-based... */
                        const char *ci_node_total;          /* ...of this many */
                        const char *undeclared_outputs_dir; /* Bazel: files to keep */
                        const char *premature_exit_file;    /* Bazel: there while running */
                        const char *events_queue;           /* PROVIUM_EVENTS_QUEUE: bytes a live
                                                             * events client may fall behind (tests) */
                        const char *qmp_timeout;            /* PROVIUM_QMP_TIMEOUT: ms QEMU has to
                                                             * answer a QMP command (tests) */
                        const char *term;                   /* TERM: "dumb" gets no status line */
                        const char *build_timeout;          /* PROVIUM_BUILD_TIMEOUT: seconds an
                                                             * image build script may take */
                        const char *lua_memory;             /* PROVIUM_LUA_MEMORY: MiB a test
                                                             * file's Lua may allocate */
                        const char *cache_max;              /* PROVIUM_CACHE_MAX: what the
                                                             * cache may hold (cache_trim.h) */
                        const char *agent_heartbeat;        /* PROVIUM_AGENT_HEARTBEAT: ms of an
                                                             * agent's silence probed (tests) */
                };
                const char *vars[28];
        };
        bool no_color; /* NO_COLOR is set */
        /* From the dispatcher, on a runner's command line (NULL when not known): */
        const char *qemu_version;      /* QEMU's version line (qemu_version) */
        const char *kvm_unusable;      /* why KVM cannot run the image's kernel (--accel kvm) */
        const char *default_image_dir; /* the default image's cache entry, resolved already */
} ProviumEnv;

/* Reads the environment into the record (strings are copied; what is unset or empty stays
 * NULL). Called by main first, before any thread starts; tests call it again after changing
 * their environment. Returns 0 or -ENOMEM. */
int env_init(void);

/* The record, for main (and a runner's set-up) to fill in before any thread starts. */
ProviumEnv *env_setup(void);

/* The record, read-only. Initialised on first use when main did not (unit tests). */
const ProviumEnv *env_get(void);

/* Sets *field to a copy of value (NULL or "" for none), replacing the old one; only while
 * setting up, before any thread starts. Returns 0 or -ENOMEM. */
int env_set(const char **field, const char *value);
