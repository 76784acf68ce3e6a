/* local_sandbox.c: `provium __local-vm`, the process a local VM is (vm_local.c starts it):
 * provium-agent as PID 1 of fresh namespaces on the host, with the image's tree as its root.
 *
 * The process that starts here (the keeper) stays outside: it joins the VM's cgroup, binds the
 * agent's sockets in the VM's run directory, makes a PID namespace and forks the VM's init
 * into it. The init, still the host's root, makes a mount namespace and builds the VM's root:
 *
 *   <dir>/rw     tmpfs (the VM's memory size): the overlay's upper and work directories
 *   <dir>/root   overlay: the image's tree (read-only, shared by every local VM) under rw
 *                /proc (this PID namespace's; /proc/sys and the kernel's own files read-only),
 *                /sys read-only, /dev (tmpfs: null zero full random urandom tty bound from
 *                the host, a devpts of its own), /tmp /run /dev/shm (tmpfs)
 *
 * pivots into it and drops the host's tree, then makes a user namespace (every ID mapped to
 * itself, written by the keeper from outside), with the network, UTS, IPC and cgroup
 * namespaces owned by it, and a mount namespace once more: the mounts made above become
 * locked, so root inside cannot unmount or remount them, and its capabilities count in its
 * own namespaces only (no module loads, no device nodes, no host clock, no reboot). Then it
 * execs the image's agent with --local on the bound sockets.
 *
 * As another user than root, the keeper makes the user namespace first (root inside is that
 * user, the one ID it may map), with the PID namespace it owns; the init builds the same root
 * in namespaces of its own, and there is no second step: what root inside can do is what the
 * user can. The image's tree is then the user's own (image.h).
 *
 * Nothing outlives the VM: the keeper dies with the runner (PDEATHSIG, set first thing), the
 * init with the keeper (PDEATHSIG), every process inside with the init (the PID namespace),
 * and the mounts and tmpfs with the last of them. The run directory is the runner's.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "image.h"
#include "vm_internal.h"

#define PATH_BUF            4096
#define SANDBOX_MAX_SOCKETS (VM_MAX_WORKERS + 1)
#define AGENT_IN_ROOT       "/init" /* the image's agent, as a guest kernel starts it */

typedef struct Sandbox {
        const char *dir;      /* the VM's run directory (sockets, mount points) */
        const char *tree;     /* the image's tree: the overlay's lower layer */
        const char *hostname; /* the VM's name */
        const char *cgroup;   /* a cgroup v2 directory to join, or "" */
        unsigned long memory_mb;
        int nsockets; /* agent0.sock, and one per worker */
        int sockets[SANDBOX_MAX_SOCKETS];
        int to_init[2], to_keeper[2]; /* the keeper and the init step through the ID mapping */
        bool root;    /* run by root: the two-step sandbox; else one user namespace, made first */
        char ids[64]; /* "uid=N,gid=N": the VM's root as the init sees it, for tmpfs options */
        unsigned root_id;
} Sandbox;

__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
        char line[1024];
        va_list ap;
        va_start(ap, fmt);
        (void) vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        (void) dprintf(STDERR_FILENO, "provium: local vm: %s\n", line);
}

/* Says what failed (with errno's reason) and returns -1, for `return fail(...)`. */
__attribute__((format(printf, 1, 2))) static int fail(const char *fmt, ...)
{
        int e = errno;
        char what[768];
        va_list ap;
        va_start(ap, fmt);
        (void) vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        say("%s: %s", what, strerror(e));
        return -1;
}

/* buf = a "/" b, or NULL (and ENAMETOOLONG) when it does not fit in PATH_BUF bytes. */
static char *at(char *buf, const char *a, const char *b)
{
        int n = snprintf(buf, PATH_BUF, "%s/%s", a, b);
        if (n < 0 || n >= PATH_BUF) {
                errno = ENAMETOOLONG;
                return NULL;
        }
        return buf;
}

/* ---- the keeper ---- */

static int write_file(const char *path, const char *text)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return fail("open %s", path);
        ssize_t n = write(fd, text, strlen(text));
        int e = errno;
        (void) close(fd);
        errno = e;
        return n == (ssize_t) strlen(text) ? 0 : fail("write %s", path);
}

static int join_cgroup(const Sandbox *s)
{
        if (!s->cgroup[0])
                return 0;
        char path[PATH_BUF], pid[32];
        snprintf(pid, sizeof pid, "%d\n", (int) getpid());
        if (!at(path, s->cgroup, "cgroup.procs"))
                return fail("%s", s->cgroup);
        return write_file(path, pid);
}

static int bind_sockets(Sandbox *s)
{
        mode_t old = umask(077);
        for (int i = 0; i < s->nsockets; i++) {
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                int n = snprintf(sa.sun_path, sizeof sa.sun_path, "%s/agent%d.sock", s->dir, i);
                if (n < 0 || (size_t) n >= sizeof sa.sun_path) {
                        errno = ENAMETOOLONG;
                        umask(old);
                        return fail("socket in %s", s->dir);
                }
                int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0 ||
                    listen(fd, 4) < 0) {
                        umask(old);
                        return fail("listen on %s", sa.sun_path);
                }
                s->sockets[i] = fd;
        }
        umask(old);
        return 0;
}

/* The init has made its user namespace: its IDs 0.. are the image tree's owners on the host
 * (image.h), so that root inside is nobody outside. */
static int map_ids(pid_t init)
{
        char path[64], all[64];
        snprintf(all, sizeof all, "0 %u %u\n", IMAGE_TREE_ID_BASE, IMAGE_TREE_IDS);
        snprintf(path, sizeof path, "/proc/%d/uid_map", (int) init);
        if (write_file(path, all) < 0)
                return -1;
        snprintf(path, sizeof path, "/proc/%d/gid_map", (int) init);
        return write_file(path, all);
}

/* As a user: a user namespace where root is this user, the one ID it may map itself. */
static int enter_own_user_namespace(void)
{
        char map[64];
        uid_t uid = geteuid();
        gid_t gid = getegid();
        if (unshare(CLONE_NEWUSER) < 0)
                return fail("unshare the user namespace (are unprivileged user namespaces "
                            "allowed here? kernel.unprivileged_userns_clone, "
                            "user.max_user_namespaces)");
        if (write_file("/proc/self/setgroups", "deny\n") < 0)
                return -1;
        snprintf(map, sizeof map, "0 %u 1\n", (unsigned) uid);
        if (write_file("/proc/self/uid_map", map) < 0)
                return -1;
        snprintf(map, sizeof map, "0 %u 1\n", (unsigned) gid);
        return write_file("/proc/self/gid_map", map);
}

/* The init's PID for the runner, which plugs network cards into its namespace. */
static int write_pid(const Sandbox *s, pid_t init)
{
        char path[PATH_BUF], tmp[PATH_BUF], text[32];
        if (!at(path, s->dir, VM_LOCAL_PID_FILE) || !at(tmp, s->dir, VM_LOCAL_PID_FILE ".tmp"))
                return fail("%s", s->dir);
        snprintf(text, sizeof text, "%d\n", (int) init);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return fail("create %s", tmp);
        ssize_t n = write(fd, text, strlen(text));
        if (close(fd) < 0 || n != (ssize_t) strlen(text) || rename(tmp, path) < 0)
                return fail("write %s", path);
        return 0;
}

static char step_read(int fd)
{
        char c = 0;
        while (read(fd, &c, 1) < 0 && errno == EINTR)
                ;
        return c;
}

static void step_write(int fd, char c)
{
        while (write(fd, &c, 1) < 0 && errno == EINTR)
                ;
}

/* Waits for the init and exits as it did (a signal as 128 + its number). */
static int keep(Sandbox *s, pid_t init)
{
        (void) close(s->to_init[0]);
        (void) close(s->to_keeper[1]);
        if (!s->root) /* one user namespace, mapped already */
                (void) write_pid(s, init);
        else if (step_read(s->to_keeper[0]) == 'U')
                step_write(s->to_init[1],
                           map_ids(init) == 0 && write_pid(s, init) == 0 ? 'M' : 'X');
        for (int i = 0; i < s->nsockets; i++)
                (void) close(s->sockets[i]);
        (void) close(s->to_keeper[0]); /* to_init stays open: the init sees the keeper alive */
        int status;
        while (waitpid(init, &status, 0) < 0)
                if (errno != EINTR)
                        return fail("waitpid"), 1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* ---- the init: the root ---- */

static int mount_at(const char *src, const char *dir, const char *type, unsigned long flags,
                    const char *data)
{
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return fail("mkdir %s", dir);
        if (mount(src, dir, type, flags, data) < 0)
                return fail("mount %s on %s", type ? type : src, dir);
        return 0;
}

/* A read-only bind of path onto itself (or of src onto path). */
static int bind_ro(const char *src, const char *path)
{
        if (mount(src, path, NULL, MS_BIND | MS_REC, NULL) < 0)
                return fail("bind %s", path);
        if (mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) <
            0)
                return fail("read-only %s", path);
        return 0;
}

/* mount_at under root: root/rel. */
static int mount_in(const char *root, const char *rel, const char *type, unsigned long flags,
                    const char *data)
{
        char p[PATH_BUF];
        if (!at(p, root, rel))
                return fail("%s/%s", root, rel);
        return mount_at(type, p, type, flags, data);
}

static int make_overlay(const Sandbox *s, const char *root)
{
        char rw[PATH_BUF], up[PATH_BUF], work[PATH_BUF], size[64];
        snprintf(size, sizeof size, "size=%lum,mode=0755", s->memory_mb);
        if (!at(rw, s->dir, "rw") || !at(up, rw, "upper") || !at(work, rw, "work"))
                return fail("%s", s->dir);
        if (mount_at("tmpfs", rw, "tmpfs", MS_NOSUID | MS_NODEV, size) < 0)
                return -1;
        /* the upper directory is the root's "/" (owned by the VM's root, as the tree's is) */
        if (mkdir(up, 0755) < 0 || mkdir(work, 0755) < 0 || chown(up, s->root_id, s->root_id) < 0)
                return fail("mkdir in %s", rw);
        char *data = NULL;
        if (asprintf(&data, "lowerdir=%s,upperdir=%s,workdir=%s", s->tree, up, work) < 0)
                return fail("overlay options");
        int r = mount_at("overlay", root, "overlay", 0, data);
        free(data);
        return r;
}

/* /proc of the VM's PID namespace, with what reaches the host's kernel read-only or hidden. */
static int make_proc(const char *root)
{
        char proc[PATH_BUF], p[PATH_BUF];
        if (!at(proc, root, "proc"))
                return fail("%s/proc", root);
        if (mount_at("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                return -1;
        static const char *const ro[] = {"sys", "sysrq-trigger", "irq", "bus", "fs"};
        for (size_t i = 0; i < sizeof ro / sizeof *ro; i++)
                if (at(p, proc, ro[i]) && access(p, F_OK) == 0 && bind_ro(p, p) < 0)
                        return -1;
        /* but /proc/sys/net is the VM's own network namespace's (ip_forward on a router VM) */
        const unsigned long rw = MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC;
        if (at(p, proc, "sys/net") &&
            (mount(p, p, NULL, MS_BIND, NULL) < 0 || mount(NULL, p, NULL, rw, NULL) < 0))
                return fail("bind %s read-write", p);
        static const char *const hidden[] = {"kcore", "kmsg", "keys", "timer_list"};
        for (size_t i = 0; i < sizeof hidden / sizeof *hidden; i++)
                if (at(p, proc, hidden[i]) && access(p, F_OK) == 0 && bind_ro("/dev/null", p) < 0)
                        return -1;
        return 0;
}

static int make_dev(const char *root, const char *ids)
{
        char dev[PATH_BUF], p[PATH_BUF];
        if (!at(dev, root, "dev"))
                return fail("%s/dev", root);
        char opts[128];
        snprintf(opts, sizeof opts, "mode=0755,size=1m,%s", ids);
        if (mount_at("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, opts) < 0)
                return -1;
        static const char *const nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
        for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
                char host[64];
                snprintf(host, sizeof host, "/dev/%s", nodes[i]);
                if (!at(p, dev, nodes[i]))
                        return fail("%s", dev);
                int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
                if (fd < 0)
                        return fail("create %s", p);
                (void) close(fd);
                if (mount(host, p, NULL, MS_BIND, NULL) < 0)
                        return fail("bind %s", host);
        }
        if (mount_in(dev, "pts", "devpts", MS_NOSUID | MS_NOEXEC,
                     "newinstance,ptmxmode=0666,mode=0620") < 0 ||
            (snprintf(opts, sizeof opts, "mode=1777,%s", ids),
             mount_in(dev, "shm", "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0))
                return -1;
        static const char *const links[][2] = {{"pts/ptmx", "ptmx"},
                                               {"/proc/self/fd", "fd"},
                                               {"/proc/self/fd/0", "stdin"},
                                               {"/proc/self/fd/1", "stdout"},
                                               {"/proc/self/fd/2", "stderr"}};
        for (size_t i = 0; i < sizeof links / sizeof *links; i++)
                if (!at(p, dev, links[i][1]) || symlink(links[i][0], p) < 0)
                        return fail("symlink %s/%s", dev, links[i][1]);
        return 0;
}

static int make_root(const Sandbox *s, const char *root)
{
        /* as a user, the namespaces the keeper's user namespace owns are made here at once */
        const int user_ns = CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP;
        if (unshare(CLONE_NEWNS | (s->root ? 0 : user_ns)) < 0)
                return fail("unshare the mount%s namespace",
                            s->root ? "" : ", network, UTS, IPC and cgroup");
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return fail("make / private");
        /* a sysfs visible here is what lets the user namespace mount its own (mount(2)) */
        if (make_overlay(s, root) < 0 || make_proc(root) < 0 ||
            mount_in(root, "sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) <
                0 ||
            make_dev(root, s->ids) < 0)
                return -1;
        char opts[128];
        snprintf(opts, sizeof opts, "mode=1777,%s", s->ids);
        if (mount_in(root, "tmp", "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
                return -1;
        snprintf(opts, sizeof opts, "mode=0755,%s", s->ids);
        return mount_in(root, "run", "tmpfs", MS_NOSUID | MS_NODEV, opts);
}

/* Into root, leaving nothing of the host's tree (pivot_root(".", ".") then detach). */
static int enter_root(const char *root)
{
        if (chdir(root) < 0)
                return fail("chdir %s", root);
        if (syscall(SYS_pivot_root, ".", ".") < 0)
                return fail("pivot_root %s", root);
        if (umount2(".", MNT_DETACH) < 0)
                return fail("detach the host's root");
        if (chdir("/") < 0)
                return fail("chdir /");
        return 0;
}

/* The user namespace and the namespaces it owns; the keeper writes the ID maps. */
static int enter_user_namespace(Sandbox *s)
{
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWIPC |
                    CLONE_NEWCGROUP) < 0)
                return fail("unshare the user, network, UTS, IPC and cgroup namespaces");
        step_write(s->to_keeper[1], 'U');
        if (step_read(s->to_init[0]) != 'M') {
                errno = EPERM;
                return fail("map the user namespace's IDs");
        }
        if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
                return fail("become root of the user namespace");
        /* new credentials cleared the parent-death signal: set it again, then make sure the
         * keeper did not die meanwhile (its end of to_init closes only with it) */
        struct pollfd alive = {.fd = s->to_init[0], .events = POLLIN};
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || poll(&alive, 1, 0) != 0)
                return fail("die with the keeper");
        /* /sys now shows this network namespace; what is not its own stays the host's root's */
        if (mount("sysfs", "/sys", "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                return fail("mount sysfs on /sys");
        return 0;
}

static void exec_agent(Sandbox *s)
{
        /* the sockets become fds 3.. in order; nothing else is inherited */
        char *argv[3 + 2 * SANDBOX_MAX_SOCKETS], fds[SANDBOX_MAX_SOCKETS][12];
        int n = 0;
        argv[n++] = "/init";
        argv[n++] = "--local";
        for (int i = 0; i < s->nsockets; i++) {
                int fd = fcntl(s->sockets[i], F_DUPFD_CLOEXEC, 3 + SANDBOX_MAX_SOCKETS);
                if (fd < 0)
                        _exit(fail("dup"));
                s->sockets[i] = fd;
        }
        for (int i = 0; i < s->nsockets; i++) {
                if (dup2(s->sockets[i], 3 + i) < 0)
                        _exit(fail("dup2"));
                snprintf(fds[i], sizeof fds[i], "%d", 3 + i);
                argv[n++] = "--listen";
                argv[n++] = fds[i];
        }
        argv[n] = NULL;
        (void) syscall(SYS_close_range, 3 + s->nsockets, ~0u, 0);
        char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "TERM=linux", NULL};
        execve(AGENT_IN_ROOT, argv, envp);
        (void) fail("exec %s in the image's tree", AGENT_IN_ROOT);
        _exit(127);
}

static _Noreturn void init_main(Sandbox *s)
{
        (void) close(s->to_init[1]);
        (void) close(s->to_keeper[0]);
        /* The keeper is outside this PID namespace: its end of to_init says it is alive. */
        struct pollfd alive = {.fd = s->to_init[0], .events = POLLIN};
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || poll(&alive, 1, 0) != 0)
                _exit(fail("die with the keeper"));
        char root[PATH_BUF];
        if (!at(root, s->dir, "root"))
                _exit(fail("%s", s->dir));
        if (make_root(s, root) < 0 || enter_root(root) < 0 ||
            (s->root && enter_user_namespace(s) < 0))
                _exit(1);
        if (sethostname(s->hostname, strlen(s->hostname)) < 0)
                _exit(fail("sethostname %s", s->hostname));
        exec_agent(s);
        _exit(127);
}

/* ---- the program ---- */

static int parse(int argc, char **argv, Sandbox *s)
{
        /* argv: __local-vm PPID DIR TREE HOSTNAME CGROUP MEMORY_MB NSOCKETS */
        if (argc != 8)
                return -1;
        argv++; /* PPID: main's, before parse */
        char *end;
        *s = (Sandbox){.dir = argv[1], .tree = argv[2], .hostname = argv[3], .cgroup = argv[4]};
        s->root = geteuid() == 0;
        s->root_id = s->root ? IMAGE_TREE_ID_BASE : 0; /* the VM's root, seen from the init */
        snprintf(s->ids, sizeof s->ids, "uid=%u,gid=%u", s->root_id, s->root_id);
        s->memory_mb = strtoul(argv[5], &end, 10);
        if (*end || s->memory_mb == 0)
                return -1;
        long n = strtol(argv[6], &end, 10);
        if (*end || n < 1 || n > SANDBOX_MAX_SOCKETS)
                return -1;
        s->nsockets = (int) n;
        return 0;
}

int vm_local_sandbox_main(int argc, char **argv)
{
        Sandbox s;
        if (parse(argc, argv, &s) < 0) {
                say("usage: __local-vm PPID DIR TREE HOSTNAME CGROUP MEMORY_MB NSOCKETS (internal "
                    "to --vmm local)");
                return 2;
        }
        if (vm_die_with_parent(argv[1]) < 0)
                return 1;
        if (join_cgroup(&s) < 0 || bind_sockets(&s) < 0)
                return 1;
        if (pipe2(s.to_init, O_CLOEXEC) < 0 || pipe2(s.to_keeper, O_CLOEXEC) < 0)
                return fail("pipe"), 1;
        if (!s.root && enter_own_user_namespace() < 0)
                return 1;
        if (unshare(CLONE_NEWPID) < 0) /* for the init; the keeper stays where it is */
                return fail("unshare the PID namespace"), 1;
        pid_t init = fork();
        if (init < 0)
                return fail("fork the init"), 1;
        if (init == 0)
                init_main(&s);
        return keep(&s, init);
}
