/* fixture.c: the fixture cache from Lua: keys, lookups and builds (fixture_cache.c does the
 * disk), their events, and a host-side sleep for waiting on another process's build. The
 * prelude's provium:vm_fixture / provium:lab_fixture drive these.
 *
 * Sections: keys, lookups, builds, events, sleep, registration.
 */
#include "fixture.h"

#include <errno.h>
#include <stddef.h>
#include <jansson.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "json.h"
#include "events.h"
#include "vm.h"
#include "fixture_cache.h"
#include "qemu.h"
#include "image.h"
#include "image_job.h"
#include "boot_options.h"
#include "vm_object.h"
#include "runtime.h"
#include "waiter.h"

#define BUILD_MT "provium.FixtureBuild"

typedef struct BuildBox {
        FixtureBuild *b; /* NULL once committed or aborted */
        char *name, *key;
        uint64_t started_ns;
} BuildBox;

/* ---- events ---- */

static void emit(const char *type, const char *name, const char *key, const char *field,
                 const char *value, uint64_t ns)
{
        EventBuilder ev;
        event_begin(&ev, type, 4);
        proto_kv_str(&ev.w, "name", name);
        proto_kv_str(&ev.w, "key", key);
        proto_kv_str(&ev.w, field, value);
        proto_kv_uint(&ev.w, "duration_ns", ns);
        event_end(&ev);
}

/* ---- keys ---- */

/* internal.fixture_key(material) -> 32 hex digits */
static int l_fixture_key(lua_State *L)
{
        size_t n;
        const char *m = luaL_checklstring(L, 1, &n);
        char key[33];
        fixture_cache_key(m, n, key);
        lua_pushstring(L, key);
        return 1;
}

/* internal.image_key(image, opts) -> key | nil, message: the image's cache key (a user
 * kernel's content hash). Resolving may build a recipe's image: it runs off the loop
 * (image_job.c), the task parked meanwhile. */
typedef struct KeyWait {
        Pending pending;
        ImageJob *job;
} KeyWait;

static int push_key(lua_State *L, void *ud)
{
        const Image *img = ud;
        lua_pushstring(L, img->key ? img->key : "");
        return 1;
}

static void on_key(void *data, Image *img, int r, const char *err, uint64_t duration_ns)
{
        KeyWait *k = data;
        (void) duration_ns;
        if (r >= 0)
                runtime_resume_push(&k->pending, push_key, img, "an image's key");
        else
                runtime_resume_result(&k->pending, err);
        image_free(img);
        free(k);
}

static void key_cancel(Pending *p)
{
        KeyWait *k = (KeyWait *) ((char *) p - offsetof(KeyWait, pending));
        image_job_orphan(k->job);
        free(k);
}

static int l_image_key(lua_State *L)
{
        const char *image = luaL_checkstring(L, 1);
        char time_buf[32];
        VmConfig cfg;
        bind_vm_boot_config(L, image, 2, &cfg, time_buf, sizeof time_buf);
        KeyWait *k = calloc(1, sizeof *k);
        if (!k)
                return luaL_error(L, "image %s: out of memory", image);
        ImageOptions io = {.kernel = cfg.kernel, .initrd = cfg.initrd};
        int r = 0;
        k->job = image_job_start(runtime_loop(runtime_get(L)), image, &io, on_key, k, &r);
        if (!k->job) {
                free(k);
                return luaL_error(L, "image %s: %s", image, uv_strerror(r));
        }
        k->pending.cancel = key_cancel;
        return runtime_wait(L, &k->pending);
}

/* internal.qemu_version() -> QEMU's version line */
static int l_qemu_version(lua_State *L)
{
        char err[1024];
        const char *v = qemu_version(err, sizeof err);
        if (!v)
                return luaL_error(L, "%s", err);
        lua_pushstring(L, v);
        return 1;
}

/* internal.machine_layout() -> the machine and its device slots (vm_internal.h) */
static int l_machine_layout(lua_State *L)
{
        lua_pushstring(L, vm_machine_layout());
        return 1;
}

/* internal.accel() -> "tcg" or "kvm": a saved state only loads under the same accelerator */
static int l_accel(lua_State *L)
{
        const char *a = runtime_config(runtime_get(L))->accel;
        lua_pushstring(L, a && *a ? a : "tcg");
        return 1;
}

/* internal.run_dir() -> the file's run directory (removed when the file ends) */
static int l_run_dir(lua_State *L)
{
        lua_pushstring(L, runtime_config(runtime_get(L))->run_dir);
        return 1;
}

/* ---- lookups ---- */

/* A saved VM's record (fixture_meta validated it as a JSON object) as a table; the prelude
 * and _boot_saved check its fields. */
static void push_config(lua_State *L, const char *json)
{
        json_t *o = json_loads(json, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(o) || bind_json_push(L, o) < 0)
                lua_newtable(L); /* an empty record: its restore says what is missing */
        json_decref(o);
}

/* {dir=, vms={{name=, state=, ram=, config=}, ...}} */
static void push_entry(lua_State *L, const FixtureEntry *e)
{
        lua_createtable(L, 0, 3);
        lua_pushstring(L, e->dir);
        lua_setfield(L, -2, "dir");
        lua_pushstring(L, e->key);
        lua_setfield(L, -2, "key");
        lua_createtable(L, (int) e->nvms, 0);
        for (size_t i = 0; i < e->nvms; i++) {
                lua_createtable(L, 0, 4);
                lua_pushstring(L, e->vms[i].name);
                lua_setfield(L, -2, "name");
                lua_pushstring(L, e->vms[i].state_path);
                lua_setfield(L, -2, "state");
                lua_pushstring(L, e->vms[i].ram_path);
                lua_setfield(L, -2, "ram");
                push_config(L, e->vms[i].config_json);
                lua_setfield(L, -2, "config");
                lua_rawseti(L, -2, (lua_Integer) i + 1);
        }
        lua_setfield(L, -2, "vms");
}

/* ---- off the loop ---- */

/* A lookup and a commit run in the loop's thread pool: both hash the entry's files (its RAM
 * is hundreds of MiB), which on the loop's thread would hold back replies already buffered. */
typedef struct CacheJob {
        uv_work_t work;
        Pending pending;
        bool commit;      /* a build's commit, else a lookup */
        bool orphaned;    /* its task was abandoned: nobody takes what it found */
        char *name, *key; /* owned */
        FixtureBuild *b;  /* a commit's build (freed by it), or the build a lookup took */
        FixtureEntry *e;  /* the entry found or committed */
        uint64_t started_ns;
        int r;
        char corrupt[512], err[2048];
} CacheJob;

static void cache_job_run(uv_work_t *w)
{
        CacheJob *j = w->data;
        if (j->commit) {
                FixtureBuild *b = j->b;
                j->b = NULL; /* commit frees it, whatever the outcome */
                j->r = fixture_build_commit(b, &j->e, j->err, sizeof j->err);
        } else
                j->r = fixture_cache_open(j->name, j->key, &j->e, &j->b, j->corrupt,
                                          sizeof j->corrupt, j->err, sizeof j->err);
}

/* "hit", entry | "build", Build, why the entry was not used | "busy" | nil, message */
static int push_opened(lua_State *L, void *ud)
{
        CacheJob *j = ud;
        if (j->r == -EWOULDBLOCK) {
                lua_pushliteral(L, "busy");
                return 1;
        }
        if (j->r < 0) {
                lua_pushnil(L);
                lua_pushstring(L, j->err);
                return 2;
        }
        if (j->r == 1) {
                lua_pushliteral(L, "hit");
                push_entry(L, j->e);
                return 2;
        }
        BuildBox *box = lua_newuserdatauv(L, sizeof *box, 0);
        *box = (BuildBox){0};
        luaL_setmetatable(L, BUILD_MT);
        *box = (BuildBox){.b = j->b, .name = j->name, .key = j->key, .started_ns = j->started_ns};
        j->b = NULL; /* the userdata holds the lock from here: its __gc aborts the build */
        j->name = j->key = NULL;
        lua_pushliteral(L, "build");
        lua_insert(L, -2);
        lua_pushstring(L, j->corrupt);
        return 3;
}

/* entry | nil, message */
static int push_committed(lua_State *L, void *ud)
{
        CacheJob *j = ud;
        if (j->r < 0) {
                lua_pushnil(L);
                lua_pushstring(L, j->err);
                return 2;
        }
        push_entry(L, j->e);
        return 1;
}

static void cache_job_done(uv_work_t *w, int status)
{
        CacheJob *j = w->data;
        char what[128];
        (void) status; /* never cancelled: a task abandoned meanwhile orphans the job */
        snprintf(what, sizeof what, "fixture %s: %s", j->name, j->commit ? "commit" : "lookup");
        if (j->commit)
                emit("fixture.build", j->name, j->key, "error", j->r < 0 ? j->err : "",
                     events_mono_ns() - j->started_ns);
        else if (j->r == 1)
                emit("fixture.hit", j->name, j->key, "dir", j->e->dir, 0);
        else if (j->r == 0)
                emit("fixture.miss", j->name, j->key, "reason", *j->corrupt ? j->corrupt : "absent",
                     0);
        if (!j->orphaned)
                runtime_resume_push(&j->pending, j->commit ? push_committed : push_opened, j, what);
        fixture_build_abort(j->b); /* a lookup's build that nobody took */
        fixture_entry_free(j->e);
        free(j->name);
        free(j->key);
        free(j);
}

static void cache_job_orphan(Pending *p)
{
        CacheJob *j = (CacheJob *) ((char *) p - offsetof(CacheJob, pending));
        j->orphaned = true;
}

/* Queues j and parks the caller until it is done; j's strings are set. */
static int cache_job_wait(lua_State *L, CacheJob *j)
{
        j->work.data = j;
        j->pending.cancel = cache_job_orphan;
        int r =
            uv_queue_work(runtime_loop(runtime_get(L)), &j->work, cache_job_run, cache_job_done);
        if (r < 0) {
                const char *name = j->name ? j->name : "?";
                lua_pushnil(L);
                lua_pushfstring(L, "fixture %s: cannot queue its cache work: %s", name,
                                uv_strerror(r));
                fixture_build_abort(j->b);
                free(j->name);
                free(j->key);
                free(j);
                return 2;
        }
        return runtime_wait(L, &j->pending);
}

/* internal.fixture_open(name, key) -> "hit", entry | "build", Build, corrupt | "busy" |
 * nil, message */
static int l_fixture_open(lua_State *L)
{
        runtime_refuse_if_listing(L, "a fixture");
        const char *name = luaL_checkstring(L, 1);
        const char *key = luaL_checkstring(L, 2);
        if (!runtime_in_task(L))
                return luaL_error(
                    L, "fixture %s: only inside a test body or a provium:parallel branch", name);
        CacheJob *j = calloc(1, sizeof *j);
        if (j)
                *j = (CacheJob){
                    .name = strdup(name), .key = strdup(key), .started_ns = events_mono_ns()};
        if (!j || !j->name || !j->key) {
                if (j) {
                        free(j->name);
                        free(j->key);
                }
                free(j);
                return luaL_error(L, "fixture %s: out of memory", name);
        }
        return cache_job_wait(L, j);
}

/* ---- builds ---- */

static BuildBox *check_build(lua_State *L)
{
        BuildBox *box = luaL_checkudata(L, 1, BUILD_MT);
        if (!box->b)
                luaL_error(L, "fixture build: already committed or aborted");
        return box;
}

static void box_release(BuildBox *box)
{
        free(box->name);
        free(box->key);
        box->name = box->key = NULL;
        box->b = NULL;
}

static int l_build_state_path(lua_State *L)
{
        BuildBox *box = check_build(L);
        lua_pushstring(L, fixture_build_state_path(box->b, luaL_checkstring(L, 2)));
        return 1;
}

static int l_build_ram_path(lua_State *L)
{
        BuildBox *box = check_build(L);
        lua_pushstring(L, fixture_build_ram_path(box->b, luaL_checkstring(L, 2)));
        return 1;
}

/* build:add_vm(name, record): record is vm:_config()'s table with what the prelude adds (its
 * network cards) */
static int l_build_add_vm(lua_State *L)
{
        BuildBox *box = check_build(L);
        const char *vm = luaL_checkstring(L, 2);
        luaL_checktype(L, 3, LUA_TTABLE);
        char err[256];
        json_t *o = bind_json_from_lua(L, 3, err, sizeof err);
        char *text = o ? json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
        json_decref(o);
        if (!text)
                return luaL_error(L, "fixture %s: vm %s: its record: %s", box->name, vm, err);
        int r = fixture_build_add_vm(box->b, vm, text);
        free(text);
        if (r < 0)
                return luaL_error(L, "fixture %s: vm %s: %s", box->name, vm, strerror(-r));
        return 0;
}

/* build:commit() -> entry | nil, message: hashes the VMs' files off the loop */
static int l_build_commit(lua_State *L)
{
        BuildBox *box = check_build(L);
        if (!runtime_in_task(L))
                return luaL_error(
                    L, "fixture %s: commit only inside a test body or a provium:parallel branch",
                    box->name);
        CacheJob *j = calloc(1, sizeof *j);
        if (!j)
                return luaL_error(L, "fixture %s: out of memory", box->name);
        *j = (CacheJob){.commit = true,
                        .b = box->b,
                        .name = box->name,
                        .key = box->key,
                        .started_ns = box->started_ns};
        box->name = box->key = NULL; /* the job's now, with the build */
        box_release(box);
        return cache_job_wait(L, j);
}

/* build:abort(why): nothing is cached; the lock is released. */
static int l_build_abort(lua_State *L)
{
        BuildBox *box = luaL_checkudata(L, 1, BUILD_MT);
        if (box->b) {
                emit("fixture.build", box->name, box->key, "error", luaL_optstring(L, 2, "aborted"),
                     events_mono_ns() - box->started_ns);
                fixture_build_abort(box->b);
        }
        box_release(box);
        return 0;
}

static int l_build_gc(lua_State *L)
{
        BuildBox *box = luaL_checkudata(L, 1, BUILD_MT);
        if (box->b)
                fixture_build_abort(box->b);
        box_release(box);
        return 0;
}

/* ---- waiting ---- */

/* internal.sleep(seconds): parks the task on the host's clock */
static int l_sleep(lua_State *L)
{
        double s = luaL_checknumber(L, 1);
        Waiter **slot = lua_newuserdatauv(L, sizeof *slot, 0); /* stays on the parked stack */
        *slot = NULL;
        return waiter_park(L, slot, s < 0 ? 0 : s, "sleep");
}

/* ---- registration ---- */

static const luaL_Reg build_methods[] = {
    {"state_path", l_build_state_path}, {"ram_path", l_build_ram_path}, {"add_vm", l_build_add_vm},
    {"commit", l_build_commit},         {"abort", l_build_abort},       {NULL, NULL},
};

static const luaL_Reg internal_fns[] = {
    {"fixture_key", l_fixture_key},
    {"fixture_open", l_fixture_open},
    {"image_key", l_image_key},
    {"qemu_version", l_qemu_version},
    {"sleep", l_sleep},
    {"accel", l_accel},
    {"machine_layout", l_machine_layout},
    {"run_dir", l_run_dir},
    {NULL, NULL},
};

void bind_fixture_register(lua_State *L)
{
        if (luaL_newmetatable(L, BUILD_MT)) {
                luaL_newlib(L, build_methods);
                lua_setfield(L, -2, "__index");
                lua_pushcfunction(L, l_build_gc);
                lua_setfield(L, -2, "__gc");
        }
        lua_pop(L, 1);
        luaL_setfuncs(L, internal_fns, 0);
}
