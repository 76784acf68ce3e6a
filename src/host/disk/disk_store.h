/* disk_store.h: a disk's bytes (disk_store.c): a sparse data file in the run directory, over
 * an optional read-only base image (`from = path`: sectors not written yet come from it, so it
 * is never modified), and, while the disk is in power-loss mode, the writes not flushed yet:
 * they are kept in memory, in order, seen by every read, written to the data file at the next
 * flush, and on a power loss dropped (all, or a seeded share) so that the data file holds what
 * a disk that lost its power would. Offsets and lengths are in bytes, checked by the caller. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DISK_SECTOR 512u

typedef struct PendingWrite PendingWrite;

typedef struct DiskStore {
        int fd;               /* the data file, read-write */
        int base_fd;          /* the base image, read-only; -1: none */
        char *base_path;      /* its path, for clones */
        uint64_t size;        /* bytes */
        uint64_t base_size;   /* the base's bytes (past them it reads as zeros) */
        uint8_t *written;     /* with a base: a bit per sector, set once it is in the data file */
        bool volatile_writes; /* power-loss mode: writes wait in memory for a flush */
        PendingWrite *pending, *pending_tail;
        uint64_t npending, pending_bytes;
        uint8_t *map; /* the data file mapped (no base): where writes can land straight */
} DiskStore;

/* Most bytes of writes waiting for a flush; past it a write fails with ENOSPC. */
#define DISK_PENDING_MAX (512ull << 20)

/* Creates the data file at path (it must not exist) of size bytes, over base_path when not
 * NULL (a raw image, size 0: the base's size rounded up to a sector). Returns 0, or -errno
 * with err naming the file and the reason. */
int store_open(DiskStore *s, const char *path, uint64_t size, const char *base_path, char *err,
               size_t errlen);
/* A copy of src as it reads now (its base shared, its pending writes in the data file). */
int store_clone(const DiskStore *src, DiskStore *s, const char *path, char *err, size_t errlen);
void store_close(DiskStore *s);
/* Writes the disk as it reads now (base, data, pending writes) to a new sparse raw file at
 * path: a snapshot's copy, a fixture's. Returns 0 or -errno (path removed). */
int store_export(const DiskStore *s, const char *path);

int store_read(const DiskStore *s, uint64_t off, uint32_t len, uint8_t *out);
/* Where a write of [off, off + len) may be put straight (the data file's mapping), or NULL when
 * it must go through store_write (a base image, writes waiting for a flush). */
uint8_t *store_direct(DiskStore *s, uint64_t off, uint64_t len);
/* The same for a read, when [off, off + len) is all data in the file: a hole read through the
 * mapping would take memory for its zeros. */
const uint8_t *store_direct_read(DiskStore *s, uint64_t off, uint64_t len);
/* data NULL: zeros. durable: written now even in power-loss mode (FUA, the host's writes). */
int store_write(DiskStore *s, uint64_t off, uint64_t len, const uint8_t *data, bool durable);
/* Everything pending goes to the data file. */
int store_flush(DiskStore *s);
/* Power-loss mode on or off (off flushes first). */
int store_set_volatile(DiskStore *s, bool on);

/* Drops writes not flushed: each with probability drop (1: all), drawn by next_random, which
 * returns doubles in [0, 1); the rest go to the data file in their order. Counts both. */
int store_power_loss(DiskStore *s, double drop, double (*next_random)(void *), void *rng,
                     uint64_t *ret_dropped, uint64_t *ret_kept);
