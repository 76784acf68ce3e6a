/* paths.h: where Provium finds its cache, its source tree and the agent binary. */
#pragma once

#include <sys/types.h>

/* $XDG_CACHE_HOME/provium, else ~/.cache/provium; created (mkdir -p, 0755) on the first call,
 * and refused (EPERM) unless this user owns it and no one else may write it. Returns a string
 * owned by this module, or NULL with errno set when no home is known or the directory cannot
 * be created or is refused. */
const char *paths_cache_dir(void);
/* Why paths_cache_dir() failed with err: for EPERM, what is wrong with the directory's owner
 * or mode (it must be this user's and writable by no one else); otherwise strerror(err). */
const char *paths_cache_dir_error(int err);
/* The directory paths_cache_dir() tried (also when it failed), for error messages. */
const char *paths_cache_dir_wanted(void);

/* $PROVIUM_SOURCE_DIR when set and non-empty, else PREFIX/share/provium of an installed
 * provium (PREFIX/bin/provium), else the source tree Provium was built from: where scripts/,
 * types/ and docs/ are. Never NULL. */
const char *paths_source_dir(void);

/* $PROVIUM_AGENT when set and non-empty, else PREFIX/libexec/provium/provium-agent of an
 * installed provium, else the provium-agent this build produced. Never NULL; the file may not
 * exist. */
const char *paths_agent(void);

/* mkdir -p PATH with MODE for the directories it creates. Returns 0 or -errno. */
int paths_mkdir_p(const char *path, mode_t mode);
