/* coverage_tally.c: the tallies of provium coverage (coverage_tally.h).
 *
 * Sections: strings, entries, attribution (which test an event belongs to), the categories
 * (one function per event family), finishing.
 *
 * Attribution: an op event names its file and test. Other events name neither, and the events
 * of files run in parallel interleave, so they go to the test of the only file running, or of
 * the only running file whose ops used a VM of the event's name; otherwise to no test.
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

struct CoverageFile {
        char *file;
        char *test; /* the running test, or the last one that ended; NULL before the first */
        char **vms; /* names of the VMs its ops used */
        size_t nvms;
        bool ended;
};

static void file_free(CoverageFile *f)
{
        free(f->file);
        free(f->test);
        for (size_t i = 0; i < f->nvms; i++)
                free(f->vms[i]);
        free(f->vms);
}

void coverage_stream_begin(Coverage *c)
{
        for (size_t i = 0; i < c->nfiles; i++)
                file_free(&c->files[i]);
        free(c->files);
        c->files = NULL;
        c->nfiles = 0;
}

static CoverageFile *file_of(Coverage *c, const char *file)
{
        for (size_t i = 0; i < c->nfiles; i++)
                if (strcmp(c->files[i].file, file) == 0)
                        return &c->files[i];
        CoverageFile *f = realloc(c->files, (c->nfiles + 1) * sizeof *f);
        if (!f)
                return NULL;
        c->files = f;
        f = &c->files[c->nfiles];
        memset(f, 0, sizeof *f);
        if (!(f->file = strdup(file)))
                return NULL;
        c->nfiles++;
        return f;
}

static bool file_has_vm(const CoverageFile *f, const char *vm)
{
        for (size_t i = 0; i < f->nvms; i++)
                if (strcmp(f->vms[i], vm) == 0)
                        return true;
        return false;
}

static int file_note_vm(CoverageFile *f, const char *vm)
{
        return vm[0] ? set_add(&f->vms, &f->nvms, vm) : 0;
}

/* "FILE: test" of f's test into buf, or NULL when it has none yet. */
static const char *test_label(const CoverageFile *f, char *buf, size_t size)
{
        if (!f || !f->test)
                return NULL;
        snprintf(buf, size, "%s: %s", f->file, f->test);
        return buf;
}

/* The file an event that names none belongs to (see the top of this file), or NULL. */
static CoverageFile *guess_file(Coverage *c, const char *vm)
{
        CoverageFile *only = NULL, *by_vm = NULL;
        size_t running = 0, with_vm = 0;
        for (size_t i = 0; i < c->nfiles; i++) {
                CoverageFile *f = &c->files[i];
                if (f->ended)
                        continue;
                running++;
                only = f;
                if (vm && vm[0] && file_has_vm(f, vm)) {
                        with_vm++;
                        by_vm = f;
                }
        }
        if (running == 1)
                return only;
        return with_vm == 1 ? by_vm : NULL;
}

static const char *guess_test(Coverage *c, const char *vm, char *buf, size_t size)
{
        return test_label(guess_file(c, vm), buf, size);
}

static int on_file(Coverage *c, const msgpack_object *ev, bool start)
{
        char file[1024];
        CoverageFile *f = file_of(c, field(ev, "file", file, sizeof file));
        if (!f)
                return -ENOMEM;
        if (start) { /* the same file again in this stream: a new runner */
                f->ended = false;
                free(f->test);
                f->test = NULL;
        } else
                f->ended = true;
        return 0;
}

static int on_test_start(Coverage *c, const msgpack_object *ev)
{
        char file[1024], test[1024];
        CoverageFile *f = file_of(c, field(ev, "file", file, sizeof file));
        if (!f)
                return -ENOMEM;
        free(f->test);
        f->test = strdup(field(ev, "test", test, sizeof test));
        return f->test ? 0 : -ENOMEM;
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
        char vm[256], op[64], file[1024], test[1024], error[64], name[64], label[2100];
        field(ev, "vm", vm, sizeof vm);
        field(ev, "op", op, sizeof op);
        field(ev, "error", error, sizeof error);
        const char *by = NULL;
        if (field(ev, "file", file, sizeof file)[0]) {
                CoverageFile *f = file_of(c, file);
                if (!f || file_note_vm(f, vm) < 0)
                        return -ENOMEM;
                snprintf(label, sizeof label, "%s: %s", file, field(ev, "test", test, sizeof test));
                by = label;
        } else
                by = guess_test(c, vm, label, sizeof label);
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

/* An event of kind named by its field key (prefix prepended), by the test guessed from vm. */
static int on_simple(Coverage *c, const msgpack_object *ev, CoverageKind kind, const char *prefix,
                     const char *key, const char *result)
{
        char vm[256], what[256], name[300], label[2100];
        field(ev, "vm", vm, sizeof vm);
        field(ev, key, what, sizeof what);
        snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] && what[0] ? " " : "", what);
        return count(c, kind, name, guess_test(c, vm, label, sizeof label), result);
}

struct CoverageFault {
        char *key; /* "FILE\nDISK\nID": a fault is one disk's, in one file */
        char *kind;
        uint64_t hits;
};

/* disk.fault_hit: hits so far, of one fault; the largest seen is its total. */
static int on_fault_hit(Coverage *c, const msgpack_object *ev)
{
        char disk[256], kind[64], key[1600];
        uint64_t id = 0, hits = 0;
        (void) proto_get_uint(ev, "fault", &id);
        (void) proto_get_uint(ev, "hits", &hits);
        const CoverageFile *in = guess_file(c, NULL);
        snprintf(key, sizeof key, "%.1024s\n%s\n%" PRIu64, in ? in->file : "",
                 field(ev, "disk", disk, sizeof disk), id);
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
        if (strcmp(type, "file.start") == 0 || strcmp(type, "file.end") == 0)
                return on_file(c, ev, type[5] == 's');
        if (strcmp(type, "test.start") == 0)
                return on_test_start(c, ev);
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
        coverage_stream_begin(c);
        for (size_t i = 0; i < c->nfaults; i++) {
                free(c->faults[i].key);
                free(c->faults[i].kind);
        }
        free(c->faults);
        coverage_init(c);
}
