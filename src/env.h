/*
 * The helpers the execution environment is built from (the seed plan's
 * list), exposed for unit tests.  Each does one job.
 */
#ifndef WX_ENV_H
#define WX_ENV_H

#include <warmexec/env.h>

#include "cas.h"
#include "outputs.h"
#include "wire.h"

/* A bundle ready to run: where it is and how to start its runner. */
typedef struct wx__resolved {
    char digest[WX_DIGEST_LEN + 1];
    char path[4096];
    wx_manifest manifest;
    wx_runner runner;
} wx__resolved;

/*
 * resolve_bundle: the stored bundle of `bundle_ref`, its manifest and
 * runner.  WX_ENOTFOUND (BundleNotFound), WX_ECORRUPT (BundleCorrupt),
 * WX_EINVAL (a malformed ref), WX_ESTART (a manifest that cannot run).
 */
int wx__resolve_bundle(wx_bundles *bundles, const wx_config *cfg,
                       const char *bundle_ref, wx__resolved *out,
                       wx_error *err);
void wx__resolved_release(wx__resolved *r);

/*
 * wx_env_run() in three steps, for a dispatcher that overlaps a task's
 * look-up and bookkeeping with the worker's run of another (service.c).
 * wx__env_begin() starts `task` (borrowed until wx__env_end()): its
 * sim_root and the result cache look-up; a hit fills `ret` and returns
 * true, and the task is done.  Else wx__env_execute() runs it, calling
 * `mw` (may be NULL) exactly once: while the first worker runs the task,
 * or after the attempt when no worker did, and leaves how it went in
 * `*out`; and wx__env_end() stores the result in the cache, narrows it
 * to the task's outputs, fills its metrics (or turns a failure into an
 * error result), releases `*out` and returns the status wx_env_run()
 * would.  A begun task is small (a dispatcher queues many); an outcome
 * holds an error message.
 */
typedef struct wx__env_job {
    const wx_task *task;
    bool known; /* sim_root computed */
    char sim_root[WX_ID_LEN + 1];
} wx__env_job;

typedef struct wx__env_outcome {
    int rc, attempts;
    int64_t start_ns, end_ns; /* of the execution: its duration_s */
    wx_fault fault;
    wx_error err;
} wx__env_outcome;

bool wx__env_begin(wx_env *env, const wx_task *task, wx__env_job *j,
                   wx_sim_return *ret);
void wx__env_execute(wx_env *env, const wx__env_job *j,
                     const wx__meanwhile *mw, wx__env_outcome *out,
                     wx_sim_return *ret);
int wx__env_end(wx_env *env, const wx__env_job *j, wx__env_outcome *out,
                wx_sim_return *ret);

/*
 * wx__env_execute() for `n` (1 to WX__BATCH_MAX) begun jobs of one bundle
 * (jobs[0]'s), on one worker: their requests go out back to back (as many
 * as the worker may still take and, after the first, as fit in 16 KiB),
 * `mw` runs once while the worker runs them, and the replies are read in
 * order, so that the worker runs them without waiting for its dispatcher
 * in between.  Each job ends as wx__env_execute() would leave it, in
 * outs[i] and *rets[i]: a task that did not go out, or that the worker
 * never reached because it failed on an earlier one, runs alone after,
 * without that counting as an attempt; retries run alone too.
 */
#define WX__BATCH_MAX 8

void wx__env_execute_batch(wx_env *env, const wx__env_job *const *jobs,
                           size_t n, const wx__meanwhile *mw,
                           wx__env_outcome *outs, wx_sim_return *const *rets);

/* wx_env_run_aggregation(), running `mw` (may be NULL) once: while the
 * worker aggregates, or after when no worker did. */
int wx__env_run_aggregation(wx_env *env, const wx_agg_task *task,
                            const wx__meanwhile *mw, wx_agg_return *ret,
                            wx_fault *fault, wx_error *err);

#endif
