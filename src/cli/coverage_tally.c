/* coverage_tally.c: the tallies of provium coverage (coverage_tally.h).
 *
 * Sections: strings, entries, attribution (which test an event belongs to), the categories
 * (one function per event family), finishing.
 *
 * Attribution: every event a file runner emits names its file and test (events.h's scope),
 * so an event is counted for that test, however the events of parallel files interleave.
 */
#include "coverage_tally.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* ---- strings ---- */

/* A field of ev as a NUL-terminated copy in buf (cut to size); "" when it is absent. */
static const char *field(const msgpack_object *ev, const char *key, char *buf, size_t size)
{
        (void) proto_copy_str(ev, key, buf, size);
        return buf;
}

/* Adds a copy of s to the set items[0..*n) unless it is there. Returns 0 or -ENOMEM. */
static int set_add(char ***items, size_t *n, const char *s)
{
        for (size_t i = 0; i < *n; i++)
                if (strcmp((*items)[i], s) == 0)
                        return 0;
        char **t = realloc(*items, (*n + 1) * sizeof *t);
        if (!t)
                return -ENOMEM;
        *items = t;
        if (!(t[*n] = strdup(s)))
                return -ENOMEM;
        (*n)++;
        return 0;
}

static bool grow(void **p, size_t *cap, size_t need, size_t size)
{
        if (need <= *cap)
                return true;
        size_t ncap = *cap ? *cap * 2 : 16;
        while (ncap < need)
                ncap *= 2;
        void *q = realloc(*p, ncap * size);
        if (!q)
                return false;
        *p = q;
        *cap = ncap;
        return true;
}

/* ---- entries ---- */

static const struct {
        const char *id, *title, *unit;
} kinds[COV_NKINDS] = {
    [COV_SYSCALLS] = {"syscalls", "syscalls", "calls"},
    [COV_IOCTLS] = {"ioctls", "ioctl requests", "calls"},
    [COV_OPS] = {"ops", "agent operations", "calls"},
    [COV_LIFECYCLE] = {"lifecycle", "lifecycle actions", "times"},
    [COV_NETWORK] = {"network", "network impairments", "times"},
    [COV_DISK_FAULTS] = {"disk_faults", "disk faults", "faults"},
    [COV_IMAGES] = {"images", "images", "boots"},
    [COV_FIXTURES] = {"fixtures", "fixtures", "uses"},
};

void coverage_init(Coverage *c)
{
        memset(c, 0, sizeof *c);
        for (int k = 0; k < COV_NKINDS; k++) {
                c->cat[k].id = kinds[k].id;
                c->cat[k].title = kinds[k].title;
                c->cat[k].unit = kinds[k].unit;
        }
}

static CoverageEntry *entry(Coverage *c, CoverageKind kind, const char *name)
{
        CoverageCategory *cat = &c->cat[kind];
        for (size_t i = 0; i < cat->n; i++)
                if (strcmp(cat->entries[i].name, name) == 0)
                        return &cat->entries[i];
        if (!grow((void **) &cat->entries, &cat->cap, cat->n + 1, sizeof *cat->entries))
                return NULL;
        CoverageEntry *e = &cat->entries[cat->n];
        memset(e, 0, sizeof *e);
        e->name = strdup(name);
        if (!e->name)
                return NULL;
        cat->n++;
        return e;
}

static int add_test(CoverageEntry *e, const char *test)
{
        return test ? set_add(&e->tests, &e->ntests, test) : 0;
}

static int add_result(CoverageEntry *e, const char *result, uint64_t n)
{
        for (size_t i = 0; i < e->nresults; i++)
                if (strcmp(e->results[i].name, result) == 0) {
                        e->results[i].n += n;
                        return 0;
                }
        CoverageCount *r = realloc(e->results, (e->nresults + 1) * sizeof *r);
        if (!r)
                return -ENOMEM;
        e->results = r;
        if (!(r[e->nresults].name = strdup(result)))
                return -ENOMEM;
        r[e->nresults++].n = n;
        return 0;
}

/* One call of name in kind by test (NULL: none known), ending with result (NULL: none). */
static int count(Coverage *c, CoverageKind kind, const char *name, const char *test,
                 const char *result)
{
        CoverageEntry *e = entry(c, kind, name);
        if (!e)
                return -ENOMEM;
        e->calls++;
        if (!test)
                c->unattributed++;
        int r = add_test(e, test);
        if (r == 0 && result)
                r = add_result(e, result, 1);
        return r;
}

/* ---- attribution ---- */

void coverage_stream_begin(Coverage *c)
{
        c->streams++;
}

/* "FILE: test" of the event into buf, or NULL when it names no file (the dispatcher's own
 * events, or a stream written before events carried their scope). */
static const char *test_of(const msgpack_object *ev, char *buf, size_t size)
{
        char file[1024], test[1024];
        if (!field(ev, "file", file, sizeof file)[0])
                return NULL;
        snprintf(buf, size, "%s: %s", file, field(ev, "test", test, sizeof test));
        return buf;
}

/* ---- the categories ---- */

static const char *ok_or(const msgpack_object *ev, const char *failed)
{
        bool ok = false;
        (void) proto_get_bool(ev, "ok", &ok);
        return ok ? "ok" : failed;
}

static int on_op(Coverage *c, const msgpack_object *ev)
{
        char op[64], error[64], name[64], label[2100];
        field(ev, "op", op, sizeof op);
        field(ev, "error", error, sizeof error);
        const char *by = test_of(ev, label, sizeof label);
        const char *result = ok_or(ev, error[0] ? error : "error");
        int r = count(c, COV_OPS, op, by, result);
        if (r < 0)
                return r;
        if (strcmp(op, "syscall") == 0)
                return count(c, COV_SYSCALLS, field(ev, "syscall", name, sizeof name), by, result);
        if (strcmp(op, "ioctl") == 0) {
                int64_t request = 0;
                (void) proto_get_int(ev, "request", &request);
                snprintf(name, sizeof name, "0x%" PRIx64, (uint64_t) request);
                r = count(c, COV_IOCTLS, name, by, result);
                if (r == 0)
                        entry(c, COV_IOCTLS, name)->request = request;
        }
        return r;
}

/* An event of kind named by its field key (prefix prepended). */
static int on_simple(Coverage *c, const msgpack_object *ev, CoverageKind kind, const char *prefix,
                     const char *key, const char *result)
{
        char what[256], name[300], label[2100];
        field(ev, key, what, sizeof what);
        snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] && what[0] ? " " : "", what);
        return count(c, kind, name, test_of(ev, label, sizeof label), result);
}

struct CoverageFault {
        char *key; /* "STREAM\nFILE\nDISK\nID": a fault is one disk's, in one runner */
        char *kind;
        uint64_t hits;
};

/* disk.fault_hit: hits so far, of one fault; the largest seen is its total. */
static int on_fault_hit(Coverage *c, const msgpack_object *ev)
{
        char disk[256], kind[64], key[1400];
        uint64_t id = 0, hits = 0;
        (void) proto_get_uint(ev, "fault", &id);
        (void) proto_get_uint(ev, "hits", &hits);
        char file[1024];
        snprintf(key, sizeof key, "%" PRIu64 "\n%s\n%s\n%" PRIu64, c->streams,
                 field(ev, "file", file, sizeof file), field(ev, "disk", disk, sizeof disk), id);
        for (size_t i = 0; i < c->nfaults; i++)
                if (strcmp(c->faults[i].key, key) == 0) {
                        if (hits > c->faults[i].hits)
                                c->faults[i].hits = hits;
                        return 0;
                }
        CoverageFault *f = realloc(c->faults, (c->nfaults + 1) * sizeof *f);
        if (!f)
                return -ENOMEM;
        c->faults = f;
        f = &c->faults[c->nfaults];
        f->key = strdup(key);
        f->kind = strdup(field(ev, "kind", kind, sizeof kind));
        f->hits = hits;
        if (!f->key || !f->kind) {
                free(f->key);
                free(f->kind);
                return -ENOMEM;
        }
        c->nfaults++;
        return 0;
}

static int on_image(Coverage *c, const msgpack_object *ev)
{
        bool built = false;
        (void) proto_get_bool(ev, "built", &built);
        const char *result = strcmp(ok_or(ev, "error"), "ok") != 0 ? "error"
                             : built                               ? "built"
                                                                   : "cached";
        return on_simple(c, ev, COV_IMAGES, "", "image", result);
}

static int on_fixture_build(Coverage *c, const msgpack_object *ev)
{
        char error[8];
        return on_simple(c, ev, COV_FIXTURES, "", "name",
                         field(ev, "error", error, sizeof error)[0] ? "build error" : "build");
}

int coverage_add(Coverage *c, const msgpack_object *ev)
{
        char type[64];
        field(ev, "type", type, sizeof type);
        c->events++;
        if (strcmp(type, "op") == 0)
                return on_op(c, ev);
        if (strcmp(type, "vm.lifecycle") == 0)
                return on_simple(c, ev, COV_LIFECYCLE, "", "action", ok_or(ev, "failed"));
        if (strcmp(type, "bridge.impair") == 0 || strcmp(type, "bridge.heal") == 0)
                return on_simple(c, ev, COV_NETWORK, type + 7, "what", NULL);
        if (strcmp(type, "bridge.latency") == 0 || strcmp(type, "bridge.drop_rate") == 0 ||
            strcmp(type, "bridge.bandwidth") == 0)
                return on_simple(c, ev, COV_NETWORK, type + 7, "", NULL);
        if (strcmp(type, "disk.fault") == 0)
                return on_simple(c, ev, COV_DISK_FAULTS, "", "kind", NULL);
        if (strcmp(type, "disk.fault_hit") == 0)
                return on_fault_hit(c, ev);
        if (strcmp(type, "image.resolve") == 0)
                return on_image(c, ev);
        if (strcmp(type, "fixture.hit") == 0 || strcmp(type, "fixture.miss") == 0)
                return on_simple(c, ev, COV_FIXTURES, "", "name", type + 8);
        if (strcmp(type, "fixture.build") == 0)
                return on_fixture_build(c, ev);
        return 0;
}

/* ---- finishing ---- */

static int by_name(const void *a, const void *b)
{
        return strcmp(((const CoverageEntry *) a)->name, ((const CoverageEntry *) b)->name);
}

/* "ok" first, then the most frequent, then by name. */
static int by_count(const void *a, const void *b)
{
        const CoverageCount *x = a, *y = b;
        bool xok = strcmp(x->name, "ok") == 0, yok = strcmp(y->name, "ok") == 0;
        if (xok != yok)
                return xok ? -1 : 1;
        if (x->n != y->n)
                return x->n > y->n ? -1 : 1;
        return strcmp(x->name, y->name);
}

int coverage_finish(Coverage *c)
{
        for (size_t i = 0; i < c->nfaults; i++) {
                CoverageEntry *e = entry(c, COV_DISK_FAULTS, c->faults[i].kind);
                if (!e)
                        return -ENOMEM;
                e->hits += c->faults[i].hits;
        }
        for (int k = 0; k < COV_NKINDS; k++) {
                CoverageCategory *cat = &c->cat[k];
                if (cat->n) /* qsort wants an array, even of none */
                        qsort(cat->entries, cat->n, sizeof *cat->entries, by_name);
                for (size_t i = 0; i < cat->n; i++)
                        if (cat->entries[i].nresults)
                                qsort(cat->entries[i].results, cat->entries[i].nresults,
                                      sizeof *cat->entries[i].results, by_count);
        }
        return 0;
}

void coverage_free(Coverage *c)
{
        for (int k = 0; k < COV_NKINDS; k++) {
                CoverageCategory *cat = &c->cat[k];
                for (size_t i = 0; i < cat->n; i++) {
                        CoverageEntry *e = &cat->entries[i];
                        free(e->name);
                        for (size_t t = 0; t < e->ntests; t++)
                                free(e->tests[t]);
                        free(e->tests);
                        for (size_t r = 0; r < e->nresults; r++)
                                free(e->results[r].name);
                        free(e->results);
                }
                free(cat->entries);
        }
        for (size_t i = 0; i < c->nfaults; i++) {
                free(c->faults[i].key);
                free(c->faults[i].kind);
        }
        free(c->faults);
        coverage_init(c);
}
