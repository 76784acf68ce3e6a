/* qemu.c: which QEMU program Provium runs (see qemu.h). */
#include "qemu.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "env.h"
#include "strfmt.h"

extern char **environ;

const char *qemu_program(void)
{
        const char *q = env_get()->qemu;
        return q ? q : "qemu-system-x86_64";
}

int qemu_find(char *ret_path, size_t n)
{
        const char *q = qemu_program();
        snprintf(ret_path, n, "%s", q);
        if (strchr(q, '/'))
                return access(q, X_OK) == 0 ? 0 : -ENOENT;
        const char *path = env_get()->path;
        char *copy = strdup(path ? path : "/usr/local/bin:/usr/bin:/bin"), *save = NULL;
        if (!copy)
                return -ENOMEM;
        int r = -ENOENT;
        for (char *d = strtok_r(copy, ":", &save); d && r < 0; d = strtok_r(NULL, ":", &save)) {
                char p[PATH_MAX];
                if ((size_t) snprintf(p, sizeof p, "%s/%s", d, q) < sizeof p &&
                    access(p, X_OK) == 0) {
                        snprintf(ret_path, n, "%s", p);
                        r = 0;
                }
        }
        free(copy);
        return r;
}

/* Runs `qemu --version` with stdout and stderr into a pipe; returns its output and exit
 * status (256+signal when killed). */
static int run_version(const char *qemu, char **ret_out, int *ret_status)
{
        const char *argv[] = {qemu, "--version", NULL};
        posix_spawn_file_actions_t fa;
        size_t len = 0, cap = 4096;
        char *out = NULL;
        int p[2], r, status;
        pid_t pid;

        if (pipe2(p, O_CLOEXEC) < 0)
                return -errno;
        r = posix_spawn_file_actions_init(&fa);
        if (r != 0) {
                (void) close(p[0]);
                (void) close(p[1]);
                return -r;
        }
        r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, p[1], 1);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, p[1], 2);
        if (r == 0)
                r = posix_spawnp(&pid, qemu, &fa, NULL, (char *const *) argv, environ);
        (void) posix_spawn_file_actions_destroy(&fa);
        (void) close(p[1]);
        if (r != 0) {
                (void) close(p[0]);
                return -r;
        }
        out = malloc(cap);
        for (r = out ? 0 : -ENOMEM; r == 0;) {
                if (cap - len < 2) {
                        char *nb = cap < (1u << 20) ? realloc(out, cap * 2) : NULL;
                        if (!nb)
                                break; /* enough: only the first line matters */
                        out = nb;
                        cap *= 2;
                }
                ssize_t n = read(p[0], out + len, cap - len - 1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        r = -errno;
                if (n <= 0)
                        break;
                len += (size_t) n;
        }
        (void) close(p[0]);
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR) {
                        r = r < 0 ? r : -errno;
                        break;
                }
        if (r < 0) {
                free(out);
                return r;
        }
        out[len] = '\0';
        *ret_out = out;
        *ret_status = WIFEXITED(status) ? WEXITSTATUS(status) : 256 + WTERMSIG(status);
        return 0;
}

const char *qemu_version(char *err, size_t errlen)
{
        static char *cached;
        const char *handed = env_get()->qemu_version, *qemu = qemu_program();
        char *out = NULL;
        int r, status = 0;

        seterr(err, errlen, "%s", "");
        if (cached)
                return cached;
        if (handed) {
                cached = strdup(handed);
                if (!cached)
                        seterr(err, errlen, "qemu version: %s", strerror(ENOMEM));
                return cached;
        }
        r = run_version(qemu, &out, &status);
        if (r < 0) {
                seterr(err, errlen, "qemu version: cannot run %s --version: %s", qemu,
                       strerror(-r));
                return NULL;
        }
        out[strcspn(out, "\r\n")] = '\0';
        if (status != 0 || !*out) {
                seterr(err, errlen, "qemu version: %s --version %s %d%s%s", qemu,
                       status >= 256 ? "was killed by signal" : "exited with status",
                       status >= 256 ? status - 256 : status, *out ? ": " : " and printed nothing",
                       out);
                free(out);
                return NULL;
        }
        cached = out;
        return cached;
}
