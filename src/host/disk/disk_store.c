/* disk_store.c: a disk's bytes: data file, base image, writes waiting for a flush. */
#include "disk_store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Pages of one direct read at most (32 MiB, NBD_MAX_REQUEST). */
#define NBD_DIRECT_PAGES 8192

struct PendingWrite {
        uint64_t off, len;
        uint8_t *data; /* NULL: zeros */
        bool durable;  /* kept by a power loss */
        PendingWrite *next;
};

/* ---- the data file and the base ---- */

static int pread_all(int fd, uint8_t *p, size_t n, uint64_t off)
{
        while (n > 0) {
                ssize_t r = pread(fd, p, n, (off_t) off);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0) { /* past the end of a file: zeros */
                        memset(p, 0, n);
                        return 0;
                }
                p += r;
                n -= (size_t) r;
                off += (uint64_t) r;
        }
        return 0;
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
        while (n > 0) {
                ssize_t r = pwrite(fd, p, n, (off_t) off);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                p += r;
                n -= (size_t) r;
                off += (uint64_t) r;
        }
        return 0;
}

static bool sector_written(const DiskStore *s, uint64_t sector)
{
        return s->written[sector / 8] & (1u << (sector % 8));
}

/* What the data file and the base hold at off (no pending writes). */
static int read_settled(const DiskStore *s, uint64_t off, uint32_t len, uint8_t *out)
{
        if (s->base_fd < 0)
                return pread_all(s->fd, out, len, off);
        /* runs of sectors from the same side; off and len are whole sectors (NBD_MIN_BLOCK) */
        uint64_t end = off + len;
        while (off < end) {
                uint64_t sec = off / DISK_SECTOR, run_end = off + DISK_SECTOR;
                bool mine = sector_written(s, sec);
                while (run_end < end && sector_written(s, run_end / DISK_SECTOR) == mine)
                        run_end += DISK_SECTOR;
                size_t n = (size_t) (run_end - off);
                int r;
                if (mine)
                        r = pread_all(s->fd, out, n, off);
                else if (off >= s->base_size)
                        r = (memset(out, 0, n), 0);
                else
                        r = pread_all(s->base_fd, out, n, off);
                if (r < 0)
                        return r;
                out += n;
                off = run_end;
        }
        return 0;
}

static int write_settled(DiskStore *s, uint64_t off, uint64_t len, const uint8_t *data)
{
        int r;
        if (data)
                r = pwrite_all(s->fd, data, (size_t) len, off);
        else /* zeros: a hole, which reads as zeros over a base too once marked written */
                r = fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t) off,
                              (off_t) len) < 0
                        ? -errno
                        : 0;
        if (r < 0 || !s->written)
                return r;
        for (uint64_t sec = off / DISK_SECTOR; sec < (off + len + DISK_SECTOR - 1) / DISK_SECTOR;
             sec++)
                s->written[sec / 8] |= (uint8_t) (1u << (sec % 8));
        return 0;
}

/* ---- pending writes ---- */

static void pending_free(PendingWrite *p)
{
        free(p->data);
        free(p);
}

static void pending_clear(DiskStore *s)
{
        for (PendingWrite *p = s->pending, *next; p; p = next) {
                next = p->next;
                pending_free(p);
        }
        s->pending = s->pending_tail = NULL;
        s->npending = s->pending_bytes = 0;
}

static int pending_add(DiskStore *s, uint64_t off, uint64_t len, const uint8_t *data, bool durable)
{
        if (data && s->pending_bytes + len > DISK_PENDING_MAX)
                return -ENOSPC;
        PendingWrite *p = calloc(1, sizeof *p);
        if (!p || (data && !(p->data = malloc((size_t) len)))) {
                free(p);
                return -ENOMEM;
        }
        if (data)
                memcpy(p->data, data, (size_t) len);
        p->off = off;
        p->len = len;
        p->durable = durable;
        if (s->pending_tail)
                s->pending_tail->next = p;
        else
                s->pending = p;
        s->pending_tail = p;
        s->npending++;
        s->pending_bytes += data ? len : 0;
        return 0;
}

/* Lays the pending writes over out (the bytes [off, off + len)), oldest first. */
static void overlay_pending(const DiskStore *s, uint64_t off, uint32_t len, uint8_t *out)
{
        uint64_t end = off + len;
        for (const PendingWrite *p = s->pending; p; p = p->next) {
                uint64_t a = p->off > off ? p->off : off;
                uint64_t b = p->off + p->len < end ? p->off + p->len : end;
                if (a >= b)
                        continue;
                if (p->data)
                        memcpy(out + (a - off), p->data + (a - p->off), (size_t) (b - a));
                else
                        memset(out + (a - off), 0, (size_t) (b - a));
        }
}

/* ---- the store ---- */

uint8_t *store_direct(DiskStore *s, uint64_t off, uint64_t len)
{
        if (!s->map || s->volatile_writes || s->pending || off > s->size || len > s->size - off)
                return NULL;
        return s->map + off;
}

const uint8_t *store_direct_read(DiskStore *s, uint64_t off, uint64_t len)
{
        if (len == 0 || !store_direct(s, off, len))
                return NULL;
        /* every page of the range in the file (mincore: bounded by the range, where SEEK_HOLE
         * would walk to the next hole, the file's end on a disk written through) */
        uint64_t page = 4096, first = off / page * page, n = (off + len - first + page - 1) / page;
        unsigned char vec[NBD_DIRECT_PAGES];
        if (n > sizeof vec || mincore(s->map + first, (size_t) (n * page), vec) < 0)
                return NULL;
        for (uint64_t i = 0; i < n; i++)
                if (!(vec[i] & 1))
                        return NULL;
        return s->map + off;
}

int store_read(const DiskStore *s, uint64_t off, uint32_t len, uint8_t *out)
{
        int r = read_settled(s, off, len, out);
        if (r == 0 && s->pending)
                overlay_pending(s, off, len, out);
        return r;
}

int store_write(DiskStore *s, uint64_t off, uint64_t len, const uint8_t *data, bool durable)
{
        /* behind older pending writes, a durable one waits in line too, marked to be kept */
        if (s->volatile_writes || s->pending)
                return pending_add(s, off, len, data, durable || !s->volatile_writes);
        return write_settled(s, off, len, data);
}

int store_flush(DiskStore *s)
{
        int r = 0;
        for (PendingWrite *p = s->pending; p && r == 0; p = p->next)
                r = write_settled(s, p->off, p->len, p->data);
        pending_clear(s);
        return r;
}

int store_set_volatile(DiskStore *s, bool on)
{
        int r = on ? 0 : store_flush(s);
        s->volatile_writes = on;
        return r;
}

int store_power_loss(DiskStore *s, double drop, double (*next_random)(void *), void *rng,
                     uint64_t *ret_dropped, uint64_t *ret_kept)
{
        uint64_t dropped = 0, kept = 0;
        int r = 0;
        for (PendingWrite *p = s->pending; p; p = p->next) {
                bool lose = !p->durable && (drop >= 1 || next_random(rng) < drop);
                if (lose) {
                        dropped++;
                        continue;
                }
                kept++;
                if (r == 0)
                        r = write_settled(s, p->off, p->len, p->data);
        }
        pending_clear(s);
        *ret_dropped = dropped;
        *ret_kept = kept;
        return r;
}

static int open_base(DiskStore *s, const char *base_path, uint64_t *size, char *err, size_t errlen)
{
        s->base_fd = open(base_path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (s->base_fd < 0 || fstat(s->base_fd, &st) < 0) {
                int e = errno;
                snprintf(err, errlen, "from %s: %s", base_path, strerror(e));
                return -e;
        }
        char magic[4] = {0};
        if (pread(s->base_fd, magic, 4, 0) == 4 && memcmp(magic, "QFI\xfb", 4) == 0) {
                snprintf(err, errlen,
                         "from %s: a qcow2 image; a disk's base is a raw image "
                         "(qemu-img convert -O raw)",
                         base_path);
                return -EINVAL;
        }
        if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
                snprintf(err, errlen, "from %s: not a file", base_path);
                return -EINVAL;
        }
        s->base_size = (uint64_t) st.st_size;
        if (*size == 0)
                *size = (s->base_size + DISK_SECTOR - 1) / DISK_SECTOR * DISK_SECTOR;
        if (!(s->base_path = strdup(base_path)))
                return -ENOMEM;
        return 0;
}

int store_open(DiskStore *s, const char *path, uint64_t size, const char *base_path, char *err,
               size_t errlen)
{
        *s = (DiskStore){.fd = -1, .base_fd = -1};
        int r = base_path ? open_base(s, base_path, &size, err, errlen) : 0;
        if (r < 0) {
                store_close(s);
                return r;
        }
        if (size == 0 || size % DISK_SECTOR) {
                snprintf(err, errlen, "size %llu is not a positive number of %u-byte sectors",
                         (unsigned long long) size, DISK_SECTOR);
                store_close(s);
                return -EINVAL;
        }
        s->size = size;
        s->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (s->fd < 0 || ftruncate(s->fd, (off_t) size) < 0) {
                r = -errno;
                snprintf(err, errlen, "%s: %s", path, strerror(-r));
                store_close(s);
                return r;
        }
        if (!base_path) { /* a mapping costs address space only; pages come as they are written */
                void *m = mmap(NULL, (size_t) size, PROT_READ | PROT_WRITE, MAP_SHARED, s->fd, 0);
                s->map = m == MAP_FAILED ? NULL : m;
        }
        if (base_path && !(s->written = calloc(1, (size_t) (size / DISK_SECTOR + 7) / 8))) {
                snprintf(err, errlen, "%s: out of memory", path);
                store_close(s);
                return -ENOMEM;
        }
        return 0;
}

/* Copies the data file's data extents (its holes stay holes). */
static int copy_data(int in, int out, uint64_t size)
{
        uint8_t *buf = malloc(1u << 20);
        if (!buf)
                return -ENOMEM;
        int r = 0;
        off_t pos = 0;
        while (r == 0 && (uint64_t) pos < size) {
                off_t data = lseek(in, pos, SEEK_DATA);
                if (data < 0) {
                        r = errno == ENXIO ? 0 : -errno;
                        break;
                }
                off_t hole = lseek(in, data, SEEK_HOLE);
                if (hole < 0) {
                        r = -errno;
                        break;
                }
                for (off_t o = data; r == 0 && o < hole;) {
                        size_t n =
                            (size_t) (hole - o) < (1u << 20) ? (size_t) (hole - o) : (1u << 20);
                        r = pread_all(in, buf, n, (uint64_t) o);
                        if (r == 0)
                                r = pwrite_all(out, buf, n, (uint64_t) o);
                        o += (off_t) n;
                }
                pos = hole;
        }
        free(buf);
        return r;
}

int store_clone(const DiskStore *src, DiskStore *s, const char *path, char *err, size_t errlen)
{
        int r = store_open(s, path, src->size, src->base_path, err, errlen);
        if (r < 0)
                return r;
        if (src->written)
                memcpy(s->written, src->written, (size_t) (src->size / DISK_SECTOR + 7) / 8);
        r = copy_data(src->fd, s->fd, src->size);
        for (const PendingWrite *p = src->pending; r == 0 && p; p = p->next)
                r = write_settled(s, p->off, p->len, p->data);
        if (r < 0) {
                snprintf(err, errlen, "%s: copying: %s", path, strerror(-r));
                store_close(s);
                (void) unlink(path);
        }
        return r;
}

int store_export(const DiskStore *s, const char *path)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        uint8_t *buf = malloc(1u << 20);
        int r = fd < 0 ? -errno : !buf ? -ENOMEM : 0;
        if (r == 0 && ftruncate(fd, (off_t) s->size) < 0)
                r = -errno;
        static const uint8_t zeros[4096];
        for (uint64_t off = 0; r == 0 && off < s->size; off += 1u << 20) {
                uint32_t n = s->size - off < (1u << 20) ? (uint32_t) (s->size - off) : 1u << 20;
                r = store_read(s, off, n, buf);
                for (uint32_t at = 0; r == 0 && at < n; at += 4096) { /* zeros stay holes */
                        uint32_t k = n - at < 4096 ? n - at : 4096;
                        if (memcmp(buf + at, zeros, k) != 0)
                                r = pwrite_all(fd, buf + at, k, off + at);
                }
        }
        free(buf);
        if (fd >= 0 && close(fd) < 0 && r == 0)
                r = -errno;
        if (r < 0)
                (void) unlink(path);
        return r;
}

void store_close(DiskStore *s)
{
        pending_clear(s);
        if (s->map)
                (void) munmap(s->map, (size_t) s->size);
        if (s->fd >= 0)
                (void) close(s->fd);
        if (s->base_fd >= 0)
                (void) close(s->base_fd);
        free(s->written);
        free(s->base_path);
        *s = (DiskStore){.fd = -1, .base_fd = -1};
}
