/* disk.h: a disk of a test file (disk.c): its bytes (disk_store.h), served to the VM it is
 * attached to as an NBD export on a Unix socket (nbd_server.h; QEMU's NBD client is the
 * virtio-blk disk's backend), its faults (disk_fault.h) and its power-loss mode. Everything
 * happens on the file runner's loop, so a fault made by a call is met by the next request
 * after the call returns.
 *
 * Its phases: DETACHED (no VM; the host may read and write sectors), ATTACHED (a VM's QEMU
 * connects to the socket; power loss happens when that connection ends without NBD_CMD_DISC,
 * as when QEMU is killed), CLOSED (the file ended: files and socket removed). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "disk_fault.h"
#include "disk_store.h" /* DISK_SECTOR */

typedef struct Disk Disk;

typedef struct DiskOptions {
        uint64_t size;         /* bytes, a multiple of 512; 0 with a base: the base's */
        const char *from_path; /* a raw image used copy-on-write, never modified; or NULL */
        const Disk *from_disk; /* a copy of another disk as it reads now; or NULL */
        uint64_t rng_seed;     /* for probabilities, jitter and a partial power loss */
        const char *file_id;   /* names its files in dir (default: the name): disks of two
                                * fixture clones share a name, not their files */
} DiskOptions;

/* Makes the disk's data file and socket in dir (names from name: [A-Za-z0-9_.-], at most 20
 * bytes, not starting with "provium"). NULL with err. Emits disk.create. */
Disk *disk_new(uv_loop_t *loop, const char *name, const char *dir, const DiskOptions *o, char *err,
               size_t errlen);
/* Removes its files and socket; the disk goes once its handles are closed. Emits disk.fault_hit
 * for each fault that was hit and not undone. Accepts NULL. */
void disk_close(Disk *d);

const char *disk_name(const Disk *d);
const char *disk_socket(const Disk *d);
uint64_t disk_size(const Disk *d);
/* The VM it is attached to ("" when none). */
const char *disk_owner(const Disk *d);
/* The data file, for a plain attach (QEMU opens it itself); NULL with err when the disk cannot
 * be used so (a base image, power-loss mode, faults: they live in the NBD server). */
const char *disk_plain_file(Disk *d, char *err, size_t errlen);
/* Bookkeeping of the binding's attach and detach (the VM's side is vm_attach_disk): events
 * disk.attach (hot: after boot; plain) and disk.detach. While attached plain, faults and
 * power-loss mode are refused. */
void disk_attached(Disk *d, const char *vm, bool hot, bool plain);
void disk_detached(Disk *d, bool hot);
/* What its VM tells it (vm.h's VmDiskHooks, disk the Disk). Gone: the QEMU exited, and a VM
 * that did not close the disk lost its power (disk.power_loss in power-loss mode), now rather
 * than when the loop sees the socket close. Saved: the disk as it reads now goes to
 * <state>.disk-<name> (a snapshot's, a fixture's). Restoring: the disk becomes a
 * copy-on-write layer over that file again (nothing when there is none). */
void disk_vm_gone(void *disk);
int disk_vm_saved(void *disk, const char *state);
void disk_vm_restoring(void *disk, const char *state);

/* Sectors from the host: what the guest has written (flushed or not: every write QEMU has
 * sent), and written as if flushed. -errno with err (a range past the end: -EINVAL). */
int disk_read_sectors(Disk *d, uint64_t lba, uint64_t count, uint8_t *out, char *err,
                      size_t errlen);
int disk_write_sectors(Disk *d, uint64_t lba, const uint8_t *data, size_t len, char *err,
                       size_t errlen);

/* A fault from now on (f's id, hits, active ignored). Returns its id, or -errno with err.
 * Emits disk.fault. */
int disk_add_fault(Disk *d, const DiskFault *f, char *err, size_t errlen);
/* Ends fault id (0: every fault: disk:heal()). Emits disk.fault_hit per fault and disk.heal. */
int disk_undo_fault(Disk *d, unsigned id);
/* disk.fault_hit for each fault in effect that was hit, with its hits so far, and disk.draws
 * when it drew since the last (after a test). */
void disk_report_hits(Disk *d);
/* The fault's hits so far, or -1 when there is no such fault. */
int64_t disk_fault_hits(Disk *d, unsigned id);

/* Power-loss mode: writes not flushed wait in memory; a power loss drops each of them with
 * probability drop (1: all). Turning it off flushes them. */
int disk_set_power_loss(Disk *d, bool on, double drop, char *err, size_t errlen);
/* Counts of the last power loss (0, 0 before any). */
void disk_last_power_loss(const Disk *d, uint64_t *dropped, uint64_t *kept);
