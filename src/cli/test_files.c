/* test_files.c: the test files a command line names, and this run's shard of them. */
#include "test_files.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shard.h"

static int add(TestFiles *f, const char *path)
{
        if (f->n == f->cap) {
                size_t cap = f->cap ? f->cap * 2 : 16;
                char **v = realloc(f->v, cap * sizeof *v);
                if (!v)
                        return -ENOMEM;
                f->v = v;
                f->cap = cap;
        }
        f->v[f->n] = strdup(path);
        return f->v[f->n] ? (int) ++f->n : -ENOMEM;
}

static bool is_test_file(const char *name)
{
        size_t n = strlen(name);
        return n > 9 && strcmp(name + n - 9, ".test.lua") == 0;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Walks dir in a stable (sorted) order, skipping hidden entries. */
static int walk(TestFiles *f, const char *dir)
{
        struct dirent **ents;
        int n = scandir(dir, &ents, NULL, alphasort);
        if (n < 0)
                return -errno;
        int r = 0;
        for (int i = 0; i < n; i++) {
                const char *name = ents[i]->d_name;
                char path[4096];
                struct stat st;
                if (r == 0 && name[0] != '.') {
                        snprintf(path, sizeof path, "%s/%s", dir, name);
                        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
                                r = walk(f, path);
                        else if (is_test_file(name))
                                r = add(f, path) < 0 ? -ENOMEM : 0;
                }
                free(ents[i]);
        }
        free(ents);
        return r;
}

static int discover(TestFiles *f, char **paths, int npaths)
{
        for (int i = 0; i < npaths; i++) {
                struct stat st;
                char p[4096];
                snprintf(p, sizeof p, "%s", paths[i]);
                size_t n = strlen(p);
                while (n > 1 && p[n - 1] == '/')
                        p[--n] = 0;
                if (stat(p, &st) < 0) {
                        int r = -errno;
                        fprintf(stderr, "provium: %s: %s\n", paths[i], strerror(-r));
                        return r;
                }
                int r = S_ISDIR(st.st_mode) ? walk(f, p) : add(f, p);
                if (r < 0) {
                        fprintf(stderr, "provium: %s: %s\n", paths[i], strerror(-r));
                        return r;
                }
        }
        return 0;
}

int test_files_find(TestFiles *f, const CliOptions *o, char **paths, int npaths)
{
        int r = discover(f, paths, npaths);
        if (r < 0)
                return r;
        if (f->n > 1)
                qsort(f->v, f->n, sizeof *f->v, cmp_str);
        f->all = f->n;
        Shard shard;
        char err[256];
        if (shard_choose(o->shard, o->shard_total, &shard, err, sizeof err) < 0) {
                fprintf(stderr, "provium: %s\n", err);
                return -EINVAL;
        }
        if (shard_select(&shard, f->v, &f->n) < 0) {
                fprintf(stderr, "provium: sharding: %s\n", strerror(ENOMEM));
                return -ENOMEM;
        }
        if (shard.total > 1)
                fprintf(stderr, "provium: shard %u/%u (from %s): %zu of %zu files\n",
                        shard.index + 1, shard.total, shard.from, f->n, f->all);
        return 0;
}

void test_files_free(TestFiles *f)
{
        for (size_t i = 0; i < f->n; i++)
                free(f->v[i]);
        free(f->v);
        *f = (TestFiles){0};
}
