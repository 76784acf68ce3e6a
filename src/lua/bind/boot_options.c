/* boot_options.c: vm:boot's options table (memory, cpus, kernel, initial_time, ...) read into
 * a VmConfig, with the messages a bad option raises. */
#include "boot_options.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "claim.h"
#include "op.h"
#include "strfmt.h"
#include "runtime.h"

/* A size in MiB, or a string like "512M" or "1G", within min..max MiB. */
static uint64_t opt_memory_mb(lua_State *L, int opts, const char *opt, uint64_t min, uint64_t max)
{
        lua_getfield(L, opts, opt);
        uint64_t mb = 0;
        if (lua_isinteger(L, -1))
                mb = (uint64_t) lua_tointeger(L, -1);
        else if (lua_type(L, -1) == LUA_TSTRING) {
                const char *s = lua_tostring(L, -1);
                if (parse_size_mib(s, &mb) < 0)
                        luaL_error(L,
                                   "option '%s' must be MiB or a string like \"512M\" or "
                                   "\"1G\", got \"%s\"",
                                   opt, s);
        } else if (!lua_isnil(L, -1))
                luaL_error(L, "option '%s' must be MiB or a string like \"512M\"", opt);
        lua_pop(L, 1);
        if (mb != 0 && (mb < min || mb > max))
                luaL_error(L, "option '%s' must be between %IM and %IG", opt, (lua_Integer) min,
                           (lua_Integer) (max / 1024));
        return mb;
}

/* An integer in min..max, or unset when not given. */
static lua_Integer opt_count(lua_State *L, int opts, const char *opt, lua_Integer unset,
                             lua_Integer min, lua_Integer max)
{
        lua_getfield(L, opts, opt);
        lua_Integer n = unset;
        if (!lua_isnil(L, -1)) {
                if (!lua_isinteger(L, -1))
                        luaL_error(L, "option '%s' must be an integer", opt);
                n = lua_tointeger(L, -1);
                if (n < min || n > max)
                        luaL_error(L, "option '%s' must be %I..%I", opt, min, max);
        }
        lua_pop(L, 1);
        return n;
}

/* A seed: an integer >= 0, or not given (*has false). */
static uint64_t opt_seed(lua_State *L, int opts, const char *opt, bool *has)
{
        lua_getfield(L, opts, opt);
        lua_Integer seed = 0;
        *has = !lua_isnil(L, -1);
        if (*has && (!lua_isinteger(L, -1) || (seed = lua_tointeger(L, -1)) < 0))
                luaL_error(L, "option '%s' must be an integer >= 0", opt);
        lua_pop(L, 1);
        return (uint64_t) seed;
}

/* opts.initial_time: seconds since the epoch, or "YYYY-MM-DDTHH:MM:SS" (UTC). Returns the
 * QEMU -rtc base in buf, or NULL when not given. */
static const char *opt_initial_time(lua_State *L, int opts, const char *opt, char *buf, size_t len)
{
        lua_getfield(L, opts, opt);
        const char *r = NULL;
        if (lua_isinteger(L, -1) || lua_type(L, -1) == LUA_TNUMBER) {
                time_t t = (time_t) lua_tonumber(L, -1);
                struct tm tm;
                if (t < 0 || !gmtime_r(&t, &tm))
                        luaL_error(L, "option '%s' must be seconds since 1970 >= 0", opt);
                strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
                r = buf;
        } else if (lua_type(L, -1) == LUA_TSTRING) {
                const char *s = lua_tostring(L, -1);
                struct tm tm = {0};
                const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
                if (!end || *end)
                        luaL_error(L,
                                   "option '%s' must look like "
                                   "\"2030-01-01T00:00:00\" (UTC), got \"%s\"",
                                   opt, s);
                snprintf(buf, len, "%s", s);
                r = buf;
        } else if (!lua_isnil(L, -1))
                luaL_error(L, "option '%s' must be a number or a date string", opt);
        lua_pop(L, 1);
        return r;
}

/* A boolean option: 1 or 0, or unset when not given. */
static int opt_bool(lua_State *L, int opts, const char *opt, int unset)
{
        lua_getfield(L, opts, opt);
        int t = lua_type(L, -1), v = unset;
        if (t == LUA_TBOOLEAN)
                v = lua_toboolean(L, -1);
        else if (t != LUA_TNIL)
                luaL_error(L, "option '%s' must be a boolean, got %s", opt, luaL_typename(L, -1));
        lua_pop(L, 1);
        return v;
}

/* A string of at most max bytes. */
static const char *opt_bounded_string(lua_State *L, int opts, const char *opt, size_t max)
{
        const char *v = opt_string(L, opts, opt);
        if (v && strlen(v) > max)
                luaL_error(L, "option '%s' must be at most %d bytes", opt, (int) max);
        return v;
}

/* One reader per kind of option in VM_CONFIG_FIELDS (vm_config.h). */
#define READ_NONE(f, opt, unset, min, max)
#define READ_STRING(f, opt, unset, min, max) cfg->f = opt_bounded_string(L, opts, opt, max);
#define READ_MEMORY(f, opt, unset, min, max) cfg->f = opt_memory_mb(L, opts, opt, min, max);
#define READ_COUNT(f, opt, unset, min, max)                                                        \
        cfg->f = (__typeof__(cfg->f)) opt_count(L, opts, opt, unset, min, max);
#define READ_DATE(f, opt, unset, min, max)                                                         \
        cfg->f = opt_initial_time(L, opts, opt, time_buf, time_len);
#define READ_SEED(f, opt, unset, min, max) cfg->f = opt_seed(L, opts, opt, &cfg->has_##f);
#define READ_BOOL(f, opt, unset, min, max) cfg->f = opt_bool(L, opts, opt, unset);
#define READ_SECONDS(f, opt, unset, min, max)                                                      \
        if (has_field(L, opts, opt))                                                               \
                cfg->f = seconds_to_ms(opt_timeout(L, opts, opt));
#define READ(kind, f, flags, opt, reader, unset, min, max) READ_##reader(f, opt, unset, min, max)

void bind_vm_boot_config(lua_State *L, const char *image, int opts, VmConfig *cfg, char *time_buf,
                         size_t time_len)
{
        if (!lua_isnoneornil(L, opts))
                luaL_checktype(L, opts, LUA_TTABLE);
        const RuntimeConfig *rc = runtime_config(runtime_get(L));
        vm_config_init(cfg);
        cfg->image = image;
        cfg->accel = rc->accel;
        cfg->timeout_ms = seconds_to_ms(rc->boot_timeout_s);
        if (lua_type(L, opts) == LUA_TTABLE) {
                VM_CONFIG_FIELDS(READ)
        }
}

/* internal.boot_options() -> {name = true} of the options vm:boot reads (VM_CONFIG_FIELDS'
 * entries with a reader), for the prelude to refuse the others. */
#define NAME_NONE(opt)
#define NAME_STRING(opt)  NAME_ANY(opt)
#define NAME_MEMORY(opt)  NAME_ANY(opt)
#define NAME_COUNT(opt)   NAME_ANY(opt)
#define NAME_DATE(opt)    NAME_ANY(opt)
#define NAME_SEED(opt)    NAME_ANY(opt)
#define NAME_BOOL(opt)    NAME_ANY(opt)
#define NAME_SECONDS(opt) NAME_ANY(opt)
#define NAME_ANY(opt)                                                                              \
        lua_pushboolean(L, 1);                                                                     \
        lua_setfield(L, -2, opt);
#define NAME(kind, f, flags, opt, reader, unset, min, max) NAME_##reader(opt)

int bind_boot_options(lua_State *L)
{
        lua_newtable(L);
        VM_CONFIG_FIELDS(NAME)
        return 1;
}

/* internal.claim(opts): provium:claim{memory =, cpus =}: sizes as vm:boot's memory option (MiB
 * or "512M" / "2G"), cpus 1..1024. Raises with the rule broken. */
int bind_claim(lua_State *L)
{
        luaL_checktype(L, 1, LUA_TTABLE);
        lua_pushnil(L);
        while (lua_next(L, 1)) {
                const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
                if (strcmp(k, "memory") != 0 && strcmp(k, "cpus") != 0)
                        luaL_error(L, "provium:claim: unknown option '%s' (memory, cpus)", k);
                lua_pop(L, 1);
        }
        uint64_t mb = opt_memory_mb(L, 1, "memory", 64, 1024 * 1024);
        uint64_t default_mb;
        unsigned default_cpus;
        claim_get(&default_mb, &default_cpus);
        lua_Integer cpus = opt_count(L, 1, "cpus", 0, 1, 1024);
        char err[256];
        if (claim_set(mb ? mb : default_mb, cpus ? (unsigned) cpus : default_cpus,
                      runtime_in_chunk(runtime_get(L)), err, sizeof err) < 0)
                luaL_error(L, "%s", err);
        return 0;
}
