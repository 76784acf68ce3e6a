/* boot_options.c: vm:boot's options table (memory, cpus, kernel, initial_time, ...) read into
 * a VmConfig, with the messages a bad option raises. */
#include "boot_options.h"

#include <lauxlib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "op.h"
#include "runtime.h"

static uint64_t opt_memory_mb(lua_State *L, int opts)
{
        if (lua_type(L, opts) != LUA_TTABLE)
                return 0;
        lua_getfield(L, opts, "memory");
        uint64_t mb = 0;
        if (lua_isinteger(L, -1))
                mb = (uint64_t) lua_tointeger(L, -1);
        else if (lua_type(L, -1) == LUA_TSTRING) {
                const char *s = lua_tostring(L, -1);
                char *end;
                unsigned long long v = strtoull(s, &end, 10);
                if (end != s && (*end == 'G' || *end == 'g') && end[1] == 0)
                        mb = v * 1024;
                else if (end != s && ((*end == 'M' || *end == 'm') && end[1] == 0))
                        mb = v;
                else if (end != s && *end == 0)
                        mb = v;
                else
                        luaL_error(L,
                                   "option 'memory' must be MiB or a string like \"512M\" or "
                                   "\"1G\", got \"%s\"",
                                   s);
        } else if (!lua_isnil(L, -1))
                luaL_error(L, "option 'memory' must be MiB or a string like \"512M\"");
        lua_pop(L, 1);
        if (mb != 0 && (mb < 64 || mb > 65536))
                luaL_error(L, "option 'memory' must be between 64M and 64G");
        return mb;
}

/* opts.initial_time: seconds since the epoch, or "YYYY-MM-DDTHH:MM:SS" (UTC). Returns the
 * QEMU -rtc base in buf, or NULL when not given. */
static const char *opt_initial_time(lua_State *L, int opts, char *buf, size_t len)
{
        lua_getfield(L, opts, "initial_time");
        const char *r = NULL;
        if (lua_isinteger(L, -1) || lua_type(L, -1) == LUA_TNUMBER) {
                time_t t = (time_t) lua_tonumber(L, -1);
                struct tm tm;
                if (t < 0 || !gmtime_r(&t, &tm))
                        luaL_error(L, "option 'initial_time' must be seconds since 1970 >= 0");
                strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
                r = buf;
        } else if (lua_type(L, -1) == LUA_TSTRING) {
                const char *s = lua_tostring(L, -1);
                struct tm tm = {0};
                const char *end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
                if (!end || *end)
                        luaL_error(L,
                                   "option 'initial_time' must look like "
                                   "\"2030-01-01T00:00:00\" (UTC), got \"%s\"",
                                   s);
                snprintf(buf, len, "%s", s);
                r = buf;
        } else if (!lua_isnil(L, -1))
                luaL_error(L, "option 'initial_time' must be a number or a date string");
        lua_pop(L, 1);
        return r;
}

void bind_vm_boot_config(lua_State *L, const char *image, int opts, VmConfig *cfg, char *time_buf,
                         size_t time_len)
{
        if (!lua_isnoneornil(L, opts))
                luaL_checktype(L, opts, LUA_TTABLE);
        const RuntimeConfig *rc = runtime_config(runtime_get(L));
        *cfg = (VmConfig){
            .image = image,
            .kernel = opt_string(L, opts, "kernel"),
            .initrd = opt_string(L, opts, "initrd"),
            .append = opt_string(L, opts, "append"),
            .ram_path = opt_string(L, opts, "_ram"), /* a fixture build's RAM file */
            .memory_mb = opt_memory_mb(L, opts),
            .accel = rc->accel,
            .workers = -1,
        };
        if (lua_type(L, opts) == LUA_TTABLE) {
                lua_getfield(L, opts, "cpus");
                lua_Integer cpus = luaL_optinteger(L, -1, 1);
                if (cpus < 1 || cpus > 64)
                        luaL_error(L, "option 'cpus' must be 1..64");
                cfg->cpus = (unsigned) cpus;
                lua_pop(L, 1);
                cfg->initial_time = opt_initial_time(L, opts, time_buf, time_len);
                lua_getfield(L, opts, "rng_seed");
                if (!lua_isnil(L, -1)) {
                        lua_Integer seed = luaL_checkinteger(L, -1);
                        if (seed < 0)
                                luaL_error(L, "option 'rng_seed' must be an integer >= 0");
                        cfg->has_rng_seed = true;
                        cfg->rng_seed = (uint64_t) seed;
                }
                lua_pop(L, 1);
                lua_getfield(L, opts, "workers");
                if (!lua_isnil(L, -1)) {
                        lua_Integer w = luaL_checkinteger(L, -1);
                        if (w < 0 || w > VM_MAX_WORKERS)
                                luaL_error(L, "option 'workers' must be 0..%d", VM_MAX_WORKERS);
                        cfg->workers = (int) w;
                }
                lua_pop(L, 1);
        }
        double boot_timeout = rc->boot_timeout_s;
        if (has_field(L, opts, "timeout"))
                boot_timeout = opt_timeout(L, opts, "timeout");
        cfg->timeout_ms = (uint64_t) (boot_timeout * 1000);
}
