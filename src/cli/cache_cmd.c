/* cache_cmd.c: `provium cache ls`, `clear` and `trim`: what the cache holds (built images and
 * saved VM fixtures), removing it, and holding it to its size.
 *
 * Sections: helpers / ls / clear / trim / the command. */
#include "cache_cmd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cache_trim.h"
#include "cachedir.h"
#include "events.h"
#include "fixture_cache.h"
#include "image.h"
#include "paths.h"
#include "strfmt.h"

#define MIB (1024.0 * 1024.0)

/* ---- helpers ---- */

/* "42s", "3m", "2h", "4d" since unix time t. */
static void format_age(int64_t t, char *buf, size_t len)
{
        int64_t s = (int64_t) time(NULL) - t;

        if (s < 0)
                s = 0;
        if (s < 60)
                (void) snprintf(buf, len, "%llds", (long long) s);
        else if (s < 3600)
                (void) snprintf(buf, len, "%lldm", (long long) (s / 60));
        else if (s < 86400)
                (void) snprintf(buf, len, "%lldh", (long long) (s / 3600));
        else
                (void) snprintf(buf, len, "%lldd", (long long) (s / 86400));
}

static bool name_selected(const char *name, char **names, int nnames)
{
        if (nnames == 0)
                return true;
        for (int i = 0; i < nnames; i++)
                if (strcmp(names[i], name) == 0)
                        return true;
        return false;
}

/* ---- ls ---- */

static void print_row(const char *kind, const char *name, const char *key, uint64_t bytes,
                      int64_t t, const char *vms, const char *dir)
{
        char age[32];

        format_age(t, age, sizeof age);
        printf("%-8s %-20s %-16.16s %9.1fM %5s  %-20s %s\n", kind, name, key, bytes / MIB, age, vms,
               dir);
}

static int print_fixture(const FixtureEntry *e)
{
        size_t len = 1;
        char *vms;

        for (size_t i = 0; i < e->nvms; i++)
                len += strlen(e->vms[i].name) + 1;
        vms = calloc(1, len);
        if (!vms)
                return -ENOMEM;
        for (size_t i = 0; i < e->nvms; i++) {
                if (i > 0)
                        strcat(vms, ",");
                strcat(vms, e->vms[i].name);
        }
        print_row("fixture", e->name, e->key, e->disk_bytes, e->created, e->nvms ? vms : "-",
                  e->dir);
        free(vms);
        return 0;
}

/* "total 1.2G of 20.0G ($PROVIUM_CACHE_MAX) in DIR": what trimming would count. */
static void print_total(const char *cache)
{
        uint64_t max = 0, total = 0;
        char err[256];

        if (cache_max_bytes(&max, err, sizeof err) < 0 ||
            cache_trim(UINT64_MAX, NULL, NULL, &total) < 0)
                return;
        printf("total %.1fM of %.1fM ($PROVIUM_CACHE_MAX) in %s\n", total / MIB, max / MIB, cache);
}

static int cache_ls(const char *cache)
{
        Image **images = NULL;
        FixtureEntry **fixtures = NULL;
        size_t nimages = 0, nfixtures = 0;
        int r, status = 0;

        r = image_list(&images, &nimages);
        if (r < 0) {
                fprintf(stderr, "provium: cache ls: images in %s/images: %s\n", cache,
                        strerror(-r));
                return 1;
        }
        r = fixture_cache_list(&fixtures, &nfixtures);
        if (r < 0) {
                fprintf(stderr, "provium: cache ls: fixtures in %s/fixtures: %s\n", cache,
                        strerror(-r));
                image_list_free(images, nimages);
                return 1;
        }
        if (nimages + nfixtures == 0) {
                printf("cache is empty (%s)\n", cache);
                goto out;
        }
        printf("%-8s %-20s %-16s %10s %5s  %-20s %s\n", "KIND", "NAME", "KEY", "SIZE", "AGE", "VMS",
               "DIR");
        for (size_t i = 0; i < nimages; i++) {
                struct stat sb;
                int64_t t = stat(images[i]->dir, &sb) == 0 ? (int64_t) sb.st_mtime : time(NULL);
                print_row("image", images[i]->name, images[i]->key ? images[i]->key : "-",
                          cachedir_disk_bytes(images[i]->dir), t, "-", images[i]->dir);
        }
        for (size_t i = 0; i < nfixtures; i++) {
                if (print_fixture(fixtures[i]) < 0) {
                        fprintf(stderr, "provium: cache ls: %s\n", strerror(ENOMEM));
                        status = 1;
                        break;
                }
        }
        print_total(cache);
out:
        image_list_free(images, nimages);
        fixture_cache_list_free(fixtures, nfixtures);
        return status;
}

/* ---- clear ---- */

static const char *skipped_why(int result)
{
        return result == -EBUSY ? "in use by a running provium" : "being built by another process";
}

typedef struct ClearStats {
        unsigned fixtures, images, busy;
        uint64_t bytes;
} ClearStats;

static void on_fixture_cleared(void *data, const char *name, const char *key, uint64_t bytes,
                               int result)
{
        ClearStats *s = data;

        if (result == 1) {
                s->fixtures++;
                s->bytes += bytes;
                printf("removed fixture %s-%.16s (%.1fM)\n", name, key, bytes / MIB);
        } else {
                s->busy++;
                printf("skipped fixture %s-%.16s: %s\n", name, key, skipped_why(result));
        }
}

static int clear_fixtures(char **names, int nnames, ClearStats *s)
{
        char err[4096];
        int r;

        for (int i = 0; i < (nnames ? nnames : 1); i++) {
                r = fixture_cache_clear_each(nnames ? names[i] : NULL, on_fixture_cleared, s, NULL,
                                             err, sizeof err);
                if (r < 0) {
                        fprintf(stderr, "provium: cache clear: %s\n", err);
                        return r;
                }
        }
        return 0;
}

static int clear_images(const char *cache, char **names, int nnames, ClearStats *s, bool *matched)
{
        char *images = NULL;
        Image **list = NULL;
        size_t n = 0;
        int r;

        if (asprintf(&images, "%s/images", cache) < 0) {
                fprintf(stderr, "provium: cache clear: %s\n", strerror(ENOMEM));
                return -ENOMEM;
        }
        r = image_list(&list, &n);
        if (r < 0) {
                fprintf(stderr, "provium: cache clear: images in %s: %s\n", images, strerror(-r));
                free(images);
                return r;
        }
        for (size_t i = 0; i < n; i++) {
                const Image *img = list[i];
                if (!img->key || !name_selected(img->name, names, nnames))
                        continue;
                for (int k = 0; k < nnames; k++)
                        if (strcmp(names[k], img->name) == 0)
                                matched[k] = true;
                uint64_t bytes;
                r = image_remove(img, &bytes);
                if (r < 0 && r != -EWOULDBLOCK && r != -EBUSY) {
                        fprintf(stderr, "provium: cache clear: image %s: removing %s: %s\n",
                                img->name, img->dir, strerror(-r));
                        break;
                }
                if (r == -EWOULDBLOCK || r == -EBUSY) {
                        printf("skipped image %s-%.16s: %s\n", img->name, img->key, skipped_why(r));
                        r = 0;
                        s->busy++;
                        continue;
                }
                s->images++;
                s->bytes += bytes;
                printf("removed image %s-%.16s (%.1fM)\n", img->name, img->key, bytes / MIB);
        }
        image_list_free(list, n);
        free(images);
        return r < 0 ? r : 0;
}

static int cache_clear(const char *cache, int argc, char **argv)
{
        bool fixtures = true, images = true, *matched = calloc((size_t) argc + 1, sizeof *matched);
        ClearStats s = {0};
        int r = 0;

        if (!matched) {
                fprintf(stderr, "provium: cache clear: %s\n", strerror(ENOMEM));
                return 1;
        }
        if (argc > 0 && strcmp(argv[0], "images") == 0) {
                fixtures = false;
                argc--, argv++;
        } else if (argc > 0 && strcmp(argv[0], "fixtures") == 0) {
                images = false;
                argc--, argv++;
        }
        if (fixtures)
                r = clear_fixtures(argv, argc, &s);
        if (r >= 0 && images)
                r = clear_images(cache, argv, argc, &s, matched);
        printf("removed %u fixture%s and %u image%s (%.1fM)", s.fixtures,
               s.fixtures == 1 ? "" : "s", s.images, s.images == 1 ? "" : "s", s.bytes / MIB);
        if (s.busy)
                printf("; skipped %u being built or in use", s.busy);
        printf(" in %s\n", cache);
        free(matched);
        return r < 0 ? 1 : 0;
}

int cache_remove_images(char **names, int nnames)
{
        const char *cache = paths_cache_dir();
        bool *matched = calloc((size_t) nnames + 1, sizeof *matched);
        ClearStats s = {0};
        int r, status = 0;

        if (!cache || !matched) {
                fprintf(stderr, "provium: image rm: %s\n",
                        cache ? strerror(ENOMEM) : paths_cache_dir_error(errno));
                free(matched);
                return 1;
        }
        r = clear_images(cache, names, nnames, &s, matched);
        for (int k = 0; k < nnames; k++)
                if (!matched[k]) {
                        fprintf(stderr, "provium: image rm: no built image named %s in %s/images\n",
                                names[k], cache);
                        status = 1;
                }
        free(matched);
        return r < 0 || s.busy ? 1 : status;
}

/* ---- trim ---- */

typedef struct TrimReport {
        bool quiet_kept; /* a run says only what it removed */
        uint64_t max;
        const char *prefix;
} TrimReport;

static void emit_evict(const CacheTrimItem *it, uint64_t max)
{
        EventBuilder ev;
        event_begin(&ev, "cache.evict", 6);
        proto_kv_str(&ev.w, "area", it->area);
        proto_kv_str(&ev.w, "name", it->name);
        proto_kv_str(&ev.w, "key", it->key);
        proto_kv_uint(&ev.w, "bytes", it->bytes);
        proto_kv_int(&ev.w, "last_use", it->last_use);
        proto_kv_uint(&ev.w, "max", max);
        event_end(&ev);
}

static void on_trimmed(void *data, const CacheTrimItem *it)
{
        const TrimReport *t = data;
        const char *kind = strcmp(it->area, "images") == 0 ? "image" : "fixture";
        char age[32];

        format_age(it->last_use, age, sizeof age);
        if (it->result == 1) {
                fprintf(t->prefix ? stderr : stdout,
                        "%sremoved %s %s-%.16s (%.1fM, last used %s ago): the cache holds more "
                        "than $PROVIUM_CACHE_MAX (%.1fM)\n",
                        t->prefix ? t->prefix : "", kind, it->name, it->key, it->bytes / MIB, age,
                        t->max / MIB);
                emit_evict(it, t->max);
        } else if (!t->quiet_kept)
                printf("kept %s %s-%.16s (%.1fM): %s\n", kind, it->name, it->key, it->bytes / MIB,
                       it->result == -EBUSY         ? "in use by a running provium"
                       : it->result == -EWOULDBLOCK ? "being built by another process"
                                                    : strerror(-it->result));
}

int cache_trim_for_run(void)
{
        TrimReport t = {.quiet_kept = true, .prefix = "provium: cache: "};
        char err[256];

        if (cache_max_bytes(&t.max, err, sizeof err) < 0) {
                fprintf(stderr, "provium: %s\n", err);
                return -EINVAL;
        }
        (void) cache_trim(t.max, on_trimmed, &t, NULL); /* an unreadable area: the run says so */
        return 0;
}

/* provium cache trim [SIZE]: to SIZE, else $PROVIUM_CACHE_MAX. */
static int cache_trim_cmd(const char *cache, int argc, char **argv)
{
        TrimReport t = {0};
        char err[256];
        uint64_t mb, total = 0;

        if (argc > 1) {
                fprintf(stderr, "provium: cache trim: unexpected argument '%s'\n", argv[1]);
                return 2;
        }
        if (argc == 1 && (parse_size_mib(argv[0], &mb) < 0 || mb > (UINT64_MAX >> 20))) {
                fprintf(stderr,
                        "provium: cache trim: expected MiB or a size like \"20G\", got '%s'\n",
                        argv[0]);
                return 2;
        }
        if (argc == 1)
                t.max = mb << 20;
        else if (cache_max_bytes(&t.max, err, sizeof err) < 0) {
                fprintf(stderr, "provium: cache trim: %s\n", err);
                return 2;
        }
        int r = cache_trim(t.max, on_trimmed, &t, &total);
        if (r < 0) {
                fprintf(stderr, "provium: cache trim: %s: %s\n", cache, strerror(-r));
                return 1;
        }
        printf("removed %d entr%s; the cache holds %.1fM of %.1fM in %s\n", r, r == 1 ? "y" : "ies",
               total / MIB, t.max / MIB, cache);
        return 0;
}

/* ---- the command ---- */

int cache_cmd_main(int argc, char **argv)
{
        const char *cache;

        if (argc < 2) {
                fprintf(stderr, "provium: cache: expected a subcommand: ls, clear "
                                "[images|fixtures] [NAME...], or trim [SIZE]\n");
                return 2;
        }
        if (strcmp(argv[1], "ls") != 0 && strcmp(argv[1], "clear") != 0 &&
            strcmp(argv[1], "trim") != 0) {
                fprintf(stderr,
                        "provium: cache: unknown subcommand '%s' (valid: ls, clear "
                        "[images|fixtures] [NAME...], trim [SIZE])\n",
                        argv[1]);
                return 2;
        }
        if (strcmp(argv[1], "ls") == 0 && argc > 2) {
                fprintf(stderr, "provium: cache ls: unexpected argument '%s'\n", argv[2]);
                return 2;
        }
        cache = paths_cache_dir();
        if (!cache) {
                fprintf(stderr, "provium: cache: cache directory %s: %s\n",
                        paths_cache_dir_wanted(), paths_cache_dir_error(errno));
                return 1;
        }
        if (strcmp(argv[1], "ls") == 0)
                return cache_ls(cache);
        if (strcmp(argv[1], "trim") == 0)
                return cache_trim_cmd(cache, argc - 2, argv + 2);
        return cache_clear(cache, argc - 2, argv + 2);
}
