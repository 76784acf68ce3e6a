/* disk_object.c: the provium.Disk userdata's primitives, and vm:_attach_disk / _detach_disk.
 * The prelude (disk.lua) builds the public API on them: options, fault handles, guest paths.
 *
 * Sections: disks, sectors, faults, attaching, registration. */
#include "disk_object.h"

#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "disk.h"
#include "op.h"
#include "runtime.h"
#include "vm.h"
#include "vm_object.h"

#define DISK_MT "provium.Disk"

typedef struct DiskBox {
        Disk *d;
} DiskBox;

static Disk *check_disk(lua_State *L, int i)
{
        DiskBox *box = luaL_checkudata(L, i, DISK_MT);
        if (!box->d)
                luaL_error(L, "disk: closed");
        return box->d;
}

static int push_fail(lua_State *L, const char *err)
{
        lua_pushnil(L);
        lua_pushstring(L, err);
        return 2;
}

static uint64_t check_count(lua_State *L, int i, const char *what)
{
        lua_Integer v = luaL_checkinteger(L, i);
        if (v < 0)
                luaL_error(L, "%s must be >= 0, got %d", what, (int) v);
        return (uint64_t) v;
}

/* ---- disks ---- */

/* internal.disk_new(name, size_bytes, from_path | nil, from_disk | nil, seed, file_id | nil)
 * -> Disk | nil, msg */
static int l_disk_new(lua_State *L)
{
        runtime_refuse_if_listing(L, "a disk");
        const char *name = luaL_checkstring(L, 1);
        DiskOptions o = {.size = check_count(L, 2, "size"),
                         .from_path = luaL_optstring(L, 3, NULL),
                         .rng_seed = (uint64_t) luaL_optinteger(L, 5, 0),
                         .file_id = luaL_optstring(L, 6, NULL)};
        if (!lua_isnoneornil(L, 4))
                o.from_disk = check_disk(L, 4);
        DiskBox *box = lua_newuserdatauv(L, sizeof *box, 0);
        box->d = NULL;
        luaL_setmetatable(L, DISK_MT);
        char err[1024];
        Runtime *rt = runtime_get(L);
        box->d = disk_new(runtime_loop(rt), name, runtime_config(rt)->run_dir, &o, err, sizeof err);
        return box->d ? 1 : push_fail(L, err);
}

static int l_disk_name(lua_State *L)
{
        lua_pushstring(L, disk_name(check_disk(L, 1)));
        return 1;
}

static int l_disk_size(lua_State *L)
{
        lua_pushinteger(L, (lua_Integer) disk_size(check_disk(L, 1)));
        return 1;
}

static int l_disk_owner(lua_State *L)
{
        const char *o = disk_owner(check_disk(L, 1));
        if (*o)
                lua_pushstring(L, o);
        else
                lua_pushnil(L);
        return 1;
}

static int l_disk_gc(lua_State *L)
{
        DiskBox *box = luaL_checkudata(L, 1, DISK_MT);
        disk_close(box->d);
        box->d = NULL;
        return 0;
}

/* ---- sectors ---- */

/* disk:_read(lba, count) -> bytes | nil, msg */
static int l_disk_read(lua_State *L)
{
        Disk *d = check_disk(L, 1);
        uint64_t lba = check_count(L, 2, "lba"), count = check_count(L, 3, "count");
        char err[512];
        if (count > disk_size(d) / DISK_SECTOR) /* checked again below, with the message */
                count = disk_size(d) / DISK_SECTOR + 1;
        luaL_Buffer b;
        uint8_t *p = (uint8_t *) luaL_buffinitsize(L, &b, (size_t) count * DISK_SECTOR);
        if (disk_read_sectors(d, lba, count, p, err, sizeof err) < 0)
                return push_fail(L, err);
        luaL_pushresultsize(&b, (size_t) count * DISK_SECTOR);
        return 1;
}

/* disk:_write(lba, bytes) -> true | nil, msg */
static int l_disk_write(lua_State *L)
{
        Disk *d = check_disk(L, 1);
        uint64_t lba = check_count(L, 2, "lba");
        size_t n;
        const char *data = luaL_checklstring(L, 3, &n);
        char err[512];
        if (disk_write_sectors(d, lba, (const uint8_t *) data, n, err, sizeof err) < 0)
                return push_fail(L, err);
        lua_pushboolean(L, 1);
        return 1;
}

/* ---- faults ---- */

/* disk:_fault(kind, lba, count, errno, times, probability, ms, jitter_ms, ops) -> id | nil, msg */
static int l_disk_fault(lua_State *L)
{
        Disk *d = check_disk(L, 1);
        static const char *const kinds[] = {"eio_read", "eio_write", "slow", NULL};
        DiskFault f = {
            .kind = (FaultKind) luaL_checkoption(L, 2, NULL, kinds),
            .lba = check_count(L, 3, "lba"),
            .count = check_count(L, 4, "count"),
            .error = (int) luaL_checkinteger(L, 5),
            .times = luaL_checkinteger(L, 6),
            .probability = luaL_checknumber(L, 7),
            .ms = (unsigned) check_count(L, 8, "ms"),
            .jitter_ms = (unsigned) check_count(L, 9, "jitter_ms"),
            .ops = (unsigned) luaL_checkinteger(L, 10),
        };
        char err[512];
        int id = disk_add_fault(d, &f, err, sizeof err);
        if (id < 0)
                return push_fail(L, err);
        lua_pushinteger(L, id);
        return 1;
}

/* disk:_undo(id) (0: all) */
static int l_disk_undo(lua_State *L)
{
        disk_undo_fault(check_disk(L, 1), (unsigned) check_count(L, 2, "fault"));
        return 0;
}

static int l_disk_report_hits(lua_State *L)
{
        disk_report_hits(check_disk(L, 1));
        return 0;
}

static int l_disk_hits(lua_State *L)
{
        lua_pushinteger(L, (lua_Integer) disk_fault_hits(check_disk(L, 1),
                                                         (unsigned) check_count(L, 2, "fault")));
        return 1;
}

/* internal.fault_errno(name) -> errno | nil */
static int l_fault_errno(lua_State *L)
{
        int e = fault_errno(luaL_checkstring(L, 1));
        if (e)
                lua_pushinteger(L, e);
        else
                lua_pushnil(L);
        return 1;
}

/* disk:_power_loss(on, drop) -> true | nil, msg */
static int l_disk_power_loss(lua_State *L)
{
        char err[512];
        if (disk_set_power_loss(check_disk(L, 1), lua_toboolean(L, 2), luaL_checknumber(L, 3), err,
                                sizeof err) < 0)
                return push_fail(L, err);
        lua_pushboolean(L, 1);
        return 1;
}

/* disk:_last_loss() -> dropped, kept */
static int l_disk_last_loss(lua_State *L)
{
        uint64_t dropped, kept;
        disk_last_power_loss(check_disk(L, 1), &dropped, &kept);
        lua_pushinteger(L, (lua_Integer) dropped);
        lua_pushinteger(L, (lua_Integer) kept);
        return 2;
}

/* ---- attaching ---- */

typedef struct PlugCtx {
        Pending pending;
        Disk *disk;
        char vm[64];
        bool attach, plain;
} PlugCtx;

static void on_plugged(void *data, int status, json_t *result)
{
        PlugCtx *ctx = data;
        if (status == 0 && ctx->attach)
                disk_attached(ctx->disk, ctx->vm, true, ctx->plain);
        else if (status == 0)
                disk_detached(ctx->disk, true);
        char err[1024];
        const char *desc = status ? json_string_value(json_object_get(result, "desc")) : NULL;
        if (status)
                snprintf(err, sizeof err, "vm %s: %s %s: %s", ctx->vm,
                         ctx->attach ? "attach_disk" : "detach_disk", disk_name(ctx->disk),
                         desc                   ? desc
                         : status == -ETIMEDOUT ? "the guest did not let the disk go within 20 s"
                                                : strerror(-status));
        runtime_resume_result(&ctx->pending, status ? err : NULL);
        free(ctx);
}

/* vm:_attach_disk(disk, plain) / vm:_detach_disk(disk) -> true | nil, msg; parks while a
 * running VM hot-plugs it */
static int plug(lua_State *L, bool attach)
{
        Vm *vm = check_vm(L, 1);
        Disk *d = check_disk(L, 2);
        bool plain = attach && lua_toboolean(L, 3);
        char err[1024];
        VmDiskSource src = {.socket = disk_socket(d), .export_name = disk_name(d)};
        if (plain && !(src.file = disk_plain_file(d, err, sizeof err)))
                return push_fail(L, err);
        const char *owner = disk_owner(d);
        if (attach && *owner) {
                snprintf(err, sizeof err, "vm %s: attach_disk %s: the disk is attached to vm %s",
                         vm_name(vm), disk_name(d), owner);
                return push_fail(L, err);
        }
        if (!attach && strcmp(owner, vm_name(vm)) != 0) {
                snprintf(err, sizeof err, "vm %s: detach_disk %s: the disk is not attached to it",
                         vm_name(vm), disk_name(d));
                return push_fail(L, err);
        }
        PlugCtx *ctx = calloc(1, sizeof *ctx);
        if (!ctx)
                return luaL_error(L, "vm %s: out of memory", vm_name(vm));
        *ctx = (PlugCtx){.disk = d, .attach = attach, .plain = plain};
        snprintf(ctx->vm, sizeof ctx->vm, "%s", vm_name(vm));
        int r = attach ? vm_attach_disk(vm, disk_name(d), &src, on_plugged, ctx, err, sizeof err)
                       : vm_detach_disk(vm, disk_name(d), on_plugged, ctx, err, sizeof err);
        if (r != 0)
                free(ctx);
        if (r < 0)
                return push_fail(L, err);
        if (attach) {
                VmDiskHooks hooks = {.gone = disk_vm_gone,
                                     .saved = disk_vm_saved,
                                     .restoring = disk_vm_restoring,
                                     .data = d};
                vm_disk_set_hooks(vm, disk_name(d), &hooks);
        }
        if (r == 1) {
                if (attach)
                        disk_attached(d, vm_name(vm), false, plain);
                else
                        disk_detached(d, false);
                lua_pushboolean(L, 1);
                return 1;
        }
        return runtime_wait(L, &ctx->pending);
}

static int l_vm_attach_disk(lua_State *L)
{
        bind_refuse_local(L, check_vm(L, 1), "attach a disk");
        return plug(L, true);
}

static int l_vm_detach_disk(lua_State *L)
{
        bind_refuse_local(L, check_vm(L, 1), "detach a disk");
        return plug(L, false);
}

/* ---- registration ---- */

static const luaL_Reg disk_methods[] = {
    {"name", l_disk_name},
    {"size", l_disk_size},
    {"_owner", l_disk_owner},
    {"_read", l_disk_read},
    {"_write", l_disk_write},
    {"_fault", l_disk_fault},
    {"_undo", l_disk_undo},
    {"_hits", l_disk_hits},
    {"_power_loss", l_disk_power_loss},
    {"_last_loss", l_disk_last_loss},
    {"_report_hits", l_disk_report_hits},
    {NULL, NULL},
};

void bind_disk_register(lua_State *L)
{
        if (luaL_newmetatable(L, DISK_MT)) {
                luaL_newlib(L, disk_methods);
                lua_setfield(L, -2, "__index");
                lua_pushcfunction(L, l_disk_gc);
                lua_setfield(L, -2, "__gc");
        }
        lua_getfield(L, -1, "__index");
        lua_setfield(L, -3, "Disk"); /* internal.Disk: the prelude adds the public methods */
        lua_pop(L, 1);
        lua_pushcfunction(L, l_disk_new);
        lua_setfield(L, -2, "disk_new");
        lua_pushcfunction(L, l_fault_errno);
        lua_setfield(L, -2, "fault_errno");
}

void bind_disk_add_vm_methods(lua_State *L)
{
        lua_pushcfunction(L, l_vm_attach_disk);
        lua_setfield(L, -2, "_attach_disk");
        lua_pushcfunction(L, l_vm_detach_disk);
        lua_setfield(L, -2, "_detach_disk");
}
