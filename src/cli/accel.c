/* accel.c: which accelerator a run uses, and what it says about it. --accel tcg is taken as
 * is. For auto and kvm, /dev/kvm must open, and then the image's own kernel must boot under
 * KVM to init (accel_probe.c): on some hosts /dev/kvm opens, runs a BIOS, and hangs Debian's
 * kernel (docs/design.md). The verdict is cached (accel_cache.c), so that costs one probe per
 * host boot, QEMU and kernel.
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
#include "env.h"
#include "qemu.h"
#include "events.h"

const char *accel_kvm_device(void)
{
        const char *d = env_get()->kvm_device;
        return d ? d : "/dev/kvm";
}

double accel_probe_timeout(void)
{
        static bool warned;
        const char *e = env_get()->kvm_probe_timeout;
        if (!e)
                return ACCEL_PROBE_TIMEOUT_S;
        char *end;
        double t = strtod(e, &end);
        if (!*end && t > 0 && t <= 600)
                return t;
        if (!warned)
                fprintf(stderr,
                        "provium: PROVIUM_KVM_PROBE_TIMEOUT=%s: not seconds in (0, 600]; using "
                        "%.0f\n",
                        e, ACCEL_PROBE_TIMEOUT_S);
        warned = true;
        return ACCEL_PROBE_TIMEOUT_S;
}

/* A cached verdict to reuse: any positive one, and a negative one probed with at least the
 * bound in force now (a shorter bound may have cut a slow but working KVM short). */
static bool reusable(const AccelVerdict *v)
{
        return v->kvm || v->timeout_s + 1e-9 >= accel_probe_timeout();
}

int accel_probe_store(const char *self, const AccelProbeTarget *t, const char *key, bool reuse,
                      bool *ret_probed, bool *ret_stored, AccelVerdict *ret_v)
{
        CacheLock lock = {.fd = -1};
        if (key)
                (void) accel_lock(&lock); /* without it, a concurrent run may probe too */
        AccelVerdict v;
        *ret_probed = *ret_stored = false;
        if (reuse && key && accel_verdict_load(key, &v) == 0 && reusable(&v)) {
                cachedir_lock_release(&lock);
                *ret_stored = true;
                *ret_v = v;
                return 0;
        }
        AccelProbe p = {0};
        int r = accel_probe_boot(self, t, accel_probe_timeout(), &p);
        if (r == 0) {
                accel_verdict_of(t, &p, key, &v);
                int s = key && p.definite ? accel_verdict_store(&v) : -ENOENT;
                if (s < 0 && s != -ENOENT)
                        fprintf(stderr, "provium: KVM probe: storing the verdict in %s: %s\n",
                                accel_cache_dir() ? accel_cache_dir() : "the cache", strerror(-s));
                *ret_probed = true;
                *ret_stored = s == 0;
                *ret_v = v;
        }
        cachedir_lock_release(&lock);
        return r;
}

/* Fills c for KVM wanted and /dev/kvm open, from the cache or a probe: c->why says why KVM is
 * not used, and c->against_kvm whether that is the probe's verdict (not a local failure). */
static void kvm_verdict(const char *self, const Image *img, AccelChoice *c)
{
        char qemu[PATH_MAX], key[33];
        if (!img) {
                snprintf(c->why, sizeof c->why,
                         "could not probe KVM: no default image to boot (it did not resolve)");
                return;
        }
        int q = qemu_find(qemu, sizeof qemu);
        if (q < 0) {
                snprintf(c->why, sizeof c->why, "could not probe KVM: %.300s: %s", qemu,
                         q == -ENOENT ? "not found" : strerror(-q));
                return;
        }
        int k = accel_key(qemu, img->kernel, img->dir, key);
        if (k < 0)
                fprintf(stderr,
                        "provium: KVM probe: no cache key (boot id, %s or %s: %s); probing "
                        "without the cache\n",
                        qemu, img->kernel, strerror(-k));
        AccelVerdict v = {0};
        AccelProbeTarget t = {
            .qemu = qemu, .kernel = img->kernel, .initrd = img->initrd, .cmdline = img->cmdline};
        int r = k == 0 ? accel_verdict_load(key, &v) : -ENOENT;
        bool stored;
        if (r < 0 || !reusable(&v))
                r = accel_probe_store(self, &t, k == 0 ? key : NULL, true, &c->probed, &stored, &v);
        c->cached = r == 0 && !c->probed;
        if (r < 0) {
                snprintf(c->why, sizeof c->why, "could not probe KVM: starting QEMU: %s",
                         strerror(-r));
                return;
        }
        if (v.kvm) {
                c->accel = "kvm";
                return;
        }
        c->against_kvm = true;
        long age = (long) (time(NULL) - v.probed_at);
        if (c->cached)
                snprintf(c->why, sizeof c->why, "KVM probe (cached %ld s ago; provium doctor): %s",
                         age < 0 ? 0 : age, v.reason);
        else
                snprintf(c->why, sizeof c->why, "KVM probe: %s", v.reason);
}

static void emit_choice(const char *want, const AccelChoice *c)
{
        EventBuilder ev;
        event_begin(&ev, "accel.choose", 5);
        proto_kv_str(&ev.w, "wanted", want);
        proto_kv_str(&ev.w, "accel", c->accel);
        proto_kv_bool(&ev.w, "probed", c->probed);
        proto_kv_bool(&ev.w, "cached", c->cached);
        proto_kv_str(&ev.w, "reason", c->why);
        event_end(&ev);
}

int accel_choose(const char *want, const char *self, const Image *img, bool verbose,
                 AccelChoice *ret)
{
        AccelChoice c = {.accel = "tcg"};
        if (strcmp(want, "tcg") != 0 && strcmp(want, "kvm") != 0 && strcmp(want, "auto") != 0) {
                fprintf(stderr, "provium: --accel must be auto, kvm or tcg, not '%s'\n", want);
                return -EINVAL;
        }
        if (strcmp(want, "tcg") != 0) {
                const char *dev = accel_kvm_device();
                int fd = open(dev, O_RDWR | O_CLOEXEC);
                if (fd < 0) {
                        snprintf(c.why, sizeof c.why, "cannot open %s: %s", dev, strerror(errno));
                        c.against_kvm = true;
                } else {
                        (void) close(fd);
                        kvm_verdict(self, img, &c);
                }
        }
        bool kvm = strcmp(want, "kvm") == 0;
        if (!kvm && c.why[0])
                fprintf(stderr, "provium: %s; using TCG (software emulation)\n", c.why);
        if (kvm && c.why[0] && c.against_kvm) {
                fprintf(stderr,
                        "provium: --accel kvm: %s; boots will fail (--accel auto falls back to "
                        "TCG by itself)\n",
                        c.why);
                c.kvm_unusable = true;
        } else if (kvm && c.why[0]) {
                fprintf(stderr, "provium: --accel kvm: %s; using KVM as asked\n", c.why);
        }
        if (kvm)
                c.accel = "kvm";
        if (verbose && !c.why[0] && strcmp(c.accel, "kvm") == 0)
                fprintf(stderr, "provium: using KVM (%s)\n",
                        c.cached ? "a cached verdict" : "the probe booted the kernel");
        emit_choice(want, &c);
        *ret = c;
        return 0;
}
