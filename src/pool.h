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

/* wx__pool_call() with params as JSON text or a value (rpc.h), running
 * `mw` (may be NULL) while the worker works. */
int wx__pool_call_meanwhile(wx_pool *p, wx__worker *w, const char *method,
                            const wx__rpc_params *params,
                            const struct iovec *att, size_t n_att,
                            const wx__meanwhile *mw, json_t **result,
                            wx_fault *fault, wx_error *err);

/*
 * Mark a leased worker failed after the caller found its reply broken
 * (WX_EPROTO): it is stopped and `fault` filled as for a failed call.
 */
void wx__pool_fail(wx_pool *p, wx__worker *w, int rc, wx_fault *fault,
                   wx_error *err);

/*
 * Lease, `execute` (running `mw`, may be NULL, while the worker works;
 * `sink`, may be NULL, hears about the reply's attachments as they
 * arrive) and read the outputs, keeping the lease: `*raw` (the worker's, set on
 * success) points into its last reply and `*result` (caller's reference), both
 * valid until the caller releases `*leased` (set whenever a worker was
 * leased, also on failure).  Errors as wx_pool_execute().
 */
int wx__pool_execute_raw(wx_pool *p, const wx_worker_spec *spec,
                         const char *entrypoint, const json_t *params,
                         int64_t seed, const wx__meanwhile *mw,
                         const wx__frame_sink *sink,
                         const wx__outputs **raw, json_t **result,
                         wx__worker **leased, wx_fault *fault, wx_error *err);

/* Give the worker back (a failed or used-up worker is retired). */
void wx__pool_release(wx_pool *p, wx__worker *w);

/* The connection of a leased worker (its last reply's attachments). */
const wx__rpc_conn *wx__worker_conn(const wx__worker *w);

/* Whether the worker speaks warmexec/1 (attachments). */
bool wx__worker_attachments(const wx__worker *w);

/* The most bytes a reply may carry (the pool's max_frame_bytes). */
size_t wx__pool_max_frame(const wx_pool *p);

#endif
