/* image_tree.c: an image's root as a directory tree, for a local VM (image.h).
 *
 * The tree is unpacked once into <image dir>/tree: from the read-only root disk when the image
 * has one (it holds the initramfs's tree and the recipe's packages), with e2fsprogs' debugfs
 * rdump, which keeps owners and modes; else from the initramfs with libarchive (a newc cpio,
 * compressed or not). Owners are shifted by IMAGE_TREE_ID_BASE as they are written (debugfs:
 * after, over the tree). It is unpacked into a temporary directory renamed into place at the
 * end, so that a reader never sees half a tree and two runners unpacking at once both end with
 * the same one (the second rename loses and its copy is removed).
 */
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cachedir.h"
#include "image.h"
#include "script.h"
#include "strfmt.h"

#define TREE_ENTRY_MAX 4096 /* the longest path an entry may have */

/* Who owns what the image's ID id owns, in the tree (image.h): as root, id shifted by
 * IMAGE_TREE_ID_BASE; as another user, that user (or its group). */
static unsigned owner_of(unsigned id, bool group)
{
        if (geteuid() == 0)
                return id + IMAGE_TREE_ID_BASE;
        return group ? (unsigned) getegid() : (unsigned) geteuid();
}

/* An entry's path is kept below the tree: no absolute path, no "..", nothing overlong. */
static bool entry_path_ok(const char *p)
{
        if (!p || !p[0] || p[0] == '/' || strlen(p) >= TREE_ENTRY_MAX)
                return false;
        for (const char *s = p; *s;) {
                size_t n = strcspn(s, "/");
                if (n == 2 && s[0] == '.' && s[1] == '.')
                        return false;
                s += n;
                s += *s == '/';
        }
        return true;
}

/* Copies the data of the entry just read from a to out. Returns 0 or -EIO. */
static int copy_data(struct archive *a, struct archive *out)
{
        const void *buf;
        size_t size;
        la_int64_t off;
        int st;
        while ((st = archive_read_data_block(a, &buf, &size, &off)) == ARCHIVE_OK)
                if (archive_write_data_block(out, buf, size, off) < ARCHIVE_OK)
                        return -EIO;
        return st == ARCHIVE_EOF ? 0 : -EIO;
}

/* Unpacks archive path into the directory dir (created, empty). Returns 0 or -errno with err. */
static int unpack(const char *path, const char *dir, char *err, size_t errlen)
{
        struct archive *a = archive_read_new();
        struct archive *out = archive_write_disk_new();
        if (!a || !out) {
                archive_read_free(a);
                archive_write_free(out);
                seterr(err, errlen, "out of memory");
                return -ENOMEM;
        }
        (void) archive_read_support_format_cpio(a);
        (void) archive_read_support_filter_all(a);
        /* Entries are written at dir/<entry> (absolute paths, checked by entry_path_ok): no
         * chdir in a process with threads. Nothing is written through a symlink. */
        (void) archive_write_disk_set_options(
            out, ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_TIME |
                     ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT);
        int r = archive_read_open_filename(a, path, 1 << 16) == ARCHIVE_OK ? 0 : -EIO;
        if (r < 0)
                seterr(err, errlen, "%s: %s", path, archive_error_string(a));
        struct archive_entry *e;
        int st;
        while (r == 0 && (st = archive_read_next_header(a, &e)) != ARCHIVE_EOF) {
                const char *name = archive_entry_pathname(e);
                if (st < ARCHIVE_WARN) {
                        seterr(err, errlen, "%s: %s", path, archive_error_string(a));
                        r = -EIO;
                        break;
                }
                mode_t type = archive_entry_filetype(e);
                if ((name && (strcmp(name, ".") == 0 || strcmp(name, "./") == 0)) ||
                    type == AE_IFCHR || type == AE_IFBLK)
                        continue; /* a local VM's /dev is the sandbox's (local_sandbox.c) */
                if (!entry_path_ok(name)) {
                        seterr(err, errlen, "%s: entry '%.200s' leaves the tree", path,
                               name ? name : "");
                        r = -EINVAL;
                        break;
                }
                char *full = xasprintf("%s/%s", dir, name);
                const char *link = archive_entry_hardlink(e);
                char *full_link =
                    link && entry_path_ok(link) ? xasprintf("%s/%s", dir, link) : NULL;
                if (!full || (link && !full_link)) {
                        free(full);
                        free(full_link);
                        seterr(err, errlen, "%s: entry '%.200s': bad or out of memory", path, name);
                        r = -EINVAL;
                        break;
                }
                la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
                if (uid < 0 || uid >= IMAGE_TREE_IDS || gid < 0 || gid >= IMAGE_TREE_IDS) {
                        free(full);
                        free(full_link);
                        seterr(err, errlen, "%s: entry '%.200s': owner %lld:%lld is out of range",
                               path, name, (long long) uid, (long long) gid);
                        r = -ERANGE;
                        break;
                }
                archive_entry_set_uid(e, owner_of(uid, false));
                archive_entry_set_gid(e, owner_of(gid, true));
                archive_entry_set_pathname(e, full);
                if (full_link)
                        archive_entry_set_hardlink(e, full_link);
                if (archive_write_header(out, e) < ARCHIVE_WARN ||
                    (archive_entry_size(e) > 0 && copy_data(a, out) < 0) ||
                    archive_write_finish_entry(out) < ARCHIVE_WARN) {
                        const char *why = archive_error_string(out);
                        seterr(err, errlen, "%s: %s: %s", path, name,
                               why ? why : archive_error_string(a));
                        r = -EIO;
                }
                free(full);
                free(full_link);
        }
        archive_read_free(a);
        archive_write_free(out);
        return r;
}

/* ---- from the root disk ---- */

static _Thread_local int shift_error; /* nftw's callback has no data pointer */

static int shift_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        if (st->st_uid >= IMAGE_TREE_IDS || st->st_gid >= IMAGE_TREE_IDS) {
                shift_error = -ERANGE;
                return 1;
        }
        if (lchown(path, owner_of(st->st_uid, false), owner_of(st->st_gid, true)) < 0) {
                shift_error = -errno;
                return 1;
        }
        return 0;
}

/* The ext4 root disk rootfs into dir, its owners shifted. Returns 0 or -errno with err. */
static int unpack_disk(const char *rootfs, const char *dir, char *err, size_t errlen)
{
        char *cmd = xasprintf("rdump / %s", dir), *out = NULL, *text = NULL;
        const char *args[] = {cmd, rootfs, NULL};
        int status = cmd ? script_capture("debugfs", "-R", args, "", &out, &text) : -ENOMEM;
        char probe[4200];
        snprintf(probe, sizeof probe, "%s/init", dir);
        struct stat st;
        int r = status == 0 && lstat(probe, &st) == 0 ? 0 : -EIO;
        if (r < 0) {
                size_t n = text ? strlen(text) : 0;
                while (n > 0 && text[n - 1] == '\n') /* debugfs's last line says why */
                        text[--n] = 0;
                const char *last = n ? strrchr(text, '\n') : NULL;
                seterr(err, errlen, "debugfs rdump of %s: %s%s%s", rootfs,
                       status < 0 ? strerror(-status) : "no /init in what it wrote", n ? ": " : "",
                       n ? (last ? last + 1 : text) : "");
        }
        free(cmd);
        free(out);
        free(text);
        if (r == 0) {
                shift_error = 0;
                if (nftw(dir, shift_one, 64, FTW_PHYS) != 0 || shift_error) {
                        r = shift_error ? shift_error : -errno;
                        seterr(err, errlen, "shifting the owners in %s: %s", dir, strerror(-r));
                }
        }
        return r;
}

/* ---- the tree ---- */

int image_tree(const Image *img, char **ret, char *err, size_t errlen)
{
        if (!img->initrd && !img->rootfs) {
                seterr(err, errlen, "image %s: no initramfs to make a tree of", img->name);
                return -ENOENT;
        }
        /* root's tree, or a user's own (its owners differ) */
        char *tree = geteuid() == 0 ? xasprintf("%s/tree", img->dir)
                                    : xasprintf("%s/tree-uid%u", img->dir, (unsigned) geteuid());
        char *tmp = tree ? xasprintf("%s.tmp-%d", tree, (int) getpid()) : NULL;
        int r = tree && tmp ? 0 : -ENOMEM;
        struct stat st;
        if (r == 0 && stat(tree, &st) == 0 && S_ISDIR(st.st_mode))
                goto done;
        if (r == 0) {
                (void) cachedir_rm_rf(tmp); /* a run of ours killed while unpacking */
                if (mkdir(tmp, 0755) < 0)
                        r = -errno;
        }
        char why[512] = "";
        if (r == 0)
                r = img->rootfs ? unpack_disk(img->rootfs, tmp, why, sizeof why)
                                : unpack(img->initrd, tmp, why, sizeof why);
        if (r == 0 && chown(tmp, owner_of(0, false), owner_of(0, true)) < 0) { /* its "/" */
                r = -errno;
                snprintf(why, sizeof why, "chown %s: %s", tmp, strerror(errno));
        }
        if (r == 0 && rename(tmp, tree) < 0 && errno != EEXIST && errno != ENOTEMPTY) {
                r = -errno;
                snprintf(why, sizeof why, "rename %s: %s", tmp, strerror(errno));
        }
        if (tmp)
                (void) cachedir_rm_rf(tmp); /* after a lost race, or a failure */
        if (r < 0)
                seterr(err, errlen, "image %s: unpacking its %s for a local VM: %s", img->name,
                       img->rootfs ? "root disk" : "initramfs", why[0] ? why : strerror(-r));
done:
        free(tmp);
        if (r < 0) {
                free(tree);
                return r;
        }
        *ret = tree;
        return 0;
}
