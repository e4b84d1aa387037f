/*
 * Worker ranks 1..N-1 (docs/distributed.md): take rank 0's settings,
 * serve its tasks with a local warm pool whose results keep their bytes
 * (forward_bytes), and send the results back.  The main thread is the
 * only one calling MPI; dispatcher threads encode results.
 */
#define _GNU_SOURCE 1

#include <mpi.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <warmexec/mpi.h>

#include "mpi_msg.h"

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
    size_t running; /* tasks in the local service (atomic) */
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
    rc = wx__mpi_encode(&r->msg, id, head, reps, n, WX_MPI_DETAILS, &err);
    if (rc)
        rc = wx__mpi_encode(&r->msg, id,
                            json_pack("{s:i,s:s}", "status", rc, "error",
                                      err.message),
                            NULL, 0, WX_MPI_OUTPUTS, &err);
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
    __atomic_sub_fetch(&q.sv->running, 1, __ATOMIC_RELAXED);
}

static void on_agg(void *user, wx_agg_return *ret, int status,
                   const wx_error *err, const wx_fault *fault)
{
    request q = *(request *)user;
    wx_error own = WX_ERROR_INIT;
    json_t *v = NULL;

    free(user);
    if (!status) {
        /* The return is ours whatever its JSON becomes. */
        if (wx_agg_return_to_json(ret, &v, &own) != 0) {
            status = own.code;
            err = &own;
        }
        wx_agg_return_release(ret);
    }
    if (!status)
        send_result(q.sv, q.id, json_pack("{s:i,s:o}", "status", 0, "ret", v),
                    NULL, 0);
    else
        send_result(q.sv, q.id,
                    json_pack("{s:i,s:s,s:o}", "status", status, "error",
                              err->message, "fault",
                              wx__mpi_fault_to_json(fault)),
                    NULL, 0);
    __atomic_sub_fetch(&q.sv->running, 1, __ATOMIC_RELAXED);
}

/* Read a task of rank 0's and give it to the local service. */
static int serve_task(server *sv, json_t *head, wx__mpi_reader *rest,
                      uint64_t id, wx_error *err)
{
    const char *kind = json_string_value(json_object_get(head, "k"));
    json_t *v = json_object_get(head, "task");
    request *q = malloc(sizeof(*q));
    int rc = q ? 0 : wx_error_set(err, WX_ENOMEM, "out of memory");

    /* Counted before the submit: the callback may come before it returns. */
    __atomic_add_fetch(&sv->running, 1, __ATOMIC_RELAXED);

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
            rc = wx__mpi_take_all(rest, agg.sim_returns, agg.n_sim_returns,
                                  WX_MPI_OUTPUTS, err);
        if (!rc)
            rc = wx_service_submit_aggregation(sv->local, &agg, on_agg, q,
                                               err);
        wx_agg_task_release(&agg);
    } else if (!rc) {
        rc = wx_error_set(err, WX_EPROTO, "unknown request '%s'",
                          kind ? kind : "");
    }
    if (rc) {
        free(q);
        __atomic_sub_fetch(&sv->running, 1, __ATOMIC_RELAXED);
    }
    return rc;
}

static bool is_kind(const json_t *head, const char *kind)
{
    const char *k = json_string_value(json_object_get(head, "k"));

    return k && strcmp(k, kind) == 0;
}

/* Take the tasks that arrived; false once rank 0 says stop. */
static bool take_tasks(server *sv, bool *busy)
{
    for (;;) {
        wx_error err = WX_ERROR_INIT;
        json_t *head = NULL;
        wx_buf msg;
        wx__mpi_reader rest;
        int flag = 0, rc;

        MPI_Iprobe(0, TAG_TASK, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
        if (!flag)
            return true;
        *busy = true;
        rc = wx__mpi_receive(0, TAG_TASK, &msg, NULL, &err);
        if (!rc)
            rc = wx__mpi_decode(&msg, &head, &rest, &err);
        if (!rc && is_kind(head, "stop")) {
            json_decref(head);
            wx_buf_release(&msg);
            return false;
        }
        if (!rc)
            rc = serve_task(sv, head, &rest, wx__mpi_message_id(&msg), &err);
        if (rc)
            send_result(sv, wx__mpi_message_id(&msg),
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
    int rc = wx__mpi_encode(&msg, 0, head, NULL, 0, WX_MPI_OUTPUTS, err);

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
    wx__mpi_reader rest;

    if (wx__mpi_receive(0, TAG_TASK, &msg, NULL, &err) == 0)
        wx__mpi_decode(&msg, &head, &rest, &err);
    wx_buf_release(&msg);
    return head;
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
        else if (__atomic_load_n(&sv->running, __ATOMIC_RELAXED))
            wx__mpi_idle_pause(&pause_us, WX_MPI_PAUSE_BUSY);
        else
            wx__mpi_idle_pause(&pause_us, WX_MPI_PAUSE_IDLE);
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
        rc = wx__mpi_apply_settings(cfg, json_object_get(first, "settings"),
                                    err);
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
