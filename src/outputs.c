/*
 * A worker's reply made into results (the seed plan's helpers): its
 * artifacts stored or inlined, the SimReturn of a task that ran or
 * failed, and the loading and checking of stored outputs.
 */
#include "internal.h"

#include <stdio.h>

#include <warmexec/canon.h>
#include <warmexec/json.h>

#include "alloc.h"
#include "cas.h"
#include "hash.h"
#include "json.h"
#include "outputs.h"

/* ---- handle_artifacts ---- */

static void outputs_free(wx_output *o, size_t n)
{
    for (size_t i = 0; o && i < n; i++) {
        wx_free(o[i].name);
        wx_artifact_release(&o[i].art);
    }
    wx_free(o);
}

/* The ref of an artifact whose checksum is set: "cas://<checksum>". */
static int loaded_ref(wx_artifact *a, wx_error *err)
{
    size_t n = sizeof(WX_CAS_PREFIX) + WX_ID_LEN;

    if (!(a->ref = wx__malloc(n)))
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    snprintf(a->ref, n, WX_CAS_PREFIX "%s", a->checksum);
    return 0;
}

/* ---- big attachments stored while they arrive (env.h) ---- */

static bool bound_for_store(const wx__ingest *in, size_t len)
{
    return len > in->inline_max && len >= WX__CAS_STREAM_MIN;
}

/*
 * A stream for each attachment bound for the store, up to
 * WX__INGEST_MAX.  One that cannot be opened is left out: its output
 * takes the ordinary way to the store, which reports what is wrong.
 */
static void ingest_begin(void *ctx, const wx__frame *f)
{
    wx__ingest *in = ctx;

    wx__ingest_end(in);
    for (size_t i = 0; i < f->n_att && in->n < WX__INGEST_MAX; i++) {
        wx__ingest_item *it = &in->items[in->n];
        size_t from = f->att_off[i], len = f->att_off[i + 1] - from;

        if (!bound_for_store(in, len) ||
            wx__cas_stream_open(in->cas, (const uint8_t *)f->att.data + from,
                                len, &it->stream, NULL) != 0)
            continue;
        it->att = i;
        it->from = from;
        it->len = len;
        in->n++;
    }
}

static void ingest_arrived(void *ctx, const wx__frame *f, size_t n)
{
    wx__ingest *in = ctx;

    (void)f;
    for (size_t i = 0; i < in->n; i++) {
        wx__ingest_item *it = &in->items[i];

        if (it->stream && n > it->from)
            wx__cas_stream_arrived(it->stream, WX_MIN(n - it->from, it->len));
    }
}

void wx__ingest_init(wx__ingest *in, wx_cas *cas, size_t inline_max)
{
    *in = (wx__ingest){.sink = {ingest_begin, ingest_arrived, in},
                       .cas = cas,
                       .inline_max = inline_max};
}

void wx__ingest_end(wx__ingest *in)
{
    for (size_t i = 0; i < in->n; i++)
        wx__cas_stream_abort(in->items[i].stream);
    in->n = 0;
}

/*
 * The object that attachment `att` became: its stream is finished by
 * the first output that names it.  `*hex` is NULL without a stream.
 */
static int ingest_finish(wx__ingest *in, size_t att, const char **hex,
                         wx_error *err)
{
    *hex = NULL;
    for (size_t i = 0; in && i < in->n; i++) {
        wx__ingest_item *it = &in->items[i];
        int rc;

        if (it->att != att)
            continue;
        if (it->stream) {
            rc = wx__cas_stream_finish(it->stream, it->hex, err);
            it->stream = NULL;
            if (rc)
                return rc;
        }
        *hex = it->hex;
        return 0;
    }
    return 0;
}

/*
 * One raw output: an inline copy with its checksum, or a CAS object,
 * whose ref names its checksum (the store hashes big objects while it
 * writes them, or while they arrived).
 */
static int make_artifact(wx_cas *cas, size_t inline_max, wx__ingest *in,
                         const wx__raw_output *raw, wx_artifact *a,
                         wx_error *err)
{
    char ref[WX_CAS_REF_LEN + 1];
    const char *streamed;
    int rc;

    a->size = raw->len;
    if (raw->len <= inline_max || !cas) {
        rc = wx__sha256_hex(raw->data, raw->len, a->checksum, err);
        if (rc)
            return rc;
        if (raw->len && !(a->data = wx__malloc(raw->len)))
            return wx_error_set(err, WX_ENOMEM, "out of memory");
        if (raw->len)
            memcpy(a->data, raw->data, raw->len);
        /* Without a store a big output travels loaded, under its ref. */
        return raw->len <= inline_max ? 0 : loaded_ref(a, err);
    }
    rc = ingest_finish(in, raw->att, &streamed, err);
    if (!rc && streamed)
        snprintf(ref, sizeof(ref), WX_CAS_PREFIX "%s", streamed);
    else if (!rc)
        rc = wx_cas_put(cas, raw->data, raw->len, NULL, ref, err);
    if (rc)
        return wx_error_prefix(err, rc == WX_ENOMEM ? rc : WX_EIO,
                               "cannot store output '%s'", raw->name);
    wx_cas_parse_ref(ref, a->checksum, NULL);
    a->ref = wx__strdup(ref);
    return a->ref ? 0 : wx_error_set(err, WX_ENOMEM, "out of memory");
}

int wx__handle_artifacts(wx_cas *cas, size_t inline_max, wx__ingest *in,
                         const wx__outputs *raw, wx_output **outputs,
                         wx_error *err)
{
    wx_output *o = wx__calloc(raw->n ? raw->n : 1, sizeof(*o));
    int rc = o ? 0 : wx_error_set(err, WX_ENOMEM, "out of memory");

    for (size_t i = 0; !rc && i < raw->n; i++) {
        o[i].name = wx__strdup(raw->items[i].name);
        rc = o[i].name ? make_artifact(cas, inline_max, in, &raw->items[i],
                                       &o[i].art, err)
                       : wx_error_set(err, WX_ENOMEM, "out of memory");
    }
    if (rc) {
        outputs_free(o, raw->n);
        return rc;
    }
    *outputs = o;
    return 0;
}

/* ---- create_sim_return ---- */

int wx__task_ids_compute(const wx_task *task, wx__task_ids *ids,
                         wx_error *err)
{
    int rc = wx_task_sim_root(task, ids->sim_root, err);

    return rc ? rc
              : wx_task_id(ids->sim_root, task->entrypoint, task->outputs,
                           ids->task_id, err);
}

int wx__create_sim_return(const wx_task *task, const wx__task_ids *ids,
                          wx_output *outputs, size_t n, wx_sim_return *ret,
                          wx_error *err)
{
    wx__task_ids own;
    int rc = 0;

    memset(ret, 0, sizeof(*ret));
    ret->outputs = outputs;
    ret->n_outputs = n;
    if (!ids) {
        rc = wx__task_ids_compute(task, &own, err);
        ids = &own;
    }
    if (!rc) {
        memcpy(ret->sim_root, ids->sim_root, sizeof(ret->sim_root));
        memcpy(ret->task_id, ids->task_id, sizeof(ret->task_id));
    }
    if (!rc && n == 0)
        rc = wx_error_set(err, WX_EMODEL, "the model returned no outputs");
    if (!rc)
        rc = wx_sim_return_validate(ret, err);
    if (rc)
        wx_sim_return_release(ret);
    return rc;
}

static bool requested(const wx_task *task, const char *name)
{
    size_t i;
    json_t *v;

    json_array_foreach(task->outputs, i, v)
    {
        if (strcmp(json_string_value(v), name) == 0)
            return true;
    }
    return false;
}

static bool produced(const wx_sim_return *r, const char *name)
{
    for (size_t i = 0; i < r->n_outputs; i++)
        if (strcmp(r->outputs[i].name, name) == 0)
            return true;
    return false;
}

int wx__select_outputs(const wx_task *task, wx_sim_return *ret,
                       wx_error *err)
{
    size_t kept = 0, i;
    json_t *v;

    if (!task->outputs)
        return 0;
    json_array_foreach(task->outputs, i, v)
    {
        if (!produced(ret, json_string_value(v)))
            return wx_error_set(err, WX_EMODEL,
                                "requested output '%s' was not produced",
                                json_string_value(v));
    }
    for (i = 0; i < ret->n_outputs; i++) {
        if (requested(task, ret->outputs[i].name)) {
            ret->outputs[kept++] = ret->outputs[i];
        } else {
            wx_free(ret->outputs[i].name);
            wx_artifact_release(&ret->outputs[i].art);
        }
    }
    ret->n_outputs = kept;
    return kept ? 0
                : wx_error_set(err, WX_EMODEL,
                               "the task requested no output");
}

/* ---- create_error_return ---- */

const char *wx__error_type(int rc, const wx_fault *fault)
{
    if (fault && fault->error_type)
        return fault->error_type;
    switch (rc) {
    case WX_ENOTFOUND:
        return "BundleNotFound";
    case WX_ECORRUPT:
        return "BundleCorrupt";
    case WX_EINVAL:
        return "InvalidTask";
    case WX_EIO:
        return "StorageError";
    case WX_ENOMEM:
    case WX_EINTERNAL:
        return "InternalError";
    default:
        return wx_fault_type_of(rc);
    }
}

bool wx__error_type_retryable(const char *type)
{
    static const char *const types[] = {"Timeout", "WorkerCrashed",
                                        "ProtocolError", "StorageError"};

    for (size_t i = 0; i < WX_ARRAY_LEN(types); i++)
        if (strcmp(type, types[i]) == 0)
            return true;
    return false;
}

/* The error_details object of a failed task. */
static json_t *error_details(const wx_task *task, const char *type,
                             const char *message, const wx_fault *fault,
                             int attempts)
{
    json_t *d = json_pack("{s:s,s:s,s:s,s:s,s:i}", "error", message, "type",
                          type, "bundle_ref", task->bundle_ref, "entrypoint",
                          task->entrypoint, "attempts", attempts);

    if (!d || !fault)
        return d;
    if (fault->worker_id[0])
        json_object_set_new(d, "worker", json_string(fault->worker_id));
    if (fault->status[0])
        json_object_set_new(d, "status", json_string(fault->status));
    /* Log tails may hold any bytes (scrubbed to valid UTF-8). */
    if (fault->stderr_tail) {
        char *tail = wx__strdup(fault->stderr_tail);

        if (tail) {
            wx__utf8_scrub(tail);
            json_object_set_new(d, "stderr_tail", json_string(tail));
            wx_free(tail);
        }
    }
    if (fault->traceback)
        json_object_set_new(d, "traceback", json_string(fault->traceback));
    return d;
}

/* The details as an artifact: inline, or in the CAS when large. */
static void details_artifact(const json_t *details, wx_cas *cas,
                             size_t inline_max, wx_artifact *a)
{
    wx_buf text = WX_BUF_INIT(WX_INLINE_CAP);
    char ref[WX_CAS_REF_LEN + 1];

    if (wx_json_canonical(&text, details, NULL) != 0)
        wx_buf_puts(&text, "{}", NULL);
    a->size = text.len;
    wx__sha256_hex(text.data, text.len, a->checksum, NULL);
    if (text.len > inline_max && cas &&
        wx_cas_put(cas, text.data, text.len, a->checksum, ref, NULL) == 0) {
        a->ref = wx__strdup(ref);
        wx_buf_release(&text);
        return;
    }
    a->data = (uint8_t *)wx_buf_detach(&text, NULL);
    if (a->size > inline_max && !cas)
        loaded_ref(a, NULL);
}

void wx__create_error_return(const wx_task *task, int rc,
                             const char *message, const wx_fault *fault,
                             int attempts, wx_cas *cas, size_t inline_max,
                             wx_sim_return *ret)
{
    const char *type = wx__error_type(rc, fault);
    json_t *details = error_details(task, type, message, fault, attempts);

    memset(ret, 0, sizeof(*ret));
    if (wx_task_sim_root(task, ret->sim_root, NULL) != 0 ||
        wx_task_task_id(task, ret->task_id, NULL) != 0)
        snprintf(ret->task_id, sizeof(ret->task_id), "unknown");
    ret->error = wx__calloc(1, sizeof(*ret->error));
    ret->error_details = wx__calloc(1, sizeof(*ret->error_details));
    if (ret->error) {
        ret->error->error_type = wx__strdup(type);
        ret->error->message = wx__strdup(message);
        ret->error->retryable = wx__error_type_retryable(type);
    }
    if (ret->error_details && details)
        details_artifact(details, cas, inline_max, ret->error_details);
    json_decref(details);
}

/* ---- resolve_cas_references and cache checks ---- */

int wx__resolve_cas_references(wx_cas *cas, wx_sim_return *sim_returns,
                               size_t n, size_t max_len, wx_error *err)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sim_returns[i].n_outputs; k++) {
            wx_artifact *a = &sim_returns[i].outputs[k].art;
            size_t len = 0;
            int rc;

            if (!a->ref || a->data)
                continue;
            rc = cas ? wx_cas_get(cas, a->ref, max_len, &a->data, &len, err)
                     : wx_error_set(err, WX_ENOTFOUND,
                                    "%s is not loaded and there is no "
                                    "store", a->ref);
            if (!rc && len != a->size)
                rc = wx_error_set(err, WX_ECORRUPT,
                                  "%s has %zu bytes, the artifact says "
                                  "%llu",
                                  a->ref, len, (unsigned long long)a->size);
            if (rc)
                return wx_error_prefix(err, rc, "sim_returns[%zu].%s", i,
                                       sim_returns[i].outputs[k].name);
        }
    }
    return 0;
}

int wx__check_cached(wx_cas *cas, const wx_sim_return *r, wx_error *err)
{
    for (size_t i = 0; i < r->n_outputs; i++) {
        const char *ref = r->outputs[i].art.ref;
        int rc = ref ? wx_cas_verify(cas, ref, err) : 0;

        if (rc)
            return rc;
    }
    return 0;
}
