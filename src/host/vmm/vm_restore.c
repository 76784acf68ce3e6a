/* vm_restore.c: vm_restore, a VM back to one of its snapshots: the old QEMU is killed and a new
 * one loads the saved state, its RAM a private copy. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vm_internal.h"

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
        vm->console_eof = vm->exit_expected = vm->exit_wanted = false;
        vm->exit_status = 0;
        vm->term_signal = 0;
        vm->qemu_err_len = 0;
        vm->qemu_err[0] = 0;
        free(vm->death);
        vm->death = NULL;
        if (vm->disks_from) { /* the old QEMU is gone: the disks go back to the snapshot's */
                vm_disks_restoring(vm, vm->disks_from);
                free(vm->disks_from);
                vm->disks_from = NULL;
        }
        return vm_launch(vm, err, errlen);
}

void vm_finish_restart(Vm *vm)
{
        vm_emit_exit(vm);
        vm_disks_qemu_gone(vm);
        if (vm->console_fn) { /* a console stream ends with its QEMU */
                vm->console_fn(vm->console_data, NULL, 0);
                vm->console_fn = NULL;
        }
        char err[1024];
        int r = relaunch(vm, err, sizeof err);
        if (r < 0) {
                if (vm->phase == PHASE_RESTARTING) /* no new QEMU: nothing runs now */
                        vm_enter(vm, PHASE_EXITED);
                vm_boot_end(vm, r, err);
        }
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
        VmPhase ph = vm->phase;
        if (id == 0 || id > vm->nsnaps) {
                snprintf(err, errlen, "vm %s: restore %s: no such snapshot of this VM", vm->name,
                         label);
                return -ENOENT;
        }
        if (ph != PHASE_RUNNING && ph != PHASE_PAUSED && ph != PHASE_EXITING &&
            ph != PHASE_EXITED) {
                snprintf(err, errlen, "vm %s: restore %s: the VM is %s", vm->name, label,
                         ph == PHASE_SAVING ? "saving a snapshot" : vm_state_name(vm_state(vm)));
                return -EBUSY;
        }
        const VmSnap *snap = &vm->snaps[id - 1];
        int r = restore_ram(vm, snap, label, err, errlen);
        if (r == 0)
                r = vm_open_incoming(vm, snap->state, label, err, errlen);
        if (r < 0)
                return r;
        vm->incoming_has_ram = !snap->own_ram;
        free(vm->disks_from);
        vm->disks_from = strdup(snap->state); /* NULL: the disks stay as they are */
        if (retire_clients(vm) < 0) {
                snprintf(err, errlen, "vm %s: restore %s: out of memory", vm->name, label);
                (void) close(vm->incoming_fd);
                vm->incoming_fd = -1;
                free(vm->restore_label);
                vm->restore_label = NULL;
                return -ENOMEM;
        }
        vm->qmp = qmp_free(vm->qmp);
        vm_stop_pressing(vm);
        if (ph == PHASE_EXITED) { /* nothing to wait for: the new QEMU starts now */
                r = relaunch(vm, err, errlen);
                if (r < 0) {
                        free(vm->restore_label);
                        vm->restore_label = NULL;
                        return r;
                }
        } else {
                /* The old QEMU's exit (or the end of its console) starts the new one. */
                vm_enter(vm, PHASE_RESTARTING);
                if (vm->proc)
                        (void) uv_process_kill(vm->proc, SIGKILL);
        }
        vm->boot_cb = cb;
        vm->boot_data = data;
        return 0;
}
