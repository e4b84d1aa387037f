/*
 * The execution environment (DESIGN.md 2, the seed plan): run one
 * simulation or one aggregation in a warm, isolated worker, with bundles
 * from the local store, big artifacts in the CAS and results in the
 * provenance cache.
 *
 *   wx_env_run():             always yields a SimReturn; a task-level
 *                             failure is its `error` + `error_details`
 *   wx_env_run_aggregation(): an AggregationReturn, or a status and a
 *                             wx_fault with the same error taxonomy
 *
 * Retryable failures (crash, timeout, protocol error, storage) are retried
 * up to max_retries times on a fresh worker; metrics.attempts counts
 * them.  A wx_env is thread-safe: run tasks from as many threads as the
 * pool has workers per bundle.
 */
#ifndef WARMEXEC_ENV_H
#define WARMEXEC_ENV_H

#include <stdbool.h>

#include <jansson.h>

#include <warmexec/bundle.h>
#include <warmexec/cache.h>
#include <warmexec/cas.h>
#include <warmexec/config.h>
#include <warmexec/error.h>
#include <warmexec/pool.h>
#include <warmexec/result.h>
#include <warmexec/task.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wx_env wx_env;

/*
 * What the environment uses; NULL members are opened from the
 * configuration (home/cas, home/cache.db, home/bundles).  Members given
 * are borrowed and must outlive the environment.  `no_cache` turns the
 * result cache off.  `forward_bytes` is for a process whose results go to
 * another one that owns the stores (an MPI worker rank): no CAS and no
 * cache are used, and an artifact over inline_max comes back loaded
 * under its CAS ref (both `ref` and `data` set) for wx_env_adopt().
 */
typedef struct wx_env_options {
    wx_cas *cas;
    wx_cache *cache;
    wx_bundles *bundles;
    bool no_cache;
    bool forward_bytes;
} wx_env_options;

/* Caller frees with wx_env_close() (which shuts the workers down). */
WX_API int wx_env_open(const wx_config *cfg, const wx_env_options *opts,
                       wx_env **out, wx_error *err);
WX_API void wx_env_close(wx_env *env);

/*
 * Run one simulation.  `*ret` (caller releases) is always filled: the
 * result, or the failure as ErrorInfo + error_details.  Returns 0 on
 * success, else the status of the failure.
 */
WX_API int wx_env_run(wx_env *env, const wx_task *task, wx_sim_return *ret);

/*
 * The two ends of wx_env_run() for a task that runs elsewhere (the MPI
 * service).  wx_env_lookup(): true with `*ret` filled (caller releases)
 * when the result cache has a usable entry, as wx_env_run() would serve
 * it.  wx_env_adopt(): take in `*ret`, the SimReturn another process's
 * wx_env_run() gave for `task` with `status`: artifacts that arrive loaded
 * under a CAS ref are stored in this environment's CAS (their bytes must
 * hash to the ref) and unloaded, and a success goes into the result
 * cache.  Returns `status`, or WX_EIO when the bytes cannot be stored, and
 * then `*ret` has become that StorageError's return.
 */
WX_API bool wx_env_lookup(wx_env *env, const wx_task *task,
                          wx_sim_return *ret);
WX_API int wx_env_adopt(wx_env *env, const wx_task *task, wx_sim_return *ret,
                        int status);

/*
 * The SimReturn of `task` that could not run for a reason found outside
 * the worker (`status`, `message`): ErrorInfo and error_details as
 * wx_env_run() writes them.  `*ret` is overwritten (caller releases).
 */
WX_API void wx_env_failed(wx_env *env, const wx_task *task, int status,
                          const char *message, wx_sim_return *ret);

/*
 * The same for aggregations: wx_env_lookup_aggregation() is a cache hit
 * (`*ret` the caller's); wx_env_load_replicates() loads the bytes of
 * every CAS-stored replicate output into `task` (WX_ENOTFOUND,
 * WX_ECORRUPT, WX_EIO); wx_env_adopt_aggregation() records a successful
 * return computed elsewhere in the result cache.
 */
WX_API bool wx_env_lookup_aggregation(wx_env *env, const wx_agg_task *task,
                                      wx_agg_return *ret);
WX_API int wx_env_load_replicates(wx_env *env, wx_agg_task *task,
                                  wx_error *err);
WX_API void wx_env_adopt_aggregation(wx_env *env, const wx_agg_task *task,
                                     const wx_agg_return *ret);

/*
 * Evaluate a target over replicates.  0 with `*ret` filled (caller
 * releases), or a status with `err` and `fault` (optional) filled.
 */
WX_API int wx_env_run_aggregation(wx_env *env, const wx_agg_task *task,
                                  wx_agg_return *ret, wx_fault *fault,
                                  wx_error *err);

/*
 * {"type":"isolated_warm","home":...,"workers":{pool counters},
 *  "tasks":n,"cache_hits":n,"failures":n,"cache":bool}
 */
/*
 * Make every CAS object of every result returned so far durable (see
 * cas_sync in docs/cas.md): call it before recording results somewhere
 * that must survive a power loss.  WX_EIO when the disk refuses.
 */
WX_API int wx_env_sync(wx_env *env, wx_error *err);

WX_API int wx_env_health(wx_env *env, json_t **out, wx_error *err);

#ifdef __cplusplus
}
#endif

#endif
