/* snapshot.c: vm:snapshot / vm:restore from Lua, and the primitives fixtures are built on
 * (saving a VM into the fixture cache, booting a VM from a saved state, its configuration as
 * JSON).
 *
 * Sections: waiting, snapshot and restore, fixtures' primitives, registration.
 */
#include "snapshot.h"

#include <errno.h>
#include <limits.h>
#include <jansson.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "vm_object.h"
#include "op.h"
#include "runtime.h"
#include "vm.h"

/* ---- waiting ---- */

typedef struct SaveCtx {
        Pending pending;
        unsigned id;
} SaveCtx;

static int push_id(lua_State *L, void *ud)
{
        lua_pushinteger(L, *(unsigned *) ud);
        return 1;
}

/* Resumes the parked caller with `value` (id, or true) or `nil, msg`, then frees ctx. */
static void resume_with(SaveCtx *ctx, int status, const char *msg)
{
        if (status == 0 && ctx->id)
                runtime_resume_push(&ctx->pending, push_id, &ctx->id, "snapshot");
        else
                runtime_resume_result(&ctx->pending, status == 0 ? NULL : msg ? msg : "failed");
        free(ctx);
}

static void on_saved(Vm *vm, int status, const char *msg, void *data)
{
        resume_with(data, status, msg);
}

static void on_restored(Vm *vm, int status, const char *msg, void *data)
{
        resume_with(data, status, msg);
}

static SaveCtx *new_ctx(lua_State *L, Vm *vm, const char *what)
{
        if (!runtime_in_task(L))
                luaL_error(L, "vm %s: %s: only inside a test body or the file's chunk", vm_name(vm),
                           what);
        SaveCtx *ctx = calloc(1, sizeof *ctx);
        if (!ctx)
                luaL_error(L, "vm %s: %s: out of memory", vm_name(vm), what);
        return ctx;
}

static int push_error(lua_State *L, const char *err)
{
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
}

/* ---- snapshot and restore ---- */

/* vm:_snapshot() -> id | nil, message */
static int l_snapshot(lua_State *L)
{
        Vm *vm = check_vm(L, 1);
        bind_refuse_local(L, vm, "snapshot");
        SaveCtx *ctx = new_ctx(L, vm, "snapshot");
        char err[1024];
        unsigned id;
        if (vm_snapshot(vm, &id, on_saved, ctx, err, sizeof err) < 0) {
                free(ctx);
                return push_error(L, err);
        }
        ctx->id = id;
        return runtime_wait(L, &ctx->pending);
}

/* vm:_restore(id, label) -> true | nil, message */
static int l_restore(lua_State *L)
{
        runtime_refuse_if_listing(L, "a restore");
        Vm *vm = check_vm(L, 1);
        bind_refuse_local(L, vm, "restore");
        lua_Integer id = luaL_checkinteger(L, 2);
        const char *label = luaL_checkstring(L, 3);
        SaveCtx *ctx = new_ctx(L, vm, "restore");
        char err[1024];
        bool bad_id = id < 1 || id > (lua_Integer) UINT_MAX; /* not cut to another one's */
        if (bad_id || vm_restore(vm, (unsigned) id, label, on_restored, ctx, err, sizeof err) < 0) {
                free(ctx);
                if (bad_id)
                        snprintf(err, sizeof err, "vm %s: restore: bad snapshot id", vm_name(vm));
                return push_error(L, err);
        }
        return runtime_wait(L, &ctx->pending);
}

/* ---- fixtures' primitives ---- */

/* vm:_save(state_path) -> true | nil, message: the fixture builder's save. The guest stays
 * stopped and its RAM file (given at boot as `_ram`) is the saved RAM. */
static int l_save(lua_State *L)
{
        Vm *vm = check_vm(L, 1);
        bind_refuse_local(L, vm, "fixture");
        VmSaveOptions o = {.state_path = luaL_checkstring(L, 2), .resume = false};
        SaveCtx *ctx = new_ctx(L, vm, "snapshot");
        char err[1024];
        if (vm_save(vm, &o, on_saved, ctx, err, sizeof err) < 0) {
                free(ctx);
                return push_error(L, err);
        }
        return runtime_wait(L, &ctx->pending);
}

/* vm:_config() -> the booted VM's saved configuration as a table (vm_config.h's saved
 * fields, and image_key: the image it booted, which a later restore checks) */
static int l_config(lua_State *L)
{
        Vm *vm = check_vm(L, 1);
        if (vm_state(vm) == VM_DEFINED)
                return luaL_error(L, "vm %s: not booted", vm_name(vm));
        json_t *o = vm_config_to_json(vm_config(vm));
        const char *key = vm_image_key(vm);
        if (!o || (key && json_object_set_new(o, "image_key", json_string(key)) < 0) ||
            bind_json_push(L, o) < 0) {
                json_decref(o);
                return luaL_error(L, "vm %s: out of memory", vm_name(vm));
        }
        json_decref(o);
        return 1;
}

/* Moves cfg's strings onto the Lua stack, which keeps them while the caller parks (a yield
 * does not return to free them). */
static void anchor_strings(lua_State *L, VmConfig *cfg)
{
        luaL_checkstack(L, 16, "vm config");
#define ANCHOR_STR(name)                                                                           \
        if (cfg->name) {                                                                           \
                const char *s = lua_pushstring(L, cfg->name);                                      \
                free((char *) cfg->name);                                                          \
                cfg->name = s;                                                                     \
        }
#define ANCHOR_U64(name)
#define ANCHOR_UINT(name)
#define ANCHOR_INT(name)
#define ANCHOR_SEED(name)
#define ANCHOR(kind, name, flags, opt, reader, unset, min, max) ANCHOR_##kind(name)
        VM_CONFIG_FIELDS(ANCHOR)
}

/* vm:_boot_saved(state_path, ram_path, config, timeout_s, pool) -> true | nil, message: config
 * is vm:_config()'s table, as a fixture stored it; every field is checked before use. pool:
 * the spares to keep loaded for the next clones (nil: the default). */
static int l_boot_saved(lua_State *L)
{
        runtime_refuse_if_listing(L, "a VM boot");
        Vm *vm = check_vm(L, 1);
        bind_refuse_local(L, vm, "fixture");
        const char *state = luaL_checkstring(L, 2);
        const char *ram = luaL_checkstring(L, 3);
        luaL_checktype(L, 4, LUA_TTABLE);
        double timeout =
            check_seconds(L, luaL_optnumber(L, 5, runtime_config(runtime_get(L))->boot_timeout_s),
                          "timeout", false);
        char err[512];
        VmConfig cfg;
        json_t *o = bind_json_from_lua(L, 4, err, sizeof err);
        int r = o ? vm_config_from_json(o, &cfg, err, sizeof err) : -EINVAL;
        json_decref(o);
        if (r < 0) {
                lua_pushnil(L);
                lua_pushfstring(L, "vm %s: restore: bad saved configuration: %s", vm_name(vm),
                                r == -ENOMEM ? "out of memory" : err);
                return 2;
        }
        anchor_strings(L, &cfg);
        cfg.timeout_ms = seconds_to_ms(timeout);
        cfg.ram_path = ram;
        cfg.incoming = state;
        lua_Integer pool = luaL_optinteger(L, 6, -1);
        luaL_argcheck(L, pool >= -1 && pool <= VM_MAX_SPARES, 6, "pool out of range");
        cfg.spares = (int) pool;
        return bind_vm_boot_wait(L, vm, &cfg);
}

/* ---- registration ---- */

static const luaL_Reg methods[] = {
    {"_snapshot", l_snapshot}, {"_restore", l_restore},       {"_save", l_save},
    {"_config", l_config},     {"_boot_saved", l_boot_saved}, {NULL, NULL},
};

void bind_snapshot_add_methods(lua_State *L)
{
        luaL_setfuncs(L, methods, 0);
}
