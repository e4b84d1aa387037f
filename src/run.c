/*
 * Running a study: expand parameter sets x replicates into tasks, skip
 * what the results database already has, dispatch the rest through the
 * local service, aggregate every parameter set per target once its
 * replicates are in, record everything, report progress.
 */
#include "internal.h"

#include <pthread.h>
#include <stdio.h>

#include <warmexec/bundle.h>
#include <warmexec/canon.h>
#include <warmexec/entrypoint.h>
#include <warmexec/service.h>
#include <warmexec/study.h>

#include "alloc.h"
#include "clock.h"
#include "hash.h"
#include "result.h"
#include "results.h"

/* A set of 64-bit keys (open addressing), for "already recorded". */
typedef struct keyset {
    uint64_t *slots; /* 0 = empty */
    size_t cap, n;
} keyset;

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h | 1; /* never 0, the empty mark */
}

/* A key for a parameter set (its param_id is a hash already) + detail. */
static uint64_t key_of(const char *param_id, const char *detail, int64_t n)
{
    uint64_t h = 1469598103934665603ULL;

    for (const char *p = param_id; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    for (const char *p = detail; p && *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return mix(h ^ (uint64_t)n * 0x9E3779B97F4A7C15ULL);
}

static bool keyset_has(const keyset *s, uint64_t k)
{
    if (!s->cap)
        return false;
    for (size_t i = k & (s->cap - 1); s->slots[i]; i = (i + 1) & (s->cap - 1))
        if (s->slots[i] == k)
            return true;
    return false;
}

static void keyset_put(keyset *s, uint64_t k)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        uint64_t *slots = wx__calloc(cap, sizeof(*slots));

        if (!slots)
            return; /* not remembering only costs a re-run from cache */
        for (size_t i = 0; i < s->cap; i++) {
            size_t j = s->slots[i] & (cap - 1);

            while (s->slots[i] && slots[j])
                j = (j + 1) & (cap - 1);
            if (s->slots[i])
                slots[j] = s->slots[i];
        }
        wx_free(s->slots);
        s->slots = slots;
        s->cap = cap;
    }
    if (keyset_has(s, k))
        return;
    for (size_t i = k & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->slots[i]) {
            s->slots[i] = k;
            s->n++;
            return;
        }
    }
}

typedef struct runner runner;

/* A parameter set in flight. */
typedef struct set_state {
    runner *run;
    const wx_param_set *set;
    char *params_text;     /* canonical JSON of its parameters */
    bool *record;          /* per replicate: not in the database yet */
    bool *aggregate;       /* per target: not in the database yet */
    size_t n_aggs;         /* targets still to aggregate */
    size_t n_record;       /* replicates still to record */
    wx_sim_return *reps;   /* the replicates, kept for aggregation */
    size_t pending;        /* replicates or aggregations not back yet */
    bool cancelled;        /* a replicate was dropped by a stop (r->mu) */
} set_state;

/* What one simulation callback needs. */
typedef struct sim_job {
    set_state *s;
    size_t replicate;
} sim_job;

/* What one aggregation callback needs. */
typedef struct agg_job {
    set_state *s;
    size_t target;
} agg_job;

struct runner {
    const wx_study *st;
    const wx_run_options *o;
    wx_service *svc;
    wx__results *db;
    wx_task template;
    char **targets; /* borrowed strings, NULL-terminated */
    size_t n_targets;
    keyset done_sims, done_aggs;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t sets_in_flight, window;
    wx_run_progress p;
    int64_t start_ns;
    int write_errors;
};

/* ---- recording ---- */

static char *outputs_text(const wx_sim_return *r)
{
    wx_buf text = WX_BUF_INIT(SIZE_MAX - 1);

    if (wx__outputs_canonical(r->outputs, r->n_outputs, &text, NULL) != 0)
        wx_buf_puts(&text, "{}", NULL);
    return wx_buf_detach(&text, NULL);
}

static void record_sim(set_state *s, size_t i, const wx_sim_return *r)
{
    json_t *d = json_object_get(r->metrics, "duration_s");
    char *outputs = outputs_text(r);
    wx__sim_row row = {s->set->param_id,
                       (int64_t)i,
                       s->params_text,
                       s->set->seeds[i],
                       r->task_id,
                       r->sim_root,
                       r->error == NULL,
                       r->error ? r->error->error_type : NULL,
                       r->error ? r->error->message : NULL,
                       outputs,
                       json_is_number(d) ? json_number_value(d) : 0.0,
                       r->cached};

    if (!outputs || wx__results_add_sim(s->run->db, &row) != 0)
        __atomic_fetch_add(&s->run->write_errors, 1, __ATOMIC_RELAXED);
    wx_free(outputs);
}

static void record_agg(set_state *s, size_t t, const wx_agg_return *ret,
                       int status, const wx_error *err,
                       const wx_fault *fault)
{
    wx_buf diag = WX_BUF_INIT(SIZE_MAX - 1);
    wx__agg_row row = {.param_id = s->set->param_id,
                       .target = s->run->targets[t],
                       .ok = status == 0};

    if (!status) {
        row.loss = ret->loss;
        row.n_replicates = ret->n_replicates;
        if (ret->diagnostics && wx_json_canonical(&diag, ret->diagnostics,
                                                  NULL) == 0)
            row.diagnostics = diag.data;
        row.aggregation_id = ret->aggregation_id;
    } else {
        row.n_replicates = (int64_t)s->set->n_seeds;
        row.error_type = fault && fault->error_type ? fault->error_type
                                                    : "InternalError";
        row.error = err->message;
    }
    if (wx__results_add_agg(s->run->db, &row) != 0)
        __atomic_fetch_add(&s->run->write_errors, 1, __ATOMIC_RELAXED);
    wx_buf_release(&diag);
}

/* ---- parameter sets in flight ---- */

static void set_free(set_state *s)
{
    for (size_t i = 0; s->reps && i < s->set->n_seeds; i++)
        wx_sim_return_release(&s->reps[i]);
    wx_free(s->reps);
    wx_free(s->record);
    wx_free(s->aggregate);
    wx_free(s->params_text);
    wx_free(s);
}

static void finish_set(set_state *s)
{
    runner *r = s->run;

    pthread_mutex_lock(&r->mu);
    r->sets_in_flight--;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    set_free(s);
}

/* One replicate or aggregation back; true when it was the last. */
static bool one_less(set_state *s)
{
    bool last;

    pthread_mutex_lock(&s->run->mu);
    last = --s->pending == 0;
    pthread_mutex_unlock(&s->run->mu);
    return last;
}

/* An aggregation of set `s` for target `t` is back (or failed to go). */
static void agg_back(set_state *s, size_t t, wx_agg_return *ret, int status,
                     const wx_error *err, const wx_fault *fault)
{
    runner *r = s->run;

    /* Dropped by a stop before it ran: nothing to record. */
    if (status == WX_ECANCELED) {
        if (one_less(s))
            finish_set(s);
        return;
    }
    record_agg(s, t, ret, status, err, fault);
    if (!status)
        wx_agg_return_release(ret);
    pthread_mutex_lock(&r->mu);
    r->p.aggs_done++;
    r->p.aggs_failed += status != 0;
    pthread_mutex_unlock(&r->mu);
    if (one_less(s))
        finish_set(s);
}

static void on_agg(void *user, wx_agg_return *ret, int status,
                   const wx_error *err, const wx_fault *fault)
{
    agg_job j = *(agg_job *)user;

    wx_free(user);
    agg_back(j.s, j.target, ret, status, err, fault);
}

/* Every replicate is in: one aggregation per target still to do. */
static void submit_aggregations(set_state *s)
{
    runner *r = s->run;
    wx_agg_task task = {r->template.bundle_ref, NULL, s->reps,
                        s->set->n_seeds, NULL};

    /* One extra count while submitting: `s` must outlive the loop even
       if every aggregation comes back before it ends. */
    s->pending = s->n_aggs + 1;
    for (size_t t = 0; t < r->n_targets; t++) {
        wx_error err = WX_ERROR_INIT;
        agg_job *j;
        int rc;

        if (!s->aggregate[t])
            continue;
        j = wx__calloc(1, sizeof(*j));
        task.target_entrypoint = r->targets[t];
        rc = j ? 0 : wx_error_set(&err, WX_ENOMEM, "out of memory");
        if (!rc) {
            *j = (agg_job){s, t};
            rc = wx_service_submit_aggregation(r->svc, &task, on_agg, j,
                                               &err);
        }
        if (rc) {
            wx_fault f = {.error_type = wx_fault_type_of(rc)};

            wx_free(j);
            agg_back(s, t, NULL, rc, &err, &f);
        }
    }
    if (one_less(s))
        finish_set(s);
}

static void count_sim(runner *r, bool recorded, const wx_sim_return *ret)
{
    pthread_mutex_lock(&r->mu);
    if (recorded) {
        r->p.done++;
        r->p.failed += ret->error != NULL;
        r->p.cached += ret->cached;
    }
    pthread_mutex_unlock(&r->mu);
}

static void on_sim(void *user, wx_sim_return *ret, int status)
{
    sim_job *j = user;
    set_state *s = j->s;
    size_t i = j->replicate;

    if (status == WX_ECANCELED) {
        /* Dropped by a stop before it ran: the set is left for resume. */
        pthread_mutex_lock(&s->run->mu);
        s->cancelled = true;
        pthread_mutex_unlock(&s->run->mu);
        wx_sim_return_release(ret);
    } else {
        if (s->record[i])
            record_sim(s, i, ret);
        count_sim(s->run, s->record[i], ret);
        if (s->reps)
            s->reps[i] = *ret; /* kept for the aggregation */
        else
            wx_sim_return_release(ret);
    }
    wx_free(j);
    if (!one_less(s))
        return;
    if (s->n_aggs && !s->cancelled)
        submit_aggregations(s);
    else
        finish_set(s);
}

/* ---- the producer ---- */

/* Which replicates and targets of `set` the database lacks. */
static set_state *plan_set(runner *r, const wx_param_set *set,
                           size_t *to_submit)
{
    set_state *s = wx__calloc(1, sizeof(*s));
    size_t n_rec = 0;

    if (!s || !(s->record = wx__calloc(set->n_seeds, sizeof(bool))) ||
        !(s->aggregate = wx__calloc(r->n_targets + 1, sizeof(bool)))) {
        if (s)
            set_free(s);
        return NULL;
    }
    s->run = r;
    s->set = set;
    for (size_t i = 0; i < set->n_seeds; i++)
        n_rec += s->record[i] = !keyset_has(
            &r->done_sims, key_of(set->param_id, NULL, (int64_t)i));
    s->n_record = n_rec;
    for (size_t t = 0; t < r->n_targets; t++)
        s->n_aggs += s->aggregate[t] = !keyset_has(
            &r->done_aggs, key_of(set->param_id, r->targets[t], 0));
    /* To aggregate, every replicate is needed: recorded ones come from
       the result cache. */
    *to_submit = s->n_aggs ? set->n_seeds : n_rec;
    return s;
}

static int submit_replicate(runner *r, set_state *s, size_t i,
                            wx_error *err)
{
    sim_job *j = wx__calloc(1, sizeof(*j));
    /* Borrowed from the template and the set: a service copies what it
       keeps. */
    wx_task task = r->template;
    int rc;

    if (!j)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    task.params = s->set->params;
    memcpy(task.param_id, s->set->param_id, sizeof(task.param_id));
    task.seed = s->set->seeds[i];
    *j = (sim_job){s, i};
    rc = wx_service_submit(r->svc, &task, on_sim, j, err);
    if (rc)
        wx_free(j);
    return rc;
}

/* Wait for room in the window of sets in flight (bounded memory). */
static void take_window_slot(runner *r)
{
    pthread_mutex_lock(&r->mu);
    while (r->sets_in_flight >= r->window)
        pthread_cond_wait(&r->cv, &r->mu);
    r->sets_in_flight++;
    pthread_mutex_unlock(&r->mu);
}

/* Submit the replicates of `s`: how many went, and the first failure. */
static int submit_replicates(runner *r, set_state *s, size_t *submitted,
                             wx_error *err)
{
    *submitted = 0;
    for (size_t i = 0; i < s->set->n_seeds; i++) {
        int rc;

        if (!s->n_aggs && !s->record[i])
            continue;
        rc = submit_replicate(r, s, i, err);
        if (rc)
            return rc;
        (*submitted)++;
    }
    return 0;
}

/*
 * Submission is over: drop the extra count and the replicates that did
 * not go (after a failure, which also cancels the aggregations).
 */
static void finish_submitting(set_state *s, size_t not_sent, bool failed)
{
    bool last;

    pthread_mutex_lock(&s->run->mu);
    if (failed)
        s->n_aggs = 0;
    s->pending -= not_sent + 1;
    last = s->pending == 0;
    pthread_mutex_unlock(&s->run->mu);
    if (!last)
        return;
    if (s->n_aggs && !s->cancelled)
        submit_aggregations(s);
    else
        finish_set(s);
}

static int start_set(runner *r, const wx_param_set *set, wx_error *err)
{
    size_t to_submit = 0, submitted = 0;
    set_state *s = plan_set(r, set, &to_submit);
    wx_buf text = WX_BUF_INIT(SIZE_MAX - 1);
    int rc = 0;

    if (!s || wx_json_canonical(&text, set->params, err) != 0 ||
        (s->n_aggs && !(s->reps = wx__calloc(set->n_seeds,
                                             sizeof(*s->reps))))) {
        wx_buf_release(&text);
        if (s)
            set_free(s);
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    }
    s->params_text = wx_buf_detach(&text, NULL);
    pthread_mutex_lock(&r->mu);
    r->p.skipped += set->n_seeds - s->n_record;
    pthread_mutex_unlock(&r->mu);
    if (to_submit == 0 && s->n_aggs == 0) {
        set_free(s);
        return 0;
    }
    take_window_slot(r);
    s->pending = to_submit + 1; /* + 1 while submitting, as above */
    rc = submit_replicates(r, s, &submitted, err);
    finish_submitting(s, to_submit - submitted, rc != 0);
    return rc;
}

/* ---- setting up ---- */

static bool listed(char **list, const char *s)
{
    for (size_t i = 0; list && list[i]; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

static size_t count_strings(char *const *v)
{
    size_t n = 0;

    while (v && v[n])
        n++;
    return n;
}

/* Targets: the flags', else the study's, else the manifest's. */
static int choose_targets(runner *r, const wx_manifest *m, wx_error *err)
{
    char **chosen = (char **)r->o->targets;

    if (!chosen || !chosen[0])
        chosen = r->st->targets;
    if (!chosen || !chosen[0])
        chosen = m->targets;
    r->targets = chosen;
    r->n_targets = count_strings(chosen);
    for (size_t i = 0; i < r->n_targets; i++) {
        int rc = wx_entrypoint_parse(chosen[i], WX_EP_TARGET, NULL, err);

        if (rc)
            return wx_error_prefix(err, rc, "target '%s'", chosen[i]);
        /* A bundle that lists its targets knows all of them. */
        if (m->targets && m->targets[0] && !listed(m->targets, chosen[i]))
            return wx_error_set(err, WX_EINVAL,
                                "unknown target '%s': bundle %s has no such "
                                "target",
                                chosen[i], m->name);
    }
    return 0;
}

/* The bundle must exist and, if it lists entrypoints, have the study's. */
static int check_bundle(runner *r, const wx_config *cfg, const char *ref,
                        wx_manifest *m, wx_error *err)
{
    char digest[WX_DIGEST_LEN + 1], path[4096];
    wx_bundles *b = NULL;
    int rc = wx_bundles_open(wx_config_str(cfg, WX_CONF_HOME), &b, err);

    if (!rc)
        rc = wx_bundles_ensure_local(b, ref, digest, path, err);
    if (!rc)
        rc = wx_manifest_load(path, m, err);
    wx_bundles_close(b);
    if (rc)
        return rc;
    if (m->entrypoints && m->entrypoints[0] &&
        !listed(m->entrypoints, r->st->entrypoint))
        return wx_error_set(err, WX_EINVAL,
                            "unknown entrypoint '%s': bundle %s has no such "
                            "simulation",
                            r->st->entrypoint, m->name);
    return 0;
}

/* The task every task of the study is a copy of (validates them too). */
static int make_template(runner *r, const char *ref, wx_error *err)
{
    json_t *t = json_pack("{s:s,s:s,s:O,s:i,s:O}", "bundle_ref", ref,
                          "entrypoint", r->st->entrypoint, "params",
                          r->st->sets[0].params, "seed", 0, "outputs",
                          r->st->outputs ? r->st->outputs : json_null());
    int rc = t ? wx_task_from_json(&r->template, t, err)
               : wx_error_set(err, WX_ENOMEM, "out of memory");

    json_decref(t);
    return rc ? wx_error_prefix(err, rc, "study") : 0;
}

static char *targets_json(const runner *r)
{
    json_t *list = json_array();
    wx_buf text = WX_BUF_INIT(1 << 20);

    for (size_t i = 0; list && i < r->n_targets; i++)
        json_array_append_new(list, json_string(r->targets[i]));
    if (!list || wx_json_canonical(&text, list, NULL) != 0)
        wx_buf_puts(&text, "[]", NULL);
    json_decref(list);
    return wx_buf_detach(&text, NULL);
}

/* One study, bundle, entrypoint and target list = one run key. */
static void run_key(const runner *r, const char *targets, char out[65])
{
    wx_buf b = WX_BUF_INIT(1 << 20);

    wx_buf_printf(&b, NULL, "%s\n%s\n%s\n%s", r->st->sha256,
                  r->template.bundle_ref, r->st->entrypoint, targets);
    wx__sha256_hex(b.data, b.len, out, NULL);
    wx_buf_release(&b);
}

static void remember_sim(void *user, const char *param_id, int64_t rep)
{
    keyset_put(&((runner *)user)->done_sims, key_of(param_id, NULL, rep));
}

static void remember_agg(void *user, const char *param_id,
                         const char *target)
{
    keyset_put(&((runner *)user)->done_aggs, key_of(param_id, target, 0));
}

static int open_results(runner *r, wx_error *err)
{
    char key[65];
    char *targets = targets_json(r);
    wx__run_info info = {key,
                         r->st->path,
                         r->st->sha256,
                         r->template.bundle_ref,
                         r->st->entrypoint,
                         targets,
                         (int64_t)r->st->n_sets,
                         (int64_t)wx_study_tasks(r->st)};
    int rc;

    run_key(r, targets ? targets : "[]", key);
    rc = wx__results_open(r->o->results_path, &info, &r->db, err);
    if (!rc)
        rc = wx__results_done(r->db, remember_sim, remember_agg, r, err);
    wx_free(targets);
    return rc;
}

/* ---- progress ---- */

typedef struct ticker {
    runner *r;
    pthread_t thread;
    pthread_cond_t cv; /* its own: the runner's cv signals every set */
    bool stop;
} ticker;

/* A copy of the counters with the derived rate and ETA (r->mu held). */
static wx_run_progress snapshot(runner *r)
{
    wx_run_progress p = r->p;
    size_t left = p.total - WX_MIN(p.total, p.done + p.skipped);

    p.elapsed_s = (double)(wx__now_ns() - r->start_ns) / 1e9;
    p.rate = p.elapsed_s > 0 ? (double)p.done / p.elapsed_s : 0;
    p.eta_s = p.rate > 0 ? (double)left / p.rate : -1;
    return p;
}

static void *ticker_main(void *arg)
{
    ticker *t = arg;
    runner *r = t->r;
    int64_t every_ns = (int64_t)(r->o->progress_interval * 1e9);

    pthread_mutex_lock(&r->mu);
    while (!t->stop) {
        wx_run_progress p;

        wx__cond_wait_ns(&t->cv, &r->mu, every_ns);
        if (t->stop)
            break;
        p = snapshot(r);
        pthread_mutex_unlock(&r->mu);
        r->o->progress(r->o->progress_user, &p, false);
        pthread_mutex_lock(&r->mu);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void ticker_start(ticker *t, runner *r)
{
    t->r = r;
    t->stop = false;
    pthread_cond_init(&t->cv, NULL);
    if (!r->o->progress || r->o->progress_interval <= 0 ||
        pthread_create(&t->thread, NULL, ticker_main, t) != 0)
        t->r = NULL;
}

static void ticker_stop(ticker *t)
{
    if (t->r) {
        pthread_mutex_lock(&t->r->mu);
        t->stop = true;
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->r->mu);
        pthread_join(t->thread, NULL);
    }
    pthread_cond_destroy(&t->cv);
}

/* ---- the run ---- */

static bool stop_requested(const runner *r)
{
    return r->o->stop && *r->o->stop;
}

/* Feed every parameter set; returns early when asked to stop. */
static int produce(runner *r, wx_error *err)
{
    for (size_t i = 0; i < r->st->n_sets && !stop_requested(r); i++) {
        int rc = start_set(r, &r->st->sets[i], err);

        if (rc)
            return rc;
    }
    return 0;
}

static void wait_sets(runner *r)
{
    pthread_mutex_lock(&r->mu);
    while (r->sets_in_flight)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
}

/* The results barrier: the CAS objects of the rows about to be committed
 * reach the disk first (docs/cas.md). */
static int sync_objects(void *env, wx_error *err)
{
    return wx_env_sync(env, err);
}

static int open_engine(runner *r, const wx_config *cfg, wx_env **env,
                       wx_error *err)
{
    wx_env_options eo = {.no_cache = r->o->no_cache};
    int jobs = r->o->jobs;
    int rc = wx_env_open(cfg, &eo, env, err);

    if (jobs <= 0)
        jobs = (int)wx_config_int(cfg, WX_CONF_JOBS);
    if (rc)
        return rc;
    if (r->o->make_service) {
        rc = r->o->make_service(r->o->service_user, *env, &r->svc, &jobs,
                                err);
    } else {
        /* 64 queued tasks per lane: the producer is woken once per 32
           submissions per lane, not once per two (a context switch each). */
        rc = wx_service_local(*env, jobs, (size_t)WX_MAX(jobs, 1) * 64,
                              &r->svc, err);
        if (!rc && r->o->stop)
            wx_service_local_cancel_on(r->svc, r->o->stop);
    }
    r->window = (size_t)WX_MAX(jobs, 1) * 8 + 8;
    return rc;
}

static void runner_release(runner *r)
{
    wx_task_release(&r->template);
    wx_free(r->done_sims.slots);
    wx_free(r->done_aggs.slots);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
}

/* Run the sets, then record the outcome and the summary. */
static int run_all(runner *r, wx_run_summary *sum, wx_error *err)
{
    ticker t;
    int rc;

    ticker_start(&t, r);
    rc = produce(r, err);
    wait_sets(r);
    wx_service_wait(r->svc);
    ticker_stop(&t);
    pthread_mutex_lock(&r->mu);
    sum->progress = snapshot(r);
    pthread_mutex_unlock(&r->mu);
    sum->interrupted = stop_requested(r);
    if (!rc)
        rc = wx__results_summary(r->db, 5, sum, err);
    if (!rc && r->o->csv_dir)
        rc = wx__results_export_csv(r->db, r->o->csv_dir, err);
    return rc;
}

static int outcome(const runner *r, const wx_run_summary *sum, wx_error *err)
{
    if (sum->interrupted)
        return wx_error_set(err, WX_ECANCELED,
                            "stopped: %zu of %zu tasks recorded; run the "
                            "same command again to resume",
                            sum->progress.done + sum->progress.skipped,
                            sum->progress.total);
    if (r->write_errors)
        return wx_error_set(err, WX_ENOMEM,
                            "%d results could not be recorded",
                            r->write_errors);
    if (sum->sims_failed || sum->aggs_failed)
        return wx_error_set(err, WX_EMODEL,
                            "%zu tasks and %zu aggregations failed",
                            sum->sims_failed, sum->aggs_failed);
    return 0;
}

int wx_study_run(const wx_config *cfg, const wx_study *st,
                 const wx_run_options *o, wx_run_summary *sum, wx_error *err)
{
    const char *ref = o->bundle_ref ? o->bundle_ref : st->bundle_ref;
    runner r = {.st = st, .o = o};
    wx_manifest m = {0};
    wx_env *env = NULL;
    int rc;

    memset(sum, 0, sizeof(*sum));
    pthread_mutex_init(&r.mu, NULL);
    pthread_cond_init(&r.cv, NULL);
    r.start_ns = wx__now_ns();
    r.p.total = wx_study_tasks(st);
    snprintf(sum->results_path, sizeof(sum->results_path), "%s",
             o->results_path);
    rc = ref ? 0
             : wx_error_set(err, WX_EINVAL,
                            "no bundle: give --bundle DIR|REF");
    if (!rc)
        rc = check_bundle(&r, cfg, ref, &m, err);
    if (!rc)
        rc = choose_targets(&r, &m, err);
    if (!rc)
        rc = make_template(&r, ref, err);
    r.p.aggs_total = st->n_sets * r.n_targets;
    if (!rc)
        rc = open_results(&r, err);
    if (!rc)
        rc = open_engine(&r, cfg, &env, err);
    if (!rc) {
        wx__results_set_barrier(r.db, sync_objects, env);
        rc = run_all(&r, sum, err);
    }
    if (r.svc)
        wx_service_free(r.svc);
    if (r.db && env) {
        /* Every row in before the environment goes. */
        int flush_rc = wx__results_flush(r.db, rc ? NULL : err);

        rc = rc ? rc : flush_rc;
        wx__results_set_barrier(r.db, NULL, NULL);
    }
    wx_env_close(env);
    if (r.db) {
        int close_rc = wx__results_close(r.db, !rc && !sum->interrupted,
                                         rc ? NULL : err);

        rc = rc ? rc : close_rc;
    }
    if (!rc)
        rc = outcome(&r, sum, err);
    wx_manifest_release(&m);
    runner_release(&r);
    return rc;
}
