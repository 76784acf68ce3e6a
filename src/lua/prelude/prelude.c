/* prelude.c: runs the prelude's files, each embedded as a C string, in the order listed here. */
#include "prelude.h"

#include <lauxlib.h>
#include <stddef.h>

#include "errors.lua.h"
#include "provium.lua.h"
#include "test.lua.h"
#include "debug.lua.h"
#include "seed.lua.h"
#include "history.lua.h"
#include "linearizable.lua.h"
#include "result.lua.h"
#include "vm.lua.h"
#include "snapshot.lua.h"
#include "stream.lua.h"
#include "clock.lua.h"
#include "process.lua.h"
#include "file.lua.h"
#include "layer0.lua.h"
#include "worker.lua.h"
#include "bridge.lua.h"
#include "impairment.lua.h"
#include "grudge.lua.h"
#include "nemesis.lua.h"
#include "uplink.lua.h"
#include "capture.lua.h"
#include "ready.lua.h"
#include "fixture.lua.h"
#include "disk.lua.h"
#include "listing.lua.h"
#include "api.lua.h"

typedef struct PreludeFile {
        const char *chunkname; /* "=prelude/<file>": what error positions and raise() see */
        const char *text;
        size_t len;
} PreludeFile;

/* clang-format off */
#define PRELUDE_FILE(name, text) {"=prelude/" name, text, sizeof text - 1}
/* clang-format on */

/* An earlier file defines what a later one uses: keep this order. */
static const PreludeFile files[] = {
    PRELUDE_FILE("errors.lua", prelude_errors),
    PRELUDE_FILE("provium.lua", prelude_provium),
    PRELUDE_FILE("test.lua", prelude_test),
    PRELUDE_FILE("debug.lua", prelude_debug),
    PRELUDE_FILE("seed.lua", prelude_seed),
    PRELUDE_FILE("history.lua", prelude_history),
    PRELUDE_FILE("linearizable.lua", prelude_linearizable),
    PRELUDE_FILE("result.lua", prelude_result),
    PRELUDE_FILE("vm.lua", prelude_vm),
    PRELUDE_FILE("snapshot.lua", prelude_snapshot),
    PRELUDE_FILE("stream.lua", prelude_stream),
    PRELUDE_FILE("clock.lua", prelude_clock),
    PRELUDE_FILE("process.lua", prelude_process),
    PRELUDE_FILE("file.lua", prelude_file),
    PRELUDE_FILE("layer0.lua", prelude_layer0),
    PRELUDE_FILE("worker.lua", prelude_worker),
    PRELUDE_FILE("bridge.lua", prelude_bridge),
    PRELUDE_FILE("impairment.lua", prelude_impairment),
    PRELUDE_FILE("grudge.lua", prelude_grudge),
    PRELUDE_FILE("nemesis.lua", prelude_nemesis),
    PRELUDE_FILE("uplink.lua", prelude_uplink),
    PRELUDE_FILE("capture.lua", prelude_capture),
    PRELUDE_FILE("ready.lua", prelude_ready),
    PRELUDE_FILE("fixture.lua", prelude_fixture),
    PRELUDE_FILE("disk.lua", prelude_disk),
    PRELUDE_FILE("listing.lua", prelude_listing),
    PRELUDE_FILE("api.lua", prelude_api),
};

int prelude_run(lua_State *L, int context)
{
        context = lua_absindex(L, context);
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
                const PreludeFile *f = &files[i];
                if (luaL_loadbufferx(L, f->text, f->len, f->chunkname, "t") != LUA_OK)
                        return -1;
                lua_pushvalue(L, context);
                if (lua_pcall(L, 1, 0, 0) != LUA_OK)
                        return -1;
        }
        return 0;
}
