/*
 * Tasks of the contracts (reference sections 1.4 and 1.8): SimTask,
 * ReplicateSet and AggregationTask, with validation whose messages name the
 * field and the rule, and their JSON form (docs/formats.md).
 *
 * Plain value structs; each owns every pointer in it and the matching
 * _release() frees the contents, leaving a zeroed struct (which is also
 * the initial state).  Not thread-safe to modify; concurrent reads are
 * safe.
 *
 * Narrowings from the Python contract, each a clear WX_EINVAL:
 *  - seeds are integers in [0, 2^63-1] (the contract allows up to
 *    2^64-1; results databases and jansson hold int64);
 *  - integer parameters must fit int64;
 *  - bundle_ref must be "sha256:<64 hex>" or "<repository>@sha256:<64 hex>";
 *  - a boolean is not a seed (Python accepts True as 1).
 */
#ifndef WARMEXEC_TASK_H
#define WARMEXEC_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <warmexec/error.h>
#include <warmexec/ids.h>
#include <warmexec/result.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WX_SEED_MAX INT64_MAX

/* A SimTask: one deterministic simulation. */
typedef struct wx_task {
    char *bundle_ref; /* owned */
    char *entrypoint; /* owned; "import.path/scenario" */
    json_t *params;   /* owned reference; object of bool/int/float/string */
    int64_t seed;     /* [0, WX_SEED_MAX] */
    json_t *outputs;  /* owned reference; NULL = all outputs, else a sorted
                         array of strings */
    json_t *config;   /* owned reference or NULL; any object */
    json_t *env;      /* owned reference or NULL; any object */
    char param_id[WX_ID_LEN + 1];
} wx_task;

/*
 * Check `ref` against the bundle_ref grammar above.  WX_EINVAL naming the
 * rule.
 */
WX_API int wx_bundle_ref_validate(const char *ref, wx_error *err);

/*
 * Check a parameter object: every value a bool, an int64 integer, a finite
 * float or a string.  WX_EINVAL "params.NAME: ...".
 */
WX_API int wx_params_validate(const json_t *params, wx_error *err);

/*
 * Build a task from its JSON object {"bundle_ref","entrypoint","params",
 * "seed","outputs"?,"config"?,"env"?}, validating in the contract's order.
 * `*t` is overwritten; on failure it is left released.
 */
WX_API int wx_task_from_json(wx_task *t, const json_t *v, wx_error *err);

/* The task as a JSON object (outputs/config/env null when absent). */
WX_API int wx_task_to_json(const wx_task *t, json_t **out, wx_error *err);

/* SimTask.sim_root(): the provenance root including config and env. */
WX_API int wx_task_sim_root(const wx_task *t, char out[WX_ID_LEN + 1],
                            wx_error *err);

/* SimTask.task_id(): sim_root + entrypoint + requested outputs. */
WX_API int wx_task_task_id(const wx_task *t, char out[WX_ID_LEN + 1],
                           wx_error *err);

/* Deep copy into `dst` (overwritten).  WX_ENOMEM. */
WX_API int wx_task_copy(wx_task *dst, const wx_task *src, wx_error *err);

WX_API void wx_task_release(wx_task *t);

/*
 * ReplicateSet: n_replicates copies of a base task with seeds
 * base.seed + seed_offset + i.  Unlike the original, n_replicates must be
 * at least 1 and every seed must stay within [0, WX_SEED_MAX].
 */
typedef struct wx_replicate_set {
    wx_task base;
    int64_t n_replicates;
    int64_t seed_offset;
} wx_replicate_set;

/* Check n_replicates >= 1, seed_offset >= 0 and the last seed's range. */
WX_API int wx_replicate_set_validate(const wx_replicate_set *rs,
                                     wx_error *err);

/* The seed of replicate `i` (0 <= i < n_replicates). */
WX_API int wx_replicate_seed(const wx_replicate_set *rs, int64_t i,
                             int64_t *seed, wx_error *err);

/* Task `i` of the set: a copy of the base with its seed.  `*out` owned. */
WX_API int wx_replicate_task(const wx_replicate_set *rs, int64_t i,
                             wx_task *out, wx_error *err);

/*
 * The contract's replicate key "sim_<param_id[:8]>_<i>" into `out`
 * (at least 32 bytes).
 */
WX_API void wx_replicate_key(const wx_replicate_set *rs, int64_t i,
                             char *out, size_t out_size);

/* {"base_task":SimTask,"n_replicates":N,"seed_offset":K} */
WX_API int wx_replicate_set_from_json(wx_replicate_set *rs, const json_t *v,
                                      wx_error *err);
WX_API int wx_replicate_set_to_json(const wx_replicate_set *rs, json_t **out,
                                    wx_error *err);
WX_API void wx_replicate_set_release(wx_replicate_set *rs);

/* An AggregationTask: a target evaluated over replicate results. */
typedef struct wx_agg_task {
    char *bundle_ref;        /* owned */
    char *target_entrypoint; /* owned; "import.path:name" or ".../name" */
    wx_sim_return *sim_returns; /* owned array */
    size_t n_sim_returns;       /* >= 1 */
    json_t *target_data;        /* owned reference or NULL */
} wx_agg_task;

/*
 * {"bundle_ref","target_entrypoint","sim_returns":[SimReturn...],
 * "target_data"?}.  `*t` overwritten; on failure left released.
 */
WX_API int wx_agg_task_from_json(wx_agg_task *t, const json_t *v,
                                 wx_error *err);
WX_API int wx_agg_task_to_json(const wx_agg_task *t, json_t **out,
                               wx_error *err);

/* AggregationTask.aggregation_id() (16 hex); `full` optional (64 hex). */
WX_API int wx_agg_task_id(const wx_agg_task *t,
                          char out[WX_AGG_ID_LEN + 1],
                          char full[WX_ID_LEN + 1], wx_error *err);

/* Deep copy into `dst` (overwritten; released on failure).  WX_ENOMEM. */
WX_API int wx_agg_task_copy(wx_agg_task *dst, const wx_agg_task *src,
                            wx_error *err);

WX_API void wx_agg_task_release(wx_agg_task *t);

#ifdef __cplusplus
}
#endif

#endif
