/*
 * The local simulation service (dispatcher threads over a wx_env) and the
 * futures of the original's SimulationService API.
 */
#include "internal.h"

#include <pthread.h>
#include <unistd.h>

#include <warmexec/service.h>

#include "alloc.h"
#include "env.h"

typedef struct job {
    struct job *next;
    bool is_agg;
    wx_task task;
    wx_agg_task agg;
    wx_sim_done sim_done;
    wx_agg_done agg_done;
    void *user;
    /* A simulation once begun (wx__env_begin): its state and result. */
    bool begun, hit;
    wx__env_job run;
    wx_sim_return ret;
} job;

typedef struct local {
    wx_service base;
    wx_env *env;
    pthread_mutex_t mu;
    pthread_cond_t work, space, idle;
    job *head, *tail;
    size_t queued, queue_max, running;
    bool stopping;
    volatile sig_atomic_t *cancel; /* set: jobs not started are dropped */
    pthread_t *threads;
    int n_threads;
} local;

static void job_free(job *j)
{
    wx_task_release(&j->task);
    wx_agg_task_release(&j->agg);
    wx_free(j);
}

/* A job dropped before it started: WX_ECANCELED and an empty result. */
static void cancel_job(job *j)
{
    if (j->is_agg) {
        wx_error err = WX_ERROR_INIT;
        wx_fault fault = {.error_type = "Cancelled"};

        wx_error_set(&err, WX_ECANCELED, "cancelled before it started");
        j->agg_done(j->user, NULL, WX_ECANCELED, &err, &fault);
    } else {
        wx_sim_return ret;

        memset(&ret, 0, sizeof(ret));
        j->sim_done(j->user, &ret, WX_ECANCELED);
    }
}

/*
 * One dispatcher thread and the simulations it ran last.  While a worker
 * runs simulations, its dispatcher ends the ones before (their cache put
 * and completion callback) and begins the first queued ones (their
 * sim_root and cache look-up), so that the time the worker takes pays for
 * them.  Short simulations go to the worker several at a time (a batch,
 * env.h): it runs them back to back, without waiting for the dispatcher.
 */
typedef struct lane {
    local *l;
    job *ran[WX__BATCH_MAX]; /* executed; to end and complete */
    size_t n_ran;
    /* How `ran` went, and room for those running (they alternate). */
    wx__env_outcome out[2][WX__BATCH_MAX];
    int ran_out;
    int64_t task_ns; /* average execution time here; 0: none yet */
} lane;

/* Simulations shorter than this on average go to workers in batches. */
#define BATCH_BELOW_NS 1000000

/* A job is over: it leaves the running count. */
static void job_over(local *l, job *j)
{
    job_free(j);
    pthread_mutex_lock(&l->mu);
    l->running--;
    if (!l->head && !l->running)
        pthread_cond_broadcast(&l->idle);
    pthread_mutex_unlock(&l->mu);
}

/* Take the first queued job (l->mu held); NULL when none. */
static job *pop_job(local *l)
{
    job *j = l->head;

    if (!j)
        return NULL;
    l->head = j->next;
    if (!l->head)
        l->tail = NULL;
    l->queued--;
    l->running++;
    /* Wake a waiting submitter only once the queue is half empty: one
       wake-up (a context switch) per many jobs, not per job. */
    if (l->queued <= l->queue_max / 2)
        pthread_cond_signal(&l->space);
    return j;
}

/* End the lane's executed simulations and hand them to their callback. */
static void complete_ran(lane *ln)
{
    size_t n = ln->n_ran;

    ln->n_ran = 0;
    for (size_t i = 0; i < n; i++) {
        job *j = ln->ran[i];
        int rc = wx__env_end(ln->l->env, &j->run, &ln->out[ln->ran_out][i],
                             &j->ret);

        j->sim_done(j->user, &j->ret, rc);
        job_over(ln->l, j);
    }
}

static void begin_sim(local *l, job *j)
{
    j->begun = true;
    j->hit = wx__env_begin(l->env, &j->task, &j->run, &j->ret);
}

/* Put `n` jobs taken from the queue back at its head, in their order. */
static void push_front(local *l, job **js, size_t n)
{
    if (n == 0)
        return;
    pthread_mutex_lock(&l->mu);
    for (size_t i = n; i-- > 0;) {
        js[i]->next = l->head;
        l->head = js[i];
        if (!l->tail)
            l->tail = js[i];
        l->queued++;
        l->running--;
    }
    pthread_cond_signal(&l->work);
    pthread_mutex_unlock(&l->mu);
}

/*
 * How many simulations the lane sends its worker at once (l->mu held):
 * one until they prove short here, then up to its share of the queue, so
 * that every lane has work to the end.
 */
static size_t batch_size(const lane *ln)
{
    const local *l = ln->l;

    if (ln->task_ns == 0 || ln->task_ns >= BATCH_BELOW_NS)
        return 1;
    return WX_MAX(1, WX_MIN(WX__BATCH_MAX, l->queued / (size_t)l->n_threads));
}

/*
 * The lane's work while a worker runs its current simulations.  The jobs
 * it begins go back to the queue: any lane free first runs them, so that
 * a long simulation never holds up the next one while another lane idles.
 */
static void meanwhile(void *ctx)
{
    lane *ln = ctx;
    local *l = ln->l;
    job *js[WX__BATCH_MAX];
    size_t n = 0;

    complete_ran(ln);
    if (l->cancel && *l->cancel)
        return;
    pthread_mutex_lock(&l->mu);
    for (size_t max = batch_size(ln);
         n < max && l->head && !l->head->is_agg && !l->head->begun;)
        js[n++] = pop_job(l);
    pthread_mutex_unlock(&l->mu);
    for (size_t i = 0; i < n; i++)
        begin_sim(l, js[i]);
    push_front(l, js, n);
}

/*
 * The queue's first job, waiting for one (after completing what the
 * lane holds); NULL once the service stops.
 */
static job *take_job(lane *ln)
{
    local *l = ln->l;
    job *j;

    pthread_mutex_lock(&l->mu);
    while (!(j = pop_job(l)) && !l->stopping) {
        pthread_mutex_unlock(&l->mu);
        complete_ran(ln);
        pthread_mutex_lock(&l->mu);
        if (!l->head && !l->stopping)
            pthread_cond_wait(&l->work, &l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return j;
}

/* Run an aggregation; the lane's meanwhile runs while the worker works. */
static void run_agg(lane *ln, job *j)
{
    wx__meanwhile mw = {meanwhile, ln};
    wx_error err = WX_ERROR_INIT;
    wx_fault fault = {0};
    wx_agg_return ret;
    int rc = wx__env_run_aggregation(ln->l->env, &j->agg, &mw, &ret, &fault,
                                     &err);

    j->agg_done(j->user, &ret, rc, &err, &fault);
    wx_fault_release(&fault);
}

/*
 * Join to the begun simulation js[0] the queued ones of its bundle that
 * make its batch, begun here; a cache hit ends the batch (it goes back
 * to the queue, done already).  Returns the batch's size.
 */
static size_t gather_batch(lane *ln, job **js)
{
    local *l = ln->l;
    size_t n = 1;

    pthread_mutex_lock(&l->mu);
    for (size_t max = batch_size(ln);
         n < max && l->head && !l->head->is_agg &&
         strcmp(l->head->task.bundle_ref, js[0]->task.bundle_ref) == 0;)
        js[n++] = pop_job(l);
    pthread_mutex_unlock(&l->mu);
    for (size_t i = 1; i < n; i++) {
        if (!js[i]->begun)
            begin_sim(l, js[i]);
        if (js[i]->hit) {
            push_front(l, js + i, n - i);
            return i;
        }
    }
    return n;
}

/* Execute a batch; its jobs stay in the lane to end. */
static void execute_batch(lane *ln, job **js, size_t n)
{
    wx__meanwhile mw = {meanwhile, ln};
    const wx__env_job *runs[WX__BATCH_MAX];
    wx_sim_return *rets[WX__BATCH_MAX];
    int slot = !ln->ran_out;
    int64_t total_ns = 0;

    for (size_t i = 0; i < n; i++) {
        runs[i] = &js[i]->run;
        rets[i] = &js[i]->ret;
    }
    wx__env_execute_batch(ln->l->env, runs, n, &mw, ln->out[slot], rets);
    /* The meanwhile completed the ones before. */
    memcpy(ln->ran, js, n * sizeof(*js));
    ln->n_ran = n;
    ln->ran_out = slot;
    for (size_t i = 0; i < n; i++)
        total_ns += ln->out[slot][i].end_ns - ln->out[slot][i].start_ns;
    total_ns = WX_MAX(1, total_ns / (int64_t)n);
    ln->task_ns = ln->task_ns ? (3 * ln->task_ns + total_ns) / 4 : total_ns;
}

/* Run `j`; simulations that a worker ran stay in the lane to end. */
static void run_job(lane *ln, job *j)
{
    local *l = ln->l;

    if (l->cancel && *l->cancel) {
        complete_ran(ln);
        if (j->hit)
            wx_sim_return_release(&j->ret);
        cancel_job(j);
    } else if (j->is_agg) {
        run_agg(ln, j);
    } else {
        job *js[WX__BATCH_MAX] = {j};

        if (!j->begun)
            begin_sim(l, j);
        if (!j->hit) {
            execute_batch(ln, js, gather_batch(ln, js));
            return;
        }
        complete_ran(ln);
        j->sim_done(j->user, &j->ret, 0);
    }
    job_over(l, j);
}

static void *dispatcher(void *arg)
{
    lane ln = {.l = arg};
    job *j;

    while ((j = take_job(&ln)))
        run_job(&ln, j);
    complete_ran(&ln);
    return NULL;
}

/*
 * Queue a job.  Simulations wait for room; aggregations never do, because
 * they are often submitted from a completion callback, on a dispatcher
 * thread that must not wait for itself.
 */
static void enqueue(local *l, job *j)
{
    pthread_mutex_lock(&l->mu);
    while (!j->is_agg && l->queued >= l->queue_max)
        pthread_cond_wait(&l->space, &l->mu);
    if (l->tail)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
    l->queued++;
    pthread_cond_signal(&l->work);
    pthread_mutex_unlock(&l->mu);
}

static int local_submit_sim(wx_service *s, const wx_task *task,
                            wx_sim_done done, void *user, wx_error *err)
{
    job *j = wx__calloc(1, sizeof(*j));
    int rc;

    if (!j)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    rc = wx_task_copy(&j->task, task, err);
    if (rc) {
        wx_free(j);
        return rc;
    }
    j->sim_done = done;
    j->user = user;
    enqueue((local *)s, j);
    return 0;
}

static int local_submit_agg(wx_service *s, const wx_agg_task *task,
                            wx_agg_done done, void *user, wx_error *err)
{
    job *j = wx__calloc(1, sizeof(*j));
    int rc;

    if (!j)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    rc = wx_agg_task_copy(&j->agg, task, err);
    if (rc) {
        wx_free(j);
        return rc;
    }
    j->is_agg = true;
    j->agg_done = done;
    j->user = user;
    enqueue((local *)s, j);
    return 0;
}

static void local_wait(wx_service *s)
{
    local *l = (local *)s;

    pthread_mutex_lock(&l->mu);
    while (l->head || l->running)
        pthread_cond_wait(&l->idle, &l->mu);
    pthread_mutex_unlock(&l->mu);
}

static void local_free(wx_service *s)
{
    local *l = (local *)s;

    local_wait(s);
    pthread_mutex_lock(&l->mu);
    l->stopping = true;
    pthread_cond_broadcast(&l->work);
    pthread_mutex_unlock(&l->mu);
    for (int i = 0; i < l->n_threads; i++)
        pthread_join(l->threads[i], NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work);
    pthread_cond_destroy(&l->space);
    pthread_cond_destroy(&l->idle);
    wx_free(l->threads);
    wx_free(l);
}

static const wx_service_ops local_ops = {local_submit_sim, local_submit_agg,
                                         local_wait, local_free};

int wx_service_local(wx_env *env, int threads, size_t queue_max,
                     wx_service **out, wx_error *err)
{
    local *l = wx__calloc(1, sizeof(*l));

    if (threads <= 0)
        threads = (int)WX_MAX(1, sysconf(_SC_NPROCESSORS_ONLN));
    if (!l || !(l->threads = wx__calloc((size_t)threads, sizeof(pthread_t)))) {
        wx_free(l);
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    }
    l->base.ops = &local_ops;
    l->env = env;
    l->queue_max = queue_max ? queue_max : 1;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work, NULL);
    pthread_cond_init(&l->space, NULL);
    pthread_cond_init(&l->idle, NULL);
    for (; l->n_threads < threads; l->n_threads++) {
        if (pthread_create(&l->threads[l->n_threads], NULL, dispatcher, l)) {
            local_free(&l->base);
            return wx_error_set(err, WX_EIO, "cannot start threads");
        }
    }
    *out = &l->base;
    return 0;
}

void wx_service_local_cancel_on(wx_service *s, volatile sig_atomic_t *flag)
{
    ((local *)s)->cancel = flag;
}

int wx_service_submit(wx_service *s, const wx_task *task, wx_sim_done done,
                      void *user, wx_error *err)
{
    return s->ops->submit_sim(s, task, done, user, err);
}

int wx_service_submit_aggregation(wx_service *s, const wx_agg_task *task,
                                  wx_agg_done done, void *user,
                                  wx_error *err)
{
    return s->ops->submit_agg(s, task, done, user, err);
}

void wx_service_wait(wx_service *s)
{
    s->ops->wait(s);
}

void wx_service_free(wx_service *s)
{
    if (s)
        s->ops->free(s);
}

/* ---- futures ---- */

typedef struct tracker tracker;

struct wx_future {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int status;
    wx_sim_return sim;
    wx_agg_return agg;
    wx_error err;
    wx_fault fault;
    tracker *rs;  /* the replicate set this simulation belongs to */
    size_t index; /* its replicate number */
};

/* A replicate set waiting for its replicates before its aggregation. */
struct tracker {
    pthread_mutex_t mu;
    wx_service *service;
    wx_agg_task agg; /* sim_returns filled as replicates finish */
    size_t remaining;
    wx_future *agg_future;
    int failed;      /* a replicate could not be submitted: its status */
    wx_error err;
};

static wx_future *future_new(void)
{
    wx_future *f = wx__calloc(1, sizeof(*f));

    if (f) {
        pthread_mutex_init(&f->mu, NULL);
        pthread_cond_init(&f->cv, NULL);
    }
    return f;
}

static void future_finish(wx_future *f, int status)
{
    pthread_mutex_lock(&f->mu);
    f->status = status;
    f->done = true;
    pthread_cond_broadcast(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static void future_wait(wx_future *f)
{
    pthread_mutex_lock(&f->mu);
    while (!f->done)
        pthread_cond_wait(&f->cv, &f->mu);
    pthread_mutex_unlock(&f->mu);
}

static void agg_future_done(void *user, wx_agg_return *ret, int status,
                            const wx_error *err, const wx_fault *fault)
{
    wx_future *f = user;

    if (!status) {
        f->agg = *ret;
    } else {
        f->err = *err;
        f->fault = *fault;
        f->fault.stderr_tail =
            fault->stderr_tail ? wx__strdup(fault->stderr_tail) : NULL;
        f->fault.traceback =
            fault->traceback ? wx__strdup(fault->traceback) : NULL;
    }
    future_finish(f, status);
}

static void tracker_free(tracker *t)
{
    wx_agg_task_release(&t->agg);
    pthread_mutex_destroy(&t->mu);
    wx_free(t);
}

/* The last replicate is in: submit the aggregation. */
static void tracker_complete(tracker *t)
{
    wx_error err = t->err;
    int rc = t->failed ? t->failed
                       : wx_service_submit_aggregation(t->service, &t->agg,
                                                       agg_future_done,
                                                       t->agg_future, &err);

    if (rc) {
        t->agg_future->err = err;
        future_finish(t->agg_future, rc);
    }
    tracker_free(t);
}

/* One replicate is in: keep a copy for the aggregation. */
static void tracker_add(tracker *t, size_t i, const wx_sim_return *r)
{
    bool last;

    pthread_mutex_lock(&t->mu);
    if (wx_sim_return_copy(&t->agg.sim_returns[i], r, NULL) != 0)
        memset(&t->agg.sim_returns[i], 0, sizeof(*r));
    last = --t->remaining == 0;
    pthread_mutex_unlock(&t->mu);
    if (last)
        tracker_complete(t);
}

static void sim_future_done(void *user, wx_sim_return *ret, int status)
{
    wx_future *f = user;

    f->sim = *ret;
    if (f->rs)
        tracker_add(f->rs, f->index, &f->sim);
    future_finish(f, status);
}

int wx_service_submit_future(wx_service *s, const wx_task *task,
                             wx_future **out, wx_error *err)
{
    wx_future *f = future_new();
    int rc;

    if (!f)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    rc = wx_service_submit(s, task, sim_future_done, f, err);
    if (rc) {
        wx_future_free(f);
        return rc;
    }
    *out = f;
    return 0;
}

int wx_service_submit_batch(wx_service *s, const wx_task *tasks, size_t n,
                            wx_future **out, wx_error *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc = wx_service_submit_future(s, &tasks[i], &out[i], err);

        if (rc) {
            /* Those submitted run on; wait for them before failing. */
            for (size_t k = 0; k < i; k++) {
                future_wait(out[k]);
                wx_future_free(out[k]);
            }
            return rc;
        }
    }
    return 0;
}

static tracker *tracker_new(wx_service *s, const wx_replicate_set *rs,
                            const char *target, json_t *target_data,
                            wx_future *agg_future)
{
    size_t n = (size_t)rs->n_replicates;
    tracker *t = wx__calloc(1, sizeof(*t));

    if (!t)
        return NULL;
    pthread_mutex_init(&t->mu, NULL);
    t->service = s;
    t->remaining = n;
    t->agg_future = agg_future;
    t->agg.bundle_ref = wx__strdup(rs->base.bundle_ref);
    t->agg.target_entrypoint = wx__strdup(target);
    t->agg.target_data = json_incref(target_data);
    t->agg.sim_returns = wx__calloc(n, sizeof(*t->agg.sim_returns));
    t->agg.n_sim_returns = n;
    if (!t->agg.bundle_ref || !t->agg.target_entrypoint ||
        !t->agg.sim_returns) {
        tracker_free(t);
        return NULL;
    }
    return t;
}

/* Replicate `i` could not be submitted: count it as done, and failed. */
static void tracker_skip(tracker *t, int rc, const wx_error *err)
{
    bool last;

    pthread_mutex_lock(&t->mu);
    if (!t->failed) {
        t->failed = rc;
        t->err = *err;
    }
    last = --t->remaining == 0;
    pthread_mutex_unlock(&t->mu);
    if (last)
        tracker_complete(t);
}

static int submit_replicate(wx_service *s, const wx_replicate_set *rs,
                            int64_t i, tracker *t, wx_future **out,
                            wx_error *err)
{
    wx_task task;
    int rc = wx_replicate_task(rs, i, &task, err);

    *out = rc ? NULL : future_new();
    if (!rc && !*out)
        rc = wx_error_set(err, WX_ENOMEM, "out of memory");
    if (!rc) {
        (*out)->rs = t;
        (*out)->index = (size_t)i;
        rc = wx_service_submit(s, &task, sim_future_done, *out, err);
    }
    if (rc) {
        wx_future_free(*out);
        *out = NULL;
        if (t)
            tracker_skip(t, rc, err);
    }
    wx_task_release(&task);
    return rc;
}

int wx_service_submit_replicate_set(wx_service *s, const wx_replicate_set *rs,
                                    const char *target, json_t *target_data,
                                    wx_future **sims, wx_future **agg,
                                    wx_error *err)
{
    tracker *t = NULL;
    int rc = wx_replicate_set_validate(rs, err);

    if (rc)
        return rc;
    if (target) {
        *agg = future_new();
        t = *agg ? tracker_new(s, rs, target, target_data, *agg) : NULL;
        if (!t) {
            wx_future_free(*agg);
            return wx_error_set(err, WX_ENOMEM, "out of memory");
        }
    }
    for (int64_t i = 0; i < rs->n_replicates; i++) {
        if (!rc) {
            rc = submit_replicate(s, rs, i, t, &sims[i], err);
            continue;
        }
        /* After a failure the rest is not submitted: count it as failed. */
        sims[i] = NULL;
        if (t)
            tracker_skip(t, rc, err);
    }
    return rc;
}

int wx_service_submit_batch_with_aggregation(
    wx_service *s, const wx_replicate_set *sets, size_t n, const char *target,
    json_t *target_data, wx_future **sims, wx_future **aggs, wx_error *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc = wx_service_submit_replicate_set(s, &sets[i], target,
                                                 target_data, sims, &aggs[i],
                                                 err);

        if (rc)
            return rc;
        sims += sets[i].n_replicates;
    }
    return 0;
}

int wx_future_sim(wx_future *f, wx_sim_return *out)
{
    future_wait(f);
    *out = f->sim;
    memset(&f->sim, 0, sizeof(f->sim));
    return f->status;
}

int wx_future_agg(wx_future *f, wx_agg_return *out, wx_fault *fault,
                  wx_error *err)
{
    future_wait(f);
    *out = f->agg;
    memset(&f->agg, 0, sizeof(f->agg));
    if (f->status && err)
        *err = f->err;
    if (f->status && fault) {
        *fault = f->fault;
        memset(&f->fault, 0, sizeof(f->fault));
    }
    return f->status;
}

void wx_service_gather(wx_future **futures, size_t n, wx_sim_return *out)
{
    for (size_t i = 0; i < n; i++)
        wx_future_sim(futures[i], &out[i]);
}

void wx_future_free(wx_future *f)
{
    if (!f)
        return;
    wx_sim_return_release(&f->sim);
    wx_agg_return_release(&f->agg);
    wx_fault_release(&f->fault);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    wx_free(f);
}
