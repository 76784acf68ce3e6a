/* vm_power.c: a VM's power: pause and resume, the ACPI power button, power loss, and exits
 * that are expected. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include "vm_internal.h"

void vm_expect_exit(Vm *vm)
{
        vm->exit_wanted = true;
}

void vm_on_exit(Vm *vm, void (*fn)(Vm *vm, void *data), void *data)
{
        vm->exit_fn = fn;
        vm->exit_data = data;
        if (fn && vm->phase == PHASE_EXITED) {
                vm->exit_fn = NULL;
                fn(vm, data);
        }
}

int vm_qmp(Vm *vm, const char *cmd, QmpReplyFn cb, void *data)
{
        if (vm_is_local(vm) && (strcmp(cmd, "stop") == 0 || strcmp(cmd, "cont") == 0))
                return vm_local_freeze(vm, cmd[0] == 's', cb, data);
        if (vm_is_local(vm))
                return -ENOTSUP;
        if (!vm->qmp)
                return -ENOTCONN;
        return qmp_execute(vm->qmp, cmd, NULL, cb, data);
}

void vm_set_paused(Vm *vm, bool paused)
{
        if (paused && vm->phase == PHASE_RUNNING)
                vm_enter(vm, PHASE_PAUSED);
        else if (!paused && vm->phase == PHASE_PAUSED)
                vm_enter(vm, PHASE_RUNNING);
}

/* A press that reaches the guest before its button driver is up is lost, so the button is
 * pressed again every 2 s (at most 10 times) until QEMU exits. */
#define PRESS_AGAIN_MS 2000
#define PRESS_MAX      10

void vm_stop_pressing(Vm *vm)
{
        if (vm->press) {
                vm_close_handle(vm, (uv_handle_t *) vm->press);
                vm->press = NULL;
        }
}

static void on_press_again(uv_timer_t *t)
{
        Vm *vm = t->data;
        if (vm->phase == PHASE_EXITED || ++vm->presses >= PRESS_MAX || !vm->qmp) {
                vm_stop_pressing(vm);
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
