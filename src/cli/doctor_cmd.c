/* doctor_cmd.c: `provium doctor [--reprobe]`: what this host gives a run, and why: the KVM
 * device, QEMU, the kernel the probe boots, the cached KVM verdict with its reason and age,
 * and what --accel auto will therefore use.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "accel.h"
#include "qemu.h"
#include "cli.h"
#include "image.h"
#include "paths.h"

static void print_age(long s)
{
        if (s < 120)
                printf("%ld s ago", s < 0 ? 0 : s);
        else if (s < 7200)
                printf("%ld min ago", s / 60);
        else
                printf("%ld h ago", s / 3600);
}

static void print_qemu(const char *qemu)
{
        char err[512];
        const char *v = qemu_version(err, sizeof err);
        printf("QEMU          %s (%s)\n", qemu, v ? v : err);
}

/* Probes now and stores the verdict; returns 0 or -errno. */
static int reprobe(const char *qemu, const Image *img, const char *key)
{
        char self[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n < 0)
                return -errno;
        self[n] = 0;
        AccelProbeTarget t = {
            .qemu = qemu, .kernel = img->kernel, .initrd = img->initrd, .cmdline = img->cmdline};
        printf("probing       booting the kernel under KVM (at most %.0f s)...\n",
               accel_probe_timeout());
        fflush(stdout);
        bool probed, stored;
        AccelVerdict v;
        int r = accel_probe_store(self, &t, key, false, &probed, &stored, &v);
        if (r == 0 && !stored)
                printf("probe         %s: %s (not cached: not about KVM)\n",
                       v.kvm ? "KVM works" : "KVM not used", v.reason);
        return r;
}

static void print_verdict(const char *key)
{
        AccelVerdict v;
        int r = accel_verdict_load(key, &v);
        if (r < 0) {
                printf("KVM verdict   %s (a run with --accel auto probes first; so does "
                       "provium doctor --reprobe)\n",
                       r == -ENOENT ? "not probed yet for this host boot, QEMU and kernel"
                                    : "unreadable, will be probed again");
                return;
        }
        printf("KVM verdict   %s: %s\n", v.kvm ? "KVM works" : "KVM does not run the kernel",
               v.reason);
        printf("              probed ");
        print_age((long) (time(NULL) - v.probed_at));
        printf(", the probe took %.2f s; %s/%s.verdict\n", v.seconds, accel_cache_dir(), key);
        printf("--accel auto  uses %s\n", v.kvm ? "KVM" : "TCG (software emulation)");
}

int doctor_cmd_main(int argc, char **argv)
{
        bool again = argc == 2 && strcmp(argv[1], "--reprobe") == 0;
        if (argc > 2 || (argc == 2 && !again)) {
                fprintf(stderr, "usage: provium doctor [--reprobe]\n");
                return 2;
        }
        const char *cache = paths_cache_dir();
        if (cache)
                printf("cache         %s\n", cache);
        else
                printf("cache         %s: %s\n", paths_cache_dir_wanted(),
                       paths_cache_dir_error(errno));
        printf("data          %s (image builders, types, documents)\n", paths_source_dir());
        printf("agent         %s%s\n", paths_agent(),
               access(paths_agent(), R_OK) == 0 ? "" : ": missing");
        char qemu[PATH_MAX];
        bool have_qemu = qemu_find(qemu, sizeof qemu) == 0;
        if (have_qemu)
                print_qemu(qemu);
        else
                printf("QEMU          %s: not found (scripts/bootstrap installs it)\n", qemu);
        const char *dev = accel_kvm_device();
        int fd = open(dev, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                printf("KVM device    %s: %s\n", dev, strerror(errno));
                printf("--accel auto  uses TCG (software emulation), without a probe\n");
                return 0;
        }
        (void) close(fd);
        printf("KVM device    %s: opens\n", dev);
        char err[4096];
        Image *img = NULL;
        if (image_resolve("default", NULL, &img, err, sizeof err) < 0) {
                printf("kernel        none: %s\n", err);
                return 1;
        }
        printf("kernel        %s (the default image's, which the probe boots)\n", img->kernel);
        char key[33];
        int r = have_qemu ? accel_key(qemu, img->kernel, img->dir, key) : -ENOENT;
        if (r < 0) {
                printf("KVM verdict   no cache key: %s\n", strerror(-r));
                image_free(img);
                return 1;
        }
        if (again && (r = reprobe(qemu, img, key)) < 0)
                printf("probe         failed: %s; what follows is the previous verdict\n",
                       strerror(-r));
        print_verdict(key);
        image_free(img);
        return r < 0 ? 1 : 0;
}
