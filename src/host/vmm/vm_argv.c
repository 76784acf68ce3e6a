/* vm_argv.c: the QEMU command line of a VM (see vm_build_argv in vm_internal.h): machine (q35,
 * with a PCI bridge for cards and disks: VM_MACHINE in vm_internal.h says why), guest RAM in a
 * file, kernel and command line, a read-only root disk, network cards and disks at fixed slots
 * of the bridge, the agent's virtio-serial ports. Launches, restores and spares all build theirs
 * here, so a restored VM's devices match the saved one's. And the wrapper QEMU runs under. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qemu.h"
#include "vm_internal.h"

static void argv_add(Argv *a, const char *fmt, ...)
{
        if (a->error)
                return;
        if (a->n + 2 > a->cap) {
                size_t cap = a->cap ? a->cap * 2 : 32;
                char **v = realloc(a->v, cap * sizeof *v);
                if (!v) {
                        a->error = -ENOMEM;
                        return;
                }
                a->v = v;
                a->cap = cap;
        }
        va_list ap;
        va_start(ap, fmt);
        int r = vasprintf(&a->v[a->n], fmt, ap);
        va_end(ap);
        if (r < 0) {
                a->error = -ENOMEM;
                return;
        }
        a->v[++a->n] = NULL;
}

void vm_argv_free(Argv *a)
{
        for (size_t i = 0; i < a->n; i++)
                free(a->v[i]);
        free(a->v);
}

/* A value inside a QEMU option list: commas are doubled. NULL on -ENOMEM. */
static char *qemu_opt_escape(const char *s)
{
        char *r = malloc(2 * strlen(s) + 1), *q = r;
        if (!r)
                return NULL;
        for (; *s; s++) {
                *q++ = *s;
                if (*s == ',')
                        *q++ = ',';
        }
        *q = 0;
        return r;
}

/* Guest RAM lives in a file so that a save need not copy it (x-ignore-shared) and a restore
 * can map a saved file copy-on-write, sharing its pages with every other clone. */
static void argv_add_ram(Vm *vm, uint64_t mb, Argv *a)
{
        char *path = qemu_opt_escape(vm->ram_path);
        if (!path) {
                a->error = -ENOMEM;
                return;
        }
        argv_add(a, "-object");
        argv_add(a, "memory-backend-file,id=pc.ram,size=%lluM,mem-path=%s,share=%s",
                 (unsigned long long) mb, path, vm->ram_shared ? "on" : "off");
        free(path);
}

/* The image's read-only root disk, at a fixed slot below the NICs' 0x10+k; the guest finds it
 * by its serial (src/agent/init.c). */
static void argv_add_rootfs(const Image *img, Argv *a)
{
        char *path = qemu_opt_escape(img->rootfs);
        if (!path) {
                a->error = -ENOMEM;
                return;
        }
        argv_add(a, "-drive");
        argv_add(a, "file=%s,if=none,id=proot,format=raw,readonly=on", path);
        argv_add(a, "-device");
        argv_add(a, "virtio-blk-pci,drive=proot,serial=provium-root,addr=0x0f");
        free(path);
}

/* Disk k: its NBD export (or its raw file) as block node blk<k>, a virtio-blk device disk<k> at
 * VM_DISK_SLOT(k) of the bridge. */
static void argv_add_disks(Vm *vm, Argv *a)
{
        for (int k = 0; k < VM_MAX_DISKS; k++) {
                const VmDisk *d = &vm->disks[k];
                if (!d->used)
                        continue;
                char *path = qemu_opt_escape(d->file ? d->file : d->socket);
                char *name = d->file ? NULL : qemu_opt_escape(d->export_name);
                if (!path || (!d->file && !name)) {
                        free(path);
                        free(name);
                        a->error = -ENOMEM;
                        return;
                }
                argv_add(a, "-blockdev");
                if (d->file)
                        argv_add(a, "driver=raw,node-name=blk%d,file.driver=file,file.filename=%s",
                                 k, path);
                else
                        argv_add(a,
                                 "driver=nbd,node-name=blk%d,server.type=unix,server.path=%s,"
                                 "export=%s",
                                 k, path, name);
                argv_add(a, "-device");
                argv_add(a,
                         "virtio-blk-pci,drive=blk%d,id=disk%d,serial=%s,bus=" VM_HOTPLUG_BUS
                         ",addr=0x%x,werror=report,rerror=report",
                         k, k, d->serial, VM_DISK_SLOT(k));
                free(path);
                free(name);
        }
}

const char *vm_machine_layout(void)
{
        return VM_MACHINE_LAYOUT;
}

int vm_build_argv(Vm *vm, const VmConfig *cfg, const Image *img, Argv *a)
{
        uint64_t mb = vm_config_memory_mb(cfg);
        argv_add(a, "%s", vm_program()); /* provium-vm __qemu: vm_wrap.c */
        argv_add(a, "__qemu");
        argv_add(a, "%ld", (long) getpid());
        argv_add(a, "%s", qemu_program());
        argv_add(a, "-name");
        argv_add(a, "provium-%s", vm->name);
        argv_add(a, "-machine");
        argv_add(a, VM_MACHINE ",accel=%s,memory-backend=pc.ram",
                 cfg->accel && *cfg->accel ? cfg->accel : "tcg");
        argv_add(a, "-m");
        argv_add(a, "%llu", (unsigned long long) mb);
        argv_add_ram(vm, mb, a);
        /* A save stops the guest first; without this the state would say "paused" and a
         * restore would not start the guest. */
        argv_add(a, "-global");
        argv_add(a, "migration.store-global-state=off");
        if (vm->incoming_fd >= 0) {
                argv_add(a, "-incoming");
                argv_add(a, "defer");
        }
        argv_add(a, "-smp");
        argv_add(a, "%u", cfg->cpus ? cfg->cpus : 1);
        argv_add(a, "-nodefaults");
        argv_add(a, "-no-user-config");
        argv_add(a, "-no-reboot");
        argv_add(a, "-device");
        argv_add(a, VM_HOTPLUG_BRIDGE); /* where cards and disks go, hot-plugged or not */
        /* seccomp: a guest that escapes into QEMU cannot exec, fork, change its IDs or its
         * scheduling, nor use the syscalls QEMU no longer needs (docs/security.md) */
        argv_add(a, "-sandbox");
        argv_add(a, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
        argv_add(a, "-display");
        argv_add(a, "none");
        argv_add(a, "-serial");
        argv_add(a, "stdio");
        argv_add(a, "-qmp");
        argv_add(a, "unix:%s/qmp.sock,server=on,wait=off", vm->dir);
        argv_add(a, "-kernel");
        argv_add(a, "%s", img->kernel);
        if (img->initrd) {
                argv_add(a, "-initrd");
                argv_add(a, "%s", img->initrd);
        }
        argv_add(a, "-append");
        char seed[48] = "";
        if (cfg->has_rng_seed) /* the agent's /dev/hwrng (src/agent/hwrng.c) */
                snprintf(seed, sizeof seed, " provium.rng_seed=%llu",
                         (unsigned long long) cfg->rng_seed);
        /* provium.ports: the agent stops looking for ports once it serves them all */
        argv_add(a, "%s%s%s provium.ports=%d%s%s%s", img->cmdline ? img->cmdline : "",
                 img->rootfs ? " provium.root=ext4" : "", seed, vm->nworkers + 1,
                 cfg->hotplug == 0 ? " acpi=noirq" : "", cfg->append ? " " : "",
                 cfg->append ? cfg->append : "");
        if (img->rootfs)
                argv_add_rootfs(img, a);
        if (cfg->initial_time) {
                argv_add(a, "-rtc");
                argv_add(a, "base=%s,clock=host", cfg->initial_time);
        }
        if (cfg->has_rng_seed) {
                argv_add(a, "-seed");
                argv_add(a, "%llu", (unsigned long long) cfg->rng_seed);
                argv_add(a, "-object");
                argv_add(a, "rng-builtin,id=rng0");
                argv_add(a, "-device");
                argv_add(a, "virtio-rng-pci,rng=rng0");
        }
        for (int k = 0; k < vm->nnics; k++) {
                argv_add(a, "-netdev");
                argv_add(a, "tap,id=net%d,ifname=%s,script=no,downscript=no", k, vm->nics[k].tap);
                argv_add(a, "-device");
                argv_add(a,
                         "virtio-net-pci,netdev=net%d,mac=%s,id=nic%d,bus=" VM_HOTPLUG_BUS
                         ",addr=0x%x",
                         k, vm->nics[k].mac, k, VM_NIC_SLOT(k));
        }
        argv_add_disks(vm, a);
        argv_add(a, "-device");
        argv_add(a, "virtio-serial-pci,id=vser0");
        argv_add(a, "-chardev");
        argv_add(a, "socket,id=agent0,path=%s/agent0.sock,server=on,wait=off", vm->dir);
        argv_add(a, "-device");
        argv_add(a, "virtserialport,bus=vser0.0,chardev=agent0,name=provium.0");
        for (int i = 1; i <= vm->nworkers; i++) {
                argv_add(a, "-chardev");
                argv_add(a, "socket,id=agent%d,path=%s/agent%d.sock,server=on,wait=off", i, vm->dir,
                         i);
                argv_add(a, "-device");
                argv_add(a, "virtserialport,bus=vser0.0,chardev=agent%d,name=provium.%d", i, i);
        }
        return a->error;
}
