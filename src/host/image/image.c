/* image.c: resolving, building and listing guest images in the cache.
 *
 * Sections: small helpers (strings, files, error text) / running a recipe script /
 * the cache key / loading an entry / build under lock / public functions. */
#include "image.h"
#include "strfmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "keyhash.h"
#include "paths.h"
#include "recipe.h"
#include "script.h"

/* The default image's kernel command line, the one place it is written: the default image's
 * builder gets it as --cmdline (and writes it into the image's cmdline and manifest), a user's
 * own kernel boots with it, recipes add to it.
 * Measured under TCG (docs/images.md): crypto self-tests cost ~0.2 s of boot; other flags
 * (tsc=reliable, no_timer_check, 8250.nr_uarts, i8042.*, mitigations=off) showed no gain. */
#define IMAGE_DEFAULT_CMDLINE "console=ttyS0 panic=-1 quiet cryptomgr.notests"
#define IMAGE_LOG_LINES       20
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

/* ---- small helpers ---- */

static void progress(const ImageOptions *opts, const char *name, const char *fmt, ...)
{
        va_list ap;

        if (opts && opts->quiet)
                return;
        fprintf(stderr, "provium: image %s: ", name);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
}

static double now_s(void)
{
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const char *recipe_script(const char *name)
{
        for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++)
                if (strcmp(recipes[i].name, name) == 0)
                        return recipes[i].script;
        return NULL;
}

/* A name is used in file names: letters, digits, '-', '_', '.', not starting with '.'. */
static bool name_valid(const char *name)
{
        if (!name || !*name || name[0] == '.' || strlen(name) > 64)
                return false;
        for (const char *p = name; *p; p++)
                if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.'))
                        return false;
        return true;
}

/* ---- the cache key: what building one image takes ---- */

/* An image's key and the command that builds it into a directory. */
typedef struct Plan {
        char key[33];
        const char *interp; /* python3 (python3_path) */
        char *script;       /* absolute path of the build script */
        json_t *spec;       /* recipes: the build spec, written beside the entry */
} Plan;

static void plan_clear(Plan *p)
{
        free(p->script);
        json_decref(p->spec);
        *p = (Plan){0};
}

/* Looks up "key=value" in a manifest-like text; returns a malloc'ed value or NULL. */
static char *kv_get(const char *text, const char *key)
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
        busybox = kv_get(out, "busybox");
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

/* Runs the builder's --resolve for p's spec (see recipe_resolve). */
static int recipe_resolve_run(const char *name, Plan *p, const char *images, const char *cache,
                              char *err, size_t errlen)
{
        char *tmp = xasprintf("%s/.resolve-%s-XXXXXX", images, name);
        char *out = NULL, *errtext = NULL;
        json_t *answer = NULL;
        int fd = -1, r, status;

        if (!tmp)
                return -ENOMEM;
        fd = mkstemp(tmp);
        if (fd < 0) {
                r = -errno;
                seterr(err, errlen, "image %s: mkstemp %s: %s", name, tmp, strerror(-r));
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

/* What the resolver answered in this process, by its question (packages, modules, base): a
 * file with several VMs of a recipe asks once. The builder keeps its own memo on disk, checked
 * against apt's lists, for later processes. */
static json_t *resolved_memo;
static pthread_mutex_t resolved_lock = PTHREAD_MUTEX_INITIALIZER;

static char *resolve_question(const json_t *spec)
{
        json_t *q =
            json_pack("{s:O, s:O, s:O}", "packages", json_object_get(spec, "packages"), "modules",
                      json_object_get(spec, "modules"), "base", json_object_get(spec, "base"));
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
                return json_object_set_new(p->spec, "resolved", known) < 0 ? -ENOMEM : 0;
        }
        r = recipe_resolve_run(name, p, images, cache, err, errlen);
        (void) pthread_mutex_lock(&resolved_lock);
        if (r == 0 && question && (resolved_memo || (resolved_memo = json_object())))
                (void) json_object_set_new(resolved_memo, question,
                                           json_deep_copy(json_object_get(p->spec, "resolved")));
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

/* Runs p's build of image NAME into dir, its output going to logfd. */
static int plan_build(const Plan *p, const char *name, const char *dir, const char *cache,
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

/* ---- loading an entry ---- */

Image *image_free(Image *img)
{
        if (!img)
                return NULL;
        free(img->name);
        free(img->dir);
        free(img->kernel);
        free(img->initrd);
        free(img->rootfs);
        free(img->cmdline);
        free(img->key);
        free(img);
        return NULL;
}

static int dup_field(char **dst, const char *src)
{
        *dst = src ? strdup(src) : NULL;
        return src && !*dst ? -ENOMEM : 0;
}

Image *image_dup(const Image *img)
{
        Image *c = calloc(1, sizeof *c);
        int r;

        if (!c)
                return NULL;
        r = dup_field(&c->name, img->name);
        r = r < 0 ? r : dup_field(&c->dir, img->dir);
        r = r < 0 ? r : dup_field(&c->kernel, img->kernel);
        r = r < 0 ? r : dup_field(&c->initrd, img->initrd);
        r = r < 0 ? r : dup_field(&c->rootfs, img->rootfs);
        r = r < 0 ? r : dup_field(&c->cmdline, img->cmdline);
        r = r < 0 ? r : dup_field(&c->key, img->key);
        c->size = img->size;
        c->built = img->built;
        return r < 0 ? image_free(c) : c;
}

static char *trim_newlines(char *s)
{
        size_t n = strlen(s);

        while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r'))
                s[--n] = '\0';
        return s;
}

/* Loads the built image in DIR. Returns 0, -ENOENT when DIR holds no complete image, or
 * another -errno. */
static int image_load(const char *name, const char *dir, const char *key, Image **ret)
{
        char *path = NULL, *manifest = NULL, *kernel = NULL, *initrd = NULL, *rootfs = NULL;
        Image *img = NULL;
        int r;

        path = xasprintf("%s/manifest", dir);
        if (!path)
                return -ENOMEM;
        r = script_read_file(path, &manifest);
        free(path);
        path = NULL;
        if (r < 0)
                return r;
        kernel = kv_get(manifest, "kernel");
        initrd = kv_get(manifest, "initrd");
        rootfs = kv_get(manifest, "rootfs");
        if (!kernel || !initrd || strchr(kernel, '/') || strchr(initrd, '/') ||
            (rootfs && (!*rootfs || strchr(rootfs, '/')))) {
                r = -EBADMSG;
                goto out;
        }
        img = calloc(1, sizeof *img);
        if (!img) {
                r = -ENOMEM;
                goto out;
        }
        img->name = strdup(name);
        img->dir = strdup(dir);
        img->kernel = xasprintf("%s/%s", dir, kernel);
        img->initrd = xasprintf("%s/%s", dir, initrd);
        img->rootfs = rootfs ? xasprintf("%s/%s", dir, rootfs) : NULL;
        img->key = key ? strdup(key) : NULL;
        path = xasprintf("%s/cmdline", dir);
        if (!img->name || !img->dir || !img->kernel || !img->initrd || (key && !img->key) ||
            (rootfs && !img->rootfs) || !path) {
                r = -ENOMEM;
                goto out;
        }
        r = script_read_file(path, &img->cmdline);
        if (r < 0)
                goto out;
        trim_newlines(img->cmdline);
        if (access(img->kernel, R_OK) < 0 || access(img->initrd, R_OK) < 0 ||
            (img->rootfs && access(img->rootfs, R_OK) < 0)) {
                r = -errno;
                goto out;
        }
        *ret = img;
        img = NULL;
        r = 0;
out:
        image_free(img);
        free(path);
        free(manifest);
        free(kernel);
        free(initrd);
        free(rootfs);
        return r;
}

/* ---- build under lock ---- */

/* Opens and locks $images/<name>-<key>.lock exclusively, waiting for another builder (and
 * saying so). Returns the fd (the lock lives as long as it) or -errno. */
static int lock_entry(const char *images, const char *name, const char *key,
                      const ImageOptions *opts, const char *logpath)
{
        char *path = xasprintf("%s/%s-%s.lock", images, name, key);
        int fd, r;

        if (!path)
                return -ENOMEM;
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        r = fd < 0 ? -errno : 0;
        free(path);
        if (r < 0)
                return r;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
                return fd;
        if (errno == EWOULDBLOCK)
                progress(opts, name, "another process is building it (output in %s); waiting",
                         logpath);
        while (flock(fd, LOCK_EX) < 0) {
                if (errno != EINTR) {
                        r = -errno;
                        (void) close(fd);
                        return r;
                }
        }
        return fd;
}

/* The plan for image NAME: a built-in image's script, or the user's recipe images/NAME.lua. */
static int plan_image(const char *name, const char *images, const char *cache, Plan *p, char *err,
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

/* Builds (or, without force, finds) image NAME in the cache. */
static int image_get(const char *name, bool force, const ImageOptions *opts, Image **ret, char *err,
                     size_t errlen)
{
        const char *cache;
        char *images = NULL, *dir = NULL, *logpath = NULL, *log = NULL;
        int lockfd = -1, logfd = -1, r, status;
        Image *img = NULL;
        Plan plan = {0};
        bool built = false;
        double t0;

        cache = paths_cache_dir();
        if (!cache) {
                r = -errno;
                seterr(err, errlen, "image %s: cache directory %s cannot be created: %s", name,
                       paths_cache_dir_wanted(), strerror(-r));
                return r;
        }
        images = xasprintf("%s/images", cache);
        if (!images) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(-r));
                goto out;
        }
        r = paths_mkdir_p(images, 0755);
        if (r < 0) {
                seterr(err, errlen, "image %s: mkdir %s: %s", name, images, strerror(-r));
                goto out;
        }
        r = plan_image(name, images, cache, &plan, err, errlen);
        if (r < 0)
                goto out;
        dir = xasprintf("%s/%s-%s", images, name, plan.key);
        logpath = xasprintf("%s/%s-%s.log", images, name, plan.key);
        if (!dir || !logpath) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(-r));
                goto out;
        }

        /* Fast path: a complete entry needs no lock (it only ever appears by rename). */
        if (!force) {
                r = image_load(name, dir, plan.key, &img);
                if (r >= 0)
                        goto done;
                if (r != -ENOENT) {
                        seterr(err, errlen, "image %s: cache entry %s: %s", name, dir,
                               strerror(-r));
                        goto out;
                }
        }

        lockfd = lock_entry(images, name, plan.key, opts, logpath);
        if (lockfd < 0) {
                r = lockfd;
                seterr(err, errlen, "image %s: lock %s.lock: %s", name, dir, strerror(-r));
                goto out;
        }
        /* Another process may have built it while this one waited. */
        if (!force) {
                r = image_load(name, dir, plan.key, &img);
                if (r >= 0)
                        goto done;
        }

        progress(opts, name, "building (key %.12s); output in %s", plan.key, logpath);
        logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (logfd < 0) {
                r = -errno;
                seterr(err, errlen, "image %s: open %s: %s", name, logpath, strerror(-r));
                goto out;
        }
        t0 = now_s();
        built = true;
        status = plan_build(&plan, name, dir, cache, logfd, err, errlen);
        if (status < 0) {
                r = status;
                goto out;
        }
        if (status != 0) {
                char st_text[64], *prefix;
                script_describe_status(status, st_text, sizeof st_text);
                prefix = xasprintf("image %s: build failed (%s; full log %s); last lines:", name,
                                   st_text, logpath);
                if (script_read_file(logpath, &log) < 0)
                        log = NULL;
                script_seterr_tail(err, errlen, prefix ? prefix : "", log ? log : "",
                                   IMAGE_LOG_LINES);
                free(prefix);
                r = -EIO;
                goto out;
        }
        r = image_load(name, dir, plan.key, &img);
        if (r < 0) {
                seterr(err, errlen, "image %s: build left no usable image in %s: %s", name, dir,
                       strerror(-r));
                goto out;
        }
        progress(opts, name, "built in %.1f s: %s", now_s() - t0, dir);
done:
        if (opts && opts->cmdline) {
                char *c = strdup(opts->cmdline);
                if (!c) {
                        r = -ENOMEM;
                        seterr(err, errlen, "image %s: %s", name, strerror(-r));
                        goto out;
                }
                free(img->cmdline);
                img->cmdline = c;
        }
        img->built = built;
        *ret = img;
        img = NULL;
        r = 0;
out:
        image_free(img);
        plan_clear(&plan);
        if (logfd >= 0)
                (void) close(logfd);
        if (lockfd >= 0)
                (void) close(lockfd); /* releases the lock */
        free(log);
        free(logpath);
        free(dir);
        free(images);
        return r;
}

/* A user's own kernel (+ initrd): checked, not built; the key hashes their contents. */
static int image_custom(const char *name, const ImageOptions *opts, Image **ret, char *err,
                        size_t errlen)
{
        const char *files[2] = {opts->kernel, opts->initrd};
        char *real[2] = {NULL, NULL}, key[33];
        XXH3_state_t *st = NULL;
        Image *img = NULL;
        int r = 0;

        for (int i = 0; i < 2; i++) {
                struct stat sb;
                if (!files[i])
                        continue;
                real[i] = realpath(files[i], NULL);
                if (!real[i] || stat(real[i], &sb) < 0) {
                        r = -errno;
                        seterr(err, errlen, "image %s: %s %s: %s", name, i ? "initrd" : "kernel",
                               files[i], strerror(-r));
                        goto out;
                }
                if (!S_ISREG(sb.st_mode) || access(real[i], R_OK) < 0) {
                        r = S_ISREG(sb.st_mode) ? -errno : -EINVAL;
                        seterr(err, errlen, "image %s: %s %s: %s", name, i ? "initrd" : "kernel",
                               files[i], S_ISREG(sb.st_mode) ? strerror(-r) : "not a regular file");
                        goto out;
                }
        }
        const char *cmdline = opts->cmdline ? opts->cmdline : IMAGE_DEFAULT_CMDLINE;
        st = XXH3_createState();
        if (!st || XXH3_128bits_reset(st) != XXH_OK) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(-r));
                goto out;
        }
        keyhash_field(st, "provium-image-custom", "1", 1);
        keyhash_field(st, "cmdline", cmdline, strlen(cmdline));
        for (int i = 0; i < 2 && r >= 0; i++)
                if (real[i])
                        r = keyhash_file(st, i ? "initrd" : "kernel", real[i]);
        if (r < 0) {
                seterr(err, errlen, "image %s: hashing: %s", name, strerror(-r));
                goto out;
        }
        keyhash_hex(st, key);

        img = calloc(1, sizeof *img);
        if (!img) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(-r));
                goto out;
        }
        img->name = strdup(name);
        img->dir = strdup(real[0]);
        img->cmdline = strdup(cmdline);
        img->key = strdup(key);
        if (!img->name || !img->dir || !img->cmdline || !img->key) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(-r));
                goto out;
        }
        char *slash = strrchr(img->dir, '/');
        if (slash)
                slash[slash == img->dir ? 1 : 0] = '\0';
        img->kernel = real[0];
        img->initrd = real[1];
        real[0] = real[1] = NULL;
        *ret = img;
        img = NULL;
out:
        XXH3_freeState(st);
        image_free(img);
        free(real[0]);
        free(real[1]);
        return r;
}

/* ---- public functions ---- */

int image_resolve(const char *name, const ImageOptions *opts, Image **ret, char *err, size_t errlen)
{
        seterr(err, errlen, "%s", "");
        if (!ret)
                return -EINVAL;
        if (opts && opts->kernel) {
                if (!name)
                        name = "custom";
                return image_custom(name, opts, ret, err, errlen);
        }
        if (!name)
                name = "default";
        if (!name_valid(name)) {
                seterr(err, errlen, "image %s: invalid name", name);
                return -EINVAL;
        }
        if (opts && opts->initrd) {
                seterr(err, errlen, "image %s: initrd given without kernel", name);
                return -EINVAL;
        }
        /* The dispatcher resolved it a moment ago: skip recomputing the key (it runs the
         * recipe script) in every runner and every boot. */
        char var[128];
        snprintf(var, sizeof var, "PROVIUM_IMAGE_DIR_%s", name);
        const char *dir = getenv(var);
        const char *base = dir ? strrchr(dir, '/') : NULL;
        size_t nlen = strlen(name);
        if (base && strncmp(base + 1, name, nlen) == 0 && base[1 + nlen] == '-' &&
            image_load(name, dir, base + 2 + nlen, ret) == 0)
                return 0;
        return image_get(name, false, opts, ret, err, errlen);
}

int image_build(const char *name, bool force, Image **ret, char *err, size_t errlen)
{
        seterr(err, errlen, "%s", "");
        if (!ret)
                return -EINVAL;
        if (!name)
                name = "default";
        if (!name_valid(name)) {
                seterr(err, errlen, "image %s: invalid name", name);
                return -EINVAL;
        }
        return image_get(name, force, NULL, ret, err, errlen);
}

static uint64_t dir_size(const char *dir)
{
        DIR *d = opendir(dir);
        struct dirent *de;
        uint64_t total = 0;

        if (!d)
                return 0;
        while ((de = readdir(d))) {
                struct stat sb;
                if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISREG(sb.st_mode))
                        total += (uint64_t) sb.st_size;
        }
        (void) closedir(d);
        return total;
}

static int cmp_image(const void *a, const void *b)
{
        const Image *x = *(Image *const *) a, *y = *(Image *const *) b;
        int c = strcmp(x->name, y->name);

        return c ? c : strcmp(x->dir, y->dir);
}

Image **image_list_free(Image **images, size_t n)
{
        if (!images)
                return NULL;
        for (size_t i = 0; i < n; i++)
                image_free(images[i]);
        free(images);
        return NULL;
}

int image_list(Image ***ret, size_t *ret_n)
{
        const char *cache;
        char *images = NULL;
        Image **v = NULL;
        size_t n = 0, cap = 0;
        DIR *d = NULL;
        struct dirent *de;
        int r;

        if (!ret || !ret_n)
                return -EINVAL;
        cache = paths_cache_dir();
        if (!cache)
                return -errno;
        images = xasprintf("%s/images", cache);
        if (!images)
                return -ENOMEM;
        d = opendir(images);
        if (!d) {
                r = errno == ENOENT ? 0 : -errno;
                goto out;
        }
        while ((errno = 0, de = readdir(d))) {
                /* Entries are <name>-<32 hex>; temp dirs (.tmp.), locks and logs are not. */
                size_t len = strlen(de->d_name);
                if (len < 34 || de->d_name[len - 33] != '-' ||
                    strspn(de->d_name + len - 32, "0123456789abcdef") != 32)
                        continue;
                char *name = strndup(de->d_name, len - 33);
                char *dir = xasprintf("%s/%s", images, de->d_name);
                Image *img = NULL;
                r = name && dir ? image_load(name, dir, de->d_name + len - 32, &img) : -ENOMEM;
                free(name);
                if (r == -ENOMEM) {
                        free(dir);
                        goto out;
                }
                if (r < 0) {
                        free(dir);
                        continue; /* incomplete or foreign: not an image */
                }
                img->size = dir_size(dir);
                free(dir);
                if (n == cap) {
                        size_t ncap = cap ? cap * 2 : 8;
                        Image **nv = realloc(v, ncap * sizeof *nv);
                        if (!nv) {
                                image_free(img);
                                r = -ENOMEM;
                                goto out;
                        }
                        v = nv;
                        cap = ncap;
                }
                v[n++] = img;
        }
        if (errno != 0) {
                r = -errno;
                goto out;
        }
        if (n > 0)
                qsort(v, n, sizeof *v, cmp_image);
        r = 0;
out:
        if (d)
                (void) closedir(d);
        free(images);
        if (r < 0) {
                image_list_free(v, n);
                return r;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}
