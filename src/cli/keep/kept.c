/* kept.c: kept runs' directories: finding, listing and sweeping them (kept.h). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cachedir.h"
#include "fdio.h"
#include "kept.h"
#include "run_root.h"

#define KEPT_UNLOCKED_MAX_AGE 60 /* seconds a directory may be without its lock file */

const char *kept_parent(bool create)
{
        static char path[128];
        snprintf(path, sizeof path, "%s/provium-kept", run_root_parent());
        if (create && mkdir(path, 0700) < 0 && errno != EEXIST)
                return NULL;
        return path;
}

void kept_parent_tidy(void)
{
        (void) rmdir(kept_parent(false)); /* fails while a run is kept: that is fine */
}

/* Whether the directory's keeper is gone: its lock can be taken, or it has none and is old. */
static bool kept_is_stale(int parent, const char *name)
{
        struct stat st;
        if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode) ||
            st.st_uid != geteuid())
                return false;
        char lock[300];
        snprintf(lock, sizeof lock, "%s/lock", name);
        int fd = openat(parent, lock, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT && time(NULL) - st.st_mtime > KEPT_UNLOCKED_MAX_AGE;
        bool stale = flock(fd, LOCK_SH | LOCK_NB) == 0;
        (void) close(fd);
        return stale;
}

/* One "key=value" line's value, copied into out (cut to fit); "" when absent. */
static void info_value(const char *info, const char *key, char *out, size_t size)
{
        size_t klen = strlen(key);
        out[0] = 0;
        for (const char *p = info; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
                if (strncmp(p, key, klen) != 0 || p[klen] != '=')
                        continue;
                const char *v = p + klen + 1, *end = strchr(v, '\n');
                size_t n = end ? (size_t) (end - v) : strlen(v);
                snprintf(out, size, "%.*s", (int) (n < size ? n : size - 1), v);
                return;
        }
}

/* Reads dir/info into k. Returns 0, or -EBADMSG when it is missing or not one of ours. */
static int kept_read(const char *parent, const char *name, KeptRun *k)
{
        char path[512], info[KEPT_INFO_MAX + 1], pid[32];
        snprintf(path, sizeof path, "%s/%s/info", parent, name);
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return -EBADMSG;
        ssize_t n = read(fd, info, KEPT_INFO_MAX);
        (void) close(fd);
        if (n <= 0 || memchr(info, 0, (size_t) n))
                return -EBADMSG;
        info[n] = 0;
        *k = (KeptRun){0};
        snprintf(k->id, sizeof k->id, "%s", name);
        snprintf(k->dir, sizeof k->dir, "%s/%s", parent, name);
        info_value(info, "file", k->file, sizeof k->file);
        info_value(info, "test", k->test, sizeof k->test);
        info_value(info, "vms", k->vms, sizeof k->vms);
        info_value(info, "pid", pid, sizeof pid);
        k->pid = strtol(pid, NULL, 10);
        return k->file[0] && k->pid > 0 ? 0 : -EBADMSG;
}

static int by_pid(const void *a, const void *b)
{
        long x = ((const KeptRun *) a)->pid, y = ((const KeptRun *) b)->pid;
        return (x > y) - (x < y);
}

int kept_list(KeptRun **ret, size_t *ret_n)
{
        *ret = NULL;
        *ret_n = 0;
        const char *parent = kept_parent(false);
        DIR *d = opendir(parent);
        if (!d)
                return errno == ENOENT ? 0 : -errno;
        KeptRun *v = NULL;
        size_t n = 0;
        int r = 0;
        for (struct dirent *e; (e = readdir(d));) {
                if (e->d_name[0] == '.' || strlen(e->d_name) >= KEPT_ID_MAX)
                        continue;
                if (kept_is_stale(dirfd(d), e->d_name)) {
                        (void) cachedir_rm_rf_at(dirfd(d), e->d_name);
                        continue;
                }
                KeptRun k;
                if (kept_read(parent, e->d_name, &k) < 0)
                        continue;
                KeptRun *nv = realloc(v, (n + 1) * sizeof *v);
                if (!nv) {
                        r = -ENOMEM;
                        break;
                }
                v = nv;
                v[n++] = k;
        }
        (void) closedir(d);
        if (n == 0)
                kept_parent_tidy();
        if (r < 0) {
                free(v);
                return r;
        }
        qsort(v, n, sizeof *v, by_pid);
        *ret = v;
        *ret_n = n;
        return 0;
}

int kept_find(const char *id, KeptRun *ret, char *err, size_t errlen)
{
        KeptRun *v;
        size_t n;
        int r = kept_list(&v, &n);
        if (r < 0) {
                snprintf(err, errlen, "cannot list the kept runs: %s", strerror(-r));
                return r;
        }
        r = -ENOENT;
        for (size_t i = 0; i < n && r < 0; i++)
                if (id ? strcmp(v[i].id, id) == 0 : n == 1)
                        *ret = v[i], r = 0;
        if (r < 0 && !id && n == 0)
                snprintf(err, errlen,
                         "no kept run (a run keeps its VMs after a failure with "
                         "--keep-on-failure)");
        else if (r < 0 && !id)
                r = -EEXIST, snprintf(err, errlen, "%zu kept runs: name one (provium ls)", n);
        else if (r < 0)
                snprintf(err, errlen, "no kept run '%s' (provium ls lists them)", id);
        free(v);
        return r;
}

bool kept_has_vm(const KeptRun *k, const char *name)
{
        size_t len = strlen(name);
        for (const char *p = k->vms; *p;) {
                const char *end = strchr(p, ' ');
                size_t n = end ? (size_t) (end - p) : strlen(p);
                if (n == len && strncmp(p, name, n) == 0)
                        return true;
                p += n + (end != NULL);
        }
        return false;
}

int kept_connect(const KeptRun *k)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if ((size_t) snprintf(sa.sun_path, sizeof sa.sun_path, "%s/control.sock", k->dir) >=
            sizeof sa.sun_path)
                return -ENAMETOOLONG;
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                int r = -errno;
                (void) close(fd);
                return r;
        }
        return fd;
}

int kept_send(int fd, ProtoWriter *w)
{
        int r = proto_end(w);
        if (r < 0)
                return r;
        size_t len;
        const uint8_t *p = proto_writer_data(w, &len);
        r = fd_write_all(fd, p, len);
        proto_writer_reset(w);
        return r;
}

int kept_recv(int fd, ProtoReader *r, msgpack_object *ret)
{
        for (;;) {
                int got = proto_reader_next(r, ret);
                if (got != 0)
                        return got;
                uint8_t *p = proto_reader_space(r, 65536);
                if (!p)
                        return -ENOMEM;
                ssize_t n = read(fd, p, 65536);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return 0;
                proto_reader_commit(r, (size_t) n);
        }
}
