/* fixture_hash.c: the hashes of a fixture's files (whole, or sparse over non-zero pages) and
 * the fixture key. */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "fixture_cache.h"
#include "fixture_internal.h"

#define FIXTURE_HASH_CHUNK                                                                         \
        (1u << 20) /* bytes read at once while hashing: a multiple of HASH_PAGE */

static void hex64(uint64_t h, char out[17])
{
        (void) snprintf(out, 17, "%016llx", (unsigned long long) h);
}

#define HASH_PAGE 4096u /* the unit of a sparse hash, whatever the file system's extents */

static bool page_is_zero(const unsigned char *p, size_t n)
{
        uint64_t acc = 0, w;
        size_t i = 0;
        for (; i + sizeof w <= n; i += sizeof w) {
                memcpy(&w, p + i, sizeof w);
                acc |= w;
        }
        for (; i < n; i++)
                acc |= p[i];
        return acc == 0;
}

/* Reads up to want bytes at off, all of them unless the file ends first (so that chunks stay
 * on the page grid). Returns how many, or -errno. */
static ssize_t pread_full(int fd, unsigned char *buf, size_t want, uint64_t off)
{
        size_t got = 0;
        while (got < want) {
                ssize_t n = pread(fd, buf + got, want - got, (off_t) (off + got));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                got += (size_t) n;
        }
        return (ssize_t) got;
}

/* Feeds [off, off+len) of fd to st, read with pread (not mapped: an I/O error or a file cut
 * short meanwhile is an error, not SIGBUS). With sparse, only its pages that are not all
 * zeros, each after its offset (a little-endian u64). */
static int hash_range(XXH3_state_t *st, unsigned char *buf, int fd, uint64_t off, uint64_t len,
                      bool sparse)
{
        while (len > 0) {
                size_t want = len < FIXTURE_HASH_CHUNK ? (size_t) len : FIXTURE_HASH_CHUNK;
                ssize_t n = pread_full(fd, buf, want, off);
                if (n < 0)
                        return (int) n;
                if ((size_t) n < want)
                        return -EIO; /* shorter than its size said */
                if (!sparse)
                        (void) XXH3_64bits_update(st, buf, (size_t) n);
                for (size_t i = 0; sparse && i < (size_t) n; i += HASH_PAGE) {
                        size_t k = (size_t) n - i < HASH_PAGE ? (size_t) n - i : HASH_PAGE;
                        if (page_is_zero(buf + i, k))
                                continue;
                        uint64_t at = htole64(off + i);
                        (void) XXH3_64bits_update(st, &at, sizeof at);
                        (void) XXH3_64bits_update(st, buf + i, k);
                }
                off += (uint64_t) n;
                len -= (uint64_t) n;
        }
        return 0;
}

/* XXH3-64 of fd's SIZE bytes, or with sparse of its pages that are not all zeros (each as its
 * offset, then its bytes), read from its data extents only. A hole and a page of zeros hash
 * alike: tmpfs fills a RAM file's holes with zeros when a clone's guest merely reads them,
 * so a hash of the extents themselves would change under a valid cache entry. */
int fixture__hash_fd(int fd, uint64_t size, bool sparse, char out[17])
{
        XXH3_state_t *st = XXH3_createState();
        unsigned char *buf = malloc(FIXTURE_HASH_CHUNK);
        int r = 0;

        if (!st || !buf || XXH3_64bits_reset(st) != XXH_OK) {
                XXH3_freeState(st);
                free(buf);
                return -ENOMEM;
        }
        if (!sparse) {
                r = hash_range(st, buf, fd, 0, size, false);
                goto out;
        }
        uint64_t hashed_to = 0; /* pages below this are done */
        for (off_t off = 0; (uint64_t) off < size;) {
                off_t data = lseek(fd, off, SEEK_DATA), hole;
                if (data < 0) {
                        r = errno == ENXIO ? 0 : -errno;
                        break;
                }
                if ((uint64_t) data >= size)
                        break;
                hole = lseek(fd, data, SEEK_HOLE);
                if (hole < 0) {
                        r = -errno;
                        break;
                }
                if ((uint64_t) hole > size)
                        hole = (off_t) size;
                /* On a fixed grid of HASH_PAGE from offset 0, whatever the file system's
                 * block size: extents are widened to whole pages (what they add reads back as
                 * zeros) and a page two extents share is hashed once. */
                uint64_t a = (uint64_t) data & ~(uint64_t) (HASH_PAGE - 1);
                uint64_t b = ((uint64_t) hole + HASH_PAGE - 1) & ~(uint64_t) (HASH_PAGE - 1);
                a = a < hashed_to ? hashed_to : a;
                b = b > size ? size : b;
                if (b > a && (r = hash_range(st, buf, fd, a, b - a, true)) < 0)
                        break;
                hashed_to = b > hashed_to ? b : hashed_to;
                off = hole;
        }
out:
        if (r >= 0)
                hex64(XXH3_64bits_digest(st), out);
        XXH3_freeState(st);
        free(buf);
        return r;
}

/* Opens a VM file: its size and hash. A missing or non-regular file is -ENOENT/-EINVAL. */
int fixture__hash_file(const char *path, bool sparse, uint64_t *ret_size, char out[17])
{
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        struct stat sb;
        int r;

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
        *ret_size = (uint64_t) sb.st_size;
        r = fixture__hash_fd(fd, (uint64_t) sb.st_size, sparse, out);
out:
        (void) close(fd);
        return r;
}

int fixture__hash_json(const json_t *value, char out[17])
{
        char *text = json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);

        if (!text)
                return -ENOMEM;
        hex64(XXH3_64bits(text, strlen(text)), out);
        free(text);
        return 0;
}

void fixture_cache_key(const void *material, size_t len, char out[33])
{
        XXH128_hash_t h = XXH3_128bits(material, len);

        (void) snprintf(out, 33, "%016llx%016llx", (unsigned long long) h.high64,
                        (unsigned long long) h.low64);
}
