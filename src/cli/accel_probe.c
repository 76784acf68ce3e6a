/* accel_probe.c: does this host's KVM run the kernel the tests boot? One short boot of the
 * image's own kernel and initramfs under KVM, with provium.probe=1: the agent, as PID 1,
 * prints PROTO_PROBE_MARKER on the console and powers off. Only that line proves it; a
 * BIOS that runs is not proof (docs/design.md, "Acceleration").
 *
 * Sections: the probe's QEMU, watching its output, the diagnosis.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "accel.h"
#include "events.h"
#include "machine.h"
#include "proto.h"

extern char **environ;

#define PROBE_CONSOLE_MAX 8192 /* bytes of console kept, for the marker and the last line */
#define PROBE_STDERR_MAX  2048

/* ---- the probe's QEMU ---- */

/* The image's command line without "quiet" (so a kernel that stops part way shows where),
 * with early printk and the probe flag. NULL on ENOMEM. */
static char *probe_cmdline(const char *cmdline)
{
        size_t n = strlen(cmdline ? cmdline : "");
        char *c = malloc(n + 64), *q = c;
        if (!c)
                return NULL;
        char *copy = strdup(cmdline ? cmdline : ""), *save = NULL;
        if (!copy) {
                free(c);
                return NULL;
        }
        for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save))
                if (strcmp(t, "quiet") != 0)
                        q += sprintf(q, "%s ", t);
        sprintf(q, "earlyprintk=ttyS0 provium.probe=1");
        free(copy);
        return c;
}

/* Starts QEMU through `provium __pdeathsig` (it dies with us) with its stdout and stderr on
 * the write ends of out and err. Returns its pid or -errno. */
static pid_t probe_spawn(const char *self, const AccelProbeTarget *t, const char *append, int out,
                         int err)
{
        char ppid[24], machine[32];
        snprintf(ppid, sizeof ppid, "%ld", (long) getpid());
        /* The machine type and CPU model of src/host/vmm/vm_argv.c (PROVIUM_MACHINE, QEMU's
         * default CPU): the verdict is about those. Its file-backed RAM and devices do not change
         * what KVM runs. */
        snprintf(machine, sizeof machine, "%s,accel=kvm", PROVIUM_MACHINE);
        const char *argv[32] = {
            self,         "__pdeathsig", ppid,   t->qemu,   "-machine",    machine,
            "-m",         "256",         "-smp", "1",       "-nodefaults", "-no-user-config",
            "-no-reboot", "-display",    "none", "-serial", "stdio",       "-kernel",
            t->kernel,    "-append",     append};
        size_t n = 21;
        if (t->initrd) {
                argv[n++] = "-initrd";
                argv[n++] = t->initrd;
        }
        argv[n] = NULL;
        posix_spawn_file_actions_t fa;
        int r = posix_spawn_file_actions_init(&fa);
        if (r != 0)
                return -r;
        r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        r = r ? r : posix_spawn_file_actions_adddup2(&fa, out, 1);
        r = r ? r : posix_spawn_file_actions_adddup2(&fa, err, 2);
        pid_t pid = -1;
        r = r ? r : posix_spawn(&pid, self, &fa, NULL, (char *const *) argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        return r ? -r : pid;
}

/* ---- watching its output ---- */

typedef struct ProbeOutput {
        char console[PROBE_CONSOLE_MAX + 1];
        size_t console_len;
        uint64_t console_total; /* bytes ever printed */
        unsigned console_lines;
        char err[PROBE_STDERR_MAX + 1];
        size_t err_len;
        bool marker;
} ProbeOutput;

static double now_s(void)
{
        return (double) events_mono_ns() / 1e9;
}

static void console_add(ProbeOutput *o, const char *p, size_t n)
{
        o->console_total += n;
        for (size_t i = 0; i < n; i++)
                o->console_lines += p[i] == '\n';
        if (n > PROBE_CONSOLE_MAX) {
                p += n - PROBE_CONSOLE_MAX;
                n = PROBE_CONSOLE_MAX;
        }
        if (o->console_len + n > PROBE_CONSOLE_MAX) { /* keep the newest half and n */
                size_t keep = PROBE_CONSOLE_MAX - n < PROBE_CONSOLE_MAX / 2 ? PROBE_CONSOLE_MAX - n
                                                                            : PROBE_CONSOLE_MAX / 2;
                keep = keep < o->console_len ? keep : o->console_len;
                memmove(o->console, o->console + o->console_len - keep, keep);
                o->console_len = keep;
        }
        memcpy(o->console + o->console_len, p, n);
        o->console_len += n;
        o->console[o->console_len] = 0;
        /* memmem, not strstr: the guest may print NULs. */
        o->marker = o->marker || memmem(o->console, o->console_len, PROTO_PROBE_MARKER,
                                        strlen(PROTO_PROBE_MARKER)) != NULL;
}

static void err_add(ProbeOutput *o, const char *p, size_t n)
{
        size_t room = PROBE_STDERR_MAX - o->err_len;
        n = n < room ? n : room;
        memcpy(o->err + o->err_len, p, n);
        o->err_len += n;
        o->err[o->err_len] = 0;
}

/* Reads what is there on fd; returns false at EOF or on an error. */
static bool drain(ProbeOutput *o, int fd, bool console)
{
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
                return true;
        if (n <= 0)
                return false;
        if (console)
                console_add(o, buf, (size_t) n);
        else
                err_add(o, buf, (size_t) n);
        return true;
}

/* Reaps pid if it has exited, polling until deadline at most. Returns its wait status, or -1
 * when it is still running then. */
static int reap_until(pid_t pid, double deadline)
{
        for (;;) {
                int st;
                pid_t w = waitpid(pid, &st, WNOHANG);
                if (w == pid)
                        return st;
                if (w < 0 && errno != EINTR)
                        return -1;
                if (now_s() >= deadline)
                        return -1;
                struct timespec ts = {0, 10 * 1000 * 1000};
                (void) nanosleep(&ts, NULL);
        }
}

/* Watches out and err until the marker, QEMU's exit or the deadline. Returns QEMU's wait
 * status when it exited by itself before the marker, else -1. QEMU is gone on return. */
static int probe_watch(pid_t pid, int out, int err, double timeout_s, ProbeOutput *o)
{
        struct pollfd pfd[2] = {{.fd = out, .events = POLLIN}, {.fd = err, .events = POLLIN}};
        double deadline = now_s() + timeout_s;
        while (!o->marker && (pfd[0].fd >= 0 || pfd[1].fd >= 0)) {
                double left = deadline - now_s();
                if (left <= 0)
                        break;
                int r = poll(pfd, 2, (int) (left * 1000) + 1);
                if (r < 0 && errno != EINTR)
                        break;
                for (int i = 0; r > 0 && i < 2; i++)
                        if (pfd[i].fd >= 0 && pfd[i].revents && !drain(o, pfd[i].fd, i == 0))
                                pfd[i].fd = -1;
        }
        /* Both pipes at EOF: QEMU is exiting, so give it until the deadline to say how. */
        bool eof = pfd[0].fd < 0 && pfd[1].fd < 0 && !o->marker;
        int st = reap_until(pid, eof ? deadline : 0);
        if (st >= 0)
                return o->marker ? -1 : st;
        (void) kill(pid, SIGKILL);
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
        return -1;
}

/* ---- the diagnosis ---- */

/* Copies line [b, e) into out (n bytes), printable ASCII only. */
static void copy_line(const char *b, const char *e, char *out, size_t n)
{
        size_t k = 0;
        for (; b < e && k + 1 < n; b++)
                out[k++] = *b >= 0x20 && *b < 0x7f ? *b : '?';
        out[k] = 0;
}

/* The last line of s[0, len) that is not empty. */
static void last_line(const char *s, size_t len, char *out, size_t n)
{
        const char *e = s + len;
        while (e > s && (e[-1] == '\n' || e[-1] == '\r' || e[-1] == 0))
                e--;
        const char *b = e;
        while (b > s && b[-1] != '\n')
                b--;
        copy_line(b, e, out, n);
}

/* What QEMU said that matters: its first line with "error", else its first line that is not
 * a warning, else its first line. */
static void qemu_line(const char *err, char *out, size_t n)
{
        const char *error = NULL, *plain = NULL;
        for (const char *b = err; *b && !error;) {
                size_t len = strcspn(b, "\n");
                if (len > 0 && memmem(b, len, "error", 5))
                        error = b;
                else if (len > 0 && !plain && !memmem(b, len, "warning", 7))
                        plain = b;
                b += len + (b[len] ? 1 : 0);
        }
        const char *pick = error ? error : plain ? plain : err;
        copy_line(pick, pick + strcspn(pick, "\n"), out, n);
}

/* A failure that says nothing about KVM: QEMU could not start, ran out of memory, or was
 * killed. Such a verdict is reported but not cached. */
static bool about_kvm(const ProbeOutput *o, int status)
{
        if (status < 0)
                return true; /* the guest ran but never reached init */
        if (WIFSIGNALED(status) || WEXITSTATUS(status) == 127)
                return false;
        return !strstr(o->err, "Cannot allocate memory") && !strstr(o->err, "No such file");
}

static void diagnose(const ProbeOutput *o, int status, double timeout_s, double took,
                     AccelProbe *ret)
{
        char said[256] = "", last[160] = "";
        qemu_line(o->err, said, sizeof said);
        last_line(o->console, o->console_len, last, sizeof last);
        ret->ok = o->marker;
        ret->definite = o->marker || about_kvm(o, status);
        if (o->marker)
                snprintf(ret->reason, sizeof ret->reason,
                         "the image's kernel reached init under KVM in %.2f s", took);
        else if (status >= 0)
                snprintf(ret->reason, sizeof ret->reason, "QEMU %s %d under KVM%s%s%s%s%s",
                         WIFSIGNALED(status) ? "was killed by signal" : "exited with status",
                         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                         said[0] ? ": " : " before the guest reached init", said,
                         last[0] ? "; the console's last line: '" : "", last, last[0] ? "'" : "");
        else if (o->console_total == 0)
                snprintf(ret->reason, sizeof ret->reason,
                         "the guest printed nothing in %.0f s%s%s%s", timeout_s,
                         said[0] ? " (QEMU said: " : "", said, said[0] ? ")" : "");
        else
                snprintf(ret->reason, sizeof ret->reason,
                         "the guest's kernel printed %u lines in %.0f s but did not reach init; "
                         "the last: '%s'",
                         o->console_lines, timeout_s, last);
}

int accel_probe_boot(const char *self, const AccelProbeTarget *t, double timeout_s, AccelProbe *ret)
{
        if (!self || !t || !t->qemu || !t->kernel || !ret || !(timeout_s > 0))
                return -EINVAL;
        int out[2] = {-1, -1}, err[2] = {-1, -1};
        char *append = probe_cmdline(t->cmdline);
        if (!append)
                return -ENOMEM;
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0) {
                int r = -errno;
                for (int i = 0; i < 2; i++) {
                        if (out[i] >= 0)
                                (void) close(out[i]);
                        if (err[i] >= 0)
                                (void) close(err[i]);
                }
                free(append);
                return r;
        }
        double t0 = now_s();
        pid_t pid = probe_spawn(self, t, append, out[1], err[1]);
        free(append);
        (void) close(out[1]);
        (void) close(err[1]);
        ProbeOutput *o = calloc(1, sizeof *o);
        int r = pid < 0 ? (int) pid : o ? 0 : -ENOMEM;
        if (r == 0) {
                int status = probe_watch(pid, out[0], err[0], timeout_s, o);
                ret->seconds = now_s() - t0;
                ret->timeout_s = timeout_s;
                diagnose(o, status, timeout_s, ret->seconds, ret);
        } else if (pid > 0) {
                (void) kill(pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
        }
        free(o);
        (void) close(out[0]);
        (void) close(err[0]);
        return r;
}
