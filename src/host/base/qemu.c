/* qemu.c: which QEMU program Provium runs (see qemu.h). */
#include "qemu.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *qemu_program(void)
{
        const char *q = getenv("PROVIUM_QEMU");
        return q && *q ? q : "qemu-system-x86_64";
}

int qemu_find(char *ret_path, size_t n)
{
        const char *q = qemu_program();
        snprintf(ret_path, n, "%s", q);
        if (strchr(q, '/'))
                return access(q, X_OK) == 0 ? 0 : -ENOENT;
        const char *path = getenv("PATH");
        char *copy = strdup(path && *path ? path : "/usr/local/bin:/usr/bin:/bin"), *save = NULL;
        if (!copy)
                return -ENOMEM;
        int r = -ENOENT;
        for (char *d = strtok_r(copy, ":", &save); d && r < 0; d = strtok_r(NULL, ":", &save)) {
                char p[PATH_MAX];
                if ((size_t) snprintf(p, sizeof p, "%s/%s", d, q) < sizeof p &&
                    access(p, X_OK) == 0) {
                        snprintf(ret_path, n, "%s", p);
                        r = 0;
                }
        }
        free(copy);
        return r;
}
