/*
 * A worker's reply made into results: the helpers of outputs.c (the seed
 * plan's handle_artifacts, create_sim_return, create_error_return,
 * resolve_cas_references), exposed for the environment and unit tests.
 */
#ifndef WX_OUTPUTS_H
#define WX_OUTPUTS_H

#include <warmexec/pool.h>
#include <warmexec/result.h>
#include <warmexec/task.h>

#include "cas.h"
#include "frame.h"
#include "wire.h"

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

/* Whether a failure of this error type may succeed on a fresh worker. */
bool wx__error_type_retryable(const char *type);

#endif
