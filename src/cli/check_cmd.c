/* check_cmd.c: `provium check PATH...`. Each *.test.lua under the paths (as `provium run` finds
 * them) is read and checked by the prelude's internal.check_source (api.lua): syntax errors,
 * method calls that are not in Provium's API (with "did you mean"), unknown vm:boot options.
 * Globals that are neither Lua's nor Provium's come from Debian's luacheck (lua-check), run once
 * over all the files with Provium's globals declared, when it is installed; without it the run
 * says that globals went unchecked. Nothing boots and no test runs. */
#include <errno.h>
#include <lauxlib.h>
#include <lualib.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check_cmd.h"
#include "cli.h"
#include "provium.h"
#include "test_files.h"

#define CHECK_FILE_MAX (16u << 20) /* a test file larger than this is refused, not read */

extern char **environ;

/* The file's text, or NULL with *ret_err set. */
static char *read_source(const char *path, size_t *ret_len, const char **ret_err)
{
        FILE *f = fopen(path, "re");
        if (!f) {
                *ret_err = strerror(errno);
                return NULL;
        }
        char *buf = malloc(CHECK_FILE_MAX + 1);
        size_t n = buf ? fread(buf, 1, CHECK_FILE_MAX + 1, f) : 0;
        bool bad = ferror(f);
        (void) fclose(f);
        if (!buf || bad || n > CHECK_FILE_MAX) {
                *ret_err = !buf ? strerror(ENOMEM) : bad ? "read error" : "larger than 16 MiB";
                free(buf);
                return NULL;
        }
        buf[n] = 0;
        *ret_len = n;
        return buf;
}

/* Prints what internal.check_source finds in path. Returns the count, or -1 (printed). */
static int check_one(lua_State *L, const char *path)
{
        size_t len = 0;
        const char *err = NULL;
        char *src = read_source(path, &len, &err);
        if (!src) {
                printf("%s: cannot read: %s\n", path, err);
                return 1;
        }
        lua_getfield(L, LUA_REGISTRYINDEX, "provium.internal");
        lua_getfield(L, -1, "check_source");
        lua_pushstring(L, path);
        lua_pushlstring(L, src, len);
        free(src);
        if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
                printf("%s: provium check failed: %s\n", path, lua_tostring(L, -1));
                lua_pop(L, 2);
                return 1;
        }
        int n = (int) luaL_len(L, -1);
        for (int i = 1; i <= n; i++) {
                lua_geti(L, -1, i);
                printf("%s\n", lua_tostring(L, -1));
                lua_pop(L, 1);
        }
        lua_pop(L, 2);
        return n;
}

/* luacheck over the files: only its syntax (E0xx) and global (W11x) findings, with Provium's
 * globals. Returns how many lines it printed, -1 when luacheck is not installed. */
static int check_globals(const TestFiles *files)
{
        size_t n = files->n;
        const char **argv = calloc(n + 16, sizeof *argv);
        if (!argv)
                return -1;
        size_t k = 0;
        const char *fixed[] = {"luacheck", "--no-config", "--no-color", "--codes",   "--formatter",
                               "plain",    "--std",       "lua54",      "--globals", "provium",
                               "test",     "--only",      "0",          "11"};
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
                argv[k++] = fixed[i];
        argv[k++] = "--";
        for (size_t i = 0; i < n; i++)
                argv[k++] = files->v[i];
        argv[k] = NULL;
        int fds[2];
        if (pipe(fds) < 0) {
                free(argv);
                return -1;
        }
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
        posix_spawn_file_actions_addclose(&fa, fds[0]);
        pid_t pid;
        int r = posix_spawnp(&pid, "luacheck", &fa, NULL, (char **) argv, environ);
        posix_spawn_file_actions_destroy(&fa);
        free(argv);
        (void) close(fds[1]);
        if (r != 0) {
                (void) close(fds[0]);
                return -1;
        }
        FILE *out = fdopen(fds[0], "r");
        int found = 0;
        char line[4096];
        while (out && fgets(line, sizeof line, out)) {
                fputs(line, stdout);
                found++;
        }
        if (out)
                (void) fclose(out);
        else
                (void) close(fds[0]);
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        return found;
}

/* The state every check uses: Lua's libraries and the prelude. NULL (printed) on failure. */
static lua_State *check_state(void)
{
        lua_State *L = luaL_newstate();
        if (!L || (luaL_openlibs(L), bind_provium_open(L)) < 0) {
                fprintf(stderr, "provium check: cannot load the prelude: %s\n",
                        L ? lua_tostring(L, -1) : strerror(ENOMEM));
                if (L)
                        lua_close(L);
                return NULL;
        }
        return L;
}

/* provium check --api: "Class:method" a line, every public method of the API. */
static int print_api(void)
{
        lua_State *L = check_state();
        if (!L)
                return 2;
        lua_getfield(L, LUA_REGISTRYINDEX, "provium.internal");
        lua_getfield(L, -1, "api_list");
        int r = lua_pcall(L, 0, 1, 0) == LUA_OK ? 0 : 2;
        for (lua_Integer i = 1; r == 0 && i <= luaL_len(L, -1); i++) {
                lua_geti(L, -1, i);
                printf("%s\n", lua_tostring(L, -1));
                lua_pop(L, 1);
        }
        if (r)
                fprintf(stderr, "provium check --api: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return r;
}

int check_cmd_main(int argc, char **argv)
{
        if (argc < 2 || strcmp(argv[1], "--help") == 0) {
                fprintf(argc < 2 ? stderr : stdout,
                        "usage: provium check PATH...   test files' mistakes, found without "
                        "running them\n"
                        "       provium check --api     every public method, Class:method\n");
                return argc < 2 ? 2 : 0;
        }
        if (strcmp(argv[1], "--api") == 0)
                return print_api();
        CliOptions o = {0};
        TestFiles files = {0};
        if (test_files_find(&files, &o, argv + 1, argc - 1) < 0)
                return 2;
        lua_State *L = check_state();
        if (!L) {
                test_files_free(&files);
                return 2;
        }
        int found = 0;
        for (size_t i = 0; i < files.n; i++)
                found += check_one(L, files.v[i]);
        int globals = files.n ? check_globals(&files) : 0;
        if (globals > 0)
                found += globals;
        printf("provium check: %zu file%s, %d problem%s%s\n", files.n, files.n == 1 ? "" : "s",
               found, found == 1 ? "" : "s",
               globals < 0 ? " (globals not checked: luacheck is not installed; scripts/bootstrap "
                             "installs lua-check)"
                           : "");
        lua_close(L);
        test_files_free(&files);
        return found ? 1 : 0;
}
