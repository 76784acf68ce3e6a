/* file_runner.c: the child process that runs one test file: a Lua state, a libuv loop, and
 * events written as frames to fd 3 for the dispatcher.
 *
 * argv: __run-file FILE RUN_DIR ACCEL TEST_TIMEOUT OP_TIMEOUT BOOT_TIMEOUT QEMU_VERSION
 *       KVM_UNUSABLE DEFAULT_IMAGE_DIR CLAIM ARTIFACTS VMM MODES [PATTERN...] (the three ""
 *       when the dispatcher has none; CLAIM: the default claim, "MiB,CPUs"; ARTIFACTS: where
 *       failed tests' consoles and captures go, or ""; MODES: words separated by commas,
 *       "keep-on-failure", "keep-always", "debug" (the person's terminal is then fd 4), and
 *       "seed=N" (the run's seed); the -k patterns). The pool's grant comes on
 *       stdin (core/claim.c).
 * Or, for provium list: __list-file FILE CLAIM TEST_TIMEOUT [PATTERN...]: the chunk runs with
 *       VM operations refused, and list.file / list.test events come out instead of tests.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>
#include <uv.h>

#include "cli.h"
#include "env.h"
#include "event_pipe.h"
#include "events.h"
#include "keeper.h"
#include "lua_heap.h"
#include "netns.h"
#include "claim.h"
#include "provium.h"
#include "runtime.h"
#include "strfmt.h"

#define EVENTS_FD 3
#define DEBUG_FD  4 /* provium debug: the person's terminal */

/* The number of "key=N" in the comma-separated list, 0 without one. */
static uint64_t mode_value(const char *list, const char *key)
{
        size_t n = strlen(key);
        for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
                if (strncmp(p, key, n) == 0 && p[n] == '=')
                        return strtoull(p + n + 1, NULL, 10);
        return 0;
}

/* Whether the comma-separated list has word. */
static bool has_mode(const char *list, const char *word)
{
        size_t n = strlen(word);
        for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
                if (strncmp(p, word, n) == 0 && (p[n] == ',' || p[n] == 0))
                        return true;
        return false;
}

/* Signals: the handler only notes the signal (for Lua code that never yields) and wakes the
 * loop, whose callback then interrupts the running test. */
static uv_async_t signal_async;
static volatile sig_atomic_t signal_number;

static void on_signal(int signo)
{
        int saved = errno;
        signal_number = signo;
        runtime_note_signal(signo);
        (void) uv_async_send(&signal_async);
        errno = saved;
}

static void on_signal_async(uv_async_t *a)
{
        char why[64];
        snprintf(why, sizeof why, "interrupted by %s", strsignal(signal_number));
        runtime_interrupt(a->data, why);
}

static int install_signals(uv_loop_t *loop, Runtime *rt)
{
        int r = uv_async_init(loop, &signal_async, on_signal_async);
        if (r < 0)
                return r;
        signal_async.data = rt;
        uv_unref((uv_handle_t *) &signal_async);
        struct sigaction sa = {.sa_handler = on_signal};
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
                return -errno;
        return 0;
}

/* A file that does not load (syntax error, missing) is one failed pseudo-test; for
 * provium list, a list.file with the error. */
static void report_load_error(const char *msg, bool listing)
{
        EventBuilder ev;
        if (listing) {
                event_begin(&ev, "list.file", 4);
                proto_kv_uint(&ev.w, "memory_mb", 0);
                proto_kv_uint(&ev.w, "cpus", 0);
                proto_kv_bool(&ev.w, "declared", false);
                proto_kv_str(&ev.w, "error", msg ? msg : "cannot load");
                event_end(&ev);
                return;
        }
        event_begin(&ev, "file.start", 0);
        event_end(&ev);
        event_begin(&ev, "test.end", 3);
        proto_kv_str(&ev.w, "status", "fail");
        proto_kv_uint(&ev.w, "duration_ns", 0);
        proto_kv_str(&ev.w, "message", msg ? msg : "cannot load");
        event_end(&ev);
        event_begin(&ev, "file.end", 5);
        proto_kv_uint(&ev.w, "passed", 0);
        proto_kv_uint(&ev.w, "failed", 1);
        proto_kv_uint(&ev.w, "skipped", 0);
        proto_kv_uint(&ev.w, "peak_memory_mb", 0);
        proto_kv_uint(&ev.w, "peak_vcpus", 0);
        event_end(&ev);
}

static void close_walk(uv_handle_t *h, void *arg)
{
        if (!uv_is_closing(h))
                uv_close(h, NULL);
}

/* Recipes (images/NAME.lua) are looked up beside the test file first, then in each parent
 * directory up to the working directory, then where PROVIUM_IMAGE_PATH already says: env.h's
 * image_path, set here before any thread starts. */
static void add_image_path(ProviumEnv *env, const char *file)
{
        char *abs = realpath(file, NULL), cwd[PATH_MAX], *path = NULL;
        const char *old = env->image_path;

        if (!abs || !getcwd(cwd, sizeof cwd)) {
                free(abs);
                return;
        }
        size_t cwdlen = strlen(cwd);
        bool below = strncmp(abs, cwd, cwdlen) == 0 && abs[cwdlen] == '/';
        for (char *slash = strrchr(abs, '/'); slash && slash > abs; slash = strrchr(abs, '/')) {
                *slash = '\0';
                char *next = xasprintf("%s%s%s/images", path ? path : "", path ? ":" : "", abs);
                free(path);
                path = next;
                if (!path || !below || strlen(abs) <= cwdlen)
                        break;
        }
        if (path) {
                char *full = xasprintf("%s%s%s", path, old ? ":" : "", old ? old : "");
                if (!full || env_set(&env->image_path, full) < 0)
                        fprintf(stderr, "provium: %s: cannot set PROVIUM_IMAGE_PATH\n", file);
                free(full);
        }
        free(path);
        free(abs);
}

/* What both entry points do first: die with the dispatcher (our QEMU children die with us
 * the same way), events onto fd 3, a network namespace of our own, and the claim. */
static int runner_setup(const char *claim_arg, bool with_grant)
{
        pid_t parent = getppid();
        if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
                return -1;
        signal(SIGPIPE, SIG_IGN);
        event_pipe_open(EVENTS_FD);
        /* Before any thread exists: a namespace is per thread. Failing only disables networks,
         * whose calls then say why. */
        (void) netns_enter_private();
        unsigned long long claim_mb;
        unsigned claim_cpus;
        if (sscanf(claim_arg, "%llu,%u", &claim_mb, &claim_cpus) != 2)
                return -1;
        /* The pool's answer comes on stdin: keep it on a descriptor of our own (not inherited
         * by what tests start) and give stdin /dev/null, as a runner had before. */
        int grant_fd = with_grant ? fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3) : -1;
        int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if ((with_grant && grant_fd < 0) || null_fd < 0 || dup2(null_fd, STDIN_FILENO) < 0)
                return -1;
        (void) close(null_fd);
        claim_setup(claim_mb, claim_cpus, grant_fd);
        return 0;
}

int file_runner_lua_memory(size_t *ret_bytes)
{
        const char *v = env_get()->lua_memory;
        uint64_t mb = FILE_LUA_MEMORY_MB;
        if (v && (parse_size_mib(v, &mb) < 0 || mb < 16 || mb > (SIZE_MAX >> 21))) {
                fprintf(stderr,
                        "provium: PROVIUM_LUA_MEMORY: expected MiB or a size like \"8G\" (at "
                        "least 16M), got '%s'\n",
                        v);
                return -EINVAL;
        }
        *ret_bytes = (size_t) mb << 20;
        return 0;
}

/* Loads cfg->file into a new Lua state and runs (or lists) it on a loop of its own. */
static int run_file(const RuntimeConfig *cfg)
{
        events_set_scope(cfg->file, NULL);
        LuaHeap heap = {0};
        if (file_runner_lua_memory(&heap.max) < 0)
                return 1;
        lua_State *L = lua_heap_newstate(&heap);
        if (!L)
                return 1;
        if (bind_provium_open(L) < 0 || luaL_loadfilex(L, cfg->file, "t") != LUA_OK) {
                report_load_error(lua_tostring(L, -1), cfg->listing);
                lua_close(L);
                return 1;
        }
        uv_loop_t loop;
        if (uv_loop_init(&loop) < 0) {
                lua_close(L);
                return 1;
        }
        if (event_pipe_attach(&loop) < 0)
                fprintf(stderr, "provium: %s: events are written one at a time\n", cfg->file);
        Runtime *rt = runtime_new(&loop, L, cfg);
        if (rt && install_signals(&loop, rt) < 0)
                fprintf(stderr, "provium: %s: cannot handle signals\n", cfg->file);

        int failed = !rt ? 1 : cfg->listing ? runtime_list_file(rt) : runtime_run_file(rt);
        Keeper *keeper = NULL;
        bool keep = cfg->keep_always || (failed && cfg->keep_on_failure);
        if (rt && !cfg->listing && keep && (keeper = keeper_start(rt, &loop, cfg)))
                keeper_serve(keeper); /* until provium stop */
        runtime_free(rt);
        keeper_free(keeper); /* its directory, once the VMs in it have stopped */
        lua_close(L);
        event_pipe_detach();
        uv_walk(&loop, close_walk, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        (void) uv_loop_close(&loop);
        return failed ? 1 : 0;
}

int file_runner_main(int argc, char **argv)
{
        if (argc < 14) {
                fprintf(stderr, "provium: __run-file is internal to the dispatcher\n");
                return 2;
        }
        if (runner_setup(argv[10], true) < 0)
                return 1;
        /* What the dispatcher found once for the run ("" for nothing), and the recipe path:
         * set before any thread starts, read-only after. */
        ProviumEnv *env = env_setup();
        if (env_set(&env->qemu_version, argv[7]) < 0 || env_set(&env->kvm_unusable, argv[8]) < 0 ||
            env_set(&env->default_image_dir, argv[9]) < 0)
                return 1;
        add_image_path(env, argv[1]);
        RuntimeConfig cfg = {
            .file = argv[1],
            .run_dir = argv[2],
            .accel = argv[3],
            .test_timeout_s = atof(argv[4]),
            .op_timeout_s = atof(argv[5]),
            .boot_timeout_s = atof(argv[6]),
            .artifacts = argv[11][0] ? argv[11] : NULL,
            .vmm = argv[12],
            .keep_on_failure = has_mode(argv[13], "keep-on-failure"),
            .keep_always = has_mode(argv[13], "keep-always"),
            .debug_fd = has_mode(argv[13], "debug") ? DEBUG_FD : -1,
            .seed = mode_value(argv[13], "seed"),
            .filters = (const char **) argv + 14,
            .nfilters = argc - 14,
        };
        if (cfg.debug_fd >= 0) {
                cfg.test_timeout_s = 0; /* a person at the prompt takes the time they need */
                if (fcntl(cfg.debug_fd, F_SETFD, FD_CLOEXEC) < 0)
                        return 1;
        }
        return run_file(&cfg);
}

int file_lister_main(int argc, char **argv)
{
        if (argc < 4) {
                fprintf(stderr, "provium: __list-file is internal to provium list\n");
                return 2;
        }
        if (runner_setup(argv[2], false) < 0)
                return 1;
        RuntimeConfig cfg = {
            .file = argv[1],
            .run_dir = "/nonexistent", /* nothing is made while listing */
            .accel = "tcg",
            .test_timeout_s = atof(argv[3]),
            .op_timeout_s = 1,
            .boot_timeout_s = 1,
            .filters = (const char **) argv + 4,
            .nfilters = argc - 4,
            .listing = true,
            .debug_fd = -1,
        };
        return run_file(&cfg);
}
