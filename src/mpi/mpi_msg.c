/* Messages between ranks (src/mpi/mpi_msg.h). */
#define _GNU_SOURCE 1

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <warmexec/alloc.h>
#include <warmexec/canon.h>
#include <warmexec/json.h>

#include "mpi_msg.h"

#define HEADER_LEN 16

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

/* `fn` on every artifact of `r[0..n)` whose bytes travel (it has a ref
 * and is an output, or error details too with WX_MPI_DETAILS). */
static int each_travelling(wx_sim_return *r, size_t n, unsigned what,
                           artifact_fn fn, void *ctx, wx_error *err)
{
    int rc = 0;

    for (size_t i = 0; !rc && i < n; i++) {
        for (size_t k = 0; !rc && k < r[i].n_outputs; k++)
            if (r[i].outputs[k].art.ref)
                rc = fn(ctx, &r[i].outputs[k].art, err);
        if (!rc && (what & WX_MPI_DETAILS) && r[i].error_details &&
            r[i].error_details->ref)
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
int wx__mpi_encode(wx_buf *out, uint64_t id, json_t *head,
                   wx_sim_return *reps, size_t n, unsigned what,
                   wx_error *err)
{
    char header[HEADER_LEN] = {0};
    int rc;

    wx_buf_init(out, WX_MPI_MESSAGE_MAX);
    rc = head ? wx_buf_append(out, header, sizeof(header), err)
              : wx_error_set(err, WX_ENOMEM, "out of memory");
    if (!rc)
        rc = wx_json_write(out, head, 0, err);
    if (!rc) {
        put_u64(out->data, out->len - HEADER_LEN);
        put_u64(out->data + 8, id);
        rc = each_travelling(reps, n, what, append_bytes, out, err);
    }
    if (rc == WX_ETOOBIG)
        wx_error_prefix(err, rc, "a message between ranks is limited to "
                                 "%zu bytes", WX_MPI_MESSAGE_MAX);
    json_decref(head);
    if (rc)
        wx_buf_release(out);
    return rc;
}

static int take_bytes(void *ctx, wx_artifact *a, wx_error *err)
{
    wx__mpi_reader *r = ctx;

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
int wx__mpi_decode(const wx_buf *msg, json_t **head, wx__mpi_reader *rest,
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
int wx__mpi_take_all(wx__mpi_reader *rest, wx_sim_return *reps, size_t n,
                     unsigned what, wx_error *err)
{
    int rc = each_travelling(reps, n, what, take_bytes, rest, err);

    if (!rc && rest->left)
        rc = wx_error_set(err, WX_EPROTO, "%zu bytes too many in a message",
                          rest->left);
    return rc;
}

uint64_t wx__mpi_message_id(const wx_buf *msg)
{
    return msg->len >= HEADER_LEN ? get_u64(msg->data + 8) : 0;
}

/* Blocking wx__mpi_receive of one message from `source` with `tag`. */
int wx__mpi_receive(int source, int tag, wx_buf *out, int *from,
                    wx_error *err)
{
    MPI_Status st;
    int n = 0;

    wx_buf_init(out, WX_MPI_MESSAGE_MAX);
    MPI_Probe(source, tag, MPI_COMM_WORLD, &st);
    MPI_Get_count(&st, MPI_BYTE, &n);
    if (n < 0 || wx_buf_reserve(out, (size_t)n + 1, err) != 0) {
        /*
         * Senders keep to the limit, so memory ran out.  The message must
         * leave the line (a probe would find it again); reading none of
         * it is a truncation error, which MPI's default error handler
         * turns into the end of the job, with MPI's message.
         */
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
void wx__mpi_idle_pause(int *us, int max_us)
{
    struct timespec ts;

    *us = *us ? (*us * 2 > max_us ? max_us : *us * 2) : 20;
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

json_t *wx__mpi_fault_to_json(const wx_fault *f)
{
    return json_pack("{s:s?,s:b,s:s,s:s,s:s?,s:s?}", "type", f->error_type,
                     "retryable", f->retryable, "worker", f->worker_id,
                     "status", f->status, "stderr_tail", f->stderr_tail,
                     "traceback", f->traceback);
}

void wx__mpi_fault_from_json(const json_t *v, wx_fault *f)
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

json_t *wx__mpi_settings_of(const wx_config *cfg)
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

int wx__mpi_apply_settings(wx_config *cfg, json_t *v, wx_error *err)
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
