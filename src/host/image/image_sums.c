/* image_sums.c: an image entry's file sums. After an entry is first loaded (its build's end, or
 * an entry built before sums were kept), <entry>/provium.sums records each of its files'
 * XXH3-128 (keyhash_file) with the identity the file had then: device, inode, size and ctime.
 * A later load takes a file whose identity is unchanged as it is (a stat), and hashes one whose
 * identity changed: a file written in place, even at its own length, is a damaged entry, and
 * one that was only linked or copied has its record refreshed. What the kernel changes without
 * a ctime (a disk's own bit rot) is not caught. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image_internal.h"
#include "keyhash.h"
#include "strfmt.h"

#define SUMS_FILE  "provium.sums"
#define SUMS_MAX   4096 /* bytes of a sums file: a line per file, a few files */
#define SUM_DIGITS 32

typedef struct SumLine {
        char file[64]; /* the file's name in the entry */
        uint64_t size, dev, ino;
        int64_t ctime_s;
        long ctime_ns;
        char sum[SUM_DIGITS + 1];
} SumLine;

static const char *base_name(const char *path)
{
        const char *s = strrchr(path, '/');
        return s ? s + 1 : path;
}

/* The identity of path now, in l (its name and sum untouched). */
static int identity(const char *path, SumLine *l)
{
        struct stat sb;
        if (stat(path, &sb) < 0)
                return -errno;
        l->size = (uint64_t) sb.st_size;
        l->dev = (uint64_t) sb.st_dev;
        l->ino = (uint64_t) sb.st_ino;
        l->ctime_s = (int64_t) sb.st_ctim.tv_sec;
        l->ctime_ns = sb.st_ctim.tv_nsec;
        return 0;
}

static bool same_identity(const SumLine *a, const SumLine *b)
{
        return a->size == b->size && a->dev == b->dev && a->ino == b->ino &&
               a->ctime_s == b->ctime_s && a->ctime_ns == b->ctime_ns;
}

/* path's identity and sum (read, not mapped: an I/O error is an error, not SIGBUS). */
static int measure(const char *path, SumLine *l)
{
        XXH3_state_t *st = XXH3_createState();
        int r;

        if (!st || XXH3_128bits_reset(st) != XXH_OK) {
                XXH3_freeState(st);
                return -ENOMEM;
        }
        (void) snprintf(l->file, sizeof l->file, "%s", base_name(path));
        r = identity(path, l);
        if (r >= 0)
                r = keyhash_file(st, l->file, path);
        if (r >= 0)
                keyhash_hex(st, l->sum);
        XXH3_freeState(st);
        return r;
}

/* Writes the record atomically (a temporary file renamed over it). Returns 0 or -errno. */
static int write_sums(const char *dir, const SumLine *lines, size_t n)
{
        char *tmp = xasprintf("%s/." SUMS_FILE ".XXXXXX", dir), *path = NULL;
        FILE *f = NULL;
        int fd, r = 0;

        if (!tmp)
                return -ENOMEM;
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0 || !(f = fdopen(fd, "w"))) {
                r = -errno;
                if (fd >= 0)
                        (void) close(fd);
                goto out;
        }
        for (size_t i = 0; i < n; i++)
                (void) fprintf(f, "%s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRId64 ".%09ld %s\n",
                               lines[i].file, lines[i].size, lines[i].dev, lines[i].ino,
                               lines[i].ctime_s, lines[i].ctime_ns, lines[i].sum);
        if (fclose(f) != 0)
                r = -errno;
        path = r >= 0 ? xasprintf("%s/" SUMS_FILE, dir) : NULL;
        if (r >= 0 && !path)
                r = -ENOMEM;
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
out:
        if (r < 0)
                (void) unlink(tmp);
        free(path);
        free(tmp);
        return r;
}

/* Parses one line of a record. Returns true when it is well formed. */
static bool parse_line(const char *line, SumLine *l)
{
        char sum[SUM_DIGITS + 2];
        int end = 0;

        if (sscanf(line, "%63s %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNd64 ".%9ld %33s%n",
                   l->file, &l->size, &l->dev, &l->ino, &l->ctime_s, &l->ctime_ns, sum,
                   &end) != 7 ||
            line[end] != '\0' || strlen(sum) != SUM_DIGITS ||
            strspn(sum, "0123456789abcdef") != SUM_DIGITS || l->ctime_ns < 0)
                return false;
        memcpy(l->sum, sum, sizeof l->sum);
        return true;
}

/* Reads dir's record into lines (at most max). Returns how many, -ENOENT without one,
 * -EBADMSG when it is malformed, or -errno. */
static int read_sums(const char *dir, SumLine *lines, size_t max)
{
        char *path = xasprintf("%s/" SUMS_FILE, dir), buf[SUMS_MAX + 1];
        int fd = path ? open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK) : -1;
        ssize_t len = fd >= 0 ? read(fd, buf, SUMS_MAX + 1) : -1;
        int r = len < 0 ? (path ? -errno : -ENOMEM) : 0;
        size_t n = 0;

        if (fd >= 0)
                (void) close(fd);
        free(path);
        if (r < 0)
                return r == -ELOOP ? -EBADMSG : r;
        if (len > SUMS_MAX)
                return -EBADMSG;
        buf[len] = '\0';
        for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
                if (n == max || !parse_line(line, &lines[n]))
                        return -EBADMSG;
                n++;
        }
        return (int) n;
}

int image__sums_record(const char *dir, const char *const files[], size_t n)
{
        SumLine lines[IMAGE_SUMS_FILES];
        int r = 0;

        if (n > IMAGE_SUMS_FILES)
                return -E2BIG;
        for (size_t i = 0; i < n && r >= 0; i++)
                r = measure(files[i], &lines[i]);
        return r < 0 ? r : write_sums(dir, lines, n);
}

int image__sums_check(const char *dir, const char *const files[], size_t n, char *bad,
                      size_t badlen)
{
        SumLine rec[IMAGE_SUMS_FILES], now[IMAGE_SUMS_FILES];
        bool refresh = false;
        int nrec = read_sums(dir, rec, IMAGE_SUMS_FILES);

        if (nrec == -ENOENT || nrec == -EBADMSG)
                return image__sums_record(dir, files, n) == -ENOMEM ? -ENOMEM : 0;
        if (nrec < 0)
                return nrec;
        for (size_t i = 0; i < n; i++) {
                const SumLine *r = NULL;
                for (int k = 0; k < nrec && !r; k++)
                        if (strcmp(rec[k].file, base_name(files[i])) == 0)
                                r = &rec[k];
                int q = identity(files[i], &now[i]);
                if (q < 0)
                        return q;
                (void) snprintf(now[i].file, sizeof now[i].file, "%s", base_name(files[i]));
                if (r && same_identity(r, &now[i])) {
                        memcpy(now[i].sum, r->sum, sizeof now[i].sum);
                        continue;
                }
                q = measure(files[i], &now[i]);
                if (q < 0)
                        return q;
                if (r && strcmp(r->sum, now[i].sum) != 0) {
                        (void) snprintf(bad, badlen, "%s", now[i].file);
                        return -EBADMSG;
                }
                refresh = true; /* linked, copied or touched, but the same bytes */
        }
        if (refresh)
                (void) write_sums(dir, now, n);
        return 0;
}
