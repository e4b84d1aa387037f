/* execute/aggregate messages of the worker protocol. */
#include "internal.h"

#include <math.h>

#include <warmexec/canon.h>
#include <warmexec/json.h>

#include "alloc.h"
#include "b64.h"
#include "canon.h"
#include "wire.h"

void wx__outputs_init(wx__outputs *o, size_t max_bytes)
{
    o->items = NULL;
    o->n = o->cap = 0;
    wx_buf_init(&o->decoded, max_bytes);
}

void wx__outputs_release(wx__outputs *o)
{
    wx_free(o->items);
    o->items = NULL;
    o->n = o->cap = 0;
    wx_buf_release(&o->decoded);
}

int wx__wire_execute_params(wx_buf *out, const char *entrypoint,
                            const json_t *params, int64_t seed,
                            wx_error *err)
{
    wx__jw w = {out, WX_JSON_ENSURE_ASCII, 0, err};

    wx_buf_reset(out);
    wx__jw_raw(&w, "{\"entrypoint\":");
    wx__jw_str(&w, entrypoint);
    wx__jw_raw(&w, ",\"params\":");
    wx__jw_value(&w, params);
    wx__jw_raw(&w, ",\"seed\":");
    wx__jw_int(&w, seed);
    wx__jw_raw(&w, "}");
    return w.rc;
}

int wx__wire_model_error_code(const char *type)
{
    return type && strcmp(type, "MemoryError") == 0 ? WX_EOOM : WX_EMODEL;
}

/* Report an error object {"error": message, "type": T} from the runner. */
static int runner_error(const json_t *info, wx_error *err)
{
    const char *message = json_string_value(json_object_get(info, "error"));
    const char *type = json_string_value(json_object_get(info, "type"));

    return wx_error_set(err, wx__wire_model_error_code(type), "%s: %s",
                        type ? type : "Error",
                        message ? message : "(no message)");
}

/*
 * The original's in-band execute failure: the only member is "error",
 * base64 of a JSON object with an "error" string.  Returns WX_EMODEL or
 * WX_EOOM when `result` is one, else 0.
 */
static int inband_execute_error(const json_t *result, wx_error *err)
{
    const char *text = json_string_value(json_object_get(result, "error"));
    size_t len = text ? json_string_length(json_object_get(result, "error"))
                      : 0;
    uint8_t *bytes;
    size_t n = 0;
    json_t *info = NULL;
    int rc = 0;

    if (json_object_size(result) != 1 || !text || len > (1u << 24))
        return 0;
    bytes = wx__malloc(wx__b64_decoded_max(len) + 1);
    if (!bytes)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    if (wx__b64_decode(text, len, bytes, &n, NULL) == 0 &&
        wx_json_parse((const char *)bytes, n, &info, NULL) == 0 &&
        json_is_string(json_object_get(info, "error")))
        rc = runner_error(info, err);
    json_decref(info);
    wx_free(bytes);
    return rc;
}

static int push_output(wx__outputs *o, const char *name, const uint8_t *data,
                       size_t len, size_t att, wx_error *err)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        wx__raw_output *items = wx__realloc(o->items, cap * sizeof(*items));

        if (!items)
            return wx_error_set(err, WX_ENOMEM, "out of memory");
        o->items = items;
        o->cap = cap;
    }
    o->items[o->n++] = (wx__raw_output){name, data, len, att};
    return 0;
}

/* Room in `decoded` for every base64 value, so pointers stay valid. */
static int reserve_decoded(const json_t *result, wx__outputs *o,
                           wx_error *err)
{
    size_t total = 0;
    const char *name;
    json_t *v;

    json_object_foreach((json_t *)result, name, v)
    {
        if (json_is_string(v))
            total += wx__b64_decoded_max(json_string_length(v));
    }
    wx_buf_reset(&o->decoded);
    return wx_buf_reserve(&o->decoded, total, err);
}

static int read_output(const char *name, const json_t *v,
                       const wx__rpc_conn *conn, wx__outputs *o,
                       wx_error *err)
{
    json_t *att = json_object_get(v, "$att");
    uint8_t *dst;
    size_t n = 0;
    int rc;

    if (json_is_integer(att) && json_object_size(v) == 1) {
        const uint8_t *data = NULL;

        if (json_integer_value(att) >= 0)
            data = wx__rpc_attachment(conn, (size_t)json_integer_value(att),
                                      &n);
        if (!data)
            return wx_error_set(err, WX_EPROTO,
                                "output '%s' names a missing attachment",
                                name);
        return push_output(o, name, data, n,
                           (size_t)json_integer_value(att), err);
    }
    if (!json_is_string(v) || wx_json_is_bigint(v))
        return wx_error_set(err, WX_EPROTO,
                            "output '%s' is neither base64 nor an "
                            "attachment",
                            name);
    dst = (uint8_t *)o->decoded.data + o->decoded.len;
    rc = wx__b64_decode(json_string_value(v), json_string_length(v), dst, &n,
                        err);
    if (rc)
        return wx_error_prefix(err, WX_EPROTO, "output '%s'", name);
    o->decoded.len += n;
    return push_output(o, name, dst, n, WX__NO_ATT, err);
}

int wx__wire_read_outputs(const json_t *result, const wx__rpc_conn *conn,
                          wx__outputs *out, wx_error *err)
{
    const char *name;
    json_t *v;
    int rc;

    out->n = 0;
    if (!json_is_object(result))
        return wx_error_set(err, WX_EPROTO,
                            "execute result is not an object");
    rc = inband_execute_error(result, err);
    if (!rc)
        rc = reserve_decoded(result, out, err);
    json_object_foreach((json_t *)result, name, v)
    {
        if (rc)
            break;
        rc = read_output(name, v, conn, out, err);
    }
    return rc;
}

/*
 * Aggregate params, which can carry thousands of outputs, are written
 * straight into the request buffer (wx__jw), strings ASCII-only as
 * format_request() writes params.
 */
/* An artifact's "inline" value: {"$att":i} or base64 text. */
static void write_inline(wx__jw *w, const wx_artifact *a, bool attachments,
                         struct iovec *att, size_t *n_att)
{
    if (attachments && *n_att < WX_FRAME_ATT_MAX) {
        att[*n_att] = (struct iovec){a->data, a->size};
        wx__jw_raw(w, "{\"$att\":");
        wx__jw_int(w, (int64_t)(*n_att)++);
        wx__jw_raw(w, "}");
        return;
    }
    wx__jw_base64(w, a->data, a->size);
}

static void write_output(wx__jw *w, const wx_output *o, bool attachments,
                         struct iovec *att, size_t *n_att)
{
    wx__jw_str(w, o->name);
    wx__jw_raw(w, ":{\"size\":");
    wx__jw_int(w, (int64_t)o->art.size);
    wx__jw_raw(w, ",\"checksum\":");
    wx__jw_str(w, o->art.checksum);
    wx__jw_raw(w, ",\"inline\":");
    write_inline(w, &o->art, attachments, att, n_att);
    wx__jw_raw(w, ",\"cas_ref\":");
    if (o->art.ref)
        wx__jw_str(w, o->art.ref);
    else
        wx__jw_raw(w, "null");
    wx__jw_raw(w, "}");
}

/* One SimReturn as the evaluator sees it (protocol.md). */
static void write_sim_return(wx__jw *w, const wx_sim_return *r,
                             bool attachments, struct iovec *att,
                             size_t *n_att)
{
    wx__jw_raw(w, "{\"task_id\":");
    wx__jw_str(w, r->task_id);
    wx__jw_raw(w, ",\"sim_root\":");
    wx__jw_str(w, r->sim_root);
    wx__jw_raw(w, ",\"outputs\":{");
    for (size_t i = 0; !w->rc && i < r->n_outputs; i++) {
        const wx_artifact *a = &r->outputs[i].art;

        if (a->size && !a->data) {
            w->rc = wx_error_set(w->err, WX_EINVAL,
                                 "output '%s' of %s is not loaded",
                                 r->outputs[i].name, r->task_id);
            return;
        }
        if (i)
            wx__jw_raw(w, ",");
        write_output(w, &r->outputs[i], attachments, att, n_att);
    }
    wx__jw_raw(w, "},\"error\":");
    if (r->error) {
        wx__jw_raw(w, "{\"error_type\":");
        wx__jw_str(w, r->error->error_type);
        wx__jw_raw(w, ",\"message\":");
        wx__jw_str(w, r->error->message);
        wx__jw_raw(w, "}");
    } else {
        wx__jw_raw(w, "null");
    }
    wx__jw_raw(w, "}");
}

int wx__wire_aggregate_params(const char *target,
                              const wx_sim_return *sim_returns, size_t n,
                              const json_t *target_data, bool attachments,
                              struct iovec *att, size_t *n_att, wx_buf *out,
                              wx_error *err)
{
    wx__jw w = {out, WX_JSON_ENSURE_ASCII, 0, err};

    *n_att = 0;
    wx_buf_reset(out);
    wx__jw_raw(&w, "{\"target_entrypoint\":");
    wx__jw_str(&w, target);
    wx__jw_raw(&w, ",\"sim_returns\":[");
    for (size_t i = 0; !w.rc && i < n; i++) {
        if (i)
            wx__jw_raw(&w, ",");
        write_sim_return(&w, &sim_returns[i], attachments, att, n_att);
    }
    wx__jw_raw(&w, "],\"target_data\":");
    if (target_data)
        wx__jw_value(&w, target_data);
    else
        wx__jw_raw(&w, "null");
    wx__jw_raw(&w, "}");
    return w.rc;
}

/* Diagnostics, with the evaluator's per-replicate losses if it gave any. */
static json_t *diagnostics_of(const json_t *result)
{
    json_t *d = json_object_get(result, "diagnostics");
    json_t *per = json_object_get(result, "per_replicate_losses");
    json_t *copy = json_is_object(d) ? json_deep_copy(d) : json_object();

    if (copy && json_is_array(per) && !json_object_get(copy, "per_replicate_losses"))
        json_object_set(copy, "per_replicate_losses", per);
    return copy;
}

int wx__wire_read_agg_result(const json_t *result, size_t n_sim_returns,
                             wx_agg_return *ret, wx_error *err)
{
    json_t *loss = json_object_get(result, "loss");

    if (!json_is_object(result))
        return wx_error_set(err, WX_EPROTO,
                            "aggregate result is not an object");
    if (json_object_get(result, "error"))
        return runner_error(result, err);
    if (!loss)
        return wx_error_set(err, WX_EMODEL,
                            "Target evaluator must return 'loss' in result "
                            "dict");
    /* NaN and Infinity arrive as null (see rpc.c). */
    if (!json_is_number(loss) || !isfinite(json_number_value(loss)))
        return wx_error_set(err, WX_EMODEL,
                            "Loss must be a finite number, got %s",
                            json_is_null(loss) ? "a non-finite value"
                                               : wx_json_type_name(loss));
    ret->loss = json_number_value(loss);
    ret->n_replicates = (int64_t)n_sim_returns;
    ret->diagnostics = diagnostics_of(result);
    return ret->diagnostics ? 0
                            : wx_error_set(err, WX_ENOMEM, "out of memory");
}
