/* parent_death.c: a child of the runner that dies with it (PR_SET_PDEATHSIG): the __qemu and
 * __pdeathsig wrappers, and provium-local-vm. Apart so that provium-local-vm, which links
 * nothing else of provium's, has it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "vm.h"

int vm_die_with_parent(const char *ppid)
{
        pid_t parent = (pid_t) atol(ppid);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
                perror("provium: prctl(PR_SET_PDEATHSIG)");
                return -1;
        }
        /* The parent may have died before prctl took effect. */
        return getppid() == parent ? 0 : -1;
}
