/* provium.c: builds the Lua environment of a test file: the provium global, the internal
 * table the runtime reads (tests, run_test), and runs the prelude that defines the public API.
 */
#include "provium.h"

#include <lauxlib.h>
#include <lualib.h>
#include <unistd.h>

#include "config.h"
#include "events.h"
#include "lua_heap.h"
#include "vm_object.h"
#include "file.h"
#include "fixture.h"
#include "capture_object.h"
#include "net.h"
#include "disk_object.h"
#include "uplink_object.h"
#include "layer0.h"
#include "process.h"
#include "stream.h"
#include "runtime.h"
#include "prelude.h"
#include "boot_options.h"
#include "debug_prompt.h"
#include "seed.h"

#define INTERNAL_KEY "provium.internal"

/* internal.now() -> monotonic seconds, for deadlines in the prelude */
static int l_now(lua_State *L)
{
        lua_pushnumber(L, (double) events_mono_ns() / 1e9);
        return 1;
}

int bind_provium_open(lua_State *L)
{
        luaL_openlibs(L);
        lua_newtable(L); /* the prelude's context: the objects it extends */
        int context = lua_gettop(L);
        /* provium: the user-facing object */
        lua_newtable(L);
        lua_pushliteral(L, PROVIUM_VERSION);
        lua_setfield(L, -2, "version");
        char exe[4096];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n > 0) {
                lua_pushlstring(L, exe, (size_t) n);
                lua_setfield(L, -2, "executable");
        }
        bind_layer0_register(L);
        bind_layer0_push_buffer_constructor(L);
        lua_setfield(L, -2, "buffer");
        lua_pushvalue(L, -1);
        lua_setglobal(L, "provium");
        lua_setfield(L, context, "provium");
        /* internal: shared with the runtime */
        lua_newtable(L);
        bind_vm_push_constructor(L);
        lua_setfield(L, -2, "vm_new");
        bind_vm_push_release(L);
        lua_setfield(L, -2, "vm_release");
        bind_vm_push_local(L);
        lua_pushcfunction(L, runtime_parallel);
        lua_setfield(L, -2, "parallel");
        lua_pushcfunction(L, runtime_spawn);
        lua_setfield(L, -2, "spawn");
        lua_pushcfunction(L, bind_claim);
        lua_setfield(L, -2, "claim");
        lua_pushcfunction(L, bind_boot_options);
        lua_setfield(L, -2, "boot_options");
        lua_pushcfunction(L, l_now);
        lua_setfield(L, -2, "now");
        const LuaHeap *heap = lua_heap_of(L);
        lua_pushinteger(L, heap ? (lua_Integer) (heap->max >> 20) : 0);
        lua_setfield(L, -2, "lua_memory_mb"); /* the file's ceiling; 0: none */
        bind_fixture_register(L);
        bind_capture_register(L);
        bind_net_register(L);
        bind_uplink_register(L);
        bind_disk_register(L);
        bind_debug_prompt_register(L);
        bind_seed_register(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, LUA_REGISTRYINDEX, INTERNAL_KEY);
        lua_setfield(L, context, "internal");
        bind_vm_register(L); /* pushes the VM methods table */
        lua_setfield(L, context, "VM");
        lua_getfield(L, LUA_REGISTRYINDEX, "provium.Worker.methods");
        lua_setfield(L, context, "Worker");
        bind_stream_register(L);
        lua_setfield(L, context, "Stream");
        bind_process_register(L);
        lua_setfield(L, context, "Process");
        bind_file_register(L);
        lua_setfield(L, context, "File");
        if (prelude_run(L, context) < 0)
                return -1;
        lua_pop(L, 1);
        return 0;
}
