/* recipe.c: finding an image recipe, running it in a sandbox, and turning it into a spec.
 *
 * Sections: finding / running the recipe (Lua) / the Lua table as JSON / copies: host paths
 * and their hashes / recipe_load. */
#include "recipe.h"
#include "env.h"
#include "lua_heap.h"
#include "strfmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <limits.h>
#include <lua.h>
#include <lualib.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "keyhash.h"
#include "recipe_dsl.h"

#define RECIPE_MAX_BYTES    (1 << 20)
#define RECIPE_MAX_STEPS    1000 /* hook calls of RECIPE_HOOK_COUNT instructions each */
#define RECIPE_HOOK_COUNT   100000
#define RECIPE_DEFAULT_DIRS "images:tests/images"
#define RECIPE_MAX_MEMORY   (64u << 20) /* what a recipe's Lua state may allocate, bytes */

/* ---- finding ---- */

static bool readable_file(const char *path)
{
        struct stat sb;
        return stat(path, &sb) == 0 && S_ISREG(sb.st_mode) && access(path, R_OK) == 0;
}

char *recipe_find(const char *name, char *searched, size_t searchedlen)
{
        const char *env = env_get()->image_path;
        char *dirs = xasprintf("%s%s%s", env && *env ? env : "", env && *env ? ":" : "",
                               RECIPE_DEFAULT_DIRS);
        char *found = NULL, *save = NULL;
        size_t used = 0;

        if (searchedlen > 0)
                searched[0] = '\0';
        if (!dirs) {
                errno = ENOMEM;
                return NULL;
        }
        for (char *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
                char *path = xasprintf("%s/%s.lua", d, name);
                if (path && readable_file(path))
                        found = path;
                else
                        free(path);
                if (!found && used < searchedlen) {
                        int n = snprintf(searched + used, searchedlen - used, "%s%s/",
                                         used ? ", " : "", d);
                        used += n > 0 ? (size_t) n : 0;
                }
        }
        free(dirs);
        if (!found)
                errno = ENOENT;
        return found;
}

char *recipe_display_path(const char *path)
{
        char cwd[PATH_MAX];
        size_t n;

        if (path[0] == '/' && getcwd(cwd, sizeof cwd)) {
                n = strlen(cwd);
                if (strncmp(path, cwd, n) == 0 && path[n] == '/')
                        return strdup(path + n + 1);
        }
        return strdup(path);
}

/* ---- running the recipe (Lua) ---- */

static void steps_hook(lua_State *L, lua_Debug *ar)
{
        lua_getfield(L, LUA_REGISTRYINDEX, "recipe.steps");
        lua_Integer steps = lua_tointeger(L, -1) + 1;
        lua_pop(L, 1);
        lua_pushinteger(L, steps);
        lua_setfield(L, LUA_REGISTRYINDEX, "recipe.steps");
        if (steps <= RECIPE_MAX_STEPS)
                return;
        if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
                lua_pushfstring(L, "%s:%d: ", ar->short_src, ar->currentline);
        else
                lua_pushliteral(L, "");
        lua_pushfstring(L, "the recipe runs too long (over %d million Lua instructions)",
                        RECIPE_MAX_STEPS / 10);
        lua_concat(L, 2);
        lua_error(L);
}

static int read_recipe(const char *path, char **ret, size_t *ret_len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        char *buf;
        ssize_t n;

        if (fd < 0)
                return -errno;
        if (fstat(fd, &sb) < 0 || sb.st_size > RECIPE_MAX_BYTES) {
                int r = sb.st_size > RECIPE_MAX_BYTES ? -EFBIG : -errno;
                (void) close(fd);
                return r;
        }
        buf = malloc((size_t) sb.st_size + 1);
        if (!buf) {
                (void) close(fd);
                return -ENOMEM;
        }
        n = read(fd, buf, (size_t) sb.st_size);
        if (n < 0) {
                int r = -errno;
                free(buf);
                (void) close(fd);
                return r;
        }
        (void) close(fd);
        buf[n] = '\0';
        *ret = buf;
        *ret_len = (size_t) n;
        return 0;
}

/* Leaves evaluate(chunk)'s spec table on the stack, or returns nonzero with the message. */
static int run_recipe(lua_State *L, const char *display, const char *text, size_t len)
{
        static const luaL_Reg libs[] = {
            {LUA_GNAME, luaopen_base},       {LUA_STRLIBNAME, luaopen_string},
            {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
            {LUA_UTF8LIBNAME, luaopen_utf8}, {LUA_DBLIBNAME, luaopen_debug}};
        char *chunkname = xasprintf("@%s", display);

        for (size_t i = 0; i < sizeof libs / sizeof libs[0]; i++) {
                luaL_requiref(L, libs[i].name, libs[i].func, 1);
                lua_pop(L, 1);
        }
        if (!chunkname) {
                lua_pushstring(L, "out of memory");
                return LUA_ERRMEM;
        }
        int r = luaL_loadbufferx(L, provium_recipe_dsl, sizeof provium_recipe_dsl - 1,
                                 "=recipe.lua", "t");
        if (r == LUA_OK)
                r = lua_pcall(L, 0, 0, 0);
        if (r == LUA_OK) {
                lua_getglobal(L, "evaluate");
                r = luaL_loadbufferx(L, text, len, chunkname, "t");
        }
        free(chunkname);
        if (r != LUA_OK)
                return r;
        lua_sethook(L, steps_hook, LUA_MASKCOUNT, RECIPE_HOOK_COUNT);
        r = lua_pcall(L, 1, 1, 0);
        lua_sethook(L, NULL, 0, 0);
        return r;
}

/* ---- the Lua table as JSON ---- */

static bool call_pred(lua_State *L, const char *fn, int idx)
{
        idx = lua_absindex(L, idx);
        lua_getglobal(L, fn);
        lua_pushvalue(L, idx);
        lua_call(L, 1, 1);
        bool b = lua_toboolean(L, -1);
        lua_pop(L, 1);
        return b;
}

/* Converts the value at idx: strings, integers, booleans, NULL, ARRAY lists and string-keyed
 * tables (the only shapes recipe.lua makes). */
static json_t *to_json(lua_State *L, int idx, bool *not_utf8)
{
        idx = lua_absindex(L, idx);
        switch (lua_type(L, idx)) {
        case LUA_TSTRING: {
                size_t len;
                const char *s = lua_tolstring(L, idx, &len);
                json_t *j = json_stringn(s, len);
                if (!j)
                        *not_utf8 = true; /* jansson holds UTF-8 only; else it is out of memory */
                return j;
        }
        case LUA_TNUMBER:
                if (lua_isinteger(L, idx))
                        return json_integer((json_int_t) lua_tointeger(L, idx));
                return json_real(lua_tonumber(L, idx));
        case LUA_TBOOLEAN:
                return json_boolean(lua_toboolean(L, idx));
        case LUA_TTABLE:
                break;
        default:
                return NULL;
        }
        if (call_pred(L, "is_null", idx))
                return json_null();
        if (call_pred(L, "is_array", idx)) {
                json_t *a = json_array();
                /* raw: a metamethod of the recipe's would run here, outside the step limit */
                lua_Integer n = (lua_Integer) lua_rawlen(L, idx);
                for (lua_Integer i = 1; a && i <= n; i++) {
                        lua_rawgeti(L, idx, i);
                        json_t *v = to_json(L, -1, not_utf8);
                        lua_pop(L, 1);
                        if (!v || json_array_append_new(a, v) < 0) {
                                json_decref(a);
                                a = NULL;
                        }
                }
                return a;
        }
        json_t *o = json_object();
        lua_pushnil(L);
        while (o && lua_next(L, idx)) {
                json_t *v = lua_type(L, -2) == LUA_TSTRING ? to_json(L, -1, not_utf8) : NULL;
                if (!v || json_object_set_new(o, lua_tostring(L, -2), v) < 0) {
                        json_decref(o);
                        o = NULL;
                        lua_pop(L, 1);
                        break;
                }
                lua_pop(L, 1);
        }
        return o;
}

/* ---- copies: host paths and their hashes ---- */

/* Hashes path (named rel in the copy) and, for a directory, everything below it in name
 * order. On failure, *bad is the path that failed. */
static int hash_tree(XXH3_state_t *st, const char *path, const char *rel, char **bad)
{
        struct stat sb;
        int r = 0;

        if (lstat(path, &sb) < 0) {
                r = -errno;
                goto fail;
        }
        uint32_t mode = (uint32_t) sb.st_mode;
        keyhash_field(st, "path", rel, strlen(rel));
        keyhash_field(st, "mode", &mode, sizeof mode);
        if (S_ISREG(sb.st_mode)) {
                r = keyhash_file(st, "data", path);
        } else if (S_ISLNK(sb.st_mode)) {
                char target[PATH_MAX];
                ssize_t n = readlink(path, target, sizeof target);
                if (n < 0)
                        r = -errno;
                else
                        keyhash_field(st, "link", target, (size_t) n);
        } else if (S_ISDIR(sb.st_mode)) {
                struct dirent **names = NULL;
                int n = scandir(path, &names, NULL, alphasort);
                if (n < 0)
                        r = -errno;
                for (int i = 0; i < n; i++) {
                        const char *e = names[i]->d_name;
                        if (r == 0 && strcmp(e, ".") != 0 && strcmp(e, "..") != 0) {
                                char *p = xasprintf("%s/%s", path, e);
                                char *q = xasprintf("%s/%s", rel, e);
                                r = p && q ? hash_tree(st, p, q, bad) : -ENOMEM;
                                free(p);
                                free(q);
                        }
                        free(names[i]);
                }
                free(names);
                return r;
        } else {
                r = -EINVAL; /* devices, FIFOs and sockets do not belong in an image */
        }
        if (r == 0)
                return 0;
fail:
        if (!*bad)
                *bad = strdup(path);
        return r;
}

/* Makes each copy's src absolute (relative to the recipe's directory) and adds its hash. */
static int resolve_copies(json_t *spec, const char *path, const char *display, char *err,
                          size_t errlen)
{
        json_t *copies = json_object_get(spec, "copies"), *c;
        char *dir = strdup(path), *slash;
        size_t i;
        int r = 0;

        if (!dir)
                return -ENOMEM;
        slash = strrchr(dir, '/');
        if (slash)
                *slash = '\0';
        json_array_foreach (copies, i, c) {
                const char *src = json_string_value(json_object_get(c, "src"));
                const char *dst = json_string_value(json_object_get(c, "dst"));
                long long line = (long long) json_integer_value(json_object_get(c, "line"));
                char *joined =
                    src[0] == '/' ? strdup(src) : xasprintf("%s/%s", slash ? dir : ".", src);
                char *abs = joined ? realpath(joined, NULL) : NULL, *bad = NULL;
                XXH3_state_t *st = NULL;
                if (!abs) {
                        r = joined ? -errno : -ENOMEM;
                        seterr(err, errlen, "%s:%lld: copy %s: source %s: %s", display, line, dst,
                               joined ? joined : src, strerror(-r));
                        free(joined);
                        break;
                }
                free(joined);
                st = XXH3_createState();
                r = st && XXH3_128bits_reset(st) == XXH_OK ? hash_tree(st, abs, ".", &bad)
                                                           : -ENOMEM;
                if (r == 0) {
                        char hex[33];
                        keyhash_hex(st, hex);
                        if (json_object_set_new(c, "src", json_string(abs)) < 0 ||
                            json_object_set_new(c, "hash", json_string(hex)) < 0)
                                r = -ENOMEM;
                } else {
                        seterr(err, errlen, "%s:%lld: copy %s: source %s: %s", display, line, dst,
                               bad ? bad : abs,
                               r == -EINVAL ? "not a file, directory or symbolic link"
                                            : strerror(-r));
                }
                XXH3_freeState(st);
                free(bad);
                free(abs);
                if (r < 0)
                        break;
        }
        free(dir);
        return r;
}

/* ---- recipe_load ---- */

/* The message of a recipe that failed: Lua's, which names the file and line, or one that
 * names the recipe when the error was not a string or had no location (error(x, 0)). */
static void recipe_error(lua_State *L, const char *name, const char *display, char *err,
                         size_t errlen)
{
        const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        if (msg && strstr(msg, display))
                seterr(err, errlen, "%s", msg);
        else if (msg)
                seterr(err, errlen, "image %s: recipe %s: %s", name, display, msg);
        else
                seterr(err, errlen,
                       "image %s: recipe %s: raised an error that is a %s, not a message", name,
                       display, luaL_typename(L, -1));
}

int recipe_load(const char *name, const char *path, json_t **ret, char *err, size_t errlen)
{
        char *display = recipe_display_path(path), *text = NULL;
        size_t len = 0;
        lua_State *L = NULL;
        json_t *spec = NULL;
        LuaHeap heap = {.max = RECIPE_MAX_MEMORY};
        int r;

        if (!display)
                return -ENOMEM;
        r = read_recipe(path, &text, &len);
        if (r < 0) {
                seterr(err, errlen, "image %s: recipe %s: %s", name, display, strerror(-r));
                goto out;
        }
        L = lua_heap_newstate(&heap);
        if (!L) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(ENOMEM));
                goto out;
        }
        int status = run_recipe(L, display, text, len);
        if (status == LUA_ERRMEM) {
                seterr(err, errlen,
                       "image %s: recipe %s: not enough memory (its Lua may use %u MiB)", name,
                       display, RECIPE_MAX_MEMORY >> 20);
                r = -EINVAL;
                goto out;
        }
        if (status != LUA_OK) {
                recipe_error(L, name, display, err, errlen);
                r = -EINVAL;
                goto out;
        }
        bool not_utf8 = false;
        spec = to_json(L, -1, &not_utf8);
        if (!spec && not_utf8) {
                r = -EINVAL;
                seterr(err, errlen, "image %s: recipe %s: a string in it is not UTF-8", name,
                       display);
                goto out;
        }
        if (!spec || json_object_set_new(spec, "format", json_integer(1)) < 0 ||
            json_object_set_new(spec, "name", json_string(name)) < 0 ||
            json_object_set_new(spec, "recipe", json_string(display)) < 0) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(ENOMEM));
                goto out;
        }
        if (json_is_null(json_object_get(spec, "hostname")) &&
            json_object_set_new(spec, "hostname", json_string(name)) < 0) {
                r = -ENOMEM;
                goto out;
        }
        r = resolve_copies(spec, path, display, err, errlen);
        if (r < 0)
                goto out;
        *ret = spec;
        spec = NULL;
out:
        json_decref(spec);
        if (L)
                lua_close(L);
        free(text);
        free(display);
        return r;
}
