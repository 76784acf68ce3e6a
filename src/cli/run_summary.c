/* run_summary.c: the end-of-run summary (run_summary.h). */
#include "run_summary.h"

#include <inttypes.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "term_text.h"

#define SLOWEST     5
#define MAX_FAILED  50
#define MAX_SPAWNED 4096

typedef struct Slow {
        uint64_t ns;
        char what[256]; /* "FILE: test" */
} Slow;

typedef struct Failed {
        char what[256];
        char where[256]; /* the message's first line: "file:line: ..." */
        char file[128], test[128];
        bool vms; /* its file had booted a VM by then: --keep-on-failure would keep them */
} Failed;

#define MAX_VM_FILES 64 /* files remembered as having booted VMs (for the hint) */

static struct {
        Slow slow[SLOWEST];
        Failed *failed;
        unsigned nfailed, more_failed, tests;
        unsigned booted, restored, image_hits, image_builds, fixture_hits, fixture_builds;
        struct {
                int64_t pid;
                uint64_t ts;
        } spawned[MAX_SPAWNED]; /* QEMUs alive: pid and start */
        unsigned nspawned;
        uint64_t vm_ns;
        char vm_files[MAX_VM_FILES][128];
        unsigned nvm_files;
        uint64_t seed;
} sum;

static bool file_booted(const char *file)
{
        for (unsigned i = 0; i < sum.nvm_files; i++)
                if (strcmp(sum.vm_files[i], file) == 0)
                        return true;
        return false;
}

static void add_failed(const char *what, const char *msg);

static void on_test_end(const msgpack_object *m, void *data)
{
        char file[128], test[128], status[8], msg[256];
        uint64_t ns = 0;
        (void) proto_copy_str(m, "file", file, sizeof file);
        (void) proto_copy_str(m, "test", test, sizeof test);
        (void) proto_copy_str(m, "status", status, sizeof status);
        (void) proto_copy_str(m, "message", msg, sizeof msg);
        (void) proto_get_uint(m, "duration_ns", &ns);
        sum.tests++;
        int at = SLOWEST;
        while (at > 0 && sum.slow[at - 1].ns < ns)
                at--;
        if (at < SLOWEST) {
                memmove(&sum.slow[at + 1], &sum.slow[at], (SLOWEST - 1 - at) * sizeof sum.slow[0]);
                sum.slow[at].ns = ns;
                snprintf(sum.slow[at].what, sizeof sum.slow[at].what, "%.120s: %.120s", file, test);
        }
        if (strcmp(status, "fail") == 0) {
                char what[256];
                snprintf(what, sizeof what, "%.120s: %.120s", file, test);
                add_failed(what, msg);
                if (sum.failed && sum.nfailed && !sum.more_failed) {
                        Failed *f = &sum.failed[sum.nfailed - 1];
                        snprintf(f->file, sizeof f->file, "%s", file);
                        snprintf(f->test, sizeof f->test, "%s", test);
                        f->vms = file_booted(file);
                }
        }
}

static void on_ready(const msgpack_object *m, void *data)
{
        bool ok = false;
        char file[128];
        if (proto_get_bool(m, "ok", &ok) != 1 || !ok)
                return;
        (*(unsigned *) data)++;
        (void) proto_copy_str(m, "file", file, sizeof file);
        if (file[0] && !file_booted(file) && sum.nvm_files < MAX_VM_FILES)
                snprintf(sum.vm_files[sum.nvm_files++], sizeof sum.vm_files[0], "%s", file);
}

/* The first failure in a file with VMs: how to get into them (a test name goes into -k
 * between single quotes). */
static void print_keep_hint(void)
{
        for (unsigned i = 0; i < sum.nfailed; i++) {
                const Failed *f = &sum.failed[i];
                if (!f->vms || strchr(f->test, '\'') || !f->test[0])
                        continue;
                printf("to look inside its VMs: provium --keep-on-failure -k '%s' %s, then "
                       "provium shell (or provium debug for a Lua prompt at the failure)\n",
                       f->test, f->file);
                return;
        }
}

static void on_image(const msgpack_object *m, void *data)
{
        bool ok = false, built = false;
        if (proto_get_bool(m, "ok", &ok) != 1 || !ok)
                return;
        (void) proto_get_bool(m, "built", &built);
        if (built)
                sum.image_builds++;
        else
                sum.image_hits++;
}

static void on_spawn(const msgpack_object *m, void *data)
{
        int64_t pid;
        uint64_t ts;
        if (proto_get_int(m, "pid", &pid) == 1 && proto_get_uint(m, "ts", &ts) == 1 &&
            sum.nspawned < MAX_SPAWNED) {
                sum.spawned[sum.nspawned].pid = pid;
                sum.spawned[sum.nspawned++].ts = ts;
        }
}

static void on_vm_exit(const msgpack_object *m, void *data)
{
        int64_t pid;
        uint64_t ts;
        if (proto_get_int(m, "pid", &pid) != 1 || proto_get_uint(m, "ts", &ts) != 1)
                return;
        for (unsigned i = 0; i < sum.nspawned; i++)
                if (sum.spawned[i].pid == pid) {
                        sum.vm_ns += ts > sum.spawned[i].ts ? ts - sum.spawned[i].ts : 0;
                        sum.spawned[i] = sum.spawned[--sum.nspawned];
                        return;
                }
}

static void summary_sink(void *data, const char *type, const uint8_t *mp, size_t len)
{
        static const struct {
                const char *type;
                void (*fn)(const msgpack_object *, void *);
                void *data;
        } on[] = {
            {"test.end", on_test_end, NULL},
            {"vm.boot", on_ready, &sum.booted},
            {"vm.restore", on_ready, &sum.restored},
            {"image.resolve", on_image, NULL},
            {"fixture.hit", NULL, &sum.fixture_hits},
            {"fixture.build", NULL, &sum.fixture_builds},
            {"vm.spawn", on_spawn, NULL},
            {"vm.exit", on_vm_exit, NULL},
        };
        for (size_t i = 0; i < sizeof on / sizeof on[0]; i++) {
                if (strcmp(type, on[i].type) != 0)
                        continue;
                if (on[i].fn)
                        (void) events_decode(mp, len, on[i].fn, on[i].data);
                else
                        (*(unsigned *) on[i].data)++;
                return;
        }
}

void run_summary_set_seed(uint64_t seed)
{
        sum.seed = seed;
}

void run_summary_start(void)
{
        (void) events_subscribe(summary_sink, NULL);
}

void run_summary_print(bool keep_hint)
{
        if (sum.tests == 0)
                return;
        printf("\nslowest tests:\n");
        for (int i = 0; i < SLOWEST && sum.slow[i].ns; i++) {
                printf("  %7.2fs  ", (double) sum.slow[i].ns / 1e9);
                term_text_write(stdout, sum.slow[i].what, strlen(sum.slow[i].what), 0);
                putchar('\n');
        }
        printf("VMs: %u booted, %u restored from fixtures and snapshots; %.0f VM-seconds\n",
               sum.booted, sum.restored, (double) sum.vm_ns / 1e9);
        printf("cache: images %u found, %u built; fixtures %u found, %u built\n", sum.image_hits,
               sum.image_builds, sum.fixture_hits, sum.fixture_builds);
        printf("seed: %llu (provium --seed %llu makes the same choices)\n",
               (unsigned long long) sum.seed, (unsigned long long) sum.seed);
        if (sum.nfailed) {
                printf("failed:\n");
                for (unsigned i = 0; i < sum.nfailed; i++) {
                        fputs("  ", stdout);
                        term_text_write(stdout, sum.failed[i].what, strlen(sum.failed[i].what), 0);
                        fputs("\n      ", stdout);
                        term_text_write(stdout, sum.failed[i].where, strlen(sum.failed[i].where),
                                        0);
                        putchar('\n');
                }
                if (sum.more_failed)
                        printf("  and %u more\n", sum.more_failed);
                if (keep_hint)
                        print_keep_hint();
        }
}

static void add_failed(const char *what, const char *msg)
{
        if (sum.nfailed == MAX_FAILED ||
            (!sum.failed && !(sum.failed = calloc(MAX_FAILED, sizeof *sum.failed)))) {
                sum.more_failed++;
                return;
        }
        Failed *f = &sum.failed[sum.nfailed++];
        snprintf(f->what, sizeof f->what, "%s", what);
        size_t n = strcspn(msg, "\n");
        snprintf(f->where, sizeof f->where, "%.*s", (int) n, msg);
}

void run_summary_file_crashed(const char *file, const char *why)
{
        char what[256];
        snprintf(what, sizeof what, "%.200s: (file)", file);
        sum.tests++;
        add_failed(what, why);
}

void run_summary_free(void)
{
        free(sum.failed);
        sum.failed = NULL;
}
