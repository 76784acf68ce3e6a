/* init.c: PID-1 duties of provium-agent: mounts, environment, the console's kernel modules
 * (modules.c has the rest), exit.
 *
 * Root disk: with provium.root=ext4 on the command line (the host adds it when the image has a
 * root disk), init_pid1() mounts the virtio disk with serial "provium-root" read-only under a
 * tmpfs overlay and switches root to it, as switch_root does (the initramfs stays underneath).
 * The disk holds the same tree as the initramfs plus the image's packages; any failure there
 * powers off with the failed step on the console.
 *
 * A local VM (--vmm local, src/host/vmm/vm_local.c) runs the agent as PID 1 of namespaces on
 * the host with --local: its root and mounts are made already and the kernel is the host's, so
 * init_local() loads no module (one would go into the host's kernel), mounts nothing and
 * switches to no root disk.
 *
 * Sections: logging, command line, mounts, root disk, local, exit (shutting down is
 * power.c's).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <sys/stat.h>
#include <time.h>

#include "agent.h"

static bool modules_host; /* a local VM: the kernel and its modules are the host's */

#define ROOT_LOWER   "/.provium/lower" /* the disk, read-only */
#define ROOT_RW      "/.provium/rw"    /* tmpfs with the overlay's upper and work dirs */
#define ROOT_NEW     "/.provium/root"  /* the overlay, then / */
#define ROOT_SERIAL  "provium-root"    /* the disk's virtio serial (src/host/vmm/vm.c) */
#define ROOT_WAIT_MS 5000              /* for the disk to appear after virtio_blk loads */

/* ---- logging ---- */

void agent_log(const char *fmt, ...)
{
        char line[1024];
        va_list ap;
        va_start(ap, fmt);
        (void) vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        (void) dprintf(STDERR_FILENO, "provium-agent: %s\n", line);
}

void init_ensure_stdio(void)
{
        for (int fd = 0; fd < 3; fd++) {
                if (fcntl(fd, F_GETFD) >= 0 || errno != EBADF)
                        continue;
                int n = open("/dev/console", O_RDWR | O_NOCTTY);
                if (n < 0)
                        n = open("/dev/null", O_RDWR | O_NOCTTY);
                if (n < 0)
                        continue;
                if (n != fd) {
                        (void) dup2(n, fd);
                        (void) close(n);
                }
        }
}

/* ---- command line ---- */

/* Copies the value of the kernel parameter key (key=value) to val. Returns true when present. */
static bool cmdline_get(const char *key, char *val, size_t n)
{
        char buf[4096];
        int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        ssize_t len = read(fd, buf, sizeof buf - 1);
        (void) close(fd);
        if (len <= 0)
                return false;
        buf[len] = 0;
        size_t klen = strlen(key);
        char *save = NULL;
        for (char *t = strtok_r(buf, " \n", &save); t; t = strtok_r(NULL, " \n", &save))
                if (strncmp(t, key, klen) == 0 && t[klen] == '=') {
                        (void) snprintf(val, n, "%s", t + klen + 1);
                        return true;
                }
        return false;
}

bool init_debug_requested(bool pid1)
{
        const char *e = getenv("PROVIUM_AGENT_DEBUG");
        if (e && strcmp(e, "1") == 0)
                return true;
        char v[8];
        return pid1 && cmdline_get("provium.debug", v, sizeof v) && strcmp(v, "1") == 0;
}

int init_ports_expected(void)
{
        char v[8];
        if (modules_host || !cmdline_get("provium.ports", v, sizeof v))
                return 0;
        char *end;
        long n = strtol(v, &end, 10);
        return end != v && !*end && n > 0 && n <= 64 ? (int) n : 0;
}

/* Reads the first line of a small file into buf, without the newline and trailing blanks.
 * Returns 0 or -errno. */
static int read_line(const char *path, char *buf, size_t n)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t len = read(fd, buf, n - 1);
        int err = errno;
        (void) close(fd);
        if (len < 0)
                return -err;
        buf[len] = 0;
        buf[strcspn(buf, "\n")] = 0;
        for (len = (ssize_t) strlen(buf); len > 0 && (buf[len - 1] == ' ' || buf[len - 1] == '\t');)
                buf[--len] = 0;
        return 0;
}

/* ---- mounts ---- */

static void init_mount(const char *src, const char *dir, const char *type, unsigned long flags,
                       const char *data)
{
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                agent_log("mkdir %s: %s", dir, strerror(errno));
        if (mount(src, dir, type, flags, data) < 0 && errno != EBUSY)
                agent_log("mount %s on %s: %s", type, dir, strerror(errno));
}

static void init_mounts(void)
{
        const unsigned long nosuid = MS_NOSUID | MS_NODEV;
        init_mount("proc", "/proc", "proc", nosuid | MS_NOEXEC, NULL);
        init_mount("sysfs", "/sys", "sysfs", nosuid | MS_NOEXEC, NULL);
        init_mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
        init_mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                   "ptmxmode=0666,mode=0620");
        init_mount("tmpfs", "/tmp", "tmpfs", nosuid, "mode=1777");
        init_mount("tmpfs", "/run", "tmpfs", nosuid, "mode=0755");
}

int64_t init_modules_ns;

/* ---- root disk ---- */

/* Logs which step failed and why, then powers off: a guest without its root must not serve. */
__attribute__((format(printf, 2, 3))) static _Noreturn void root_fail(int err, const char *fmt, ...)
{
        char what[512];
        va_list ap;
        va_start(ap, fmt);
        (void) vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        agent_log("root disk: %s: %s", what, strerror(err));
        init_exit(true, 1);
}

static void root_mkdir(const char *dir)
{
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                root_fail(errno, "mkdir %s", dir);
}

static void root_mount(const char *src, const char *dir, const char *type, unsigned long flags,
                       const char *data)
{
        root_mkdir(dir);
        if (mount(src, dir, type, flags, data) < 0)
                root_fail(errno, "mount %s on %s (%s)", src, dir, type ? type : "move");
}

/* Writes "/dev/vdX" of the disk with serial ROOT_SERIAL to path once both its sysfs entry and
 * its device node exist. Returns 0, -ENOENT while it is not there, or -errno. */
static int root_find_once(char *path, size_t n)
{
        DIR *d = opendir("/sys/block");
        if (!d)
                return -errno;
        int r = -ENOENT;
        struct dirent *e;
        while (r == -ENOENT && (errno = 0, e = readdir(d))) {
                char p[300], serial[64];
                if (strncmp(e->d_name, "vd", 2) != 0)
                        continue;
                (void) snprintf(p, sizeof p, "/sys/block/%s/serial", e->d_name);
                if (read_line(p, serial, sizeof serial) < 0 || strcmp(serial, ROOT_SERIAL) != 0)
                        continue;
                (void) snprintf(path, n, "/dev/%s", e->d_name);
                if (access(path, F_OK) == 0)
                        r = 0;
        }
        if (!e && errno != 0)
                r = -errno;
        (void) closedir(d);
        return r;
}

/* The disk appears asynchronously after virtio_blk loads: polls for it up to ROOT_WAIT_MS. */
static void root_find(char *path, size_t n)
{
        int64_t until = agent_now_ns() + ROOT_WAIT_MS * 1000000LL;
        int r;
        while ((r = root_find_once(path, n)) == -ENOENT && agent_now_ns() < until) {
                struct timespec ts = {.tv_nsec = 5 * 1000000L};
                (void) nanosleep(&ts, NULL);
        }
        if (r == -ENOENT)
                root_fail(ENODEV, "no disk with serial %s after %d ms", ROOT_SERIAL, ROOT_WAIT_MS);
        if (r < 0)
                root_fail(-r, "look for the disk in /sys/block");
}

static void root_mount_overlay(const char *dev)
{
        root_mkdir("/.provium");
        root_mount(dev, ROOT_LOWER, "ext4", MS_RDONLY, "noload");
        root_mount("tmpfs", ROOT_RW, "tmpfs", 0, "mode=0755");
        root_mkdir(ROOT_RW "/upper");
        root_mkdir(ROOT_RW "/work");
        root_mount("overlay", ROOT_NEW, "overlay", 0,
                   "lowerdir=" ROOT_LOWER ",upperdir=" ROOT_RW "/upper,workdir=" ROOT_RW "/work");
}

/* Moves the API mounts into the new root and makes it / (the initramfs cannot be pivoted). */
static void root_switch(void)
{
        static const char *const moved[] = {"/dev", "/proc", "/sys", "/tmp", "/run"};
        for (size_t i = 0; i < ELEMENTSOF(moved); i++) {
                char dir[64];
                (void) snprintf(dir, sizeof dir, ROOT_NEW "%s", moved[i]);
                root_mount(moved[i], dir, NULL, MS_MOVE, NULL);
        }
        if (chdir(ROOT_NEW) < 0)
                root_fail(errno, "chdir %s", ROOT_NEW);
        if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
                root_fail(errno, "mount %s on / (move)", ROOT_NEW);
        if (chroot(".") < 0)
                root_fail(errno, "chroot %s", ROOT_NEW);
        if (chdir("/") < 0)
                root_fail(errno, "chdir /");
}

static long long ms_since(int64_t t0, int64_t t1)
{
        return (long long) ((t1 - t0) / 1000000);
}

/* Switches to the root disk when the command line asks for one. */
static void init_root(void)
{
        char kind[16], dev[300];
        if (!cmdline_get("provium.root", kind, sizeof kind))
                return;
        int64_t t[5];
        t[0] = agent_now_ns();
        if (strcmp(kind, "ext4") != 0)
                root_fail(EINVAL, "provium.root=%s (only ext4 is known)", kind);
        /* -ENOENT: not shipped, as with a kernel that has everything built in (kernel "lean") */
        int r = modules_load_listed("virtio_blk");
        if (r < 0 && r != -ENOENT)
                root_fail(-r, "load virtio_blk");
        t[1] = agent_now_ns();
        if ((r = modules_load_ondemand("overlay")) < 0 && r != -ENOENT)
                root_fail(-r, "load overlay");
        t[2] = agent_now_ns();
        root_find(dev, sizeof dev);
        t[3] = agent_now_ns();
        root_mount_overlay(dev);
        root_switch();
        t[4] = agent_now_ns();
        if (init_debug_requested(true))
                agent_log("root disk %s: switched root in %lld ms (virtio_blk %lld, overlay %lld, "
                          "disk found %lld, mounts %lld)",
                          dev, ms_since(t[0], t[4]), ms_since(t[0], t[1]), ms_since(t[1], t[2]),
                          ms_since(t[2], t[3]), ms_since(t[3], t[4]));
}

/* Any image may name its host in /etc/hostname (recipes write it). */
static void init_hostname(void)
{
        char name[256];
        int r = read_line("/etc/hostname", name, sizeof name);
        if (r < 0 && r != -ENOENT)
                agent_log("read /etc/hostname: %s", strerror(-r));
        if (r == 0 && name[0] && sethostname(name, strlen(name)) < 0)
                agent_log("sethostname %s: %s", name, strerror(errno));
}

/* The loopback interface comes up like on any system: services listen on 127.0.0.1. */
static void init_loopback(void)
{
        int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        struct ifreq ifr = {.ifr_name = "lo"};
        if (fd < 0 || ioctl(fd, SIOCGIFFLAGS, &ifr) < 0 ||
            (ifr.ifr_flags |= IFF_UP, ioctl(fd, SIOCSIFFLAGS, &ifr) < 0))
                agent_log("loopback up: %s", strerror(errno));
        if (fd >= 0)
                (void) close(fd);
}

/* What every PID 1 gives its children: a PATH, a HOME, / as the working directory. */
static void init_environment(void)
{
        if (setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1) < 0 ||
            setenv("HOME", "/root", 1) < 0)
                agent_log("setenv: %s", strerror(errno));
        if (chdir("/") < 0)
                agent_log("chdir /: %s", strerror(errno));
}

/* An idle guest should cost its host nothing: kcompactd compacts memory proactively every
 * 500 ms by default, the most frequent wakeup left in an idle guest (with RCU's). A test guest
 * whose RAM comes and goes with the test has no use for huge pages kept ready; a test can set
 * vm.compaction_proactiveness back. */
static void init_quiet(void)
{
        int fd = open("/proc/sys/vm/compaction_proactiveness", O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0\n", 2) != 2)
                agent_log("vm.compaction_proactiveness=0: %s", strerror(errno));
        if (fd >= 0)
                (void) close(fd);
}

/* provium.probe=1: the host is only asking whether this kernel reaches init (under KVM,
 * src/cli/accel_probe.c). Say so and power off, before any module or disk. */
static void init_probe(void)
{
        char v[8];
        if (!cmdline_get("provium.probe", v, sizeof v) || strcmp(v, "1") != 0)
                return;
        (void) dprintf(STDOUT_FILENO, "%s\n", PROTO_PROBE_MARKER);
        init_exit(true, 0);
}

/* rng_seed: /dev/hwrng becomes the seed's own stream (hwrng.c). */
static void init_hwrng(void)
{
        char v[32];
        if (!cmdline_get("provium.rng_seed", v, sizeof v))
                return;
        char *end;
        errno = 0;
        unsigned long long seed = strtoull(v, &end, 10);
        if (errno || end == v || *end) {
                agent_log("provium.rng_seed=%s: not a number; /dev/hwrng left as it is", v);
                return;
        }
        (void) hwrng_start(seed); /* it logs what failed */
}

void init_pid1(void)
{
        init_mounts();
        init_ensure_stdio();
        /* The first sign of life a boot shows with "quiet": a boot that times out with an
         * empty console never reached init (src/host/vmm/vm.c says so). */
        agent_log("starting");
        init_probe();
        init_loopback();
        init_environment();
        modules_load_boot();
        init_modules_ns = agent_now_ns();
        init_root();
        init_hostname();
        init_hwrng();
        init_quiet();
}

/* ---- local ---- */

bool init_is_local(void)
{
        return modules_host;
}

void init_local(void)
{
        modules_host = true;
        init_ensure_stdio();
        agent_log("starting (local)");
        init_loopback();
        init_environment();
        init_hostname();
}

/* ---- exit ---- */

_Noreturn void init_exit(bool pid1, int code)
{
        if (!pid1 || modules_host)
                exit(code);
        agent_log("init exiting (%d), powering off", code);
        for (;;) {
                int r = power_off(false);
                agent_log("reboot: %s", strerror(-r));
                (void) sleep(10);
        }
}
