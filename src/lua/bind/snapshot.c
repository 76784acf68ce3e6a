/* snapshot.c: vm:snapshot / vm:restore from Lua, and the primitives fixtures are built on
 * (saving a VM into the fixture cache, booting a VM from a saved state, its configuration as
 * JSON).
 *
 * Sections: waiting, snapshot and restore, fixtures' primitives, registration.
 */
#include "snapshot.h"

#include <errno.h>
#include <jansson.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "vm_object.h"
#include "op.h"
#include "runtime.h"
#include "vm.h"

/* ---- waiting ---- */

typedef struct SaveCtx {
        Pending pending;
        unsigned id;
} SaveCtx;

/* Resumes the parked caller with `value` (id, or true) or `nil, msg`, then frees ctx. */
static void resume_with(SaveCtx *ctx, int status, const char *msg)
{
        if (runtime_pending_alive(&ctx->pending)) {
                lua_State *co = ctx->pending.co;
                if (status == 0) {
                        if (ctx->id)
                                lua_pushinteger(co, ctx->id);
                        else
                                lua_pushboolean(co, 1);
                        runtime_resume(&ctx->pending, 1);
                } else {
                        lua_pushnil(co);
                        lua_pushstring(co, msg ? msg : "failed");
                        runtime_resume(&ctx->pending, 2);
                }
        }
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
        Vm *vm = check_vm(L, 1);
        lua_Integer id = luaL_checkinteger(L, 2);
        const char *label = luaL_checkstring(L, 3);
        SaveCtx *ctx = new_ctx(L, vm, "restore");
        char err[1024];
        if (id < 1 || vm_restore(vm, (unsigned) id, label, on_restored, ctx, err, sizeof err) < 0) {
                free(ctx);
                if (id < 1)
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
        VmSaveOptions o = {.state_path = luaL_checkstring(L, 2), .resume = false};
        SaveCtx *ctx = new_ctx(L, vm, "snapshot");
        char err[1024];
        if (vm_save(vm, &o, on_saved, ctx, err, sizeof err) < 0) {
                free(ctx);
                return push_error(L, err);
        }
        return runtime_wait(L, &ctx->pending);
}

static int set_str(json_t *o, const char *k, const char *v)
{
        return v ? json_object_set_new(o, k, json_string(v)) : 0;
}

/* The configuration a saved VM must be restored with, as a JSON object. NULL on -ENOMEM. */
static char *config_to_json(const Vm *vm, const VmConfig *c, const char *net)
{
        json_t *o = json_object();
        if (!o)
                return NULL;
        int r = set_str(o, "image", c->image);
        r |= set_str(o, "image_key", vm_image_key(vm)); /* a later restore checks it */
        r |= set_str(o, "kernel", c->kernel);
        r |= set_str(o, "initrd", c->initrd);
        r |= set_str(o, "append", c->append);
        r |= set_str(o, "accel", c->accel);
        r |= set_str(o, "initial_time", c->initial_time);
        r |= json_object_set_new(o, "memory_mb", json_integer((json_int_t) c->memory_mb));
        r |= json_object_set_new(o, "cpus", json_integer(c->cpus));
        r |= json_object_set_new(o, "workers", json_integer(c->workers));
        if (c->has_rng_seed)
                r |= json_object_set_new(o, "rng_seed", json_integer((json_int_t) c->rng_seed));
        r |= set_str(o, "net", net); /* the prelude's record of the VM's network cards */
        char *s = r == 0 ? json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
        json_decref(o);
        return s;
}

/* vm:_config_json(net?) -> the booted VM's configuration (net: the cards, as the prelude
 * records them) */
static int l_config_json(lua_State *L)
{
        Vm *vm = check_vm(L, 1);
        if (vm_state(vm) == VM_DEFINED)
                return luaL_error(L, "vm %s: not booted", vm_name(vm));
        char *s = config_to_json(vm, vm_config(vm), luaL_optstring(L, 2, NULL));
        if (!s)
                return luaL_error(L, "vm %s: out of memory", vm_name(vm));
        lua_pushstring(L, s);
        free(s);
        return 1;
}

/* The string at key k, copied onto the Lua stack (it stays there while the caller parks). */
static const char *get_str(lua_State *L, json_t *o, const char *k)
{
        const char *v = json_string_value(json_object_get(o, k));
        return v ? lua_pushstring(L, v) : NULL;
}

/* vm:_boot_saved(state_path, ram_path, config_json, timeout_s) -> true | nil, message */
static int l_boot_saved(lua_State *L)
{
        Vm *vm = check_vm(L, 1);
        const char *state = luaL_checkstring(L, 2);
        const char *ram = luaL_checkstring(L, 3);
        const char *json = luaL_checkstring(L, 4);
        double timeout = luaL_optnumber(L, 5, runtime_config(runtime_get(L))->boot_timeout_s);
        json_error_t jerr;
        json_t *o = json_loads(json, 0, &jerr);
        if (!json_is_object(o)) {
                json_decref(o);
                lua_pushnil(L);
                lua_pushfstring(L, "vm %s: restore: bad saved configuration: %s", vm_name(vm),
                                jerr.text);
                return 2;
        }
        VmConfig cfg = {
            .image = get_str(L, o, "image"),
            .kernel = get_str(L, o, "kernel"),
            .initrd = get_str(L, o, "initrd"),
            .append = get_str(L, o, "append"),
            .accel = get_str(L, o, "accel"),
            .initial_time = get_str(L, o, "initial_time"),
            .memory_mb = (uint64_t) json_integer_value(json_object_get(o, "memory_mb")),
            .cpus = (unsigned) json_integer_value(json_object_get(o, "cpus")),
            .workers = (int) json_integer_value(json_object_get(o, "workers")),
            .has_rng_seed = json_object_get(o, "rng_seed") != NULL,
            .rng_seed = (uint64_t) json_integer_value(json_object_get(o, "rng_seed")),
            .timeout_ms = (uint64_t) (timeout * 1000),
            .ram_path = ram,
            .incoming = state,
        };
        json_decref(o);
        return bind_vm_boot_wait(L, vm, &cfg);
}

/* ---- registration ---- */

static const luaL_Reg methods[] = {
    {"_snapshot", l_snapshot},       {"_restore", l_restore},       {"_save", l_save},
    {"_config_json", l_config_json}, {"_boot_saved", l_boot_saved}, {NULL, NULL},
};

void bind_snapshot_add_methods(lua_State *L)
{
        luaL_setfuncs(L, methods, 0);
}
