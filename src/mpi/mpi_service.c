/*
 * The MPI service on rank 0 (docs/distributed.md): front threads look
 * results up in the cache, load aggregation inputs, store what comes back
 * and call back; one communication thread, the only caller of MPI while
 * the service lives, sends each request to the worker rank with the
 * fewest outstanding (up to its window) and receives the results.  Also
 * the MPI library calls of warmexec/mpi.h.
 */
#define _GNU_SOURCE 1

#include <mpi.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <warmexec/mpi.h>

#include "mpi_msg.h"

/* Threads on rank 0 that look up, store and call back. */
#define FRONT_MAX 8

static int world_size;
static bool workers_stopped;

typedef struct mjob {
    struct mjob *next;
    uint64_t id;
    int rank;
    bool is_agg, replied;
    wx_task task;
    wx_agg_task agg;
    wx_sim_done sim_done;
    wx_agg_done agg_done;
    void *user;
    wx_buf msg; /* the request until it is sent, then the reply */
    MPI_Request send;
} mjob;

typedef struct queue {
    mjob *head, *tail;
} queue;

static void push(queue *q, mjob *j)
{
    j->next = NULL;
    if (q->tail)
        q->tail->next = j;
    else
        q->head = j;
    q->tail = j;
}

static mjob *pop(queue *q)
{
    mjob *j = q->head;

    if (j && !(q->head = j->next))
        q->tail = NULL;
    return j;
}

typedef struct mpi_service {
    wx_service base;
    wx_env *env;
    pthread_mutex_t mu;
    pthread_cond_t work, space, idle, wake;
    queue todo;       /* new or answered jobs, for the front threads */
    queue outbox;     /* requests waiting for room on a rank */
    size_t waiting;   /* new simulations in todo (bounded) */
    size_t queue_max;
    size_t active;    /* submitted and not yet called back */
    uint64_t next_id;
    bool stopping;
    /* The communication thread's alone: */
    mjob *flying;     /* sent, not answered; a list through `next` */
    size_t n_flying;
    int *load, *window; /* per rank */
    pthread_t comm;
    pthread_t front[FRONT_MAX];
    int n_front;
} mpi_service;

static void job_free(mjob *j)
{
    wx_task_release(&j->task);
    wx_agg_task_release(&j->agg);
    wx_buf_release(&j->msg);
    free(j);
}

/* Call a simulation job back with `ret` and free it. */
static void sim_back(mjob *j, wx_sim_return *ret, int status)
{
    j->sim_done(j->user, ret, status);
    job_free(j);
}

static void agg_back(mjob *j, wx_agg_return *ret, int status,
                     const wx_error *err, wx_fault *fault)
{
    j->agg_done(j->user, ret, status, err, fault);
    wx_fault_release(fault);
    job_free(j);
}

static void sim_failed(mpi_service *s, mjob *j, int status, const char *msg)
{
    wx_sim_return ret;

    wx_env_failed(s->env, &j->task, status, msg, &ret);
    sim_back(j, &ret, status);
}

static void agg_failed(mjob *j, int status, const wx_error *err,
                       const char *type)
{
    wx_fault fault = {.error_type = type,
                      .retryable = strcmp(type, "StorageError") == 0};
    wx_agg_return ret;

    memset(&ret, 0, sizeof(ret));
    agg_back(j, &ret, status, err, &fault);
}

/*
 * A new job: served from the cache (true, called back), or its request
 * encoded for a worker rank (false).
 */
static bool start_sim(mpi_service *s, mjob *j)
{
    wx_error err = WX_ERROR_INIT;
    wx_sim_return ret;
    json_t *task = NULL;
    int rc;

    if (wx_env_lookup(s->env, &j->task, &ret)) {
        sim_back(j, &ret, 0);
        return true;
    }
    rc = wx_task_to_json(&j->task, &task, &err);
    if (!rc)
        rc = wx__mpi_encode(&j->msg, j->id,
                            json_pack("{s:s,s:o}", "k", "sim", "task", task),
                            NULL, 0, WX_MPI_OUTPUTS, &err);
    if (rc)
        sim_failed(s, j, rc, err.message);
    return rc != 0;
}

static bool start_agg(mpi_service *s, mjob *j)
{
    wx_error err = WX_ERROR_INIT;
    wx_agg_return ret;
    json_t *task = NULL;
    int rc;

    if (wx_env_lookup_aggregation(s->env, &j->agg, &ret)) {
        wx_fault none = {0};

        agg_back(j, &ret, 0, &err, &none);
        return true;
    }
    rc = wx_env_load_replicates(s->env, &j->agg, &err);
    if (rc) {
        /* A replicate's stored output is missing or damaged. */
        agg_failed(j, WX_EIO, &err, "StorageError");
        return true;
    }
    rc = wx_agg_task_to_json(&j->agg, &task, &err);
    if (!rc)
        rc = wx__mpi_encode(&j->msg, j->id,
                            json_pack("{s:s,s:o}", "k", "agg", "task", task),
                            j->agg.sim_returns, j->agg.n_sim_returns,
                            WX_MPI_OUTPUTS, &err);
    if (rc)
        agg_failed(j, rc, &err, "InternalError");
    return rc != 0;
}

/* A worker's SimReturn: stored here, then called back. */
static void finish_sim(mpi_service *s, mjob *j)
{
    wx_error err = WX_ERROR_INIT;
    wx_sim_return ret;
    json_t *head = NULL;
    json_int_t status = 0;
    const char *message = NULL;
    json_t *v = NULL;
    wx__mpi_reader rest;
    int rc = wx__mpi_decode(&j->msg, &head, &rest, &err);

    memset(&ret, 0, sizeof(ret));
    if (!rc && json_unpack(head, "{s:I,s?o,s?s}", "status", &status, "ret",
                           &v, "error", &message) != 0)
        rc = wx_error_set(&err, WX_EPROTO, "a result without a status");
    if (!rc && !v)
        rc = wx_error_set(&err, (int)status ? (int)status : WX_EPROTO, "%s",
                          message ? message : "a result without a return");
    if (!rc)
        rc = wx_sim_return_from_json(&ret, v, &err);
    if (!rc)
        rc = wx__mpi_take_all(&rest, &ret, 1, WX_MPI_DETAILS, &err);
    json_decref(head);
    if (rc) {
        wx_sim_return_release(&ret);
        sim_failed(s, j, rc,
                   err.message[0] ? err.message : "unreadable result");
        return;
    }
    rc = wx_env_adopt(s->env, &j->task, &ret, (int)status);
    sim_back(j, &ret, rc);
}

static void finish_agg(mpi_service *s, mjob *j)
{
    wx_error err = WX_ERROR_INIT;
    wx_agg_return ret;
    wx_fault fault = {0};
    json_t *head = NULL, *v = NULL, *f = NULL;
    json_int_t status = 0;
    const char *message = "the worker rank gave no reason";
    wx__mpi_reader rest;
    int rc = wx__mpi_decode(&j->msg, &head, &rest, &err);

    memset(&ret, 0, sizeof(ret));
    if (!rc && json_unpack(head, "{s:I,s?o,s?s,s?o}", "status", &status,
                           "ret", &v, "error", &message, "fault", &f) != 0)
        rc = wx_error_set(&err, WX_EPROTO, "a result without a status");
    if (!rc && v) {
        rc = wx_agg_return_from_json(&ret, v, &err);
        if (!rc)
            wx_env_adopt_aggregation(s->env, &j->agg, &ret);
    } else if (!rc) {
        rc = status ? (int)status : WX_EPROTO;
        wx_error_set(&err, rc, "%s", message);
        wx__mpi_fault_from_json(f, &fault);
    }
    json_decref(head);
    if (rc && !fault.error_type)
        fault.error_type = "InternalError";
    agg_back(j, &ret, rc, &err, &fault);
}

/* A front thread: new jobs and answers, until the service stops. */
static void *front_main(void *arg)
{
    mpi_service *s = arg;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        mjob *j = pop(&s->todo);
        bool called_back = true;

        if (!j && s->stopping)
            break;
        if (!j) {
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        if (!j->replied && !j->is_agg) {
            s->waiting--;
            pthread_cond_signal(&s->space);
        }
        pthread_mutex_unlock(&s->mu);
        if (j->replied && j->is_agg)
            finish_agg(s, j);
        else if (j->replied)
            finish_sim(s, j);
        else
            called_back = j->is_agg ? start_agg(s, j) : start_sim(s, j);
        pthread_mutex_lock(&s->mu);
        if (!called_back) {
            push(&s->outbox, j);
            pthread_cond_signal(&s->wake);
        } else if (--s->active == 0) {
            pthread_cond_broadcast(&s->idle);
        }
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* The rank with the fewest outstanding tasks and room for one more. */
static int least_loaded(const mpi_service *s)
{
    int best = -1;

    for (int r = 1; r < world_size; r++)
        if (s->load[r] < s->window[r] &&
            (best < 0 || s->load[r] < s->load[best]))
            best = r;
    return best;
}

/* Send what waits in the outbox to ranks with room. */
static bool send_requests(mpi_service *s)
{
    bool sent = false;

    for (;;) {
        int r = least_loaded(s);
        mjob *j;

        if (r < 0)
            break;
        pthread_mutex_lock(&s->mu);
        j = pop(&s->outbox);
        pthread_mutex_unlock(&s->mu);
        if (!j)
            break;
        j->rank = r;
        s->load[r]++;
        MPI_Isend(j->msg.data, (int)j->msg.len, MPI_BYTE, r, TAG_TASK,
                  MPI_COMM_WORLD, &j->send);
        j->next = s->flying;
        s->flying = j;
        s->n_flying++;
        sent = true;
    }
    return sent;
}

/* Free the request bytes of the sends that completed. */
static bool complete_sends(mpi_service *s)
{
    bool done = false;

    for (mjob *j = s->flying; j; j = j->next) {
        int flag = 0;

        if (j->send == MPI_REQUEST_NULL)
            continue;
        MPI_Test(&j->send, &flag, MPI_STATUS_IGNORE);
        if (flag) {
            wx_buf_release(&j->msg);
            done = true;
        }
    }
    return done;
}

/* The flying job `id` from `rank`, taken off the list; NULL if none. */
static mjob *take_flying(mpi_service *s, uint64_t id, int rank)
{
    for (mjob **p = &s->flying; *p; p = &(*p)->next) {
        mjob *j = *p;

        if (j->id == id && j->rank == rank) {
            *p = j->next;
            s->n_flying--;
            s->load[rank]--;
            return j;
        }
    }
    return NULL;
}

/* Move every result that has arrived to the front threads. */
static bool receive_results(mpi_service *s)
{
    bool got = false;

    for (;;) {
        wx_error err = WX_ERROR_INIT;
        wx_buf msg;
        mjob *j;
        int flag = 0, from = 0;

        MPI_Iprobe(MPI_ANY_SOURCE, TAG_RESULT, MPI_COMM_WORLD, &flag,
                   MPI_STATUS_IGNORE);
        if (!flag)
            return got;
        got = true;
        if (wx__mpi_receive(MPI_ANY_SOURCE, TAG_RESULT, &msg, &from,
                            &err) != 0)
            continue; /* only with an MPI error handler that returns */
        j = take_flying(s, wx__mpi_message_id(&msg), from);
        if (!j) {
            wx_buf_release(&msg);
            continue;
        }
        MPI_Wait(&j->send, MPI_STATUS_IGNORE);
        wx_buf_release(&j->msg);
        j->msg = msg;
        j->replied = true;
        pthread_mutex_lock(&s->mu);
        push(&s->todo, j);
        pthread_cond_signal(&s->work);
        pthread_mutex_unlock(&s->mu);
    }
}

static void *comm_main(void *arg)
{
    mpi_service *s = arg;
    int pause_us = 0;

    for (;;) {
        bool busy = send_requests(s);

        busy |= complete_sends(s);
        busy |= receive_results(s);
        pthread_mutex_lock(&s->mu);
        if (s->stopping && !s->n_flying && !s->outbox.head) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        /* Nothing in flight and nothing to send: sleep until there is. */
        if (!busy && !s->n_flying && !s->outbox.head && !s->stopping) {
            pthread_cond_wait(&s->wake, &s->mu);
            pause_us = 0;
            pthread_mutex_unlock(&s->mu);
            continue;
        }
        pthread_mutex_unlock(&s->mu);
        if (busy)
            pause_us = 0;
        else
            wx__mpi_idle_pause(&pause_us, WX_MPI_PAUSE_BUSY);
    }
    return NULL;
}

/* Queue a new job; simulations wait for room (see service.c). */
static void enqueue(mpi_service *s, mjob *j)
{
    pthread_mutex_lock(&s->mu);
    while (!j->is_agg && s->waiting >= s->queue_max)
        pthread_cond_wait(&s->space, &s->mu);
    j->id = ++s->next_id;
    s->waiting += !j->is_agg;
    s->active++;
    push(&s->todo, j);
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
}

static mjob *job_new(void *user, wx_error *err)
{
    mjob *j = calloc(1, sizeof(*j));

    if (!j) {
        wx_error_set(err, WX_ENOMEM, "out of memory");
        return NULL;
    }
    j->user = user;
    j->send = MPI_REQUEST_NULL;
    wx_buf_init(&j->msg, WX_MPI_MESSAGE_MAX);
    return j;
}

static int mpi_submit_sim(wx_service *svc, const wx_task *task,
                          wx_sim_done done, void *user, wx_error *err)
{
    mjob *j = job_new(user, err);
    int rc = j ? wx_task_copy(&j->task, task, err) : WX_ENOMEM;

    if (rc) {
        free(j);
        return rc;
    }
    j->sim_done = done;
    enqueue((mpi_service *)svc, j);
    return 0;
}

static int mpi_submit_agg(wx_service *svc, const wx_agg_task *task,
                          wx_agg_done done, void *user, wx_error *err)
{
    mjob *j = job_new(user, err);
    int rc = j ? wx_agg_task_copy(&j->agg, task, err) : WX_ENOMEM;

    if (rc) {
        free(j);
        return rc;
    }
    j->is_agg = true;
    j->agg_done = done;
    enqueue((mpi_service *)svc, j);
    return 0;
}

static void mpi_wait(wx_service *svc)
{
    mpi_service *s = (mpi_service *)svc;

    pthread_mutex_lock(&s->mu);
    while (s->active)
        pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

static void stop_threads(mpi_service *s, bool comm)
{
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->work);
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mu);
    if (comm)
        pthread_join(s->comm, NULL);
    for (int i = 0; i < s->n_front; i++)
        pthread_join(s->front[i], NULL);
}

static void service_release(mpi_service *s)
{
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->space);
    pthread_cond_destroy(&s->idle);
    pthread_cond_destroy(&s->wake);
    free(s->load);
    free(s->window);
    free(s);
}

static void mpi_free(wx_service *svc)
{
    mpi_service *s = (mpi_service *)svc;

    mpi_wait(svc);
    stop_threads(s, true);
    wx_mpi_stop_workers();
    service_release(s);
}

static const wx_service_ops mpi_ops = {mpi_submit_sim, mpi_submit_agg,
                                       mpi_wait, mpi_free};

/* Every worker rank starts with rank 0's settings. */
static int send_settings(const wx_config *cfg, wx_error *err)
{
    wx_buf msg;
    int rc = wx__mpi_encode(&msg, 0,
                            json_pack("{s:s,s:o}", "k", "settings", "settings",
                                      wx__mpi_settings_of(cfg)),
                            NULL, 0, WX_MPI_OUTPUTS, err);

    for (int r = 1; !rc && r < world_size; r++)
        MPI_Send(msg.data, (int)msg.len, MPI_BYTE, r, TAG_TASK,
                 MPI_COMM_WORLD);
    wx_buf_release(&msg);
    return rc;
}

/* Every worker rank's hello: its window, or the first rank's failure. */
static int read_hellos(mpi_service *s, int window, int *parallel,
                       wx_error *err)
{
    int rc = 0;

    *parallel = 0;
    for (int r = 1; r < world_size; r++) {
        wx_error why = WX_ERROR_INIT;
        json_t *head = NULL;
        json_int_t jobs = 0;
        const char *error = NULL;
        wx_buf msg;
        wx__mpi_reader rest;
        int one = wx__mpi_receive(r, TAG_HELLO, &msg, NULL, &why);

        if (!one)
            one = wx__mpi_decode(&msg, &head, &rest, &why);
        if (!one && json_unpack(head, "{s?I,s?s}", "jobs", &jobs, "error",
                                &error) != 0)
            one = wx_error_set(&why, WX_EPROTO, "an unreadable hello");
        if (!one && error)
            one = wx_error_set(&why, WX_ESTART, "%s", error);
        if (one && !rc)
            rc = wx_error_set(err, WX_ESTART, "MPI rank %d could not start: "
                              "%s", r, why.message);
        jobs = jobs > 0 ? jobs : 1;
        s->window[r] = window > 0 ? window : (int)(8 * jobs);
        *parallel += (int)jobs;
        json_decref(head);
        wx_buf_release(&msg);
    }
    return rc;
}

static int front_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);

    return cpus < 2 ? 2 : cpus > FRONT_MAX ? FRONT_MAX : (int)cpus;
}

static int start_threads(mpi_service *s, wx_error *err)
{
    int want = front_threads();

    for (; s->n_front < want; s->n_front++)
        if (pthread_create(&s->front[s->n_front], NULL, front_main, s))
            break;
    if (s->n_front == want &&
        pthread_create(&s->comm, NULL, comm_main, s) == 0)
        return 0;
    stop_threads(s, false);
    return wx_error_set(err, WX_EIO, "cannot start threads");
}

int wx_mpi_service_maker(void *user, wx_env *env, wx_service **out,
                         int *parallel, wx_error *err)
{
    const wx_mpi_options *o = user;
    mpi_service *s;
    int rc;

    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    if (world_size < 2)
        return wx_error_set(err, WX_EINVAL, "the MPI service needs at "
                            "least 2 ranks");
    s = calloc(1, sizeof(*s));
    if (!s || !(s->load = calloc((size_t)world_size, sizeof(int))) ||
        !(s->window = calloc((size_t)world_size, sizeof(int)))) {
        if (s)
            free(s->load);
        free(s);
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    }
    s->base.ops = &mpi_ops;
    s->env = env;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->space, NULL);
    pthread_cond_init(&s->idle, NULL);
    pthread_cond_init(&s->wake, NULL);
    rc = o && o->cfg ? send_settings(o->cfg, err) : 0;
    if (!rc)
        rc = read_hellos(s, o ? o->window : 0, parallel, err);
    s->queue_max = (size_t)*parallel * 4 + 4;
    if (!rc)
        rc = start_threads(s, err);
    if (rc) {
        service_release(s);
        return rc;
    }
    *out = &s->base;
    return 0;
}

void wx_mpi_stop_workers(void)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf msg;

    if (workers_stopped)
        return;
    workers_stopped = true;
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    if (wx__mpi_encode(&msg, 0, json_pack("{s:s}", "k", "stop"), NULL, 0,
                       WX_MPI_OUTPUTS, &err))
        MPI_Abort(MPI_COMM_WORLD, 4); /* cannot even say stop: end all */
    for (int r = 1; r < world_size; r++)
        MPI_Send(msg.data, (int)msg.len, MPI_BYTE, r, TAG_TASK,
                 MPI_COMM_WORLD);
    wx_buf_release(&msg);
}

/* ---- the MPI library ---- */

bool wx_mpi_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") ||
           getenv("PMI_RANK");
}

int wx_mpi_init(int *argc, char ***argv, wx_mpi_world *out, wx_error *err)
{
    int provided = 0;

    if (MPI_Init_thread(argc, argv, MPI_THREAD_SERIALIZED, &provided) !=
        MPI_SUCCESS)
        return wx_error_set(err, WX_EINTERNAL, "MPI_Init_thread failed");
    if (provided < MPI_THREAD_SERIALIZED) {
        MPI_Finalize();
        return wx_error_set(err, WX_EINTERNAL, "this MPI library does not "
                            "support threads (serialized)");
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &out->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &out->size);
    world_size = out->size;
    return 0;
}

void wx_mpi_finalize(void)
{
    MPI_Finalize();
}
