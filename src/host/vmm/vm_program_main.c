/* vm_program_main.c: provium-vm, the program a VM's process starts as (vm_wrap.c): "provium-vm
 * __qemu PPID QEMU ARGS..." (QEMU with no capabilities, dying with its runner) and "provium-vm
 * __local-vm PPID DIR TREE HOSTNAME CGROUP MEMORY_MB NSOCKETS" (a local VM's keeper,
 * local_sandbox.c). It links only the C library, so that starting it does not load provium's
 * libraries; provium does the same as `provium __qemu` or `provium __local-vm` when it is
 * not beside provium. */
#include <stdio.h>
#include <string.h>

#include "vm.h"

int main(int argc, char **argv)
{
        if (argc >= 2 && strcmp(argv[1], "__local-vm") == 0)
                return vm_local_sandbox_main(argc - 1, argv + 1);
        if (argc >= 2 && (strcmp(argv[1], "__qemu") == 0 || strcmp(argv[1], "__pdeathsig") == 0))
                return vm_pdeathsig_exec(argc - 1, argv + 1);
        fprintf(stderr, "provium-vm: internal to provium (__qemu, __pdeathsig, __local-vm)\n");
        return 2;
}
