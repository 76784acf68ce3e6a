/* disk_fault.c: a disk's faults, and the requests that meet them (disk_fault.h). */
#include "disk_fault.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

double disk_rng_next(void *rng)
{
        DiskRng *r = rng;
        uint64_t z = (r->state += UINT64_C(0x9e3779b97f4a7c15));
        z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
        z ^= z >> 31;
        if (r->draws < DISK_RNG_FIRST)
                r->first[r->draws] = (uint8_t) (z >> 56);
        r->draws++;
        return (double) (z >> 11) / (double) (UINT64_C(1) << 53);
}

DiskFault *faults_add(FaultList *l, const DiskFault *f)
{
        DiskFault *n = malloc(sizeof *n);
        if (!n)
                return NULL;
        *n = *f;
        n->id = ++l->next_id;
        n->hits = 0;
        n->active = true;
        n->reported = false;
        n->next = NULL;
        if (l->tail)
                l->tail->next = n;
        else
                l->head = n;
        l->tail = n;
        return n;
}

DiskFault *faults_find(FaultList *l, unsigned id)
{
        for (DiskFault *f = l->head; f; f = f->next)
                if (f->id == id)
                        return f;
        return NULL;
}

static bool overlaps(const DiskFault *f, bool flush, uint64_t lba, uint64_t count)
{
        if (f->count == 0)
                return true;
        if (flush)
                return false;
        return lba < f->lba + f->count && f->lba < lba + count;
}

static bool kind_meets(const DiskFault *f, bool write)
{
        switch (f->kind) {
        case FAULT_EIO_READ:
                return !write;
        case FAULT_EIO_WRITE:
                return write;
        case FAULT_SLOW:
                return f->ops & (write ? FAULT_OPS_WRITE : FAULT_OPS_READ);
        }
        return false;
}

int faults_meet(FaultList *l, DiskRng *rng, bool write, bool flush, uint64_t lba, uint64_t count,
                unsigned *delay_ms)
{
        int error = 0;
        *delay_ms = 0;
        for (DiskFault *f = l->head; f; f = f->next) {
                if (!f->active || !kind_meets(f, write) || !overlaps(f, flush, lba, count))
                        continue;
                if (f->kind == FAULT_SLOW) {
                        unsigned ms = f->ms;
                        if (f->jitter_ms)
                                ms += (unsigned) (disk_rng_next(rng) * (f->jitter_ms + 1));
                        if (ms > *delay_ms)
                                *delay_ms = ms;
                        f->hits++;
                        continue;
                }
                if (error)
                        continue;
                if (f->probability < 1 && disk_rng_next(rng) >= f->probability)
                        continue;
                error = f->error;
                f->hits++;
                if (f->times > 0 && --f->times == 0)
                        f->active = false;
        }
        return error;
}

unsigned faults_active(const FaultList *l)
{
        unsigned n = 0;
        for (const DiskFault *f = l->head; f; f = f->next)
                n += f->active;
        return n;
}

void faults_free(FaultList *l)
{
        for (DiskFault *f = l->head, *next; f; f = next) {
                next = f->next;
                free(f);
        }
        *l = (FaultList){0};
}

static const struct {
        const char *name;
        int error;
} errnos[] = {
    {"EIO", EIO},       {"ENOSPC", ENOSPC},       {"EPERM", EPERM},     {"ENOMEM", ENOMEM},
    {"EINVAL", EINVAL}, {"EOVERFLOW", EOVERFLOW}, {"ENOTSUP", ENOTSUP},
};

int fault_errno(const char *name)
{
        for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
                if (strcmp(errnos[i].name, name) == 0)
                        return errnos[i].error;
        return 0;
}

const char *fault_errno_name(int error)
{
        for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
                if (errnos[i].error == error)
                        return errnos[i].name;
        return "?";
}

const char *fault_kind_name(FaultKind k)
{
        return k == FAULT_EIO_READ ? "eio_read" : k == FAULT_EIO_WRITE ? "eio_write" : "slow";
}
