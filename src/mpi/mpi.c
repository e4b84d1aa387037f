/*
 * Distributed mode on MPI (docs/distributed.md): the MPI service on rank 0
 * and the serve loop of the worker ranks.  Only this file includes mpi.h;
 * it uses the public API of libwarmexec and nothing else.
 *
 * A message between ranks is a 16-byte header (the length of the JSON
 * text, then the request id, both 64-bit little-endian), the JSON text,
 * then the bytes of every artifact of the message that has a CAS ref, in
 * order: for each SimReturn its outputs, then its error details.
 *
 *   rank 0 -> worker, TAG_TASK:   {"k":"sim","task":SimTask}
 *                                 {"k":"agg","task":AggregationTask}
 *                                 {"k":"stop"}
 *   worker -> rank 0, TAG_HELLO:  {"jobs":J} or {"error":M}, once
 *   worker -> rank 0, TAG_RESULT: {"status":S,"ret":SimReturn or
 *                                  AggregationReturn}
 *                                 {"status":S,"error":M,"fault":{...}}
 *
 * Threads: MPI is initialised for serialized use, and while the service
 * lives only its communication thread calls MPI.
 */
#define _GNU_SOURCE 1

#include <mpi.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <warmexec/alloc.h>
#include <warmexec/canon.h>
#include <warmexec/json.h>
#include <warmexec/mpi.h>
#include <warmexec/pool.h>

enum { TAG_HELLO = 1, TAG_TASK = 2, TAG_RESULT = 3 };

/* The largest message between ranks (MPI counts bytes in an int). */
#define MESSAGE_MAX ((size_t)1 << 30)
#define HEADER_LEN 16
/* Threads on rank 0 that look up, store and call back. */
#define FRONT_MAX 8
/* Longest pause of a polling loop with nothing to do. */
#define IDLE_MAX_US 1000

static int world_size;
static bool workers_stopped;

/* ---- messages ---- */

static void put_u64(char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (char)(v >> (8 * i));
}

static uint64_t get_u64(const char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v |= (uint64_t)(uint8_t)p[i] << (8 * i);
    return v;
}

typedef int (*artifact_fn)(void *ctx, wx_artifact *a, wx_error *err);

/* `fn` on every artifact of `r[0..n)` whose bytes travel (it has a ref). */
static int each_travelling(wx_sim_return *r, size_t n, artifact_fn fn,
                           void *ctx, wx_error *err)
{
    int rc = 0;

    for (size_t i = 0; !rc && i < n; i++) {
        for (size_t k = 0; !rc && k < r[i].n_outputs; k++)
            if (r[i].outputs[k].art.ref)
                rc = fn(ctx, &r[i].outputs[k].art, err);
        if (!rc && r[i].error_details && r[i].error_details->ref)
            rc = fn(ctx, r[i].error_details, err);
    }
    return rc;
}

static int append_bytes(void *ctx, wx_artifact *a, wx_error *err)
{
    if (a->size && !a->data)
        return wx_error_set(err, WX_EINTERNAL, "%s is not loaded", a->ref);
    return wx_buf_append(ctx, a->data, a->size, err);
}

/* `*out` = header, `head` (taken over), the bytes of `reps[0..n)`. */
static int encode(wx_buf *out, uint64_t id, json_t *head,
                  wx_sim_return *reps, size_t n, wx_error *err)
{
    char header[HEADER_LEN] = {0};
    int rc;

    wx_buf_init(out, MESSAGE_MAX);
    rc = head ? wx_buf_append(out, header, sizeof(header), err)
              : wx_error_set(err, WX_ENOMEM, "out of memory");
    if (!rc)
        rc = wx_json_write(out, head, 0, err);
    if (!rc) {
        put_u64(out->data, out->len - HEADER_LEN);
        put_u64(out->data + 8, id);
        rc = each_travelling(reps, n, append_bytes, out, err);
    }
    if (rc == WX_ETOOBIG)
        wx_error_prefix(err, rc, "a message between ranks is limited to "
                                 "%zu bytes", MESSAGE_MAX);
    json_decref(head);
    if (rc)
        wx_buf_release(out);
    return rc;
}

/* The bytes after a message's JSON, handed out in order. */
typedef struct reader {
    const char *p;
    size_t left;
} reader;

static int take_bytes(void *ctx, wx_artifact *a, wx_error *err)
{
    reader *r = ctx;

    if (a->size > r->left)
        return wx_error_set(err, WX_EPROTO, "message ends inside %s",
                            a->ref);
    wx_free(a->data);
    a->data = NULL;
    if (a->size && !(a->data = malloc(a->size)))
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    memcpy(a->data, r->p, a->size);
    r->p += a->size;
    r->left -= a->size;
    return 0;
}

/* Parse a message's JSON; `rest` gets the bytes after it. */
static int decode(const wx_buf *msg, json_t **head, reader *rest,
                  wx_error *err)
{
    uint64_t len;

    *head = NULL;
    if (msg->len < HEADER_LEN)
        return wx_error_set(err, WX_EPROTO, "message of %zu bytes",
                            msg->len);
    len = get_u64(msg->data);
    if (len > msg->len - HEADER_LEN)
        return wx_error_set(err, WX_EPROTO, "message header says %llu "
                            "bytes of JSON, %zu came",
                            (unsigned long long)len, msg->len - HEADER_LEN);
    rest->p = msg->data + HEADER_LEN + len;
    rest->left = msg->len - HEADER_LEN - (size_t)len;
    return wx_json_parse(msg->data + HEADER_LEN, (size_t)len, head, err);
}

/* The travelling bytes of `reps`, which must be all that is left. */
static int take_all(reader *rest, wx_sim_return *reps, size_t n,
                    wx_error *err)
{
    int rc = each_travelling(reps, n, take_bytes, rest, err);

    if (!rc && rest->left)
        rc = wx_error_set(err, WX_EPROTO, "%zu bytes too many in a message",
                          rest->left);
    return rc;
}

static uint64_t message_id(const wx_buf *msg)
{
    return msg->len >= HEADER_LEN ? get_u64(msg->data + 8) : 0;
}

/* Blocking receive of one message from `source` with `tag`. */
static int receive(int source, int tag, wx_buf *out, int *from,
                   wx_error *err)
{
    MPI_Status st;
    int n = 0;

    wx_buf_init(out, MESSAGE_MAX);
    MPI_Probe(source, tag, MPI_COMM_WORLD, &st);
    MPI_Get_count(&st, MPI_BYTE, &n);
    if (n < 0 || wx_buf_reserve(out, (size_t)n + 1, err) != 0) {
        /* Take it off the line anyway. */
        MPI_Recv(NULL, 0, MPI_BYTE, st.MPI_SOURCE, tag, MPI_COMM_WORLD,
                 MPI_STATUS_IGNORE);
        return wx_error_set(err, WX_ENOMEM, "no room for a message of %d "
                            "bytes", n);
    }
    MPI_Recv(out->data, n, MPI_BYTE, st.MPI_SOURCE, tag, MPI_COMM_WORLD,
             MPI_STATUS_IGNORE);
    out->len = (size_t)n;
    out->data[n] = '\0';
    if (from)
        *from = st.MPI_SOURCE;
    return 0;
}

/* A pause that grows while a polling loop finds nothing to do. */
static void idle_pause(int *us)
{
    struct timespec ts;

    *us = *us ? (*us * 2 > IDLE_MAX_US ? IDLE_MAX_US : *us * 2) : 20;
    ts.tv_sec = 0;
    ts.tv_nsec = (long)*us * 1000;
    nanosleep(&ts, NULL);
}

/* ---- failures that cross ranks ---- */

/* The static name of an error type read from a message. */
static const char *known_type(const char *type)
{
    static const char *const types[] = {
        "ModelError",    "OutOfMemory",    "Timeout",
        "ProtocolError", "WorkerStartFailed", "WorkerCrashed",
        "InvalidTask",   "BundleNotFound", "BundleCorrupt",
        "StorageError",  "InternalError",  "Cancelled"};

    for (size_t i = 0; type && i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(type, types[i]) == 0)
            return types[i];
    return "InternalError";
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static json_t *fault_to_json(const wx_fault *f)
{
    return json_pack("{s:s?,s:b,s:s,s:s,s:s?,s:s?}", "type", f->error_type,
                     "retryable", f->retryable, "worker", f->worker_id,
                     "status", f->status, "stderr_tail", f->stderr_tail,
                     "traceback", f->traceback);
}

static void fault_from_json(const json_t *v, wx_fault *f)
{
    const char *type = NULL, *worker = "", *status = "", *tail = NULL,
               *tb = NULL;
    int retryable = 0;

    memset(f, 0, sizeof(*f));
    json_unpack((json_t *)v, "{s?s,s?b,s?s,s?s,s?s,s?s}", "type", &type,
                "retryable", &retryable, "worker", &worker, "status",
                &status, "stderr_tail", &tail, "traceback", &tb);
    f->error_type = known_type(type);
    f->retryable = retryable;
    snprintf(f->worker_id, sizeof(f->worker_id), "%s", worker);
    snprintf(f->status, sizeof(f->status), "%s", status);
    f->stderr_tail = dup_or_null(tail);
    f->traceback = dup_or_null(tb);
}

/* ---- settings: rank 0's, except where they name local files ---- */

static bool node_local(int id)
{
    return id == WX_CONF_HOME || id == WX_CONF_NATIVE_RUNNER ||
           id == WX_CONF_PYTHON || id == WX_CONF_PYTHON_RUNNER;
}

static json_t *settings_of(const wx_config *cfg)
{
    wx_buf text = WX_BUF_INIT(1 << 16);
    json_t *v = json_object();

    for (int id = 0; v && id < WX_CONF__COUNT; id++) {
        if (node_local(id))
            continue;
        wx_buf_reset(&text);
        if (wx_config_format(cfg, (wx_conf_id)id, &text, NULL) == 0)
            json_object_set_new(v, wx_conf_entry_get((wx_conf_id)id)->name,
                                json_string(text.data));
    }
    wx_buf_release(&text);
    return v;
}

static int apply_settings(wx_config *cfg, json_t *v, wx_error *err)
{
    const char *name;
    json_t *text;

    json_object_foreach (v, name, text) {
        int id = wx_conf_find(name);
        int rc;

        if (id < 0 || node_local(id) || !json_is_string(text))
            continue; /* not a setting this build has */
        rc = wx_config_set(cfg, (wx_conf_id)id, json_string_value(text),
                           WX_CONF_FROM_FLAG, err);
        if (rc)
            return wx_error_prefix(err, rc, "rank 0's %s", name);
    }
    return 0;
}

/* ---- rank 0: the MPI service ---- */

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
        rc = encode(&j->msg, j->id,
                    json_pack("{s:s,s:o}", "k", "sim", "task", task), NULL,
                    0, &err);
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
        rc = encode(&j->msg, j->id,
                    json_pack("{s:s,s:o}", "k", "agg", "task", task),
                    j->agg.sim_returns, j->agg.n_sim_returns, &err);
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
    reader rest;
    int rc = decode(&j->msg, &head, &rest, &err);

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
        rc = take_all(&rest, &ret, 1, &err);
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
    reader rest;
    int rc = decode(&j->msg, &head, &rest, &err);

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
        fault_from_json(f, &fault);
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
        if (receive(MPI_ANY_SOURCE, TAG_RESULT, &msg, &from, &err) != 0)
            continue; /* its job cannot be found: the run reports it hung */
        j = take_flying(s, message_id(&msg), from);
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
            idle_pause(&pause_us);
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
    wx_buf_init(&j->msg, MESSAGE_MAX);
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
    int rc = encode(&msg, 0,
                    json_pack("{s:s,s:o}", "k", "settings", "settings",
                              settings_of(cfg)),
                    NULL, 0, err);

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
        reader rest;
        int one = receive(r, TAG_HELLO, &msg, NULL, &why);

        if (!one)
            one = decode(&msg, &head, &rest, &why);
        if (!one && json_unpack(head, "{s?I,s?s}", "jobs", &jobs, "error",
                                &error) != 0)
            one = wx_error_set(&why, WX_EPROTO, "an unreadable hello");
        if (!one && error)
            one = wx_error_set(&why, WX_ESTART, "%s", error);
        if (one && !rc)
            rc = wx_error_set(err, WX_ESTART, "MPI rank %d could not start: "
                              "%s", r, why.message);
        jobs = jobs > 0 ? jobs : 1;
        s->window[r] = window > 0 ? window : (int)(2 * jobs);
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
    if (encode(&msg, 0, json_pack("{s:s}", "k", "stop"), NULL, 0, &err))
        MPI_Abort(MPI_COMM_WORLD, 4); /* cannot even say stop: end all */
    for (int r = 1; r < world_size; r++)
        MPI_Send(msg.data, (int)msg.len, MPI_BYTE, r, TAG_TASK,
                 MPI_COMM_WORLD);
    wx_buf_release(&msg);
}

/* ---- ranks 1..N-1: serving ---- */

/* A result on its way to rank 0. */
typedef struct reply {
    struct reply *next;
    wx_buf msg;
    MPI_Request req;
} reply;

typedef struct server {
    wx_env *env;
    wx_service *local;
    pthread_mutex_t mu;
    reply *ready;   /* encoded by the dispatcher threads */
    reply *sending; /* the main thread's */
} server;

/* What a callback needs. */
typedef struct request {
    server *sv;
    uint64_t id;
} request;

static void hand_over(server *sv, reply *r)
{
    pthread_mutex_lock(&sv->mu);
    r->next = sv->ready;
    sv->ready = r;
    pthread_mutex_unlock(&sv->mu);
}

/*
 * Queue the result `head` (taken over) of request `id`.  A result that
 * cannot be encoded goes as its failure, so that rank 0 always hears.
 */
static void send_result(server *sv, uint64_t id, json_t *head,
                        wx_sim_return *reps, size_t n)
{
    wx_error err = WX_ERROR_INIT;
    reply *r = calloc(1, sizeof(*r));
    int rc;

    if (!r)
        abort(); /* rank 0 would wait for this result forever */
    r->req = MPI_REQUEST_NULL;
    rc = encode(&r->msg, id, head, reps, n, &err);
    if (rc)
        rc = encode(&r->msg, id,
                    json_pack("{s:i,s:s}", "status", rc, "error",
                              err.message),
                    NULL, 0, &err);
    if (rc)
        abort();
    hand_over(sv, r);
}

static void on_sim(void *user, wx_sim_return *ret, int status)
{
    request q = *(request *)user;
    wx_error err = WX_ERROR_INIT;
    json_t *v = NULL;

    free(user);
    if (wx_sim_return_to_json(ret, &v, &err) != 0)
        send_result(q.sv, q.id,
                    json_pack("{s:i,s:s}", "status", err.code, "error",
                              err.message),
                    NULL, 0);
    else
        send_result(q.sv, q.id,
                    json_pack("{s:i,s:o}", "status", status, "ret", v), ret,
                    1);
    wx_sim_return_release(ret);
}

static void on_agg(void *user, wx_agg_return *ret, int status,
                   const wx_error *err, const wx_fault *fault)
{
    request q = *(request *)user;
    wx_error own = WX_ERROR_INIT;
    json_t *v = NULL;

    free(user);
    if (!status && wx_agg_return_to_json(ret, &v, &own) != 0) {
        status = own.code;
        err = &own;
    }
    if (!status)
        send_result(q.sv, q.id, json_pack("{s:i,s:o}", "status", 0, "ret", v),
                    NULL, 0);
    else
        send_result(q.sv, q.id,
                    json_pack("{s:i,s:s,s:o}", "status", status, "error",
                              err->message, "fault", fault_to_json(fault)),
                    NULL, 0);
    if (!status)
        wx_agg_return_release(ret);
}

/* Read a task of rank 0's and give it to the local service. */
static int serve_task(server *sv, json_t *head, reader *rest, uint64_t id,
                      wx_error *err)
{
    const char *kind = json_string_value(json_object_get(head, "k"));
    json_t *v = json_object_get(head, "task");
    request *q = malloc(sizeof(*q));
    int rc = q ? 0 : wx_error_set(err, WX_ENOMEM, "out of memory");

    if (!rc && kind && strcmp(kind, "sim") == 0) {
        wx_task task = {0};

        *q = (request){sv, id};
        rc = wx_task_from_json(&task, v, err);
        if (!rc)
            rc = wx_service_submit(sv->local, &task, on_sim, q, err);
        wx_task_release(&task);
    } else if (!rc && kind && strcmp(kind, "agg") == 0) {
        wx_agg_task agg = {0};

        *q = (request){sv, id};
        rc = wx_agg_task_from_json(&agg, v, err);
        if (!rc)
            rc = take_all(rest, agg.sim_returns, agg.n_sim_returns, err);
        if (!rc)
            rc = wx_service_submit_aggregation(sv->local, &agg, on_agg, q,
                                               err);
        wx_agg_task_release(&agg);
    } else if (!rc) {
        rc = wx_error_set(err, WX_EPROTO, "unknown request '%s'",
                          kind ? kind : "");
    }
    if (rc)
        free(q);
    return rc;
}

/* Take the tasks that arrived; false once rank 0 says stop. */
static bool take_tasks(server *sv, bool *busy)
{
    for (;;) {
        wx_error err = WX_ERROR_INIT;
        json_t *head = NULL;
        const char *kind;
        wx_buf msg;
        reader rest;
        int flag = 0, rc;

        MPI_Iprobe(0, TAG_TASK, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
        if (!flag)
            return true;
        *busy = true;
        rc = receive(0, TAG_TASK, &msg, NULL, &err);
        if (!rc)
            rc = decode(&msg, &head, &rest, &err);
        kind = json_string_value(json_object_get(head, "k"));
        if (!rc && kind && strcmp(kind, "stop") == 0) {
            json_decref(head);
            wx_buf_release(&msg);
            return false;
        }
        if (!rc)
            rc = serve_task(sv, head, &rest, message_id(&msg), &err);
        if (rc)
            send_result(sv, message_id(&msg),
                        json_pack("{s:i,s:s}", "status", rc, "error",
                                  err.message),
                        NULL, 0);
        json_decref(head);
        wx_buf_release(&msg);
    }
}

/* Start sending the results that are ready; finish the sends done. */
static bool pump_results(server *sv)
{
    bool moved = false;
    reply *r, **p;

    pthread_mutex_lock(&sv->mu);
    r = sv->ready;
    sv->ready = NULL;
    pthread_mutex_unlock(&sv->mu);
    while (r) {
        reply *next = r->next;

        MPI_Isend(r->msg.data, (int)r->msg.len, MPI_BYTE, 0, TAG_RESULT,
                  MPI_COMM_WORLD, &r->req);
        r->next = sv->sending;
        sv->sending = r;
        r = next;
        moved = true;
    }
    for (p = &sv->sending; *p;) {
        int flag = 0;

        r = *p;
        MPI_Test(&r->req, &flag, MPI_STATUS_IGNORE);
        if (!flag) {
            p = &r->next;
            continue;
        }
        *p = r->next;
        wx_buf_release(&r->msg);
        free(r);
        moved = true;
    }
    return moved;
}

static int say_hello(json_t *head, wx_error *err)
{
    wx_buf msg;
    int rc = encode(&msg, 0, head, NULL, 0, err);

    if (!rc)
        MPI_Send(msg.data, (int)msg.len, MPI_BYTE, 0, TAG_HELLO,
                 MPI_COMM_WORLD);
    wx_buf_release(&msg);
    return rc;
}

/* The next message of rank 0 outside serving (its JSON; caller's). */
static json_t *control_message(void)
{
    wx_error err = WX_ERROR_INIT;
    json_t *head = NULL;
    wx_buf msg;
    reader rest;

    if (receive(0, TAG_TASK, &msg, NULL, &err) == 0)
        decode(&msg, &head, &rest, &err);
    wx_buf_release(&msg);
    return head;
}

static bool is_kind(const json_t *head, const char *kind)
{
    const char *k = json_string_value(json_object_get(head, "k"));

    return k && strcmp(k, kind) == 0;
}

/* After a failed start: wait for rank 0's stop, ignoring anything else. */
static void wait_for_stop(void)
{
    for (;;) {
        json_t *head = control_message();
        bool stop = is_kind(head, "stop");

        json_decref(head);
        if (stop)
            return;
    }
}

static bool results_pending(server *sv)
{
    bool pending;

    pthread_mutex_lock(&sv->mu);
    pending = sv->ready || sv->sending;
    pthread_mutex_unlock(&sv->mu);
    return pending;
}

static void serve_loop(server *sv)
{
    bool serving = true;
    int pause_us = 0;

    while (serving || results_pending(sv)) {
        bool busy = false;

        if (serving)
            serving = take_tasks(sv, &busy);
        if (!serving)
            wx_service_wait(sv->local); /* rank 0 has every result */
        busy |= pump_results(sv);
        if (busy)
            pause_us = 0;
        else
            idle_pause(&pause_us);
    }
}

static int open_server(server *sv, const wx_config *cfg, int *jobs,
                       wx_error *err)
{
    wx_env_options eo = {.forward_bytes = true};
    int rc = wx_env_open(cfg, &eo, &sv->env, err);

    *jobs = (int)wx_config_int(cfg, WX_CONF_JOBS);
    if (*jobs <= 0)
        *jobs = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (*jobs <= 0)
        *jobs = 1;
    /* Rank 0's window bounds the queue: a submit never waits. */
    if (!rc)
        rc = wx_service_local(sv->env, *jobs, (size_t)1 << 20, &sv->local,
                              err);
    return rc;
}

int wx_mpi_serve(wx_config *cfg, const wx_error *setup, wx_error *err)
{
    server sv = {0};
    json_t *first = control_message(); /* rank 0's settings, or stop */
    int jobs = 0, rc = 0;

    if (is_kind(first, "stop")) {
        json_decref(first); /* rank 0 failed before it needed us */
        return 0;
    }
    if (setup) {
        *err = *setup;
        rc = setup->code ? setup->code : WX_EINTERNAL;
    } else if (!is_kind(first, "settings")) {
        rc = wx_error_set(err, WX_EPROTO, "rank 0 sent no settings");
    } else {
        rc = apply_settings(cfg, json_object_get(first, "settings"), err);
    }
    json_decref(first);
    if (!rc)
        rc = open_server(&sv, cfg, &jobs, err);
    pthread_mutex_init(&sv.mu, NULL);
    if (rc) {
        say_hello(json_pack("{s:s}", "error", err->message), NULL);
        wait_for_stop();
        rc = 0; /* rank 0 reports it */
    } else {
        rc = say_hello(json_pack("{s:i}", "jobs", jobs), err);
        if (!rc)
            serve_loop(&sv);
        else
            wait_for_stop();
    }
    if (sv.local)
        wx_service_free(sv.local);
    wx_env_close(sv.env);
    pthread_mutex_destroy(&sv.mu);
    return rc;
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
