/* vm_disk.c: a VM's disks: on the command line before boot (vm_argv.c), hot-plugged over QMP
 * after (blockdev-add of the NBD export, then device_add at the disk's PCI slot), and
 * unplugged (device_del, the guest's DEVICE_DELETED, then blockdev-del). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm_internal.h"

#define DETACH_TIMEOUT_MS 20000

typedef struct DiskPlug {
        Vm *vm;
        int k;
        QmpReplyFn cb;
        void *data;
} DiskPlug;

static int find_disk(const Vm *vm, const char *serial)
{
        for (int k = 0; k < VM_MAX_DISKS; k++)
                if (vm->disks[k].used && strcmp(vm->disks[k].serial, serial) == 0)
                        return k;
        return -1;
}

static void slot_clear(VmDisk *d)
{
        free(d->socket);
        free(d->export_name);
        free(d->file);
        *d = (VmDisk){0};
}

static void plug_done(DiskPlug *p, int status, json_t *result)
{
        if (p->cb)
                p->cb(p->data, status, result);
        free(p);
}

static void on_device_added(void *data, int status, json_t *result)
{
        DiskPlug *p = data;
        if (status < 0) { /* the node stays: delete it, so that the slot can be used again */
                char node[16];
                snprintf(node, sizeof node, "blk%d", p->k);
                json_t *args = json_pack("{s:s}", "node-name", node);
                if (args && p->vm->qmp)
                        (void) qmp_execute(p->vm->qmp, "blockdev-del", args, NULL, NULL);
                slot_clear(&p->vm->disks[p->k]);
        }
        plug_done(p, status, result);
}

static void on_blockdev_added(void *data, int status, json_t *result)
{
        DiskPlug *p = data;
        Vm *vm = p->vm;
        VmDisk *d = &vm->disks[p->k];
        if (status < 0 || !vm->qmp) {
                slot_clear(d);
                return plug_done(p, status < 0 ? status : -EIO, result);
        }
        char node[16], id[16], addr[16];
        snprintf(node, sizeof node, "blk%d", p->k);
        snprintf(id, sizeof id, "disk%d", p->k);
        snprintf(addr, sizeof addr, "0x%x", VM_DISK_SLOT(p->k));
        json_t *args =
            json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "driver", "virtio-blk-pci", "drive",
                      node, "id", id, "serial", d->serial, "bus", VM_HOTPLUG_BUS, "addr", addr,
                      "werror", "report", "rerror", "report");
        if (!args || qmp_execute(vm->qmp, "device_add", args, on_device_added, p) < 0) {
                slot_clear(d);
                plug_done(p, -ENOMEM, NULL);
        }
}

static int hot_plug(Vm *vm, int k, QmpReplyFn cb, void *data)
{
        VmDisk *d = &vm->disks[k];
        DiskPlug *p = calloc(1, sizeof *p);
        char node[16];
        snprintf(node, sizeof node, "blk%d", k);
        json_t *args =
            json_pack("{s:s,s:s,s:{s:s,s:s},s:s}", "driver", "nbd", "node-name", node, "server",
                      "type", "unix", "path", d->socket, "export", d->export_name);
        if (!p || !args || !vm->qmp) {
                free(p);
                json_decref(args);
                return vm->qmp ? -ENOMEM : -ENOTCONN;
        }
        *p = (DiskPlug){.vm = vm, .k = k, .cb = cb, .data = data};
        int r = qmp_execute(vm->qmp, "blockdev-add", args, on_blockdev_added, p);
        if (r < 0)
                free(p);
        return r;
}

int vm_attach_disk(Vm *vm, const char *serial, const VmDiskSource *src, QmpReplyFn cb, void *data,
                   char *err, size_t errlen)
{
        VmState st = vm_state(vm);
        int k = 0;
        while (k < VM_MAX_DISKS && vm->disks[k].used)
                k++;
        const char *why = k == VM_MAX_DISKS            ? "it has as many disks as it can (8)"
                          : strlen(serial) > 20        ? "a disk's name is at most 20 bytes"
                          : find_disk(vm, serial) >= 0 ? "it has a disk of that name"
                          : st != VM_DEFINED && st != VM_RUNNING && st != VM_PAUSED
                              ? vm_state_name(st)
                              : NULL;
        if (why) {
                snprintf(err, errlen, "vm %s: attach_disk %s: %s%s", vm->name, serial,
                         why == vm_state_name(st) ? "the VM is " : "", why);
                return -EBUSY;
        }
        char what[64];
        snprintf(what, sizeof what, "attach_disk %s", serial);
        int hr = vm_check_hotplug(vm, what, err, errlen);
        if (hr < 0)
                return hr;
        VmDisk *d = &vm->disks[k];
        *d = (VmDisk){.used = true};
        snprintf(d->serial, sizeof d->serial, "%s", serial);
        if (src->file)
                d->file = strdup(src->file);
        else {
                d->socket = strdup(src->socket);
                d->export_name = strdup(src->export_name);
        }
        if (src->file ? !d->file : !d->socket || !d->export_name) {
                slot_clear(d);
                snprintf(err, errlen, "vm %s: attach_disk %s: out of memory", vm->name, serial);
                return -ENOMEM;
        }
        if (st == VM_DEFINED)
                return 1;
        int r = hot_plug(vm, k, cb, data);
        if (r < 0) {
                slot_clear(d);
                snprintf(err, errlen, "vm %s: attach_disk %s: %s", vm->name, serial, strerror(-r));
        }
        return r;
}

/* ---- detach ---- */

static void detach_end(Vm *vm, int k, int status)
{
        VmDisk *d = &vm->disks[k];
        QmpReplyFn cb = d->detach_cb;
        void *data = d->detach_data;
        if (d->detach_timer) {
                vm_close_handle(vm, (uv_handle_t *) d->detach_timer);
                d->detach_timer = NULL;
        }
        slot_clear(d);
        if (cb)
                cb(data, status, NULL);
}

static void on_blockdev_deleted(void *data, int status, json_t *result)
{
        DiskPlug *p = data;
        detach_end(p->vm, p->k, status);
        free(p);
}

void vm_disk_qmp_event(Vm *vm, const char *event, json_t *data)
{
        if (strcmp(event, "DEVICE_DELETED") != 0)
                return;
        const char *dev = json_string_value(json_object_get(data, "device"));
        int k;
        if (!dev || sscanf(dev, "disk%d", &k) != 1 || k < 0 || k >= VM_MAX_DISKS ||
            !vm->disks[k].detach_cb)
                return;
        DiskPlug *p = calloc(1, sizeof *p);
        char node[16];
        snprintf(node, sizeof node, "blk%d", k);
        json_t *args = json_pack("{s:s}", "node-name", node);
        if (p && args && vm->qmp) {
                *p = (DiskPlug){.vm = vm, .k = k};
                if (qmp_execute(vm->qmp, "blockdev-del", args, on_blockdev_deleted, p) == 0)
                        return;
        }
        free(p);
        detach_end(vm, k, -ENOMEM);
}

static void on_detach_timeout(uv_timer_t *t)
{
        Vm *vm = t->data;
        for (int k = 0; k < VM_MAX_DISKS; k++)
                if (vm->disks[k].detach_timer == t)
                        return detach_end(vm, k, -ETIMEDOUT);
}

static void on_device_del(void *data, int status, json_t *result)
{
        DiskPlug *p = data;
        if (status < 0)
                detach_end(p->vm, p->k, status);
        free(p);
}

int vm_detach_disk(Vm *vm, const char *serial, QmpReplyFn cb, void *data, char *err, size_t errlen)
{
        int k = find_disk(vm, serial);
        VmState st = vm_state(vm);
        if (k < 0) {
                snprintf(err, errlen, "vm %s: detach_disk %s: not attached to this VM", vm->name,
                         serial);
                return -ENOENT;
        }
        VmDisk *d = &vm->disks[k];
        if (d->detach_cb) {
                snprintf(err, errlen, "vm %s: detach_disk %s: already being detached", vm->name,
                         serial);
                return -EALREADY;
        }
        if (st != VM_RUNNING && st != VM_PAUSED) { /* before boot, or QEMU is gone */
                slot_clear(d);
                return 1;
        }
        char what[64];
        snprintf(what, sizeof what, "detach_disk %s", serial);
        int hr = vm_check_hotplug(vm, what, err, errlen);
        if (hr < 0)
                return hr;
        DiskPlug *p = calloc(1, sizeof *p);
        uv_timer_t *t = calloc(1, sizeof *t);
        char id[16];
        snprintf(id, sizeof id, "disk%d", k);
        json_t *args = json_pack("{s:s}", "id", id);
        int r = p && t && args && vm->qmp ? uv_timer_init(vm->loop, t) : -ENOMEM;
        if (r < 0) {
                free(p);
                free(t);
                json_decref(args);
                snprintf(err, errlen, "vm %s: detach_disk %s: %s", vm->name, serial,
                         vm->qmp ? strerror(-r) : "no QMP connection");
                return r;
        }
        t->data = vm;
        vm->handles_open++;
        d->detach_timer = t;
        d->detach_cb = cb;
        d->detach_data = data;
        (void) uv_timer_start(t, on_detach_timeout, DETACH_TIMEOUT_MS, 0);
        *p = (DiskPlug){.vm = vm, .k = k};
        r = qmp_execute(vm->qmp, "device_del", args, on_device_del, p);
        if (r < 0) {
                free(p);
                d->detach_cb = NULL;
                detach_end(vm, k, r);
                snprintf(err, errlen, "vm %s: detach_disk %s: %s", vm->name, serial, strerror(-r));
        }
        return r;
}

void vm_disk_set_hooks(Vm *vm, const char *serial, const VmDiskHooks *hooks)
{
        int k = find_disk(vm, serial);
        if (k >= 0)
                vm->disks[k].hooks = *hooks;
}

int vm_disks_saved(Vm *vm, const char *state, char *err, size_t errlen)
{
        for (int k = 0; k < VM_MAX_DISKS; k++) {
                VmDisk *d = &vm->disks[k];
                int r = d->used && d->hooks.saved ? d->hooks.saved(d->hooks.data, state) : 0;
                if (r < 0) {
                        snprintf(err, errlen, "saving disk %s: %s", d->serial, strerror(-r));
                        return r;
                }
        }
        return 0;
}

void vm_disks_restoring(Vm *vm, const char *state)
{
        for (int k = 0; k < VM_MAX_DISKS; k++) {
                VmDisk *d = &vm->disks[k];
                if (d->used && d->hooks.restoring)
                        d->hooks.restoring(d->hooks.data, state);
        }
}

void vm_disks_qemu_gone(Vm *vm)
{
        for (int k = 0; k < VM_MAX_DISKS; k++) {
                VmDisk *d = &vm->disks[k];
                if (d->used && d->hooks.gone)
                        d->hooks.gone(d->hooks.data);
                if (d->detach_cb)
                        detach_end(vm, k, 0); /* with its QEMU gone, the disk is detached */
        }
}

void vm_disks_free(Vm *vm)
{
        for (int k = 0; k < VM_MAX_DISKS; k++)
                slot_clear(&vm->disks[k]);
}
