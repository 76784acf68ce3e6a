/* vm_wrap.c: what a VM's process does before it is QEMU or a local VM's keeper: it dies with
 * its runner (PR_SET_PDEATHSIG), and QEMU drops every capability first. provium does it as
 * `provium __qemu|__pdeathsig|__local-vm`, and so does provium-vm (vm_program_main.c), the
 * same code in a program that links only the C library, which the runner starts instead when
 * it is beside provium: exec'ing provium loads some 35 shared libraries, most of a local
 * VM's start (docs/local.md). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* QEMU gets no capabilities: its bounding set is emptied (so that exec, even as root, grants
 * none) and no exec can add any back (no_new_privs, which -sandbox wants anyway). What QEMU
 * opens is root's own: the run directory, the cache, /dev/kvm (root's), persistent TAPs owned
 * by root (TUNSETOWNER, so that attaching needs no CAP_NET_ADMIN). A guest that escapes both
 * this and the seccomp filter is a root without capabilities: it cannot mount, load modules,
 * trace or signal others' processes, change the network, or pass file permissions. */
static int drop_capabilities(void)
{
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return -errno;
        if (geteuid() != 0)
                return 0; /* nothing to drop, and no right to change the bounding set */
        for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
                        return -errno;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                return -errno;
        return 0;
}

int vm_pdeathsig_exec(int argc, char **argv)
{
        /* argv: __pdeathsig|__qemu PPID PROGRAM ARGS... */
        if (argc < 3) {
                fprintf(stderr, "provium: %s: usage: %s PPID PROGRAM [ARGS]\n", argv[0], argv[0]);
                return 2;
        }
        if (vm_die_with_parent(argv[1]) < 0)
                return 1;
        int r = strcmp(argv[0], "__qemu") == 0 ? drop_capabilities() : 0;
        if (r < 0) {
                fprintf(stderr, "provium: %s: dropping capabilities: %s\n", argv[0], strerror(-r));
                return 1;
        }
        execvp(argv[2], argv + 2);
        fprintf(stderr, "provium: exec %s: %s\n", argv[2], strerror(errno));
        return 127;
}

/* provium-vm beside provium (a build tree), or in ../libexec/provium (installed). */
const char *vm_program(void)
{
        static char path[PATH_MAX];
        static const char *const where[] = {"/provium-vm", "/../libexec/provium/provium-vm"};
        if (path[0])
                return path;
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        char *slash = n > 0 ? memrchr(exe, '/', (size_t) n) : NULL;
        for (size_t i = 0; slash && i < sizeof where / sizeof *where; i++) {
                int len = snprintf(path, sizeof path, "%.*s%s", (int) (slash - exe), exe, where[i]);
                if (len > 0 && (size_t) len < sizeof path && access(path, X_OK) == 0)
                        return path;
        }
        snprintf(path, sizeof path, "/proc/self/exe");
        return path;
}
