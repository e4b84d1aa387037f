/*
 * The results database of a study (docs/results.md): SQLite tables runs,
 * sims and aggregations and the view losses.  Rows are written by a
 * writer thread in batched transactions; a row handed over is durable once
 * wx__results_flush returns (or a later batch commits).
 *
 * Thread-safe: any thread may add rows.
 */
#ifndef WX_RESULTS_H
#define WX_RESULTS_H

#include <stdbool.h>
#include <stdint.h>

#include <warmexec/error.h>
#include <warmexec/study.h>

typedef struct wx__results wx__results;

/* A simulation row; strings are copied by wx__results_add_sim. */
typedef struct wx__sim_row {
    const char *param_id;
    int64_t replicate;
    const char *params;  /* canonical JSON */
    int64_t seed;
    const char *task_id, *sim_root;
    bool ok;
    const char *error_type, *error_message; /* NULL when ok */
    const char *outputs; /* JSON object: name -> artifact */
    double duration;
    bool cached;
} wx__sim_row;

/* An aggregation row; strings are copied. */
typedef struct wx__agg_row {
    const char *param_id;
    const char *target;
    bool ok;
    double loss;
    int64_t n_replicates;
    const char *diagnostics; /* JSON text, or NULL */
    const char *error_type, *error;
    const char *aggregation_id;
} wx__agg_row;

/* The identity of a study run: one per results database. */
typedef struct wx__run_info {
    const char *run_key; /* digest of study, bundle, entrypoint, targets */
    const char *study;
    const char *study_sha256;
    const char *bundle_ref;
    const char *entrypoint;
    const char *targets; /* JSON list */
    int64_t n_sets, n_tasks;
} wx__run_info;

/*
 * Open or create the database at `path` and record the run.  A database
 * that holds another run is refused (WX_EINVAL, naming both), so a
 * results file is always one study.  An unwritable path is WX_EINVAL.
 */
int wx__results_open(const char *path, const wx__run_info *run,
                     wx__results **out, wx_error *err);

/*
 * Call `fn(ctx)` before each commit (NULL: none): the run makes the CAS
 * objects its rows refer to durable there, so a committed row never
 * points at an object a power loss could take.  A failing barrier fails
 * the batch like a failing write.
 */
void wx__results_set_barrier(wx__results *r,
                             int (*fn)(void *ctx, wx_error *err), void *ctx);

/* Flush, mark the run "complete" or "interrupted", and close. */
int wx__results_close(wx__results *r, bool complete, wx_error *err);

/* Visit the recorded simulations and aggregations (for resume). */
int wx__results_done(wx__results *r,
                     void (*sim)(void *user, const char *param_id,
                                 int64_t replicate),
                     void (*agg)(void *user, const char *param_id,
                                 const char *target),
                     void *user, wx_error *err);

int wx__results_add_sim(wx__results *r, const wx__sim_row *row);
int wx__results_add_agg(wx__results *r, const wx__agg_row *row);

/* Commit everything handed over so far. */
int wx__results_flush(wx__results *r, wx_error *err);

/*
 * Fill the summary's counts by error type and the best parameter sets per
 * target (up to `best_per_target`) from the database.
 */
int wx__results_summary(wx__results *r, int best_per_target,
                        wx_run_summary *sum, wx_error *err);

/* Write sims.csv and aggregations.csv into `dir` (created). */
int wx__results_export_csv(wx__results *r, const char *dir, wx_error *err);

#endif
