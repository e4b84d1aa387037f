/*
 * Studies: parameter sets x replicates (+ targets), the main job of
 * `warmexec run` (DESIGN.md 7, docs/results.md).
 *
 * Input files: a ModelOps SimulationStudy (as written by `cb sampling`)
 * or a SimJob (modelops-formats section 4.4-4.5).  Replicate seeds: an
 * entry without a seed runs n_replicates tasks with seeds s0 + i, where s0
 * is the contract's first replicate seed, int_be(BLAKE2b-64("<param_id>:
 * 0")) mod 2^32 (what the Python platform executes, so caches line up);
 * an entry with a seed runs that seed.  Entries with equal parameters form
 * one parameter set whose seeds are all honoured (duplicates dropped).
 *
 * The run writes a SQLite results database transactionally, in batches: a
 * kill at any moment loses nothing already committed, and running the same
 * command again resumes (finished tasks are skipped, tasks finished but not
 * yet recorded come from the result cache).
 */
#ifndef WARMEXEC_STUDY_H
#define WARMEXEC_STUDY_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <warmexec/config.h>
#include <warmexec/env.h>
#include <warmexec/error.h>
#include <warmexec/service.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One parameter set and its replicate seeds. */
typedef struct wx_param_set {
    json_t *params; /* owned reference */
    char param_id[65];
    int64_t *seeds; /* owned; replicate i runs seeds[i] */
    size_t n_seeds;
} wx_param_set;

typedef struct wx_study {
    char *entrypoint;   /* owned; "model/scenario" */
    char *bundle_ref;   /* owned or NULL: a SimJob names its bundle */
    wx_param_set *sets; /* owned */
    size_t n_sets;
    char **targets;     /* owned, NULL-terminated; from the file */
    json_t *outputs;    /* owned reference or NULL: requested outputs */
    char sha256[65];    /* of the file's bytes */
    char *path;         /* owned */
} wx_study;

/*
 * Read and check a study or SimJob file (at most `max_bytes`).  WX_EINVAL
 * with a message naming the field and the rule.  `*st` overwritten;
 * released on failure.
 */
WX_API int wx_study_load(const char *path, size_t max_bytes, wx_study *st,
                         wx_error *err);
WX_API void wx_study_release(wx_study *st);

/* Total simulations of the study. */
WX_API size_t wx_study_tasks(const wx_study *st);

/* The contract's seed of replicate r of a parameter set (SimulationStudy
   to_simjob): int_be(BLAKE2b-64("<param_id>:<r>")) mod 2^32. */
WX_API int64_t wx_study_seed(const char *param_id, int64_t r);

/* Progress, reported while a study runs. */
typedef struct wx_run_progress {
    size_t total, done, failed, cached, skipped, in_flight;
    size_t aggs_total, aggs_done, aggs_failed;
    double elapsed_s, rate; /* tasks per second */
    double eta_s;           /* -1 when unknown */
} wx_run_progress;

typedef void (*wx_progress_fn)(void *user, const wx_run_progress *p,
                               bool final);

/*
 * Makes the service a run dispatches to, instead of the local one: called
 * once with the run's environment (borrowed), it sets `*out` (freed by
 * the run) and `*parallel`, how many tasks the service runs at once.  The
 * MPI service's maker is in warmexec/mpi.h.
 */
typedef int (*wx_service_maker)(void *user, wx_env *env, wx_service **out,
                                int *parallel, wx_error *err);

typedef struct wx_run_options {
    const char *bundle_ref;      /* the bundle; NULL = the SimJob's */
    const char *const *targets;  /* NULL-terminated flags, or NULL */
    const char *results_path;    /* the results database */
    const char *csv_dir;         /* also export CSV files here, or NULL */
    int jobs;                    /* dispatcher threads; 0 = CPUs */
    bool no_cache;
    wx_progress_fn progress;
    void *progress_user;
    double progress_interval;    /* seconds between progress calls */
    volatile sig_atomic_t *stop; /* set (e.g. by SIGINT) to stop cleanly */
    wx_service_maker make_service; /* NULL: the local service */
    void *service_user;
} wx_run_options;

/* Failures of one error type. */
typedef struct wx_error_count {
    char type[48];
    size_t count;
} wx_error_count;

/* The best parameter set of a target. */
typedef struct wx_best {
    char *target;   /* owned */
    char param_id[65];
    double loss;
    char *params;   /* owned; canonical JSON */
} wx_best;

typedef struct wx_run_summary {
    wx_run_progress progress; /* this invocation */
    /* The whole study as recorded (resumed runs included). */
    size_t sims_ok, sims_failed, aggs_ok, aggs_failed;
    wx_error_count *errors; /* owned; by error type, simulations and
                               aggregations together */
    size_t n_errors;
    wx_best *best;          /* owned; up to 5 per target, best first */
    size_t n_best;
    bool interrupted;
    char results_path[4096];
} wx_run_summary;

WX_API void wx_run_summary_release(wx_run_summary *s);

/*
 * Run the study: every task not yet in the results database, then one
 * aggregation per (parameter set, target).  Targets: the options', else
 * the study's, else the bundle manifest's.  Returns 0 when everything
 * succeeded, WX_EMODEL when some tasks or aggregations failed (the study
 * still completed), WX_ECANCELED when stopped, or an error that stopped
 * the run (bad input, an unwritable results database, ...).  `sum` is
 * filled in every case where the run started.
 */
WX_API int wx_study_run(const wx_config *cfg, const wx_study *st,
                        const wx_run_options *o, wx_run_summary *sum,
                        wx_error *err);

#ifdef __cplusplus
}
#endif

#endif
