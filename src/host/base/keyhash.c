/* keyhash.c: tagged, length-prefixed XXH3-128 fields (see keyhash.h). */
#include "keyhash.h"

#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

void keyhash_field(XXH3_state_t *st, const char *tag, const void *data, size_t len)
{
        uint64_t n = len;

        (void) XXH3_128bits_update(st, tag, strlen(tag) + 1);
        (void) XXH3_128bits_update(st, &n, sizeof n);
        (void) XXH3_128bits_update(st, data, len);
}

int keyhash_file(XXH3_state_t *st, const char *tag, const char *path)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO: refused, not waited on */
        struct stat sb;

        if (fd < 0)
                return -errno;
        if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
                int r = S_ISREG(sb.st_mode) ? -errno : -EINVAL;
                (void) close(fd);
                return r;
        }
        /* read, not mapped: an I/O error or a file cut short meanwhile is an error, not SIGBUS */
        uint64_t n = (uint64_t) sb.st_size;
        (void) XXH3_128bits_update(st, tag, strlen(tag) + 1);
        (void) XXH3_128bits_update(st, &n, sizeof n);
        char buf[65536];
        uint64_t left = n;
        int r = 0;
        while (left > 0 && r == 0) {
                ssize_t k = read(fd, buf, left < sizeof buf ? (size_t) left : sizeof buf);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        r = k < 0 ? -errno : -EIO; /* shorter than it was */
                else {
                        (void) XXH3_128bits_update(st, buf, (size_t) k);
                        left -= (uint64_t) k;
                }
        }
        (void) close(fd);
        return r;
}

static bool has_suffix(const char *name, const char *suffix)
{
        size_t n = strlen(name), k = strlen(suffix);

        return name[0] != '.' && n > k && strcmp(name + n - k, suffix) == 0;
}

/* strcmp, not alphasort's strcoll: the order must not depend on the locale. */
static int by_name(const struct dirent **a, const struct dirent **b)
{
        return strcmp((*a)->d_name, (*b)->d_name);
}

int keyhash_dir(XXH3_state_t *st, const char *tag, const char *dir, const char *suffix)
{
        struct dirent **names = NULL;
        int n, r = 0;

        n = scandir(dir, &names, NULL, by_name);
        if (n < 0)
                return -errno;
        for (int i = 0; i < n; i++) {
                char path[4096], field[512];
                const char *name = names[i]->d_name;
                if (r == 0 && has_suffix(name, suffix)) {
                        if ((size_t) snprintf(path, sizeof path, "%s/%s", dir, name) >=
                                sizeof path ||
                            (size_t) snprintf(field, sizeof field, "%s/%s", tag, name) >=
                                sizeof field)
                                r = -ENAMETOOLONG;
                        else
                                r = keyhash_file(st, field, path);
                }
                free(names[i]);
        }
        free(names);
        return r;
}

void keyhash_hex(XXH3_state_t *st, char out[33])
{
        XXH128_hash_t h = XXH3_128bits_digest(st);

        (void) snprintf(out, 33, "%016llx%016llx", (unsigned long long) h.high64,
                        (unsigned long long) h.low64);
}
