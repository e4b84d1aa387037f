/*
 * The warm worker pool: worker processes kept alive and reused per
 * (bundle digest, runner), with exclusive leases, LRU eviction, deadlines,
 * recycling and fault handling (DESIGN.md 2.1-2.3, docs/pool.md).
 *
 * A wx_pool is thread-safe: any number of threads may run tasks through
 * it at once; each worker serves one thread at a time.
 */
#ifndef WARMEXEC_POOL_H
#define WARMEXEC_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <warmexec/config.h>
#include <warmexec/error.h>
#include <warmexec/result.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wx_pool wx_pool;

typedef struct wx_pool_options {
    const char *home;         /* workers/<id>/ scratch and logs/<id>.log */
    int max_processes;        /* all workers of the pool */
    int max_per_key;          /* workers of one (bundle, runner) */
    double start_timeout;     /* seconds from spawn to a valid ready */
    double task_timeout;      /* seconds per call; then the worker is killed */
    int64_t max_tasks_per_worker; /* recycle after this many calls; 0 = never */
    double worker_ttl;        /* recycle after this age, seconds; 0 = never */
    uint64_t mem_limit_bytes; /* RLIMIT_AS of workers; 0 = none */
    size_t max_frame_bytes;   /* largest frame a worker may send */
    bool attachments;         /* offer the warmexec/1 extension */
    double shutdown_grace;    /* seconds between SIGTERM and SIGKILL */
} wx_pool_options;

#define WX_POOL_OPTIONS_INIT                                                  \
    {NULL, 128, 1, 60.0, 1800.0, 0, 0.0, 0, (size_t)1 << 30, true, 5.0}

/*
 * What runs in a worker.  The pool key is (bundle_digest, runner).  argv
 * may contain the placeholders {bundle_path}, {bundle_digest} and
 * {scratch} (the worker's private directory, also its cwd), replaced in
 * every argument.  `env` adds "NAME=value" entries to the allow-listed
 * environment (docs/pool.md).  All strings are borrowed for the call.
 */
typedef struct wx_worker_spec {
    const char *bundle_digest;   /* echoed by the runner's ready */
    const char *bundle_path;
    const char *runner;          /* "native", "python", "command", ... */
    const char *const *argv;     /* NULL-terminated template */
    const char *const *env;      /* NULL-terminated, or NULL */
} wx_worker_spec;

/* Counters since the pool was created. */
typedef struct wx_pool_stats {
    uint64_t spawned;   /* workers started and ready */
    uint64_t reused;    /* leases served by a warm worker */
    uint64_t evicted;   /* idle workers stopped to make room (LRU) */
    uint64_t recycled;  /* workers retired by max_tasks_per_worker or ttl */
    uint64_t crashed;   /* workers that died or broke the protocol */
    uint64_t timed_out; /* workers killed at task_timeout */
    uint64_t start_failed; /* workers that never became ready */
    double start_seconds;  /* spawn to ready, summed over `spawned` */
    int live;           /* workers alive now */
    int idle;           /* of which idle */
} wx_pool_stats;

/*
 * Why a task failed, beyond the status code: the DESIGN.md 2.3 error type,
 * whether a retry on a fresh worker may help, the worker's exit status and
 * the tail of its stderr log.
 */
typedef struct wx_fault {
    const char *error_type; /* static: "ModelError", "Timeout", ... */
    bool retryable;
    char worker_id[32];
    char status[96];        /* "killed by signal 9 (SIGKILL)" or "" */
    char *stderr_tail;      /* owned (wx_free) or NULL */
    char *traceback;        /* owned or NULL: from the runner, if any */
} wx_fault;

/* Free the owned parts of a fault and clear it (safe on a zeroed one). */
WX_API void wx_fault_release(wx_fault *f);

/* The error type for a status returned by a pool call. */
WX_API const char *wx_fault_type_of(int rc);

/*
 * Options from a configuration: home, jobs (workers per bundle; 0 = the
 * number of CPUs), max_processes, the timeouts, recycling, limits,
 * attachments and shutdown_grace.  `cfg` must outlive the pool's creation
 * (the home string is borrowed).
 */
WX_API void wx_pool_options_from_config(const wx_config *cfg,
                                        wx_pool_options *out);

/* A new pool; `opts->home` must be set.  Caller frees with wx_pool_free. */
WX_API int wx_pool_new(const wx_pool_options *opts, wx_pool **out,
                       wx_error *err);

/*
 * Stop every worker (shutdown request, close stdin, SIGTERM after the
 * grace period, then SIGKILL of the group) and free the pool.  No call may
 * be running.
 */
WX_API void wx_pool_free(wx_pool *pool);

WX_API void wx_pool_stats_get(wx_pool *pool, wx_pool_stats *out);

/*
 * Tell warmexec that this process ignores SIGPIPE for the rest of its
 * life (the application called signal(SIGPIPE, SIG_IGN)).  Writes to
 * workers then no longer block SIGPIPE around each write, which saves
 * three system calls per task.  Either way a worker that went away is
 * reported as a crash, never delivered as a signal.
 */
WX_API void wx_pool_sigpipe_ignored(void);

/* One named output as returned by a worker. */
typedef struct wx_blob {
    char *name;    /* owned */
    uint8_t *data; /* owned; NULL when empty */
    size_t len;
} wx_blob;

WX_API void wx_blobs_free(wx_blob *blobs, size_t n);

/*
 * Run one simulation on a warm worker of `spec`: lease (spawning if
 * needed), `execute`, release.  On success `*outputs` (caller frees with
 * wx_blobs_free) holds `*n_outputs` artifacts in the runner's order.
 * On failure the status is WX_EMODEL, WX_ETIMEDOUT, WX_ECRASHED,
 * WX_EPROTO, WX_EOOM or WX_ESTART, `err` has the message and `fault` (if
 * not NULL) the details; a failed worker is never reused.
 */
WX_API int wx_pool_execute(wx_pool *pool, const wx_worker_spec *spec,
                           const char *entrypoint, const json_t *params,
                           int64_t seed, wx_blob **outputs,
                           size_t *n_outputs, wx_fault *fault,
                           wx_error *err);

/*
 * Evaluate a target over replicates: `sim_returns` must have the bytes of
 * every output loaded (artifact.data, also for CAS references).  Fills
 * `ret` except aggregation_id (set by the caller).  Errors as
 * wx_pool_execute.
 */
WX_API int wx_pool_aggregate(wx_pool *pool, const wx_worker_spec *spec,
                             const char *target_entrypoint,
                             const wx_sim_return *sim_returns, size_t n,
                             const json_t *target_data, wx_agg_return *ret,
                             wx_fault *fault, wx_error *err);

#ifdef __cplusplus
}
#endif

#endif
