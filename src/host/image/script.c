/* script.c: running the image build scripts and reading their output (see script.h). */
#include "script.h"
#include "netns.h"
#include "strfmt.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "env.h"

extern char **environ;

#define BUILD_TIMEOUT_S 1800 /* an image build script's, unless PROVIUM_BUILD_TIMEOUT says */

static const char *wrapper; /* our executable, for `__build`; NULL: scripts run bare */

void script_set_wrapper(const char *exe)
{
        wrapper = exe;
}

static long build_timeout_s(void)
{
        const char *v = env_get()->build_timeout;
        long s = v ? strtol(v, NULL, 10) : 0;
        return s > 0 && s <= 86400 ? s : BUILD_TIMEOUT_S;
}

/* Reads all of fd from offset 0 into a NUL-terminated buffer. Returns 0 or -errno. */
int script_read_fd(int fd, char **ret, size_t *ret_len)
{
        size_t len = 0, cap = 4096;
        char *buf = malloc(cap);
        off_t off = 0;

        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (cap - len < 2) {
                        char *nb = realloc(buf, cap * 2);
                        if (!nb) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = nb;
                        cap *= 2;
                }
                ssize_t n = pread(fd, buf + len, cap - len - 1, off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = -errno;
                        free(buf);
                        return r;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
                off += n;
        }
        buf[len] = '\0';
        *ret = buf;
        if (ret_len)
                *ret_len = len;
        return 0;
}

int script_read_file(const char *path, char **ret)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        int r;

        if (fd < 0)
                return -errno;
        r = script_read_fd(fd, ret, NULL);
        (void) close(fd);
        return r;
}

/* Copies the last `lines` lines of text into err after prefix. */
void script_seterr_tail(char *err, size_t errlen, const char *prefix, const char *text, int lines)
{
        size_t n = strlen(text);
        const char *p;

        while (n > 0 && text[n - 1] == '\n')
                n--;
        p = text + n;
        for (int seen = 0; p > text; p--)
                if (p[-1] == '\n' && ++seen == lines)
                        break;
        seterr(err, errlen, "%s\n%.*s", prefix, (int) (text + n - p), p);
}

int script_run(const char *interp, const char *script, const char *const *args, const char *cache,
               int out_fd, int err_fd)
{
        const char *argv[12];
        char ppid[24], timeout[24];
        size_t argc = 0, nenv = 0;
        posix_spawn_file_actions_t fa;
        char **envp = NULL, *cache_env = NULL;
        pid_t pid;
        int r, status;

        if (wrapper) {
                snprintf(ppid, sizeof ppid, "%ld", (long) getpid());
                snprintf(timeout, sizeof timeout, "%ld", build_timeout_s());
                argv[argc++] = wrapper;
                argv[argc++] = "__build";
                argv[argc++] = ppid;
                argv[argc++] = timeout;
        }
        argv[argc++] = interp;
        argv[argc++] = script;
        for (size_t i = 0; args[i]; i++) {
                assert(argc < sizeof argv / sizeof argv[0] - 1);
                argv[argc++] = args[i];
        }
        argv[argc] = NULL;

        for (char **e = environ; *e; e++)
                nenv++;
        envp = calloc(nenv + 2, sizeof *envp);
        cache_env = xasprintf("PROVIUM_CACHE_DIR=%s", cache);
        if (!envp || !cache_env) {
                free(envp);
                free(cache_env);
                return -ENOMEM;
        }
        nenv = 0;
        for (char **e = environ; *e; e++)
                if (strncmp(*e, "PROVIUM_CACHE_DIR=", 18) != 0)
                        envp[nenv++] = *e;
        envp[nenv++] = cache_env;
        envp[nenv] = NULL;

        r = posix_spawn_file_actions_init(&fa);
        if (r != 0) {
                free(envp);
                free(cache_env);
                return -r;
        }
        r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
        if (r == 0) {
                /* in the host's network namespace: builds download packages */
                int saved = netns_enter_host();
                r = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *) argv, envp);
                netns_return(saved);
        }
        (void) posix_spawn_file_actions_destroy(&fa);
        free(envp);
        free(cache_env);
        if (r != 0)
                return -r;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 256 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

void script_describe_status(int status, char *buf, size_t len)
{
        if (status == 256 + SIGALRM && wrapper)
                (void) snprintf(buf, len, "stopped at its timeout, %ld s ($PROVIUM_BUILD_TIMEOUT)",
                                build_timeout_s());
        else if (status >= 256)
                (void) snprintf(buf, len, "killed by signal %d", status - 256);
        else
                (void) snprintf(buf, len, "exit status %d", status);
}

int script_capture(const char *interp, const char *script, const char *const *args,
                   const char *cache, char **out, char **errtext)
{
        int ofd = memfd_create("provium-script-out", MFD_CLOEXEC);
        int efd = memfd_create("provium-script-err", MFD_CLOEXEC);
        int status, r;

        *out = *errtext = NULL;
        if (ofd < 0 || efd < 0) {
                status = -errno;
                goto out;
        }
        status = script_run(interp, script, args, cache, ofd, efd);
        if (status < 0)
                goto out;
        r = script_read_fd(ofd, out, NULL);
        if (r >= 0)
                r = script_read_fd(efd, errtext, NULL);
        if (r < 0)
                status = r;
out:
        if (ofd >= 0)
                (void) close(ofd);
        if (efd >= 0)
                (void) close(efd);
        return status;
}

/* ---- the wrapper ---- */

/* In the build's first process: dies with the wrapper (alive: the read end of its pipe), then
 * becomes the program. */
static void exec_build(int alive, char **argv)
{
        struct pollfd p = {.fd = alive, .events = POLLIN};
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || poll(&p, 1, 0) != 0)
                _exit(1);
        (void) close(alive);
        execvp(argv[0], argv);
        fprintf(stderr, "provium: __build: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
}

static int run_wrapped(int argc, char **argv)
{
        if (argc < 4) {
                fprintf(stderr, "provium: __build: usage: __build PPID TIMEOUT PROGRAM [ARGS]\n");
                return 2;
        }
        pid_t parent = (pid_t) atol(argv[1]);
        unsigned timeout = (unsigned) atol(argv[2]);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                return 1;
        /* The first process of a PID namespace takes every other one with it when it dies. */
        if (unshare(CLONE_NEWPID) < 0)
                (void) setpgid(0, 0); /* not root: a process group at least */
        int alive[2];
        if (pipe2(alive, O_CLOEXEC) < 0) {
                perror("provium: __build: pipe");
                return 1;
        }
        pid_t pid = fork();
        if (pid < 0) {
                perror("provium: __build: fork");
                return 1;
        }
        if (pid == 0) {
                (void) close(alive[1]);
                exec_build(alive[0], argv + 3);
        }
        (void) close(alive[0]);
        if (timeout > 0)
                (void) alarm(timeout); /* SIGALRM ends us, and the build with us */
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return 1;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        (void) signal(WTERMSIG(status), SIG_DFL);
        (void) raise(WTERMSIG(status));
        return 128 + WTERMSIG(status);
}

/* _exit: the wrapper's child is the first process of the new PID namespace, and LeakSanitizer
 * (make check-asan) would check for leaks at exit from a thread it clones into that namespace,
 * where it cannot trace us, and fail the build with its status. The wrapper allocates nothing. */
int script_wrapper_main(int argc, char **argv)
{
        _exit(run_wrapped(argc, argv));
}
