/* keyhash.c: tagged, length-prefixed XXH3-128 fields (see keyhash.h). */
#include "keyhash.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
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
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        void *m;

        if (fd < 0)
                return -errno;
        if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
                int r = S_ISREG(sb.st_mode) ? -errno : -EINVAL;
                (void) close(fd);
                return r;
        }
        if (sb.st_size == 0) {
                (void) close(fd);
                keyhash_field(st, tag, "", 0);
                return 0;
        }
        m = mmap(NULL, (size_t) sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        (void) close(fd);
        if (m == MAP_FAILED)
                return -errno;
        keyhash_field(st, tag, m, (size_t) sb.st_size);
        (void) munmap(m, (size_t) sb.st_size);
        return 0;
}

void keyhash_hex(XXH3_state_t *st, char out[33])
{
        XXH128_hash_t h = XXH3_128bits_digest(st);

        (void) snprintf(out, 33, "%016llx%016llx", (unsigned long long) h.high64,
                        (unsigned long long) h.low64);
}
