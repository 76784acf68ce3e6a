/* shard.h: which share of the files this run takes (shard.c): --shard K/N, or what a CI
 * engine set: Bazel's TEST_TOTAL_SHARDS / TEST_SHARD_INDEX, GitLab's CI_NODE_INDEX /
 * CI_NODE_TOTAL, a Kubernetes Indexed Job's JOB_COMPLETION_INDEX with --shard-total N. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

typedef struct Shard {
        unsigned index; /* 0-based */
        unsigned total; /* 0: no sharding */
        char from[64];  /* "--shard", "Bazel", "GitLab", "Kubernetes" */
} Shard;

/* Picks the shard from flag ("K/N", 1-based K; may be NULL), total_flag (--shard-total, 0 when
 * not given) and the environment. Returns 0, or -EINVAL with err naming what is wrong. */
int shard_choose(const char *flag, unsigned total_flag, Shard *s, char *err, size_t errlen);
/* Keeps in files[0..*n) the shard's share, in their order: the files sorted by a hash of their
 * path are dealt out in turn, so each shard gets n/total files (give or take one), the shards
 * together hold every file once, and the same set of files and total always give the same
 * shards. The files left out are freed. Returns 0 or -ENOMEM (files unchanged). */
int shard_select(const Shard *s, char **files, size_t *n);
