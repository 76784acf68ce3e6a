/* vm_spare.c: spare QEMUs for fixture restores.
 *
 * Starting QEMU costs about 100 ms here, mostly the dynamic linker and QEMU's own start, before
 * a saved state can even begin to load. So once a fixture has been restored, a spare QEMU is
 * started for its next clone: same configuration, same saved state as its fd 3, waiting in
 * -incoming defer with QMP connected. The next restore of that fixture adopts it and only
 * loads the state. Spares are stopped with the file (vm_spares_stop). */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "events.h"
#include "vm_internal.h"

#define SPARES_MAX 4
static Vm *spares[SPARES_MAX];
static unsigned spare_seq;

Vm *vm_take_spare(const VmConfig *cfg)
{
        for (int i = 0; i < SPARES_MAX; i++) {
                Vm *s = spares[i];
                if (s && s->proc && s->phase == PHASE_RESTORING &&
                    vm_config_equal(&s->cfg, cfg, VMCFG_SPARE)) {
                        spares[i] = NULL;
                        return s;
                }
        }
        return NULL;
}

/* Moves handle h (a pipe or the process) from spare s to vm. */
static void move_handle(Vm *vm, Vm *s, uv_handle_t *h)
{
        if (!h)
                return;
        h->data = vm;
        vm->handles_open++;
        s->handles_open--;
}

/* vm takes over spare s's QEMU: its process, console pipes, QMP and run directory. */
int vm_adopt_spare(Vm *vm, Vm *s, char *err, size_t errlen)
{
        move_handle(vm, s, (uv_handle_t *) s->proc);
        move_handle(vm, s, (uv_handle_t *) s->out);
        move_handle(vm, s, (uv_handle_t *) s->err);
        move_handle(vm, s, (uv_handle_t *) s->in);
        vm->proc = s->proc;
        vm->live_mb = s->live_mb; /* the spare's QEMU counts as the VM's now */
        vm->live_vcpus = s->live_vcpus;
        s->live_mb = 0;
        s->live_vcpus = 0;
        vm->out = s->out;
        vm->err = s->err;
        vm->in = s->in;
        s->proc = NULL;
        s->out = s->err = s->in = NULL;
        vm->qmp = s->qmp;
        s->qmp = NULL;
        qmp_set_data(vm->qmp, vm);
        memcpy(vm->qemu_err, s->qemu_err, sizeof vm->qemu_err);
        vm->qemu_err_len = s->qemu_err_len;
        (void) rmdir(vm->dir); /* empty: the spare's directory holds the sockets */
        char *dir = vm->dir;
        vm->dir = s->dir;
        s->dir = dir;
        vm->nworkers = s->nworkers;
        free(vm->restore_label);
        vm->restore_label = strdup(vm->cfg.incoming);
        vm->restore_started_ns = events_mono_ns();
        vm->spawned_ns = vm->restore_started_ns;
        vm->running_ns = vm->answered_ns = 0;
        vm->qmp_ns = qmp_ready(vm->qmp) ? vm->restore_started_ns : 0;
        vm_enter(vm, PHASE_RESTORING);
        vm_free(s);
        vm_emit_spawn(vm, &vm->cfg, vm->proc->pid, NULL); /* the spare's event had its argv */
        uint64_t timeout_ms = vm->cfg.timeout_ms ? vm->cfg.timeout_ms : DEFAULT_BOOT_MS;
        int r = vm_start_agent(vm, timeout_ms);
        if (r == 0)
                r = vm_start_boot_timer(vm, timeout_ms);
        if (r < 0) {
                snprintf(err, errlen, "vm %s: restore: %s", vm->name, strerror(-r));
                vm_halt(vm);
        }
        return r;
}

/* Starts a spare for the next clone of the fixture vm was restored from (if there is room and
 * none is waiting for it). Failures only mean there is no spare. */
void vm_prelaunch(Vm *like)
{
        int slot = -1;
        if (like->nnics > 0)
                return;
        uint64_t mb, limit = vm_memory_limit();
        unsigned vcpus;
        vm_live_totals(&mb, &vcpus);
        if (limit && mb + vm_config_memory_mb(&like->cfg) > limit)
                return; /* a spare would take the file past its claim */
        for (int i = SPARES_MAX - 1; i >= 0; i--) {
                if (spares[i] && vm_config_equal(&spares[i]->cfg, &like->cfg, VMCFG_SPARE))
                        return;
                if (!spares[i])
                        slot = i;
        }
        if (slot < 0)
                return;
        char name[32], *parent = strdup(like->dir), *slash;
        if (!parent || !(slash = strrchr(parent, '/'))) {
                free(parent);
                return;
        }
        *slash = 0;
        snprintf(name, sizeof name, "spare-%u", ++spare_seq);
        Vm *s = vm_new(like->loop, name, parent);
        free(parent);
        if (!s)
                return;
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
        if (r == 0) {
                vm_enter(s, PHASE_RESTORING);
                s->spawned_ns = events_mono_ns();
                vm_emit_spawn(s, &s->cfg, s->proc->pid, a.v);
                r = vm_start_qmp(s, s->cfg.timeout_ms ? s->cfg.timeout_ms : DEFAULT_BOOT_MS);
        }
        vm_argv_free(&a);
        spares[slot] = s; /* even a failed one: vm_spares_stop cleans it up */
}

int vm_spares_stop(void (*done_cb)(Vm *vm, void *data), void *data)
{
        int n = 0;
        for (int i = 0; i < SPARES_MAX; i++)
                if (spares[i]) {
                        n++;
                        vm_stop(spares[i], done_cb, data);
                }
        return n;
}

void vm_spares_free(void)
{
        for (int i = 0; i < SPARES_MAX; i++)
                spares[i] = vm_free(spares[i]);
}
