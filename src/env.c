/*
 * The execution environment: run() and run_aggregation(), from the
 * helpers of outputs.c.
 */
#include "internal.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>

#include <warmexec/env.h>
#include <warmexec/json.h>

#include "alloc.h"
#include "clock.h"
#include "env.h"
#include "log.h"
#include "pool.h"

/* Bytes of a cached or replicate artifact loaded from the CAS, at most. */
#define LOAD_MAX ((size_t)1 << 31)

/* Bundles resolved once per environment (they are immutable). */
typedef struct known_bundle {
    struct known_bundle *next;
    char *ref;
    wx__resolved resolved;
} known_bundle;

struct wx_env {
    const wx_config *cfg;
    known_bundle *known;
    wx_pool *pool;
    wx_cas *cas;
    wx_cache *cache;
    wx_bundles *bundles;
    bool own_cas, own_cache, own_bundles;
    size_t inline_max;
    int max_retries;
    pthread_mutex_t mu;
    int64_t tasks, cache_hits, failures;
};

/* ---- resolve_bundle ---- */

void wx__resolved_release(wx__resolved *r)
{
    wx_manifest_release(&r->manifest);
    wx_runner_release(&r->runner);
}

int wx__resolve_bundle(wx_bundles *bundles, const wx_config *cfg,
                       const char *bundle_ref, wx__resolved *out,
                       wx_error *err)
{
    int rc;

    memset(out, 0, sizeof(*out));
    rc = wx_bundles_ensure_local(bundles, bundle_ref, out->digest, out->path,
                                 err);
    if (rc)
        return rc;
    rc = wx_manifest_load(out->path, &out->manifest, err);
    if (!rc)
        rc = wx_runner_for(&out->manifest, out->digest, out->path, cfg,
                           &out->runner, err);
    if (rc) {
        wx__resolved_release(out);
        return wx_error_prefix(err, rc == WX_ENOMEM ? rc : WX_ESTART,
                               "bundle %s cannot run", bundle_ref);
    }
    return 0;
}

/* ---- run() ---- */

static bool retryable(int rc, const wx_fault *fault)
{
    if (rc == WX_EIO)
        return true; /* StorageError */
    return fault->error_type && fault->retryable;
}

/*
 * The ids of a task, computed while its worker runs it, and the caller's
 * own work for that time (`extra`, once: the first attempt takes it).
 */
typedef struct ids_job {
    const wx_task *task;
    const char *sim_root; /* already known, or NULL */
    const wx__meanwhile **extra;
    wx__task_ids ids;
    bool done;
    int rc;
    wx_error err;
} ids_job;

/* Run the caller's work for the worker's time, unless done already
 * (or `extra` is NULL: none). */
static void run_extra(const wx__meanwhile **extra)
{
    const wx__meanwhile *mw = extra ? *extra : NULL;

    if (!mw)
        return;
    *extra = NULL;
    mw->fn(mw->ctx);
}

/* The error buffers (1 KiB each) are only cleared, not zeroed: these
   are set up for every task. */
static void ids_init(ids_job *j, const wx_task *task, const char *sim_root,
                     const wx__meanwhile **extra)
{
    j->task = task;
    j->sim_root = sim_root;
    j->extra = extra;
    j->done = false;
    j->rc = 0;
    wx__error_clear(&j->err);
}

static void outcome_init(wx__env_outcome *o)
{
    o->rc = 0;
    o->attempts = 0;
    o->start_ns = o->end_ns = 0;
    o->fault = (wx_fault){0};
    wx__error_clear(&o->err);
}

static void compute_ids(void *ctx)
{
    ids_job *j = ctx;

    if (j->sim_root) {
        memcpy(j->ids.sim_root, j->sim_root, sizeof(j->ids.sim_root));
        j->rc = wx_task_id(j->sim_root, j->task->entrypoint,
                           j->task->outputs, j->ids.task_id, &j->err);
    } else {
        j->rc = wx__task_ids_compute(j->task, &j->ids, &j->err);
    }
    j->done = true;
    run_extra(j->extra);
}

/*
 * The reply to request `id` of `task` on the leased worker `w`, by
 * `deadline`, as a SimReturn: outputs stored or inline, and the ids of
 * `ids` when they were computed meanwhile.
 */
static int take_reply(wx_env *env, wx__worker *w, const wx_task *task,
                      int64_t id, int64_t deadline, const ids_job *ids,
                      wx_sim_return *ret, wx_fault *fault, wx_error *err)
{
    json_t *result = NULL;
    wx_output *outputs = NULL;
    const wx__outputs *raw = NULL;
    wx__ingest in;
    int rc;

    wx__ingest_init(&in, env->cas, env->inline_max);
    rc = wx__pool_receive_execute(env->pool, w, id, deadline,
                                  env->cas ? &in.sink : NULL, &raw, &result,
                                  fault, err);
    if (!rc && ids->done && ids->rc)
        rc = wx_error_set(err, ids->rc, "%s", ids->err.message);
    if (!rc)
        rc = wx__handle_artifacts(env->cas, env->inline_max, &in, raw,
                                  &outputs, err);
    if (!rc)
        rc = wx__create_sim_return(task, ids->done ? &ids->ids : NULL,
                                   outputs, raw->n, ret, err);
    /* Before the next reply is read: the streams read this one's frame. */
    wx__ingest_end(&in);
    json_decref(result);
    return rc;
}

/* One attempt: lease, execute, turn the outputs into a SimReturn. */
static int attempt(wx_env *env, const wx__resolved *b, const wx_task *task,
                   const char *sim_root, const wx__meanwhile **extra,
                   wx_sim_return *ret, wx_fault *fault, wx_error *err)
{
    ids_job ids;
    wx__worker *w = NULL;
    int64_t deadline = 0, id;
    int rc = wx__pool_lease(env->pool, &b->runner.spec, &w, fault, err);

    ids_init(&ids, task, sim_root, extra);
    if (!rc) {
        deadline = wx__pool_task_deadline(env->pool);
        rc = wx__pool_queue_execute(w, task->entrypoint, task->params,
                                    task->seed, NULL, &id, err);
    }
    if (!rc)
        rc = wx__pool_flush(env->pool, w, fault, err);
    if (!rc) {
        compute_ids(&ids); /* while the worker runs the task */
        rc = take_reply(env, w, task, id, deadline, &ids, ret, fault, err);
    }
    if (w)
        wx__pool_release(env->pool, w);
    return rc;
}

/* Whether a failed attempt (the `attempts`th) is tried again. */
static bool try_again(const wx_env *env, const wx_task *task, int rc,
                      int attempts, const wx_fault *fault,
                      const wx_error *err)
{
    if (!rc || attempts > env->max_retries || !retryable(rc, fault))
        return false;
    wx__log(WX_LOG_WARN, "task %.12s: attempt %d failed (%s), retrying",
            task->param_id, attempts, err->message);
    return true;
}

/*
 * Attempts until success, a permanent failure or max_retries retries
 * (`*attempts` counts those made already).  `sim_root`: the task's, when
 * already computed (else NULL).  `*extra` runs while the first worker
 * runs the task (see ids_job).
 */
static int run_attempts(wx_env *env, const wx__resolved *b,
                        const wx_task *task, const char *sim_root,
                        const wx__meanwhile **extra, wx_sim_return *ret,
                        wx_fault *fault, int *attempts, wx_error *err)
{
    int rc;

    do {
        (*attempts)++;
        wx_fault_release(fault);
        rc = attempt(env, b, task, sim_root, extra, ret, fault, err);
    } while (try_again(env, task, rc, *attempts, fault, err));
    return rc;
}

/*
 * The resolved bundle of `ref`, resolved once per environment: a bundle
 * never changes, and re-reading its manifest for every task would cost
 * more than the task.  The entry lives until wx_env_close.
 */
static int known_bundle_of(wx_env *env, const char *ref,
                           const wx__resolved **out, wx_error *err)
{
    known_bundle *k;
    int rc;

    pthread_mutex_lock(&env->mu);
    for (k = env->known; k && strcmp(k->ref, ref) != 0; k = k->next)
        ;
    pthread_mutex_unlock(&env->mu);
    if (k) {
        *out = &k->resolved;
        return 0;
    }
    k = wx__calloc(1, sizeof(*k));
    if (!k || !(k->ref = wx__strdup(ref))) {
        wx_free(k);
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    }
    rc = wx__resolve_bundle(env->bundles, env->cfg, ref, &k->resolved, err);
    if (rc) {
        wx_free(k->ref);
        wx_free(k);
        return rc;
    }
    pthread_mutex_lock(&env->mu);
    k->next = env->known;
    env->known = k;
    pthread_mutex_unlock(&env->mu);
    *out = &k->resolved;
    return 0;
}

/*
 * A usable cache hit: present, every CAS object intact, the requested
 * outputs there.  A damaged entry is dropped so the task runs again and
 * repairs the store.  Returns true on a hit.
 */
static bool cached_result(wx_env *env, const wx_task *task,
                          const char *sim_root, wx_sim_return *ret)
{
    wx_error err = WX_ERROR_INIT;
    bool hit = false;

    if (!env->cache || !sim_root)
        return false;
    memcpy(ret->sim_root, sim_root, sizeof(ret->sim_root));
    if (wx_cache_get_sim(env->cache, ret->sim_root, ret, &hit, &err) != 0) {
        wx__log(WX_LOG_WARN, "result cache: %s", err.message);
        return false;
    }
    if (!hit)
        return false;
    if (wx__check_cached(env->cas, ret, &err) != 0) {
        wx__log(WX_LOG_WARN, "cached result dropped: %s", err.message);
        wx_cache_delete_sim(env->cache, ret->sim_root, NULL);
        wx_sim_return_release(ret);
        return false;
    }
    /* The entry may have been stored for another output selection. */
    if (wx__select_outputs(task, ret, &err) != 0 ||
        wx_task_id(ret->sim_root, task->entrypoint, task->outputs,
                   ret->task_id, &err) != 0) {
        wx_sim_return_release(ret);
        return false;
    }
    ret->cached = true;
    return true;
}

static void cache_result(wx_env *env, const wx_sim_return *ret)
{
    wx_error err = WX_ERROR_INIT;

    if (env->cache && wx_cache_put_sim(env->cache, ret, &err) != 0)
        wx__log(WX_LOG_WARN, "result cache: %s", err.message);
}

static void set_metrics(wx_sim_return *ret, int attempts, int64_t took_ns)
{
    json_t *m = json_object();

    /* Not json_pack: it parses its format on every call, once per task. */
    if (m && (json_object_set_new_nocheck(m, "attempts",
                                          json_integer(attempts)) ||
              json_object_set_new_nocheck(
                  m, "duration_s",
                  json_real((double)took_ns / 1e9)))) {
        json_decref(m);
        m = NULL;
    }
    json_decref(ret->metrics);
    ret->metrics = m;
}

static void count(wx_env *env, bool hit, bool failed)
{
    pthread_mutex_lock(&env->mu);
    env->tasks++;
    env->cache_hits += hit;
    env->failures += failed;
    pthread_mutex_unlock(&env->mu);
}

/* wx_env_lookup() for a task whose sim_root may be known (or NULL). */
static bool lookup(wx_env *env, const wx_task *task, const char *sim_root,
                   int64_t start, wx_sim_return *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (!cached_result(env, task, sim_root, ret))
        return false;
    set_metrics(ret, 0, wx__now_ns() - start);
    count(env, true, false);
    return true;
}

bool wx_env_lookup(wx_env *env, const wx_task *task, wx_sim_return *ret)
{
    char root[WX_ID_LEN + 1];
    bool known = env->cache && wx_task_sim_root(task, root, NULL) == 0;

    return lookup(env, task, known ? root : NULL, wx__now_ns(), ret);
}

bool wx__env_begin(wx_env *env, const wx_task *task, wx__env_job *j,
                   wx_sim_return *ret)
{
    int64_t start = wx__now_ns();

    *j = (wx__env_job){.task = task};
    /* With a cache the look-up needs sim_root first; without one it is
       computed while the worker runs. */
    j->known = env->cache && wx_task_sim_root(task, j->sim_root, NULL) == 0;
    return lookup(env, task, j->known ? j->sim_root : NULL, start, ret);
}

/* Execute a begun job on a worker of its own (attempts and all). */
static void execute_alone(wx_env *env, const wx__env_job *j,
                          const wx__meanwhile **extra, wx__env_outcome *out,
                          wx_sim_return *ret)
{
    const wx__resolved *b = NULL;

    wx_fault_release(&out->fault);
    outcome_init(out);
    /* A task begun ahead may have waited in a queue since: its duration
       is its execution's. */
    out->start_ns = wx__now_ns();
    out->rc = known_bundle_of(env, j->task->bundle_ref, &b, &out->err);
    if (!out->rc)
        out->rc = run_attempts(env, b, j->task,
                               j->known ? j->sim_root : NULL, extra, ret,
                               &out->fault, &out->attempts, &out->err);
    out->end_ns = wx__now_ns();
}

void wx__env_execute(wx_env *env, const wx__env_job *j,
                     const wx__meanwhile *mw, wx__env_outcome *out,
                     wx_sim_return *ret)
{
    outcome_init(out);
    execute_alone(env, j, &mw, out, ret);
    run_extra(&mw); /* no worker ran the task: the caller's work now */
}

/*
 * The requests of a batch after its first fit in this many bytes, well
 * within a pipe's 64 KiB: writing them never waits for a worker that is
 * itself waiting for its big reply to be read.
 */
#define BATCH_ROOM (16 * 1024)

/* The jobs of a batch in flight on one worker. */
typedef struct batch {
    const wx__env_job *const *jobs;
    size_t n, sent;
    int64_t ids[WX__BATCH_MAX]; /* of the requests */
    ids_job task_ids[WX__BATCH_MAX];
    const wx__meanwhile *extra;
} batch;

/* While the worker runs the batch: the ids of its tasks, then the
   caller's work. */
static void batch_meanwhile(batch *bt)
{
    for (size_t i = 0; i < bt->sent; i++)
        compute_ids(&bt->task_ids[i]);
    run_extra(&bt->extra);
}

/*
 * Send the batch's requests in one write: as many as the worker may take
 * and, after the first, as fit in BATCH_ROOM.  The first one's failure
 * to go out is its attempt's.
 */
static void send_batch(wx_env *env, wx__worker *w, batch *bt,
                       wx__env_outcome *outs)
{
    size_t room = BATCH_ROOM;
    int64_t left = wx__worker_tasks_left(env->pool, w);
    int rc = 0;

    for (; bt->sent < bt->n && (int64_t)bt->sent < left; bt->sent++) {
        const wx_task *t = bt->jobs[bt->sent]->task;

        /* A request after the first that cannot go (too big, say) runs
           alone later: its error is not kept. */
        rc = wx__pool_queue_execute(w, t->entrypoint, t->params, t->seed,
                                    bt->sent ? &room : NULL,
                                    &bt->ids[bt->sent], &outs[bt->sent].err);
        if (rc)
            break;
    }
    outs[0].attempts = 1;
    if (bt->sent == 0) {
        outs[0].rc = rc;
        bt->sent = 1;
        return;
    }
    outs[0].rc = wx__pool_flush(env->pool, w, &outs[0].fault, &outs[0].err);
}

/*
 * Read the replies in order.  Once the worker failed, the tasks after
 * the one it failed on never ran: `*ran` is how many did.
 */
static void receive_batch(wx_env *env, wx__worker *w, batch *bt,
                          int64_t deadline, wx__env_outcome *outs,
                          wx_sim_return *const *rets, size_t *ran)
{
    for (*ran = 0; *ran < bt->sent; (*ran)++) {
        size_t i = *ran;
        const wx_task *t = bt->jobs[i]->task;

        if (i > 0) {
            if (wx__worker_failed(w))
                return;
            outs[i].start_ns = wx__now_ns();
            outs[i].attempts = 1;
            deadline = wx__pool_task_deadline(env->pool);
        }
        if (!outs[i].rc)
            outs[i].rc = take_reply(env, w, t, bt->ids[i], deadline,
                                    &bt->task_ids[i], rets[i],
                                    &outs[i].fault, &outs[i].err);
        outs[i].end_ns = wx__now_ns();
    }
}

void wx__env_execute_batch(wx_env *env, const wx__env_job *const *jobs,
                           size_t n, const wx__meanwhile *mw,
                           wx__env_outcome *outs, wx_sim_return *const *rets)
{
    batch bt; /* not zeroed: 9 KiB, of which only n entries are used */
    const wx__resolved *b = NULL;
    wx__worker *w = NULL;
    int64_t deadline = 0;
    size_t ran = 0;

    if (n == 0 || n > WX__BATCH_MAX)
        WX_BUG("a batch of no task or more than WX__BATCH_MAX");
    bt.jobs = jobs;
    bt.n = n;
    bt.sent = 0;
    bt.extra = mw;
    for (size_t i = 0; i < n; i++) {
        outcome_init(&outs[i]);
        ids_init(&bt.task_ids[i], jobs[i]->task,
                 jobs[i]->known ? jobs[i]->sim_root : NULL, NULL);
    }
    outs[0].start_ns = wx__now_ns();
    if (known_bundle_of(env, jobs[0]->task->bundle_ref, &b, &outs[0].err) ==
            0 &&
        wx__pool_lease(env->pool, &b->runner.spec, &w, &outs[0].fault,
                       &outs[0].err) == 0) {
        deadline = wx__pool_task_deadline(env->pool);
        send_batch(env, w, &bt, outs);
        if (bt.sent)
            batch_meanwhile(&bt);
        receive_batch(env, w, &bt, deadline, outs, rets, &ran);
        wx__pool_release(env->pool, w);
    }
    /* Retries of the tasks that ran, and the tasks that did not, alone. */
    for (size_t i = 0; i < bt.n; i++) {
        const wx_task *t = jobs[i]->task;

        if (i >= ran)
            execute_alone(env, jobs[i], &bt.extra, &outs[i], rets[i]);
        else if (try_again(env, t, outs[i].rc, outs[i].attempts,
                           &outs[i].fault, &outs[i].err))
            outs[i].rc = run_attempts(
                env, b, t, jobs[i]->known ? jobs[i]->sim_root : NULL,
                &bt.extra, rets[i], &outs[i].fault, &outs[i].attempts,
                &outs[i].err);
        outs[i].end_ns = wx__now_ns();
    }
    run_extra(&bt.extra);
}

int wx__env_end(wx_env *env, const wx__env_job *j, wx__env_outcome *out,
                wx_sim_return *ret)
{
    int rc = out->rc;

    if (!rc) {
        cache_result(env, ret);
        rc = wx__select_outputs(j->task, ret, &out->err);
    }
    if (rc) {
        wx_sim_return_release(ret);
        wx__create_error_return(j->task, rc, out->err.message, &out->fault,
                                out->attempts, env->cas, env->inline_max,
                                ret);
    }
    set_metrics(ret, out->attempts, out->end_ns - out->start_ns);
    wx_fault_release(&out->fault);
    count(env, false, rc != 0);
    return rc;
}

int wx_env_run(wx_env *env, const wx_task *task, wx_sim_return *ret)
{
    wx__env_outcome out;
    wx__env_job j;

    if (wx__env_begin(env, task, &j, ret))
        return 0;
    wx__env_execute(env, &j, NULL, &out, ret);
    return wx__env_end(env, &j, &out, ret);
}

/* Store an artifact that arrived loaded under its ref; unload it. */
static int store_loaded(wx_cas *cas, wx_artifact *a, wx_error *err)
{
    char ref[WX_CAS_REF_LEN + 1];
    int rc;

    if (!a->ref || !a->data)
        return 0;
    rc = wx_cas_put(cas, a->data, a->size, NULL, ref, err);
    if (!rc && strcmp(ref, a->ref) != 0)
        rc = wx_error_set(err, WX_EIO, "the bytes of %s hash to %s", a->ref,
                          ref);
    if (rc)
        return wx_error_prefix(err, WX_EIO, "cannot store a result");
    wx_free(a->data);
    a->data = NULL;
    return 0;
}

int wx_env_adopt(wx_env *env, const wx_task *task, wx_sim_return *ret,
                 int status)
{
    wx_error err = WX_ERROR_INIT;
    int rc = 0;

    for (size_t i = 0; !rc && i < ret->n_outputs; i++)
        rc = store_loaded(env->cas, &ret->outputs[i].art, &err);
    if (!rc && ret->error_details)
        rc = store_loaded(env->cas, ret->error_details, &err);
    if (rc) {
        json_t *metrics = json_incref(ret->metrics);

        wx_sim_return_release(ret);
        wx_env_failed(env, task, rc, err.message, ret);
        json_decref(ret->metrics);
        ret->metrics = metrics;
        return rc;
    }
    if (!status)
        cache_result(env, ret);
    count(env, false, status != 0);
    return status;
}

void wx_env_failed(wx_env *env, const wx_task *task, int status,
                   const char *message, wx_sim_return *ret)
{
    wx__create_error_return(task, status, message, NULL, 1, env->cas,
                            env->inline_max, ret);
    count(env, false, true);
}

/* ---- run_aggregation() ---- */

/*
 * The replicates as the worker call needs them, without copying their
 * bytes: shallow copies that share everything with the task except their
 * outputs arrays, in which CAS outputs then get their bytes loaded.
 * Release with release_views(), never wx_sim_return_release().
 */
static int view_replicates(const wx_agg_task *task, wx_sim_return **out,
                           wx_error *err)
{
    size_t n = task->n_sim_returns;
    wx_sim_return *v = wx__calloc(n ? n : 1, sizeof(*v));

    *out = v;
    for (size_t i = 0; v && i < n; i++) {
        const wx_sim_return *r = &task->sim_returns[i];

        v[i] = *r;
        v[i].outputs = wx__calloc(r->n_outputs ? r->n_outputs : 1,
                                  sizeof(*r->outputs));
        if (!v[i].outputs) {
            v[i].n_outputs = 0; /* nothing of ours to release here */
            return wx_error_set(err, WX_ENOMEM, "out of memory");
        }
        if (r->n_outputs)
            memcpy(v[i].outputs, r->outputs,
                   r->n_outputs * sizeof(*r->outputs));
    }
    return v ? 0 : wx_error_set(err, WX_ENOMEM, "out of memory");
}

/* Free the views of `task`'s replicates and the bytes loaded into them. */
static void release_views(const wx_agg_task *task, wx_sim_return *v)
{
    for (size_t i = 0; v && i < task->n_sim_returns; i++) {
        for (size_t k = 0; k < v[i].n_outputs; k++)
            if (v[i].outputs[k].art.data !=
                task->sim_returns[i].outputs[k].art.data)
                wx_free(v[i].outputs[k].art.data);
        wx_free(v[i].outputs);
    }
    wx_free(v);
}

/* run_extra() as a wx__meanwhile: `ctx` is the `extra` pointer. */
static void extra_meanwhile(void *ctx)
{
    run_extra(ctx);
}

/* `*extra` runs while the first worker aggregates (see ids_job). */
static int aggregate_attempts(wx_env *env, const wx__resolved *b,
                              const wx_agg_task *task, wx_sim_return *reps,
                              const wx__meanwhile **extra,
                              wx_agg_return *ret, wx_fault *fault,
                              wx_error *err)
{
    wx__meanwhile mw = {extra_meanwhile, (void *)extra};

    for (int attempts = 1;; attempts++) {
        int rc;

        wx_fault_release(fault);
        rc = wx__pool_aggregate(env->pool, &b->runner.spec,
                                task->target_entrypoint, reps,
                                task->n_sim_returns, task->target_data, &mw,
                                ret, fault, err);
        if (!rc || attempts > env->max_retries || !retryable(rc, fault))
            return rc;
        wx__log(WX_LOG_WARN, "aggregation %s: attempt %d failed (%s), "
                             "retrying",
                task->target_entrypoint, attempts, err->message);
    }
}

static bool cached_aggregation(wx_env *env, const char *digest,
                               wx_agg_return *ret)
{
    wx_error err = WX_ERROR_INIT;
    bool hit = false;

    if (!env->cache)
        return false;
    if (wx_cache_get_agg(env->cache, digest, ret, &hit, &err) != 0)
        wx__log(WX_LOG_WARN, "result cache: %s", err.message);
    return hit;
}

static void cache_aggregation(wx_env *env, const char *digest,
                              const wx_agg_return *ret)
{
    wx_error err = WX_ERROR_INIT;

    if (env->cache && wx_cache_put_agg(env->cache, digest, ret, &err) != 0)
        wx__log(WX_LOG_WARN, "result cache: %s", err.message);
}

bool wx_env_lookup_aggregation(wx_env *env, const wx_agg_task *task,
                               wx_agg_return *ret)
{
    char id[WX_AGG_ID_LEN + 1], digest[WX_ID_LEN + 1];

    memset(ret, 0, sizeof(*ret));
    return env->cache && wx_agg_task_id(task, id, digest, NULL) == 0 &&
           cached_aggregation(env, digest, ret);
}

void wx_env_adopt_aggregation(wx_env *env, const wx_agg_task *task,
                              const wx_agg_return *ret)
{
    char id[WX_AGG_ID_LEN + 1], digest[WX_ID_LEN + 1];

    if (env->cache && wx_agg_task_id(task, id, digest, NULL) == 0)
        cache_aggregation(env, digest, ret);
}

int wx_env_load_replicates(wx_env *env, wx_agg_task *task, wx_error *err)
{
    return wx__resolve_cas_references(env->cas, task->sim_returns,
                                      task->n_sim_returns, LOAD_MAX, err);
}

/* A failure before or outside a worker call: type it like the pool does. */
static int outside_failure(int rc, wx_fault *fault)
{
    if (fault && !fault->error_type) {
        fault->error_type = wx__error_type(rc, NULL);
        fault->retryable = wx__error_type_retryable(fault->error_type);
    }
    return rc;
}

/* wx_env_run_aggregation(); `*extra` as for aggregate_attempts(). */
static int run_aggregation(wx_env *env, const wx_agg_task *task,
                           const wx__meanwhile **extra, wx_agg_return *ret,
                           wx_fault *fault, wx_error *err)
{
    char id[WX_AGG_ID_LEN + 1], digest[WX_ID_LEN + 1];
    const wx__resolved *b = NULL;
    wx_agg_task view = *task;
    wx_fault own = {0};
    int rc = wx_agg_task_id(task, id, digest, err);

    memset(ret, 0, sizeof(*ret));
    if (!fault)
        fault = &own;
    view.sim_returns = NULL;
    if (!rc && cached_aggregation(env, digest, ret))
        return 0;
    if (!rc)
        rc = known_bundle_of(env, task->bundle_ref, &b, err);
    if (!rc)
        rc = view_replicates(task, &view.sim_returns, err);
    if (rc) {
        outside_failure(rc, fault);
    } else if ((rc = wx_env_load_replicates(env, &view, err)) != 0) {
        /* A replicate's stored output is missing or damaged. */
        outside_failure(WX_EIO, fault);
    } else {
        rc = aggregate_attempts(env, b, task, view.sim_returns, extra, ret,
                                fault, err);
    }
    if (!rc) {
        memcpy(ret->aggregation_id, id, sizeof(id));
        rc = wx_agg_return_validate(ret, err);
    }
    if (!rc)
        cache_aggregation(env, digest, ret);
    if (rc)
        wx_agg_return_release(ret);
    release_views(task, view.sim_returns);
    wx_fault_release(&own);
    return rc;
}

int wx__env_run_aggregation(wx_env *env, const wx_agg_task *task,
                            const wx__meanwhile *mw, wx_agg_return *ret,
                            wx_fault *fault, wx_error *err)
{
    int rc = run_aggregation(env, task, &mw, ret, fault, err);

    run_extra(&mw); /* no worker aggregated: the caller's work now */
    return rc;
}

int wx_env_run_aggregation(wx_env *env, const wx_agg_task *task,
                           wx_agg_return *ret, wx_fault *fault, wx_error *err)
{
    return wx__env_run_aggregation(env, task, NULL, ret, fault, err);
}

/* ---- the environment ---- */

static int open_stores(wx_env *env, const wx_env_options *o, wx_error *err)
{
    const char *home = wx_config_str(env->cfg, WX_CONF_HOME);
    char path[PATH_MAX];
    int rc = 0;

    if (!home[0])
        return wx_error_set(err, WX_EINVAL,
                            "no home directory: set WARMEXEC_HOME");
    env->cas = o->forward_bytes ? NULL : o->cas;
    env->cache = o->no_cache || o->forward_bytes ? NULL : o->cache;
    env->bundles = o->bundles;
    if (!env->cas && !o->forward_bytes) {
        snprintf(path, sizeof(path), "%s/cas", home);
        rc = wx_cas_open_fs(
            path, (wx_cas_sync)wx_config_int(env->cfg, WX_CONF_CAS_SYNC),
            &env->cas, err);
        env->own_cas = rc == 0;
    }
    if (!rc && !env->cache && !o->no_cache && !o->forward_bytes) {
        snprintf(path, sizeof(path), "%s/cache.db", home);
        rc = wx_cache_open(path, &env->cache, err);
        env->own_cache = rc == 0;
    }
    if (!rc && !env->bundles) {
        rc = wx_bundles_open(home, &env->bundles, err);
        env->own_bundles = rc == 0;
    }
    return rc;
}

int wx_env_open(const wx_config *cfg, const wx_env_options *opts,
                wx_env **out, wx_error *err)
{
    wx_env_options none = {0};
    wx_pool_options po;
    wx_env *env = wx__calloc(1, sizeof(*env));
    int rc;

    if (!env)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    env->cfg = cfg;
    env->inline_max = (size_t)wx_config_int(cfg, WX_CONF_INLINE_MAX_BYTES);
    env->max_retries = (int)wx_config_int(cfg, WX_CONF_MAX_RETRIES);
    pthread_mutex_init(&env->mu, NULL);
    rc = open_stores(env, opts ? opts : &none, err);
    if (!rc) {
        wx_pool_options_from_config(cfg, &po);
        rc = wx_pool_new(&po, &env->pool, err);
    }
    if (rc) {
        wx_env_close(env);
        return rc;
    }
    *out = env;
    return 0;
}

void wx_env_close(wx_env *env)
{
    if (!env)
        return;
    wx_pool_free(env->pool);
    while (env->known) {
        known_bundle *k = env->known;

        env->known = k->next;
        wx__resolved_release(&k->resolved);
        wx_free(k->ref);
        wx_free(k);
    }
    if (env->own_cas)
        wx_cas_close(env->cas);
    if (env->own_cache)
        wx_cache_close(env->cache);
    if (env->own_bundles)
        wx_bundles_close(env->bundles);
    pthread_mutex_destroy(&env->mu);
    wx_free(env);
}

int wx_env_sync(wx_env *env, wx_error *err)
{
    return env->cas ? wx_cas_flush(env->cas, err) : 0;
}

int wx_env_health(wx_env *env, json_t **out, wx_error *err)
{
    wx_pool_stats st;
    json_t *v;

    wx_pool_stats_get(env->pool, &st);
    pthread_mutex_lock(&env->mu);
    v = json_pack("{s:s,s:s,s:{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:i,s:i},"
                  "s:I,s:I,s:I,s:b}",
                  "type", "isolated_warm", "home",
                  wx_config_str(env->cfg, WX_CONF_HOME), "workers",
                  "spawned", (json_int_t)st.spawned, "reused",
                  (json_int_t)st.reused, "evicted", (json_int_t)st.evicted,
                  "recycled", (json_int_t)st.recycled, "crashed",
                  (json_int_t)st.crashed, "timed_out",
                  (json_int_t)st.timed_out, "start_failed",
                  (json_int_t)st.start_failed, "start_seconds",
                  st.start_seconds, "live", st.live, "idle",
                  st.idle, "tasks", (json_int_t)env->tasks, "cache_hits",
                  (json_int_t)env->cache_hits, "failures",
                  (json_int_t)env->failures, "cache", env->cache != NULL);
    pthread_mutex_unlock(&env->mu);
    if (!v)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    *out = v;
    return 0;
}
