/* vm.c: a guest VM: QEMU launch, serial console capture, QMP and agent connections, exit.
 *
 * Sections: helpers, configuration, console, process exit, boot, boot: the image then QEMU,
 * restore, lifecycle, network cards, stop and free, exec wrapper.
 */
#include "vm.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "image_job.h"
#include "vm_internal.h"

/* ---- helpers ---- */

static void on_handle_closed(uv_handle_t *h)
{
        Vm *vm = h->data;
        free(h);
        if (vm && --vm->handles_open == 0 && vm->stop_cb) {
                void (*cb)(Vm *, void *) = vm->stop_cb;
                vm->stop_cb = NULL;
                cb(vm, vm->stop_data);
        }
}

void vm_close_handle(Vm *vm, uv_handle_t *h)
{
        if (h && !uv_is_closing(h))
                uv_close(h, on_handle_closed);
}

const char *vm_name(const Vm *vm)
{
        return vm->name;
}

VmState vm_state(const Vm *vm)
{
        return vm->state;
}

const char *vm_state_name(VmState s)
{
        static const char *const names[] = {"defined", "booting",  "running",
                                            "paused",  "stopping", "exited"};
        return s <= VM_EXITED ? names[s] : "?";
}

AgentClient *vm_agent(Vm *vm)
{
        return vm->agent;
}

const char *vm_death_reason(const Vm *vm)
{
        return vm->death;
}

void vm_on_death(Vm *vm, VmDeathFn cb, void *data)
{
        vm->death_cb = cb;
        vm->death_data = data;
}

Vm *vm_new(uv_loop_t *loop, const char *name, const char *run_dir)
{
        Vm *vm = calloc(1, sizeof *vm);
        if (!vm)
                return NULL;
        vm->loop = loop;
        vm->name = strdup(name);
        if (asprintf(&vm->dir, "%s/%s", run_dir, name) < 0)
                vm->dir = NULL;
        vm->console = malloc(4096);
        if (!vm->name || !vm->dir || !vm->console)
                return vm_free(vm);
        vm->state = VM_DEFINED;
        vm->incoming_fd = -1;
        return vm;
}

/* ---- configuration ---- */

static void config_clear(VmConfig *c)
{
        free((char *) c->image);
        free((char *) c->kernel);
        free((char *) c->initrd);
        free((char *) c->append);
        free((char *) c->accel);
        free((char *) c->initial_time);
        free((char *) c->ram_path);
        free((char *) c->incoming);
        *c = (VmConfig){0};
}

static int dup_opt(const char **dst, const char *src)
{
        *dst = NULL;
        if (src && !(*dst = strdup(src)))
                return -ENOMEM;
        return 0;
}

/* A deep copy of src (strings duplicated) into dst; dst is cleared on failure. */
int vm_config_copy(VmConfig *dst, const VmConfig *src)
{
        *dst = *src;
        int r = dup_opt(&dst->image, src->image);
        r = r ? r : dup_opt(&dst->kernel, src->kernel);
        r = r ? r : dup_opt(&dst->initrd, src->initrd);
        r = r ? r : dup_opt(&dst->append, src->append);
        r = r ? r : dup_opt(&dst->accel, src->accel);
        r = r ? r : dup_opt(&dst->initial_time, src->initial_time);
        r = r ? r : dup_opt(&dst->ram_path, src->ram_path);
        r = r ? r : dup_opt(&dst->incoming, src->incoming);
        if (r < 0)
                config_clear(dst);
        return r;
}

const char *vm_image_key(const Vm *vm)
{
        return vm->image ? vm->image->key : NULL;
}

const VmConfig *vm_config(const Vm *vm)
{
        return &vm->cfg;
}

/* ---- console ---- */

static void finish_exit(Vm *vm);
static void stop_pressing(Vm *vm);

static void console_append(Vm *vm, const char *p, size_t n)
{
        if (vm->console_len < CONSOLE_MAX) {
                size_t take = n < CONSOLE_MAX - vm->console_len ? n : CONSOLE_MAX - vm->console_len;
                size_t need = vm->console_len + take + 1;
                size_t cap = 4096;
                while (cap < need)
                        cap *= 2;
                char *c = realloc(vm->console, cap);
                if (c) {
                        vm->console = c;
                        memcpy(vm->console + vm->console_len, p, take);
                        vm->console_len += take;
                        vm->console[vm->console_len] = 0;
                }
        }
        for (size_t i = 0; i < n; i++)
                vm->tail[(vm->tail_total + i) % CONSOLE_TAIL] = p[i];
        vm->tail_total += n;
        if (vm->console_fn)
                vm->console_fn(vm->console_data, p, n);
}

const char *vm_console_log(const Vm *vm, size_t *ret_len)
{
        *ret_len = vm->console_len;
        return vm->console_len ? vm->console : "";
}

char *vm_console_tail(const Vm *vm, unsigned nlines)
{
        size_t n = vm->tail_total < CONSOLE_TAIL ? vm->tail_total : CONSOLE_TAIL;
        char *s = malloc(n + 1);
        if (!s)
                return NULL;
        size_t start = vm->tail_total - n;
        for (size_t i = 0; i < n; i++)
                s[i] = vm->tail[(start + i) % CONSOLE_TAIL];
        s[n] = 0;
        /* Drop a trailing newline, then walk back nlines line starts. */
        size_t end = n;
        while (end > 0 && (s[end - 1] == '\n' || s[end - 1] == '\r'))
                s[--end] = 0;
        size_t pos = end;
        for (unsigned l = 0; pos > 0; pos--)
                if (s[pos - 1] == '\n' && ++l == nlines)
                        break;
        memmove(s, s + pos, end - pos + 1);
        return s;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        static char scratch[65536];
        *buf = uv_buf_init(scratch, sizeof scratch);
}

static void console_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        Vm *vm = s->data;
        if (n > 0)
                console_append(vm, buf->base, (size_t) n);
        else if (n < 0) {
                uv_read_stop(s);
                vm->console_eof = true;
                if (vm->exit_pending)
                        finish_exit(vm);
        }
}

static void qemu_err_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
        Vm *vm = s->data;
        if (n > 0) {
                size_t room = QEMU_ERR_MAX - 1 - vm->qemu_err_len;
                size_t take = (size_t) n < room ? (size_t) n : room;
                memcpy(vm->qemu_err + vm->qemu_err_len, buf->base, take);
                vm->qemu_err_len += take;
                vm->qemu_err[vm->qemu_err_len] = 0;
        } else if (n < 0)
                uv_read_stop(s);
}

/* ---- process exit ---- */

static void emit_exit(Vm *vm, bool expected)
{
        EventBuilder ev;
        event_begin(&ev, "vm.exit", 4);
        proto_kv_str(&ev.w, "vm", vm->name);
        proto_kv_int(&ev.w, "status", vm->exit_status);
        proto_kv_int(&ev.w, "signal", vm->term_signal);
        proto_kv_bool(&ev.w, "expected", expected);
        event_end(&ev);
}

static void set_death(Vm *vm)
{
        char *tail = vm_console_tail(vm, 20);
        const char *what = vm->term_signal ? "was killed by signal" : "exited with status";
        long code = vm->term_signal ? vm->term_signal : (long) vm->exit_status;
        char *recent = vm_console_tail(vm, 200);
        bool panic = recent && strstr(recent, "Kernel panic");
        free(recent);
        free(vm->death);
        if (asprintf(&vm->death, "vm %s: QEMU %s %ld%s%s%s\n--- last console lines ---\n%s",
                     vm->name, what, code, panic ? " (guest kernel panic)" : "",
                     vm->qemu_err_len ? "; QEMU said: " : "", vm->qemu_err, tail ? tail : "") < 0)
                vm->death = NULL;
        free(tail);
}

static void boot_done(Vm *vm, int status, const char *msg);

/* Runs once QEMU has exited and its console pipe is drained (or closed by vm_stop). */
static void finish_restart(Vm *vm);

static void finish_exit(Vm *vm)
{
        if (vm->restarting)
                return finish_restart(vm);
        bool expected = vm->exit_expected;
        vm->exit_pending = false;
        set_death(vm);
        emit_exit(vm, expected);
        vm->qmp = qmp_free(vm->qmp);
        if (vm->agent)
                agent_client_shutdown(vm->agent, -ECONNRESET);
        for (int i = 1; i <= vm->nworkers; i++)
                if (vm->workers[i])
                        agent_client_shutdown(vm->workers[i], -ECONNRESET);
        if (vm->boot_cb)
                boot_done(vm, -ECHILD, vm->death);
        else if (!expected && vm->death_cb)
                vm->death_cb(vm, vm->death ? vm->death : "QEMU exited", vm->death_data);
        stop_pressing(vm);
        if (vm->console_fn) {
                vm->console_fn(vm->console_data, NULL, 0); /* the console ends here */
                vm->console_fn = NULL;
        }
        if (vm->exit_fn) {
                void (*fn)(Vm *, void *) = vm->exit_fn;
                vm->exit_fn = NULL;
                fn(vm, vm->exit_data);
        }
}

static void on_qemu_exit(uv_process_t *p, int64_t status, int term_signal)
{
        Vm *vm = p->data;
        vm->exit_expected = vm->state == VM_STOPPING || vm->exit_wanted;
        vm->exit_status = status;
        vm->term_signal = term_signal;
        vm->state = VM_EXITED;
        vm_close_handle(vm, (uv_handle_t *) vm->proc);
        vm->proc = NULL;
        /* What QEMU printed before dying may still sit in the console pipe: wait for EOF. */
        if (vm->out && !vm->console_eof)
                vm->exit_pending = true;
        else
                finish_exit(vm);
}

/* ---- boot ---- */

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
        event_begin(&ev, "vm.restore", 9);
        proto_kv_str(&ev.w, "vm", vm->name);
        proto_kv_str(&ev.w, "name", vm->restore_label ? vm->restore_label : "");
        proto_kv_bool(&ev.w, "ok", status == 0);
        proto_kv_uint(&ev.w, "duration_ns", since(t0, events_mono_ns()));
        proto_kv_uint(&ev.w, "spawned_ns", since(t0, vm->spawned_ns));
        proto_kv_uint(&ev.w, "qmp_ns", since(t0, vm->qmp_ns));
        proto_kv_uint(&ev.w, "running_ns", since(t0, vm->running_ns));
        proto_kv_uint(&ev.w, "answered_ns", since(t0, vm->answered_ns));
        proto_kv_str(&ev.w, "error", msg ? msg : "");
        event_end(&ev);
}

static void boot_done(Vm *vm, int status, const char *msg)
{
        VmBootFn cb = vm->boot_cb;
        vm->boot_cb = NULL;
        if (vm->boot_timer) {
                vm_close_handle(vm, (uv_handle_t *) vm->boot_timer);
                vm->boot_timer = NULL;
        }
        if (status == 0)
                vm->state = VM_RUNNING;
        if (vm->restoring)
                emit_restore(vm, status, msg);
        else
                emit_boot(vm, status, msg);
        if (status == 0 && vm->restoring && vm->cfg.incoming)
                vm_prelaunch(vm); /* the next clone of this fixture finds its QEMU started */
        vm->restoring = false;
        if (cb)
                cb(vm, status, msg, vm->boot_data);
}

static void on_clock_set(AgentRequest *req, int status, const msgpack_object *reply)
{
        Vm *vm = req->data;
        bool ok = false;
        if (!vm->boot_cb)
                return;
        if (status == 0 && proto_get_bool(reply, "ok", &ok) == 1 && ok)
                return boot_done(vm, 0, NULL);
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
        boot_done(vm, status < 0 ? status : -EIO, msg);
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

static void on_agent_ready(AgentClient *c, int status, void *data)
{
        Vm *vm = data;
        if (!vm->boot_cb)
                return;
        vm->answered_ns = events_mono_ns();
        if (status == 0 && vm->restoring && vm->sync_clock && (status = sync_clock(vm)) == 0)
                return;
        if (status == 0)
                return boot_done(vm, 0, NULL);
        if (status == -ECONNRESET && vm->proc)
                return; /* QEMU closed the socket: its exit (or the boot timer) says why */
        char *tail = vm_console_tail(vm, 20);
        char *msg = NULL;
        if (asprintf(&msg, "vm %s: agent did not become ready: %s\n--- last console lines ---\n%s",
                     vm->name, strerror(-status), tail ? tail : "") < 0)
                msg = NULL;
        boot_done(vm, status, msg ? msg : "agent did not become ready");
        free(msg);
        free(tail);
}

static bool on_agent_lost(AgentClient *c, int status, void *data)
{
        /* The port only closes when QEMU goes away: keep the operations in flight until its
         * exit callback can fail them with the reason and the console tail. */
        Vm *vm = data;
        return vm->state != VM_STOPPING; /* paused or running: QEMU's exit will say why */
}

/* What a boot that timed out with an empty console means: the guest never reached init,
 * whose agent prints "provium-agent: starting" first (src/agent/init.c). */
static const char *no_sign_of_life(const Vm *vm)
{
        if (vm->restoring || vm->tail_total > 0)
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
        boot_done(vm, -ETIMEDOUT, msg ? msg : "boot timed out");
        free(msg);
        free(tail);
}

static void incoming_failed(Vm *vm, const char *what, json_t *result)
{
        if (!vm->boot_cb)
                return;
        json_t *desc = result ? json_object_get(result, "desc") : NULL;
        char *msg = NULL;
        if (asprintf(&msg, "vm %s: restore: %s: %s", vm->name, what,
                     json_is_string(desc) ? json_string_value(desc) : "QMP connection lost") < 0)
                msg = NULL;
        boot_done(vm, -EIO, msg ? msg : "restore failed");
        free(msg);
}

static void on_incoming_started(void *data, int status, json_t *result)
{
        if (status < 0)
                incoming_failed(data, "migrate-incoming", result);
}

static void on_incoming_caps(void *data, int status, json_t *result)
{
        Vm *vm = data;
        if (status < 0)
                return incoming_failed(vm, "migrate-set-capabilities", result);
        json_t *args = json_pack("{s:s}", "uri", "fd:3");
        if (!args || qmp_execute(vm->qmp, "migrate-incoming", args, on_incoming_started, vm) < 0)
                incoming_failed(vm, "migrate-incoming", NULL);
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
        if (!vm->restoring || vm->incoming_sent || !vm->qmp_up || !vm->agent_up)
                return;
        vm->incoming_sent = true;
        /* The capability must match the saving side's: off when the stream carries RAM. */
        json_t *args = vm_ignore_shared_args(vm->incoming_has_ram ? 0 : 1);
        if (!args ||
            qmp_execute(vm->qmp, "migrate-set-capabilities", args, on_incoming_caps, vm) < 0)
                incoming_failed(vm, "migrate-set-capabilities", NULL);
}

static void on_qmp_ready(void *data, int status)
{
        /* QMP is needed by later lifecycle operations; a failure here shows up as a boot
         * failure only if QEMU itself dies, which the exit callback reports. */
        Vm *vm = data;
        if (status == 0) {
                vm->qmp_up = true;
                vm->qmp_ns = events_mono_ns();
                maybe_start_incoming(vm);
        }
}

static void on_agent_socket(AgentClient *c, void *data)
{
        Vm *vm = data;
        vm->agent_up = true;
        maybe_start_incoming(vm);
}

static void on_qmp_event(void *data, const char *event, json_t *event_data)
{
        Vm *vm = data;
        if (strcmp(event, "RESUME") == 0)
                vm->running_ns = events_mono_ns();
        EventBuilder ev;
        event_begin(&ev, "vm.qmp_event", 2);
        proto_kv_str(&ev.w, "vm", vm->name);
        proto_kv_str(&ev.w, "event", event);
        event_end(&ev);
}

void vm_emit_spawn(Vm *vm, const VmConfig *cfg, int pid, char *const *argv)
{
        EventBuilder ev;
        event_begin(&ev, "vm.spawn", argv ? 5 : 4);
        proto_kv_str(&ev.w, "vm", vm->name);
        proto_kv_int(&ev.w, "pid", pid);
        proto_kv_str(&ev.w, "accel", cfg->accel ? cfg->accel : "tcg");
        proto_kv_str(&ev.w, "image", vm->image_name ? vm->image_name : "");
        if (argv) {
                argv += 3; /* QEMU's own, after `provium __pdeathsig PID` (vm_build_argv) */
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
            .exit_cb = on_qemu_exit,
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
        r = uv_read_start((uv_stream_t *) vm->out, alloc_cb, console_read_cb);
        if (r == 0)
                r = uv_read_start((uv_stream_t *) vm->err, alloc_cb, qemu_err_read_cb);
        return r;
}

int vm_start_qmp(Vm *vm, uint64_t timeout_ms)
{
        char path[4096];
        vm->qmp = qmp_new(vm->loop);
        if (!vm->qmp)
                return -ENOMEM;
        vm->qmp_up = false;
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
        vm->agent_up = vm->incoming_sent = false;
        if (vm->restoring)
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
        const char *why = getenv("PROVIUM_KVM_UNUSABLE");
        if (!why || !*why || !vm->cfg.accel || strcmp(vm->cfg.accel, "kvm") != 0 || vm->cfg.kernel)
                return 0;
        snprintf(err, errlen,
                 "vm %s: %s: --accel kvm, but KVM cannot run the image's kernel here "
                 "(%.400s): use --accel tcg, or --accel auto to fall back by itself",
                 vm->name, vm->restoring ? "restore" : "boot", why);
        return -ENODEV;
}

/* Starts QEMU for vm->cfg and vm->image (booting, or loading vm->incoming_fd) and waits for
 * the agent. On failure the VM is stopped and err says why. */
static int launch(Vm *vm, char *err, size_t errlen)
{
        Argv a = {0};
        int r = kvm_unusable(vm, err, errlen);
        if (r < 0) {
                vm->boot_cb = NULL;
                vm_stop(vm, NULL, NULL);
                return r;
        }
        r = vm_build_argv(vm, &vm->cfg, vm->image, &a);
        uint64_t timeout_ms = vm->cfg.timeout_ms ? vm->cfg.timeout_ms : DEFAULT_BOOT_MS;
        if (r == 0)
                r = vm_spawn_qemu(vm, a.v);
        if (vm->incoming_fd >= 0) { /* QEMU has its own copy now */
                (void) close(vm->incoming_fd);
                vm->incoming_fd = -1;
        }
        if (r == 0) {
                vm->state = VM_BOOTING;
                vm->spawned_ns = events_mono_ns();
                vm->qmp_ns = vm->running_ns = vm->answered_ns = 0;
                vm_emit_spawn(vm, &vm->cfg, vm->proc->pid, a.v);
                r = start_connections(vm, timeout_ms);
        }
        if (r == 0)
                r = vm_start_boot_timer(vm, timeout_ms);
        if (r < 0) {
                snprintf(err, errlen, "vm %s: %s: starting %s: %s", vm->name,
                         vm->restoring ? "restore" : "boot", a.v ? a.v[3] : "qemu", strerror(-r));
                vm->boot_cb = NULL;
                vm_stop(vm, NULL, NULL);
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
        vm->restoring = true;
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
        vm->nworkers = cfg->workers < 0 ? 4 : cfg->workers;
        if (vm->nworkers > VM_MAX_WORKERS)
                vm->nworkers = VM_MAX_WORKERS;
        vm->incoming_has_ram = false;
        vm->sync_clock = cfg->incoming && !cfg->initial_time;
        /* A spare has no network cards: a saved VM with cards starts its own QEMU. */
        Vm *spare = cfg->incoming && vm->nnics == 0 ? vm_take_spare(cfg) : NULL;
        if (spare)
                return vm_adopt_spare(vm, spare, err, errlen);
        if (cfg->incoming &&
            (r = vm_open_incoming(vm, cfg->incoming, cfg->incoming, err, errlen)) < 0)
                return r;
        return launch(vm, err, errlen);
}

/* The image is resolved (image_job.c: a recipe's first use builds it, off the loop): boot. */
static void on_image(void *data, Image *img, int r, const char *err, uint64_t duration_ns)
{
        Vm *vm = data;
        char msg[4096];

        vm->resolving = NULL;
        emit_image(vm->cfg.image ? vm->cfg.image : "default", img, r, err, duration_ns);
        if (r < 0) {
                boot_done(vm, r, err);
                return;
        }
        vm->image = img;
        VmBootFn cb = vm->boot_cb;
        void *cb_data = vm->boot_data;
        r = boot_launch(vm, msg, sizeof msg);
        if (r < 0 && cb) { /* launch may have stopped the VM and dropped the callback */
                vm->boot_cb = cb;
                vm->boot_data = cb_data;
                boot_done(vm, r, msg);
        }
}

int vm_boot(Vm *vm, const VmConfig *cfg, VmBootFn cb, void *data, char *err, size_t errlen)
{
        if (vm->state != VM_DEFINED || vm->resolving) {
                snprintf(err, errlen, "vm %s: boot: already %s", vm->name,
                         vm->resolving ? "booting" : vm_state_name(vm->state));
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
        return 0;
}

/* ---- restore ---- */

/* Objects made through the old connections now fail with -ESTALE; the clients stay allocated
 * for them until the VM is freed. */
static int retire_clients(Vm *vm)
{
        size_t n = vm->nretired + 1 + (size_t) vm->nworkers;
        AgentClient **v = realloc(vm->retired, n * sizeof *v);
        if (!v)
                return -ENOMEM;
        vm->retired = v;
        AgentClient **all[VM_MAX_WORKERS + 1] = {&vm->agent};
        for (int i = 1; i <= vm->nworkers; i++)
                all[i] = &vm->workers[i];
        for (int i = 0; i <= vm->nworkers; i++) {
                if (!*all[i])
                        continue;
                agent_client_retire(*all[i]);
                vm->retired[vm->nretired++] = *all[i];
                *all[i] = NULL;
        }
        vm->next_worker = 0;
        return 0;
}

/* The old QEMU is gone: start the one that loads the saved state. */
static int relaunch(Vm *vm, char *err, size_t errlen)
{
        vm_close_handle(vm, (uv_handle_t *) vm->out);
        vm_close_handle(vm, (uv_handle_t *) vm->err);
        vm_close_handle(vm, (uv_handle_t *) vm->in);
        vm->out = vm->err = NULL;
        vm->in = NULL;
        vm->console_eof = vm->exit_pending = vm->exit_expected = vm->exit_wanted = false;
        vm->exit_status = 0;
        vm->term_signal = 0;
        vm->qemu_err_len = 0;
        vm->qemu_err[0] = 0;
        free(vm->death);
        vm->death = NULL;
        return launch(vm, err, errlen);
}

static void finish_restart(Vm *vm)
{
        vm->restarting = false;
        vm->exit_pending = false;
        emit_exit(vm, true);
        if (vm->console_fn) { /* a console stream ends with its QEMU */
                vm->console_fn(vm->console_data, NULL, 0);
                vm->console_fn = NULL;
        }
        VmBootFn cb = vm->boot_cb; /* a failed launch stops the VM without calling it */
        void *data = vm->boot_data;
        char err[1024];
        int r = relaunch(vm, err, sizeof err);
        if (r < 0 && cb)
                cb(vm, r, err, data);
}

/* The restored VM gets RAM of its own again (share=on, so its next snapshot is as cheap as the
 * first): a sparse copy of the snapshot's RAM, or an empty file when the saved stream carries
 * the RAM. It replaces dir/ram under the old QEMU, which keeps its mapping until it exits. */
static int restore_ram(Vm *vm, const VmSnap *snap, const char *label, char *err, size_t errlen)
{
        char own[4096], next[4096];
        snprintf(own, sizeof own, "%s/ram", vm->dir);
        snprintf(next, sizeof next, "%s/ram.next", vm->dir);
        uint64_t bytes = 0;
        int r = snap->own_ram ? vm_copy_sparse(snap->ram, next, &bytes) : 0;
        if (!snap->own_ram) {
                int fd = open(next, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
                r = fd < 0 ? -errno : close(fd) < 0 ? -errno : 0;
        }
        if (r == 0 && rename(next, own) < 0)
                r = -errno;
        if (r == 0)
                r = vm_set_ram(vm, own, true);
        if (r < 0) {
                (void) unlink(next);
                snprintf(err, errlen, "vm %s: restore %s: copying RAM %s: %s", vm->name, label,
                         snap->ram, strerror(-r));
        }
        return r;
}

int vm_restore(Vm *vm, unsigned id, const char *label, VmBootFn cb, void *data, char *err,
               size_t errlen)
{
        VmState st = vm->state;
        if (id == 0 || id > vm->nsnaps) {
                snprintf(err, errlen, "vm %s: restore %s: no such snapshot of this VM", vm->name,
                         label);
                return -ENOENT;
        }
        if (vm->saving || vm->restarting || vm->boot_cb ||
            (st != VM_RUNNING && st != VM_PAUSED && st != VM_EXITED)) {
                snprintf(err, errlen, "vm %s: restore %s: the VM is %s", vm->name, label,
                         vm->saving ? "saving a snapshot" : vm_state_name(st));
                return -EBUSY;
        }
        const VmSnap *snap = &vm->snaps[id - 1];
        int r = restore_ram(vm, snap, label, err, errlen);
        if (r == 0)
                r = vm_open_incoming(vm, snap->state, label, err, errlen);
        if (r < 0)
                return r;
        vm->incoming_has_ram = !snap->own_ram;
        if (retire_clients(vm) < 0) {
                snprintf(err, errlen, "vm %s: restore %s: out of memory", vm->name, label);
                (void) close(vm->incoming_fd);
                vm->incoming_fd = -1;
                vm->restoring = false;
                return -ENOMEM;
        }
        vm->qmp = qmp_free(vm->qmp);
        stop_pressing(vm);
        vm->boot_cb = cb;
        vm->boot_data = data;
        if (vm->proc) {
                vm->restarting = true;
                vm->exit_wanted = true;
                (void) uv_process_kill(vm->proc, SIGKILL);
                return 0;
        }
        if (vm->exit_pending) /* exited, console not drained yet: finish_exit relaunches */
                return (vm->restarting = true), 0;
        r = relaunch(vm, err, errlen);
        if (r < 0)
                vm->boot_cb = NULL;
        return r;
}

/* ---- lifecycle ---- */

void vm_expect_exit(Vm *vm)
{
        vm->exit_wanted = true;
}

void vm_on_exit(Vm *vm, void (*fn)(Vm *vm, void *data), void *data)
{
        vm->exit_fn = fn;
        vm->exit_data = data;
        if (fn && vm->state == VM_EXITED && !vm->exit_pending) {
                vm->exit_fn = NULL;
                fn(vm, data);
        }
}

int vm_qmp(Vm *vm, const char *cmd, QmpReplyFn cb, void *data)
{
        if (!vm->qmp)
                return -ENOTCONN;
        return qmp_execute(vm->qmp, cmd, NULL, cb, data);
}

void vm_set_paused(Vm *vm, bool paused)
{
        if (paused && vm->state == VM_RUNNING)
                vm->state = VM_PAUSED;
        else if (!paused && vm->state == VM_PAUSED)
                vm->state = VM_RUNNING;
}

/* A press that reaches the guest before its button driver is up is lost, so the button is
 * pressed again every 2 s (at most 10 times) until QEMU exits. */
#define PRESS_AGAIN_MS 2000
#define PRESS_MAX      10

static void stop_pressing(Vm *vm)
{
        if (vm->press) {
                vm_close_handle(vm, (uv_handle_t *) vm->press);
                vm->press = NULL;
        }
}

static void on_press_again(uv_timer_t *t)
{
        Vm *vm = t->data;
        if (vm->state == VM_EXITED || ++vm->presses >= PRESS_MAX || !vm->qmp) {
                stop_pressing(vm);
                return;
        }
        (void) qmp_execute(vm->qmp, "system_powerdown", NULL, NULL, NULL);
}

int vm_power_button(Vm *vm, QmpReplyFn cb, void *data)
{
        if (!vm->qmp)
                return -ENOTCONN;
        vm->exit_wanted = true;
        if (!vm->press) {
                vm->press = calloc(1, sizeof *vm->press);
                if (vm->press && uv_timer_init(vm->loop, vm->press) == 0) {
                        vm->press->data = vm;
                        vm->handles_open++;
                        vm->presses = 0;
                        (void) uv_timer_start(vm->press, on_press_again, PRESS_AGAIN_MS,
                                              PRESS_AGAIN_MS);
                } else {
                        free(vm->press);
                        vm->press = NULL;
                }
        }
        return qmp_execute(vm->qmp, "system_powerdown", NULL, cb, data);
}

int vm_kill(Vm *vm)
{
        if (!vm->proc)
                return -ESRCH;
        vm->exit_wanted = true;
        return uv_process_kill(vm->proc, SIGKILL);
}

void vm_console_watch(Vm *vm, void (*fn)(void *data, const char *p, size_t n), void *data)
{
        vm->console_fn = fn;
        vm->console_data = data;
}

static void on_console_written(uv_write_t *wr, int status)
{
        free(wr);
}

int vm_console_write(Vm *vm, const char *p, size_t n)
{
        if (!vm->in || vm->state == VM_EXITED)
                return -EPIPE;
        uv_write_t *wr = malloc(sizeof *wr + n);
        if (!wr)
                return -ENOMEM;
        memcpy(wr + 1, p, n);
        uv_buf_t buf = uv_buf_init((char *) (wr + 1), (unsigned) n);
        int r = uv_write(wr, (uv_stream_t *) vm->in, &buf, 1, on_console_written);
        if (r < 0)
                free(wr);
        return r;
}

/* ---- network cards ---- */

typedef struct NicPlug {
        Vm *vm;
        int k;
        QmpReplyFn cb;
        void *data;
} NicPlug;

static void on_nic_device(void *data, int status, json_t *result)
{
        NicPlug *p = data;
        if (p->cb)
                p->cb(p->data, status, result);
        free(p);
}

static void on_nic_netdev(void *data, int status, json_t *result)
{
        NicPlug *p = data;
        Vm *vm = p->vm;
        json_t *args = NULL;
        if (status == 0) {
                char netdev[16], id[16], addr[16];
                snprintf(netdev, sizeof netdev, "net%d", p->k);
                snprintf(id, sizeof id, "nic%d", p->k);
                snprintf(addr, sizeof addr, "0x%x", 0x10 + p->k);
                args = json_pack("{s:s,s:s,s:s,s:s,s:s}", "driver", "virtio-net-pci", "netdev",
                                 netdev, "mac", vm->nics[p->k].mac, "id", id, "addr", addr);
        }
        if (status == 0 && args && vm->qmp &&
            qmp_execute(vm->qmp, "device_add", args, on_nic_device, p) == 0)
                return;
        on_nic_device(p, status < 0 ? status : -EIO, result);
}

int vm_add_nic(Vm *vm, const char *tap, const char *mac, QmpReplyFn cb, void *data, char *err,
               size_t errlen)
{
        VmState st = vm->state;
        if (vm->nnics == VM_MAX_NICS) {
                snprintf(err, errlen, "vm %s: attach: at most %d network cards", vm->name,
                         VM_MAX_NICS);
                return -ENOSPC;
        }
        if (st != VM_DEFINED && st != VM_RUNNING && st != VM_PAUSED) {
                snprintf(err, errlen, "vm %s: attach: the VM is %s", vm->name, vm_state_name(st));
                return -EBUSY;
        }
        int k = vm->nnics;
        snprintf(vm->nics[k].tap, sizeof vm->nics[k].tap, "%s", tap);
        snprintf(vm->nics[k].mac, sizeof vm->nics[k].mac, "%s", mac);
        if (st == VM_DEFINED) { /* on the command line when it boots */
                vm->nnics++;
                return 1;
        }
        NicPlug *p = calloc(1, sizeof *p);
        char netdev[16];
        snprintf(netdev, sizeof netdev, "net%d", k);
        json_t *args = json_pack("{s:s,s:s,s:s,s:s,s:s}", "type", "tap", "id", netdev, "ifname",
                                 tap, "script", "no", "downscript", "no");
        if (!p || !args || !vm->qmp) {
                free(p);
                json_decref(args);
                snprintf(err, errlen, "vm %s: attach: %s", vm->name,
                         vm->qmp ? "out of memory" : "no QMP connection");
                return -ENOMEM;
        }
        *p = (NicPlug){.vm = vm, .k = k, .cb = cb, .data = data};
        vm->nnics++; /* a restore's command line has it from now on */
        int r = qmp_execute(vm->qmp, "netdev_add", args, on_nic_netdev, p);
        if (r < 0) {
                free(p);
                snprintf(err, errlen, "vm %s: attach: %s", vm->name, strerror(-r));
        }
        return r;
}

/* ---- stop and free ---- */

static void remove_run_dir(Vm *vm)
{
        char path[4096];
        static const char *const files[] = {"qmp.sock", "mig.sock", "ram", "ram.next"};
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
                snprintf(path, sizeof path, "%s/%s", vm->dir, files[i]);
                (void) unlink(path);
        }
        for (unsigned i = 0; i < vm->nsnaps; i++) {
                (void) unlink(vm->snaps[i].state);
                if (vm->snaps[i].own_ram)
                        (void) unlink(vm->snaps[i].ram);
        }
        for (int i = 0; i <= vm->nworkers; i++) {
                snprintf(path, sizeof path, "%s/agent%d.sock", vm->dir, i);
                (void) unlink(path);
        }
        (void) rmdir(vm->dir);
}

/* Like the main connection, a worker port closes only when QEMU goes: the exit callback (or
 * vm_stop) fails its operations with the reason. */
static bool on_worker_lost(AgentClient *c, int status, void *data)
{
        return true;
}

int vm_worker_connect(Vm *vm, uint64_t timeout_ms, AgentReadyFn cb, void *data, AgentClient **ret,
                      int *ret_index)
{
        if (vm->state != VM_RUNNING)
                return -ENOTCONN;
        if (vm->next_worker >= vm->nworkers)
                return -EBUSY;
        int i = ++vm->next_worker;
        char path[4096], name[64];
        snprintf(path, sizeof path, "%s/agent%d.sock", vm->dir, i);
        snprintf(name, sizeof name, "%s/worker%d", vm->name, i);
        AgentClient *c = agent_client_new(vm->loop, name);
        if (!c)
                return -ENOMEM;
        int r = agent_client_connect(c, path, timeout_ms, cb, on_worker_lost, data);
        if (r < 0) {
                agent_client_free(c);
                return r;
        }
        vm->workers[i] = c;
        *ret = c;
        *ret_index = i;
        return 0;
}

void vm_stop(Vm *vm, void (*done_cb)(Vm *vm, void *data), void *data)
{
        image_job_orphan(vm->resolving);
        vm->resolving = NULL;
        if (vm->boot_cb) /* the boot's waiter learns it will never finish, and frees itself */
                boot_done(vm, -ECANCELED, "the VM was stopped while booting");
        vm->death_cb = NULL;
        vm->restarting = false;
        if (vm->incoming_fd >= 0) {
                (void) close(vm->incoming_fd);
                vm->incoming_fd = -1;
        }
        vm->stop_cb = done_cb;
        vm->stop_data = data;
        if (vm->state == VM_BOOTING || vm->state == VM_RUNNING || vm->state == VM_PAUSED)
                vm->state = VM_STOPPING;
        vm->qmp = qmp_free(vm->qmp);
        vm->agent = agent_client_free(vm->agent);
        for (int i = 1; i <= vm->nworkers; i++)
                vm->workers[i] = agent_client_free(vm->workers[i]);
        if (vm->proc && vm->state == VM_STOPPING)
                (void) uv_process_kill(vm->proc, SIGKILL);
        if (vm->boot_timer) {
                vm_close_handle(vm, (uv_handle_t *) vm->boot_timer);
                vm->boot_timer = NULL;
        }
        /* The pipes close now; the process handle closes in its exit callback. */
        if (vm->out) {
                vm_close_handle(vm, (uv_handle_t *) vm->out);
                vm->out = NULL;
        }
        if (vm->exit_pending)
                finish_exit(vm);
        if (vm->err) {
                vm_close_handle(vm, (uv_handle_t *) vm->err);
                vm->err = NULL;
        }
        if (vm->in) {
                vm_close_handle(vm, (uv_handle_t *) vm->in);
                vm->in = NULL;
        }
        vm->console_fn = NULL;
        stop_pressing(vm);
        if (vm->exit_fn) { /* the watcher learns the VM is gone, and frees what it holds */
                void (*fn)(Vm *, void *) = vm->exit_fn;
                vm->exit_fn = NULL;
                fn(vm, vm->exit_data);
        }
        remove_run_dir(vm);
        if (vm->handles_open == 0 && vm->stop_cb) {
                vm->stop_cb = NULL;
                done_cb(vm, data);
        }
}

Vm *vm_free(Vm *vm)
{
        if (!vm)
                return NULL;
        /* Handles still closing point at vm: callers wait for vm_stop's callback first. */
        assert(vm->handles_open == 0);
        image_job_orphan(vm->resolving);
        vm->resolving = NULL;
        vm->qmp = qmp_free(vm->qmp);
        vm->agent = agent_client_free(vm->agent);
        for (int i = 1; i <= VM_MAX_WORKERS; i++)
                vm->workers[i] = agent_client_free(vm->workers[i]);
        for (size_t i = 0; i < vm->nretired; i++)
                agent_client_free(vm->retired[i]);
        free(vm->retired);
        for (unsigned i = 0; i < vm->nsnaps; i++) {
                free(vm->snaps[i].state);
                free(vm->snaps[i].ram);
        }
        free(vm->snaps);
        config_clear(&vm->cfg);
        image_free(vm->image);
        free(vm->ram_path);
        free(vm->restore_label);
        free(vm->image_name);
        free(vm->console);
        free(vm->death);
        free(vm->name);
        free(vm->dir);
        free(vm);
        return NULL;
}

/* ---- exec wrapper ---- */

int vm_pdeathsig_exec(int argc, char **argv)
{
        /* argv: __pdeathsig PPID PROGRAM ARGS... */
        if (argc < 3) {
                fprintf(stderr, "provium: __pdeathsig: usage: __pdeathsig PPID PROGRAM [ARGS]\n");
                return 2;
        }
        pid_t parent = (pid_t) atol(argv[1]);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
                perror("provium: prctl(PR_SET_PDEATHSIG)");
                return 1;
        }
        /* The parent may have died before prctl took effect. */
        if (getppid() != parent)
                return 1;
        execvp(argv[2], argv + 2);
        fprintf(stderr, "provium: exec %s: %s\n", argv[2], strerror(errno));
        return 127;
}
