/* power.c: shutting the guest down, and the thread that watches the ACPI power button.
 *
 * Shutdown (poweroff, init's exit, the power button): SIGTERM to every process, up to
 * POWER_TERM_MS for them to go (PID 1 reaps them meanwhile), SIGKILL to the rest, sync,
 * reboot(2). Without processes it costs nothing more than sync and reboot.
 *
 * Power button: QEMU's system_powerdown raises the ACPI power button event; the kernel's
 * `button` driver turns it into an input device named "Power Button" (LNXPWRBN, sometimes
 * also PNP0C0C) and `evdev` gives it /dev/input/eventN. Both are deferred modules, so the
 * thread waits until they are loaded, opens every such device and powers off on KEY_POWER.
 *
 * Sections: shutdown, power button.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/wait.h>

#include "agent.h"

#define POWER_TERM_MS     2000 /* processes get this long between SIGTERM and SIGKILL */
#define POWER_POLL_MS     10   /* look for exited processes this often meanwhile */
#define POWER_NODE_MS     1000 /* wait this long for devtmpfs to create /dev/input/eventN */
#define POWER_MAX_BUTTONS 8
#define POWER_INPUT_DIR   "/sys/class/input"
#define POWER_BUTTON_NAME "Power Button"

/* ---- shutdown ---- */

/* Reaps every child that has exited. Returns true when no child is left. */
static bool power_reap_all(void)
{
        for (;;) {
                pid_t p = waitpid(-1, NULL, WNOHANG);
                if (p > 0 || (p < 0 && errno == EINTR))
                        continue;
                if (p == 0)
                        return false;
                if (errno != ECHILD)
                        agent_log("waitpid: %s", strerror(errno));
                return true;
        }
}

int power_off(bool reboot_)
{
        if (kill(-1, SIGTERM) == 0) {
                int64_t until = agent_now_ns() + (int64_t) POWER_TERM_MS * 1000000LL;
                while (!power_reap_all() && agent_now_ns() < until)
                        (void) poll(NULL, 0, POWER_POLL_MS);
                if (kill(-1, SIGKILL) < 0 && errno != ESRCH)
                        agent_log("kill SIGKILL: %s", strerror(errno));
        } else if (errno != ESRCH) /* ESRCH: no process but us */
                agent_log("kill SIGTERM: %s", strerror(errno));
        if (init_is_local())
                _exit(0); /* PID 1 of a local VM: its namespaces end with it; the host goes on */
        sync();
        if (reboot(reboot_ ? RB_AUTOBOOT : RB_POWER_OFF) < 0)
                return -errno;
        return 0;
}

/* ---- power button ---- */

typedef struct PowerButtons {
        const char *path; /* --power-button, or NULL to look for the devices */
        bool pid1;
        bool debug;
} PowerButtons;

static PowerButtons power_buttons;

/* Opens path, waiting up to POWER_NODE_MS for it to appear. Returns the fd or -errno. */
static int power_open(const char *path)
{
        int64_t until = agent_now_ns() + (int64_t) POWER_NODE_MS * 1000000LL;
        for (;;) {
                int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
                if (fd >= 0)
                        return fd;
                if (errno != ENOENT || agent_now_ns() >= until)
                        return -errno;
                (void) poll(NULL, 0, POWER_POLL_MS);
        }
}

/* True when input device name (eventN) is called POWER_BUTTON_NAME. */
static bool power_is_button(const char *name)
{
        char p[512], buf[128];
        if ((size_t) snprintf(p, sizeof p, POWER_INPUT_DIR "/%s/device/name", name) >= sizeof p)
                return false;
        _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        if (n <= 0)
                return false;
        buf[n] = 0;
        buf[strcspn(buf, "\n")] = 0;
        return strcmp(buf, POWER_BUTTON_NAME) == 0;
}

/* Opens every power button's event device into fds[]. Returns how many it opened. */
static size_t power_find(int *fds, size_t max)
{
        DIR *d = opendir(POWER_INPUT_DIR);
        if (!d) {
                if (errno != ENOENT)
                        agent_log("opendir " POWER_INPUT_DIR ": %s", strerror(errno));
                return 0;
        }
        size_t n = 0;
        struct dirent *e;
        while (n < max && (e = readdir(d))) {
                if (strncmp(e->d_name, "event", 5) != 0 || !power_is_button(e->d_name))
                        continue;
                char dev[300];
                (void) snprintf(dev, sizeof dev, "/dev/input/%s", e->d_name);
                int fd = power_open(dev);
                if (fd < 0) {
                        agent_log("power button %s: %s", dev, strerror(-fd));
                        continue;
                }
                if (power_buttons.debug)
                        agent_log("power button: watching %s at %lld ms", dev,
                                  (long long) (agent_now_ns() / 1000000));
                fds[n++] = fd;
        }
        (void) closedir(d);
        return n;
}

/* The button was pressed: power off as PID 1 (returns only if that failed), else make the
 * agent exit. Returns true when the watch should stop. */
static bool power_pressed(void)
{
        if (!power_buttons.pid1) {
                agent_log("power button: exiting");
                agent_request_quit();
                return true;
        }
        agent_log("power button: powering off");
        int r = power_off(false);
        agent_log("reboot: %s", strerror(-r));
        return false;
}

/* Handles the events waiting on fd. Returns 1 after KEY_POWER when the watch should stop, 0,
 * or -errno when fd is done for (EOF counts as -ENODEV). */
static int power_read(int fd)
{
        struct input_event ev[16];
        ssize_t n = read(fd, ev, sizeof ev);
        if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -errno;
        if (n == 0)
                return -ENODEV;
        for (size_t i = 0; i < (size_t) n / sizeof ev[0]; i++)
                if (ev[i].type == EV_KEY && ev[i].code == KEY_POWER && ev[i].value == 1 &&
                    power_pressed())
                        return 1;
        return 0;
}

/* Reads events from fds[] until a press ends the watch or every fd is gone; closes them. */
static void power_watch(int *fds, size_t n)
{
        struct pollfd pfd[POWER_MAX_BUTTONS];
        size_t live = n;
        for (size_t i = 0; i < n; i++)
                pfd[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
        while (live > 0) {
                if (poll(pfd, n, -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        agent_log("power button: poll: %s", strerror(errno));
                        break;
                }
                for (size_t i = 0; i < n; i++) {
                        if (pfd[i].fd < 0 || pfd[i].revents == 0)
                                continue;
                        int r = power_read(pfd[i].fd);
                        if (r == 1) {
                                live = 0;
                                break;
                        }
                        if (r < 0) {
                                agent_log("power button: read: %s", strerror(-r));
                                closep(&pfd[i].fd);
                                live--;
                        }
                }
        }
        for (size_t i = 0; i < n; i++)
                closep(&pfd[i].fd);
}

static void *power_thread(void *arg)
{
        int fds[POWER_MAX_BUTTONS];
        size_t n = 0;
        if (power_buttons.path) {
                int fd = power_open(power_buttons.path);
                if (fd < 0)
                        agent_log("power button %s: %s", power_buttons.path, strerror(-fd));
                else
                        fds[n++] = fd;
        } else {
                modules_wait_loaded(); /* button and evdev are deferred modules */
                n = power_find(fds, ELEMENTSOF(fds));
                if (n == 0 && power_buttons.debug)
                        agent_log("power button: none found");
        }
        if (n > 0)
                power_watch(fds, n);
        return NULL;
}

int power_button_start(const char *path, bool pid1, bool debug)
{
        if (!pid1 && !path)
                return 0;
        power_buttons = (PowerButtons){.path = path, .pid1 = pid1, .debug = debug};
        /* no signal for this thread: SIGCHLD must stay pending for the main thread's signalfd */
        sigset_t all, old;
        sigfillset(&all);
        int r = pthread_sigmask(SIG_SETMASK, &all, &old);
        if (r != 0)
                return -r;
        pthread_attr_t attr;
        r = pthread_attr_init(&attr);
        if (r == 0) {
                pthread_t t;
                r = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
                if (r == 0)
                        r = pthread_attr_setstacksize(&attr, 256u << 10);
                if (r == 0)
                        r = pthread_create(&t, &attr, power_thread, NULL);
                (void) pthread_attr_destroy(&attr);
        }
        (void) pthread_sigmask(SIG_SETMASK, &old, NULL);
        return -r;
}
