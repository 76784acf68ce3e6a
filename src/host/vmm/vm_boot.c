/* vm_boot.c: a VM's boot, and its restore from a fixture: the image (resolved off the loop),
 * QEMU's start, its QMP and agent connections, loading a saved state, the boot timer, and the
 * end of it all in vm_boot_end. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "env.h"
#include "events.h"
#include "image_job.h"
#include "vm_internal.h"

/* A spare QEMU has no network cards and no disks: a saved VM with either starts its own (and
 * a spare started for its next clone would never be taken). */
bool vm_spare_can_serve(const Vm *vm)
{
        if (vm_is_local(vm))
                return false;
        for (int k = 0; k < VM_MAX_DISKS; k++)
                if (vm->disks[k].used)
                        return false;
        return vm->nnics == 0;
}

/* ---- the end of a boot ---- */

static void emit_boot(Vm *vm, int status, const char *msg)
{
        EventBuilder ev;
        event_begin(&ev, "vm.boot", 5);
        proto_kv_str(&ev.w, "vm", vm->name);
        proto_kv_str(&ev.w, "image", vm->image_name ? vm->image_name : "");
        proto_kv_bool(&ev.w, "ok", status == 0);
        proto_kv_uint(&ev.w, "duration_ns", events_mono_ns() - vm->boot_started_ns);
        proto_kv_str(&ev.w, "error", msg ? msg : "");
        event_end(&ev);
}

static uint64_t since(uint64_t start, uint64_t t)
{
        return t > start ? t - start : 0;
}

/* vm.restore: the whole duration and its phases (QEMU started, QMP up, guest running again),
 * all from the restore's start. */
static void emit_restore(Vm *vm, int status, const char *msg)
{
        uint64_t t0 = vm->restore_started_ns;
        EventBuilder ev;
        event_begin(&ev, "vm.restore", 10);
        proto_kv_str(&ev.w, "vm", vm->name);
        proto_kv_str(&ev.w, "name", vm->restore_label ? vm->restore_label : "");
        proto_kv_str(&ev.w, "spare", vm->spare_phase ? vm->spare_phase : "");
        proto_kv_bool(&ev.w, "ok", status == 0);
        proto_kv_uint(&ev.w, "duration_ns", since(t0, events_mono_ns()));
        proto_kv_uint(&ev.w, "spawned_ns", since(t0, vm->spawned_ns));
        proto_kv_uint(&ev.w, "qmp_ns", since(t0, vm->qmp_ns));
        proto_kv_uint(&ev.w, "running_ns", since(t0, vm->running_ns));
        proto_kv_uint(&ev.w, "answered_ns", since(t0, vm->answered_ns));
        proto_kv_str(&ev.w, "error", msg ? msg : "");
        event_end(&ev);
}

void vm_boot_end(Vm *vm, int status, const char *msg)
{
        VmBootFn cb = vm->boot_cb;
        void *data = vm->boot_data;
        bool restore = vm->restore_label != NULL; /* set by vm_open_incoming */
        vm->boot_cb = NULL;
        if (vm->boot_timer) {
                vm_close_handle(vm, (uv_handle_t *) vm->boot_timer);
                vm->boot_timer = NULL;
        }
        if (vm->spare) { /* a spare that failed only means no spare: no event, no waiter */
                if (status < 0)
                        vm_halt(vm);
                return;
        }
        if (status == 0)
                vm_enter(vm, PHASE_RUNNING);
        if (restore)
                emit_restore(vm, status, msg);
        else
                emit_boot(vm, status, msg);
        if (status == 0 && restore && vm->cfg.incoming && vm_spare_can_serve(vm))
                vm_prelaunch(vm); /* the next clone of this fixture finds its QEMU started */
        free(vm->restore_label);
        vm->restore_label = NULL;
        vm->spare_phase = NULL;
        if (status < 0)
                vm_halt(vm);
        if (cb)
                cb(vm, status, msg, data);
}

static void on_clock_set(AgentRequest *req, int status, const msgpack_object *reply)
{
        Vm *vm = req->data;
        bool ok = false;
        if (vm->phase != PHASE_LOADING)
                return; /* the restore ended meanwhile */
        if (status == 0 && proto_get_bool(reply, "ok", &ok) == 1 && ok)
                return vm_boot_end(vm, 0, NULL);
        char msg[512], why[256] = "";
        if (status < 0)
                snprintf(why, sizeof why, ": %s", strerror(-status));
        else if (reply) {
                const char *m = NULL;
                size_t n = 0;
                if (proto_get_bytes(reply, "msg", &m, &n) == 1)
                        snprintf(why, sizeof why, ": %.*s", (int) n, m);
        }
        snprintf(msg, sizeof msg, "vm %s: restore: setting the guest clock failed%s", vm->name,
                 why);
        vm_boot_end(vm, status < 0 ? status : -EIO, msg);
}

/* A VM restored from a fixture gets the host's time before it counts as ready. */
static int sync_clock(Vm *vm)
{
        struct timespec ts;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        vm->clock_req = (AgentRequest){.on_reply = on_clock_set, .data = vm};
        ProtoWriter *w = agent_request_begin(vm->agent, &vm->clock_req, "set_time", 1);
        proto_kv_int(w, "realtime_ns", (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec);
        return agent_request_send(vm->agent, &vm->clock_req, 10000);
}

void vm_restore_answered(Vm *vm)
{
        /* A clone of a fixture gets the host's time, unless its configuration fixed one. */
        bool clock = vm->cfg.incoming && !vm->cfg.initial_time;
        int r = clock ? sync_clock(vm) : 0;
        if (r < 0) {
                char msg[256];
                snprintf(msg, sizeof msg, "vm %s: restore: setting the guest clock: %s", vm->name,
                         strerror(-r));
                vm_boot_end(vm, r, msg);
        } else if (!clock) {
                vm_boot_end(vm, 0, NULL);
        }
}

static void on_agent_ready(AgentClient *c, int status, void *data)
{
        Vm *vm = data;
        if (vm->phase != PHASE_BOOTING && vm->phase != PHASE_LOADING)
                return; /* the boot ended meanwhile (a timeout, a stop) */
        vm->answered_ns = events_mono_ns();
        if (status == 0 && vm->phase == PHASE_LOADING)
                return vm->spare ? vm_spare_park(vm) : vm_restore_answered(vm);
        if (status == 0)
                return vm_boot_end(vm, 0, NULL);
        if (status == -ECONNRESET && vm->proc)
                return; /* QEMU closed the socket: its exit (or the boot timer) says why */
        char *tail = vm_console_tail(vm, 20);
        char *msg = NULL;
        if (asprintf(&msg, "vm %s: agent did not become ready: %s\n--- last console lines ---\n%s",
                     vm->name, strerror(-status), tail ? tail : "") < 0)
                msg = NULL;
        vm_boot_end(vm, status, msg ? msg : "agent did not become ready");
        free(msg);
        free(tail);
}

static bool on_agent_lost(AgentClient *c, int status, void *data)
{
        /* The port only closes when QEMU goes away: keep the operations in flight until its
         * exit callback can fail them with the reason and the console tail. */
        Vm *vm = data;
        return vm->phase != PHASE_STOPPING; /* paused or running: QEMU's exit will say why */
}

/* What a boot that timed out with an empty console means: the guest never reached init,
 * whose agent prints "provium-agent: starting" first (src/agent/init.c). */
static const char *no_sign_of_life(const Vm *vm)
{
        if (vm->phase != PHASE_BOOTING || vm->tail_total > 0)
                return NULL;
        if (vm->cfg.accel && strcmp(vm->cfg.accel, "kvm") == 0)
                return "the guest printed nothing on its console: its kernel did not reach init. "
                       "Under KVM that is the sign of a kernel that does not run under this "
                       "host's KVM: run with --accel tcg (or --accel auto, which probes it)";
        return "the guest printed nothing on its console: its kernel did not reach init "
               "(check the kernel, console=ttyS0 on its command line, and the boot timeout "
               "on a loaded host)";
}

static void on_boot_timeout(uv_timer_t *t)
{
        Vm *vm = t->data;
        const char *dead = no_sign_of_life(vm);
        char *tail = dead ? NULL : vm_console_tail(vm, 20);
        char *msg = NULL;
        double waited = (double) (events_mono_ns() - vm->boot_started_ns) / 1e9;
        if (dead &&
            asprintf(&msg, "vm %s: boot timed out after %.0f s: %s", vm->name, waited, dead) < 0)
                msg = NULL;
        if (!dead && asprintf(&msg,
                              "vm %s: boot timed out: the agent did not answer within %.0f s\n"
                              "--- last console lines ---\n%s",
                              vm->name, waited, tail ? tail : "") < 0)
                msg = NULL;
        vm_boot_end(vm, -ETIMEDOUT, msg ? msg : "boot timed out");
        free(msg);
        free(tail);
}

static void incoming_failed(Vm *vm, const char *what, int status, json_t *result)
{
        if (vm->phase != PHASE_RESTORING && vm->phase != PHASE_LOADING)
                return;
        char *msg = NULL;
        if (asprintf(&msg, "vm %s: restore: %s: %s", vm->name, what,
                     qmp_error_text(status, result)) < 0)
                msg = NULL;
        vm_boot_end(vm, -EIO, msg ? msg : "restore failed");
        free(msg);
}

static void on_incoming_started(void *data, int status, json_t *result)
{
        if (status < 0)
                incoming_failed(data, "migrate-incoming", status, result);
}

static void on_incoming_caps(void *data, int status, json_t *result)
{
        Vm *vm = data;
        if (status < 0)
                return incoming_failed(vm, "migrate-set-capabilities", status, result);
        json_t *args = json_pack("{s:s}", "uri", "fd:3");
        if (!args || qmp_execute(vm->qmp, "migrate-incoming", args, on_incoming_started, vm) < 0)
                incoming_failed(vm, "migrate-incoming", -ENOTCONN, NULL);
}

/* Saved RAM is not in the stream: x-ignore-shared must be set on both sides. */
json_t *vm_ignore_shared_args(int on)
{
        return json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "x-ignore-shared",
                         "state", on);
}

/* A restoring QEMU loads its state once QMP is up and the agent socket is connected, so the
 * guest's agent port never sees the host side closed (which would cost it a reconnect). */
static void maybe_start_incoming(Vm *vm)
{
        if (vm->phase != PHASE_RESTORING || !qmp_ready(vm->qmp) ||
            !agent_client_connected(vm->agent))
                return;
        vm_enter(vm, PHASE_LOADING);
        /* The capability must match the saving side's: off when the stream carries RAM. */
        json_t *args = vm_ignore_shared_args(vm->incoming_has_ram ? 0 : 1);
        if (!args ||
            qmp_execute(vm->qmp, "migrate-set-capabilities", args, on_incoming_caps, vm) < 0)
                incoming_failed(vm, "migrate-set-capabilities", -ENOTCONN, NULL);
}

static void on_qmp_ready(void *data, int status)
{
        /* QMP is needed by later lifecycle operations; a failure here shows up as a boot
         * failure only if QEMU itself dies, which the exit callback reports. */
        Vm *vm = data;
        if (status == 0) {
                vm->qmp_ns = events_mono_ns();
                maybe_start_incoming(vm);
        }
}

static void on_agent_socket(AgentClient *c, void *data)
{
        maybe_start_incoming(data);
}

static void on_qmp_event(void *data, const char *event, json_t *event_data)
{
        Vm *vm = data;
        if (strcmp(event, "RESUME") == 0)
                vm->running_ns = events_mono_ns();
        vm_disk_qmp_event(vm, event, event_data);
        EventBuilder ev;
        event_begin(&ev, "vm.qmp_event", 2);
        proto_kv_str(&ev.w, "vm", vm->name);
        proto_kv_str(&ev.w, "event", event);
        event_end(&ev);
}

void vm_emit_spawn(Vm *vm, const VmConfig *cfg, int pid, char *const *argv)
{
        EventBuilder ev;
        vm->qemu_pid = pid;
        event_begin(&ev, "vm.spawn", argv ? 6 : 5);
        proto_kv_str(&ev.w, "vm", vm->name);
        proto_kv_str(&ev.w, "vmm", vm->local ? "local" : "qemu");
        proto_kv_int(&ev.w, "pid", pid);
        proto_kv_str(&ev.w, "accel", cfg->accel ? cfg->accel : "tcg");
        proto_kv_str(&ev.w, "image", vm->image_name ? vm->image_name : "");
        if (argv) {
                /* QEMU's own, after `provium __qemu PID` (vm_argv.c); a local VM's whole, from
                 * provium-vm (or provium) __local-vm PPID on */
                if (!vm_is_local(vm))
                        argv += 3;
                uint32_t n = 0;
                while (argv[n])
                        n++;
                proto_key(&ev.w, "argv");
                msgpack_pack_array(&ev.w.pk, n);
                for (uint32_t i = 0; i < n; i++)
                        proto_pack_str(&ev.w, argv[i]);
        }
        event_end(&ev);
}

static int init_pipe(Vm *vm, uv_pipe_t **ret)
{
        uv_pipe_t *p = calloc(1, sizeof *p);
        if (!p)
                return -ENOMEM;
        int r = uv_pipe_init(vm->loop, p, 0);
        if (r < 0) {
                free(p);
                return r;
        }
        p->data = vm;
        vm->handles_open++;
        *ret = p;
        return 0;
}

int vm_spawn_qemu(Vm *vm, char **argv)
{
        int r = init_pipe(vm, &vm->out);
        if (r == 0)
                r = init_pipe(vm, &vm->err);
        if (r == 0)
                r = init_pipe(vm, &vm->in);
        if (r < 0)
                return r;
        uv_stdio_container_t stdio[4] = {
            {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *) vm->in},
            {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *) vm->out},
            {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *) vm->err},
            {.flags = UV_INHERIT_FD, .data.fd = vm->incoming_fd}, /* fd 3: the saved state */
        };
        uv_process_options_t o = {
            .exit_cb = vm_on_qemu_exit,
            .file = argv[0],
            .args = argv,
            .stdio_count = vm->incoming_fd >= 0 ? 4 : 3,
            .stdio = stdio,
        };
        vm->proc = calloc(1, sizeof *vm->proc);
        if (!vm->proc)
                return -ENOMEM;
        vm->proc->data = vm;
        r = uv_spawn(vm->loop, vm->proc, &o);
        vm->handles_open++;
        if (r < 0) {
                /* libuv requires closing a process handle even when spawn failed. */
                vm_close_handle(vm, (uv_handle_t *) vm->proc);
                vm->proc = NULL;
                return r;
        }
        vm_count_live(vm);
        return vm_console_start(vm);
}

int vm_start_qmp(Vm *vm, uint64_t timeout_ms)
{
        char path[4096];
        vm->qmp = qmp_new(vm->loop);
        if (!vm->qmp)
                return -ENOMEM;
        snprintf(path, sizeof path, "%s/qmp.sock", vm->dir);
        return qmp_connect(vm->qmp, path, timeout_ms, on_qmp_ready, on_qmp_event, vm);
}

int vm_start_agent(Vm *vm, uint64_t timeout_ms)
{
        char path[4096];
        vm->agent = agent_client_new(vm->loop, vm->name);
        if (!vm->agent)
                return -ENOMEM;
        snprintf(path, sizeof path, "%s/agent0.sock", vm->dir);
        if (vm->phase == PHASE_RESTORING)
                agent_client_on_connected(vm->agent, on_agent_socket);
        return agent_client_connect(vm->agent, path, timeout_ms, on_agent_ready, on_agent_lost, vm);
}

static int start_connections(Vm *vm, uint64_t timeout_ms)
{
        int r = vm_start_qmp(vm, timeout_ms);
        return r < 0 ? r : vm_start_agent(vm, timeout_ms);
}

int vm_start_boot_timer(Vm *vm, uint64_t timeout_ms)
{
        vm->boot_timer = calloc(1, sizeof *vm->boot_timer);
        if (!vm->boot_timer)
                return -ENOMEM;
        int r = uv_timer_init(vm->loop, vm->boot_timer);
        if (r < 0) {
                free(vm->boot_timer);
                vm->boot_timer = NULL;
                return r;
        }
        vm->boot_timer->data = vm;
        vm->handles_open++;
        return uv_timer_start(vm->boot_timer, on_boot_timeout, timeout_ms, 0);
}

/* Under --accel kvm on a host whose KVM did not boot the default kernel (the dispatcher's
 * probe, src/cli/accel.c), a boot of that kernel would hang until its timeout: fail now. A
 * user's own kernel is not the one probed, so it is tried. */
static int kvm_unusable(Vm *vm, char *err, size_t errlen)
{
        const char *why = env_get()->kvm_unusable; /* from the dispatcher */
        if (!why || !*why || !vm->cfg.accel || strcmp(vm->cfg.accel, "kvm") != 0 || vm->cfg.kernel)
                return 0;
        snprintf(err, errlen,
                 "vm %s: %s: --accel kvm, but KVM cannot run the image's kernel here "
                 "(%.400s): use --accel tcg, or --accel auto to fall back by itself",
                 vm->name, vm->incoming_fd >= 0 ? "restore" : "boot", why);
        return -ENODEV;
}

int vm_launch(Vm *vm, char *err, size_t errlen)
{
        if (vm_is_local(vm))
                return vm_local_launch(vm, err, errlen);
        Argv a = {0};
        bool restore = vm->incoming_fd >= 0;
        int r = kvm_unusable(vm, err, errlen);
        if (r < 0)
                return r;
        r = vm_build_argv(vm, &vm->cfg, vm->image, &a);
        uint64_t timeout_ms = vm->cfg.timeout_ms ? vm->cfg.timeout_ms : DEFAULT_BOOT_MS;
        if (r == 0)
                r = vm_spawn_qemu(vm, a.v);
        if (vm->incoming_fd >= 0) { /* QEMU has its own copy now */
                (void) close(vm->incoming_fd);
                vm->incoming_fd = -1;
        }
        if (r == 0) {
                vm_enter(vm, restore ? PHASE_RESTORING : PHASE_BOOTING);
                vm->spawned_ns = events_mono_ns();
                vm->qmp_ns = vm->running_ns = vm->answered_ns = 0;
                vm_emit_spawn(vm, &vm->cfg, vm->proc->pid, a.v);
                r = start_connections(vm, timeout_ms);
        }
        if (r == 0)
                r = vm_start_boot_timer(vm, timeout_ms);
        if (r < 0) {
                snprintf(err, errlen, "vm %s: %s: starting %s: %s", vm->name,
                         restore ? "restore" : "boot", a.v ? a.v[3] : "qemu", strerror(-r));
                if (vm->proc)
                        vm_halt(vm);
        }
        vm_argv_free(&a);
        return r;
}

int vm_set_ram(Vm *vm, const char *path, bool shared)
{
        char *p = NULL;
        if (path)
                p = strdup(path);
        else if (asprintf(&p, "%s/ram", vm->dir) < 0)
                p = NULL;
        if (!p)
                return -ENOMEM;
        free(vm->ram_path);
        vm->ram_path = p;
        vm->ram_shared = shared;
        return 0;
}

/* Opens the saved state QEMU will load (handed over as its fd 3). */
int vm_open_incoming(Vm *vm, const char *path, const char *label, char *err, size_t errlen)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                int e = errno;
                snprintf(err, errlen, "vm %s: restore %s: open %s: %s", vm->name, label, path,
                         strerror(e));
                return -e;
        }
        free(vm->restore_label);
        vm->restore_label = strdup(label);
        vm->incoming_fd = fd;
        vm->restore_started_ns = events_mono_ns();
        return 0;
}

/* ---- boot: the image, then QEMU ---- */

static void emit_image(const char *image, const Image *img, int r, const char *err,
                       uint64_t duration_ns)
{
        EventBuilder ev;
        event_begin(&ev, "image.resolve", 7);
        proto_kv_str(&ev.w, "image", image);
        proto_kv_str(&ev.w, "key", img && img->key ? img->key : "");
        proto_kv_str(&ev.w, "dir", img ? img->dir : "");
        proto_kv_bool(&ev.w, "built", img && img->built);
        proto_kv_bool(&ev.w, "ok", r >= 0);
        proto_kv_str(&ev.w, "error", r >= 0 ? "" : err);
        proto_kv_uint(&ev.w, "duration_ns", duration_ns);
        event_end(&ev);
}

/* A fresh guest's RAM is a file on the run directory's file system (tmpfs, grown as the guest
 * touches its pages): were it to fill up, QEMU's next fault there would be a SIGBUS, so a boot
 * whose RAM does not fit in what is free now is refused. */
static int check_ram_room(Vm *vm, char *err, size_t errlen)
{
        char dir[1024];
        unsigned long long free_mb;
        if (vm->cfg.incoming || vm_ram_room(vm, dir, sizeof dir, &free_mb) < 0)
                return 0;
        unsigned long long need_mb = vm_config_memory_mb(&vm->cfg);
        if (free_mb >= need_mb)
                return 0;
        snprintf(err, errlen,
                 "vm %s: boot: its RAM file needs %llu MiB, and the file system of %s has %llu MiB "
                 "free (%s)",
                 vm->name, need_mb, dir, free_mb,
                 vm->cfg.ram_path ? "a fixture being built keeps it in the cache"
                                  : "$PROVIUM_RUN_DIR chooses where runs keep RAM files");
        return -ENOSPC;
}

/* The image is known: start QEMU (a spare's, for a fixture restore). */
static int boot_launch(Vm *vm, char *err, size_t errlen)
{
        const VmConfig *cfg = &vm->cfg;
        int r;

        /* The boot's time and timeout start now, not while the image was being built. */
        uv_update_time(vm->loop);
        vm->boot_started_ns = events_mono_ns();
        vm->image_name = strdup(vm->image->name ? vm->image->name : cfg->image);
        if (mkdir(vm->dir, 0700) < 0 && errno != EEXIST) {
                r = -errno;
                snprintf(err, errlen, "vm %s: boot: mkdir %s: %s", vm->name, vm->dir,
                         strerror(errno));
                return r;
        }
        if (!vm->image_name || vm_set_ram(vm, cfg->ram_path, cfg->incoming == NULL) < 0) {
                snprintf(err, errlen, "vm %s: boot: out of memory", vm->name);
                return -ENOMEM;
        }
        if ((r = check_ram_room(vm, err, errlen)) < 0)
                return r;
        vm->nworkers = cfg->workers < 0 ? 4 : cfg->workers;
        if (vm->nworkers > VM_MAX_WORKERS)
                vm->nworkers = VM_MAX_WORKERS;
        vm->incoming_has_ram = false;
        Vm *spare = cfg->incoming && vm_spare_can_serve(vm) ? vm_take_spare(cfg) : NULL;
        if (spare)
                return vm_adopt_spare(vm, spare, err, errlen);
        if (cfg->incoming &&
            (r = vm_open_incoming(vm, cfg->incoming, cfg->incoming, err, errlen)) < 0)
                return r;
        return vm_launch(vm, err, errlen);
}

/* The image is resolved (image_job.c: a recipe's first use builds it, off the loop): boot. */
static void on_image(void *data, Image *img, int r, const char *err, uint64_t duration_ns)
{
        Vm *vm = data;
        char msg[4096];

        vm->resolving = NULL;
        emit_image(vm->cfg.image ? vm->cfg.image : "default", img, r, err, duration_ns);
        if (r < 0) {
                /* The default image is the harness's own: not having it is the host's fault. */
                if (!vm->cfg.image || strcmp(vm->cfg.image, "default") == 0)
                        events_infra_error("image", err);
                vm_boot_end(vm, r, err);
                return;
        }
        vm->image = img;
        r = boot_launch(vm, msg, sizeof msg);
        if (r < 0)
                vm_boot_end(vm, r, msg);
}

int vm_boot(Vm *vm, const VmConfig *cfg, VmBootFn cb, void *data, char *err, size_t errlen)
{
        if (vm->phase != PHASE_DEFINED) {
                snprintf(err, errlen, "vm %s: boot: already %s", vm->name,
                         vm->phase == PHASE_RESOLVING ? "booting" : vm_state_name(vm_state(vm)));
                return -EALREADY;
        }
        vm->boot_started_ns = events_mono_ns();
        if (vm_config_copy(&vm->cfg, cfg) < 0) {
                snprintf(err, errlen, "vm %s: boot: out of memory", vm->name);
                return -ENOMEM;
        }
        ImageOptions io = {.kernel = cfg->kernel, .initrd = cfg->initrd};
        int r = 0;
        vm->resolving =
            image_job_start(vm->loop, cfg->image ? cfg->image : "default", &io, on_image, vm, &r);
        if (!vm->resolving) {
                snprintf(err, errlen, "vm %s: boot: %s", vm->name,
                         r == -ENOMEM ? strerror(ENOMEM) : uv_strerror(r));
                return r;
        }
        vm->boot_cb = cb;
        vm->boot_data = data;
        vm_enter(vm, PHASE_RESOLVING);
        return 0;
}
