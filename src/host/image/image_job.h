/* image_job.h: image_resolve in the loop's thread pool. A recipe's first use builds its image,
 * which takes seconds to minutes; meanwhile the file's loop goes on. */
#pragma once

#include <stdint.h>
#include <uv.h>

#include "image.h"

typedef struct ImageJob ImageJob;

/* Called on the loop's thread with the result: img (the callee owns it: free with image_free)
 * or NULL with r < 0 and err saying why, and how long it took. */
typedef void (*ImageJobFn)(void *data, Image *img, int r, const char *err, uint64_t duration_ns);

/* Resolves image name (opts->kernel and opts->initrd are copied; opts may be NULL) in loop's
 * thread pool and calls done. Returns the job, or NULL with *ret_r set (-ENOMEM, or libuv's
 * error). */
ImageJob *image_job_start(uv_loop_t *loop, const char *name, const ImageOptions *opts,
                          ImageJobFn done, void *data, int *ret_r);

/* Drops the job's result: done is not called (its memory goes when the pool is done). */
void image_job_orphan(ImageJob *job);
