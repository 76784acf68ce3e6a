/* vm_nic.c: a VM's network cards: on the command line before boot, hot-plugged over QMP after
 * (netdev_add, then device_add at the card's fixed PCI slot). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "vm_internal.h"

typedef struct NicPlug {
        Vm *vm;
        int k;
        QmpReplyFn cb;
        void *data;
} NicPlug;

static void on_nic_device(void *data, int status, json_t *result)
{
        NicPlug *p = data;
        if (p->cb)
                p->cb(p->data, status, result);
        free(p);
}

static void on_nic_netdev(void *data, int status, json_t *result)
{
        NicPlug *p = data;
        Vm *vm = p->vm;
        json_t *args = NULL;
        if (status == 0) {
                char netdev[16], id[16], addr[16];
                snprintf(netdev, sizeof netdev, "net%d", p->k);
                snprintf(id, sizeof id, "nic%d", p->k);
                snprintf(addr, sizeof addr, "0x%x", VM_NIC_SLOT(p->k));
                args = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "driver", "virtio-net-pci", "netdev",
                                 netdev, "mac", vm->nics[p->k].mac, "id", id, "bus", VM_HOTPLUG_BUS,
                                 "addr", addr);
        }
        if (status == 0 && args && vm->qmp &&
            qmp_execute(vm->qmp, "device_add", args, on_nic_device, p) == 0)
                return;
        on_nic_device(p, status < 0 ? status : -EIO, result);
}

int vm_add_nic(Vm *vm, const char *tap, const char *mac, QmpReplyFn cb, void *data, char *err,
               size_t errlen)
{
        VmState st = vm_state(vm);
        if (vm->nnics == VM_MAX_NICS) {
                snprintf(err, errlen, "vm %s: attach: at most %d network cards", vm->name,
                         VM_MAX_NICS);
                return -ENOSPC;
        }
        if (st != VM_DEFINED && st != VM_RUNNING && st != VM_PAUSED) {
                snprintf(err, errlen, "vm %s: attach: the VM is %s", vm->name, vm_state_name(st));
                return -EBUSY;
        }
        int r = vm_check_hotplug(vm, "attach", err, errlen);
        if (r < 0)
                return r;
        int k = vm->nnics;
        snprintf(vm->nics[k].tap, sizeof vm->nics[k].tap, "%s", tap);
        snprintf(vm->nics[k].mac, sizeof vm->nics[k].mac, "%s", mac);
        if (st == VM_DEFINED) { /* on the command line when it boots */
                vm->nnics++;
                return 1;
        }
        NicPlug *p = calloc(1, sizeof *p);
        char netdev[16];
        snprintf(netdev, sizeof netdev, "net%d", k);
        json_t *args = json_pack("{s:s,s:s,s:s,s:s,s:s}", "type", "tap", "id", netdev, "ifname",
                                 tap, "script", "no", "downscript", "no");
        if (!p || !args || !vm->qmp) {
                free(p);
                json_decref(args);
                snprintf(err, errlen, "vm %s: attach: %s", vm->name,
                         vm->qmp ? "out of memory" : "no QMP connection");
                return -ENOMEM;
        }
        *p = (NicPlug){.vm = vm, .k = k, .cb = cb, .data = data};
        vm->nnics++; /* a restore's command line has it from now on */
        r = qmp_execute(vm->qmp, "netdev_add", args, on_nic_netdev, p);
        if (r < 0) {
                free(p);
                snprintf(err, errlen, "vm %s: attach: %s", vm->name, strerror(-r));
        }
        return r;
}
