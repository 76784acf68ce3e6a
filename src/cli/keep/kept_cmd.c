/* kept_cmd.c: provium ls and provium stop (kept_cmd.h). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cachedir.h"
#include "events_json.h"
#include "kept_cmd.h"

#define KEPT_STOP_WAIT_MS 60000

/* A string of a kept run's info as JSON (events_json.c's escaping: UTF-8 checked). */
static void json_str(const char *s)
{
        (void) events_json_string(stdout, s, strlen(s));
}

int ls_cmd_main(int argc, char **argv)
{
        bool json = argc == 2 && strcmp(argv[1], "--json") == 0;
        if (argc > 2 || (argc == 2 && !json)) {
                fprintf(stderr, "usage: provium ls [--json]   the kept runs (--keep-on-failure)\n");
                return 2;
        }
        KeptRun *v;
        size_t n;
        int r = kept_list(&v, &n);
        if (r < 0) {
                fprintf(stderr, "provium ls: %s: %s\n", kept_parent(false), strerror(-r));
                return 1;
        }
        if (json) {
                printf("[");
                for (size_t i = 0; i < n; i++) {
                        printf("%s{\"run\":", i ? "," : "");
                        json_str(v[i].id);
                        printf(",\"file\":");
                        json_str(v[i].file);
                        printf(",\"failed_test\":");
                        json_str(v[i].test);
                        printf(",\"vms\":");
                        json_str(v[i].vms);
                        printf(",\"pid\":%ld}", v[i].pid);
                }
                printf("]\n");
        } else if (n == 0)
                printf("no kept runs (provium --keep-on-failure keeps a failed file's VMs)\n");
        else {
                printf("%-28s %-8s %-20s %s\n", "RUN", "PID", "VMS", "FILE: FAILED TEST");
                for (size_t i = 0; i < n; i++)
                        printf("%-28s %-8ld %-20s %s: %s\n", v[i].id, v[i].pid, v[i].vms, v[i].file,
                               v[i].test);
        }
        free(v);
        return 0;
}

static bool dir_exists(const char *path)
{
        struct stat st;
        return stat(path, &st) == 0;
}

/* Asks over the control socket; a keeper that does not answer gets SIGTERM. */
static int kept_ask_stop(const KeptRun *k)
{
        int fd = kept_connect(k);
        if (fd < 0)
                return kill((pid_t) k->pid, SIGTERM) < 0 ? -errno : 0;
        ProtoWriter w;
        proto_writer_init(&w);
        proto_begin(&w, 1);
        proto_kv_str(&w, "op", "stop");
        int r = kept_send(fd, &w);
        proto_writer_done(&w);
        (void) close(fd);
        return r < 0 && kill((pid_t) k->pid, SIGTERM) < 0 ? -errno : 0;
}

int kept_stop(const KeptRun *k)
{
        int r = kept_ask_stop(k);
        if (r < 0) {
                fprintf(stderr, "provium stop: %s: %s\n", k->id, strerror(-r));
                return r;
        }
        struct timespec tick = {.tv_nsec = 50 * 1000000L};
        for (int waited = 0; dir_exists(k->dir); waited += 50) {
                if (waited >= KEPT_STOP_WAIT_MS) {
                        fprintf(stderr, "provium stop: %s: still stopping after %d s (pid %ld)\n",
                                k->id, KEPT_STOP_WAIT_MS / 1000, k->pid);
                        return -ETIMEDOUT;
                }
                if (kill((pid_t) k->pid, 0) < 0 && errno == ESRCH) {
                        (void) cachedir_rm_rf(k->dir); /* it died on the way: what it left */
                        break;
                }
                nanosleep(&tick, NULL);
        }
        return 0;
}

int stop_cmd_main(int argc, char **argv)
{
        if (argc < 2) {
                fprintf(stderr,
                        "usage: provium stop RUN... | --all   end kept runs (provium ls)\n");
                return 2;
        }
        KeptRun *v;
        size_t n;
        int r = kept_list(&v, &n);
        if (r < 0) {
                fprintf(stderr, "provium stop: cannot list the kept runs: %s\n", strerror(-r));
                return 1;
        }
        bool all = argc == 2 && strcmp(argv[1], "--all") == 0;
        int status = 0;
        for (int a = 1; a < argc && !all; a++) {
                size_t i = 0;
                while (i < n && strcmp(v[i].id, argv[a]) != 0)
                        i++;
                if (i == n) {
                        fprintf(stderr, "provium stop: no kept run '%s' (provium ls lists them)\n",
                                argv[a]);
                        status = 2;
                }
        }
        for (size_t i = 0; i < n && status == 0; i++) {
                bool named = all;
                for (int a = 1; a < argc && !named; a++)
                        named = strcmp(v[i].id, argv[a]) == 0;
                if (!named)
                        continue;
                if (kept_stop(&v[i]) < 0)
                        status = 1;
                else
                        printf("stopped %s\n", v[i].id);
        }
        free(v);
        return status;
}
