/* local_vm_main.c: provium-local-vm, the program a local VM is: `provium __local-vm`
 * (local_sandbox.c) as an executable of its own that links only the C library, so that a
 * local VM's start does not load provium's thirty-odd shared libraries (docs/local.md). The
 * runner runs it from beside its own executable when it is there, else `provium __local-vm`.
 * argv: provium-local-vm __local-vm PPID DIR TREE HOSTNAME CGROUP MEMORY_MB NSOCKETS */
#include <stdio.h>
#include <string.h>

#include "vm.h"

int main(int argc, char **argv)
{
        if (argc < 2 || strcmp(argv[1], "__local-vm") != 0) {
                fprintf(stderr, "provium-local-vm: internal to provium --vmm local\n");
                return 2;
        }
        return vm_local_sandbox_main(argc - 1, argv + 1);
}
