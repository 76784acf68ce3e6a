/* vm_local.c: a local VM (--vmm local): no kernel of its own, the image's agent as PID 1 of
 * namespaces on the host (local_sandbox.c makes them), reached over Unix sockets in the VM's
 * run directory as a QEMU VM's agent is. Everything above the transport is the QEMU VM's code:
 * the phases, the boot timer, the agent and worker connections, the exit.
 *
 * Its processes live in a cgroup v2 of their own, beside the runner's: pause and resume
 * freeze and thaw it, and when the VM goes every process left in it is killed and the cgroup
 * removed. A runner killed outright leaves the cgroup empty; the dispatcher removes it
 * (vm_local_sweep).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "events.h"
#include "strfmt.h"
#include "vm_internal.h"

#define CGROUP_PREFIX    "provium-vm-" /* provium-vm-<runner pid>-<n> */
#define FREEZE_POLL_MS   1
#define FREEZE_WAIT_MS   5000
#define CGROUP_RMDIR_TRY 200 /* 1 ms apart: the processes killed must be gone first */

bool vm_is_local(const Vm *vm)
{
        return vm->local;
}

bool vm_local_can_freeze(const Vm *vm)
{
        return !vm->local || vm->cgroup || vm_state(vm) == VM_DEFINED;
}

void vm_set_local(Vm *vm, bool local)
{
        vm->local = local;
}

/* ---- the cgroup ---- */

/* The cgroup v2 directory this process is in ("" when there is none it can write). */
static const char *own_cgroup(void)
{
        static char dir[8192];
        static bool looked;
        if (looked)
                return dir;
        looked = true;
        char mnt[2048] = "", line[4096], rel[4096] = "";
        FILE *f = fopen("/proc/self/mountinfo", "re");
        while (f && fgets(line, sizeof line, f)) {
                char point[2048];
                const char *sep = strstr(line, " - cgroup2 ");
                if (sep && sscanf(line, "%*s %*s %*s %*s %2047s", point) == 1) {
                        snprintf(mnt, sizeof mnt, "%s", point);
                        break;
                }
        }
        if (f)
                (void) fclose(f);
        f = fopen("/proc/self/cgroup", "re");
        while (f && fgets(line, sizeof line, f))
                if (strncmp(line, "0::", 3) == 0) {
                        line[strcspn(line, "\n")] = 0;
                        snprintf(rel, sizeof rel, "%s", line + 3);
                }
        if (f)
                (void) fclose(f);
        if (mnt[0])
                snprintf(dir, sizeof dir, "%s%s", mnt, strcmp(rel, "/") == 0 ? "" : rel);
        if (dir[0] && access(dir, W_OK) < 0)
                dir[0] = 0;
        return dir;
}

static int write_text(const char *dir, const char *file, const char *text)
{
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, file);
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = write(fd, text, strlen(text));
        int r = n == (ssize_t) strlen(text) ? 0 : n < 0 ? -errno : -EIO;
        (void) close(fd);
        return r;
}

/* Kills what is left in the cgroup and removes it. Returns 0 or -errno. */
static int cgroup_remove(const char *dir)
{
        (void) write_text(dir, "cgroup.kill", "1");
        for (int i = 0; i < CGROUP_RMDIR_TRY; i++) {
                if (rmdir(dir) == 0 || errno == ENOENT)
                        return 0;
                if (errno != EBUSY)
                        return -errno;
                struct timespec ts = {0, 1000000};
                (void) nanosleep(&ts, NULL);
        }
        return -EBUSY;
}

static int cgroup_create(Vm *vm)
{
        static unsigned made;
        const char *base = own_cgroup();
        if (!base[0])
                return 0; /* no cgroup: pause and resume will say so */
        vm->cgroup = xasprintf("%s/" CGROUP_PREFIX "%d-%u", base, (int) getpid(), ++made);
        if (!vm->cgroup)
                return -ENOMEM;
        if (mkdir(vm->cgroup, 0755) == 0)
                return 0;
        int r = -errno;
        free(vm->cgroup);
        vm->cgroup = NULL;
        return r;
}

void vm_local_exited(Vm *vm)
{
        if (vm->cgroup)
                (void) write_text(vm->cgroup, "cgroup.kill", "1");
}

static void freeze_end(Vm *vm, int status);

/* The sandbox's mount points in the VM's run directory. A directory that is a mount point in
 * any namespace cannot be removed: the VM's mount namespace goes with the last of its
 * processes, a moment after its init (they are killed, not waited for), so wait for that. */
static void remove_mount_points(const Vm *vm)
{
        static const char *const points[] = {"root", "rw"};
        for (size_t i = 0; i < sizeof points / sizeof *points; i++) {
                char path[4200];
                snprintf(path, sizeof path, "%s/%s", vm->dir, points[i]);
                for (int k = 0; k < CGROUP_RMDIR_TRY * 5 && rmdir(path) < 0 && errno == EBUSY;
                     k++) {
                        struct timespec ts = {0, 1000000};
                        (void) nanosleep(&ts, NULL);
                }
        }
}

void vm_local_gone(Vm *vm)
{
        if (vm->freeze)
                freeze_end(vm, -ECONNRESET);
        if (vm->local && vm->dir)
                remove_mount_points(vm);
        if (!vm->cgroup)
                return;
        (void) cgroup_remove(vm->cgroup);
        free(vm->cgroup);
        vm->cgroup = NULL;
}

void vm_local_sweep_stale(void)
{
        const char *base = own_cgroup();
        DIR *d = base[0] ? opendir(base) : NULL;
        struct dirent *e;
        while (d && (e = readdir(d))) {
                int pid;
                unsigned n;
                char dir[8192 + 256 + 2];
                if (sscanf(e->d_name, CGROUP_PREFIX "%d-%u", &pid, &n) != 2 || pid <= 0 ||
                    kill(pid, 0) == 0 || errno != ESRCH)
                        continue;
                snprintf(dir, sizeof dir, "%s/%s", base, e->d_name);
                (void) cgroup_remove(dir);
        }
        if (d)
                (void) closedir(d);
}

void vm_local_sweep(int runner_pid)
{
        const char *base = own_cgroup();
        char prefix[64], dir[8400];
        snprintf(prefix, sizeof prefix, CGROUP_PREFIX "%d-", runner_pid);
        for (unsigned n = 1; base[0]; n++) {
                snprintf(dir, sizeof dir, "%s/%s%u", base, prefix, n);
                if (access(dir, F_OK) < 0)
                        break; /* numbered from 1 in creation order */
                (void) cgroup_remove(dir);
        }
}

/* ---- pause and resume ---- */

/* A freeze or thaw under way: cgroup.events says when every process has stopped (or runs). */
struct VmFreeze {
        uv_timer_t timer; /* first: closing it frees the whole (vm_close_handle); data is vm */
        bool frozen;
        QmpReplyFn cb;
        void *data;
        uint64_t waited_ms;
};

static bool freeze_done(const Vm *vm, bool frozen)
{
        char path[4200], line[128];
        snprintf(path, sizeof path, "%s/cgroup.events", vm->cgroup);
        FILE *e = fopen(path, "re");
        bool done = false;
        while (e && fgets(line, sizeof line, e))
                if (strncmp(line, "frozen ", 7) == 0)
                        done = (line[7] == '1') == frozen;
        if (e)
                (void) fclose(e);
        return done;
}

static void freeze_end(Vm *vm, int status)
{
        VmFreeze *f = vm->freeze;
        vm->freeze = NULL;
        uv_timer_stop(&f->timer);
        f->cb(f->data, status, NULL);
        vm_close_handle(vm, (uv_handle_t *) &f->timer);
}

static void on_freeze_poll(uv_timer_t *t)
{
        Vm *vm = t->data;
        VmFreeze *f = vm->freeze;
        f->waited_ms += FREEZE_POLL_MS;
        if (freeze_done(vm, f->frozen))
                freeze_end(vm, 0);
        else if (f->waited_ms >= FREEZE_WAIT_MS)
                freeze_end(vm, -ETIMEDOUT);
}

int vm_local_freeze(Vm *vm, bool frozen, QmpReplyFn cb, void *data)
{
        if (!vm->cgroup)
                return -ENOTSUP;
        if (vm->freeze)
                return -EBUSY;
        int r = write_text(vm->cgroup, "cgroup.freeze", frozen ? "1" : "0");
        if (r < 0)
                return r;
        VmFreeze *f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        *f = (VmFreeze){.frozen = frozen, .cb = cb, .data = data};
        if ((r = uv_timer_init(vm->loop, &f->timer)) < 0) {
                free(f);
                return r;
        }
        f->timer.data = vm;
        vm->handles_open++;
        vm->freeze = f;
        /* the answer comes from the loop, never from inside this call */
        return uv_timer_start(&f->timer, on_freeze_poll, 0, FREEZE_POLL_MS);
}

/* ---- the init ---- */

int vm_local_init_pid(const Vm *vm)
{
        if (!vm->local || !vm->proc)
                return -ESRCH;
        char path[4200], buf[32];
        snprintf(path, sizeof path, "%s/" VM_LOCAL_PID_FILE, vm->dir);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        (void) close(fd);
        if (n <= 0)
                return -EIO;
        buf[n] = 0;
        char *end;
        long pid = strtol(buf, &end, 10);
        return *end == '\n' && pid > 1 && pid < (1L << 22) ? (int) pid : -EINVAL;
}

/* ---- the launch ---- */

int vm_local_launch(Vm *vm, char *err, size_t errlen)
{
        char *tree = NULL, why[1024];
        int r = image_tree(vm->image, &tree, why, sizeof why);
        if (r < 0) {
                seterr(err, errlen, "vm %s: boot: %s", vm->name, why);
                return r;
        }
        if ((r = cgroup_create(vm)) < 0) {
                seterr(err, errlen, "vm %s: boot: a cgroup for the local VM: %s", vm->name,
                       strerror(-r));
                free(tree);
                return r;
        }
        int nworkers = vm->cfg.workers >= 0 ? vm->cfg.workers : 4;
        vm->nworkers = nworkers;
        char ppid[24], mb[24], nsock[24];
        snprintf(ppid, sizeof ppid, "%ld", (long) getpid());
        snprintf(mb, sizeof mb, "%llu", (unsigned long long) vm_config_memory_mb(&vm->cfg));
        snprintf(nsock, sizeof nsock, "%d", nworkers + 1);
        /* __local-vm sets its own parent-death signal: one exec, of provium-vm when it is beside
         * provium (vm_wrap.c) */
        char *argv[] = {(char *) vm_program(),        "__local-vm", ppid,  vm->dir, tree, vm->name,
                        vm->cgroup ? vm->cgroup : "", mb,           nsock, NULL};
        uint64_t timeout_ms = vm->cfg.timeout_ms ? vm->cfg.timeout_ms : DEFAULT_BOOT_MS;
        r = vm_spawn_qemu(vm, argv);
        if (r == 0) {
                vm_enter(vm, PHASE_BOOTING);
                vm->spawned_ns = events_mono_ns();
                vm_emit_spawn(vm, &vm->cfg, vm->proc->pid, argv);
                r = vm_start_agent(vm, timeout_ms);
        }
        if (r == 0)
                r = vm_start_boot_timer(vm, timeout_ms);
        if (r < 0) {
                seterr(err, errlen, "vm %s: boot: starting the local VM: %s", vm->name,
                       strerror(-r));
                if (vm->proc)
                        vm_halt(vm);
        }
        free(tree);
        return r;
}
