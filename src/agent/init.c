/* init.c: PID-1 duties of provium-agent: mounts, environment, kernel modules, power off.
 *
 * Sections: logging, mounts, modules, power.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "agent.h"

#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

#define MODULES_ORDER "/lib/modules/provium.order"

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

bool init_debug_requested(bool pid1)
{
        const char *e = getenv("PROVIUM_AGENT_DEBUG");
        if (e && strcmp(e, "1") == 0)
                return true;
        if (!pid1)
                return false;
        char buf[4096];
        int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        (void) close(fd);
        if (n <= 0)
                return false;
        buf[n] = 0;
        for (char *t = strtok(buf, " \n"); t; t = strtok(NULL, " \n"))
                if (strcmp(t, "provium.debug=1") == 0)
                        return true;
        return false;
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

/* ---- modules ---- */

static bool ends_with(const char *s, const char *suffix)
{
        size_t n = strlen(s), m = strlen(suffix);
        return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Loads one module given its path relative to /. Returns 0 or -errno. */
static int init_load_module(const char *rel)
{
        char path[4200];
        if ((size_t) snprintf(path, sizeof path, "/%s", rel) >= sizeof path)
                return -ENAMETOOLONG;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int flags = ends_with(path, ".ko") ? 0 : MODULE_INIT_COMPRESSED_FILE;
        long r = syscall(SYS_finit_module, fd, "", flags);
        int err = errno;
        (void) close(fd);
        if (r < 0 && err != EEXIST)
                return -err;
        return 0;
}

static void init_modules(void)
{
        FILE *f = fopen(MODULES_ORDER, "re");
        if (!f) {
                if (errno != ENOENT)
                        agent_log("open %s: %s", MODULES_ORDER, strerror(errno));
                return;
        }
        char line[4096];
        while (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\r\n")] = 0;
                if (line[0] == 0 || line[0] == '#')
                        continue;
                int r = init_load_module(line[0] == '/' ? line + 1 : line);
                if (r < 0)
                        agent_log("load module %s: %s", line, strerror(-r));
        }
        (void) fclose(f);
}

void init_pid1(void)
{
        init_mounts();
        init_ensure_stdio();
        if (setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1) < 0 ||
            setenv("HOME", "/root", 1) < 0)
                agent_log("setenv: %s", strerror(errno));
        if (chdir("/") < 0)
                agent_log("chdir /: %s", strerror(errno));
        init_modules();
}

/* ---- power ---- */

int init_poweroff(bool reboot_)
{
        sync();
        if (reboot(reboot_ ? RB_AUTOBOOT : RB_POWER_OFF) < 0)
                return -errno;
        return 0;
}

_Noreturn void init_exit(bool pid1, int code)
{
        if (!pid1)
                exit(code);
        agent_log("init exiting (%d), powering off", code);
        for (;;) {
                int r = init_poweroff(false);
                agent_log("reboot: %s", strerror(-r));
                (void) sleep(10);
        }
}
