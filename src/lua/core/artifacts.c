/* artifacts.c: a failed test's consoles and captures, copied out of the run (artifacts.h). */
#include "artifacts.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "events.h"
#include "fdio.h"
#include "strfmt.h"
#include "vm.h"

#define NAME_MAX_CHARS 80 /* of a file's or a test's part of the path */

/* name with every byte but [A-Za-z0-9._-] as '_', at most NAME_MAX_CHARS, never "." or "..". */
static void slug(char *out, const char *name)
{
        size_t n = 0;
        for (; name[n] && n < NAME_MAX_CHARS; n++) {
                char c = name[n];
                bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                out[n] = keep ? c : '_';
        }
        out[n] = 0;
        if (n == 0 || strspn(out, ".") == n)
                snprintf(out, NAME_MAX_CHARS + 1, "_%s", name[0] ? "dots" : "empty");
}

static int write_file(const char *path, const char *p, size_t n)
{
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
                return -errno;
        int r = fd_write_all(fd, p, n);
        if (close(fd) < 0 && r == 0)
                r = -errno;
        return r;
}

static int copy_file(const char *src, const char *dst)
{
        int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (in < 0)
                return -errno;
        int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        int r = out < 0 ? -errno : 0;
        char buf[65536];
        while (r == 0) {
                ssize_t n = read(in, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : 0;
                        break;
                }
                r = fd_write_all(out, buf, (size_t) n);
        }
        if (out >= 0 && close(out) < 0 && r == 0)
                r = -errno;
        (void) close(in);
        return r;
}

static int mkdir_one(const char *path)
{
        return mkdir(path, 0755) < 0 && errno != EEXIST ? -errno : 0;
}

/* The run directory's capture-*.pcap (provium:capture's default place). */
static unsigned save_captures(const char *run_dir, const char *to)
{
        DIR *d = opendir(run_dir);
        unsigned saved = 0;
        if (!d)
                return 0;
        for (struct dirent *e; (e = readdir(d));) {
                size_t n = strlen(e->d_name);
                if (strncmp(e->d_name, "capture-", 8) != 0 || n < 5 ||
                    strcmp(e->d_name + n - 5, ".pcap") != 0)
                        continue;
                char *src = xasprintf("%s/%s", run_dir, e->d_name);
                char *dst = xasprintf("%s/%s", to, e->d_name);
                int r = src && dst ? copy_file(src, dst) : -ENOMEM;
                if (r < 0)
                        fprintf(stderr, "provium: artifacts: %s: %s\n", dst ? dst : to,
                                strerror(-r));
                saved += r == 0;
                free(src);
                free(dst);
        }
        (void) closedir(d);
        return saved;
}

static unsigned save_consoles(Vm **const *vms, size_t nvms, const char *to)
{
        unsigned saved = 0;
        for (size_t i = 0; i < nvms; i++) {
                const Vm *vm = *vms[i];
                if (!vm)
                        continue;
                char name[NAME_MAX_CHARS + 1];
                size_t len;
                const char *log = vm_console_log(vm, &len);
                slug(name, vm_name(vm));
                char *path = xasprintf("%s/console-%s.log", to, name);
                int r = path ? write_file(path, log, len) : -ENOMEM;
                if (r < 0)
                        fprintf(stderr, "provium: artifacts: %s: %s\n", path ? path : to,
                                strerror(-r));
                saved += r == 0;
                free(path);
        }
        return saved;
}

/* The files a test named (t:artifact): regular files only, each as its base name made safe;
 * a second of one name gets its place in the list before it ("2-history.edn"). */
static unsigned save_extra(const char *const *extra, size_t nextra, const char *to)
{
        unsigned saved = 0;
        for (size_t i = 0; i < nextra; i++) {
                const char *base = strrchr(extra[i], '/');
                char name[NAME_MAX_CHARS + 1];
                slug(name, base ? base + 1 : extra[i]);
                char *dst = xasprintf("%s/%s", to, name);
                struct stat st;
                int r = dst ? 0 : -ENOMEM;
                if (r == 0 && lstat(dst, &st) == 0) { /* taken by a console, a capture or another */
                        free(dst);
                        dst = xasprintf("%s/%zu-%s", to, i + 1, name);
                        r = dst ? 0 : -ENOMEM;
                }
                if (r == 0 && stat(extra[i], &st) < 0)
                        r = -errno;
                else if (r == 0 && !S_ISREG(st.st_mode))
                        r = -EINVAL;
                if (r == 0)
                        r = copy_file(extra[i], dst);
                if (r < 0)
                        fprintf(stderr, "provium: artifacts: %s: %s\n", extra[i],
                                r == -EINVAL ? "not a regular file" : strerror(-r));
                saved += r == 0;
                free(dst);
        }
        return saved;
}

void artifacts_save(const char *dir, const char *file, int index, const char *test, Vm **const *vms,
                    size_t nvms, const char *run_dir, const char *const *extra, size_t nextra)
{
        char fslug[NAME_MAX_CHARS + 1], tslug[NAME_MAX_CHARS + 1];
        slug(fslug, file);
        slug(tslug, test);
        char *fdir = xasprintf("%s/%s", dir, fslug);
        char *tdir = xasprintf("%s/%s/%02d-%s", dir, fslug, index, tslug);
        int r = fdir && tdir ? mkdir_one(fdir) : -ENOMEM;
        if (r == 0)
                r = mkdir_one(tdir);
        unsigned saved = 0;
        if (r < 0)
                fprintf(stderr, "provium: artifacts: %s: %s\n", tdir ? tdir : dir, strerror(-r));
        else
                saved = save_consoles(vms, nvms, tdir) + save_captures(run_dir, tdir) +
                        save_extra(extra, nextra, tdir);
        EventBuilder ev;
        event_begin(&ev, "test.artifacts", 2);
        proto_kv_str(&ev.w, "dir", r == 0 ? tdir : "");
        proto_kv_uint(&ev.w, "files", saved);
        event_end(&ev);
        free(fdir);
        free(tdir);
}
