/* vm_internal.h: the Vm structure and its phases, shared by the vm*.c modules of this folder. */
#pragma once

#include "image.h"
#include "machine.h"
#include "vm.h"

#define CONSOLE_MAX  (8u << 20) /* console bytes kept; later output only updates the tail */
#define CONSOLE_TAIL 8192
#define QEMU_ERR_MAX 4096

/* The machine: q35, whose ACPI _PRT is a constant package. On pc (i440fx) QEMU's _PRT is an
 * AML loop of 128 rounds that the guest runs for every virtio device it probes: virtio_pci took
 * 127 ms with one device, 473 ms with four, against 23 and 42 ms on q35 (bench/machine-floor.py,
 * docs/performance.md). q35's root bus cannot hot-plug, so cards and disks go on a PCI bridge,
 * VM_HOTPLUG_BUS, whose slots take ACPI hot-plug as pc's did. A change here must change
 * VM_MACHINE_LAYOUT: it is part of every fixture's key, so that no state saved with other
 * devices is loaded. */
#define VM_MACHINE        PROVIUM_MACHINE /* common/machine.h: the KVM probe boots the same */
#define VM_HOTPLUG_BUS    "pb0"
#define VM_HOTPLUG_BRIDGE "pcie-pci-bridge,id=" VM_HOTPLUG_BUS ",bus=pcie.0,addr=0x0e"
#define VM_MACHINE_LAYOUT VM_MACHINE "; " VM_HOTPLUG_BRIDGE "; nic k at 0x10+k, disk k at 0x18+k"
#define VM_NIC_SLOT(k)    (0x10 + (k))
#define VM_DISK_SLOT(k)   (0x18 + (k))

#define VM_MAX_NICS 8

typedef struct VmNic {
        char tap[16]; /* the TAP QEMU opens (a bridge port) */
        char mac[18];
} VmNic;

#define VM_MAX_DISKS 8

/* A disk in slot k: block node blk<k>, device disk<k> at VM_DISK_SLOT(k), its bytes from an
 * NBD export on a Unix socket (src/host/disk), or a raw file. */
typedef struct VmDisk {
        bool used;
        char serial[21];            /* what the guest reads in /sys/block/vdX/serial (at most 20) */
        char *socket, *export_name; /* NBD */
        char *file;                 /* plain: QEMU opens it itself */
        /* a hot detach waits for the guest to let go (DEVICE_DELETED) */
        VmDiskHooks hooks;
        QmpReplyFn detach_cb;
        void *detach_data;
        uv_timer_t *detach_timer;
} VmDisk;

typedef struct VmFreeze VmFreeze; /* vm_local.c */

typedef struct VmSnap {
        char *state;  /* dir/snap<N>.state */
        char *ram;    /* dir/snap<N>.ram, or the RAM file the VM mapped when the state holds RAM */
        bool own_ram; /* ram is this snapshot's copy (removed with the VM) */
} VmSnap;

/* A VM's phase: the one state of its lifecycle. Every change goes through vm_enter, which
 * asserts that it is one of these (from: to...):
 *
 *   DEFINED:    RESOLVING RESTORING            (RESTORING: a spare, vm_spare.c)
 *   RESOLVING:  BOOTING RESTORING LOADING DEFINED  (LOADING: adopting a loaded spare;
 *                                                   DEFINED: the image failed, or a stop)
 *   BOOTING:    RUNNING STOPPING EXITING EXITED
 *   RESTORING:  LOADING STOPPING EXITING EXITED
 *   LOADING:    RUNNING WARM STOPPING EXITING EXITED   (WARM: a spare)
 *   WARM:       STOPPING EXITING EXITED        (a clone adopts it: vm_adopt_spare)
 *   RUNNING:    PAUSED SAVING RESTARTING STOPPING EXITING EXITED
 *   PAUSED:     RUNNING RESTARTING STOPPING EXITING EXITED
 *   SAVING:     RUNNING STOPPING EXITING EXITED
 *   RESTARTING: RESTORING STOPPING EXITING EXITED
 *   STOPPING:   EXITING EXITED
 *   EXITING:    EXITED RESTARTING
 *   EXITED:     RESTORING
 *
 * A boot (vm_boot) or a restore (vm_restore) waits in RESOLVING..LOADING or RESTARTING; it
 * ends in boot_end: RUNNING, or its QEMU stopped. What users see (VmState) is a coarser view:
 * vm_state(). */
typedef enum VmPhase {
        PHASE_DEFINED,    /* created, nothing started */
        PHASE_RESOLVING,  /* vm_boot: the image is found or built, off the loop */
        PHASE_BOOTING,    /* QEMU boots the kernel; waiting for the agent's hello */
        PHASE_RESTORING,  /* QEMU waits to load a saved state: QMP and the agent socket first */
        PHASE_LOADING,    /* the state is loading (migrate-incoming); waiting for the agent */
        PHASE_WARM,       /* a spare: state loaded, the agent answered, vCPUs stopped */
        PHASE_RUNNING,    /* the agent answered */
        PHASE_PAUSED,     /* vCPUs stopped (vm:pause) */
        PHASE_SAVING,     /* vm_save: the guest is stopped while its state is written */
        PHASE_RESTARTING, /* vm_restore: the old QEMU is going; the new one starts once it is gone
                           */
        PHASE_STOPPING,   /* vm_stop or a failed boot: QEMU is being killed */
        PHASE_EXITING,    /* QEMU is gone; what it printed is still being read */
        PHASE_EXITED,
} VmPhase;

void vm_enter(Vm *vm, VmPhase next);
const char *vm_phase_name(VmPhase p);

struct Vm {
        uv_loop_t *loop;
        char *name;
        char *dir; /* run_dir/name: sockets */
        VmPhase phase;
        uv_process_t *proc; /* freed by its close callback; NULL once QEMU is gone */
        uv_pipe_t *out;     /* QEMU stdout: the serial console */
        uv_pipe_t *err;     /* QEMU stderr */
        uv_pipe_t *in;      /* QEMU stdin: input to the serial console */
        uv_timer_t *press;  /* re-presses the power button until the guest is off */
        int presses;
        /* vm_expect_exit: the next exit does not fail the test. Not a phase: the VM runs (or
         * is paused) as before until the guest powers off. */
        bool exit_wanted;
        void (*exit_fn)(Vm *, void *);
        void *exit_data;
        void (*console_fn)(void *, const char *, size_t);
        void *console_data;
        int handles_open; /* proc + pipes still to close */
        uint64_t live_mb; /* what this VM's QEMU adds to vm_live_totals while it runs */
        unsigned live_vcpus;
        Qmp *qmp;
        AgentClient *agent;
        AgentClient *workers[VM_MAX_WORKERS + 1]; /* [1..nworkers] once connected */
        int nworkers;                             /* worker ports QEMU has */
        int next_worker;
        uv_timer_t *boot_timer;
        uint64_t boot_started_ns;
        char *image_name;
        Image *image; /* kernel, initrd and command line of the first boot; restores reuse them */
        struct ImageJob *resolving; /* the image being resolved off the loop (RESOLVING) */
        VmConfig cfg;    /* the first boot's configuration, strings owned (vm_config_copy) */
        char *ram_path;  /* the file behind guest RAM */
        bool ram_shared; /* ram_path is the VM's own (share=on); else a saved RAM file mapped COW */
        int incoming_fd; /* a saved state the next QEMU loads (its fd 3); else -1 */
        bool incoming_has_ram;   /* that state carries RAM (saved from a COW VM) */
        AgentRequest clock_req;  /* a fixture restore sets the guest's clock before it is ready */
        VmNic nics[VM_MAX_NICS]; /* in attach order; NIC k is at VM_NIC_SLOT(k) */
        int nnics;
        VmDisk disks[VM_MAX_DISKS];
        VmSnap *snaps; /* vm_snapshot's saves, id = index + 1 */
        unsigned nsnaps;
        AgentClient **retired; /* clients of the states before restores; freed with the VM */
        size_t nretired;
        uint64_t restore_started_ns;
        uint64_t spawned_ns, qmp_ns, running_ns, answered_ns; /* a restore's phases */
        char *restore_label;
        char *disks_from; /* the saved state whose disks a restore's new QEMU gets */
        bool local;       /* --vmm local (vm_local.c): no QEMU, no kernel of its own */
        bool spare;       /* started ahead for a fixture's next clone (vm_spare.c) */
        bool warming_up;  /* a spare's warm-up command is in flight (warm_req) */
        AgentRequest warm_req;
        const char *spare_phase; /* the phase of the spare this restore adopted, for vm.restore */
        char *cgroup;            /* a local VM's cgroup v2 directory (vm_local.c), or NULL */
        struct VmFreeze *freeze; /* a local VM's pause or resume under way */

        char *console; /* first CONSOLE_MAX bytes */
        size_t console_len;
        char tail[CONSOLE_TAIL]; /* ring of the last bytes */
        size_t tail_total;       /* bytes ever written to the ring */
        bool console_eof;        /* QEMU's stdout reached its end */
        char qemu_err[QEMU_ERR_MAX];
        size_t qemu_err_len;

        int qemu_pid; /* the QEMU of the last vm.spawn (for vm.exit) */
        /* The last exit of QEMU, recorded when it happens. */
        int64_t exit_status;
        int term_signal;
        bool exit_expected; /* stopped, restarted, or wanted (exit_wanted) */
        char *death;

        VmBootFn boot_cb; /* the boot or restore waiting (may be NULL: a spare) */
        void *boot_data;
        VmDeathFn death_cb;
        void *death_data;
        void (*stop_cb)(Vm *, void *);
        void *stop_data;
};

/* vm_disk.c: a QMP event about a disk's device; QEMU's exit (a detach waiting ends: done);
 * the disks' slots emptied when the VM is freed. (Their command line is vm_argv.c's.) */
void vm_disk_qmp_event(Vm *vm, const char *event, json_t *data);
void vm_disks_qemu_gone(Vm *vm);
/* The disks' part of a save (their bytes beside state) and of a restore from one. */
int vm_disks_saved(Vm *vm, const char *state, char *err, size_t errlen);
void vm_disks_restoring(Vm *vm, const char *state);
void vm_disks_free(Vm *vm);

/* {"capabilities": [{"capability": "x-ignore-shared", "state": true}]} for QMP. */
json_t *vm_ignore_shared_args(int on);
/* Copies src to a new file dst, data extents only (holes stay holes). */
int vm_copy_sparse(const char *src, const char *dst, uint64_t *ret_bytes);

/* vm.c: a QEMU VM booted with hotplug = false takes no PCI device after boot: err says so for
 * what (attach, attach_disk NAME...) and -EPERM is returned; 0 when it can (also before boot). */
int vm_check_hotplug(const Vm *vm, const char *what, char *err, size_t errlen);

/* ---- vm_argv.c ---- */

/* A growing argv; error is set (-ENOMEM) on the first failure and later additions are no-ops. */
typedef struct Argv {
        char **v;
        size_t n, cap;
        int error;
} Argv;

/* Fills a with the command that starts vm's QEMU (through `provium __pdeathsig`) for cfg and
 * img. Returns 0 or a->error. */
int vm_build_argv(Vm *vm, const VmConfig *cfg, const Image *img, Argv *a);
void vm_argv_free(Argv *a);

/* ---- vm.c: handles, the exit of QEMU ---- */

void vm_close_handle(Vm *vm, uv_handle_t *h);
void vm_on_qemu_exit(uv_process_t *p, int64_t status, int term_signal);
/* QEMU started: its RAM and vCPUs count in vm_live_totals until it exits. */
void vm_count_live(Vm *vm);
/* ... and no more: it is being stopped (a spare given up for room), its RAM counts as free. */
void vm_uncount_live(Vm *vm);
void vm_emit_exit(Vm *vm);
/* The directory of vm's RAM file (QEMU VMs) into dir, and the MiB free on its file system;
 * -errno when there is none or it cannot be told. */
int vm_ram_room(const Vm *vm, char *dir, size_t dirlen, unsigned long long *ret_free_mb);
/* QEMU is gone and its console drained: the exit is finished (or the restart goes on). */
void vm_exit_progress(Vm *vm);
/* Kills QEMU, if it runs, for a boot that failed: STOPPING, then EXITED by its exit. */
void vm_halt(Vm *vm);

/* ---- vm_boot.c ---- */

bool vm_spare_can_serve(const Vm *vm);

#define DEFAULT_BOOT_MS 120000 /* a boot's timeout when the configuration gives none */

/* A fixture clone's guest answers (its agent's hello, or a warm spare resumed): its clock is
 * set, then the restore ends. */
void vm_restore_answered(Vm *vm);
/* Ends the boot or restore waiting: RUNNING (status 0), else QEMU is halted; then its
 * callback. */
void vm_boot_end(Vm *vm, int status, const char *msg);
/* Starts QEMU for vm->cfg and vm->image (booting, or loading vm->incoming_fd) and waits for
 * the agent: BOOTING or RESTORING. On failure QEMU is halted and err says why; the waiting
 * callback is left to the caller. */
int vm_launch(Vm *vm, char *err, size_t errlen);
/* The vm.spawn event; argv: the command line vm_build_argv made (its QEMU part goes in the
 * event), or NULL when not known (a VM adopting a spare). */
void vm_emit_spawn(Vm *vm, const VmConfig *cfg, int pid, char *const *argv);
int vm_spawn_qemu(Vm *vm, char **argv);
int vm_start_qmp(Vm *vm, uint64_t timeout_ms);
int vm_start_agent(Vm *vm, uint64_t timeout_ms);
int vm_start_boot_timer(Vm *vm, uint64_t timeout_ms);
int vm_set_ram(Vm *vm, const char *path, bool shared);
int vm_open_incoming(Vm *vm, const char *path, const char *label, char *err, size_t errlen);

/* ---- vm_console.c ---- */

/* Starts reading QEMU's stdout (the console) and stderr. */
int vm_console_start(Vm *vm);

/* ---- vm_restore.c ---- */

/* QEMU has exited during a restart: start the one that loads the saved state. */
void vm_finish_restart(Vm *vm);

/* ---- vm_local.c ---- */

/* In a local VM's run directory: its init's PID, written by the keeper (local_sandbox.c). */
#define VM_LOCAL_PID_FILE "init.pid"

/* Starts a local VM's sandbox (local_sandbox.c) for vm->cfg and vm->image and waits for its
 * agent: BOOTING. On failure it is halted and err says why, as vm_launch. */
int vm_local_launch(Vm *vm, char *err, size_t errlen);
/* Freezes (pause) or thaws (resume) the local VM's cgroup; cb(data, status, NULL) runs from the
 * loop once every process in it has stopped or runs again. -ENOTSUP without a cgroup. */
int vm_local_freeze(Vm *vm, bool frozen, QmpReplyFn cb, void *data);
/* A local VM's keeper has exited: whatever is left in its cgroup is killed now (it would
 * hold the console's pipes open). */
void vm_local_exited(Vm *vm);
/* The local VM has exited: a freeze waiting fails, what is left in its cgroup is killed and the
 * cgroup removed. */
void vm_local_gone(Vm *vm);

/* ---- vm_power.c ---- */

void vm_stop_pressing(Vm *vm);

/* ---- vm_spare.c ---- */

/* A live spare with cfg's configuration (removed from the pool), a warm one first, or NULL. */
Vm *vm_take_spare(const VmConfig *cfg);
/* vm takes over spare s's QEMU, connections and state file; s is freed. */
int vm_adopt_spare(Vm *vm, Vm *s, char *err, size_t errlen);
/* Starts spares like `like` (a fixture clone just restored) until its pool is full. */
void vm_prelaunch(Vm *like);
/* A spare's agent answered: it runs one command, its vCPUs are stopped, and it waits WARM for
 * a clone. */
void vm_spare_park(Vm *s);
