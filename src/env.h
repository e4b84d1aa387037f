/*
 * The helpers the execution environment is built from (the seed plan's
 * list), exposed for unit tests.  Each does one job.
 */
#ifndef WX_ENV_H
#define WX_ENV_H

#include <warmexec/env.h>

#include "cas.h"
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
 * The big attachments of one worker reply, stored in the CAS while they
 * arrive: a frame sink (frame.h) that opens a CAS stream (cas.h) for
 * each attachment bound for the store, i.e. longer than `inline_max`
 * and of at least WX__CAS_STREAM_MIN bytes, up to WX__INGEST_MAX of them
 * (a stream holds a temporary file and a thread until its output is
 * stored; further ones take the ordinary way to the store).
 * wx__handle_artifacts() finishes the streams its outputs name;
 * wx__ingest_end() drops the rest.
 */
#define WX__INGEST_MAX 8

typedef struct wx__ingest_item {
    size_t att;             /* the attachment's index in the frame */
    size_t from, len;       /* and its place in the frame's bytes */
    wx__cas_stream *stream; /* NULL once finished */
    char hex[WX_HEX256_LEN + 1]; /* the object, once finished */
} wx__ingest_item;

typedef struct wx__ingest {
    wx__frame_sink sink;
    wx_cas *cas;
    size_t inline_max;
    wx__ingest_item items[WX__INGEST_MAX];
    size_t n;
} wx__ingest;

void wx__ingest_init(wx__ingest *in, wx_cas *cas, size_t inline_max);
/* Abort the streams not finished and free them; `in` can be used again. */
void wx__ingest_end(wx__ingest *in);

/*
 * handle_artifacts: every raw output becomes a TableArtifact with its
 * real size and SHA-256 checksum, inline up to `inline_max` bytes, else
 * stored in the CAS under its digest (finishing the stream of `in`, may
 * be NULL, that holds its attachment).  `*outputs` (n = raw->n) is the
 * caller's.  Storage failures are WX_EIO (StorageError).
 */
int wx__handle_artifacts(wx_cas *cas, size_t inline_max, wx__ingest *in,
                         const wx__outputs *raw, wx_output **outputs,
                         wx_error *err);

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

/* A task's sim_root (config and env included) and task_id (with the
 * requested outputs). */
typedef struct wx__task_ids {
    char sim_root[WX_ID_LEN + 1];
    char task_id[WX_ID_LEN + 1];
} wx__task_ids;

int wx__task_ids_compute(const wx_task *task, wx__task_ids *ids,
                         wx_error *err);

/*
 * create_sim_return: a successful SimReturn of `task` with `outputs`
 * (taken over, also on failure) and the task's `ids` (NULL: computed
 * here).  No outputs is WX_EMODEL.
 */
int wx__create_sim_return(const wx_task *task, const wx__task_ids *ids,
                          wx_output *outputs, size_t n, wx_sim_return *ret,
                          wx_error *err);

/*
 * Keep only the outputs `task` asks for (all when it names none); a
 * requested output the model did not produce is WX_EMODEL.  Used for
 * fresh results and cache hits alike.  ret->task_id is left alone: it
 * depends on the requested outputs, so a cache hit recomputes it.
 */
int wx__select_outputs(const wx_task *task, wx_sim_return *ret,
                       wx_error *err);

/*
 * create_error_return: the SimReturn of a failed `task`: ids from the
 * task, ErrorInfo (type from `fault` or the status), and error_details, a
 * JSON object {"error","type","bundle_ref","entrypoint","worker",
 * "status","stderr_tail","traceback","attempts"} kept inline up to
 * `inline_max` bytes, else in the CAS.
 */
void wx__create_error_return(const wx_task *task, int rc,
                             const char *message, const wx_fault *fault,
                             int attempts, wx_cas *cas, size_t inline_max,
                             wx_sim_return *ret);

/*
 * resolve_cas_references: load the bytes of every CAS artifact of the
 * replicates (verified), so aggregation works for outputs of any size.
 * The artifacts keep their ref; `data` is filled.
 */
int wx__resolve_cas_references(wx_cas *cas, wx_sim_return *sim_returns,
                               size_t n, size_t max_len, wx_error *err);

/*
 * Whether a cached SimReturn can be served: every CAS object it references
 * is present and intact.  0, or WX_ENOTFOUND / WX_ECORRUPT.
 */
int wx__check_cached(wx_cas *cas, const wx_sim_return *r, wx_error *err);

/* The error type of a failure of bundle resolution or a worker call. */
const char *wx__error_type(int rc, const wx_fault *fault);

#endif
