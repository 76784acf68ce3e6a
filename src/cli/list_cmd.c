/* list_cmd.c: `provium list [--json] PATH...`: the files a run would take (its -k, its shard),
 * their tests and their claims, for engines that plan a run and for a person choosing -k.
 * Nothing is booted: each file's chunk runs in a child (__list-file) with VM operations
 * refused, and the child reports list.file / list.test events on fd 3, checked here. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "events_json.h"
#include "proto.h"
#include "test_files.h"

/* What one file's lister said; strings borrowed from its events until the file is done. */
typedef struct Listing {
        const CliOptions *o;
        bool json;
        bool header;    /* list.file seen */
        unsigned tests; /* of this file */
        unsigned total_tests, failed_files;
} Listing;

static bool field_str(const msgpack_object *m, const char *key, char *buf, size_t len)
{
        const char *s;
        size_t n;
        if (proto_get_bytes(m, key, &s, &n) != 1 || n >= len)
                return false;
        memcpy(buf, s, n);
        buf[n] = 0;
        return true;
}

static void print_file(Listing *l, const char *file, uint64_t mb, uint64_t cpus, bool declared,
                       const char *error)
{
        if (l->json) {
                fputs("{\"file\":", stdout);
                events_json_string(stdout, file, strlen(file));
                printf(",\"claim\":{\"memory_mb\":%" PRIu64 ",\"cpus\":%" PRIu64
                       ",\"declared\":%s},\"error\":",
                       mb, cpus, declared ? "true" : "false");
                if (*error)
                        events_json_string(stdout, error, strlen(error));
                else
                        fputs("null", stdout);
                fputs(",\"tests\":[", stdout);
        } else if (*error)
                printf("%s  error: %s\n", file, error);
        else
                printf("%s  claim %" PRIu64 " MiB, %" PRIu64 " CPU%s%s\n", file, mb, cpus,
                       cpus == 1 ? "" : "s", declared ? "" : " (the default)");
}

static void print_test(Listing *l, const char *file, const char *test, uint64_t line)
{
        if (l->json) {
                char id[8192];
                snprintf(id, sizeof id, "%s: %s", file, test);
                printf("%s{\"name\":", l->tests ? "," : "");
                events_json_string(stdout, test, strlen(test));
                printf(",\"line\":%" PRIu64 ",\"id\":", line);
                events_json_string(stdout, id, strlen(id));
                fputc('}', stdout);
        } else
                printf("  %5" PRIu64 "  %s\n", line, test);
}

/* One event from the lister of file: only its own list.* events count. */
static void on_event(Listing *l, const char *file, const msgpack_object *m)
{
        char type[16], f[4096], text[4096];
        uint64_t mb, cpus, line;
        bool declared;
        if (!field_str(m, "type", type, sizeof type) || !field_str(m, "file", f, sizeof f) ||
            strcmp(f, file) != 0)
                return;
        if (strcmp(type, "list.file") == 0 && !l->header &&
            proto_get_uint(m, "memory_mb", &mb) == 1 && proto_get_uint(m, "cpus", &cpus) == 1 &&
            proto_get_bool(m, "declared", &declared) == 1 &&
            field_str(m, "error", text, sizeof text)) {
                l->header = true;
                l->failed_files += *text != 0;
                print_file(l, file, mb, cpus, declared, text);
        } else if (strcmp(type, "list.test") == 0 && l->header &&
                   field_str(m, "test", text, sizeof text) &&
                   proto_get_uint(m, "line", &line) == 1) {
                print_test(l, file, text, line);
                l->tests++;
                l->total_tests++;
        }
}

static int read_events(Listing *l, const char *file, int fd)
{
        ProtoReader r;
        if (proto_reader_init(&r) < 0)
                return -ENOMEM;
        int ret = 0;
        for (;;) {
                uint8_t *p = proto_reader_space(&r, 65536);
                ssize_t n = p ? read(fd, p, 65536) : -1;
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        ret = n < 0 ? -ENOMEM : 0;
                        break;
                }
                proto_reader_commit(&r, (size_t) n);
                msgpack_object m;
                int k;
                while ((k = proto_reader_next(&r, &m)) > 0)
                        on_event(l, file, &m);
                if (k < 0) {
                        ret = -EBADMSG;
                        break;
                }
        }
        proto_reader_done(&r);
        return ret;
}

/* Starts the lister of one file, its events on *ret_fd and its stdout on our stderr (a
 * chunk's prints are not the list). Returns its pid, or -errno. */
static pid_t spawn_lister(const CliOptions *o, const char *self, const char *file, int *ret_fd)
{
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                return -errno;
        char claim[48], timeout[32];
        snprintf(claim, sizeof claim, "%" PRIu64 ",%u", o->claim_mb, o->claim_cpus);
        snprintf(timeout, sizeof timeout, "%g", o->test_timeout_s);
        char *args[5 + CLI_MAX_FILTERS + 1] = {(char *) self, "__list-file", (char *) file, claim,
                                               timeout};
        for (int i = 0; i < o->nfilters; i++)
                args[5 + i] = (char *) o->filters[i];
        posix_spawn_file_actions_t fa;
        int r = posix_spawn_file_actions_init(&fa);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, pfd[1], 3);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, 2, 1);
        pid_t pid = -1;
        extern char **environ;
        if (r == 0)
                r = posix_spawn(&pid, self, &fa, NULL, args, environ);
        posix_spawn_file_actions_destroy(&fa);
        (void) close(pfd[1]);
        if (r != 0) {
                (void) close(pfd[0]);
                return -r;
        }
        *ret_fd = pfd[0];
        return pid;
}

static void list_one(Listing *l, const char *self, const char *file)
{
        int fd = -1, status = 0, r;
        l->header = false;
        l->tests = 0;
        pid_t pid = spawn_lister(l->o, self, file, &fd);
        r = pid < 0 ? (int) pid : read_events(l, file, fd);
        if (fd >= 0)
                (void) close(fd);
        if (pid > 0)
                while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                        ;
        if (!l->header) {
                char why[256];
                if (r < 0)
                        snprintf(why, sizeof why, "cannot list: %s", strerror(-r));
                else if (WIFSIGNALED(status))
                        snprintf(why, sizeof why, "the lister was killed by signal %d (%s)",
                                 WTERMSIG(status), strsignal(WTERMSIG(status)));
                else
                        snprintf(why, sizeof why,
                                 "the lister exited with status %d and said nothing",
                                 WEXITSTATUS(status));
                l->failed_files++;
                print_file(l, file, 0, 0, false, why);
        }
        if (l->json)
                fputs("]}", stdout);
}

int list_cmd_run(const CliOptions *o, bool json, char **paths, int npaths)
{
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n < 0) {
                perror("provium: readlink /proc/self/exe");
                return 2;
        }
        self[n] = 0;
        TestFiles files = {0};
        if (test_files_find(&files, o, paths, npaths) < 0) {
                test_files_free(&files);
                return 2;
        }
        Listing l = {.o = o, .json = json};
        if (json)
                fputs("{\"files\":[", stdout);
        for (size_t i = 0; i < files.n; i++) {
                if (json && i > 0)
                        fputc(',', stdout);
                list_one(&l, self, files.v[i]);
        }
        if (json)
                printf("],\"tests\":%u}\n", l.total_tests);
        else
                printf("%u test%s in %zu file%s\n", l.total_tests, l.total_tests == 1 ? "" : "s",
                       files.n, files.n == 1 ? "" : "s");
        test_files_free(&files);
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "provium: list: writing the list: %s\n", strerror(errno));
                return 2;
        }
        return l.failed_files ? 1 : 0;
}
