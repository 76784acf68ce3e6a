/* accel.c: choosing the accelerator. --accel auto takes KVM only when a probe guest really
 * runs under it: on some hosts /dev/kvm opens but guests hang (see docs/design.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

extern char **environ;

/* The probe: a 64 KiB BIOS whose reset vector writes 0x2a to the isa-debug-exit port, so
 * QEMU exits with status (0x2a << 1) | 1 = 85 when the guest executes one instruction. */
static int write_probe_bios(const char *path)
{
        static unsigned char bios[65536];
        static const unsigned char code[] = {0xb0, 0x2a, 0xe6, 0xf4, 0xf4, 0xeb, 0xfd};
        memset(bios, 0xf4, sizeof bios); /* hlt */
        memcpy(bios + 0xfff0, code, sizeof code);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
                return -errno;
        ssize_t w = write(fd, bios, sizeof bios);
        int r = w == (ssize_t) sizeof bios ? 0 : -EIO;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        return r;
}

/* Returns 1 when a guest ran under accel within 5 s, 0 when not, -errno on a local failure. */
int accel_probe(const char *accel)
{
        char dir[] = "/tmp/provium-probe-XXXXXX";
        if (!mkdtemp(dir))
                return -errno;
        char bios[64], machine[64];
        snprintf(bios, sizeof bios, "%s/bios.bin", dir);
        snprintf(machine, sizeof machine, "pc,accel=%s", accel);
        int r = write_probe_bios(bios);
        pid_t pid = -1;
        if (r == 0) {
                const char *q = getenv("PROVIUM_QEMU");
                char *argv[] = {(char *) (q && *q ? q : "qemu-system-x86_64"),
                                "-machine",
                                machine,
                                "-nodefaults",
                                "-display",
                                "none",
                                "-bios",
                                bios,
                                "-device",
                                "isa-debug-exit,iobase=0xf4,iosize=0x04",
                                NULL};
                posix_spawn_file_actions_t fa;
                posix_spawn_file_actions_init(&fa);
                posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
                posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
                r = -posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
                posix_spawn_file_actions_destroy(&fa);
        }
        int result = 0;
        for (int i = 0; r == 0 && i < 500; i++) {
                int st;
                pid_t w = waitpid(pid, &st, WNOHANG);
                if (w == pid) {
                        result = WIFEXITED(st) && WEXITSTATUS(st) == 85;
                        pid = -1;
                        break;
                }
                struct timespec ts = {0, 10 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }
        if (pid > 0) {
                (void) kill(pid, SIGKILL);
                (void) waitpid(pid, NULL, 0);
        }
        (void) unlink(bios);
        (void) rmdir(dir);
        return r < 0 ? r : result;
}

const char *accel_resolve(const char *accel)
{
        if (strcmp(accel, "tcg") == 0)
                return "tcg";
        if (strcmp(accel, "kvm") == 0)
                return "kvm";
        if (strcmp(accel, "auto") != 0) {
                fprintf(stderr, "provium: --accel must be auto, kvm or tcg, not '%s'\n", accel);
                return NULL;
        }
        int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                fprintf(stderr, "provium: accel: /dev/kvm: %s; using TCG (software emulation)\n",
                        strerror(errno));
                return "tcg";
        }
        (void) close(fd);
        int r = accel_probe("kvm");
        if (r == 1)
                return "kvm";
        fprintf(stderr, "provium: accel: /dev/kvm opens but a probe guest did not run under "
                        "KVM; using TCG (software emulation)\n");
        return "tcg";
}
