/* init_cmd.c: provium init [DIR]: a starter project. Copies the templates (templates/init in
 * the source tree, PREFIX/share/provium/templates/init when installed: an example test, a
 * recipe, a CI snippet) and writes a .luarc.json that points LuaLS at the API's annotations.
 * It refuses to write over anything: an existing tests/ is left alone, naming it.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "paths.h"

static const char *const init_files[] = {
    "tests/example.test.lua",
    "tests/images/hello.lua",
    "ci/github-actions.yml",
};

static int copy_file(const char *from, const char *to)
{
        FILE *in = fopen(from, "re");
        if (!in)
                return -errno;
        int fd = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        FILE *out = fd < 0 ? NULL : fdopen(fd, "w");
        if (!out) {
                int r = -errno;
                if (fd >= 0)
                        (void) close(fd);
                fclose(in);
                return r;
        }
        char buf[8192];
        size_t n;
        int r = 0;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0)
                if (fwrite(buf, 1, n, out) != n)
                        r = -EIO;
        if (ferror(in))
                r = -EIO;
        fclose(in);
        if (fclose(out) != 0 && r == 0)
                r = -errno;
        return r;
}

/* mkdir -p of path's directory, relative to dir. */
static int make_parent(const char *dir, const char *rel)
{
        char path[PATH_MAX];
        if ((size_t) snprintf(path, sizeof path, "%s/%s", dir, rel) >= sizeof path)
                return -ENAMETOOLONG;
        char *slash = strrchr(path, '/');
        *slash = 0;
        return paths_mkdir_p(path, 0755);
}

static int write_luarc(const char *dir)
{
        char path[PATH_MAX], types[PATH_MAX];
        snprintf(path, sizeof path, "%s/.luarc.json", dir);
        if (!realpath(paths_source_dir(), types))
                return -errno;
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        FILE *f = fd < 0 ? NULL : fdopen(fd, "w");
        if (!f)
                return -errno;
        fprintf(
            f,
            "{\n"
            "  \"$schema\": "
            "\"https://raw.githubusercontent.com/LuaLS/vscode-lua/master/setting/schema.json\",\n"
            "  \"runtime.version\": \"Lua 5.4\",\n"
            "  \"workspace.library\": [\"%s/types\"],\n"
            "  \"diagnostics.globals\": [\"test\", \"provium\"]\n"
            "}\n",
            types);
        return fclose(f) == 0 ? 0 : -errno;
}

/* What would be overwritten: the first of the files that exists already, or NULL. */
static const char *first_existing(const char *dir, char *buf, size_t size)
{
        static const char *const mine[] = {"tests", ".luarc.json", "ci/github-actions.yml"};
        for (size_t i = 0; i < sizeof mine / sizeof *mine; i++) {
                snprintf(buf, size, "%s/%s", dir, mine[i]);
                if (access(buf, F_OK) == 0)
                        return buf;
        }
        return NULL;
}

int init_cmd_main(int argc, char **argv)
{
        if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
                fprintf(stderr,
                        "usage: provium init [DIR]   a starter tests/ in DIR (default .)\n");
                return argc == 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
        }
        const char *dir = argc == 2 ? argv[1] : ".";
        char buf[PATH_MAX], from[PATH_MAX], to[PATH_MAX];
        int r = paths_mkdir_p(dir, 0755);
        if (r < 0) {
                fprintf(stderr, "provium init: %s: %s\n", dir, strerror(-r));
                return 1;
        }
        const char *there = first_existing(dir, buf, sizeof buf);
        if (there) {
                fprintf(stderr,
                        "provium init: %s exists already: provium init writes only into a "
                        "project without it\n",
                        there);
                return 1;
        }
        for (size_t i = 0; i < sizeof init_files / sizeof *init_files; i++) {
                snprintf(from, sizeof from, "%s/templates/init/%s", paths_source_dir(),
                         init_files[i]);
                snprintf(to, sizeof to, "%s/%s", dir, init_files[i]);
                if ((r = make_parent(dir, init_files[i])) < 0 || (r = copy_file(from, to)) < 0) {
                        fprintf(stderr, "provium init: %s: %s\n", r == -ENOENT ? from : to,
                                strerror(-r));
                        return 1;
                }
                printf("wrote %s\n", to);
        }
        if ((r = write_luarc(dir)) < 0) {
                fprintf(stderr, "provium init: %s/.luarc.json: %s\n", dir, strerror(-r));
                return 1;
        }
        printf("wrote %s/.luarc.json (LuaLS: the API's types)\n"
               "next: provium %s/tests/   (provium help for the documents)\n",
               dir, dir);
        return 0;
}
