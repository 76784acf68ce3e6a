/* fixture_verified.c: the fixture files this process has already hashed and found as their
 * meta.json says, by identity (device, inode, size, mtime, ctime).
 *
 * A run restores the same fixture again and again, and hashing its RAM file costs about 20 ms
 * each time (docs/performance.md). A file changed since, in place or replaced, has another
 * identity (a write moves its mtime and ctime; a rename brings another inode), so it is hashed
 * again; one that is not is the file that was checked, and its entry is held by this process's
 * use lock (cachedir_use) against removal meanwhile. The table is bounded: the oldest record
 * gives way. Lookups run in the loop's thread pool, hence the mutex. */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

#include "fixture_internal.h"

#define VERIFIED_MAX 64

typedef struct Verified {
        dev_t dev;
        ino_t ino;
        off_t size;
        struct timespec mtime, ctime;
        bool sparse;
        char hash[17];
} Verified;

static Verified verified[VERIFIED_MAX];
static unsigned nverified, next_slot;
static pthread_mutex_t verified_lock = PTHREAD_MUTEX_INITIALIZER;

static bool same_time(const struct timespec *a, const struct timespec *b)
{
        return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

static bool matches(const Verified *v, const struct stat *sb, bool sparse, const char *hash)
{
        return v->dev == sb->st_dev && v->ino == sb->st_ino && v->size == sb->st_size &&
               same_time(&v->mtime, &sb->st_mtim) && same_time(&v->ctime, &sb->st_ctim) &&
               v->sparse == sparse && strcmp(v->hash, hash) == 0;
}

bool fixture__verified(const struct stat *sb, bool sparse, const char *hash)
{
        bool found = false;
        pthread_mutex_lock(&verified_lock);
        for (unsigned i = 0; i < nverified && !found; i++)
                found = matches(&verified[i], sb, sparse, hash);
        pthread_mutex_unlock(&verified_lock);
        return found;
}

void fixture__verified_add(const struct stat *sb, bool sparse, const char *hash)
{
        if (strlen(hash) != 16)
                return;
        pthread_mutex_lock(&verified_lock);
        Verified *v = &verified[next_slot];
        next_slot = (next_slot + 1) % VERIFIED_MAX;
        if (nverified < VERIFIED_MAX)
                nverified++;
        *v = (Verified){.dev = sb->st_dev,
                        .ino = sb->st_ino,
                        .size = sb->st_size,
                        .mtime = sb->st_mtim,
                        .ctime = sb->st_ctim,
                        .sparse = sparse};
        memcpy(v->hash, hash, 17);
        pthread_mutex_unlock(&verified_lock);
}
