/* vm.h: one guest: a QEMU process with its console, QMP and agent connections. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "agent_client.h"
#include "qmp.h"
#include "vm_config.h"

typedef enum VmState {
        VM_DEFINED, /* created, not booted */
        VM_BOOTING, /* QEMU started, agent not ready yet */
        VM_RUNNING, /* agent ready */
        VM_PAUSED,  /* running, vCPUs stopped (vm:pause) */
        VM_STOPPING,
        VM_EXITED,
} VmState;

typedef struct Vm Vm;

/* Boot finished: status 0 when the agent answered hello; otherwise -errno and a message. */
typedef void (*VmBootFn)(Vm *vm, int status, const char *msg, void *data);
/* QEMU exited while the runner did not ask for it (crash, panic, guest poweroff). */
typedef void (*VmDeathFn)(Vm *vm, const char *msg, void *data);

/* run_dir: private 0700 directory of the file runner; the VM makes its own below it. */
Vm *vm_new(uv_loop_t *loop, const char *name, const char *run_dir);
/* The machine and its device slots, as text: saved state loads only into the same layout. */
const char *vm_machine_layout(void);
const char *vm_name(const Vm *vm);
VmState vm_state(const Vm *vm);
const char *vm_state_name(VmState s);

/* Starts QEMU and waits for the agent. Returns 0 (cb will run) or -errno with a message in
 * err (cb will not run). The image is built first when the cache lacks it. */
int vm_boot(Vm *vm, const VmConfig *cfg, VmBootFn cb, void *data, char *err, size_t errlen);
void vm_on_death(Vm *vm, VmDeathFn cb, void *data);
AgentClient *vm_agent(Vm *vm);

/* Connects a new agent connection on the next free worker port; cb runs when it answered
 * hello (status 0) or failed. The VM owns the client (freed by vm_stop). Returns 0, -EBUSY
 * when every worker port is taken, -ENOTCONN when the VM is not running. */
int vm_worker_connect(Vm *vm, uint64_t timeout_ms, AgentReadyFn cb, void *data, AgentClient **ret,
                      int *ret_index);

/* ---- what this process's QEMUs hold ---- */

/* The guest RAM (MiB) and vCPUs of every QEMU of this process that is alive: VMs, spares and
 * fixture builders alike. */
void vm_live_totals(uint64_t *memory_mb, unsigned *vcpus);
/* The most vm_live_totals has been in this process. */
void vm_live_peak(uint64_t *memory_mb, unsigned *vcpus);
/* Spares (vm_spare.c) are only started while the live total stays within memory_mb (0: no
 * limit): a file's claim. */
void vm_set_memory_limit(uint64_t memory_mb);
uint64_t vm_memory_limit(void);
/* Room for a boot of cfg needing need_mb within the limit: a spare it will adopt brings its
 * own RAM (returned, to count as free), and spares it will not adopt are stopped while the
 * boot would not fit (their RAM free at once). A spare is a cache, never the reason a boot
 * fails. */
uint64_t vm_spares_room(const VmConfig *cfg, uint64_t need_mb);

/* ---- lifecycle ---- */

/* The next QEMU exit is wanted (shutdown, power button, kill): it does not fail the test. */
void vm_expect_exit(Vm *vm);
/* Runs fn once QEMU has exited (at once if it already has). One watcher per VM; fn NULL
 * removes it. */
void vm_on_exit(Vm *vm, void (*fn)(Vm *vm, void *data), void *data);
/* Sends a QMP command without arguments; cb(data, status, result) as qmp_execute. */
int vm_qmp(Vm *vm, const char *cmd, QmpReplyFn cb, void *data);
/* Marks the VM paused or running again (after the QMP stop/cont succeeded). */
void vm_set_paused(Vm *vm, bool paused);
/* Presses the ACPI power button (and again every 2 s until QEMU exits, since an early press
 * can be lost); the exit is expected. cb as qmp_execute. */
int vm_power_button(Vm *vm, QmpReplyFn cb, void *data);
/* Power loss: SIGKILL to QEMU; the exit is expected. */
int vm_kill(Vm *vm);

/* ---- snapshots (vm_snapshot.c) ---- */

typedef void (*VmSaveFn)(Vm *vm, int status, const char *msg, void *data);

typedef struct VmSaveOptions {
        const char *state_path;    /* the migration stream goes here (created, 0600) */
        const char *ram_copy_path; /* RAM file copied here (sparse); NULL: left where it is */
        bool resume;               /* run the guest again after the save; else it stays stopped */
} VmSaveOptions;

/* Saves the running VM: the device state (and RAM too when RAM is a copy-on-write mapping of
 * a saved file) through QEMU migration with x-ignore-shared. Returns 0 (cb will run) or -errno
 * with err. The guest is stopped while the state is written. */
int vm_save(Vm *vm, const VmSaveOptions *o, VmSaveFn cb, void *data, char *err, size_t errlen);
/* vm:snapshot: vm_save into the VM's run directory; *ret_id names it for vm_restore. */
int vm_snapshot(Vm *vm, unsigned *ret_id, VmSaveFn cb, void *data, char *err, size_t errlen);
/* Replaces QEMU with one that loads snapshot id, its RAM mapped copy-on-write; cb runs when the
 * agent answers again. Works on a running, paused or exited VM. Processes, files and workers
 * made before fail with -ESTALE afterwards. Returns 0 or -errno with err. */
int vm_restore(Vm *vm, unsigned id, const char *label, VmBootFn cb, void *data, char *err,
               size_t errlen);
/* Stops the spare QEMUs started ahead for fixture clones (done_cb once per spare, when it is
 * gone); returns how many. vm_spares_free frees them afterwards. */
int vm_spares_stop(void (*done_cb)(Vm *vm, void *data), void *data);
void vm_spares_free(void);
/* The configuration of the VM's boot (valid once it booted). */
const VmConfig *vm_config(const Vm *vm);
/* The cache key of the image the VM booted (NULL before it has one). */
const char *vm_image_key(const Vm *vm);

/* ---- network cards ---- */

/* Gives the VM a virtio-net card on TAP tap (a bridge port) with MAC mac. Before boot it goes
 * on the command line: returns 1, cb does not run. On a running VM it is hot-plugged through
 * QMP: returns 0 and cb(data, status, result) runs when QEMU has answered. -errno with err. */
int vm_add_nic(Vm *vm, const char *tap, const char *mac, QmpReplyFn cb, void *data, char *err,
               size_t errlen);

/* ---- disks ---- */

/* Where a disk's bytes come from: an NBD export on a Unix socket (src/host/disk: faults,
 * power loss), or, plain, a raw file QEMU opens itself (the floor the disk bench compares
 * with). */
typedef struct VmDiskSource {
        const char *socket, *export_name; /* NBD */
        const char *file;                 /* plain: used when not NULL */
} VmDiskSource;

/* Gives the VM a virtio-blk disk from src, its serial the guest's name for it (at most 20
 * bytes). Before boot it goes on the command line (returns 1, cb does not run); on a running
 * or paused VM it is hot-plugged (blockdev-add, device_add: returns 0, then cb). I/O errors
 * are reported to the guest (werror=report, rerror=report), never a pause. -errno with err. */
int vm_attach_disk(Vm *vm, const char *serial, const VmDiskSource *src, QmpReplyFn cb, void *data,
                   char *err, size_t errlen);
/* What the owner of a disk's bytes hears from the VM (src/host/disk, through the binding). */
typedef struct VmDiskHooks {
        void (*gone)(void *data); /* the QEMU that had it exited (to a disk, a power loss) */
        /* The VM was saved to state, its guest stopped: the disk's bytes of this moment go
         * beside it. Returns 0 or -errno (the save fails). */
        int (*saved)(void *data, const char *state);
        /* A new QEMU is about to load state (a restore): the disk's bytes go back to what
         * saved kept beside it. */
        void (*restoring)(void *data, const char *state);
        void *data;
} VmDiskHooks;
void vm_disk_set_hooks(Vm *vm, const char *serial, const VmDiskHooks *hooks);
/* Takes the disk away: before boot at once (returns 1); on a running VM the device is unplugged
 * (the guest's ACPI hotplug lets it go: DEVICE_DELETED, at most 20 s), then its block node
 * (returns 0, then cb). -errno with err (-ENOENT: no such disk). */
int vm_detach_disk(Vm *vm, const char *serial, QmpReplyFn cb, void *data, char *err, size_t errlen);

/* ---- console ---- */

/* fn receives every console byte from now on, then (NULL, 0) when QEMU exits; NULL removes
 * it. */
void vm_console_watch(Vm *vm, void (*fn)(void *data, const char *p, size_t n), void *data);
/* Writes input to the serial console (QEMU's stdin). Returns 0 or -errno. */
int vm_console_write(Vm *vm, const char *p, size_t n);

/* Last n lines of the serial console as a new string (caller frees); NULL on -ENOMEM. */
char *vm_console_tail(const Vm *vm, unsigned nlines);
/* What a person needs of it after a failure: the last nlines lines, preceded by the first line
 * that names what went wrong (a kernel panic, BUG, Oops, a lockup) when it is further up;
 * without carriage returns. Caller frees; NULL when out of memory. */
char *vm_console_excerpt(const Vm *vm, unsigned nlines);
/* The whole console log so far (borrowed; valid until the next loop iteration). */
const char *vm_console_log(const Vm *vm, size_t *ret_len);
/* Why the VM is gone, for error messages ("QEMU exited with status 1: ..."); NULL if alive. */
const char *vm_death_reason(const Vm *vm);

/* Kills QEMU (if running) and removes the VM's run directory; done_cb (may be NULL) runs once
 * QEMU has been reaped. Safe twice. */
void vm_stop(Vm *vm, void (*done_cb)(Vm *vm, void *data), void *data);
/* Frees a VM that is defined or exited (after vm_stop's callback). Accepts NULL. */
Vm *vm_free(Vm *vm);

/* ---- local VMs (--vmm local: vm_local.c, local_sandbox.c) ---- */

/* What a call that needs a guest kernel raises on a local VM, after "vm NAME: CALL: ". A test
 * that gets it is reported as skipped with the message (src/lua/prelude/test.lua). */
#define VM_LOCAL_UNAVAILABLE "not available under --vmm local (needs a guest kernel)"

/* Whether the VM is a local one; set once, before its first boot (provium:vm's vmm). */
bool vm_is_local(const Vm *vm);
void vm_set_local(Vm *vm, bool local);
/* Whether pause and resume can freeze the local VM (it has a cgroup; true for a QEMU VM). */
bool vm_local_can_freeze(const Vm *vm);
/* The process whose namespaces a running local VM has (its init, as this process sees it), or
 * -errno. */
int vm_local_init_pid(const Vm *vm);
/* Removes the cgroups of runner_pid's local VMs that are left (it was killed): for the
 * dispatcher, once the runner has exited. */
void vm_local_sweep(int runner_pid);
/* The same for every runner that is gone (of any run: its dispatcher may have been killed
 * too): for a dispatcher, before its first file. */
void vm_local_sweep_stale(void);
/* `provium __local-vm ...`: the process a local VM is (local_sandbox.c). */
int vm_local_sandbox_main(int argc, char **argv);

/* The wrapper: "provium __pdeathsig PPID PROGRAM ARGS...": arranges SIGKILL when the runner
 * dies, then execs. "__qemu" does the same and drops every capability first (vm_argv.c).
 * Never returns on success. */
int vm_pdeathsig_exec(int argc, char **argv);
/* SIGKILL for this process when its parent dies; -1 when the parent (whose pid is ppid, a
 * decimal string) is already gone. The wrappers above and __local-vm start with it. */
int vm_die_with_parent(const char *ppid);
/* The program a VM's process starts as: provium-vm beside this provium (meson builds and
 * installs it there), else this provium itself (/proc/self/exe), which does the same. */
const char *vm_program(void);
