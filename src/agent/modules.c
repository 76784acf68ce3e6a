/* modules.c: the guest's kernel modules, which the image ships (scripts/build-default-image).
 *
 * /lib/modules/provium.order lists modules in load order. Only those up to virtio_console (what
 * the agent's ports need) load before the agent serves; the rest (the power button's) load in a
 * background thread once the first hello has been answered (or after MODULES_DEFER_MS), so
 * they never delay boot-to-ready. modules_wait() is for ops that need them.
 *
 * /lib/modules/provium.bydevice lists the drivers of virtio devices ("virtio:ID name: path...",
 * each with the dependencies the boot set lacks): the same thread loads one only for a device
 * of its ID, those the VM has at boot (/sys/bus/virtio/devices), and later those hot-plugged,
 * which the kernel announces on its uevent socket (the thread waits there for the life of the
 * guest, in a blocking recv: no wakeup when nothing comes). A VM with no card and no disk never
 * loads virtio_net or virtio_blk.
 *
 * /lib/modules/provium.ondemand lists modules shipped but never loaded at boot (sch_netem, ifb):
 * modules_load_ondemand() loads one when an op first needs it.
 *
 * A local VM (--local) loads none: its kernel is the host's.
 *
 * Sections: loading one, devices, the background thread and the lists.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

#define MODULES_ORDER    "/lib/modules/provium.order"
#define MODULES_ONDEMAND "/lib/modules/provium.ondemand"
#define MODULES_BYDEVICE "/lib/modules/provium.bydevice"
#define MODULES_CONSOLE  "virtio_console" /* the last module the ports need */
#define MODULES_DEFER_MS 2000             /* load the rest by then even without a hello */
#define VIRTIO_IDS       64               /* virtio device IDs the thread keeps track of */
#define UEVENT_MAX       8192             /* one uevent message, at most */

/* ---- loading one ---- */

static bool ends_with(const char *s, const char *suffix)
{
        size_t n = strlen(s), m = strlen(suffix);
        return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool module_is(const char *rel, const char *name);

/* The parameters module rel is loaded with: ifb makes no ifb0 and ifb1 of its own (the netem
 * op creates one per interface it impairs on ingress, ops_ingress.c). */
static const char *module_params(const char *rel)
{
        return module_is(rel, "ifb") ? "numifbs=0" : "";
}

/* Loads one module given its path relative to /. Returns 0 or -errno. */
static int load_module(const char *rel)
{
        char path[4200];
        if ((size_t) snprintf(path, sizeof path, "/%s", rel) >= sizeof path)
                return -ENAMETOOLONG;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        int flags = ends_with(path, ".ko") ? 0 : MODULE_INIT_COMPRESSED_FILE;
        long r = syscall(SYS_finit_module, fd, module_params(rel), flags);
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

/* ---- devices ---- */

static atomic_bool virtio_tried[VIRTIO_IDS]; /* the driver of this ID was loaded (or tried) */

/* Loads the entry of MODULES_BYDEVICE for virtio device ID id, once. */
static void device_load(unsigned long id)
{
        if (id >= VIRTIO_IDS || atomic_exchange(&virtio_tried[id], true))
                return;
        FILE *f = fopen(MODULES_BYDEVICE, "re");
        if (!f) {
                if (errno != ENOENT)
                        agent_log("open %s: %s", MODULES_BYDEVICE, strerror(errno));
                return;
        }
        char want[32], line[4096];
        int n = snprintf(want, sizeof want, "virtio:%lu ", id);
        while (fgets(line, sizeof line, f)) {
                line[strcspn(line, "\r\n")] = 0;
                char *paths = strncmp(line, want, (size_t) n) == 0 ? strchr(line + n, ':') : NULL;
                if (!paths)
                        continue;
                char *save = NULL;
                for (char *t = strtok_r(paths + 1, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
                        int r = load_module(t[0] == '/' ? t + 1 : t);
                        if (r < 0)
                                agent_log("load module %s (virtio device %lu): %s", t, id,
                                          strerror(-r));
                }
        }
        (void) fclose(f);
}

/* The drivers of the virtio devices there now (their "device" file holds the ID in hex). */
static void devices_coldplug(void)
{
        DIR *d = opendir("/sys/bus/virtio/devices");
        if (!d)
                return; /* no virtio device has been probed */
        struct dirent *e;
        while ((e = readdir(d))) {
                char path[300], id[32];
                if (e->d_name[0] == '.' ||
                    (size_t) snprintf(path, sizeof path, "/sys/bus/virtio/devices/%s/device",
                                      e->d_name) >= sizeof path)
                        continue;
                FILE *f = fopen(path, "re");
                if (!f)
                        continue;
                char *got = fgets(id, sizeof id, f);
                (void) fclose(f);
                char *end = NULL;
                unsigned long v = got ? strtoul(id, &end, 16) : 0;
                if (got && end != id)
                        device_load(v);
        }
        (void) closedir(d);
}

/* The kernel's uevent socket, or -1 (logged). */
static int uevents_open(void)
{
        if (access(MODULES_BYDEVICE, F_OK) < 0)
                return -1;
        int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT);
        struct sockaddr_nl sa = {.nl_family = AF_NETLINK, .nl_groups = 1};
        if (fd < 0 || bind(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                agent_log("uevent socket: %s; hot-plugged devices get no driver", strerror(errno));
                if (fd >= 0)
                        (void) close(fd);
                return -1;
        }
        return fd;
}

/* The value of key in a uevent's NUL-separated "KEY=value" fields, or NULL. */
static const char *uevent_get(const char *msg, size_t len, const char *key)
{
        size_t k = strlen(key);
        for (size_t i = 0; i < len; i += strlen(msg + i) + 1)
                if (strncmp(msg + i, key, k) == 0 && msg[i + k] == '=')
                        return msg + i + k + 1;
        return NULL;
}

/* Loads the driver of every virtio device the kernel adds ("MODALIAS=virtio:d<ID>v<vendor>",
 * IDs in hex). Never returns. */
static _Noreturn void uevents_serve(int fd)
{
        static char msg[UEVENT_MAX + 1];
        for (;;) {
                ssize_t n = recv(fd, msg, UEVENT_MAX, 0);
                if (n < 0 && (errno == EINTR || errno == ENOBUFS))
                        continue; /* ENOBUFS: some were lost; hot-plugs are rare and slow */
                if (n < 0) {
                        agent_log("uevent socket: %s", strerror(errno));
                        (void) sleep(1);
                        continue;
                }
                msg[n] = 0; /* the last field ends here even if the kernel's did not */
                const char *action = uevent_get(msg, (size_t) n, "ACTION"),
                           *sub = uevent_get(msg, (size_t) n, "SUBSYSTEM"),
                           *alias = uevent_get(msg, (size_t) n, "MODALIAS");
                if (!action || !sub || !alias || strcmp(action, "add") != 0 ||
                    strcmp(sub, "virtio") != 0 || strncmp(alias, "virtio:d", 8) != 0)
                        continue;
                char *end = NULL;
                unsigned long id = strtoul(alias + 8, &end, 16);
                if (end != alias + 8)
                        device_load(id);
        }
}

/* ---- the background thread and the lists ---- */

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t modules_cond = PTHREAD_COND_INITIALIZER;
static long modules_rest_off;   /* where the deferred modules start in MODULES_ORDER */
static bool modules_pending;    /* deferred modules are not loaded yet; under modules_lock */
static bool modules_order_rest; /* MODULES_ORDER has modules after the console's */
static bool modules_go;         /* released: the thread may load them; under modules_lock */
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
                int r = load_module(line[0] == '/' ? line + 1 : line);
                if (r < 0)
                        agent_log("load module %s: %s", line, strerror(-r));
                if (stop_at_console && module_is(line, MODULES_CONSOLE))
                        return true;
        }
        return false;
}

void modules_load_boot(void)
{
        modules_pending = access(MODULES_BYDEVICE, F_OK) == 0;
        FILE *f = fopen(MODULES_ORDER, "re");
        if (!f) {
                if (errno != ENOENT)
                        agent_log("open %s: %s", MODULES_ORDER, strerror(errno));
                return;
        }
        struct stat st;
        if (modules_load_from(f, true) && fstat(fileno(f), &st) == 0 &&
            (modules_rest_off = ftell(f)) >= 0 && modules_rest_off < st.st_size)
                modules_pending = modules_order_rest = true;
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
        /* opened before the scan, so that a device added meanwhile is heard of */
        int uevents = uevents_open();
        devices_coldplug();
        FILE *f = modules_order_rest ? fopen(MODULES_ORDER, "re") : NULL;
        if (modules_order_rest && !f)
                agent_log("open %s: %s", MODULES_ORDER, strerror(errno));
        else if (f) {
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
        if (uevents >= 0)
                uevents_serve(uevents); /* for the life of the guest */
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

/* Loads module `name` as list (a file of MODULES_ORDER's or MODULES_ONDEMAND's form) says.
 * MODULES_ORDER: a module path a line. MODULES_ONDEMAND: "name: path..." (paths relative to /,
 * the module's own dependencies first, the module last). Returns 0, -ENOENT when the list does
 * not name it, or -errno. */
static int modules_load_named(const char *list, const char *name)
{
        if (init_is_local())
                return 0; /* the host's kernel has it, or autoloads it */
        FILE *f = fopen(list, "re");
        if (!f)
                return -errno;
        char line[4096];
        int r = -ENOENT;
        while (r == -ENOENT && fgets(line, sizeof line, f)) {
                line[strcspn(line, "\r\n")] = 0;
                char *entry = line;
                if (strncmp(entry, "virtio:", 7) == 0 && strchr(entry, ' '))
                        entry = strchr(entry, ' ') + 1; /* MODULES_BYDEVICE's device field */
                char *colon = strchr(entry, ':'), *paths = colon ? colon + 1 : entry;
                if (colon)
                        *colon = 0;
                if (!module_is(entry, name))
                        continue;
                r = 0;
                char *save = NULL;
                for (char *t = strtok_r(paths, " ", &save); t && r == 0;
                     t = strtok_r(NULL, " ", &save))
                        r = load_module(t[0] == '/' ? t + 1 : t);
        }
        (void) fclose(f);
        return r;
}

int modules_load_ondemand(const char *name)
{
        return modules_load_named(MODULES_ONDEMAND, name);
}

int modules_load_listed(const char *name)
{
        int r = modules_load_named(MODULES_ORDER, name);
        return r == -ENOENT ? modules_load_named(MODULES_BYDEVICE, name) : r;
}
