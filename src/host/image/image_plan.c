/* image_plan.c: what building one image takes: its cache key (the default image's inputs, or a
 * recipe's spec with its resolved packages) and the command that builds it.
 *
 * Sections: the built-in images / the default image's key / a recipe's resolution / a recipe's
 * key / building. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image.h"
#include "image_internal.h"
#include "keyhash.h"
#include "paths.h"
#include "recipe.h"
#include "script.h"
#include "strfmt.h"

/* A recipe image whose tree is larger becomes a read-only root disk: measured by bench/run
 * image, an initramfs costs ~9-10 ms of boot per MiB, a root disk the same whatever its size;
 * they meet at 26-40 MiB (docs/images.md, "Packing"). */
#define IMAGE_PACK_THRESHOLD (32ull << 20)

/* The images Provium knows how to build, each from a recipe script in the source tree. */
static const struct {
        const char *name;
        const char *script; /* relative to paths_source_dir() */
} recipes[] = {
    {"default", "scripts/build-default-image"},
};

static const char *recipe_script(const char *name)
{
        for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++)
                if (strcmp(recipes[i].name, name) == 0)
                        return recipes[i].script;
        return NULL;
}

void image__plan_clear(Plan *p)
{
        free(p->script);
        json_decref(p->spec);
        *p = (Plan){0};
}

char *image__kv_get(const char *text, const char *key)
{
        size_t kl = strlen(key);

        for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
                if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
                        const char *v = p + kl + 1;
                        return strndup(v, strcspn(v, "\n"));
                }
        }
        return NULL;
}

static XXH3_state_t *key_start(const char *kind, const char *name)
{
        XXH3_state_t *st = XXH3_createState();

        if (!st || XXH3_128bits_reset(st) != XXH_OK) {
                XXH3_freeState(st);
                return NULL;
        }
        keyhash_field(st, kind, "1", 1);
        keyhash_field(st, "name", name, strlen(name));
        return st;
}

/* Debian's own interpreter when it is there: a python3 earlier on PATH may be a version
 * manager's shim, which costs ~0.3 s a call. */
static const char *python3_path(void)
{
        return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

/* Hashes the builders' shared library, every .py file of scripts/imagelib, into st. */
static int keyhash_imagelib(XXH3_state_t *st, const char *name, char *err, size_t errlen)
{
        char *lib = xasprintf("%s/scripts/imagelib", paths_source_dir());
        int r = lib ? keyhash_dir(st, "imagelib", lib, ".py") : -ENOMEM;

        if (r < 0)
                seterr(err, errlen, "image %s: builder library %s: %s", name,
                       lib ? lib : "scripts/imagelib", strerror(-r));
        free(lib);
        return r;
}

/* The default image's key: asks its script for its inputs (`--key-inputs`: kernel package
 * name, version, SHA256 and the busybox path, without downloading) and hashes them with the
 * command line and the contents of the script, its library, the agent and busybox. */
static int plan_default(const char *name, const char *script_rel, const char *cache, Plan *p,
                        char *err, size_t errlen)
{
        static const char *const args[] = {"--key-inputs", NULL};
        const char *agent = paths_agent();
        char *out = NULL, *errtext = NULL, *busybox = NULL;
        XXH3_state_t *st = NULL;
        int r, status;

        p->interp = python3_path();
        p->script = xasprintf("%s/%s", paths_source_dir(), script_rel);
        if (!p->script) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(-r));
                goto out;
        }
        status = script_capture(p->interp, p->script, args, cache, &out, &errtext);
        if (status < 0) {
                r = status;
                seterr(err, errlen, "image %s: cannot run %s %s: %s", name, p->interp, p->script,
                       strerror(-r));
                goto out;
        }
        if (status != 0) {
                char st_text[64], *prefix;
                script_describe_status(status, st_text, sizeof st_text);
                prefix =
                    xasprintf("image %s: %s --key-inputs failed (%s):", name, p->script, st_text);
                script_seterr_tail(err, errlen, prefix ? prefix : "", errtext, IMAGE_LOG_LINES);
                free(prefix);
                r = -EIO;
                goto out;
        }
        busybox = image__kv_get(out, "busybox");
        if (!busybox || !strstr(out, "kernel_package=")) {
                seterr(err, errlen, "image %s: %s --key-inputs printed no kernel/busybox", name,
                       p->script);
                r = -EPROTO;
                goto out;
        }
        st = key_start("provium-image-key", name);
        if (!st) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(-r));
                goto out;
        }
        keyhash_field(st, "inputs", out, strlen(out)); /* kernel package, version, SHA256 */
        keyhash_field(st, "cmdline", IMAGE_DEFAULT_CMDLINE, strlen(IMAGE_DEFAULT_CMDLINE));
        r = keyhash_imagelib(st, name, err, errlen);
        if (r < 0)
                goto out;
        const char *files[][2] = {{"recipe", p->script}, {"agent", agent}, {"busybox", busybox}};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
                r = keyhash_file(st, files[i][0], files[i][1]);
                if (r < 0) {
                        bool is_agent = files[i][1] == agent;
                        seterr(err, errlen, "image %s: %s %s: %s%s", name, files[i][0], files[i][1],
                               strerror(-r), is_agent ? " (build it, or set PROVIUM_AGENT)" : "");
                        goto out;
                }
        }
        keyhash_hex(st, p->key);
        r = 0;
out:
        XXH3_freeState(st);
        free(out);
        free(errtext);
        free(busybox);
        return r;
}

/* Writes spec as JSON to path (0644). Returns 0 or -errno. */
static int spec_write(const json_t *spec, const char *path)
{
        return json_dump_file(spec, path, JSON_INDENT(1) | JSON_SORT_KEYS) == 0 ? 0 : -EIO;
}

/* Joins the resolver's errors into err, one "recipe:line: reason" a line. */
static void resolve_errors(json_t *errors, const json_t *spec, const char *name, char *err,
                           size_t errlen)
{
        const char *recipe = json_string_value(json_object_get(spec, "recipe"));
        size_t used = 0, i;
        json_t *e;

        seterr(err, errlen, "%s", "");
        json_array_foreach (errors, i, e) {
                const char *reason = json_string_value(json_object_get(e, "reason"));
                json_t *line = json_object_get(e, "line");
                int n = json_is_integer(line)
                            ? snprintf(err + used, errlen - used, "%s%s:%lld: %s", i ? "\n" : "",
                                       recipe, (long long) json_integer_value(line),
                                       reason ? reason : "?")
                            : snprintf(err + used, errlen - used, "%s%s: image %s: %s",
                                       i ? "\n" : "", recipe, name, reason ? reason : "?");
                if (n < 0 || (size_t) n >= errlen - used)
                        break;
                used += (size_t) n;
        }
}

/* A resolve's spec file is flocked by its provium from mkstemp to unlink; one older than this
 * that can be locked lost its provium (SIGKILL, a crash) and is removed by the next resolve. The
 * age covers the moment between mkstemp and flock. */
#define RESOLVE_LEFTOVER_AGE 60
#define RESOLVE_PREFIX       ".resolve-"

static bool is_resolve_leftover(int dfd, const char *file)
{
        struct stat st;
        bool stale = false;
        int fd = openat(dfd, file, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);

        if (fd < 0)
                return false;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
            time(NULL) - st.st_mtime > RESOLVE_LEFTOVER_AGE)
                stale = flock(fd, LOCK_EX | LOCK_NB) == 0;
        (void) close(fd);
        return stale;
}

static void remove_resolve_leftovers(const char *images)
{
        DIR *d = opendir(images);
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d)))
                if (strncmp(de->d_name, RESOLVE_PREFIX, strlen(RESOLVE_PREFIX)) == 0 &&
                    is_resolve_leftover(dirfd(d), de->d_name))
                        (void) unlinkat(dirfd(d), de->d_name, 0);
        (void) closedir(d);
}

/* Runs the builder's --resolve for p's spec (see recipe_resolve). */
static int recipe_resolve_run(const char *name, Plan *p, const char *images, const char *cache,
                              char *err, size_t errlen)
{
        char *tmp = xasprintf("%s/" RESOLVE_PREFIX "%s-XXXXXX", images, name);
        char *out = NULL, *errtext = NULL;
        json_t *answer = NULL;
        int fd = -1, r, status;

        if (!tmp)
                return -ENOMEM;
        remove_resolve_leftovers(images);
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                seterr(err, errlen, "image %s: mkostemp %s: %s", name, tmp, strerror(-r));
                goto out;
        }
        if (flock(fd, LOCK_EX) < 0) {
                r = -errno;
                seterr(err, errlen, "image %s: flock %s: %s", name, tmp, strerror(-r));
                goto out;
        }
        r = spec_write(p->spec, tmp);
        if (r < 0) {
                seterr(err, errlen, "image %s: writing %s: %s", name, tmp, strerror(-r));
                goto out;
        }
        status = script_capture(p->interp, p->script, (const char *const[]){"--resolve", tmp, NULL},
                                cache, &out, &errtext);
        if (status != 0) {
                char st_text[64], *prefix;
                script_describe_status(status, st_text, sizeof st_text);
                prefix = xasprintf("image %s: %s --resolve failed (%s):", name, p->script,
                                   status < 0 ? strerror(-status) : st_text);
                script_seterr_tail(err, errlen, prefix ? prefix : "", errtext ? errtext : "",
                                   IMAGE_LOG_LINES);
                free(prefix);
                r = -EIO;
                goto out;
        }
        answer = json_loads(out, 0, NULL);
        if (!json_is_object(answer)) {
                seterr(err, errlen, "image %s: %s --resolve printed no JSON object", name,
                       p->script);
                r = -EPROTO;
                goto out;
        }
        if (!json_is_true(json_object_get(answer, "ok"))) {
                resolve_errors(json_object_get(answer, "errors"), p->spec, name, err, errlen);
                r = -EINVAL;
                goto out;
        }
        r = json_object_set(p->spec, "resolved", json_object_get(answer, "packages")) < 0 ? -EPROTO
                                                                                          : 0;
        if (r < 0)
                seterr(err, errlen, "image %s: %s --resolve gave no packages", name, p->script);
        /* kernel "lean": the source package's version, so that a new one is a new key */
        json_t *ks = json_object_get(answer, "kernel_source");
        if (r == 0 && ks && json_object_set(p->spec, "kernel_source", ks) < 0)
                r = -ENOMEM;
out:
        if (fd >= 0) {
                (void) close(fd);
                (void) unlink(tmp);
        }
        json_decref(answer);
        free(out);
        free(errtext);
        free(tmp);
        return r;
}

/* What the resolver answered in this process, by its question (packages, modules, base,
 * kernel): a file with several VMs of a recipe asks once. The builder keeps its own memo on disk,
 * checked against apt's lists, for later processes. */
static json_t *resolved_memo;
static pthread_mutex_t resolved_lock = PTHREAD_MUTEX_INITIALIZER;

static char *resolve_question(const json_t *spec)
{
        json_t *q =
            json_pack("{s:O, s:O, s:O, s:O}", "packages", json_object_get(spec, "packages"),
                      "modules", json_object_get(spec, "modules"), "base",
                      json_object_get(spec, "base"), "kernel", json_object_get(spec, "kernel"));
        char *text = q ? json_dumps(q, JSON_COMPACT | JSON_SORT_KEYS) : NULL;

        json_decref(q);
        return text;
}

/* The packages' dependency closure with versions (kept in spec "resolved"), and the check of
 * packages and modules against apt and the kernel. */
static int recipe_resolve(const char *name, Plan *p, const char *images, const char *cache,
                          char *err, size_t errlen)
{
        char *question = resolve_question(p->spec);
        json_t *known = NULL;
        int r;

        (void) pthread_mutex_lock(&resolved_lock);
        if (question)
                known = json_deep_copy(json_object_get(resolved_memo, question));
        (void) pthread_mutex_unlock(&resolved_lock);
        if (known) {
                free(question);
                r = json_object_update(p->spec, known) < 0 ? -ENOMEM : 0;
                json_decref(known);
                return r;
        }
        r = recipe_resolve_run(name, p, images, cache, err, errlen);
        (void) pthread_mutex_lock(&resolved_lock);
        if (r == 0 && question && (resolved_memo || (resolved_memo = json_object()))) {
                json_t *answer =
                    json_pack("{s:O}", "resolved", json_object_get(p->spec, "resolved"));
                json_t *ks = json_object_get(p->spec, "kernel_source");
                if (answer && ks)
                        (void) json_object_set(answer, "kernel_source", ks);
                if (answer)
                        (void) json_object_set_new(resolved_memo, question, answer);
        }
        (void) pthread_mutex_unlock(&resolved_lock);
        free(question);
        return r;
}

/* The kernel command line of a recipe image: the base's, with the recipe's arguments added
 * (or instead, with cmdline(..., {replace = true})). */
static int recipe_cmdline(json_t *spec, const char *base_cmdline)
{
        const char *extra = json_string_value(json_object_get(spec, "cmdline"));
        bool replace = json_is_true(json_object_get(spec, "cmdline_replace"));
        char *c = replace || !extra ? strdup(replace ? extra : base_cmdline)
                                    : xasprintf("%s %s", base_cmdline, extra);
        int r = c && json_object_set_new(spec, "cmdline", json_string(c)) == 0 ? 0 : -ENOMEM;

        free(c);
        return r;
}

/* The spec as the key sees it: without where the recipe and the files it copies are on this
 * host (their contents count, through the recipe's text and each copy's hash), so that the
 * same project in another directory, or run from another one, finds the same image. */
static char *spec_key_text(const json_t *spec)
{
        json_t *copy = json_deep_copy(spec), *c;
        char *text = NULL;
        size_t i;

        if (!copy)
                return NULL;
        (void) json_object_del(copy, "recipe");
        json_array_foreach (json_object_get(copy, "copies"), i, c) {
                (void) json_object_del(c, "src");
        }
        text = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(copy);
        return text;
}

/* A recipe image's key: the recipe's text, its spec (base image, resolved package versions,
 * hashes of the files it copies, command line...) and the builder's own scripts. */
static int plan_recipe(const char *name, const char *recipe, const char *images, const char *cache,
                       Plan *p, char *err, size_t errlen)
{
        const char *src = paths_source_dir();
        char *dump = NULL;
        Image *base = NULL;
        XXH3_state_t *st = NULL;
        int r;

        p->interp = python3_path();
        p->script = xasprintf("%s/scripts/build-recipe-image", src);
        if (!p->script) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(-r));
                goto out;
        }
        r = recipe_load(name, recipe, &p->spec, err, errlen);
        if (r < 0)
                goto out;
        const char *base_name = json_string_value(json_object_get(p->spec, "base"));
        r = image_resolve(base_name, NULL, &base, err, errlen);
        if (r < 0)
                goto out;
        json_t *b = json_pack("{s:s, s:s, s:s}", "name", base->name, "dir", base->dir, "key",
                              base->key ? base->key : "");
        r = b && json_object_set_new(p->spec, "base", b) == 0 ? 0 : -ENOMEM;
        if (r == 0)
                r = recipe_cmdline(p->spec, base->cmdline);
        if (r == 0)
                r = json_object_set_new(p->spec, "pack_threshold",
                                        json_integer(IMAGE_PACK_THRESHOLD)) == 0
                        ? 0
                        : -ENOMEM;
        if (r < 0) {
                seterr(err, errlen, "image %s: %s", name, strerror(-r));
                goto out;
        }
        r = recipe_resolve(name, p, images, cache, err, errlen);
        if (r < 0)
                goto out;
        st = key_start("provium-recipe-key", name);
        dump = spec_key_text(p->spec);
        if (!st || !dump) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(-r));
                goto out;
        }
        keyhash_field(st, "spec", dump, strlen(dump));
        r = keyhash_imagelib(st, name, err, errlen);
        if (r < 0)
                goto out;
        const char *files[][2] = {{"recipe", recipe}, {"builder", p->script}};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
                r = keyhash_file(st, files[i][0], files[i][1]);
                if (r < 0) {
                        seterr(err, errlen, "image %s: %s %s: %s", name, files[i][0], files[i][1],
                               strerror(-r));
                        goto out;
                }
        }
        keyhash_hex(st, p->key);
out:
        XXH3_freeState(st);
        image_free(base);
        free(dump);
        return r;
}

int image__plan_build(const Plan *p, const char *name, const char *dir, const char *cache,
                      int logfd, char *err, size_t errlen)
{
        char *spec_path = NULL;
        int status;

        if (p->spec) {
                spec_path = xasprintf("%s.spec.json", dir);
                if (!spec_path || spec_write(p->spec, spec_path) < 0) {
                        seterr(err, errlen, "image %s: writing %s.spec.json failed", name, dir);
                        free(spec_path);
                        return -EIO;
                }
                status =
                    script_run(p->interp, p->script, (const char *const[]){spec_path, dir, NULL},
                               cache, logfd, logfd);
        } else {
                status = script_run(p->interp, p->script,
                                    (const char *const[]){"--cmdline", IMAGE_DEFAULT_CMDLINE, dir,
                                                          paths_agent(), NULL},
                                    cache, logfd, logfd);
        }
        free(spec_path);
        if (status < 0)
                seterr(err, errlen, "image %s: cannot run %s %s: %s", name, p->interp, p->script,
                       strerror(-status));
        return status;
}

int image__plan(const char *name, const char *images, const char *cache, Plan *p, char *err,
                size_t errlen)
{
        const char *builtin = recipe_script(name);
        char searched[1024], *recipe;
        int r;

        if (builtin)
                return plan_default(name, builtin, cache, p, err, errlen);
        recipe = recipe_find(name, searched, sizeof searched);
        if (!recipe) {
                seterr(err, errlen,
                       "image %s: no recipe %s.lua in %s (set PROVIUM_IMAGE_PATH for other "
                       "directories; built in: default; or give kernel= and initrd=)",
                       name, name, searched);
                return -ENOENT;
        }
        r = plan_recipe(name, recipe, images, cache, p, err, errlen);
        free(recipe);
        return r;
}
