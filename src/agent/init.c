/* init.c: PID-1 duties of provium-agent: mounts, environment, kernel modules, exit.
 *
 * Modules: /lib/modules/provium.order lists them in load order. Only those up to virtio_console
 * (what the agent's ports need) load before the agent serves; the rest (disks, NICs) load in a
 * background thread once the first hello has been answered (or after MODULES_DEFER_MS), so they
 * never delay boot-to-ready. modules_wait() is for ops that need them.
 * /lib/modules/provium.ondemand lists modules shipped but never loaded at boot (sch_netem):
 * modules_load_ondemand() loads one when an op first needs it.
 *
 * Sections: logging, mounts, modules, exit (shutting down is power.c's).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include "agent.h"

#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

#define MODULES_ORDER    "/lib/modules/provium.order"
#define MODULES_ONDEMAND "/lib/modules/provium.ondemand"
#define MODULES_CONSOLE  "virtio_console" /* the last module the ports need */
#define MODULES_DEFER_MS 2000             /* load the rest by then even without a hello */

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

/* True when the module file rel (a path, .ko or compressed) is the module called name; '-'
 * and '_' are the same in module names. */
static bool module_is(const char *rel, const char *name)
{
        const char *base = strrchr(rel, '/');
        base = base ? base + 1 : rel;
        size_t i = 0;
        for (; name[i] && base[i]; i++) {
                char a = base[i] == '-' ? '_' : base[i], b = name[i] == '-' ? '_' : name[i];
                if (a != b)
                        return false;
        }
        return name[i] == 0 && (base[i] == 0 || base[i] == '.');
}

int64_t init_modules_ns;

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t modules_cond = PTHREAD_COND_INITIALIZER;
static long modules_rest_off; /* where the deferred modules start in MODULES_ORDER */
static bool modules_pending;  /* deferred modules are not loaded yet; under modules_lock */
static bool modules_go;       /* released: the thread may load them; under modules_lock */
static atomic_bool modules_released;

/* Loads the modules listed in f from its position on, stopping after MODULES_CONSOLE when
 * stop_at_console. Returns true when it stopped there. */
static bool modules_load_from(FILE *f, bool stop_at_console)
{
        char line[4096];
        while (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\r\n")] = 0;
                if (line[0] == 0 || line[0] == '#')
                        continue;
                int r = init_load_module(line[0] == '/' ? line + 1 : line);
                if (r < 0)
                        agent_log("load module %s: %s", line, strerror(-r));
                if (stop_at_console && module_is(line, MODULES_CONSOLE))
                        return true;
        }
        return false;
}

/* Loads the modules up to MODULES_CONSOLE (all of them when it is not listed) and notes where
 * the rest starts. */
static void init_modules(void)
{
        FILE *f = fopen(MODULES_ORDER, "re");
        if (!f) {
                if (errno != ENOENT)
                        agent_log("open %s: %s", MODULES_ORDER, strerror(errno));
                return;
        }
        struct stat st;
        if (modules_load_from(f, true) && fstat(fileno(f), &st) == 0 &&
            (modules_rest_off = ftell(f)) >= 0 && modules_rest_off < st.st_size)
                modules_pending = true;
        (void) fclose(f);
}

static void *modules_thread(void *arg)
{
        struct timespec until;
        (void) clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += MODULES_DEFER_MS / 1000;
        until.tv_nsec += (long) (MODULES_DEFER_MS % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&modules_lock);
        while (!modules_go)
                if (pthread_cond_timedwait(&modules_cond, &modules_lock, &until) == ETIMEDOUT)
                        break;
        pthread_mutex_unlock(&modules_lock);
        FILE *f = fopen(MODULES_ORDER, "re");
        if (!f)
                agent_log("open %s: %s", MODULES_ORDER, strerror(errno));
        else {
                if (fseek(f, modules_rest_off, SEEK_SET) < 0)
                        agent_log("seek %s: %s", MODULES_ORDER, strerror(errno));
                else
                        (void) modules_load_from(f, false);
                (void) fclose(f);
        }
        pthread_mutex_lock(&modules_lock);
        modules_pending = false;
        pthread_cond_broadcast(&modules_cond);
        pthread_mutex_unlock(&modules_lock);
        return NULL;
}

void modules_start(void)
{
        if (!modules_pending)
                return;
        /* no signal for this thread: SIGCHLD must stay pending for the main thread's signalfd */
        sigset_t all, old;
        sigfillset(&all);
        pthread_t t;
        pthread_attr_t attr;
        int r = pthread_sigmask(SIG_SETMASK, &all, &old);
        if (r == 0) {
                r = pthread_attr_init(&attr);
                if (r == 0) {
                        r = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                        if (r == 0)
                                r = pthread_create(&t, &attr, modules_thread, NULL);
                        (void) pthread_attr_destroy(&attr);
                }
                (void) pthread_sigmask(SIG_SETMASK, &old, NULL);
        }
        if (r != 0) {
                agent_log("module thread: %s; loading the modules now", strerror(r));
                modules_release();
                (void) modules_thread(NULL);
        }
}

void modules_release(void)
{
        if (atomic_load(&modules_released))
                return;
        pthread_mutex_lock(&modules_lock);
        modules_go = true;
        atomic_store(&modules_released, true);
        pthread_cond_broadcast(&modules_cond);
        pthread_mutex_unlock(&modules_lock);
}

void modules_wait(void)
{
        modules_release();
        modules_wait_loaded();
}

void modules_wait_loaded(void)
{
        pthread_mutex_lock(&modules_lock);
        while (modules_pending)
                pthread_cond_wait(&modules_cond, &modules_lock);
        pthread_mutex_unlock(&modules_lock);
}

/* Each line of MODULES_ONDEMAND is "name: path..." (paths relative to /, the module's own
 * dependencies first, the module last). */
int modules_load_ondemand(const char *name)
{
        FILE *f = fopen(MODULES_ONDEMAND, "re");
        if (!f)
                return -errno;
        char line[4096];
        int r = -ENOENT;
        while (r == -ENOENT && fgets(line, sizeof line, f)) {
                line[strcspn(line, "\r\n")] = 0;
                char *colon = strchr(line, ':');
                if (!colon)
                        continue;
                *colon = 0;
                if (!module_is(line, name))
                        continue;
                r = 0;
                char *save = NULL;
                for (char *t = strtok_r(colon + 1, " ", &save); t && r == 0;
                     t = strtok_r(NULL, " ", &save))
                        r = init_load_module(t[0] == '/' ? t + 1 : t);
        }
        (void) fclose(f);
        return r;
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

void init_pid1(void)
{
        init_mounts();
        init_ensure_stdio();
        init_loopback();
        if (setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1) < 0 ||
            setenv("HOME", "/root", 1) < 0)
                agent_log("setenv: %s", strerror(errno));
        if (chdir("/") < 0)
                agent_log("chdir /: %s", strerror(errno));
        init_modules();
        init_modules_ns = agent_now_ns();
}

/* ---- exit ---- */

_Noreturn void init_exit(bool pid1, int code)
{
        if (!pid1)
                exit(code);
        agent_log("init exiting (%d), powering off", code);
        for (;;) {
                int r = power_off(false);
                agent_log("reboot: %s", strerror(-r));
                (void) sleep(10);
        }
}
