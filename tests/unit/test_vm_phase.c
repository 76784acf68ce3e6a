/* A VM's phases (src/host/vmm/vm.c): the legal transitions pass and show through vm_state as
 * Lua sees it; an illegal one aborts the process, naming both phases. No QEMU is started. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "vm_internal.h"

static Vm *new_vm(uv_loop_t *loop)
{
        Vm *vm = vm_new(loop, "t", "/nonexistent");
        assert_non_null(vm);
        assert_int_equal(vm_state(vm), VM_DEFINED);
        return vm;
}

static void test_a_life_of_legal_phases(void **state)
{
        uv_loop_t loop;
        assert_int_equal(uv_loop_init(&loop), 0);
        Vm *vm = new_vm(&loop);
        static const struct {
                VmPhase phase;
                VmState seen;
        } life[] = {
            {PHASE_RESOLVING, VM_DEFINED}, {PHASE_BOOTING, VM_BOOTING},
            {PHASE_RUNNING, VM_RUNNING},   {PHASE_PAUSED, VM_PAUSED},
            {PHASE_RUNNING, VM_RUNNING},   {PHASE_SAVING, VM_RUNNING},
            {PHASE_RUNNING, VM_RUNNING},   {PHASE_RESTARTING, VM_BOOTING},
            {PHASE_RESTORING, VM_BOOTING}, {PHASE_LOADING, VM_BOOTING},
            {PHASE_RUNNING, VM_RUNNING},   {PHASE_STOPPING, VM_STOPPING},
            {PHASE_EXITING, VM_EXITED},    {PHASE_EXITED, VM_EXITED},
            {PHASE_RESTORING, VM_BOOTING},
        };
        for (size_t i = 0; i < sizeof life / sizeof *life; i++) {
                vm_enter(vm, life[i].phase);
                assert_int_equal(vm_state(vm), life[i].seen);
        }
        vm_free(vm);
        assert_int_equal(uv_loop_close(&loop), 0);
}

/* A spare for a fixture's next clone (vm_spare.c): loaded, answered, then stopped, WARM, until a
 * clone adopts its QEMU or the file ends. It never runs as itself. */
static void test_a_spare_waits_warm(void **state)
{
        uv_loop_t loop;
        assert_int_equal(uv_loop_init(&loop), 0);
        Vm *vm = new_vm(&loop);
        static const VmPhase life[] = {PHASE_RESTORING, PHASE_LOADING, PHASE_WARM,
                                       PHASE_STOPPING,  PHASE_EXITING, PHASE_EXITED};
        for (size_t i = 0; i < sizeof life / sizeof *life; i++) {
                vm_enter(vm, life[i]);
                assert_int_equal(vm_state(vm), i < 3    ? VM_BOOTING
                                               : i == 3 ? VM_STOPPING
                                                        : VM_EXITED);
        }
        assert_string_equal(vm_phase_name(PHASE_WARM), "warm");
        assert_string_equal(vm_phase_name(PHASE_EXITED), "exited");
        vm_free(vm);
        assert_int_equal(uv_loop_close(&loop), 0);
}

/* Runs from -> to in a child; returns its wait status. */
static int try_transition(VmPhase from, VmPhase to)
{
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
                uv_loop_t loop;
                (void) uv_loop_init(&loop);
                Vm *vm = vm_new(&loop, "t", "/nonexistent");
                vm->phase = from;
                if (!freopen("/dev/null", "w", stderr))
                        _exit(3);
                vm_enter(vm, to);
                _exit(0);
        }
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        return status;
}

static void test_an_illegal_phase_change_aborts(void **state)
{
        int st = try_transition(PHASE_DEFINED, PHASE_RUNNING);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
        st = try_transition(PHASE_EXITED, PHASE_RUNNING);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
        st = try_transition(PHASE_SAVING, PHASE_PAUSED);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
        st = try_transition(PHASE_WARM, PHASE_RUNNING); /* a clone runs, not its spare */
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
        st = try_transition(PHASE_BOOTING, PHASE_WARM);
        assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT);
        st = try_transition(PHASE_BOOTING, PHASE_RUNNING); /* and a legal one does not */
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_a_life_of_legal_phases),
            cmocka_unit_test(test_a_spare_waits_warm),
            cmocka_unit_test(test_an_illegal_phase_change_aborts),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
