/* vm.c: a guest VM's phases, its QEMU's exit, and its end (stop and free).
 *
 * The other parts of a VM have modules of their own: booting and restoring from a fixture
 * (vm_boot.c), snapshots (vm_snapshot.c, vm_restore.c), the console (vm_console.c), power
 * (vm_power.c), network cards (vm_nic.c), the command line (vm_argv.c), spares (vm_spare.c).
 */
#include "vm.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "events.h"
#include "image_job.h"
#include "vm_internal.h"

/* ---- handles ---- */

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

/* ---- phases ---- */

#define TO(p) (1u << PHASE_##p)
#define ENDS  (TO(STOPPING) | TO(EXITING) | TO(EXITED))

/* The legal transitions, as drawn at VmPhase (vm_internal.h). */
static const unsigned next_phases[] = {
    [PHASE_DEFINED] = TO(RESOLVING) | TO(RESTORING), /* RESTORING: a spare */
    [PHASE_RESOLVING] = TO(BOOTING) | TO(RESTORING) | TO(LOADING) | TO(DEFINED),
    [PHASE_BOOTING] = TO(RUNNING) | ENDS,
    [PHASE_RESTORING] = TO(LOADING) | ENDS,
    [PHASE_LOADING] = TO(RUNNING) | TO(WARM) | ENDS,
    [PHASE_WARM] = ENDS,
    [PHASE_RUNNING] = TO(PAUSED) | TO(SAVING) | TO(RESTARTING) | ENDS,
    [PHASE_PAUSED] = TO(RUNNING) | TO(RESTARTING) | ENDS,
    [PHASE_SAVING] = TO(RUNNING) | ENDS,
    [PHASE_RESTARTING] = TO(RESTORING) | ENDS,
    [PHASE_STOPPING] = TO(EXITING) | TO(EXITED),
    [PHASE_EXITING] = TO(EXITED) | TO(RESTARTING),
    [PHASE_EXITED] = TO(RESTORING),
};

const char *vm_phase_name(VmPhase p)
{
        static const char *const names[] = {
            "defined", "resolving", "booting",    "restoring", "loading", "warm",   "running",
            "paused",  "saving",    "restarting", "stopping",  "exiting", "exited",
        };
        return p <= PHASE_EXITED ? names[p] : "?";
}

void vm_enter(Vm *vm, VmPhase next)
{
        if (vm->phase == next)
                return;
        if (!(next_phases[vm->phase] & (1u << next))) {
                fprintf(stderr, "provium: vm %s: illegal phase change %s -> %s\n", vm->name,
                        vm_phase_name(vm->phase), vm_phase_name(next));
                assert(!"illegal VM phase change");
                abort();
        }
        vm->phase = next;
        /* a guest whose vCPUs are stopped answers no heartbeat, and is not hung */
        bool stopped = next == PHASE_PAUSED || next == PHASE_SAVING || next == PHASE_WARM;
        for (int i = 0; i <= vm->nworkers && i <= VM_MAX_WORKERS; i++) {
                AgentClient *c = i == 0 ? vm->agent : vm->workers[i];
                if (c)
                        agent_client_hold_heartbeat(c, stopped);
        }
}

VmState vm_state(const Vm *vm)
{
        static const VmState public_state[] = {
            [PHASE_DEFINED] = VM_DEFINED,   [PHASE_RESOLVING] = VM_DEFINED,
            [PHASE_BOOTING] = VM_BOOTING,   [PHASE_RESTORING] = VM_BOOTING,
            [PHASE_LOADING] = VM_BOOTING,   [PHASE_WARM] = VM_BOOTING,
            [PHASE_RUNNING] = VM_RUNNING,   [PHASE_PAUSED] = VM_PAUSED,
            [PHASE_SAVING] = VM_RUNNING,    [PHASE_RESTARTING] = VM_BOOTING,
            [PHASE_STOPPING] = VM_STOPPING, [PHASE_EXITING] = VM_EXITED,
            [PHASE_EXITED] = VM_EXITED,
        };
        return public_state[vm->phase];
}

const char *vm_state_name(VmState s)
{
        static const char *const names[] = {"defined", "booting",  "running",
                                            "paused",  "stopping", "exited"};
        return s <= VM_EXITED ? names[s] : "?";
}

/* ---- accessors ---- */

int vm_check_hotplug(const Vm *vm, const char *what, char *err, size_t errlen)
{
        if (vm->local || vm_state(vm) == VM_DEFINED || vm->cfg.hotplug != 0)
                return 0; /* before boot a device goes on QEMU's command line */
        snprintf(err, errlen,
                 "vm %s: %s: the VM was booted with hotplug = false (no PCI hot-plug, acpi=noirq): "
                 "attach it before vm:boot()",
                 vm->name, what);
        return -EPERM;
}

const char *vm_name(const Vm *vm)
{
        return vm->name;
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

const char *vm_image_key(const Vm *vm)
{
        return vm->image ? vm->image->key : NULL;
}

const VmConfig *vm_config(const Vm *vm)
{
        return &vm->cfg;
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
        vm->phase = PHASE_DEFINED;
        vm->incoming_fd = -1;
        return vm;
}

/* ---- what the live QEMUs hold ---- */

static uint64_t live_mb, memory_limit_mb, peak_mb;
static unsigned live_vcpus, peak_vcpus;

void vm_live_totals(uint64_t *memory_mb, unsigned *vcpus)
{
        *memory_mb = live_mb;
        *vcpus = live_vcpus;
}

void vm_set_memory_limit(uint64_t memory_mb)
{
        memory_limit_mb = memory_mb;
}

uint64_t vm_memory_limit(void)
{
        return memory_limit_mb;
}

void vm_count_live(Vm *vm)
{
        if (vm->local)
                return; /* it reserves no RAM (docs/local.md): its processes use what they use */
        vm->live_mb = vm_config_memory_mb(&vm->cfg);
        vm->live_vcpus = vm->cfg.cpus ? vm->cfg.cpus : 1;
        live_mb += vm->live_mb;
        live_vcpus += vm->live_vcpus;
        peak_mb = live_mb > peak_mb ? live_mb : peak_mb;
        peak_vcpus = live_vcpus > peak_vcpus ? live_vcpus : peak_vcpus;
}

void vm_live_peak(uint64_t *memory_mb, unsigned *vcpus)
{
        *memory_mb = peak_mb;
        *vcpus = peak_vcpus;
}

void vm_uncount_live(Vm *vm)
{
        live_mb -= vm->live_mb;
        live_vcpus -= vm->live_vcpus;
        vm->live_mb = 0;
        vm->live_vcpus = 0;
}

/* ---- the exit of QEMU ---- */

void vm_emit_exit(Vm *vm)
{
        EventBuilder ev;
        event_begin(&ev, "vm.exit", 5);
        proto_kv_str(&ev.w, "vm", vm->name);
        proto_kv_int(&ev.w, "pid", vm->qemu_pid);
        proto_kv_int(&ev.w, "status", vm->exit_status);
        proto_kv_int(&ev.w, "signal", vm->term_signal);
        proto_kv_bool(&ev.w, "expected", vm->exit_expected);
        event_end(&ev);
}

int vm_ram_room(const Vm *vm, char *dir, size_t dirlen, unsigned long long *ret_free_mb)
{
        if (!vm->ram_path || vm_is_local(vm))
                return -ENOENT;
        const char *slash = strrchr(vm->ram_path, '/');
        size_t n = slash ? (size_t) (slash - vm->ram_path) : 0;
        if (n == 0 || n >= dirlen)
                return -ENAMETOOLONG;
        memcpy(dir, vm->ram_path, n);
        dir[n] = 0;
        struct statvfs sv;
        if (statvfs(dir, &sv) < 0)
                return -errno;
        *ret_free_mb = ((unsigned long long) sv.f_bavail * sv.f_frsize) >> 20;
        return 0;
}

/* QEMU's SIGBUS is most often its RAM file's file system full: said, with what is free. */
static void ram_room_note(const Vm *vm, char *buf, size_t len)
{
        char dir[1024];
        unsigned long long free_mb;
        buf[0] = 0;
        if (vm->term_signal == SIGBUS && vm_ram_room(vm, dir, sizeof dir, &free_mb) == 0)
                snprintf(buf, len,
                         " (SIGBUS: most often its RAM file could not grow; the file system "
                         "of %s has %llu MiB free)",
                         dir, free_mb);
}

static void set_death(Vm *vm)
{
        char *tail = vm_console_excerpt(vm, 12);
        const char *what = vm->term_signal ? "was killed by signal" : "exited with status";
        long code = vm->term_signal ? vm->term_signal : (long) vm->exit_status;
        char *recent = vm_console_tail(vm, 200);
        bool panic = recent && strstr(recent, "Kernel panic");
        free(recent);
        char room[1280];
        ram_room_note(vm, room, sizeof room);
        free(vm->death);
        if (asprintf(&vm->death, "vm %s: %s %s %ld%s%s%s%s\n--- last console lines ---\n%s",
                     vm->name, vm_is_local(vm) ? "the local VM" : "QEMU", what, code,
                     panic ? " (guest kernel panic)" : "", room,
                     vm->qemu_err_len ? "; QEMU said: " : "", vm->qemu_err, tail ? tail : "") < 0)
                vm->death = NULL;
        free(tail);
}

/* EXITING -> EXITED: the connections fail, and whoever waits learns why. */
static void finish_exit(Vm *vm)
{
        bool booting = vm->boot_cb != NULL;
        vm_enter(vm, PHASE_EXITED);
        set_death(vm);
        vm_emit_exit(vm);
        vm_disks_qemu_gone(vm);
        vm_local_gone(vm);
        vm->qmp = qmp_free(vm->qmp);
        if (vm->agent)
                agent_client_shutdown(vm->agent, -ECONNRESET);
        for (int i = 1; i <= vm->nworkers; i++)
                if (vm->workers[i])
                        agent_client_shutdown(vm->workers[i], -ECONNRESET);
        /* __qemu's status when it could not execute QEMU (vm_argv.c) */
        if (booting && !vm->term_signal && vm->exit_status == 127 && vm->tail_total == 0)
                events_infra_error("qemu", vm->death);
        if (booting)
                vm_boot_end(vm, -ECHILD, vm->death);
        else if (!vm->exit_expected && vm->death_cb)
                vm->death_cb(vm, vm->death ? vm->death : "QEMU exited", vm->death_data);
        vm_stop_pressing(vm);
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

void vm_exit_progress(Vm *vm)
{
        if (vm->proc || (vm->out && !vm->console_eof))
                return; /* QEMU runs, or what it printed before dying is still in the pipe */
        if (vm->phase == PHASE_RESTARTING)
                vm_finish_restart(vm);
        else if (vm->phase == PHASE_EXITING)
                finish_exit(vm);
}

void vm_on_qemu_exit(uv_process_t *p, int64_t status, int term_signal)
{
        Vm *vm = p->data;
        bool restart = vm->phase == PHASE_RESTARTING;
        vm->exit_expected = restart || vm->phase == PHASE_STOPPING || vm->exit_wanted;
        vm->exit_status = status;
        vm->term_signal = term_signal;
        vm_close_handle(vm, (uv_handle_t *) vm->proc);
        vm->proc = NULL;
        vm_uncount_live(vm);
        vm_local_exited(vm);
        if (!restart)
                vm_enter(vm, PHASE_EXITING);
        vm_exit_progress(vm);
}

void vm_halt(Vm *vm)
{
        if (vm->phase == PHASE_RESOLVING) {
                image_job_orphan(vm->resolving);
                vm->resolving = NULL;
                vm_enter(vm, PHASE_DEFINED);
                return;
        }
        if (vm->incoming_fd >= 0) {
                (void) close(vm->incoming_fd);
                vm->incoming_fd = -1;
        }
        if (vm->boot_timer) {
                vm_close_handle(vm, (uv_handle_t *) vm->boot_timer);
                vm->boot_timer = NULL;
        }
        if (vm->proc) {
                vm_enter(vm, PHASE_STOPPING);
                (void) uv_process_kill(vm->proc, SIGKILL);
        } else if (vm->phase == PHASE_RESTARTING) {
                vm_enter(vm, PHASE_EXITING); /* the old QEMU is gone: the restart is off */
        } else if (vm->phase != PHASE_EXITING && vm->phase != PHASE_EXITED &&
                   vm->phase != PHASE_DEFINED) {
                vm_enter(vm, PHASE_EXITED); /* QEMU never started */
        }
}

/* ---- worker connections ---- */

/* Like the main connection, a worker port closes only when QEMU goes: the exit callback (or
 * vm_stop) fails its operations with the reason. */
static bool on_worker_lost(AgentClient *c, int status, void *data)
{
        return true;
}

int vm_worker_connect(Vm *vm, uint64_t timeout_ms, AgentReadyFn cb, void *data, AgentClient **ret,
                      int *ret_index)
{
        if (vm_state(vm) != VM_RUNNING)
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

static void close_pipe(Vm *vm, uv_pipe_t **p)
{
        vm_close_handle(vm, (uv_handle_t *) *p);
        *p = NULL;
}

void vm_stop(Vm *vm, void (*done_cb)(Vm *vm, void *data), void *data)
{
        if (vm->boot_cb) /* the boot's waiter learns it will never finish, and frees itself */
                vm_boot_end(vm, -ECANCELED, "the VM was stopped while booting");
        vm->death_cb = NULL;
        vm_halt(vm);
        vm->stop_cb = done_cb;
        vm->stop_data = data;
        vm->qmp = qmp_free(vm->qmp);
        vm->agent = agent_client_free(vm->agent);
        for (int i = 1; i <= vm->nworkers; i++)
                vm->workers[i] = agent_client_free(vm->workers[i]);
        /* The pipes close now; the process handle closes in its exit callback. */
        close_pipe(vm, &vm->out);
        vm_exit_progress(vm); /* an exit waiting for the console ends now */
        close_pipe(vm, &vm->err);
        close_pipe(vm, &vm->in);
        vm->console_fn = NULL;
        vm_stop_pressing(vm);
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
        vm_disks_free(vm);
        vm_local_gone(vm);
        vm_config_clear(&vm->cfg);
        image_free(vm->image);
        free(vm->ram_path);
        free(vm->restore_label);
        free(vm->disks_from);
        free(vm->image_name);
        free(vm->console);
        free(vm->death);
        free(vm->name);
        free(vm->dir);
        free(vm);
        return NULL;
}
