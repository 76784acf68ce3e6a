/* accel.h: choosing the accelerator. --accel auto takes KVM only after the image's own kernel
 * has booted under it far enough to prove it (accel_probe.c); the verdict is cached per host
 * boot, QEMU and kernel (accel_cache.c); accel.c holds the policy and what the run says. */
#pragma once

#include "cachedir.h"

#include <stdbool.h>
#include <stdint.h>

#include "image.h"

#define ACCEL_PROBE_TIMEOUT_S 8.0 /* KVM boots the default kernel to init in well under 1 s */

/* What the probe boots: the QEMU program and the image's kernel, initrd and command line. */
typedef struct AccelProbeTarget {
        const char *qemu;
        const char *kernel;
        const char *initrd; /* may be NULL */
        const char *cmdline;
} AccelProbeTarget;

typedef struct AccelProbe {
        bool ok;          /* the kernel reached init under KVM */
        bool definite;    /* the outcome is about KVM (not QEMU failing to start, out of
                           * memory or killed): only such verdicts are cached */
        double seconds;   /* how long the probe took */
        double timeout_s; /* the bound it ran under */
        char reason[512]; /* one line: what it saw (printable ASCII) */
} AccelProbe;

/* Boots t under KVM once, through `self __pdeathsig`, for at most timeout_s seconds, and says
 * whether the marker of the agent's probe mode appeared on the console. Leaves no process or
 * file behind. Returns 0 with *ret filled, or -errno when the probe could not be run. */
int accel_probe_boot(const char *self, const AccelProbeTarget *t, double timeout_s,
                     AccelProbe *ret);

/* ---- the verdict cache (accel_cache.c) ---- */

typedef struct AccelVerdict {
        char key[33];      /* what it is valid for (accel_key) */
        bool kvm;          /* KVM runs the kernel */
        char reason[512];  /* the probe's reason */
        int64_t probed_at; /* wall clock, seconds */
        double seconds;    /* how long the probe took */
        double timeout_s;  /* the bound it ran under */
        char qemu[4096];   /* for provium doctor: what was probed */
        char kernel[4096];
} AccelVerdict;

/* The verdict of probe p of t (its bound included), for key (may be NULL: not to be stored). */
void accel_verdict_of(const AccelProbeTarget *t, const AccelProbe *p, const char *key,
                      AccelVerdict *ret);

/* The verdict's key: the host's boot id, the QEMU program (path, inode, size, mtime) and the
 * kernel: the SHA256 of its package from the manifest in image_dir (may be NULL), else the
 * kernel file's content. Returns 0 or -errno (a missing QEMU or kernel). */
int accel_key(const char *qemu, const char *kernel, const char *image_dir, char out[33]);

/* Loads the verdict stored for key. Returns 0, -ENOENT when there is none, -EBADMSG when the
 * file is not a valid verdict for that key (it is then ignored), or another -errno. */
int accel_verdict_load(const char *key, AccelVerdict *ret);

/* Stores v (atomically: a temp file renamed over the old one) and removes verdicts written
 * before this host booted. Returns 0 or -errno. */
int accel_verdict_store(const AccelVerdict *v);

/* Where verdicts live ($CACHE/accel), or NULL when the cache directory is unusable. */
const char *accel_cache_dir(void);

/* Takes the probe's lock ($CACHE/accel/probe.lock, cachedir.h's protocol), so that
 * concurrent runs probe once: 0 with *ret held (release it with cachedir_lock_release), or
 * -errno. Prints one line when it has to wait. */
int accel_lock(CacheLock *ret);

/* ---- the policy (accel.c) ---- */

/* Probes t now, under the probe lock, and stores the verdict under key (NULL: no cache) when
 * it is about KVM (AccelProbe.definite). With reuse, a usable verdict that another run stored
 * while this one waited for the lock is taken instead. Returns 0 with *ret_v (*ret_probed:
 * a probe ran; *ret_stored: its verdict is in the cache), or -errno when QEMU could not run. */
int accel_probe_store(const char *self, const AccelProbeTarget *t, const char *key, bool reuse,
                      bool *ret_probed, bool *ret_stored, AccelVerdict *ret_v);

typedef struct AccelChoice {
        const char *accel; /* "kvm" or "tcg" */
        bool probed;       /* a probe ran now (not cached) */
        bool cached;       /* the verdict came from the cache */
        bool against_kvm;  /* why is about KVM (the probe's verdict, /dev/kvm not opening),
                            * not a local failure to probe */
        char why[600];     /* when KVM was wanted and is not used (or, for kvm, not usable) */
        bool kvm_unusable; /* --accel kvm and KVM cannot run the kernel: the runners are told
                            * why, and their boots of it fail at once */
} AccelChoice;

/* Resolves --accel want ("auto", "kvm" or "tcg") for a run that boots img (may be NULL when
 * the default image could not be resolved). Says once on stderr why KVM is not used (and
 * when a probe could not use the cache, or waits for another's), emits an accel.choose
 * event. With want "kvm" and a KVM that does not run the kernel, the choice is still "kvm"
 * and kvm_unusable is set: the dispatcher hands why to the file runners, whose boots then fail
 * at once; when the probe itself could not run, KVM is used as asked. Returns 0, or -EINVAL for
 * a bad want (after saying so). */
int accel_choose(const char *want, const char *self, const Image *img, bool verbose,
                 AccelChoice *ret);

/* The device KVM is opened at: $PROVIUM_KVM_DEVICE (tests), else /dev/kvm. */
const char *accel_kvm_device(void);

/* The probe's bound in seconds: $PROVIUM_KVM_PROBE_TIMEOUT, else ACCEL_PROBE_TIMEOUT_S. */
double accel_probe_timeout(void);
