/*
 * Internal side of the pool: exclusive leases of workers and calls on
 * them, for the execution environment (zero-copy access to replies).
 * The public side is <warmexec/pool.h>.
 */
#ifndef WX_POOL_H
#define WX_POOL_H

#include <stdbool.h>
#include <sys/uio.h>

#include <jansson.h>

#include <warmexec/pool.h>

#include "rpc.h"
#include "wire.h"

typedef struct wx__worker wx__worker;

/*
 * Lease a worker of `spec`: an idle warm one, else a new one (spawned and
 * handshaken), else after evicting the least recently used idle worker of
 * another key, else wait.  The lease is exclusive until release.  A start
 * failure is WX_ESTART with `fault` filled.
 */
int wx__pool_lease(wx_pool *p, const wx_worker_spec *spec, wx__worker **out,
                   wx_fault *fault, wx_error *err);

/*
 * Call `method` on a leased worker with the task deadline.  A model error
 * (WX_EMODEL) leaves the worker usable; any other failure marks it failed
 * (it is stopped, its status and stderr tail go to `fault`) and it is
 * discarded at release.
 */
int wx__pool_call(wx_pool *p, wx__worker *w, const char *method,
                  const json_t *params, const struct iovec *att, size_t n_att,
                  json_t **result, wx_fault *fault, wx_error *err);

/*
 * Mark a leased worker failed after the caller found its reply broken
 * (WX_EPROTO): it is stopped and `fault` filled as for a failed call.
 */
void wx__pool_fail(wx_pool *p, wx__worker *w, int rc, wx_fault *fault,
                   wx_error *err);

/*
 * Execute requests in flight on a leased worker, answered in order.
 * wx__pool_queue_execute() frames one (nothing is written yet) and gives
 * its id; `room` (may be NULL) as for wx__rpc_queue(): a request that
 * does not fit is WX_ETOOBIG and is not queued.  wx__pool_flush() writes
 * the queued requests at once (the worker wakes once for all of them).
 * wx__pool_receive_execute() waits until `deadline` for the reply to
 * `id`, `sink` (may be NULL) hearing about its attachments; `*raw` (the
 * worker's: its outputs point into the reply) and `*result` (the caller's
 * reference) are valid until the next receive or the release.  A failure
 * to write or read fails the worker as wx__pool_call() does, and the
 * replies still owed are lost with it.
 */
int wx__pool_queue_execute(wx__worker *w, const char *entrypoint,
                           const json_t *params, int64_t seed, size_t *room,
                           int64_t *id, wx_error *err);
int wx__pool_flush(wx_pool *p, wx__worker *w, wx_fault *fault, wx_error *err);
int wx__pool_receive_execute(wx_pool *p, wx__worker *w, int64_t id,
                             int64_t deadline, const wx__frame_sink *sink,
                             const wx__outputs **raw, json_t **result,
                             wx_fault *fault, wx_error *err);

/* The deadline of a task whose request leaves now (task_timeout). */
int64_t wx__pool_task_deadline(const wx_pool *p);

/* The calls a worker may still take before it is recycled (INT64_MAX
 * when max_tasks_per_worker is 0). */
int64_t wx__worker_tasks_left(const wx_pool *p, const wx__worker *w);

/* wx_pool_aggregate(), running `mw` (may be NULL) once the request is
 * out, while the worker aggregates. */
int wx__pool_aggregate(wx_pool *p, const wx_worker_spec *spec,
                       const char *target_entrypoint,
                       const wx_sim_return *sim_returns, size_t n,
                       const json_t *target_data, const wx__meanwhile *mw,
                       wx_agg_return *ret, wx_fault *fault, wx_error *err);

/* Whether a call failed the worker (it is stopped; release retires it). */
bool wx__worker_failed(const wx__worker *w);

/* Give the worker back (a failed or used-up worker is retired). */
void wx__pool_release(wx_pool *p, wx__worker *w);

/* The connection of a leased worker (its last reply's attachments). */
const wx__rpc_conn *wx__worker_conn(const wx__worker *w);

/* Whether the worker speaks warmexec/1 (attachments). */
bool wx__worker_attachments(const wx__worker *w);

/* The most bytes a reply may carry (the pool's max_frame_bytes). */
size_t wx__pool_max_frame(const wx_pool *p);

#endif
