/*
 * Simulation services (DESIGN.md 5; the original's SimulationService):
 * where tasks and aggregations are dispatched.  One interface, two
 * implementations: the local service (N dispatcher threads over a wx_env)
 * and, when built with MPI, the MPI service.
 *
 * Jobs complete through callbacks, called on a dispatcher thread, which
 * own the result they are given.  Futures and the original's
 * submit/gather/submit_batch/submit_replicate_set API are built on top.
 * A service is thread-safe.
 */
#ifndef WARMEXEC_SERVICE_H
#define WARMEXEC_SERVICE_H

#include <signal.h>
#include <stddef.h>

#include <warmexec/env.h>
#include <warmexec/error.h>
#include <warmexec/result.h>
#include <warmexec/task.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wx_service wx_service;

/*
 * A simulation finished: `ret` is the callback's (release it); `status` is
 * what wx_env_run returned.
 */
typedef void (*wx_sim_done)(void *user, wx_sim_return *ret, int status);

/*
 * An aggregation finished: on success (status 0) `ret` is the
 * callback's; otherwise `err` and `fault` say why (borrowed).
 */
typedef void (*wx_agg_done)(void *user, wx_agg_return *ret, int status,
                            const wx_error *err, const wx_fault *fault);

/* What an implementation provides. */
typedef struct wx_service_ops {
    int (*submit_sim)(wx_service *s, const wx_task *task, wx_sim_done done,
                      void *user, wx_error *err);
    int (*submit_agg)(wx_service *s, const wx_agg_task *task,
                      wx_agg_done done, void *user, wx_error *err);
    void (*wait)(wx_service *s);
    void (*free)(wx_service *s);
} wx_service_ops;

/* An implementation embeds this as its first member. */
struct wx_service {
    const wx_service_ops *ops;
};

/*
 * The local service: `threads` dispatcher threads (0 = the number of CPUs)
 * running jobs on `env` (borrowed).  At most `queue_max` jobs wait; a
 * submit beyond that blocks until there is room.
 */
WX_API int wx_service_local(wx_env *env, int threads, size_t queue_max,
                            wx_service **out, wx_error *err);

/*
 * Once `*flag` is non-zero (a signal handler may set it), jobs of the
 * local service `s` that have not started are not run: their callbacks
 * get WX_ECANCELED, a simulation an all-zero SimReturn and an
 * aggregation no return, the error "cancelled before it started" and the
 * fault type "Cancelled".  Jobs already running finish.
 */
WX_API void wx_service_local_cancel_on(wx_service *s,
                                       volatile sig_atomic_t *flag);

/*
 * Dispatch a simulation (the task is copied) or an aggregation (copied);
 * `done` is called exactly once, on success of the submit.
 */
WX_API int wx_service_submit(wx_service *s, const wx_task *task,
                             wx_sim_done done, void *user, wx_error *err);
WX_API int wx_service_submit_aggregation(wx_service *s,
                                         const wx_agg_task *task,
                                         wx_agg_done done, void *user,
                                         wx_error *err);

/* Wait until every job submitted so far has completed. */
WX_API void wx_service_wait(wx_service *s);

/* Wait for the jobs, then stop and free the service. */
WX_API void wx_service_free(wx_service *s);

/* ---- futures: the original's SimulationService API ---- */

typedef struct wx_future wx_future;

/* submit(): a future of the SimReturn.  Caller frees with wx_future_free. */
WX_API int wx_service_submit_future(wx_service *s, const wx_task *task,
                                    wx_future **out, wx_error *err);

/* submit_batch(): one future per task, in order. */
WX_API int wx_service_submit_batch(wx_service *s, const wx_task *tasks,
                                   size_t n, wx_future **out, wx_error *err);

/*
 * submit_replicate_set(): one future per replicate (seeds base + offset +
 * i), and with a `target` a future of the aggregation, which runs in the
 * warm pool once every replicate is done.  `agg` may be NULL without a
 * target.  target_data is borrowed.
 */
WX_API int wx_service_submit_replicate_set(wx_service *s,
                                           const wx_replicate_set *rs,
                                           const char *target,
                                           json_t *target_data,
                                           wx_future **sims,
                                           wx_future **agg, wx_error *err);

/*
 * submit_batch_with_aggregation(): submit_replicate_set() for each of
 * `n` sets with the same target.  `sims` receives, set after set, every
 * replicate's future; `aggs` one future per set.  On failure the futures
 * of the sets before the failing one are valid (wait for and free them).
 */
WX_API int wx_service_submit_batch_with_aggregation(
    wx_service *s, const wx_replicate_set *sets, size_t n, const char *target,
    json_t *target_data, wx_future **sims, wx_future **aggs, wx_error *err);

/* Block until done; the SimReturn moves to `*out` (0 or its status). */
WX_API int wx_future_sim(wx_future *f, wx_sim_return *out);

/*
 * Block until done; the AggregationReturn moves to `*out`, or the status
 * with `err` (and `fault`, optional, which the caller then releases).
 */
WX_API int wx_future_agg(wx_future *f, wx_agg_return *out, wx_fault *fault,
                         wx_error *err);

/* gather(): wait for `n` simulation futures, results in order. */
WX_API void wx_service_gather(wx_future **futures, size_t n,
                              wx_sim_return *out);

WX_API void wx_future_free(wx_future *f);

#ifdef __cplusplus
}
#endif

#endif
