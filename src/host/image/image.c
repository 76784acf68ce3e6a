/* image.c: resolving, building and listing guest images in the cache (an image's key and
 * build command are image_plan.c's; entry names, the lock and listing cachedir.c's).
 *
 * Sections: small helpers / loading an entry / build under lock / public functions. */
#include "image.h"
#include "strfmt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cachedir.h"
#include "env.h"
#include "image_internal.h"
#include "keyhash.h"
#include "paths.h"
#include "recipe.h"
#include "script.h"

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

/* One file of an entry: readable, a regular file, and as long as the manifest's `field` says
 * (entries built before it was recorded have none): a cut or replaced file is -EBADMSG, said
 * in why. */
static int check_file(const char *path, const char *manifest, const char *field, char *why,
                      size_t whylen)
{
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        struct stat sb;
        if (access(path, R_OK) < 0 || stat(path, &sb) < 0)
                return -errno;
        if (!S_ISREG(sb.st_mode)) {
                seterr(why, whylen, "%s is not a regular file", base);
                return -EBADMSG;
        }
        char *want = image__kv_get(manifest, field);
        char *end = NULL;
        long long n = want ? strtoll(want, &end, 10) : -1;
        bool bad = want && (!*want || *end || n != (long long) sb.st_size);
        if (bad)
                seterr(why, whylen, "%s is %lld bytes, its manifest says %s", base,
                       (long long) sb.st_size, want);
        free(want);
        return bad ? -EBADMSG : 0;
}

/* Loads the built image in DIR (with sums, checking its files against them). Returns 0, -ENOENT
 * when DIR holds no complete image, -EBADMSG when one of its files is damaged (said in why,
 * when given), or another -errno. */
static int image_load_why(const char *name, const char *dir, const char *key, bool sums,
                          Image **ret, char *why, size_t whylen)
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
        kernel = image__kv_get(manifest, "kernel");
        initrd = image__kv_get(manifest, "initrd");
        rootfs = image__kv_get(manifest, "rootfs");
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
        if ((r = check_file(img->kernel, manifest, "kernel_bytes", why, whylen)) < 0 ||
            (r = check_file(img->initrd, manifest, "initrd_bytes", why, whylen)) < 0 ||
            (img->rootfs &&
             (r = check_file(img->rootfs, manifest, "rootfs_bytes", why, whylen)) < 0))
                goto out;
        const char *files[] = {img->kernel, img->initrd, img->rootfs};
        char bad[64] = "";
        r = sums ? image__sums_check(dir, files, img->rootfs ? 3 : 2, bad, sizeof bad) : 0;
        if (r == -EBADMSG)
                seterr(why, whylen,
                       "%s changed since it was built: its XXH3 is not the recorded one", bad);
        if (r < 0)
                goto out;
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

/* An entry to boot: its files checked against their sums too. */
static int image_load(const char *name, const char *dir, const char *key, Image **ret)
{
        return image_load_why(name, dir, key, true, ret, NULL, 0);
}

/* ---- build under lock ---- */

/* Removes what a build script killed before its end left (it builds in NAME-KEY.tmp.XXXXXX
 * beside the entry, and only its own cleanup removes that): under the entry's lock no other
 * build of the key runs, so any there is stale. */
static void remove_build_leftovers(const char *images, const char *name, const char *key)
{
        char prefix[NAME_MAX + 1];
        int n = snprintf(prefix, sizeof prefix, "%s-%s.tmp.", name, key);
        DIR *d = n > 0 && (size_t) n < sizeof prefix ? opendir(images) : NULL;
        if (!d)
                return;
        struct dirent *de;
        while ((de = readdir(d)))
                if (strncmp(de->d_name, prefix, (size_t) n) == 0)
                        (void) cachedir_rm_rf_at(dirfd(d), de->d_name);
        (void) closedir(d);
}

/* Takes the lock of entry <name>-<key> in images, waiting for another builder (and saying
 * so). Returns 0 or -errno. */
static int lock_entry(CacheLock *lock, const char *images, const char *name, const char *key,
                      const ImageOptions *opts, const char *logpath)
{
        char *stem = xasprintf("%s-%s", name, key);
        int r = stem ? cachedir_lock_init(lock, images, stem) : -ENOMEM;

        free(stem);
        if (r < 0)
                return r;
        r = cachedir_lock_take(lock, false);
        if (r != -EWOULDBLOCK)
                return r;
        progress(opts, name, "another process is building it (output in %s); waiting", logpath);
        return cachedir_lock_take(lock, true);
}

/* Builds (or, without force, finds) image NAME in the cache. */
static int image_get(const char *name, bool force, const ImageOptions *opts, Image **ret, char *err,
                     size_t errlen)
{
        const char *cache;
        char *images = NULL, *dir = NULL, *logpath = NULL, *log = NULL;
        CacheLock lock = {.fd = -1};
        int logfd = -1, r, status;
        Image *img = NULL;
        Plan plan = {0};
        bool built = false;
        double t0;

        r = cachedir_root("images", true, &images);
        if (r < 0) {
                if (r == -ENOMEM)
                        seterr(err, errlen, "image %s: %s", name, strerror(-r));
                else if (!images)
                        seterr(err, errlen, "image %s: cache directory %s: %s", name,
                               paths_cache_dir_wanted(), paths_cache_dir_error(-r));
                else
                        seterr(err, errlen, "image %s: mkdir %s: %s", name, images, strerror(-r));
                goto out;
        }
        cache = paths_cache_dir(); /* cachedir_root made it */
        r = image__plan(name, images, cache, &plan, err, errlen);
        if (r < 0)
                goto out;
        dir = cachedir_entry_path(images, name, plan.key, "");
        logpath = cachedir_entry_path(images, name, plan.key, ".log");
        if (!dir || !logpath) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(-r));
                goto out;
        }

        /* Used from here until this process ends: a removal keeps it (advisory: a cache that
         * cannot take the use file is still read). */
        (void) cachedir_use(images, name, plan.key);
        /* Fast path: a complete entry needs no lock (it only ever appears by rename). */
        if (!force) {
                r = image_load(name, dir, plan.key, &img);
                if (r >= 0)
                        goto done;
                if (r != -ENOENT && r != -EBADMSG) {
                        seterr(err, errlen, "image %s: cache entry %s: %s", name, dir,
                               strerror(-r));
                        goto out;
                }
        }

        r = lock_entry(&lock, images, name, plan.key, opts, logpath);
        if (r < 0) {
                seterr(err, errlen, "image %s: lock %s.lock: %s", name, dir, strerror(-r));
                goto out;
        }
        /* Another process may have built it while this one waited. */
        if (!force) {
                char why[256] = "a file cut, replaced or changed";
                r = image_load_why(name, dir, plan.key, true, &img, why, sizeof why);
                if (r >= 0)
                        goto done;
                if (r == -EBADMSG)
                        progress(opts, name, "cache entry %s is damaged (%s): rebuilding", dir,
                                 why);
        }

        progress(opts, name, "building (key %.12s); output in %s", plan.key, logpath);
        logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (logfd < 0) {
                r = -errno;
                seterr(err, errlen, "image %s: open %s: %s", name, logpath,
                       r == -ELOOP ? "a symbolic link, not followed" : strerror(-r));
                goto out;
        }
        t0 = now_s();
        built = true;
        remove_build_leftovers(images, name, plan.key);
        status = image__plan_build(&plan, name, dir, cache, logfd, err, errlen);
        if (status != 0)
                remove_build_leftovers(images, name, plan.key);
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
        if (r < 0 && images && plan.key[0])
                cachedir_unuse_if_absent(images, name, plan.key); /* nothing was built */
        image_free(img);
        image__plan_clear(&plan);
        if (logfd >= 0)
                (void) close(logfd);
        cachedir_lock_release(&lock);
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
        if (!cachedir_name_valid(name)) {
                seterr(err, errlen, "image %s: invalid name", name);
                return -EINVAL;
        }
        if (opts && opts->initrd) {
                seterr(err, errlen, "image %s: initrd given without kernel", name);
                return -EINVAL;
        }
        /* The dispatcher resolved it a moment ago: skip recomputing the key (it runs the
         * recipe script) in every runner and every boot. */
        const char *dir = strcmp(name, "default") == 0 ? env_get()->default_image_dir : NULL;
        const char *base = dir ? strrchr(dir, '/') : NULL;
        size_t nlen = strlen(name);
        if (base && strncmp(base + 1, name, nlen) == 0 && base[1 + nlen] == '-') {
                char *images = strndup(dir, (size_t) (base - dir));
                if (images)
                        (void) cachedir_use(images, name, base + 2 + nlen); /* advisory */
                free(images);
                if (image_load(name, dir, base + 2 + nlen, ret) == 0)
                        return 0;
        }
        return image_get(name, false, opts, ret, err, errlen);
}

int image_build(const char *name, bool force, Image **ret, char *err, size_t errlen)
{
        seterr(err, errlen, "%s", "");
        if (!ret)
                return -EINVAL;
        if (!name)
                name = "default";
        if (!cachedir_name_valid(name)) {
                seterr(err, errlen, "image %s: invalid name", name);
                return -EINVAL;
        }
        return image_get(name, force, NULL, ret, err, errlen);
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
        CacheDirItem *items = NULL;
        char *images = NULL;
        Image **v = NULL;
        size_t n = 0, nitems = 0;
        int r;

        if (!ret || !ret_n)
                return -EINVAL;
        r = cachedir_root("images", false, &images);
        if (r == 0)
                r = cachedir_list(images, NULL, false, &items, &nitems);
        if (r == 0 && !(v = calloc(nitems ? nitems : 1, sizeof *v)))
                r = -ENOMEM;
        for (size_t i = 0; r == 0 && i < nitems; i++) {
                char *dir = cachedir_entry_path(images, items[i].name, items[i].key, "");
                Image *img = NULL;
                /* listed, or removed: not hashed, and not written to */
                int q = dir ? image_load_why(items[i].name, dir, items[i].key, false, &img, NULL, 0)
                            : -ENOMEM;
                if (q == -ENOMEM)
                        r = q;
                else if (q == 0) { /* else incomplete or foreign: not an image */
                        img->size = cachedir_disk_bytes(dir);
                        v[n++] = img;
                }
                free(dir);
        }
        if (r == 0 && n > 0)
                qsort(v, n, sizeof *v, cmp_image);
        free(items);
        free(images);
        if (r == 0) {
                *ret = v;
                *ret_n = n;
        } else {
                image_list_free(v, n);
        }
        return r;
}

int image_remove(const Image *img, uint64_t *ret_bytes)
{
        char *images = NULL;
        int r;

        if (!img || !img->key || !cachedir_name_valid(img->name) || !cachedir_key_valid(img->key))
                return -EINVAL;
        r = cachedir_root("images", false, &images);
        if (r == 0)
                r = cachedir_clear_entry(images, img->name, img->key, ret_bytes);
        free(images);
        return r;
}
