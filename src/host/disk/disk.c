/* disk.c: a test file's disk: its store, faults and NBD export (disk.h).
 *
 * Sections: requests from QEMU, the host's sectors, faults, power loss, life. */
#include "disk.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "disk_store.h"
#include "events.h"
#include "nbd_server.h"
#include "nbd_wire.h"

typedef enum DiskPhase { DISK_DETACHED, DISK_ATTACHED, DISK_CLOSED } DiskPhase;

/* A request held back by a slow fault. */
typedef struct Delayed {
        uv_timer_t timer;
        Disk *disk;
        NbdRequest *req;
        int error;
        struct Delayed *prev, *next;
} Delayed;

struct Disk {
        uv_loop_t *loop;
        char *name, *path, *socket;
        char owner[64];
        bool plain; /* attached plain: QEMU has the data file, the server is idle */
        DiskPhase phase;
        DiskStore store;
        FaultList faults;
        DiskRng rng;
        NbdServer *server;
        bool power_loss_mode;
        double drop;
        uint64_t last_dropped, last_kept;
        Delayed *delayed;
        int open_handles; /* delay timers closing */
};

/* ---- requests from QEMU ---- */

static int execute(Disk *d, NbdRequest *r)
{
        bool fua = r->flags & NBD_CMD_FLAG_FUA;
        switch (r->type) {
        case NBD_CMD_READ:
                return store_read(&d->store, r->offset, r->length, r->data);
        case NBD_CMD_WRITE:
                return store_write(&d->store, r->offset, r->length, r->data, fua);
        case NBD_CMD_TRIM:
        case NBD_CMD_WRITE_ZEROES:
                return store_write(&d->store, r->offset, r->length, NULL, fua);
        case NBD_CMD_FLUSH:
                return store_flush(&d->store);
        }
        return -ENOTSUP;
}

static void finish(Disk *d, NbdRequest *r, int error)
{
        const uint8_t *from = !error && r->type == NBD_CMD_READ
                                  ? store_direct_read(&d->store, r->offset, r->length)
                                  : NULL;
        if (from)
                return nbd_request_done_from(r, from);
        if (!error && !r->direct) {
                int e = execute(d, r);
                error = e == -ENOSPC ? ENOSPC : e < 0 ? EIO : 0;
        }
        nbd_request_done(r, error);
}

static void on_delayed_closed(uv_handle_t *h)
{
        Delayed *w = h->data;
        Disk *d = w->disk;
        free(w);
        if (--d->open_handles == 0 && d->phase == DISK_CLOSED)
                free(d);
}

static void delayed_remove(Disk *d, Delayed *w)
{
        if (w->prev)
                w->prev->next = w->next;
        else
                d->delayed = w->next;
        if (w->next)
                w->next->prev = w->prev;
        uv_close((uv_handle_t *) &w->timer, on_delayed_closed);
}

static void on_delay(uv_timer_t *t)
{
        Delayed *w = t->data;
        Disk *d = w->disk;
        NbdRequest *r = w->req;
        int error = w->error;
        delayed_remove(d, w);
        finish(d, r, error);
}

static void hold_back(Disk *d, NbdRequest *r, int error, unsigned ms)
{
        Delayed *w = calloc(1, sizeof *w);
        if (!w || uv_timer_init(d->loop, &w->timer) < 0) {
                free(w);
                finish(d, r, error); /* no memory for the delay: not slow, still right */
                return;
        }
        w->disk = d;
        w->req = r;
        w->error = error;
        w->next = d->delayed;
        w->timer.data = w;
        if (d->delayed)
                d->delayed->prev = w;
        d->delayed = w;
        d->open_handles++;
        uv_update_time(d->loop); /* the delay counts from now, not from the loop's last wake */
        (void) uv_timer_start(&w->timer, on_delay, ms, 0);
}

static void on_request(void *data, NbdRequest *r)
{
        Disk *d = data;
        bool write = r->type != NBD_CMD_READ, flush = r->type == NBD_CMD_FLUSH;
        unsigned ms;
        int error = faults_meet(&d->faults, &d->rng, write, flush, r->offset / DISK_SECTOR,
                                (r->length + DISK_SECTOR - 1) / DISK_SECTOR, &ms);
        if (ms)
                hold_back(d, r, error, ms);
        else
                finish(d, r, error);
}

/* Requests held back when the connection ends: they never completed, so they never happened
 * (their answers would go nowhere). */
static void drop_delayed(Disk *d)
{
        while (d->delayed) {
                Delayed *w = d->delayed;
                NbdRequest *r = w->req;
                delayed_remove(d, w);
                nbd_request_done(r, ESHUTDOWN);
        }
}

static void power_loss(Disk *d);

/* A write may land straight in the data file when nothing could make it fail, wait or be
 * lost (no fault, no power-loss mode, no base image): one copy fewer. */
static uint8_t *write_target(void *data, uint64_t off, uint32_t len)
{
        Disk *d = data;
        return faults_active(&d->faults) ? NULL : store_direct(&d->store, off, len);
}

static void on_client(void *data, bool up, bool clean)
{
        Disk *d = data;
        if (up)
                return;
        if (!clean)
                drop_delayed(d);
        if (!clean && d->power_loss_mode)
                power_loss(d);
}

/* ---- the host's sectors ---- */

static int check_range(const Disk *d, const char *what, uint64_t lba, uint64_t count, char *err,
                       size_t errlen)
{
        uint64_t sectors = d->store.size / DISK_SECTOR;
        if (lba <= sectors && count <= sectors - lba && count <= (NBD_MAX_REQUEST / DISK_SECTOR))
                return 0;
        snprintf(err, errlen,
                 "disk %s: %s: sectors %llu..%llu are not on the disk (%llu sectors of %u "
                 "bytes%s)",
                 d->name, what, (unsigned long long) lba, (unsigned long long) (lba + count),
                 (unsigned long long) sectors, DISK_SECTOR,
                 count > NBD_MAX_REQUEST / DISK_SECTOR ? "; at most 32 MiB at a time" : "");
        return -EINVAL;
}

int disk_read_sectors(Disk *d, uint64_t lba, uint64_t count, uint8_t *out, char *err, size_t errlen)
{
        int r = check_range(d, "read_sectors", lba, count, err, errlen);
        if (r == 0 && (r = store_read(&d->store, lba * DISK_SECTOR,
                                      (uint32_t) (count * DISK_SECTOR), out)) < 0)
                snprintf(err, errlen, "disk %s: read_sectors: %s", d->name, strerror(-r));
        return r;
}

int disk_write_sectors(Disk *d, uint64_t lba, const uint8_t *data, size_t len, char *err,
                       size_t errlen)
{
        if (len == 0 || len % DISK_SECTOR) {
                snprintf(err, errlen,
                         "disk %s: write_sectors: %zu bytes is not a whole number of %u-byte "
                         "sectors",
                         d->name, len, DISK_SECTOR);
                return -EINVAL;
        }
        int r = check_range(d, "write_sectors", lba, len / DISK_SECTOR, err, errlen);
        if (r == 0 && (r = store_write(&d->store, lba * DISK_SECTOR, len, data, true)) < 0)
                snprintf(err, errlen, "disk %s: write_sectors: %s", d->name, strerror(-r));
        return r;
}

/* ---- faults ---- */

static void emit_fault(const Disk *d, const DiskFault *f)
{
        EventBuilder ev;
        event_begin(&ev, "disk.fault", 10);
        proto_kv_str(&ev.w, "disk", d->name);
        proto_kv_uint(&ev.w, "fault", f->id);
        proto_kv_str(&ev.w, "kind", fault_kind_name(f->kind));
        proto_kv_uint(&ev.w, "lba", f->lba);
        proto_kv_uint(&ev.w, "count", f->count);
        proto_kv_str(&ev.w, "errno", f->kind == FAULT_SLOW ? "" : fault_errno_name(f->error));
        proto_kv_int(&ev.w, "times", f->times);
        proto_kv_double(&ev.w, "probability", f->probability);
        proto_kv_uint(&ev.w, "ms", f->ms);
        proto_kv_uint(&ev.w, "jitter_ms", f->jitter_ms);
        event_end(&ev);
}

static void emit_hits(const Disk *d, const DiskFault *f)
{
        EventBuilder ev;
        event_begin(&ev, "disk.fault_hit", 4);
        proto_kv_str(&ev.w, "disk", d->name);
        proto_kv_uint(&ev.w, "fault", f->id);
        proto_kv_str(&ev.w, "kind", fault_kind_name(f->kind));
        proto_kv_uint(&ev.w, "hits", f->hits);
        event_end(&ev);
}

int disk_add_fault(Disk *d, const DiskFault *f, char *err, size_t errlen)
{
        uint64_t sectors = d->store.size / DISK_SECTOR;
        if (d->plain) {
                snprintf(err, errlen,
                         "disk %s: %s: attached plain to vm %s (QEMU reads its file "
                         "itself): no faults",
                         d->name, fault_kind_name(f->kind), d->owner);
                return -EINVAL;
        }
        if (f->count && (f->lba >= sectors || f->count > sectors - f->lba)) {
                snprintf(err, errlen,
                         "disk %s: %s: sectors %llu..%llu are not on the disk (%llu sectors)",
                         d->name, fault_kind_name(f->kind), (unsigned long long) f->lba,
                         (unsigned long long) (f->lba + f->count), (unsigned long long) sectors);
                return -EINVAL;
        }
        DiskFault *n = faults_add(&d->faults, f);
        if (!n) {
                snprintf(err, errlen, "disk %s: %s: out of memory", d->name,
                         fault_kind_name(f->kind));
                return -ENOMEM;
        }
        emit_fault(d, n);
        return (int) n->id;
}

int disk_undo_fault(Disk *d, unsigned id)
{
        unsigned ended = 0;
        for (DiskFault *f = d->faults.head; f; f = f->next) {
                if ((id && f->id != id) || f->reported)
                        continue;
                emit_hits(d, f);
                f->active = false;
                f->reported = true;
                ended++;
        }
        EventBuilder ev;
        event_begin(&ev, "disk.heal", 3);
        proto_kv_str(&ev.w, "disk", d->name);
        proto_kv_uint(&ev.w, "fault", id);
        proto_kv_uint(&ev.w, "ended", ended);
        event_end(&ev);
        return 0;
}

/* disk.draws: how many random draws the disk made so far, and the top bytes of its first ones
 * (a pure function of its rng_seed: two runs with one seed agree on those both reached). */
static void emit_draws(Disk *d)
{
        DiskRng *r = &d->rng;
        char first[2 * DISK_RNG_FIRST + 1];
        size_t n = r->draws < DISK_RNG_FIRST ? (size_t) r->draws : DISK_RNG_FIRST;
        for (size_t i = 0; i < n; i++)
                snprintf(first + 2 * i, 3, "%02x", r->first[i]);
        first[2 * n] = '\0';
        EventBuilder ev;
        event_begin(&ev, "disk.draws", 3);
        proto_kv_str(&ev.w, "disk", d->name);
        proto_kv_uint(&ev.w, "draws", r->draws);
        proto_kv_str(&ev.w, "first", first);
        event_end(&ev);
        r->reported = r->draws;
}

void disk_report_hits(Disk *d)
{
        for (DiskFault *f = d->faults.head; f; f = f->next)
                if (!f->reported && f->hits) {
                        emit_hits(d, f);
                        f->reported = !f->active; /* a spent one is done; one in effect goes on */
                }
        if (d->rng.draws > d->rng.reported)
                emit_draws(d);
}

int64_t disk_fault_hits(Disk *d, unsigned id)
{
        DiskFault *f = faults_find(&d->faults, id);
        return f ? (int64_t) f->hits : -1;
}

/* ---- power loss ---- */

int disk_set_power_loss(Disk *d, bool on, double drop, char *err, size_t errlen)
{
        if (d->plain && on) {
                snprintf(err, errlen,
                         "disk %s: power_loss_mode: attached plain to vm %s: no power loss",
                         d->name, d->owner);
                return -EINVAL;
        }
        if (!(drop > 0 && drop <= 1)) {
                snprintf(err, errlen, "disk %s: power_loss: drop must be in (0, 1], got %g",
                         d->name, drop);
                return -EINVAL;
        }
        int r = store_set_volatile(&d->store, on);
        if (r < 0) {
                snprintf(err, errlen, "disk %s: power_loss: flushing: %s", d->name, strerror(-r));
                return r;
        }
        d->power_loss_mode = on;
        d->drop = drop;
        return 0;
}

/* The VM went away without closing the disk: what it had not flushed is lost. */
static void power_loss(Disk *d)
{
        uint64_t pending = d->store.npending;
        int r = store_power_loss(&d->store, d->drop, disk_rng_next, &d->rng, &d->last_dropped,
                                 &d->last_kept);
        EventBuilder ev;
        event_begin(&ev, "disk.power_loss", 6);
        proto_kv_str(&ev.w, "disk", d->name);
        proto_kv_str(&ev.w, "vm", d->owner);
        proto_kv_uint(&ev.w, "pending", pending);
        proto_kv_uint(&ev.w, "dropped", d->last_dropped);
        proto_kv_uint(&ev.w, "kept", d->last_kept);
        proto_kv_str(&ev.w, "error", r < 0 ? strerror(-r) : "");
        event_end(&ev);
}

void disk_last_power_loss(const Disk *d, uint64_t *dropped, uint64_t *kept)
{
        *dropped = d->last_dropped;
        *kept = d->last_kept;
}

/* ---- life ---- */

static bool name_ok(const char *name)
{
        size_t n = strlen(name);
        if (n == 0 || n > 20 || strncmp(name, "provium", 7) == 0)
                return false;
        return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") ==
               n;
}

static void emit_create(const Disk *d, const DiskOptions *o)
{
        EventBuilder ev;
        event_begin(&ev, "disk.create", 4);
        proto_kv_str(&ev.w, "disk", d->name);
        proto_kv_uint(&ev.w, "size", d->store.size);
        proto_kv_str(&ev.w, "from",
                     o->from_path   ? o->from_path
                     : o->from_disk ? o->from_disk->name
                                    : "");
        proto_kv_str(&ev.w, "path", d->path);
        event_end(&ev);
}

Disk *disk_new(uv_loop_t *loop, const char *name, const char *dir, const DiskOptions *o, char *err,
               size_t errlen)
{
        if (!name_ok(name)) {
                snprintf(err, errlen,
                         "disk %s: a disk's name is 1 to 20 of A-Z a-z 0-9 _ . - (the guest's "
                         "serial), not starting with \"provium\"",
                         name);
                return NULL;
        }
        Disk *d = calloc(1, sizeof *d);
        if (!d || !(d->name = strdup(name)) ||
            asprintf(&d->path, "%s/disk-%s.img", dir, o->file_id ? o->file_id : name) < 0 ||
            asprintf(&d->socket, "%s/disk-%s.sock", dir, o->file_id ? o->file_id : name) < 0) {
                if (d) {
                        free(d->name);
                        free(d);
                }
                snprintf(err, errlen, "disk %s: out of memory", name);
                return NULL;
        }
        d->loop = loop;
        d->rng.state = o->rng_seed;
        d->drop = 1;
        char why[512];
        int r = o->from_disk
                    ? store_clone(&o->from_disk->store, &d->store, d->path, why, sizeof why)
                    : store_open(&d->store, d->path, o->size, o->from_path, why, sizeof why);
        if (r < 0) {
                snprintf(err, errlen, "disk %s: %s", name, why);
                free(d->name);
                free(d->path);
                free(d->socket);
                free(d);
                return NULL;
        }
        static const NbdServerOps ops = {
            .request = on_request, .client = on_client, .write_target = write_target};
        d->server = nbd_server_new(loop, d->socket, name, d->store.size, &ops, d, why, sizeof why);
        if (!d->server) {
                snprintf(err, errlen, "disk %s: %s", name, why);
                store_close(&d->store);
                (void) unlink(d->path);
                free(d->name);
                free(d->path);
                free(d->socket);
                free(d);
                return NULL;
        }
        emit_create(d, o);
        return d;
}

void disk_close(Disk *d)
{
        if (!d || d->phase == DISK_CLOSED)
                return;
        for (DiskFault *f = d->faults.head; f; f = f->next)
                if (!f->reported && f->hits)
                        emit_hits(d, f);
        drop_delayed(d);
        d->phase = DISK_CLOSED;
        nbd_server_close(d->server);
        d->server = NULL;
        store_close(&d->store);
        (void) unlink(d->path);
        faults_free(&d->faults);
        free(d->name);
        free(d->path);
        free(d->socket);
        d->name = d->path = d->socket = NULL;
        if (d->open_handles == 0)
                free(d);
}

const char *disk_name(const Disk *d)
{
        return d->name;
}

const char *disk_socket(const Disk *d)
{
        return d->socket;
}

uint64_t disk_size(const Disk *d)
{
        return d->store.size;
}

const char *disk_owner(const Disk *d)
{
        return d->owner;
}

static void emit_link(const Disk *d, const char *type, bool hot)
{
        EventBuilder ev;
        event_begin(&ev, type, 3);
        proto_kv_str(&ev.w, "disk", d->name);
        proto_kv_str(&ev.w, "vm", d->owner);
        proto_kv_bool(&ev.w, "hot", hot);
        event_end(&ev);
}

const char *disk_plain_file(Disk *d, char *err, size_t errlen)
{
        const char *why = d->store.base_fd >= 0       ? "it has a base image (from)"
                          : d->power_loss_mode        ? "it is in power-loss mode"
                          : faults_active(&d->faults) ? "it has faults"
                                                      : NULL;
        if (why) {
                snprintf(err, errlen, "disk %s: attach plain: %s, which needs the NBD server",
                         d->name, why);
                return NULL;
        }
        return d->path;
}

void disk_attached(Disk *d, const char *vm, bool hot, bool plain)
{
        snprintf(d->owner, sizeof d->owner, "%s", vm);
        d->phase = DISK_ATTACHED;
        d->plain = plain;
        EventBuilder ev;
        event_begin(&ev, "disk.attach", 4);
        proto_kv_str(&ev.w, "disk", d->name);
        proto_kv_str(&ev.w, "vm", d->owner);
        proto_kv_bool(&ev.w, "hot", hot);
        proto_kv_bool(&ev.w, "plain", plain);
        event_end(&ev);
}

void disk_detached(Disk *d, bool hot)
{
        emit_link(d, "disk.detach", hot);
        d->owner[0] = 0;
        d->plain = false;
        d->phase = DISK_DETACHED;
}

void disk_vm_gone(void *disk)
{
        Disk *d = disk;
        if (d->server)
                nbd_server_client_gone(d->server);
}

static char *saved_path(const Disk *d, const char *state)
{
        char *p = NULL;
        return asprintf(&p, "%s.disk-%s", state, d->name) < 0 ? NULL : p;
}

int disk_vm_saved(void *disk, const char *state)
{
        Disk *d = disk;
        char *path = saved_path(d, state);
        int r = path ? store_export(&d->store, path) : -ENOMEM;
        free(path);
        return r;
}

void disk_vm_restoring(void *disk, const char *state)
{
        Disk *d = disk;
        char *path = saved_path(d, state);
        if (!path || access(path, R_OK) < 0) {
                free(path);
                return; /* attached after that save: it keeps its bytes */
        }
        DiskStore fresh;
        char why[512];
        char *next = NULL;
        int r = asprintf(&next, "%s.next", d->path) < 0 ? -ENOMEM : 0;
        if (r == 0)
                r = store_open(&fresh, next, d->store.size, path, why, sizeof why);
        if (r == 0 && rename(next, d->path) < 0) {
                r = -errno;
                snprintf(why, sizeof why, "%s: %s", d->path, strerror(-r));
                store_close(&fresh);
                (void) unlink(next);
        }
        if (r < 0) {
                fprintf(stderr, "provium: disk %s: restore: %s\n", d->name,
                        r == -ENOMEM ? strerror(ENOMEM) : why);
        } else {
                bool volatile_writes = d->store.volatile_writes;
                store_close(&d->store);
                d->store = fresh;
                d->store.volatile_writes = volatile_writes;
        }
        free(next);
        free(path);
}
