/* TableArtifact, ErrorInfo, SimReturn, AggregationReturn. */
#include "internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>

#include <warmexec/json.h>
#include <warmexec/result.h>

#include "alloc.h"
#include "b64.h"
#include "canon.h"
#include "hash.h"
#include "jfield.h"
#include "result.h"

#define CAS_PREFIX_LEN (sizeof(WX_CAS_PREFIX) - 1)

static int oom(wx_error *err)
{
    return wx_error_set(err, WX_ENOMEM, "out of memory");
}

/* "cas://" followed by 64 lowercase hex characters. */
static bool valid_cas_ref(const char *ref)
{
    return strncmp(ref, WX_CAS_PREFIX, CAS_PREFIX_LEN) == 0 &&
           wx__is_hex256(ref + CAS_PREFIX_LEN);
}

int wx_artifact_validate(const wx_artifact *a, wx_error *err)
{
    if (!a->ref && a->size > 0 && !a->data)
        return wx_error_set(err, WX_EINVAL,
                            "Must provide exactly one of inline or ref");
    if (!a->ref && a->size > WX_INLINE_CAP)
        return wx_error_set(err, WX_EINVAL,
                            "inline artifacts must be <= %d bytes, got "
                            "%" PRIu64,
                            WX_INLINE_CAP, a->size);
    if (a->ref && !valid_cas_ref(a->ref))
        return wx_error_set(err, WX_EINVAL,
                            "ref must be cas://<64 lowercase hex>, got "
                            "'%.100s'",
                            a->ref);
    if (a->checksum[0] == '\0')
        return wx_error_set(err, WX_EINVAL, "checksum is required");
    if (!wx__is_hex256(a->checksum))
        return wx_error_set(err, WX_EINVAL,
                            "checksum must be 64-character hex string "
                            "(SHA-256)");
    return 0;
}

void wx_artifact_release(wx_artifact *a)
{
    wx_free(a->data);
    wx_free(a->ref);
    memset(a, 0, sizeof(*a));
}

int wx_artifact_copy(wx_artifact *dst, const wx_artifact *src, wx_error *err)
{
    *dst = *src;
    dst->data = NULL;
    dst->ref = NULL;
    if (src->data && src->size) {
        dst->data = wx__malloc(src->size);
        if (!dst->data)
            return oom(err);
        memcpy(dst->data, src->data, src->size);
    }
    if (src->ref && !(dst->ref = wx__strdup(src->ref))) {
        wx_artifact_release(dst);
        return oom(err);
    }
    return 0;
}

/* Decode the "inline" base64 text into a->data. */
static int decode_inline(wx_artifact *a, const char *text, wx_error *err)
{
    size_t len = strlen(text), n = 0;
    int rc;

    if (len == 0)
        return 0;
    if (wx__b64_decoded_max(len) > WX_INLINE_CAP + 2)
        return wx_error_set(err, WX_EINVAL,
                            "inline artifacts must be <= %d bytes",
                            WX_INLINE_CAP);
    a->data = wx__malloc(wx__b64_decoded_max(len));
    if (!a->data)
        return oom(err);
    rc = wx__b64_decode(text, len, a->data, &n, err);
    if (rc)
        return wx_error_prefix(err, rc, "inline");
    if (n != a->size)
        return wx_error_set(err, WX_EINVAL,
                            "inline bytes length (%zu) doesn't match size "
                            "(%" PRIu64 ")",
                            n, a->size);
    return 0;
}

static const char *const artifact_keys[] = {"size", "checksum", "inline",
                                            "ref", "content_type", NULL};

int wx_artifact_from_json(wx_artifact *a, const json_t *v, wx_error *err)
{
    const char *inline_text = NULL, *ref = NULL, *checksum = "";
    int64_t size = 0;
    int rc;

    memset(a, 0, sizeof(*a));
    if (!json_is_object(v))
        return wx_error_set(err, WX_EINVAL, "artifact must be an object");
    rc = wx__jf_known_keys(v, "artifact", artifact_keys, err);
    if (!rc)
        rc = wx__jf_int(v, "size", true, 0, INT64_MAX, &size, err);
    if (!rc)
        rc = wx__jf_string(v, "checksum", true, &checksum, err);
    if (!rc && json_is_null(json_object_get(v, "inline")) == 0)
        rc = wx__jf_string(v, "inline", false, &inline_text, err);
    if (!rc && json_is_null(json_object_get(v, "ref")) == 0)
        rc = wx__jf_string(v, "ref", false, &ref, err);
    if (!rc && !inline_text == !ref)
        rc = wx_error_set(err, WX_EINVAL,
                          "Must provide exactly one of inline or ref");
    if (rc)
        return rc;
    a->size = (uint64_t)size;
    snprintf(a->checksum, sizeof(a->checksum), "%s", checksum);
    if (ref && !(a->ref = wx__strdup(ref)))
        rc = oom(err);
    if (!rc && inline_text)
        rc = decode_inline(a, inline_text, err);
    if (!rc)
        rc = wx_artifact_validate(a, err);
    if (rc)
        wx_artifact_release(a);
    return rc;
}

/* The inline bytes as a base64 JSON string. */
static json_t *base64_string(const uint8_t *data, size_t n)
{
    size_t len = wx__b64_encoded_len(n);
    char *text = wx__malloc(len + 1);
    json_t *s;

    if (!text)
        return NULL;
    wx__b64_encode(data, n, text);
    s = json_stringn_nocheck(text, len);
    wx_free(text);
    return s;
}

int wx_artifact_to_json(const wx_artifact *a, json_t **out, wx_error *err)
{
    json_t *v = json_object(), *body;

    if (!v)
        return oom(err);
    if (a->ref)
        body = json_string(a->ref);
    else
        body = base64_string(a->data, a->size);
    if (json_object_set_new(v, "size", json_integer((json_int_t)a->size)) ||
        json_object_set_new(v, "checksum", json_string(a->checksum)) ||
        json_object_set_new(v, a->ref ? "ref" : "inline", body)) {
        json_decref(v);
        return oom(err);
    }
    *out = v;
    return 0;
}

void wx_error_info_release(wx_error_info *e)
{
    wx_free(e->error_type);
    wx_free(e->message);
    memset(e, 0, sizeof(*e));
}

static const char *const error_info_keys[] = {"error_type", "message",
                                              "retryable", NULL};

int wx_error_info_from_json(wx_error_info *e, const json_t *v, wx_error *err)
{
    const char *type = NULL, *message = NULL;
    bool retryable = false;
    int rc;

    memset(e, 0, sizeof(*e));
    if (!json_is_object(v))
        return wx_error_set(err, WX_EINVAL, "error must be an object");
    rc = wx__jf_known_keys(v, "error", error_info_keys, err);
    if (!rc)
        rc = wx__jf_string(v, "error_type", true, &type, err);
    if (!rc)
        rc = wx__jf_string(v, "message", true, &message, err);
    if (!rc)
        rc = wx__jf_bool(v, "retryable", false, &retryable, err);
    if (rc)
        return wx_error_prefix(err, rc, "error");
    e->error_type = wx__strdup(type);
    e->message = wx__strdup(message);
    e->retryable = retryable;
    if (!e->error_type || !e->message) {
        wx_error_info_release(e);
        return oom(err);
    }
    return 0;
}

int wx_error_info_to_json(const wx_error_info *e, json_t **out, wx_error *err)
{
    json_t *v = json_pack("{s:s,s:s,s:b}", "error_type", e->error_type,
                          "message", e->message, "retryable", e->retryable);

    if (!v)
        return wx_error_set(err, WX_EINVAL,
                            "error info must be valid UTF-8 text");
    *out = v;
    return 0;
}

static void outputs_release(wx_output *outputs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        wx_free(outputs[i].name);
        wx_artifact_release(&outputs[i].art);
    }
    wx_free(outputs);
}

/* Parse {name: artifact, ...} into a new array (order kept). */
static int outputs_from_json(const json_t *v, wx_output **out, size_t *n_out,
                             wx_error *err)
{
    size_t n = json_object_size(v), i = 0;
    wx_output *outputs = wx__calloc(n ? n : 1, sizeof(*outputs));
    const char *name;
    size_t name_len;
    json_t *art;
    int rc = 0;

    if (!outputs)
        return oom(err);
    json_object_keylen_foreach((json_t *)v, name, name_len, art)
    {
        if (name_len == 0 || strlen(name) != name_len) {
            rc = wx_error_set(err, WX_EINVAL,
                              "outputs: names must be non-empty text");
            break;
        }
        rc = wx_artifact_from_json(&outputs[i].art, art, err);
        if (rc) {
            wx_error_prefix(err, rc, "outputs.%s", name);
            break;
        }
        if (!(outputs[i++].name = wx__strdup(name))) {
            rc = oom(err);
            break;
        }
    }
    if (rc) {
        outputs_release(outputs, i);
        return rc;
    }
    *out = outputs;
    *n_out = n;
    return 0;
}

static int outputs_to_json(const wx_output *outputs, size_t n, json_t **out,
                           wx_error *err)
{
    json_t *v = json_object();
    int rc = v ? 0 : oom(err);

    for (size_t i = 0; !rc && i < n; i++) {
        json_t *art;

        rc = wx_artifact_to_json(&outputs[i].art, &art, err);
        if (!rc && json_object_set_new(v, outputs[i].name, art) != 0)
            rc = oom(err);
    }
    if (rc) {
        json_decref(v);
        return rc;
    }
    *out = v;
    return 0;
}

static int validate_outputs(const wx_output *outputs, size_t n,
                            wx_error *err)
{
    for (size_t i = 0; i < n; i++) {
        int rc;

        if (!outputs[i].name || !outputs[i].name[0])
            return wx_error_set(err, WX_EINVAL,
                                "outputs: names must be non-empty");
        for (size_t j = 0; j < i; j++)
            if (strcmp(outputs[i].name, outputs[j].name) == 0)
                return wx_error_set(err, WX_EINVAL,
                                    "outputs: duplicate name '%s'",
                                    outputs[i].name);
        rc = wx_artifact_validate(&outputs[i].art, err);
        if (rc)
            return wx_error_prefix(err, rc, "outputs.%s", outputs[i].name);
    }
    return 0;
}

/* metrics: an object whose values are all numbers. */
static int validate_metrics(const json_t *metrics, wx_error *err)
{
    const char *key;
    json_t *v;

    if (!metrics)
        return 0;
    if (!json_is_object(metrics))
        return wx_error_set(err, WX_EINVAL, "metrics: must be an object");
    json_object_foreach((json_t *)metrics, key, v)
    {
        if (!json_is_number(v))
            return wx_error_set(err, WX_EINVAL,
                                "metrics.%s: must be a number, got %s", key,
                                wx_json_type_name(v));
    }
    return 0;
}

int wx_sim_return_validate(const wx_sim_return *r, wx_error *err)
{
    int rc;

    if (!r->task_id[0])
        return wx_error_set(err, WX_EINVAL, "task_id is required");
    if (!wx__is_hex256(r->sim_root))
        return wx_error_set(err, WX_EINVAL,
                            "sim_root must be 64 lowercase hex characters");
    if (r->n_outputs == 0 && !r->error)
        return wx_error_set(err, WX_EINVAL,
                            "outputs must contain at least one artifact "
                            "(unless error is present)");
    if (r->error && !r->error_details)
        return wx_error_set(err, WX_EINVAL,
                            "error_details is required when error is set");
    rc = validate_outputs(r->outputs, r->n_outputs, err);
    if (!rc && r->error_details) {
        rc = wx_artifact_validate(r->error_details, err);
        if (rc)
            return wx_error_prefix(err, rc, "error_details");
    }
    return rc ? rc : validate_metrics(r->metrics, err);
}

void wx_sim_return_release(wx_sim_return *r)
{
    outputs_release(r->outputs, r->n_outputs);
    if (r->error) {
        wx_error_info_release(r->error);
        wx_free(r->error);
    }
    if (r->error_details) {
        wx_artifact_release(r->error_details);
        wx_free(r->error_details);
    }
    json_decref(r->metrics);
    wx_free(r->logs_ref);
    memset(r, 0, sizeof(*r));
}

static int copy_error_info(wx_error_info **dst, const wx_error_info *src)
{
    if (!src)
        return 0;
    *dst = wx__calloc(1, sizeof(**dst));
    if (!*dst || !((*dst)->error_type = wx__strdup(src->error_type)) ||
        !((*dst)->message = wx__strdup(src->message)))
        return WX_ENOMEM;
    (*dst)->retryable = src->retryable;
    return 0;
}

static int copy_details(wx_artifact **dst, const wx_artifact *src,
                        wx_error *err)
{
    if (!src)
        return 0;
    *dst = wx__calloc(1, sizeof(**dst));
    return *dst ? wx_artifact_copy(*dst, src, err) : WX_ENOMEM;
}

int wx_sim_return_copy(wx_sim_return *dst, const wx_sim_return *src,
                       wx_error *err)
{
    int rc = 0;

    *dst = *src;
    dst->outputs = wx__calloc(src->n_outputs ? src->n_outputs : 1,
                              sizeof(*dst->outputs));
    dst->n_outputs = 0;
    dst->error = NULL;
    dst->error_details = NULL;
    dst->logs_ref = src->logs_ref ? wx__strdup(src->logs_ref) : NULL;
    dst->metrics = src->metrics ? json_deep_copy(src->metrics) : NULL;
    if (!dst->outputs || (src->logs_ref && !dst->logs_ref) ||
        (src->metrics && !dst->metrics))
        rc = WX_ENOMEM;
    for (size_t i = 0; !rc && i < src->n_outputs; i++) {
        wx_output *o = &dst->outputs[dst->n_outputs];

        o->name = wx__strdup(src->outputs[i].name);
        rc = o->name ? wx_artifact_copy(&o->art, &src->outputs[i].art, err)
                     : WX_ENOMEM;
        if (o->name)
            dst->n_outputs++;
    }
    if (!rc)
        rc = copy_error_info(&dst->error, src->error);
    if (!rc)
        rc = copy_details(&dst->error_details, src->error_details, err);
    if (rc) {
        wx_sim_return_release(dst);
        return rc == WX_ENOMEM ? oom(err) : rc;
    }
    return 0;
}

/* The optional "error" and "error_details" members. */
static int sim_return_error_from_json(wx_sim_return *r, const json_t *v,
                                      wx_error *err)
{
    json_t *error = json_object_get(v, "error");
    json_t *details = json_object_get(v, "error_details");
    int rc = 0;

    if (error && !json_is_null(error)) {
        if (!(r->error = wx__calloc(1, sizeof(*r->error))))
            return oom(err);
        rc = wx_error_info_from_json(r->error, error, err);
        if (rc)
            return rc;
    }
    if (details && !json_is_null(details)) {
        if (!(r->error_details = wx__calloc(1, sizeof(*r->error_details))))
            return oom(err);
        rc = wx_artifact_from_json(r->error_details, details, err);
        if (rc)
            return wx_error_prefix(err, rc, "error_details");
    }
    return 0;
}

static const char *const sim_return_keys[] = {
    "task_id", "sim_root", "outputs", "error",    "error_details",
    "metrics", "cached",   "logs_ref", NULL};

int wx_sim_return_from_json(wx_sim_return *r, const json_t *v, wx_error *err)
{
    const char *task_id = NULL, *logs_ref = NULL;
    json_t *outputs = NULL, *metrics = NULL;
    int rc;

    memset(r, 0, sizeof(*r));
    if (!json_is_object(v))
        return wx_error_set(err, WX_EINVAL, "SimReturn must be an object");
    rc = wx__jf_known_keys(v, "SimReturn", sim_return_keys, err);
    if (!rc)
        rc = wx__jf_string(v, "task_id", true, &task_id, err);
    if (!rc && strlen(task_id) > WX_ID_LEN)
        rc = wx_error_set(err, WX_EINVAL,
                          "task_id: must be at most 64 characters");
    if (!rc)
        rc = wx__jf_hex64(v, "sim_root", true, r->sim_root, err);
    if (!rc)
        rc = wx__jf_object(v, "outputs", false, &outputs, err);
    if (!rc)
        rc = wx__jf_object(v, "metrics", false, &metrics, err);
    if (!rc)
        rc = wx__jf_bool(v, "cached", false, &r->cached, err);
    if (!rc && !json_is_null(json_object_get(v, "logs_ref")))
        rc = wx__jf_string(v, "logs_ref", false, &logs_ref, err);
    if (!rc && outputs)
        rc = outputs_from_json(outputs, &r->outputs, &r->n_outputs, err);
    if (!rc)
        rc = sim_return_error_from_json(r, v, err);
    if (!rc) {
        snprintf(r->task_id, sizeof(r->task_id), "%s", task_id);
        r->metrics = json_incref(metrics);
        if (logs_ref && !(r->logs_ref = wx__strdup(logs_ref)))
            rc = oom(err);
    }
    if (!rc)
        rc = wx_sim_return_validate(r, err);
    if (rc)
        wx_sim_return_release(r);
    return rc;
}

/* Set "error" and "error_details" (null on success). */
static int sim_return_error_to_json(const wx_sim_return *r, json_t *v,
                                    wx_error *err)
{
    json_t *error = NULL, *details = NULL;
    int rc = 0;

    if (r->error)
        rc = wx_error_info_to_json(r->error, &error, err);
    if (!rc && r->error_details)
        rc = wx_artifact_to_json(r->error_details, &details, err);
    if (!rc && (json_object_set_new(v, "error", error ? error : json_null()) ||
                json_object_set_new(v, "error_details",
                                    details ? details : json_null())))
        return oom(err);
    if (rc) {
        json_decref(error);
        json_decref(details);
    }
    return rc;
}

int wx_sim_return_to_json(const wx_sim_return *r, json_t **out, wx_error *err)
{
    json_t *v = json_object(), *outputs = NULL;
    int rc = v ? 0 : oom(err);

    if (!rc)
        rc = outputs_to_json(r->outputs, r->n_outputs, &outputs, err);
    if (!rc &&
        (json_object_set_new(v, "task_id", json_string(r->task_id)) ||
         json_object_set_new(v, "sim_root", json_string(r->sim_root)) ||
         json_object_set_new(v, "outputs", outputs)))
        rc = oom(err);
    if (!rc)
        rc = sim_return_error_to_json(r, v, err);
    if (!rc &&
        (json_object_set_new(v, "metrics", r->metrics
                                               ? json_incref(r->metrics)
                                               : json_object()) ||
         json_object_set_new(v, "cached", json_boolean(r->cached)) ||
         json_object_set_new(v, "logs_ref", r->logs_ref
                                                ? json_string(r->logs_ref)
                                                : json_null())))
        rc = oom(err);
    if (rc) {
        json_decref(v);
        return rc;
    }
    *out = v;
    return 0;
}

/* ---- canonical text without jansson values ---- */

/* Keys in canonical order: "checksum" < "inline" | "ref" < "size". */
static void canonical_artifact(wx__jw *w, const wx_artifact *a)
{
    wx__jw_raw(w, "{\"checksum\":");
    wx__jw_str(w, a->checksum);
    if (a->ref) {
        wx__jw_raw(w, ",\"ref\":");
        wx__jw_str(w, a->ref);
    } else {
        wx__jw_raw(w, ",\"inline\":");
        wx__jw_base64(w, a->data, a->size);
    }
    wx__jw_raw(w, ",\"size\":");
    wx__jw_int(w, (int64_t)a->size);
    wx__jw_raw(w, "}");
}

static int output_name_cmp(const void *a, const void *b)
{
    const wx_output *x = *(const wx_output *const *)a;
    const wx_output *y = *(const wx_output *const *)b;

    return strcmp(x->name, y->name); /* UTF-8 byte order: code points */
}

/* The outputs object, its members sorted by name. */
static void canonical_outputs(wx__jw *w, const wx_output *outputs, size_t n)
{
    const wx_output *stack[8], **order = stack;

    if (n > sizeof(stack) / sizeof(stack[0]) &&
        !(order = wx__calloc(n, sizeof(*order)))) {
        w->rc = oom(w->err);
        return;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = &outputs[i];
    qsort(order, n, sizeof(*order), output_name_cmp);
    wx__jw_raw(w, "{");
    for (size_t i = 0; i < n; i++) {
        wx__jw_raw(w, i ? "," : "");
        wx__jw_str(w, order[i]->name);
        wx__jw_raw(w, ":");
        canonical_artifact(w, &order[i]->art);
    }
    wx__jw_raw(w, "}");
    if (order != stack)
        wx_free(order);
}

int wx__outputs_canonical(const wx_output *outputs, size_t n, wx_buf *out,
                          wx_error *err)
{
    wx__jw w = {out, WX_JSON_SORT_KEYS, 0, err};
    size_t mark = out->len;

    canonical_outputs(&w, outputs, n);
    if (w.rc)
        wx_buf_truncate(out, mark);
    return w.rc;
}

int wx__sim_return_canonical(const wx_sim_return *r, wx_buf *out,
                             wx_error *err)
{
    wx__jw w = {out, WX_JSON_SORT_KEYS, 0, err};
    size_t mark = out->len;

    wx__jw_raw(&w, r->cached ? "{\"cached\":true,\"error\":"
                             : "{\"cached\":false,\"error\":");
    if (r->error) {
        wx__jw_raw(&w, "{\"error_type\":");
        wx__jw_str(&w, r->error->error_type);
        wx__jw_raw(&w, ",\"message\":");
        wx__jw_str(&w, r->error->message);
        wx__jw_raw(&w, r->error->retryable ? ",\"retryable\":true}"
                                           : ",\"retryable\":false}");
    } else {
        wx__jw_raw(&w, "null");
    }
    wx__jw_raw(&w, ",\"error_details\":");
    if (r->error_details)
        canonical_artifact(&w, r->error_details);
    else
        wx__jw_raw(&w, "null");
    wx__jw_raw(&w, ",\"logs_ref\":");
    if (r->logs_ref)
        wx__jw_str(&w, r->logs_ref);
    else
        wx__jw_raw(&w, "null");
    wx__jw_raw(&w, ",\"metrics\":");
    if (r->metrics)
        wx__jw_value(&w, r->metrics);
    else
        wx__jw_raw(&w, "{}");
    wx__jw_raw(&w, ",\"outputs\":");
    if (!w.rc)
        canonical_outputs(&w, r->outputs, r->n_outputs);
    wx__jw_raw(&w, ",\"sim_root\":");
    wx__jw_str(&w, r->sim_root);
    wx__jw_raw(&w, ",\"task_id\":");
    wx__jw_str(&w, r->task_id);
    wx__jw_raw(&w, "}");
    if (w.rc)
        wx_buf_truncate(out, mark);
    return w.rc;
}

int wx_agg_return_validate(const wx_agg_return *r, wx_error *err)
{
    if (strlen(r->aggregation_id) != WX_AGG_ID_LEN ||
        !wx__is_lower_hex(r->aggregation_id, WX_AGG_ID_LEN))
        return wx_error_set(err, WX_EINVAL,
                            "aggregation_id must be 16 lowercase hex "
                            "characters");
    if (!isfinite(r->loss))
        return wx_error_set(err, WX_EINVAL, "loss must be finite, got %s",
                            isnan(r->loss) ? "nan" : "inf");
    if (r->n_replicates <= 0)
        return wx_error_set(err, WX_EINVAL, "n_replicates must be positive");
    if (r->diagnostics && !json_is_object(r->diagnostics))
        return wx_error_set(err, WX_EINVAL,
                            "diagnostics must be an object");
    return validate_outputs(r->outputs, r->n_outputs, err);
}

void wx_agg_return_release(wx_agg_return *r)
{
    outputs_release(r->outputs, r->n_outputs);
    json_decref(r->diagnostics);
    memset(r, 0, sizeof(*r));
}

static const char *const agg_return_keys[] = {
    "aggregation_id", "loss", "diagnostics", "outputs", "n_replicates", NULL};

int wx_agg_return_from_json(wx_agg_return *r, const json_t *v, wx_error *err)
{
    const char *id = NULL;
    json_t *diagnostics = NULL, *outputs = NULL;
    int rc;

    memset(r, 0, sizeof(*r));
    if (!json_is_object(v))
        return wx_error_set(err, WX_EINVAL,
                            "AggregationReturn must be an object");
    rc = wx__jf_known_keys(v, "AggregationReturn", agg_return_keys, err);
    if (!rc)
        rc = wx__jf_string(v, "aggregation_id", true, &id, err);
    if (!rc)
        rc = wx__jf_number(v, "loss", true, &r->loss, err);
    if (!rc)
        rc = wx__jf_object(v, "diagnostics", false, &diagnostics, err);
    if (!rc)
        rc = wx__jf_object(v, "outputs", false, &outputs, err);
    if (!rc)
        rc = wx__jf_int(v, "n_replicates", true, 1, INT64_MAX,
                        &r->n_replicates, err);
    if (!rc && outputs)
        rc = outputs_from_json(outputs, &r->outputs, &r->n_outputs, err);
    if (!rc) {
        snprintf(r->aggregation_id, sizeof(r->aggregation_id), "%s", id);
        r->diagnostics = diagnostics ? json_incref(diagnostics)
                                     : json_object();
        if (!r->diagnostics)
            rc = oom(err);
    }
    if (!rc && strlen(id) != WX_AGG_ID_LEN)
        rc = wx_error_set(err, WX_EINVAL,
                          "aggregation_id must be 16 lowercase hex "
                          "characters");
    if (!rc)
        rc = wx_agg_return_validate(r, err);
    if (rc)
        wx_agg_return_release(r);
    return rc;
}

int wx_agg_return_to_json(const wx_agg_return *r, json_t **out, wx_error *err)
{
    json_t *outputs = NULL, *diagnostics, *v;
    int rc = outputs_to_json(r->outputs, r->n_outputs, &outputs, err);

    if (rc)
        return rc;
    diagnostics = r->diagnostics ? json_incref(r->diagnostics) : json_object();
    v = json_pack("{s:s,s:f,s:o,s:o,s:I}", "aggregation_id",
                  r->aggregation_id, "loss", r->loss, "diagnostics",
                  diagnostics, "outputs", outputs, "n_replicates",
                  (json_int_t)r->n_replicates);
    if (!v)
        return oom(err);
    *out = v;
    return 0;
}
