/* image.c: resolving, building and listing guest images in the cache.
 *
 * Sections: small helpers (strings, files, error text) / running a recipe script /
 * the cache key / loading an entry / build under lock / public functions. */
#include "image.h"
#include "strfmt.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "paths.h"

extern char **environ;

#define IMAGE_DEFAULT_CMDLINE "console=ttyS0 panic=-1 quiet cryptomgr.notests"
#define IMAGE_LOG_LINES       20

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

/* Reads all of fd from offset 0 into a NUL-terminated buffer. Returns 0 or -errno. */
static int read_fd_all(int fd, char **ret, size_t *ret_len)
{
        size_t len = 0, cap = 4096;
        char *buf = malloc(cap);
        off_t off = 0;

        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (cap - len < 2) {
                        char *nb = realloc(buf, cap * 2);
                        if (!nb) {
                                free(buf);
                                return -ENOMEM;
                        }
                        buf = nb;
                        cap *= 2;
                }
                ssize_t n = pread(fd, buf + len, cap - len - 1, off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int r = -errno;
                        free(buf);
                        return r;
                }
                if (n == 0)
                        break;
                len += (size_t) n;
                off += n;
        }
        buf[len] = '\0';
        *ret = buf;
        if (ret_len)
                *ret_len = len;
        return 0;
}

static int read_file_all(const char *path, char **ret)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        int r;

        if (fd < 0)
                return -errno;
        r = read_fd_all(fd, ret, NULL);
        (void) close(fd);
        return r;
}

/* Feeds a tagged, length-prefixed field into the hash, so that fields cannot run together. */
static void hash_field(XXH3_state_t *st, const char *tag, const void *data, size_t len)
{
        uint64_t n = len;

        (void) XXH3_128bits_update(st, tag, strlen(tag) + 1);
        (void) XXH3_128bits_update(st, &n, sizeof n);
        (void) XXH3_128bits_update(st, data, len);
}

/* Hashes the content of a file as one field. Returns 0 or -errno. */
static int hash_file(XXH3_state_t *st, const char *tag, const char *path)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        int r = 0;

        if (fd < 0)
                return -errno;
        if (fstat(fd, &sb) < 0) {
                r = -errno;
                goto out;
        }
        if (!S_ISREG(sb.st_mode)) {
                r = -EINVAL;
                goto out;
        }
        if (sb.st_size == 0) {
                hash_field(st, tag, "", 0);
                goto out;
        }
        void *m = mmap(NULL, (size_t) sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
                r = -errno;
                goto out;
        }
        hash_field(st, tag, m, (size_t) sb.st_size);
        (void) munmap(m, (size_t) sb.st_size);
out:
        (void) close(fd);
        return r;
}

static void hex128(XXH128_hash_t h, char out[33])
{
        (void) snprintf(out, 33, "%016llx%016llx", (unsigned long long) h.high64,
                        (unsigned long long) h.low64);
}

/* Copies the last `lines` lines of text into err after prefix. */
static void seterr_tail(char *err, size_t errlen, const char *prefix, const char *text, int lines)
{
        size_t n = strlen(text);
        const char *p;

        while (n > 0 && text[n - 1] == '\n')
                n--;
        p = text + n;
        for (int seen = 0; p > text; p--)
                if (p[-1] == '\n' && ++seen == lines)
                        break;
        seterr(err, errlen, "%s\n%.*s", prefix, (int) (text + n - p), p);
}

/* ---- running a recipe script ---- */

/* Runs `bash SCRIPT args...` with PROVIUM_CACHE_DIR=cache, stdin /dev/null, stdout to
 * out_fd and stderr to err_fd. Returns the exit status (0-255), 256+signal when killed, or
 * -errno when it could not be started. */
static int run_script(const char *script, const char *const *args, const char *cache, int out_fd,
                      int err_fd)
{
        const char *argv[8];
        size_t argc = 0, nenv = 0;
        posix_spawn_file_actions_t fa;
        char **envp = NULL, *cache_env = NULL;
        pid_t pid;
        int r, status;

        argv[argc++] = "bash";
        argv[argc++] = script;
        for (size_t i = 0; args[i]; i++) {
                assert(argc < sizeof argv / sizeof argv[0] - 1);
                argv[argc++] = args[i];
        }
        argv[argc] = NULL;

        for (char **e = environ; *e; e++)
                nenv++;
        envp = calloc(nenv + 2, sizeof *envp);
        cache_env = xasprintf("PROVIUM_CACHE_DIR=%s", cache);
        if (!envp || !cache_env) {
                free(envp);
                free(cache_env);
                return -ENOMEM;
        }
        nenv = 0;
        for (char **e = environ; *e; e++)
                if (strncmp(*e, "PROVIUM_CACHE_DIR=", 18) != 0)
                        envp[nenv++] = *e;
        envp[nenv++] = cache_env;
        envp[nenv] = NULL;

        r = posix_spawn_file_actions_init(&fa);
        if (r != 0) {
                free(envp);
                free(cache_env);
                return -r;
        }
        r = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
        if (r == 0)
                r = posix_spawn_file_actions_adddup2(&fa, err_fd, 2);
        if (r == 0)
                r = posix_spawnp(&pid, "bash", &fa, NULL, (char *const *) argv, envp);
        (void) posix_spawn_file_actions_destroy(&fa);
        free(envp);
        free(cache_env);
        if (r != 0)
                return -r;

        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return 256 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static void describe_status(int status, char *buf, size_t len)
{
        if (status >= 256)
                (void) snprintf(buf, len, "killed by signal %d", status - 256);
        else
                (void) snprintf(buf, len, "exit status %d", status);
}

/* ---- the cache key ---- */

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

/* Computes the key of image NAME built by SCRIPT with AGENT: asks the script for its
 * inputs (`--key-inputs`: kernel package name, version, SHA256 and the busybox path, without
 * downloading) and hashes them with the contents of script, agent and busybox. */
static int image_key(const char *name, const char *script, const char *agent, const char *cache,
                     char key[33], char *err, size_t errlen)
{
        static const char *const args[] = {"--key-inputs", NULL};
        char *out = NULL, *errtext = NULL, *busybox = NULL, *pkg = NULL, *ver = NULL, *sha = NULL;
        const char *what;
        XXH3_state_t *st = NULL;
        int ofd = -1, efd = -1, r, status;

        ofd = memfd_create("provium-key-out", MFD_CLOEXEC);
        efd = memfd_create("provium-key-err", MFD_CLOEXEC);
        if (ofd < 0 || efd < 0) {
                r = -errno;
                seterr(err, errlen, "image %s: memfd_create: %s", name, strerror(-r));
                goto out;
        }
        status = run_script(script, args, cache, ofd, efd);
        if (status < 0) {
                r = status;
                seterr(err, errlen, "image %s: cannot run bash %s: %s", name, script, strerror(-r));
                goto out;
        }
        r = read_fd_all(ofd, &out, NULL);
        if (r >= 0)
                r = read_fd_all(efd, &errtext, NULL);
        if (r < 0) {
                seterr(err, errlen, "image %s: reading %s output: %s", name, script, strerror(-r));
                goto out;
        }
        if (status != 0) {
                char st_text[64], *prefix;
                describe_status(status, st_text, sizeof st_text);
                prefix = xasprintf("image %s: %s --key-inputs failed (%s):", name, script, st_text);
                seterr_tail(err, errlen, prefix ? prefix : "", errtext, IMAGE_LOG_LINES);
                free(prefix);
                r = -EIO;
                goto out;
        }
        busybox = kv_get(out, "busybox");
        pkg = kv_get(out, "kernel_package");
        ver = kv_get(out, "kernel_version");
        sha = kv_get(out, "kernel_sha256");
        if (!busybox || !pkg || !ver || !sha) {
                seterr(err, errlen, "image %s: %s --key-inputs printed no kernel/busybox", name,
                       script);
                r = -EPROTO;
                goto out;
        }

        st = XXH3_createState();
        if (!st || XXH3_128bits_reset(st) != XXH_OK) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(ENOMEM));
                goto out;
        }
        hash_field(st, "provium-image-key", "1", 1);
        hash_field(st, "name", name, strlen(name));
        hash_field(st, "inputs", out, strlen(out)); /* kernel package, version, SHA256 */
        what = "recipe";
        r = hash_file(st, "script", script);
        if (r >= 0) {
                what = "agent";
                r = hash_file(st, "agent", agent);
        }
        if (r >= 0) {
                what = "busybox";
                r = hash_file(st, "busybox", busybox);
        }
        if (r < 0) {
                bool is_agent = strcmp(what, "agent") == 0;
                const char *path = is_agent                       ? agent
                                   : strcmp(what, "busybox") == 0 ? busybox
                                                                  : script;
                seterr(err, errlen, "image %s: %s %s: %s%s", name, what, path, strerror(-r),
                       is_agent ? " (build it, or set PROVIUM_AGENT)" : "");
                goto out;
        }
        hex128(XXH3_128bits_digest(st), key);
        r = 0;
out:
        XXH3_freeState(st);
        free(out);
        free(errtext);
        free(busybox);
        free(pkg);
        free(ver);
        free(sha);
        if (ofd >= 0)
                (void) close(ofd);
        if (efd >= 0)
                (void) close(efd);
        return r;
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
        r = read_file_all(path, &manifest);
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
        r = read_file_all(path, &img->cmdline);
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

/* Opens and locks $images/<name>-<key>.lock exclusively, waiting for another builder.
 * Returns the fd (the lock lives as long as it) or -errno. */
static int lock_entry(const char *images, const char *name, const char *key)
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
        while (flock(fd, LOCK_EX) < 0) {
                if (errno != EINTR) {
                        r = -errno;
                        (void) close(fd);
                        return r;
                }
        }
        return fd;
}

/* Builds (or, without force, finds) image NAME in the cache. */
static int image_get(const char *name, bool force, const ImageOptions *opts, Image **ret, char *err,
                     size_t errlen)
{
        const char *script_rel = recipe_script(name);
        const char *cache, *agent = paths_agent();
        char key[33], *script = NULL, *images = NULL, *dir = NULL, *logpath = NULL;
        char *log = NULL;
        int lockfd = -1, logfd = -1, r, status;
        Image *img = NULL;
        double t0;

        if (!script_rel) {
                seterr(err, errlen,
                       "image %s: unknown image (known: default; or give kernel= and initrd=)",
                       name);
                return -ENOENT;
        }
        cache = paths_cache_dir();
        if (!cache) {
                r = -errno;
                seterr(err, errlen, "image %s: cache directory %s cannot be created: %s", name,
                       paths_cache_dir_wanted(), strerror(-r));
                return r;
        }
        script = xasprintf("%s/%s", paths_source_dir(), script_rel);
        images = xasprintf("%s/images", cache);
        if (!script || !images) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(-r));
                goto out;
        }
        r = paths_mkdir_p(images, 0755);
        if (r < 0) {
                seterr(err, errlen, "image %s: mkdir %s: %s", name, images, strerror(-r));
                goto out;
        }
        r = image_key(name, script, agent, cache, key, err, errlen);
        if (r < 0)
                goto out;
        dir = xasprintf("%s/%s-%s", images, name, key);
        logpath = xasprintf("%s/%s-%s.log", images, name, key);
        if (!dir || !logpath) {
                r = -ENOMEM;
                seterr(err, errlen, "image %s: %s", name, strerror(-r));
                goto out;
        }

        /* Fast path: a complete entry needs no lock (it only ever appears by rename). */
        if (!force) {
                r = image_load(name, dir, key, &img);
                if (r >= 0)
                        goto done;
                if (r != -ENOENT) {
                        seterr(err, errlen, "image %s: cache entry %s: %s", name, dir,
                               strerror(-r));
                        goto out;
                }
        }

        lockfd = lock_entry(images, name, key);
        if (lockfd < 0) {
                r = lockfd;
                seterr(err, errlen, "image %s: lock %s.lock: %s", name, dir, strerror(-r));
                goto out;
        }
        /* Another process may have built it while this one waited. */
        if (!force) {
                r = image_load(name, dir, key, &img);
                if (r >= 0)
                        goto done;
        }

        progress(opts, name, "building (key %.12s, agent %s); output in %s", key, agent, logpath);
        logfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (logfd < 0) {
                r = -errno;
                seterr(err, errlen, "image %s: open %s: %s", name, logpath, strerror(-r));
                goto out;
        }
        t0 = now_s();
        status = run_script(script, (const char *const[]){dir, agent, NULL}, cache, logfd, logfd);
        if (status < 0) {
                r = status;
                seterr(err, errlen, "image %s: cannot run bash %s: %s", name, script, strerror(-r));
                goto out;
        }
        if (status != 0) {
                char st_text[64], *prefix;
                describe_status(status, st_text, sizeof st_text);
                prefix = xasprintf("image %s: build failed (%s; full log %s); last lines:", name,
                                   st_text, logpath);
                if (read_file_all(logpath, &log) < 0)
                        log = NULL;
                seterr_tail(err, errlen, prefix ? prefix : "", log ? log : "", IMAGE_LOG_LINES);
                free(prefix);
                r = -EIO;
                goto out;
        }
        r = image_load(name, dir, key, &img);
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
        *ret = img;
        img = NULL;
        r = 0;
out:
        image_free(img);
        if (logfd >= 0)
                (void) close(logfd);
        if (lockfd >= 0)
                (void) close(lockfd); /* releases the lock */
        free(log);
        free(logpath);
        free(dir);
        free(images);
        free(script);
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
        hash_field(st, "provium-image-custom", "1", 1);
        hash_field(st, "cmdline", cmdline, strlen(cmdline));
        for (int i = 0; i < 2 && r >= 0; i++)
                if (real[i])
                        r = hash_file(st, i ? "initrd" : "kernel", real[i]);
        if (r < 0) {
                seterr(err, errlen, "image %s: hashing: %s", name, strerror(-r));
                goto out;
        }
        hex128(XXH3_128bits_digest(st), key);

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
