/* seed.c: the run's root seed (--seed) and seeds derived from it by stable names, for Lua:
 * internal.run_seed() and internal.derive_seed(name, ...). prelude/seed.lua builds
 * provium.seed(), provium.random() and the default rng_seed of bridges and disks on them.
 *
 * A derived seed is XXH3-64, keyed by the root seed, over the names each length-prefixed (so
 * ("ab", "c") and ("a", "bc") differ), cut to 63 bits: a Lua integer that is never negative.
 */
#include <lauxlib.h>
#include <string.h>
#include <xxhash.h>

#include "runtime.h"
#include "seed.h"

#define SEED_MASK 0x7fffffffffffffffull

static uint64_t root_seed(lua_State *L)
{
        Runtime *rt = runtime_get(L);
        return rt ? runtime_config(rt)->seed & SEED_MASK : 0;
}

/* internal.run_seed() -> the run's seed */
static int l_run_seed(lua_State *L)
{
        lua_pushinteger(L, (lua_Integer) root_seed(L));
        return 1;
}

/* internal.derive_seed(name, ...) -> the seed of these names under the run's seed */
static int l_derive_seed(lua_State *L)
{
        XXH3_state_t *st = XXH3_createState();
        if (!st)
                return luaL_error(L, "derive_seed: out of memory");
        (void) XXH3_64bits_reset_withSeed(st, root_seed(L));
        for (int i = 1; i <= lua_gettop(L); i++) {
                size_t len;
                const char *s = luaL_checklstring(L, i, &len);
                uint64_t n = len;
                (void) XXH3_64bits_update(st, &n, sizeof n);
                (void) XXH3_64bits_update(st, s, len);
        }
        uint64_t h = XXH3_64bits_digest(st);
        XXH3_freeState(st);
        lua_pushinteger(L, (lua_Integer) (h & SEED_MASK));
        return 1;
}

/* internal.file_name() -> the test file, as the run names it */
static int l_file_name(lua_State *L)
{
        Runtime *rt = runtime_get(L);
        lua_pushstring(L, rt ? runtime_config(rt)->file : "");
        return 1;
}

void bind_seed_register(lua_State *L)
{
        lua_pushcfunction(L, l_run_seed);
        lua_setfield(L, -2, "run_seed");
        lua_pushcfunction(L, l_derive_seed);
        lua_setfield(L, -2, "derive_seed");
        lua_pushcfunction(L, l_file_name);
        lua_setfield(L, -2, "file_name");
}
