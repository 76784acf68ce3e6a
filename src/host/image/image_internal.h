/* image_internal.h: what image.c (resolve, build under lock, list) and image_plan.c (an
 * image's key and build command) share. */
#pragma once

#include <jansson.h>
#include <stddef.h>

#define IMAGE_LOG_LINES 20 /* lines of a failed script's output quoted in a message */

/* An image's key and the command that builds it into a directory. */
/* The default image's kernel command line, the one place it is written: the default image's
 * builder gets it as --cmdline (and writes it into the image's cmdline and manifest), a user's
 * own kernel boots with it, recipes add to it.
 * Measured under TCG (docs/images.md): crypto self-tests cost ~0.2 s of boot; other flags
 * (tsc=reliable, 8250.nr_uarts, i8042.*, mitigations=off) showed no gain. no_timer_check is
 * not for speed: on a host so loaded that TCG starves the guest, the kernel's check that the
 * IO-APIC timer ticks fails and it panics ("IO-APIC + timer doesn't work!", seen four times
 * in suites run at load 10-15 on 2 cores); the check is skipped, the timer works. */
#define IMAGE_DEFAULT_CMDLINE "console=ttyS0 panic=-1 quiet cryptomgr.notests no_timer_check"

typedef struct Plan {
        char key[33];
        const char *interp; /* python3 (image_python3) */
        char *script;       /* absolute path of the build script */
        json_t *spec;       /* recipes: the build spec, written beside the entry */
} Plan;

void image__plan_clear(Plan *p);
/* The plan for image NAME: a built-in image's script, or the user's recipe images/NAME.lua
 * (images is $CACHE/images, for the resolver's temp files). Returns 0 or -errno with err. */
int image__plan(const char *name, const char *images, const char *cache, Plan *p, char *err,
                size_t errlen);
/* Runs p's build of image NAME into dir, its output going to logfd. Returns the script's wait
 * status, or -errno with err. */
int image__plan_build(const Plan *p, const char *name, const char *dir, const char *cache,
                      int logfd, char *err, size_t errlen);
/* Looks up "key=value" in a manifest-like text; returns a malloc'ed value or NULL. */
char *image__kv_get(const char *text, const char *key);

/* image_sums.c: an entry's files' sums in <entry>/provium.sums (see there). */
#define IMAGE_SUMS_FILES 4 /* kernel, initrd, rootfs */
/* Records the sums of files (paths in the entry dir) with their identities. Returns 0 or
 * -errno. */
int image__sums_record(const char *dir, const char *const files[], size_t n);
/* Checks files against dir's record: 0 when each is as recorded (a file whose identity changed
 * is hashed; the record is refreshed or, when missing or malformed, made); -EBADMSG with the
 * file's name in bad when one's bytes changed; other -errno. */
int image__sums_check(const char *dir, const char *const files[], size_t n, char *bad,
                      size_t badlen);
