/* help_cmd.c: provium help TOPIC: one of the documents (docs/TOPIC.md of the source tree, or
 * PREFIX/share/provium/docs when installed), through $PAGER (less) on a terminal. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "paths.h"

/* Names people reach for, and the document that answers them. */
static const struct {
        const char *alias, *topic;
} help_aliases[] = {
    {"lua", "api"},        {"shell", "debugging"}, {"debug", "debugging"},
    {"keep", "debugging"}, {"recipes", "images"},  {"protocol", "protocol"},
};

static int by_name(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

void help_list_topics(FILE *f)
{
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s/docs", paths_source_dir());
        DIR *d = opendir(dir);
        if (!d)
                return;
        char *names[64];
        size_t n = 0;
        for (struct dirent *e; (e = readdir(d)) && n < 64;) {
                size_t len = strlen(e->d_name);
                if (len > 3 && strcmp(e->d_name + len - 3, ".md") == 0 &&
                    (names[n] = strndup(e->d_name, len - 3)))
                        n++;
        }
        closedir(d);
        qsort(names, n, sizeof *names, by_name);
        fprintf(f, "\nhelp topics (provium help TOPIC; man provium, man provium-lua):\n ");
        for (size_t i = 0; i < n; i++) {
                fprintf(f, " %s", names[i]);
                free(names[i]);
        }
        fprintf(f, "\n");
}

/* Shows path: through the pager on a terminal, else as it is. */
static int show(const char *path)
{
        const char *pager = getenv("PAGER");
        if (isatty(STDOUT_FILENO)) {
                pid_t pid = fork();
                if (pid == 0) {
                        if (pager && *pager)
                                execlp("/bin/sh", "sh", "-c", "exec $PAGER \"$0\"", path,
                                       (char *) NULL);
                        else
                                execlp("less", "less", "-R", path, (char *) NULL);
                        _exit(127);
                }
                int st;
                if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) &&
                    WEXITSTATUS(st) != 127)
                        return 0;
        }
        FILE *f = fopen(path, "re");
        if (!f)
                return -errno;
        char buf[8192];
        size_t k;
        while ((k = fread(buf, 1, sizeof buf, f)) > 0)
                fwrite(buf, 1, k, stdout);
        fclose(f);
        return 0;
}

int help_cmd_main(const char *topic)
{
        for (size_t i = 0; i < sizeof help_aliases / sizeof *help_aliases; i++)
                if (strcmp(topic, help_aliases[i].alias) == 0)
                        topic = help_aliases[i].topic;
        char path[PATH_MAX];
        if (strchr(topic, '/') || topic[0] == '.' ||
            (size_t) snprintf(path, sizeof path, "%s/docs/%s.md", paths_source_dir(), topic) >=
                sizeof path ||
            access(path, R_OK) < 0) {
                fprintf(stderr, "provium help: no topic '%s'\n", topic);
                help_list_topics(stderr);
                return 2;
        }
        int r = show(path);
        if (r < 0) {
                fprintf(stderr, "provium help: %s: %s\n", path, strerror(-r));
                return 1;
        }
        return 0;
}
