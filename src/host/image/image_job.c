/* image_job.c: image_resolve in the loop's thread pool (see image_job.h). */
#include "image_job.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "paths.h"

struct ImageJob {
        uv_work_t work;
        ImageJobFn done;
        void *data;
        bool orphaned;
        char *name, *kernel, *initrd;
        Image *img;
        int r;
        uint64_t started_ns;
        char err[4096];
};

static void job_free(ImageJob *job)
{
        image_free(job->img);
        free(job->name);
        free(job->kernel);
        free(job->initrd);
        free(job);
}

static void job_work(uv_work_t *w)
{
        ImageJob *job = (ImageJob *) w;
        ImageOptions io = {.kernel = job->kernel, .initrd = job->initrd};
        job->r = image_resolve(job->name, &io, &job->img, job->err, sizeof job->err);
}

static void job_done(uv_work_t *w, int status)
{
        ImageJob *job = (ImageJob *) w;
        if (!job->orphaned) {
                if (status < 0 && job->r == 0) {
                        job->r = status;
                        snprintf(job->err, sizeof job->err, "image %s: %s", job->name,
                                 uv_strerror(status));
                }
                Image *img = NULL;
                if (job->r >= 0) { /* the callee owns it now */
                        img = job->img;
                        job->img = NULL;
                }
                job->done(job->data, img, job->r, job->err, events_mono_ns() - job->started_ns);
        }
        job_free(job);
}

static char *dup_opt(const char *s, bool *failed)
{
        char *d = s ? strdup(s) : NULL;
        if (s && !d)
                *failed = true;
        return d;
}

ImageJob *image_job_start(uv_loop_t *loop, const char *name, const ImageOptions *opts,
                          ImageJobFn done, void *data, int *ret_r)
{
        ImageJob *job = calloc(1, sizeof *job);
        bool failed = !job;

        if (job) {
                job->done = done;
                job->data = data;
                job->started_ns = events_mono_ns();
                job->name = dup_opt(name, &failed);
                job->kernel = dup_opt(opts ? opts->kernel : NULL, &failed);
                job->initrd = dup_opt(opts ? opts->initrd : NULL, &failed);
        }
        if (failed) {
                if (job)
                        job_free(job);
                *ret_r = -ENOMEM;
                return NULL;
        }
        (void) paths_cache_dir(); /* computed once, here on the loop's thread */
        int r = uv_queue_work(loop, &job->work, job_work, job_done);
        if (r < 0) {
                job_free(job);
                *ret_r = r;
                return NULL;
        }
        return job;
}

void image_job_orphan(ImageJob *job)
{
        if (!job)
                return;
        job->orphaned = true;
        (void) uv_cancel((uv_req_t *) &job->work);
}
