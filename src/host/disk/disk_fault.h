/* disk_fault.h: the faults of one disk (disk_fault.c), and which of them a request meets.
 *
 * An I/O error fault fails the requests of its kind (reads; or writes, write-zeroes, trims
 * and flushes) that touch its range of sectors (count 0: the whole disk; a flush touches the
 * whole disk) with its errno; `times` limits it to the next n such requests, `probability`
 * to a share of them, drawn from the disk's seeded generator so that the same requests fail
 * again for the same seed. A slow fault delays the requests of its ops by ms plus a jitter
 * drawn the same way. Faults are met in the order they were made; the first error wins, and
 * the largest delay. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef enum FaultKind { FAULT_EIO_READ, FAULT_EIO_WRITE, FAULT_SLOW } FaultKind;

enum { FAULT_OPS_READ = 1, FAULT_OPS_WRITE = 2 };

typedef struct DiskFault {
        unsigned id;
        FaultKind kind;
        uint64_t lba, count; /* sectors; count 0: the whole disk */
        int error;           /* an errno the transport carries */
        int64_t times;       /* requests it may still fail; -1: no limit */
        double probability;  /* of failing a request it meets, (0, 1] */
        unsigned ms, jitter_ms;
        unsigned ops; /* FAULT_OPS_* (slow) */
        uint64_t hits;
        bool active;   /* false once undone, or spent (times reached 0) */
        bool reported; /* its disk.fault_hit went out (undone, healed) */
        struct DiskFault *next;
} DiskFault;

#define DISK_RNG_FIRST 32 /* draws whose top bytes are kept, for --check-determinism */

/* splitmix64: small, and the same sequence for the same seed everywhere. It counts its draws
 * and keeps the top byte of the first few (disk.draws). */
typedef struct DiskRng {
        uint64_t state;
        uint64_t draws, reported; /* draws made; as many as the last disk.draws said */
        uint8_t first[DISK_RNG_FIRST];
} DiskRng;

double disk_rng_next(void *rng); /* [0, 1) */

typedef struct FaultList {
        DiskFault *head, *tail;
        unsigned next_id;
} FaultList;

/* Adds a copy of f (id, hits, active and next set here). Returns it, or NULL (no memory). */
DiskFault *faults_add(FaultList *l, const DiskFault *f);
DiskFault *faults_find(FaultList *l, unsigned id);
/* What a request of write (else read) or flush over sectors [lba, lba + count) meets: returns
 * the errno to fail it with (0: none) and sets *delay_ms. Counts hits and spends `times`. */
int faults_meet(FaultList *l, DiskRng *rng, bool write, bool flush, uint64_t lba, uint64_t count,
                unsigned *delay_ms);
/* The faults still active. */
unsigned faults_active(const FaultList *l);
void faults_free(FaultList *l);

/* "EIO" -> EIO, for the errnos a disk fault may carry (NBD's: EIO, ENOSPC, EPERM, ENOMEM,
 * EINVAL, EOVERFLOW, ENOTSUP); 0 for any other name. */
int fault_errno(const char *name);
const char *fault_errno_name(int error);
const char *fault_kind_name(FaultKind k);
