/* vm_spare.c: spare QEMUs for fixture restores, kept warm.
 *
 * Starting QEMU costs about 100 ms here, and loading a saved state and running its guest until
 * the agent answers some 40 ms more under TCG. So once a fixture has been restored, spares are
 * started for its next clones (one by default, the fixture's `pool` option): same
 * configuration, same saved state as fd 3. A spare loads the state like any restore, waits for
 * its agent's hello, runs one command (vm_spare_park), then stops its vCPUs (QMP `stop`) and
 * waits WARM. The next restore of that
 * fixture adopts it and only resumes it (`cont`) and sets its clock. A spare not warm yet is
 * adopted as it is, and its restore goes on as the clone's own. A spare that fails is only the
 * lack of a spare: it emits no vm.restore and fails no test. Spares are stopped with the file
 * (vm_spares_stop).
 *
 *   spare:  DEFINED -> RESTORING -> LOADING -> (hello, one command) -> stop -> WARM
 *   clone:  RESOLVING -> the spare's RESTORING or LOADING; a WARM one: LOADING, cont, clock */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "events.h"
#include "vm_internal.h"

#define SPARE_WARM_UP_MS 10000

static Vm *spares[VM_MAX_SPARES];
static unsigned spare_seq;

/* A spare that can still become a clone: its QEMU runs, loading or loaded. */
static bool spare_alive(const Vm *s)
{
        return s && s->proc &&
               (s->phase == PHASE_RESTORING || s->phase == PHASE_LOADING || s->phase == PHASE_WARM);
}

Vm *vm_take_spare(const VmConfig *cfg)
{
        for (int warm = 1; warm >= 0; warm--)
                for (int i = 0; i < VM_MAX_SPARES; i++) {
                        Vm *s = spares[i];
                        if (spare_alive(s) && (s->phase == PHASE_WARM) == warm &&
                            vm_config_equal(&s->cfg, cfg, VMCFG_SPARE)) {
                                spares[i] = NULL;
                                return s;
                        }
                }
        return NULL;
}

/* ---- a spare's own restore: loaded, answered, stopped ---- */

static void on_resumed(void *data, int status, json_t *result)
{
        Vm *vm = data;
        if (vm->phase != PHASE_LOADING)
                return; /* stopped meanwhile */
        if (status < 0) {
                char msg[512];
                snprintf(msg, sizeof msg, "vm %s: restore: resuming its loaded QEMU (cont): %s",
                         vm->name, qmp_error_text(status, result));
                return vm_boot_end(vm, -EIO, msg);
        }
        vm->answered_ns = events_mono_ns();
        vm_restore_answered(vm);
}

/* A clone's adopted spare, loaded and stopped: its vCPUs run again. */
static int resume(Vm *vm)
{
        return qmp_execute(vm->qmp, "cont", NULL, on_resumed, vm);
}

static void on_parked(void *data, int status, json_t *result)
{
        Vm *vm = data;
        if (vm->phase != PHASE_LOADING)
                return;
        if (vm->spare) {
                vm_boot_end(vm, status, NULL); /* a spare's: its boot timer goes, or it halts */
                if (status == 0)
                        vm_enter(vm, PHASE_WARM);
                return;
        }
        /* adopted while it was being stopped: it runs again at once */
        int r = status == 0 ? resume(vm) : status;
        if (r == 0)
                return;
        char msg[512];
        snprintf(msg, sizeof msg, "vm %s: restore: stopping its spare QEMU: %s", vm->name,
                 status < 0 ? qmp_error_text(status, result) : strerror(-r));
        vm_boot_end(vm, -EIO, msg);
}

static void park(Vm *s)
{
        if (qmp_execute(s->qmp, "stop", NULL, on_parked, s) < 0)
                vm_boot_end(s, -ENOTCONN, NULL);
}

static void on_warmed_up(AgentRequest *req, int status, const msgpack_object *reply)
{
        Vm *s = req->data;
        s->warming_up = false;
        if (s->phase == PHASE_LOADING)
                park(s); /* whatever the command's outcome: it was only a warm-up */
}

/* Before it stops, the spare's guest runs `/bin/sh -c true` once, as vm:run("true") would:
 * under TCG a restored guest's first command costs 150-200 ms more than its later ones (every
 * path it takes through the kernel and the shell is translated anew), and a clone whose
 * spare ran one pays 10-30 ms (docs/performance.md). */
void vm_spare_park(Vm *s)
{
        s->warm_req = (AgentRequest){.on_reply = on_warmed_up, .data = s};
        ProtoWriter *w = agent_request_begin(s->agent, &s->warm_req, "exec", 1);
        proto_kv_str(w, "cmd", "true");
        if (agent_request_send(s->agent, &s->warm_req, SPARE_WARM_UP_MS) == 0)
                s->warming_up = true;
        else
                park(s);
}

/* ---- adoption ---- */

/* Moves handle h (a pipe, the process or a timer) from spare s to vm. */
static void move_handle(Vm *vm, Vm *s, uv_handle_t *h)
{
        if (!h)
                return;
        h->data = vm;
        vm->handles_open++;
        s->handles_open--;
}

static const char *spare_phase_name(VmPhase p)
{
        return p == PHASE_WARM ? "warm" : p == PHASE_LOADING ? "loading" : "waiting";
}

/* QEMU, its pipes, QMP, the agent's connection and the run directory go from s to vm. */
static void move_qemu(Vm *vm, Vm *s)
{
        move_handle(vm, s, (uv_handle_t *) s->proc);
        move_handle(vm, s, (uv_handle_t *) s->out);
        move_handle(vm, s, (uv_handle_t *) s->err);
        move_handle(vm, s, (uv_handle_t *) s->in);
        move_handle(vm, s, (uv_handle_t *) s->boot_timer);
        vm->proc = s->proc;
        vm->out = s->out;
        vm->err = s->err;
        vm->in = s->in;
        vm->boot_timer = s->boot_timer;
        s->proc = NULL;
        s->out = s->err = s->in = NULL;
        s->boot_timer = NULL;
        vm->live_mb = s->live_mb; /* the spare's QEMU counts as the VM's now */
        vm->live_vcpus = s->live_vcpus;
        s->live_mb = 0;
        s->live_vcpus = 0;
        vm->qmp = s->qmp;
        s->qmp = NULL;
        qmp_set_data(vm->qmp, vm); /* its commands in flight too (stop, migrate-incoming) */
        vm->agent = s->agent;
        s->agent = NULL;
        if (vm->agent)
                (void) agent_client_set_owner(vm->agent, vm->name, vm);
        memcpy(vm->qemu_err, s->qemu_err, sizeof vm->qemu_err);
        vm->qemu_err_len = s->qemu_err_len;
        (void) rmdir(vm->dir); /* empty: the spare's directory holds the sockets */
        char *dir = vm->dir;
        vm->dir = s->dir;
        s->dir = dir;
        vm->nworkers = s->nworkers;
}

int vm_adopt_spare(Vm *vm, Vm *s, char *err, size_t errlen)
{
        VmPhase phase = s->phase;
        bool running = s->running_ns != 0;
        bool answered = s->warming_up; /* its agent answered; the warm-up is dropped */
        if (s->warming_up) {
                agent_request_cancel(&s->warm_req);
                s->warming_up = false;
        }
        move_qemu(vm, s);
        if (vm->boot_timer) { /* the spare's timeout: the clone's own starts below */
                vm_close_handle(vm, (uv_handle_t *) vm->boot_timer);
                vm->boot_timer = NULL;
        }
        free(vm->restore_label);
        vm->restore_label = strdup(vm->cfg.incoming);
        vm->spare_phase = spare_phase_name(phase);
        uint64_t now = events_mono_ns();
        vm->restore_started_ns = vm->spawned_ns = now;
        vm->qmp_ns = qmp_ready(vm->qmp) ? now : 0;
        vm->running_ns = running && phase != PHASE_WARM ? now : 0;
        vm->answered_ns = 0;
        vm_enter(vm, phase == PHASE_RESTORING ? PHASE_RESTORING : PHASE_LOADING);
        vm_free(s);
        vm_emit_spawn(vm, &vm->cfg, vm->proc->pid, NULL); /* the spare's event had its argv */
        uint64_t timeout_ms = vm->cfg.timeout_ms ? vm->cfg.timeout_ms : DEFAULT_BOOT_MS;
        int r = vm_start_boot_timer(vm, timeout_ms);
        if (r == 0 && phase == PHASE_WARM)
                r = resume(vm);
        if (r == 0 && answered)
                vm_restore_answered(vm);
        if (r < 0) {
                snprintf(err, errlen, "vm %s: restore: %s", vm->name, strerror(-r));
                vm_halt(vm);
        }
        return r;
}

/* ---- the pool ---- */

uint64_t vm_spares_room(const VmConfig *cfg, uint64_t need_mb)
{
        for (int i = 0; cfg->incoming && i < VM_MAX_SPARES; i++)
                if (spare_alive(spares[i]) && vm_config_equal(&spares[i]->cfg, cfg, VMCFG_SPARE))
                        return spares[i]->live_mb;
        uint64_t mb, limit = vm_memory_limit();
        unsigned vcpus;
        for (int i = 0; limit && i < VM_MAX_SPARES; i++) {
                vm_live_totals(&mb, &vcpus);
                if (mb + need_mb <= limit)
                        break;
                if (spares[i] && spares[i]->live_mb) {
                        vm_uncount_live(spares[i]);
                        vm_stop(spares[i], NULL, NULL); /* its slot is reused once it is gone */
                }
        }
        return 0;
}

/* A slot for a new spare: an empty one, or one whose spare was stopped and is gone. */
static int free_slot(void)
{
        for (int i = 0; i < VM_MAX_SPARES; i++) {
                Vm *s = spares[i];
                if (s && !s->proc && s->handles_open == 0 && !s->out && !s->err && !s->in &&
                    !s->qmp && !s->agent)
                        spares[i] = vm_free(s);
                if (!spares[i])
                        return i;
        }
        return -1;
}

/* Starts one spare like `like`; -errno when there is no room or it could not start. */
static int start_spare(Vm *like)
{
        uint64_t mb, limit = vm_memory_limit();
        unsigned vcpus;
        vm_live_totals(&mb, &vcpus);
        if (limit && mb + vm_config_memory_mb(&like->cfg) > limit)
                return -ENOSPC; /* a spare would take the file past its claim */
        int slot = free_slot();
        if (slot < 0)
                return -ENOSPC;
        char name[32], *parent = strdup(like->dir), *slash;
        if (!parent || !(slash = strrchr(parent, '/'))) {
                free(parent);
                return -ENOMEM;
        }
        *slash = 0;
        snprintf(name, sizeof name, "spare-%u", ++spare_seq);
        Vm *s = vm_new(like->loop, name, parent);
        free(parent);
        if (!s)
                return -ENOMEM;
        s->spare = true;
        char err[1024];
        int r = vm_config_copy(&s->cfg, &like->cfg);
        if (r == 0 && !(s->image = image_dup(like->image)))
                r = -ENOMEM;
        if (r == 0 && mkdir(s->dir, 0700) < 0)
                r = -errno;
        s->nworkers = like->nworkers;
        if (r == 0)
                r = vm_set_ram(s, like->cfg.ram_path, false);
        if (r == 0)
                r = vm_open_incoming(s, like->cfg.incoming, like->cfg.incoming, err, sizeof err);
        Argv a = {0};
        if (r == 0)
                r = vm_build_argv(s, &s->cfg, s->image, &a);
        if (r == 0)
                r = vm_spawn_qemu(s, a.v);
        if (s->incoming_fd >= 0) {
                (void) close(s->incoming_fd);
                s->incoming_fd = -1;
        }
        uint64_t timeout_ms = s->cfg.timeout_ms ? s->cfg.timeout_ms : DEFAULT_BOOT_MS;
        if (r == 0) {
                vm_enter(s, PHASE_RESTORING);
                s->spawned_ns = events_mono_ns();
                vm_emit_spawn(s, &s->cfg, s->proc->pid, a.v);
                r = vm_start_qmp(s, timeout_ms);
        }
        if (r == 0)
                r = vm_start_agent(s, timeout_ms);
        if (r == 0)
                r = vm_start_boot_timer(s, timeout_ms);
        if (r < 0 && s->proc)
                vm_halt(s);
        vm_argv_free(&a);
        spares[slot] = s; /* even a failed one: vm_spares_stop cleans it up */
        return r;
}

void vm_prelaunch(Vm *like)
{
        int want = like->cfg.spares < 0 ? VM_DEFAULT_SPARES : like->cfg.spares;
        int have = 0;
        if (like->nnics > 0)
                return;
        for (int i = 0; i < VM_MAX_SPARES; i++)
                if (spare_alive(spares[i]) &&
                    vm_config_equal(&spares[i]->cfg, &like->cfg, VMCFG_SPARE))
                        have++;
        while (have < want && start_spare(like) == 0)
                have++;
}

int vm_spares_stop(void (*done_cb)(Vm *vm, void *data), void *data)
{
        int n = 0;
        for (int i = 0; i < VM_MAX_SPARES; i++)
                if (spares[i]) {
                        n++;
                        vm_stop(spares[i], done_cb, data);
                }
        return n;
}

void vm_spares_free(void)
{
        for (int i = 0; i < VM_MAX_SPARES; i++)
                spares[i] = vm_free(spares[i]);
}
