/* child.c: child processes of provium-agent: fork and exec, the child table, reaping.
 *
 * Several connection threads fork children while PID 1 must also reap orphans. A global table
 * (under child_lock) lists the pids that connections own; each connection waits for its own
 * children (through a pidfd, see ops_exec.c) and reaps them with child_try_reap(), while
 * child_reap_orphans() (main thread) reaps only pids that are not in the table. fork() and the
 * table insert happen under the lock, so a child that dies at once is never taken for an
 * orphan.
 *
 * Sections: limits, the forked child, child table, reaping.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

/* ---- limits ---- */

static struct rlimit child_nofile; /* RLIMIT_NOFILE the agent started with */
static bool child_nofile_set;
static int child_null = -1; /* /dev/null, read-only: the stdin of commands given none */

void child_init_limits(void)
{
        child_null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (child_null < 0)
                agent_log("open /dev/null: %s", strerror(errno));
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
                return;
        child_nofile = rl;
        child_nofile_set = true;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                agent_log("setrlimit NOFILE: %s", strerror(errno));
}

/* The agent's threads run at AGENT_NICE inside a guest: a test's commands keeping the one vCPU
 * busy would otherwise hold back every request (read 4 KiB on the main connection took 2.9x
 * its idle time with four workers running commands; 1.1-1.3x at -5). Children go back to nice
 * 0. The price, while the host floods the agent: commands get less of the vCPU (the bench's
 * four busy workers did 150 loops a second beside it before, about 100 at -5, 30 at -10). */
#define AGENT_NICE -5
static bool child_nice_reset;

void child_raise_priority(void)
{
        if (setpriority(PRIO_PROCESS, (id_t) syscall(SYS_gettid), AGENT_NICE) == 0)
                child_nice_reset = true;
}

int child_devnull(void)
{
        return child_null >= 0 ? child_null : -EBADF;
}

/* ---- the forked child ---- */

/* The record lives in the parent's frame: a vfork()ed child shares its memory, and the parent
 * runs again only once the child has exec'd or exited (as glibc's posix_spawn does it). */
static _Noreturn void child_fail(volatile ChildFail *f, int step)
{
        f->err = errno;
        f->step = step;
        _exit(127);
}

/* Runs in the vfork()ed child, on the parent's memory: only system calls and the exec, no
 * allocation or global state (envp was built by the parent). Never returns. */
static _Noreturn void child_exec(const ChildSpec *sp, char **envp, int in, int out, int err,
                                 volatile ChildFail *f)
{
        sigset_t none;
        sigemptyset(&none);
        if (child_nofile_set)
                (void) setrlimit(RLIMIT_NOFILE, &child_nofile);
        if (child_nice_reset)
                (void) setpriority(PRIO_PROCESS, 0, 0);
        /* an ignored SIGPIPE would survive exec: commands expect the default */
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0 || signal(SIGPIPE, SIG_DFL) == SIG_ERR ||
            setsid() < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
                child_fail(f, CHILD_STEP_SETUP);
        /* a shell on a pseudo-terminal: it becomes the session's controlling terminal, so
         * Ctrl-C typed there reaches the foreground job as SIGINT */
        if (sp->pty && ioctl(0, TIOCSCTTY, 0) < 0)
                child_fail(f, CHILD_STEP_SETUP);
        if (sp->cwd && chdir(sp->cwd) < 0)
                child_fail(f, CHILD_STEP_CHDIR);
        execvpe(sp->argv[0], sp->argv, envp);
        child_fail(f, CHILD_STEP_EXEC);
}

/* The agent's environment with the request's pairs set (replacing same-named entries). The
 * array and *ret_block (the pairs' strings) are the caller's to free. NULL on -ENOMEM. */
static char **child_envp(const ChildSpec *sp, char **ret_block)
{
        extern char **environ;
        size_t n = 0, k = 0;
        while (environ[n])
                n++;
        for (size_t i = 0; sp->env && sp->env[i]; i += 2)
                k++;
        char **envp = calloc(n + k + 1, sizeof *envp);
        char *buf = NULL;
        size_t total = 0;
        for (size_t i = 0; sp->env && sp->env[i]; i += 2)
                total += strlen(sp->env[i]) + strlen(sp->env[i + 1]) + 2;
        buf = total ? malloc(total) : NULL;
        if (!envp || (total && !buf)) {
                free(envp);
                free(buf);
                return NULL;
        }
        size_t m = 0;
        for (size_t e = 0; e < n; e++) {
                bool replaced = false;
                for (size_t i = 0; sp->env && sp->env[i] && !replaced; i += 2) {
                        size_t len = strlen(sp->env[i]);
                        replaced =
                            strncmp(environ[e], sp->env[i], len) == 0 && environ[e][len] == '=';
                }
                if (!replaced)
                        envp[m++] = environ[e];
        }
        char *p = buf;
        for (size_t i = 0; sp->env && sp->env[i]; i += 2) {
                envp[m++] = p;
                p += sprintf(p, "%s=%s", sp->env[i], sp->env[i + 1]) + 1;
        }
        envp[m] = NULL;
        *ret_block = buf;
        return envp;
}

/* ---- child table ---- */

static pthread_mutex_t child_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t *child_pids; /* pids owned by connections, under child_lock */
static size_t child_n, child_cap;

/* Adds pid; child_lock held. Returns 0 or -ENOMEM. */
static int child_add_locked(pid_t pid)
{
        if (child_n == child_cap) {
                size_t cap = child_cap ? 2 * child_cap : 64;
                pid_t *p = realloc(child_pids, cap * sizeof *p);
                if (!p)
                        return -ENOMEM;
                child_pids = p;
                child_cap = cap;
        }
        child_pids[child_n++] = pid;
        return 0;
}

static bool child_owned_locked(pid_t pid)
{
        for (size_t i = 0; i < child_n; i++)
                if (child_pids[i] == pid)
                        return true;
        return false;
}

static void child_remove_locked(pid_t pid)
{
        for (size_t i = 0; i < child_n; i++)
                if (child_pids[i] == pid) {
                        child_pids[i] = child_pids[--child_n];
                        return;
                }
}

void child_disown(pid_t pid)
{
        pthread_mutex_lock(&child_lock);
        child_remove_locked(pid);
        pthread_mutex_unlock(&child_lock);
}

/* Its own function, so that nothing the parent uses afterwards lives across vfork(). */
static __attribute__((noinline)) pid_t spawn_child(const ChildSpec *sp, char **envp, int in,
                                                   int out, int err, volatile ChildFail *f)
{
        pid_t pid = vfork();
        if (pid == 0)
                child_exec(sp, envp, in, out, err, f);
        return pid < 0 ? -errno : pid;
}

pid_t child_fork(const ChildSpec *sp, int in, int out, int err, ChildFail *ret_fail)
{
        char *block = NULL;
        char **envp = child_envp(sp, &block);
        if (!envp)
                return -ENOMEM;
        pthread_mutex_lock(&child_lock);
        int r = child_add_locked(0); /* reserve room, so the insert after fork cannot fail */
        if (r < 0) {
                pthread_mutex_unlock(&child_lock);
                free(block);
                free(envp);
                return r;
        }
        /* vfork: no copy of the agent's page tables, which under TCG costs milliseconds per
         * command; the parent thread waits until the child has exec'd or failed. */
        volatile ChildFail f = {.step = CHILD_STEP_NONE};
        pid_t pid = spawn_child(sp, envp, in, out, err, &f);
        if (pid > 0 && f.step != CHILD_STEP_NONE) {
                /* it has exited already: reaped here, under the lock, never an orphan */
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
                *ret_fail = (ChildFail){.step = f.step, .err = f.err};
                pid = 0;
        }
        if (pid <= 0) {
                r = pid;
                child_n--;
        } else
                child_pids[child_n - 1] = pid;
        pthread_mutex_unlock(&child_lock);
        free(block);
        free(envp);
        return pid < 0 ? r : pid;
}

/* ---- reaping ---- */

int child_try_reap(pid_t pid, int *ret_status)
{
        int status;
        pthread_mutex_lock(&child_lock);
        pid_t r;
        do
                r = waitpid(pid, &status, WNOHANG);
        while (r < 0 && errno == EINTR);
        if (r == pid || (r < 0 && errno == ECHILD))
                child_remove_locked(pid);
        pthread_mutex_unlock(&child_lock);
        if (r == 0)
                return 0;
        *ret_status = r < 0 ? SIGKILL : status; /* reaped elsewhere: cannot happen while owned */
        return 1;
}

bool child_reap_orphans(void)
{
        bool owned = false;
        pthread_mutex_lock(&child_lock);
        for (;;) {
                siginfo_t si = {0};
                if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
                        if (errno == EINTR)
                                continue;
                        break;
                }
                if (si.si_pid == 0)
                        break;
                if (child_owned_locked(si.si_pid)) {
                        owned = true;
                        break;
                }
                (void) waitpid(si.si_pid, NULL, WNOHANG);
        }
        pthread_mutex_unlock(&child_lock);
        return owned;
}
