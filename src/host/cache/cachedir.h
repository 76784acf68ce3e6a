/* cachedir.h: one area of the cache ($CACHE/<area>: images, fixtures, accel): entry names,
 * the build lock, removal, disk usage and listing, the same for every user of the cache.
 *
 * Names under an area's root:
 *   <name>-<key>              an entry: a directory, which only ever appears by rename
 *   <name>-<key>.lock         the entry's lock file (see below)
 *   <name>-<key>.use          its use file: held shared by the processes that use the entry
 *   <name>-<key>.<suffix>     files beside the entry that belong to it (an image's build log
 *                             and spec, a build script's half-built OUTDIR.tmp.XXXXXX)
 *   .<name>-<key>.tmp-<pid>   a staging directory of process pid, renamed to the entry
 * name: 1-64 of A-Z a-z 0-9 _ - . not starting with '.'; key: 32 lowercase hex digits.
 *
 * The lock, one protocol for every area: an exclusive flock(2) on <stem>.lock, taken with or
 * without waiting. Whoever builds an entry holds it for the whole build; whoever removes one
 * holds it (taken without waiting) while it removes. Readers take no lock: an entry appears
 * by rename, so it is complete or absent. The holder unlinks the lock file while it still
 * holds it, then closes it; a taker that got the lock on a file no longer at that path (it
 * was unlinked meanwhile) retries on the file now there, so two takers never hold two
 * different files. A holder that crashes loses the flock with its last descriptor (the
 * kernel drops it), so it never blocks anyone; it leaves the lock file, unlocked, which the
 * next taker locks, and removes when it releases.
 *
 * Use: a process that uses an entry (a runner restoring a fixture, a process booting or
 * serving an image) holds a shared flock on <stem>.use until it exits, and sets its mtime when
 * it takes it: the entry's last use. A removal takes it exclusively, without waiting, after the
 * lock: an entry in use is kept. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CACHEDIR_NAME_MAX 64

/* What a file name in an area is. */
typedef enum {
        CACHEDIR_OTHER,
        CACHEDIR_ENTRY,   /* <name>-<key> */
        CACHEDIR_LOCK,    /* <name>-<key>.lock */
        CACHEDIR_USE,     /* <name>-<key>.use */
        CACHEDIR_SIDE,    /* <name>-<key>.<anything else> */
        CACHEDIR_STAGING, /* .<name>-<key>.tmp-<pid> */
} CacheDirKind;

/* An entry's name and key, parsed from a file name. */
typedef struct CacheDirItem {
        char name[CACHEDIR_NAME_MAX + 1];
        char key[33];
        int64_t mtime; /* the entry directory's, for cachedir_list without all */
} CacheDirItem;

typedef struct CacheLock {
        char *path; /* <root>/<stem>.lock */
        int fd;     /* >= 0 while held */
} CacheLock;

/* An entry name: 1-64 of A-Z a-z 0-9 _ - . not starting with '.'. */
bool cachedir_name_valid(const char *name);
/* 32 lowercase hex digits. */
bool cachedir_key_valid(const char *key);

/* Parses FILE, a name in an area. Fills it (name and key) unless OTHER; *ret_pid (may be NULL)
 * for STAGING. */
CacheDirKind cachedir_parse(const char *file, CacheDirItem *it, long *ret_pid);

/* <root>/<name>-<key><suffix> (suffix "" for the entry itself, ".log" for a side file...), or
 * NULL without memory. */
char *cachedir_entry_path(const char *root, const char *name, const char *key, const char *suffix);

/* $CACHE/<area>, created (with $CACHE) when create is set. Returns 0 with *ret (free it), or
 * -errno: *ret is then NULL when $CACHE itself is unusable (paths_cache_dir_wanted() names
 * it), else the area's path that could not be created (free it). */
int cachedir_root(const char *area, bool create, char **ret);

/* Sets l to the unheld lock <root>/<stem>.lock. Returns 0 or -ENOMEM. */
int cachedir_lock_init(CacheLock *l, const char *root, const char *stem);
/* Takes l, waiting for another holder when wait is set. Returns 0, -EWOULDBLOCK (held by
 * another and wait unset) or -errno. */
int cachedir_lock_take(CacheLock *l, bool wait);
/* Unlinks and releases l when held, and frees its path. Safe twice. */
void cachedir_lock_release(CacheLock *l);

/* rm -rf NAME relative to dfd (AT_FDCWD for a path). A symbolic link is removed, never
 * followed, at any depth, so removal stays inside the tree. Returns 0 (also when NAME does not
 * exist) or -errno (the first error; it goes on with the rest). */
int cachedir_rm_rf_at(int dfd, const char *name);
int cachedir_rm_rf(const char *path);

/* Disk usage: st_blocks * 512 over the regular files under DIR, recursively, symbolic links
 * not followed. 0 when DIR cannot be read. */
uint64_t cachedir_disk_bytes(const char *dir);

/* Without all: the entries of root (real directories, not symbolic links), with mtime. With
 * all: every name-key that has anything in root (an entry, a lock, a side file or a staging
 * directory). Only names equal to `name` when it is not NULL. Sorted by name then key, each
 * name-key once. A missing root has none. Returns 0 with *ret (free it) or -errno. */
int cachedir_list(const char *root, const char *name, bool all, CacheDirItem **ret, size_t *ret_n);

/* Marks entry name-key of root as used by this process until it exits (its use file, above);
 * once per entry per process. Waits only for a removal under way. Returns 0 or -errno. */
int cachedir_use(const char *root, const char *name, const char *key);
/* When entry name-key does not exist (its build failed), this process's use of it goes, and
 * its use file with it unless another process holds it. */
void cachedir_unuse_if_absent(const char *root, const char *name, const char *key);
/* This process holds entry name-key's use. */
bool cachedir_used_here(const char *root, const char *name, const char *key);
/* The entry's last use: its use file's mtime, else the entry's own; 0 when it has neither. */
int64_t cachedir_last_use(const char *root, const char *name, const char *key);

/* Removes entry name-key of root under its lock, taken without waiting: the entry, its side
 * files, the staging directories of processes that are gone, and the lock file. *ret_bytes
 * (may be NULL) gets the entry's disk usage. Returns 1 when an entry was removed, 0 when there
 * was none, -EWOULDBLOCK when its lock is held (a build runs), -EBUSY when a process uses it
 * (its use file is held by another process: this one's own use does not count), or -errno. */
int cachedir_clear_entry(const char *root, const char *name, const char *key, uint64_t *ret_bytes);

/* Removes the staging directories of name-key in root whose process is gone or is this one
 * (the caller holds the entry's lock, so none of this process's builds uses one). */
void cachedir_remove_stale_staging(const char *root, const char *name, const char *key);
