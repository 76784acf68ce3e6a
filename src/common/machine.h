/* machine.h: QEMU's machine type of every VM, and so of the KVM probe that judges it
 * (src/host/vmm/vm_internal.h says why q35; src/cli/accel_probe.c boots it). */
#pragma once

#define PROVIUM_MACHINE "q35"
