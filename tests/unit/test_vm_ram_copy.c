/* vm_copy_sparse (src/host/vmm/vm_ram_copy.c): the copy of a RAM file has the same bytes, its
 * holes stay holes, and its two halves meet wherever the extents fall; a failure leaves no
 * file behind. */
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

#include "vm_internal.h"

#define PAGE 4096

static char dir[64];

static int make_dir(void **state)
{
        snprintf(dir, sizeof dir, "/tmp/provium-ramcopy-XXXXXX");
        return mkdtemp(dir) ? 0 : -1;
}

static int remove_dir(void **state)
{
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        return system(cmd) == 0 ? 0 : -1;
}

/* A file of size bytes with pages[i] written (each page filled with its index + 1). */
static void make_sparse(const char *path, off_t size, const off_t *pages, size_t n)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, size), 0);
        char buf[PAGE];
        for (size_t i = 0; i < n; i++) {
                memset(buf, (int) (pages[i] % 251) + 1, sizeof buf);
                assert_int_equal(pwrite(fd, buf, PAGE, pages[i] * PAGE), PAGE);
        }
        assert_int_equal(close(fd), 0);
}

static char *slurp(const char *path, off_t *len)
{
        int fd = open(path, O_RDONLY);
        assert_true(fd >= 0);
        struct stat st;
        assert_int_equal(fstat(fd, &st), 0);
        char *p = malloc((size_t) st.st_size + 1);
        assert_non_null(p);
        assert_int_equal(pread(fd, p, (size_t) st.st_size, 0), st.st_size);
        close(fd);
        *len = st.st_size;
        return p;
}

static void check_copy(const off_t *pages, size_t n, off_t size)
{
        char src[128], dst[128];
        snprintf(src, sizeof src, "%s/ram", dir);
        snprintf(dst, sizeof dst, "%s/ram.copy", dir);
        make_sparse(src, size, pages, n);
        uint64_t bytes = 1;
        assert_int_equal(vm_copy_sparse(src, dst, &bytes), 0);
        off_t la, lb;
        char *a = slurp(src, &la), *b = slurp(dst, &lb);
        assert_int_equal(la, lb);
        assert_memory_equal(a, b, (size_t) la);
        free(a);
        free(b);
        struct stat sa, sb;
        assert_int_equal(stat(src, &sa), 0);
        assert_int_equal(stat(dst, &sb), 0);
        assert_true(sb.st_blocks <= sa.st_blocks); /* the holes are still holes */
        assert_true(bytes >= n * PAGE && bytes <= (uint64_t) size);
}

static void test_extents_across_the_halves(void **state)
{
        /* one extent spanning the middle, runs of pages, lone pages, the last page */
        off_t pages[600];
        size_t n = 0;
        for (off_t p = 100; p < 400; p++)
                pages[n++] = p;
        for (off_t p = 500; p < 1000; p += 7)
                pages[n++] = p;
        pages[n++] = 2047;
        check_copy(pages, n, 2048 * PAGE);
}

static void test_one_page_and_an_empty_file(void **state)
{
        off_t one = 3;
        check_copy(&one, 1, 64 * PAGE);
        check_copy(NULL, 0, 64 * PAGE);
}

static void test_a_failed_copy_leaves_nothing(void **state)
{
        char src[128], dst[128];
        uint64_t bytes = 1;
        snprintf(src, sizeof src, "%s/missing", dir);
        snprintf(dst, sizeof dst, "%s/out", dir);
        assert_int_equal(vm_copy_sparse(src, dst, &bytes), -ENOENT);
        assert_int_equal(bytes, 0);
        assert_int_equal(access(dst, F_OK), -1);
        snprintf(src, sizeof src, "%s/ram", dir);
        off_t one = 1;
        make_sparse(src, 8 * PAGE, &one, 1);
        snprintf(dst, sizeof dst, "%s/no/such/dir", dir);
        assert_int_equal(vm_copy_sparse(src, dst, &bytes), -ENOENT);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
            cmocka_unit_test(test_extents_across_the_halves),
            cmocka_unit_test(test_one_page_and_an_empty_file),
            cmocka_unit_test(test_a_failed_copy_leaves_nothing),
        };
        return cmocka_run_group_tests(tests, make_dir, remove_dir);
}
