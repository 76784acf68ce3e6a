/* A disk's bytes and faults (src/host/disk), no VM: the store over a base image (copy-on-write,
 * the base never written), writes waiting for a flush and what a power loss keeps, the export
 * of what a disk reads; faults met by range, kind, times and a seeded probability. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "disk_fault.h"
#include "disk_store.h"

static char dir[64];

static int setup(void **state)
{
        snprintf(dir, sizeof dir, "/tmp/provium-unit-disk-XXXXXX");
        return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        return system(cmd) == 0 ? 0 : -1;
}

static char *path(const char *name)
{
        static char p[4][128];
        static int i;
        i = (i + 1) % 4;
        snprintf(p[i], sizeof p[i], "%s/%s", dir, name);
        return p[i];
}

static void sector(uint8_t *b, char fill)
{
        memset(b, fill, DISK_SECTOR);
}

static void assert_sector(DiskStore *s, uint64_t lba, char fill)
{
        uint8_t got[DISK_SECTOR], want[DISK_SECTOR];
        sector(want, fill);
        assert_int_equal(store_read(s, lba * DISK_SECTOR, DISK_SECTOR, got), 0);
        assert_memory_equal(got, want, DISK_SECTOR);
}

static void test_plain_and_zeros(void **state)
{
        DiskStore s;
        char err[256];
        uint8_t b[DISK_SECTOR];
        assert_int_equal(store_open(&s, path("plain.img"), 8 * DISK_SECTOR, NULL, err, sizeof err),
                         0);
        assert_sector(&s, 3, 0);
        sector(b, 'a');
        assert_int_equal(store_write(&s, 3 * DISK_SECTOR, DISK_SECTOR, b, false), 0);
        assert_sector(&s, 3, 'a');
        assert_int_equal(store_write(&s, 3 * DISK_SECTOR, DISK_SECTOR, NULL, false), 0);
        assert_sector(&s, 3, 0);
        store_close(&s);
        /* it must not exist yet, and sizes are whole sectors */
        assert_int_equal(store_open(&s, path("plain.img"), 8 * DISK_SECTOR, NULL, err, sizeof err),
                         -EEXIST);
        assert_int_equal(store_open(&s, path("odd.img"), 1000, NULL, err, sizeof err), -EINVAL);
        assert_non_null(strstr(err, "not a positive number of 512-byte sectors"));
}

static void test_base_copy_on_write(void **state)
{
        int fd = open(path("base.img"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        uint8_t b[DISK_SECTOR];
        for (char c = 'A'; c < 'A' + 4; c++) {
                sector(b, c);
                assert_int_equal(write(fd, b, DISK_SECTOR), DISK_SECTOR);
        }
        close(fd);
        DiskStore s;
        char err[256];
        assert_int_equal(store_open(&s, path("cow.img"), 0, path("base.img"), err, sizeof err), 0);
        assert_int_equal(s.size, 4 * DISK_SECTOR);
        assert_sector(&s, 1, 'B');
        sector(b, 'x');
        assert_int_equal(store_write(&s, 1 * DISK_SECTOR, DISK_SECTOR, b, false), 0);
        assert_int_equal(store_write(&s, 2 * DISK_SECTOR, DISK_SECTOR, NULL, false), 0);
        assert_sector(&s, 0, 'A');
        assert_sector(&s, 1, 'x');
        assert_sector(&s, 2, 0);
        assert_sector(&s, 3, 'D');
        /* the base is untouched */
        fd = open(path("base.img"), O_RDONLY);
        assert_int_equal(pread(fd, b, DISK_SECTOR, DISK_SECTOR), DISK_SECTOR);
        assert_int_equal(b[0], 'B');
        close(fd);
        /* a clone reads the same, and goes its own way */
        DiskStore c;
        assert_int_equal(store_clone(&s, &c, path("clone.img"), err, sizeof err), 0);
        assert_sector(&c, 1, 'x');
        sector(b, 'y');
        assert_int_equal(store_write(&c, 0, DISK_SECTOR, b, false), 0);
        assert_sector(&s, 0, 'A');
        /* an export is the disk as it reads, flattened */
        assert_int_equal(store_export(&c, path("export.img")), 0);
        DiskStore e;
        assert_int_equal(
            store_open(&e, path("over-export.img"), 0, path("export.img"), err, sizeof err), 0);
        assert_sector(&e, 0, 'y');
        assert_sector(&e, 1, 'x');
        assert_sector(&e, 2, 0);
        assert_sector(&e, 3, 'D');
        store_close(&e);
        store_close(&c);
        store_close(&s);
        /* a qcow2 base is refused with a way out */
        fd = open(path("q.img"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_int_equal(write(fd, "QFI\xfb", 4), 4);
        close(fd);
        assert_int_equal(store_open(&s, path("q-over.img"), 0, path("q.img"), err, sizeof err),
                         -EINVAL);
        assert_non_null(strstr(err, "qemu-img convert -O raw"));
}

static double always_half(void *rng)
{
        unsigned *n = rng;
        return (*n)++ % 2 ? 0.9 : 0.1; /* drops the 1st, 3rd... of the unflushed writes */
}

static void test_power_loss(void **state)
{
        DiskStore s;
        char err[256];
        uint8_t b[DISK_SECTOR];
        assert_int_equal(store_open(&s, path("pl.img"), 16 * DISK_SECTOR, NULL, err, sizeof err),
                         0);
        assert_int_equal(store_set_volatile(&s, true), 0);
        sector(b, 'f');
        assert_int_equal(store_write(&s, 0, DISK_SECTOR, b, false), 0);
        assert_int_equal(store_flush(&s), 0); /* flushed: kept */
        for (int i = 1; i <= 4; i++) {
                sector(b, (char) ('0' + i));
                assert_int_equal(
                    store_write(&s, (uint64_t) i * DISK_SECTOR, DISK_SECTOR, b, i == 3), 0);
        }
        sector(b, 'z'); /* overwrites sector 0 after the flush, not flushed */
        assert_int_equal(store_write(&s, 0, DISK_SECTOR, b, false), 0);
        assert_sector(&s, 0, 'z');
        assert_sector(&s, 2, '2'); /* reads see what waits */
        unsigned n = 0;
        uint64_t dropped, kept;
        assert_int_equal(store_power_loss(&s, 0.5, always_half, &n, &dropped, &kept), 0);
        /* unflushed: 1 (drop), 2 (keep), 3 (FUA: kept, draws nothing), 4 (drop), 0 'z' (keep) */
        assert_int_equal(dropped, 2);
        assert_int_equal(kept, 3);
        assert_sector(&s, 1, 0);
        assert_sector(&s, 2, '2');
        assert_sector(&s, 3, '3');
        assert_sector(&s, 4, 0);
        assert_sector(&s, 0, 'z');
        /* a power loss of everything */
        sector(b, 'q');
        assert_int_equal(store_write(&s, 5 * DISK_SECTOR, DISK_SECTOR, b, false), 0);
        assert_int_equal(store_power_loss(&s, 1, always_half, &n, &dropped, &kept), 0);
        assert_int_equal(dropped, 1);
        assert_sector(&s, 5, 0);
        /* off: what waits is flushed */
        assert_int_equal(store_write(&s, 6 * DISK_SECTOR, DISK_SECTOR, b, false), 0);
        assert_int_equal(store_set_volatile(&s, false), 0);
        assert_int_equal(s.npending, 0);
        assert_sector(&s, 6, 'q');
        store_close(&s);
}

static void test_faults(void **state)
{
        FaultList l = {0};
        DiskRng rng = {.state = 1};
        unsigned ms;
        DiskFault f = {.kind = FAULT_EIO_READ,
                       .lba = 10,
                       .count = 5,
                       .error = EIO,
                       .times = 2,
                       .probability = 1};
        DiskFault *a = faults_add(&l, &f);
        assert_int_equal(faults_meet(&l, &rng, false, false, 0, 10, &ms), 0); /* before it */
        assert_int_equal(faults_meet(&l, &rng, true, false, 12, 1, &ms), 0);  /* a write */
        assert_int_equal(faults_meet(&l, &rng, false, false, 14, 8, &ms), EIO);
        assert_int_equal(faults_meet(&l, &rng, false, false, 9, 2, &ms), EIO);
        assert_int_equal(faults_meet(&l, &rng, false, false, 10, 1, &ms), 0); /* spent */
        assert_int_equal(a->hits, 2);
        assert_false(a->active);
        DiskFault w = {.kind = FAULT_EIO_WRITE, .error = ENOSPC, .times = -1, .probability = 1};
        faults_add(&l, &w);
        assert_int_equal(faults_meet(&l, &rng, true, true, 0, 0, &ms), ENOSPC); /* a flush */
        DiskFault slow = {.kind = FAULT_SLOW,
                          .ms = 20,
                          .jitter_ms = 0,
                          .ops = FAULT_OPS_READ,
                          .times = -1,
                          .probability = 1};
        faults_add(&l, &slow);
        assert_int_equal(faults_meet(&l, &rng, false, false, 0, 1, &ms), 0);
        assert_int_equal(ms, 20);
        assert_int_equal(faults_active(&l), 2);
        faults_free(&l);
        /* the same seed fails the same requests */
        char runs[2][64];
        for (int r = 0; r < 2; r++) {
                FaultList p = {0};
                DiskRng g = {.state = 42};
                DiskFault half = {
                    .kind = FAULT_EIO_READ, .error = EIO, .times = -1, .probability = 0.5};
                faults_add(&p, &half);
                for (int i = 0; i < 63; i++)
                        runs[r][i] =
                            faults_meet(&p, &g, false, false, (uint64_t) i, 1, &ms) ? 'x' : 'o';
                runs[r][63] = 0;
                faults_free(&p);
        }
        assert_string_equal(runs[0], runs[1]);
        assert_non_null(strchr(runs[0], 'x'));
        assert_non_null(strchr(runs[0], 'o'));
        assert_int_equal(fault_errno("ENOSPC"), ENOSPC);
        assert_int_equal(fault_errno("EWHATEVER"), 0);
        assert_string_equal(fault_errno_name(EIO), "EIO");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_plain_and_zeros),
            cmocka_unit_test(test_base_copy_on_write),
            cmocka_unit_test(test_power_loss),
            cmocka_unit_test(test_faults),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
