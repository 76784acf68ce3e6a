/* vm_internal.h: the Vm structure, shared by vm.c (lifecycle) and vm_snapshot.c (save). */
#pragma once

#include "image.h"
#include "vm.h"

#define CONSOLE_MAX  (8u << 20) /* console bytes kept; later output only updates the tail */
#define CONSOLE_TAIL 8192
#define QEMU_ERR_MAX 4096

#define VM_MAX_NICS 8

typedef struct VmNic {
        char tap[16]; /* the TAP QEMU opens (a bridge port) */
        char mac[18];
} VmNic;

typedef struct VmSnap {
        char *state;  /* dir/snap<N>.state */
        char *ram;    /* dir/snap<N>.ram, or the RAM file the VM mapped when the state holds RAM */
        bool own_ram; /* ram is this snapshot's copy (removed with the VM) */
} VmSnap;

struct Vm {
        uv_loop_t *loop;
        char *name;
        char *dir; /* run_dir/name: sockets */
        VmState state;
        uv_process_t *proc; /* freed by its close callback */
        uv_pipe_t *out;     /* QEMU stdout: the serial console */
        uv_pipe_t *err;     /* QEMU stderr */
        uv_pipe_t *in;      /* QEMU stdin: input to the serial console */
        uv_timer_t *press;  /* re-presses the power button until the guest is off */
        int presses;
        bool exit_wanted; /* vm_expect_exit: the next exit does not fail the test */
        void (*exit_fn)(Vm *, void *);
        void *exit_data;
        void (*console_fn)(void *, const char *, size_t);
        void *console_data;
        int handles_open; /* proc + pipes still to close */
        Qmp *qmp;
        AgentClient *agent;
        AgentClient *workers[VM_MAX_WORKERS + 1]; /* [1..nworkers] once connected */
        int nworkers;                             /* worker ports QEMU has */
        int next_worker;
        uv_timer_t *boot_timer;
        uint64_t boot_started_ns;
        char *image_name;
        Image *image; /* kernel, initrd and command line of the first boot; restores reuse them */
        struct ImageJob *resolving; /* the image being resolved off the loop (vm_boot) */
        VmConfig cfg;    /* the first boot's configuration, strings owned (config_copy) */
        char *ram_path;  /* the file behind guest RAM */
        bool ram_shared; /* ram_path is the VM's own (share=on); else a saved RAM file mapped COW */
        int incoming_fd; /* a saved state QEMU loads once the agent socket is connected; else -1 */
        bool qmp_up, agent_up, incoming_sent;
        bool sync_clock;         /* a fixture restore: set the guest's clock once it answers */
        AgentRequest clock_req;  /* that request */
        bool incoming_has_ram;   /* the state being loaded carries RAM (saved from a COW VM) */
        bool restarting;         /* vm_restore is replacing QEMU: its exit is part of the restore */
        bool restoring;          /* the current QEMU loads a saved state (boot means restore) */
        bool saving;             /* vm_save in progress */
        VmNic nics[VM_MAX_NICS]; /* in attach order; NIC k is PCI slot 0x10 + k */
        int nnics;
        VmSnap *snaps; /* vm_snapshot's saves, id = index + 1 */
        unsigned nsnaps;
        AgentClient **retired; /* clients of the states before restores; freed with the VM */
        size_t nretired;
        uint64_t restore_started_ns;
        uint64_t spawned_ns, qmp_ns, running_ns, answered_ns; /* a restore's phases */
        char *restore_label;

        char *console; /* first CONSOLE_MAX bytes */
        size_t console_len;
        char tail[CONSOLE_TAIL]; /* ring of the last bytes */
        size_t tail_total;       /* bytes ever written to the ring */
        char qemu_err[QEMU_ERR_MAX];
        size_t qemu_err_len;

        bool console_eof;
        bool exit_pending;  /* QEMU gone, console not drained yet */
        bool exit_expected; /* vm_stop asked for it */
        int64_t exit_status;
        int term_signal;
        char *death;

        VmBootFn boot_cb;
        void *boot_data;
        VmDeathFn death_cb;
        void *death_data;
        void (*stop_cb)(Vm *, void *);
        void *stop_data;
};

/* {"capabilities": [{"capability": "x-ignore-shared", "state": true}]} for QMP. */
json_t *vm_ignore_shared_args(int on);
/* Copies src to a new file dst, data extents only (holes stay holes). */
int vm_copy_sparse(const char *src, const char *dst, uint64_t *ret_bytes);

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

/* ---- vm.c, for vm_spare.c ---- */

#define DEFAULT_BOOT_MS 120000 /* a boot's timeout when the configuration gives none */

void vm_close_handle(Vm *vm, uv_handle_t *h);
int vm_config_copy(VmConfig *dst, const VmConfig *src);
/* The vm.spawn event; argv: the command line vm_build_argv made (its QEMU part goes in the
 * event), or NULL when not known (a VM adopting a spare). */
void vm_emit_spawn(Vm *vm, const VmConfig *cfg, int pid, char *const *argv);
int vm_spawn_qemu(Vm *vm, char **argv);
int vm_start_qmp(Vm *vm, uint64_t timeout_ms);
int vm_start_agent(Vm *vm, uint64_t timeout_ms);
int vm_start_boot_timer(Vm *vm, uint64_t timeout_ms);
int vm_set_ram(Vm *vm, const char *path, bool shared);
int vm_open_incoming(Vm *vm, const char *path, const char *label, char *err, size_t errlen);

/* ---- vm_spare.c ---- */

/* A started spare QEMU with cfg's configuration (removed from the pool), or NULL. */
Vm *vm_take_spare(const VmConfig *cfg);
/* vm takes over spare s's QEMU, connections and state file; s is freed. */
int vm_adopt_spare(Vm *vm, Vm *s, char *err, size_t errlen);
/* Starts a spare like `like` (a fixture clone just restored), unless one is there. */
void vm_prelaunch(Vm *like);
