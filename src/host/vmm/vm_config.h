/* vm_config.h: a VM's configuration, described once: the field table below makes the struct,
 * and clears, copies, compares, saves and loads it (vm_config.c); the Lua binding reads its
 * options from the same table. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Flags of a field. */
#define VMCFG_SAVED 1u /* kept in a fixture's saved configuration (vm_config_to_json) */
#define VMCFG_SPARE 2u /* a spare QEMU must match it to stand in (vm_config_equal) */

#define VM_MAX_WORKERS    16
#define VM_MAX_SPARES     8 /* spares for fixture clones, all fixtures together */
#define VM_DEFAULT_SPARES 1

/* X(kind, name, flags, Lua option, Lua reader, unset, min, max), one line per field.
 * kind: STR (const char *; NULL when unset; max: the longest length), U64, UINT, INT (the
 * value `unset` when not given, else min..max), SEED (an optional uint64_t: the member `name`
 * with `has_name`). The Lua reader names how bind_vm_boot_config (src/lua/bind/
 * boot_options.c) reads the option (NONE: not a Lua option). */
#define VM_CONFIG_FIELDS(X)                                                                        \
        /* image name ("default"), or the explicit kernel and initrd below */                      \
        X(STR, image, VMCFG_SAVED | VMCFG_SPARE, "image", NONE, 0, 0, 255)                         \
        X(STR, kernel, VMCFG_SAVED | VMCFG_SPARE, "kernel", STRING, 0, 0, 4095)                    \
        X(STR, initrd, VMCFG_SAVED | VMCFG_SPARE, "initrd", STRING, 0, 0, 4095)                    \
        /* extra kernel command line */                                                            \
        X(STR, append, VMCFG_SAVED | VMCFG_SPARE, "append", STRING, 0, 0, 4095)                    \
        /* guest RAM; 0: the default, 256 */                                                       \
        X(U64, memory_mb, VMCFG_SAVED | VMCFG_SPARE, "memory", MEMORY, 0, 64, 65536)               \
        /* vCPUs; 0: 1 */                                                                          \
        X(UINT, cpus, VMCFG_SAVED | VMCFG_SPARE, "cpus", COUNT, 0, 1, 64)                          \
        /* boot to agent-ready; 0: 120 s */                                                        \
        X(U64, timeout_ms, 0, "timeout", SECONDS, 0, 0, UINT32_MAX)                                \
        /* "tcg" or "kvm" (the run's --accel, not a Lua option) */                                 \
        X(STR, accel, VMCFG_SAVED | VMCFG_SPARE, "accel", NONE, 0, 0, 15)                          \
        /* worker ports beside the main one; -1: the default (4) */                                \
        X(INT, workers, VMCFG_SAVED | VMCFG_SPARE, "workers", COUNT, -1, 0, VM_MAX_WORKERS)        \
        /* guest RTC at power-on, "YYYY-MM-DDTHH:MM:SS" UTC; NULL: now */                          \
        X(STR, initial_time, VMCFG_SAVED | VMCFG_SPARE, "initial_time", DATE, 0, 0, 31)            \
        /* QEMU -seed and the agent's /dev/hwrng: guest randomness becomes reproducible */         \
        X(SEED, rng_seed, VMCFG_SAVED | VMCFG_SPARE, "rng_seed", SEED, 0, 0, INT64_MAX)            \
        /* PCI hot-plug after boot (cards, disks); 0: none, and the kernel skips ACPI's IRQ        \
         * routing (acpi=noirq), some 160 ms of a boot under TCG; -1: the default, 1 */            \
        X(INT, hotplug, VMCFG_SAVED | VMCFG_SPARE, "hotplug", BOOL, -1, 0, 1)                      \
        /* file behind guest RAM; NULL: <run dir>/<vm>/ram (a fixture build gives its own) */      \
        X(STR, ram_path, VMCFG_SPARE, "_ram", STRING, 0, 0, 4095)                                  \
        /* with ram_path: load this saved state, RAM mapped copy-on-write, instead of booting */   \
        X(STR, incoming, VMCFG_SPARE, "incoming", NONE, 0, 0, 4095)                                \
        /* with incoming: spares kept loaded for the next clones (vm_spare.c); -1: the default */  \
        X(INT, spares, 0, "pool", NONE, -1, 0, VM_MAX_SPARES)

#define VMCFG_MEMBER_STR(name)  const char *name;
#define VMCFG_MEMBER_U64(name)  uint64_t name;
#define VMCFG_MEMBER_UINT(name) unsigned name;
#define VMCFG_MEMBER_INT(name)  int name;
#define VMCFG_MEMBER_SEED(name)                                                                    \
        bool has_##name;                                                                           \
        uint64_t name;
#define VMCFG_MEMBER(kind, name, flags, opt, reader, unset, min, max) VMCFG_MEMBER_##kind(name)

typedef struct VmConfig {
        VM_CONFIG_FIELDS(VMCFG_MEMBER)
} VmConfig;

#define VM_DEFAULT_MEMORY_MB 256

/* The guest RAM c gives (its memory_mb, or the default). */
static inline uint64_t vm_config_memory_mb(const VmConfig *c)
{
        return c->memory_mb ? c->memory_mb : VM_DEFAULT_MEMORY_MB;
}

/* Every field unset (workers -1, strings NULL, ...). */
void vm_config_init(VmConfig *c);
/* Frees the strings of a copy (vm_config_copy, vm_config_from_json) and zeroes it. */
void vm_config_clear(VmConfig *c);
/* A deep copy of src (strings duplicated) into dst; dst is cleared on failure (-ENOMEM). */
int vm_config_copy(VmConfig *dst, const VmConfig *src);
/* Whether a and b agree on every field that has all of flags. */
bool vm_config_equal(const VmConfig *a, const VmConfig *b, unsigned flags);
/* The fields with VMCFG_SAVED as a new JSON object (unset strings and seeds left out); NULL
 * on -ENOMEM. */
json_t *vm_config_to_json(const VmConfig *c);
/* Fills c (strings owned: vm_config_clear) from a saved object. Every saved field is checked
 * against its kind and bounds; other keys are left to the caller. Returns 0, or -EINVAL with
 * err naming the field, or -ENOMEM. */
int vm_config_from_json(const json_t *o, VmConfig *c, char *err, size_t errlen);
