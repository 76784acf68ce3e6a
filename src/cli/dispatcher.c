/* dispatcher.c: finds the test files, runs each in its own child process (at most `jobs` at
 * once), relays their events onto the bus, and cleans up after them even when they crash.
 *
 * Sections: children, signals, entry point.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "accel.h"
#include "cache_cmd.h"
#include "cachedir.h"
#include "cli.h"
#include "env.h"
#include "events.h"
#include "junit.h"
#include "pool_run.h"
#include "run_outputs.h"
#include "run_root.h"
#include "run_seed.h"
#include "run_verdict.h"
#include "run_summary.h"
#include "progress.h"
#include "test_files.h"
#include "image.h"
#include "netns.h"
#include "qemu.h"
#include "vm.h"

/* ---- children ---- */

typedef struct Child {
        uv_process_t proc;
        uv_pipe_t events;
        uv_pipe_t grant; /* its stdin: the pool's answer to its claim (pool_run.c) */
        size_t index;    /* its file's, and its id in the pool */
        ProtoReader reader;
        char *file;
        char *run_dir;
        bool saw_file_end;
        bool kept; /* it keeps its VMs (file.kept): we go on without it */
        bool exited;
        int closing; /* handles still to close */
        struct Dispatcher *d;
} Child;

typedef struct Dispatcher {
        uv_loop_t *loop;
        const CliOptions *o;
        const char *accel;
        /* What every runner is told on its command line ("" when none): found once here. */
        const char *qemu_version; /* QEMU's version line */
        const char *kvm_unusable; /* why KVM cannot run the kernel (--accel kvm) */
        const char *image_dir;    /* the default image's directory */
        const char *artifacts;    /* --artifacts DIR or Bazel's, or NULL */
        char **child_env;         /* environ + PROVIUM_HOST_NETNS, or NULL: environ */
        TestFiles files;
        size_t next;
        unsigned running;
        RunRoot run_root;
        uv_signal_t sigint, sigterm;
        bool interrupted;
        bool killing; /* a second signal: the runners were sent SIGKILL */
        PoolRun *pool;
        struct RunOutputs *outputs;
        char *kept_note; /* how to reach the kept runs, said before the last line */
        char self[4096];
        char modes[96]; /* the runners' MODES argument (file_runner.c) */
} Dispatcher;

/* rm -rf a runner's directory (cachedir's: it never follows a link out of it). */
static void rm_tree(const char *path)
{
        (void) cachedir_rm_rf(path);
}

static void child_free(Child *c)
{
        rm_tree(c->run_dir);
        proto_reader_done(&c->reader);
        free(c->file);
        free(c->run_dir);
        free(c);
}

static void start_next(Dispatcher *d);

static void on_child_handle_closed(uv_handle_t *h)
{
        Child *c = h->data;
        if (--c->closing > 0)
                return;
        Dispatcher *d = c->d;
        pool_run_release(d->pool, c->index);
        child_free(c);
        d->running--;
        start_next(d);
        if (d->running == 0 && (d->next >= d->files.n || d->interrupted))
                run_outputs_drain(d->outputs); /* the last file is done */
}

/* A runner that keeps its VMs after a failure: what to tell the person at the end. */
static void child_kept(Child *c, const msgpack_object *msg)
{
        char id[64], test[256], vms[1024], *note = NULL;
        proto_copy_str(msg, "id", id, sizeof id);
        proto_copy_str(msg, "failed_test", test, sizeof test);
        proto_copy_str(msg, "vms", vms, sizeof vms);
        const char *first_end = strchr(vms, ' ');
        int first_len = first_end ? (int) (first_end - vms) : (int) strlen(vms);
        if (asprintf(&note,
                     "%sprovium: kept %s's VMs (%s) after '%s' failed, as run %s:\n"
                     "  provium shell %s %.*s   a shell in a VM\n"
                     "  provium stop %s         stop them (provium ls lists kept runs)\n",
                     c->d->kept_note ? c->d->kept_note : "", c->file, vms, test, id, id, first_len,
                     vms, id) >= 0) {
                free(c->d->kept_note);
                c->d->kept_note = note;
        }
        c->kept = true;
}

static void child_events(Child *c)
{
        for (;;) {
                msgpack_object msg;
                int r = proto_reader_next(&c->reader, &msg);
                if (r <= 0)
                        return;
                const char *type;
                size_t tlen;
                char t[64];
                if (proto_get_bytes(&msg, "type", &type, &tlen) != 1 || tlen >= sizeof t)
                        continue;
                memcpy(t, type, tlen);
                t[tlen] = 0;
                if (strcmp(t, "file.end") == 0)
                        c->saw_file_end = true;
                if (strcmp(t, "file.kept") == 0)
                        child_kept(c, &msg);
                if (strcmp(t, "pool.request") == 0)
                        pool_run_request(c->d->pool, c->index, c->file, &msg,
                                         (uv_stream_t *) &c->grant);
                size_t len;
                const uint8_t *body = proto_reader_last_body(&c->reader, &len);
                events_forward(t, body, len);
        }
}

/* Reads what the runner wrote and the loop has not read yet (it has exited: its end of the
 * pipe is closed, so this ends at EOF), then handles it. */
static void drain_events(Child *c)
{
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *) &c->events, &fd) == 0) {
                for (;;) {
                        uint8_t *p = proto_reader_space(&c->reader, 65536);
                        ssize_t n = p ? read(fd, p, 65536) : 0;
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n <= 0)
                                break;
                        proto_reader_commit(&c->reader, (size_t) n);
                        child_events(c);
                }
        }
        child_events(c);
}

static void events_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        Child *c = h->data;
        uint8_t *p = proto_reader_space(&c->reader, 65536);
        *buf = uv_buf_init((char *) p, p ? 65536 : 0);
}

static void events_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        Child *c = s->data;
        if (n < 0) {
                uv_read_stop(s);
                return;
        }
        proto_reader_commit(&c->reader, (size_t) n);
        child_events(c);
        if (c->kept && !c->closing) { /* it lives on: its handles go, not the process */
                c->closing = 3;
                uv_close((uv_handle_t *) &c->proc, on_child_handle_closed);
                uv_close((uv_handle_t *) &c->events, on_child_handle_closed);
                uv_close((uv_handle_t *) &c->grant, on_child_handle_closed);
        }
}

/* A file that ended without reporting: one failure, on the terminal and in the JUnit report. */
static void file_crashed(const char *file, const char *why)
{
        reporter_file_crashed(file, why);
        run_summary_file_crashed(file, why);
        junit_file_crashed(file, why);
}

static void on_child_exit(uv_process_t *p, int64_t status, int term_signal)
{
        Child *c = p->data;
        /* Its last events may still be in the pipe, unread: the exit can be seen first. */
        drain_events(c);
        vm_local_sweep(p->pid); /* the cgroups of its local VMs, when it was killed */
        if (!c->saw_file_end) {
                char why[256];
                if (term_signal == SIGKILL && c->d->killing)
                        snprintf(why, sizeof why,
                                 "stopped at once by the run's second interrupt: its file "
                                 "runner and what it started were killed (SIGKILL)");
                else if (term_signal)
                        snprintf(why, sizeof why, "file runner was killed by signal %d (%s)",
                                 term_signal, strsignal(term_signal));
                else
                        snprintf(why, sizeof why,
                                 "file runner exited with status %ld before "
                                 "the file finished",
                                 (long) status);
                file_crashed(c->file, why);
        } else if (term_signal || (status != 0 && status != 1)) {
                /* Finished, but then crashed or was flagged by a sanitizer on the way out. */
                char why[256];
                snprintf(why, sizeof why, "file runner ended with %s %d after the file finished",
                         term_signal ? "signal" : "status",
                         term_signal ? term_signal : (int) status);
                file_crashed(c->file, why);
        }
        c->closing = 3;
        uv_close((uv_handle_t *) &c->proc, on_child_handle_closed);
        uv_close((uv_handle_t *) &c->events, on_child_handle_closed);
        uv_close((uv_handle_t *) &c->grant, on_child_handle_closed);
}

static int spawn_child(Dispatcher *d, const char *file, size_t index)
{
        Child *c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->d = d;
        c->file = strdup(file);
        if (asprintf(&c->run_dir, "%s/%zu", d->run_root.path, index) < 0)
                c->run_dir = NULL;
        if (!c->file || !c->run_dir || proto_reader_init(&c->reader) < 0 ||
            mkdir(c->run_dir, 0700) < 0) {
                int r = errno ? -errno : -ENOMEM;
                child_free(c);
                return r;
        }
        char tt[32], ot[32], bt[32];
        snprintf(tt, sizeof tt, "%g", d->o->test_timeout_s);
        snprintf(ot, sizeof ot, "%g", d->o->op_timeout_s);
        snprintf(bt, sizeof bt, "%g", d->o->boot_timeout_s);
        char claim[48];
        snprintf(claim, sizeof claim, "%llu,%u", (unsigned long long) d->o->claim_mb,
                 d->o->claim_cpus);
        char *args[15 + CLI_MAX_FILTERS + 1] = {d->self,
                                                "__run-file",
                                                c->file,
                                                c->run_dir,
                                                (char *) d->accel,
                                                tt,
                                                ot,
                                                bt,
                                                (char *) d->qemu_version,
                                                (char *) d->kvm_unusable,
                                                (char *) d->image_dir,
                                                claim,
                                                (char *) (d->artifacts ? d->artifacts : ""),
                                                (char *) d->o->vmm,
                                                d->modes};
        for (int i = 0; i < d->o->nfilters; i++)
                args[15 + i] = (char *) d->o->filters[i];
        c->index = index;
        uv_pipe_init(d->loop, &c->events, 0);
        c->events.data = c;
        uv_pipe_init(d->loop, &c->grant, 0);
        c->grant.data = c;
        uv_stdio_container_t stdio[5] = {
            {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *) &c->grant},
            {.flags = UV_INHERIT_FD, .data.fd = 1},
            {.flags = UV_INHERIT_FD, .data.fd = 2},
            {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *) &c->events},
            {.flags = UV_INHERIT_FD, .data.fd = 0}, /* provium debug: the terminal, fd 4 */
        };
        uv_process_options_t po = {
            .exit_cb = on_child_exit,
            .file = d->self,
            .args = args,
            .env = d->child_env,
            .stdio_count = d->o->debug ? 5 : 4,
            .stdio = stdio,
            /* a session of its own: a terminal's Ctrl-C reaches the dispatcher alone, which
             * interrupts the runner, whose QEMUs and builds then stop in order instead of
             * dying under their tests ("VM died" for "interrupted") */
            .flags = UV_PROCESS_DETACHED,
        };
        c->proc.data = c;
        int r = uv_spawn(d->loop, &c->proc, &po);
        if (r < 0) {
                c->closing = 3;
                d->running++; /* balanced in on_child_handle_closed */
                fprintf(stderr, "provium: %s: cannot start a runner: %s\n", file, uv_strerror(r));
                file_crashed(file, "cannot start a file runner");
                uv_close((uv_handle_t *) &c->proc, on_child_handle_closed);
                uv_close((uv_handle_t *) &c->events, on_child_handle_closed);
                uv_close((uv_handle_t *) &c->grant, on_child_handle_closed);
                return r;
        }
        d->running++;
        return uv_read_start((uv_stream_t *) &c->events, events_alloc, events_read);
}

/* Runners beyond -j that may start and wait for the pool: the pool needs their claims to pack
 * (and backfill) while the running files hold theirs. With -j 1 there is nothing to pack, and
 * the files run one after the other in their order, as a person reading the output expects. */
#define POOL_LOOKAHEAD 4

static void start_next(Dispatcher *d)
{
        unsigned most = d->o->jobs + (d->o->jobs > 1 ? POOL_LOOKAHEAD : 0);
        while (!d->interrupted && d->running < most && d->next < d->files.n) {
                size_t i = d->next++;
                (void) spawn_child(d, d->files.v[i], i);
        }
}

/* ---- signals ---- */

/* SIGKILL goes to the runner's whole process group (it leads one, UV_PROCESS_DETACHED): what a
 * test file started on the host (os.execute, io.popen) dies with it rather than being left. */
static void walk_kill(uv_handle_t *h, void *arg)
{
        int sig = *(int *) arg;
        if (h->type != UV_PROCESS || uv_is_closing(h))
                return;
        uv_process_t *p = (uv_process_t *) h;
        if (sig != SIGKILL || kill(-p->pid, SIGKILL) < 0)
                (void) uv_process_kill(p, sig);
}

/* The first signal interrupts the runners (SIGTERM: their tests end as skipped, their VMs are
 * stopped); a second one kills them (their QEMUs die with them, PDEATHSIG; the dispatcher
 * removes their run directories and what their local VMs left). */
static void on_signal(uv_signal_t *s, int signum)
{
        Dispatcher *d = s->data;
        int sig = d->interrupted ? SIGKILL : SIGTERM;
        d->killing = d->interrupted;
        if (d->interrupted)
                fprintf(stderr, "provium: second %s: stopping now\n", strsignal(signum));
        else {
                d->interrupted = true;
                pool_run_deny_all(d->pool, "the run was interrupted");
                fprintf(stderr,
                        "\nprovium: %s: finishing the running files (again to stop at once)\n",
                        strsignal(signum));
        }
        uv_walk(d->loop, walk_kill, &sig);
}

/* ---- entry point ---- */

static void close_walk(uv_handle_t *h, void *arg)
{
        if (!uv_is_closing(h))
                uv_close(h, NULL);
}

/* -k that selected nothing anywhere: said, naming the patterns, and a failed run. */
static bool say_no_match(const CliOptions *o)
{
        if (o->nfilters == 0 || reporter_total() > 0)
                return false;
        fprintf(stderr, "provium: no test matches");
        for (int i = 0; i < o->nfilters; i++)
                fprintf(stderr, " -k '%s'", o->filters[i]);
        fprintf(stderr, "\n");
        return true;
}

static void *ask_qemu_version(void *unused)
{
        static char err[512];

        return (void *) qemu_version(err, sizeof err);
}

/* The runners' environment: ours, and where the host's network namespace is (netns.h). */
static int child_env_init(Dispatcher *d)
{
        extern char **environ;
        char host[128];
        size_t n = 0;

        if (netns_host_env(host, sizeof host) < 0)
                return 0; /* the runners make do with their own host_fd */
        while (environ[n])
                n++;
        d->child_env = calloc(n + 2, sizeof *d->child_env);
        char *entry = strdup(host);
        if (!d->child_env || !entry) {
                free(entry);
                free(d->child_env);
                d->child_env = NULL;
                return -ENOMEM;
        }
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
                if (strncmp(environ[i], "PROVIUM_HOST_NETNS=", 19) != 0)
                        d->child_env[k++] = environ[i];
        d->child_env[k++] = entry;
        d->child_env[k] = NULL;
        return 0;
}

static void child_env_free(Dispatcher *d)
{
        if (!d->child_env)
                return;
        for (size_t i = 0; d->child_env[i]; i++)
                if (strncmp(d->child_env[i], "PROVIUM_HOST_NETNS=", 19) == 0)
                        free(d->child_env[i]);
        free(d->child_env);
        d->child_env = NULL;
}

int dispatcher_run(const CliOptions *o, char **paths, int npaths)
{
        Dispatcher d = {.o = o, .run_root.lock_fd = -1};
        ssize_t n = readlink("/proc/self/exe", d.self, sizeof d.self - 1);
        if (n < 0) {
                perror("provium: readlink /proc/self/exe");
                return 2;
        }
        d.self[n] = 0;
        uint64_t seed = o->seed_given ? o->seed : run_seed_draw();
        snprintf(d.modes, sizeof d.modes, "%s%s%sseed=%llu",
                 o->keep_on_failure ? "keep-on-failure," : "", o->keep_always ? "keep-always," : "",
                 o->debug ? "debug," : "", (unsigned long long) seed);
        if (test_files_find(&d.files, o, paths, npaths) < 0) {
                test_files_free(&d.files);
                return 2;
        }
        RunOutputs outputs;
        if (run_outputs_open(&outputs, o) < 0) {
                run_outputs_close(&outputs, false);
                test_files_free(&d.files);
                return 2;
        }
        d.artifacts = outputs.artifacts;
        d.outputs = &outputs;
        reporter_start(o->verbose, o->tap);
        run_verdict_start();
        run_summary_start();
        progress_start(o->progress, o->tap, d.files.n);
        const char *junit_paths[2] = {o->junit, env_get()->xml_output_file};
        if (junit_paths[0] || junit_paths[1])
                junit_start();
        int status = 0;
        if (d.files.all == 0)
                fprintf(stderr, "provium: no *.test.lua files found\n");
        /* QEMU's version, once for the run and on a thread (it takes ~0.1 s) while the default
         * image is resolved and KVM probed: runners never run it on their loops. */
        pthread_t version_thread;
        bool asking =
            d.files.n > 0 && pthread_create(&version_thread, NULL, ask_qemu_version, NULL) == 0;
        /* Build the default image once, here, rather than in every runner at the same time;
         * the KVM probe boots its kernel. */
        char err[4096];
        Image *img = NULL;
        if (d.files.n > 0 && image_resolve("default", NULL, &img, err, sizeof err) < 0)
                fprintf(stderr, "provium: %s\n", err);
        AccelChoice accel = {.accel = "tcg"};
        if (d.files.n > 0 && accel_choose(o->accel, d.self, img, o->verbose, &accel) < 0)
                status = 2;
        d.accel = accel.accel;
        d.kvm_unusable = accel.kvm_unusable ? accel.why : "";
        char *image_dir = img ? strdup(img->dir) : NULL;
        d.image_dir = image_dir ? image_dir : "";
        img = image_free(img);
        void *qv = NULL;
        if (asking)
                (void) pthread_join(version_thread, &qv);
        else if (d.files.n > 0)
                qv = ask_qemu_version(NULL);
        d.qemu_version = qv ? qv : ""; /* a failure is a runner's to report, if it needs it */
        if (status == 0 && d.files.n > 0 && child_env_init(&d) < 0) {
                fprintf(stderr, "provium: %s\n", strerror(ENOMEM));
                status = 2;
        }

        vm_local_sweep_stale(); /* what local VMs of killed runs left */
        if (status == 0 && d.files.n > 0 && cache_trim_for_run() < 0)
                status = 2;
        if (status == 0 && run_root_create(&d.run_root) < 0)
                status = 2;
        if (status == 0 && d.files.n > 0 && !(d.pool = pool_run_new(o)))
                status = 2;
        if (status == 0 && d.files.n > 0)
                run_seed_announce(seed);
        run_summary_set_seed(seed);
        if (status == 0) {
                d.loop = uv_default_loop();
                uv_signal_init(d.loop, &d.sigint);
                uv_signal_init(d.loop, &d.sigterm);
                d.sigint.data = d.sigterm.data = &d;
                uv_signal_start(&d.sigint, on_signal, SIGINT);
                uv_signal_start(&d.sigterm, on_signal, SIGTERM);
                uv_unref((uv_handle_t *) &d.sigint);
                uv_unref((uv_handle_t *) &d.sigterm);
                progress_attach(d.loop);
                start_next(&d);
                if (d.running == 0)
                        run_outputs_drain(&outputs); /* no file to run */
                uv_run(d.loop, UV_RUN_DEFAULT);
                progress_stop();
                run_outputs_close_sockets(&outputs);
                uv_walk(d.loop, close_walk, NULL);
                uv_run(d.loop, UV_RUN_DEFAULT);
                (void) uv_loop_close(d.loop);
                run_root_remove(&d.run_root);
                bool no_match = !d.interrupted && say_no_match(o);
                if (!o->tap)
                        run_summary_print(!o->keep_on_failure && !o->keep_always && !o->debug);
                if (d.kept_note) {
                        fflush(stdout); /* the summary above it is on stdout */
                        fputs(d.kept_note, stderr);
                }
                unsigned failed = reporter_finish();
                status = run_verdict_finish(failed, no_match, d.interrupted);
                for (int i = 0; i < 2; i++) {
                        int r = junit_paths[i] ? junit_write(junit_paths[i]) : 0;
                        if (r < 0) {
                                fprintf(stderr, "provium: JUnit report %s: %s\n", junit_paths[i],
                                        strerror(-r));
                                status = status ? status : 1;
                        }
                }
        }
        junit_free();
        run_summary_free();
        /* The run went to its end (a premature exit is one that did not). */
        run_outputs_close(&outputs, d.loop && !d.interrupted);
        test_files_free(&d.files);
        pool_run_free(d.pool);
        free(image_dir);
        child_env_free(&d);
        free(d.kept_note);
        return status;
}
