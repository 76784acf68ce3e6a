/* image.h: guest images (kernel + initrd + command line), built on demand and cached.
 *
 * A built image lives in $CACHE/images/<name>-<key>/ (kernel, initrd, cmdline, manifest). The
 * key is an XXH3-128 over everything that shapes it: the recipe script, the agent binary, the
 * busybox binary and the kernel package's name, version and SHA256 as apt knows them, so a
 * lookup needs no download and an image is rebuilt only when one of those changes.
 * docs/images.md describes the layout. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Image {
        char *name;    /* "default", or the caller's name for their own kernel */
        char *dir;     /* the cache entry; for a user's own kernel, the kernel's directory */
        char *kernel;  /* absolute path of the kernel (ELF vmlinux or bzImage) */
        char *initrd;  /* absolute path of the initramfs; NULL when a user gave none */
        char *rootfs;  /* absolute path of a read-only root disk (ext4), or NULL: the guest
                        * then lives in the initramfs (docs/images.md, "Packing") */
        char *cmdline; /* the kernel command line itself (not a path) */
        char *key;     /* 32 hex digits: cache key of a built image, content hash of a user's */
        uint64_t size; /* disk usage of dir (cachedir_disk_bytes; image_list only, else 0) */
        bool built;    /* image_resolve built it (the cache had no entry) */
} Image;

typedef struct ImageOptions {
        const char *kernel;  /* the user's own kernel: no build, the files are only checked */
        const char *initrd;  /* with kernel: optional initramfs */
        const char *cmdline; /* replaces the image's command line (built or not) when set */
        bool quiet;          /* no progress lines on stderr */
} ImageOptions;

/* Resolves NAME ("default", a recipe's name, or any name with opts->kernel set) to built files,
 * building the image first when the cache has no entry for its current key. Safe against other
 * processes and threads resolving or building the same image at the same time (it may run in a
 * thread pool: it emits no events). opts may be NULL.
 * Returns 0 and *ret (free with image_free), or -errno with a message naming the image and
 * what failed in err (errlen bytes, always NUL-terminated when errlen > 0); on a failed build
 * the message ends with the last lines of the recipe's output. */
int image_resolve(const char *name, const ImageOptions *opts, Image **ret, char *err,
                  size_t errlen);

/* Builds image NAME for its current key; with force, rebuilds it even when cached (the old
 * directory is replaced atomically). Returns like image_resolve. */
int image_build(const char *name, bool force, Image **ret, char *err, size_t errlen);

/* Lists the built images in the cache, sorted by name then directory, with size filled.
 * Returns 0 with *ret (an array of *ret_n images; free with image_list_free) or -errno. */
int image_list(Image ***ret, size_t *ret_n);
Image **image_list_free(Image **images, size_t n);

/* Removes built image img (from image_list) from the cache, under its lock taken without
 * waiting, with its build log and spec (cachedir_clear_entry). *ret_bytes (may be NULL) gets
 * the disk space it took. Returns 1 when removed, 0 when it was already gone, -EWOULDBLOCK
 * while a build holds its lock, -EINVAL for an image without a key, or -errno. */
int image_remove(const Image *img, uint64_t *ret_bytes);

/* The image's initramfs as a directory tree, for a local VM's root (--vmm local): unpacked
 * into <img->dir>/tree on first use (image_tree.c), read-only after. Its owners are shifted by
 * IMAGE_TREE_ID_BASE: IDs 0..IMAGE_TREE_IDS-1 of the image are host IDs BASE.., which a local
 * VM's user namespace maps back, so that its root is nobody on the host. Run by another user
 * than root, the tree is <img->dir>/tree-uid<UID> and everything in it is that user's (the
 * user namespace of its local VMs maps root to the user alone). Device nodes are left out.
 * Returns 0 and *ret (the path; the caller frees it) or -errno with err naming the image. */
#define IMAGE_TREE_ID_BASE 1073741824u
#define IMAGE_TREE_IDS     65536u
int image_tree(const Image *img, char **ret, char *err, size_t errlen);

/* A copy of img (all its strings), or NULL on ENOMEM. */
Image *image_dup(const Image *img);

/* Frees img and its strings. Accepts NULL; returns NULL. */
Image *image_free(Image *img);
