/* vm_snapshot.c: saving a running VM: its device state through QEMU migration into a file, and
 * its RAM, which lives in a file of its own (see argv_add_ram in vm.c), copied sparsely
 * (vm_ram_copy.c).
 *
 * With the x-ignore-shared capability QEMU leaves a share=on RAM block out of the stream, so a
 * save writes a few hundred KB however large the guest is. A VM running on a copy-on-write
 * mapping of a saved file (after a restore) has share=off RAM, which the stream carries.
 *
 * Sections: the save, snapshots.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "events.h"
#include "fdio.h"
#include "vm_internal.h"

#define SAVE_POLL_MS    2
#define SAVE_TIMEOUT_MS 120000

/* ---- the save ---- */

typedef struct Save {
        Vm *vm;
        char *state_path, *ram_copy, *sock_path;
        bool resume;
        VmSaveFn cb;
        void *data;
        int fd;            /* the state file */
        uv_pipe_t *server; /* QEMU connects here to send the stream */
        uv_pipe_t *conn;
        uv_timer_t *poll; /* query-migrate until it says completed */
        int handles;      /* still to close before the Save is freed */
        bool stream_done, migrate_done, finished;
        bool stopped; /* the save stopped the guest: a failure resumes it */
        uint64_t started_ns, state_bytes, ram_bytes, deadline_ns;
} Save;

static void save_free(Save *s)
{
        free(s->state_path);
        free(s->ram_copy);
        free(s->sock_path);
        free(s);
}

static void on_save_handle_closed(uv_handle_t *h)
{
        Save *s = h->data;
        free(h);
        if (--s->handles == 0 && s->finished)
                save_free(s);
}

static void save_close(Save *s, uv_handle_t *h)
{
        if (h && !uv_is_closing(h))
                uv_close(h, on_save_handle_closed);
}

static void emit_snapshot(Save *s, int status, const char *msg)
{
        EventBuilder ev;
        event_begin(&ev, "vm.snapshot", 7);
        proto_kv_str(&ev.w, "vm", s->vm->name);
        proto_kv_str(&ev.w, "path", s->state_path);
        proto_kv_bool(&ev.w, "ok", status == 0);
        proto_kv_uint(&ev.w, "duration_ns", events_mono_ns() - s->started_ns);
        proto_kv_uint(&ev.w, "state_bytes", s->state_bytes);
        proto_kv_uint(&ev.w, "ram_bytes", s->ram_bytes);
        proto_kv_str(&ev.w, "error", msg ? msg : "");
        event_end(&ev);
}

static void save_finish(Save *s, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends the save once: reports, then frees when its handles have closed. */
static void save_finish(Save *s, int status, const char *fmt, ...)
{
        if (s->finished)
                return;
        s->finished = true;
        char msg[1024] = "";
        if (status < 0) {
                int n = snprintf(msg, sizeof msg, "vm %s: snapshot: ", s->vm->name);
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(msg + n, sizeof msg - (size_t) n, fmt, ap);
                va_end(ap);
                (void) unlink(s->state_path);
                if (s->stopped && s->resume && s->vm->qmp)
                        (void) qmp_execute(s->vm->qmp, "cont", NULL, NULL, NULL);
        }
        if (s->fd >= 0)
                (void) close(s->fd);
        s->fd = -1;
        save_close(s, (uv_handle_t *) s->conn);
        save_close(s, (uv_handle_t *) s->server);
        save_close(s, (uv_handle_t *) s->poll);
        (void) unlink(s->sock_path);
        if (s->vm->phase == PHASE_SAVING)
                vm_enter(s->vm, PHASE_RUNNING);
        emit_snapshot(s, status, status < 0 ? msg : NULL);
        if (s->cb)
                s->cb(s->vm, status, status < 0 ? msg : NULL, s->data);
        if (s->handles == 0)
                save_free(s);
}

static void on_resumed(void *data, int status, json_t *result)
{
        Save *s = data;
        if (status < 0)
                return save_finish(s, -EIO, "cont: %s", qmp_error_text(status, result));
        save_finish(s, 0, NULL);
}

/* Stream written and migration completed: the guest is stopped, its RAM file quiet. */
static void save_complete(Save *s)
{
        if (!s->stream_done || !s->migrate_done || s->finished)
                return;
        int r = close(s->fd) < 0 ? -errno : 0;
        s->fd = -1;
        if (r < 0)
                return save_finish(s, r, "writing %s: %s", s->state_path, strerror(-r));
        if (s->ram_copy && (r = vm_copy_sparse(s->vm->ram_path, s->ram_copy, &s->ram_bytes)) < 0)
                return save_finish(s, r, "copying RAM %s to %s: %s", s->vm->ram_path, s->ram_copy,
                                   strerror(-r));
        char why[512];
        if ((r = vm_disks_saved(s->vm, s->state_path, why, sizeof why)) < 0)
                return save_finish(s, r, "%s", why);
        if (!s->resume)
                return save_finish(s, 0, NULL);
        if (!s->vm->qmp || qmp_execute(s->vm->qmp, "cont", NULL, on_resumed, s) < 0)
                save_finish(s, -EIO, "cont: QMP connection lost");
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
        static char scratch[256 * 1024];
        *buf = uv_buf_init(scratch, sizeof scratch);
}

static void on_stream_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
        Save *s = st->data;
        if (s->finished)
                return;
        if (n > 0) {
                int r = fd_write_all(s->fd, buf->base, (size_t) n);
                if (r < 0)
                        return save_finish(s, r, "writing %s: %s", s->state_path, strerror(-r));
                s->state_bytes += (uint64_t) n;
        } else if (n == UV_EOF) {
                s->stream_done = true;
                save_complete(s);
        } else if (n < 0)
                save_finish(s, (int) n, "reading the migration stream: %s", uv_strerror((int) n));
}

static void on_stream_connection(uv_stream_t *server, int status)
{
        Save *s = server->data;
        if (s->finished || s->conn)
                return;
        s->conn = calloc(1, sizeof *s->conn);
        if (!s->conn)
                return save_finish(s, -ENOMEM, "out of memory");
        int r = status < 0 ? status : uv_pipe_init(s->vm->loop, s->conn, 0);
        if (r < 0) {
                free(s->conn);
                s->conn = NULL;
                return save_finish(s, r, "accepting QEMU's stream: %s", uv_strerror(r));
        }
        s->conn->data = s;
        s->handles++;
        r = uv_accept(server, (uv_stream_t *) s->conn);
        if (r == 0)
                r = uv_read_start((uv_stream_t *) s->conn, alloc_cb, on_stream_read);
        if (r < 0)
                save_finish(s, r, "accepting QEMU's stream: %s", uv_strerror(r));
}

static void on_poll_timer(uv_timer_t *t);

static void on_query_migrate(void *data, int status, json_t *result)
{
        Save *s = data;
        if (s->finished)
                return;
        if (status < 0)
                return save_finish(s, -EIO, "query-migrate: %s", qmp_error_text(status, result));
        const char *st = json_string_value(json_object_get(result, "status"));
        if (st && strcmp(st, "completed") == 0) {
                s->migrate_done = true;
                return save_complete(s);
        }
        if (st && (strcmp(st, "failed") == 0 || strcmp(st, "cancelled") == 0)) {
                json_t *d = json_object_get(result, "error-desc");
                return save_finish(s, -EIO, "migration %s: %s", st,
                                   json_is_string(d) ? json_string_value(d) : "no reason given");
        }
        if (events_mono_ns() > s->deadline_ns) {
                if (s->vm->qmp)
                        (void) qmp_execute(s->vm->qmp, "migrate_cancel", NULL, NULL, NULL);
                return save_finish(s, -ETIMEDOUT, "timed out (migration %s)", st ? st : "?");
        }
        (void) uv_timer_start(s->poll, on_poll_timer, SAVE_POLL_MS, 0);
}

static void on_poll_timer(uv_timer_t *t)
{
        Save *s = t->data;
        if (!s->finished && (!s->vm->qmp || qmp_execute(s->vm->qmp, "query-migrate", NULL,
                                                        on_query_migrate, s) < 0))
                save_finish(s, -EIO, "query-migrate: QMP connection lost");
}

static void on_migrate(void *data, int status, json_t *result)
{
        Save *s = data;
        if (s->finished)
                return;
        if (status < 0)
                return save_finish(s, -EIO, "migrate: %s", qmp_error_text(status, result));
        on_poll_timer(s->poll);
}

static void on_caps(void *data, int status, json_t *result)
{
        Save *s = data;
        if (s->finished)
                return;
        if (status < 0)
                return save_finish(s, -EIO, "migrate-set-capabilities: %s",
                                   qmp_error_text(status, result));
        char uri[4200];
        snprintf(uri, sizeof uri, "unix:%s", s->sock_path);
        json_t *args = json_pack("{s:s}", "uri", uri);
        if (!args || qmp_execute(s->vm->qmp, "migrate", args, on_migrate, s) < 0)
                save_finish(s, -EIO, "migrate: QMP connection lost");
}

/* The guest is stopped for the whole save: nothing changes under the migration, so it needs
 * no dirty-page tracking. Live migration of a busy TCG guest whose RAM is a private file
 * mapping lost pages here under load (guest panics after the restore). */
static void on_stopped(void *data, int status, json_t *result)
{
        Save *s = data;
        if (s->finished)
                return;
        if (status < 0)
                return save_finish(s, -EIO, "stop: %s", qmp_error_text(status, result));
        s->stopped = true;
        /* Only a shared RAM file stays out of the stream; a copy-on-write one goes in, and the
         * loading side must then have the capability off too. */
        json_t *args = vm_ignore_shared_args(s->vm->ram_shared ? 1 : 0);
        if (!args || !s->vm->qmp ||
            qmp_execute(s->vm->qmp, "migrate-set-capabilities", args, on_caps, s) < 0)
                save_finish(s, -EIO, "migrate-set-capabilities: QMP connection lost");
}

static int save_listen(Save *s)
{
        s->server = calloc(1, sizeof *s->server);
        s->poll = calloc(1, sizeof *s->poll);
        if (!s->server || !s->poll) {
                free(s->server);
                free(s->poll);
                s->server = NULL;
                s->poll = NULL;
                return -ENOMEM;
        }
        int r = uv_pipe_init(s->vm->loop, s->server, 0);
        if (r < 0) {
                free(s->server);
                s->server = NULL;
        } else {
                s->server->data = s;
                s->handles++;
        }
        int t = uv_timer_init(s->vm->loop, s->poll);
        if (t < 0) {
                free(s->poll);
                s->poll = NULL;
        } else {
                s->poll->data = s;
                s->handles++;
        }
        if (r < 0 || t < 0)
                return r < 0 ? r : t;
        (void) unlink(s->sock_path);
        r = uv_pipe_bind(s->server, s->sock_path);
        if (r == 0)
                r = uv_listen((uv_stream_t *) s->server, 1, on_stream_connection);
        return r;
}

int vm_save(Vm *vm, const VmSaveOptions *o, VmSaveFn cb, void *data, char *err, size_t errlen)
{
        if (vm->phase != PHASE_RUNNING || !vm->qmp) {
                snprintf(err, errlen, "vm %s: snapshot: the VM is %s%s", vm->name,
                         vm->phase == PHASE_SAVING ? "saving a snapshot already"
                                                   : vm_state_name(vm_state(vm)),
                         vm->phase == PHASE_PAUSED ? " (resume it first)" : "");
                return -EBUSY;
        }
        Save *s = calloc(1, sizeof *s);
        if (!s)
                goto oom;
        *s = (Save){.vm = vm, .resume = o->resume, .cb = cb, .data = data, .fd = -1};
        s->started_ns = events_mono_ns();
        s->deadline_ns = s->started_ns + SAVE_TIMEOUT_MS * 1000000ull;
        s->state_path = strdup(o->state_path);
        s->ram_copy = o->ram_copy_path ? strdup(o->ram_copy_path) : NULL;
        if (asprintf(&s->sock_path, "%s/mig.sock", vm->dir) < 0)
                s->sock_path = NULL;
        if (!s->state_path || !s->sock_path || (o->ram_copy_path && !s->ram_copy))
                goto oom;
        s->fd = open(s->state_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (s->fd < 0) {
                int e = errno;
                snprintf(err, errlen, "vm %s: snapshot: create %s: %s", vm->name, o->state_path,
                         strerror(e));
                save_free(s);
                return -e;
        }
        int r = save_listen(s);
        if (r == 0 && qmp_execute(vm->qmp, "stop", NULL, on_stopped, s) < 0)
                r = -EIO;
        if (r < 0) {
                snprintf(err, errlen, "vm %s: snapshot: starting the migration: %s", vm->name,
                         r == -EIO ? "QMP connection lost" : uv_strerror(r));
                s->cb = NULL;
                save_finish(s, r, "%s", err);
                return r;
        }
        vm_enter(vm, PHASE_SAVING);
        return 0;
oom:
        if (s)
                save_free(s);
        snprintf(err, errlen, "vm %s: snapshot: out of memory", vm->name);
        return -ENOMEM;
}

/* ---- snapshots ---- */

int vm_snapshot(Vm *vm, unsigned *ret_id, VmSaveFn cb, void *data, char *err, size_t errlen)
{
        VmSnap *v = realloc(vm->snaps, (vm->nsnaps + 1) * sizeof *v);
        if (!v) {
                snprintf(err, errlen, "vm %s: snapshot: out of memory", vm->name);
                return -ENOMEM;
        }
        vm->snaps = v;
        unsigned id = vm->nsnaps + 1;
        VmSnap *snap = &v[id - 1];
        *snap = (VmSnap){.own_ram = vm->ram_shared};
        if (asprintf(&snap->state, "%s/snap%u.state", vm->dir, id) < 0)
                snap->state = NULL;
        if (snap->own_ram && asprintf(&snap->ram, "%s/snap%u.ram", vm->dir, id) < 0)
                snap->ram = NULL;
        else if (!snap->own_ram)
                snap->ram = vm->ram_path ? strdup(vm->ram_path) : NULL;
        if (!snap->state || !snap->ram) {
                free(snap->state);
                free(snap->ram);
                snprintf(err, errlen, "vm %s: snapshot: out of memory", vm->name);
                return -ENOMEM;
        }
        VmSaveOptions o = {
            .state_path = snap->state,
            .ram_copy_path = snap->own_ram ? snap->ram : NULL,
            .resume = true,
        };
        int r = vm_save(vm, &o, cb, data, err, errlen);
        if (r < 0) {
                free(snap->state);
                free(snap->ram);
                return r;
        }
        vm->nsnaps = id; /* kept even if the save fails later: its files go with the VM */
        *ret_id = id;
        return 0;
}
