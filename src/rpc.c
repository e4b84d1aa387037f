/* JSON-RPC 2.0 client and server over Content-Length frames. */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>

#include <warmexec/canon.h>
#include <warmexec/json.h>

#include "alloc.h"
#include "canon.h"
#include "clock.h"
#include "rpc.h"

/* Bodies of requests and replies are bounded by the frame limit. */
int wx__rpc_conn_init(wx__rpc_conn *c, int to_fd, int from_fd,
                      size_t max_frame, wx_error *err)
{
    c->to_fd = to_fd;
    c->next_id = 1;
    wx__frame_init(&c->frame, max_frame);
    wx_buf_init(&c->out, max_frame);
    wx_buf_init(&c->queued, SIZE_MAX - 1);
    return wx__frame_reader_init(&c->reader, from_fd, max_frame, err);
}

void wx__rpc_conn_release(wx__rpc_conn *c)
{
    wx__frame_reader_release(&c->reader);
    wx__frame_release(&c->frame);
    wx_buf_release(&c->out);
    wx_buf_release(&c->queued);
}

/* {"jsonrpc":"2.0","id":N,"method":M,"params":P}, as the original writes. */
static int format_request(wx_buf *out, int64_t id, const char *method,
                          const wx__rpc_params *params, wx_error *err)
{
    int rc;

    wx_buf_reset(out);
    rc = wx_buf_puts(out, "{\"jsonrpc\":\"2.0\",\"id\":", err);
    if (!rc)
        rc = wx__canon_int(out, id, err);
    if (!rc)
        rc = wx_buf_puts(out, ",\"method\":", err);
    if (!rc)
        rc = wx__canon_string(out, method, strlen(method),
                              WX_JSON_ENSURE_ASCII, err);
    if (!rc)
        rc = wx_buf_puts(out, ",\"params\":", err);
    if (!rc)
        rc = params->text
                 ? wx_buf_append(out, params->text, params->len, err)
                 : wx_json_write(out, params->json, WX_JSON_ENSURE_ASCII,
                                 err);
    return rc ? rc : wx_buf_putc(out, '}', err);
}

/*
 * "Type: message" (or just the message) from an error's data; WX_EOOM
 * when the runner reports an allocation failure.
 */
static int model_error(const char *message, const json_t *data,
                       wx_error *err)
{
    const char *type = json_string_value(json_object_get(data, "type"));
    int code = type && strcmp(type, "MemoryError") == 0 ? WX_EOOM
                                                        : WX_EMODEL;

    if (type)
        return wx_error_set(err, code, "%s: %s", type, message);
    return wx_error_set(err, code, "%s", message);
}

static int reply_error(const json_t *error, json_t **result, wx_error *err)
{
    json_t *code = json_object_get(error, "code");
    const char *message = json_string_value(json_object_get(error, "message"));
    json_t *data = json_object_get(error, "data");
    const char *data_text = json_string_value(data);

    if (!json_is_integer(code) || !message)
        return wx_error_set(err, WX_EPROTO,
                            "malformed JSON-RPC error object in reply");
    if (json_integer_value(code) == WX_RPC_MODEL_ERROR ||
        json_integer_value(code) == WX_RPC_AGGREGATION_ERROR) {
        *result = json_incref(data);
        return model_error(message, data, err);
    }
    return wx_error_set(err, WX_EPROTO, "JSON-RPC error %" JSON_INTEGER_FORMAT
                                        ": %s%s%s",
                        json_integer_value(code), message,
                        data_text ? ": " : "", data_text ? data_text : "");
}

int wx__rpc_parse_reply(const char *body, size_t len, int64_t id,
                        json_t **result, wx_error *err)
{
    json_t *v = NULL, *vid, *error;
    int rc;

    *result = NULL;
    /* Python runners may write NaN/Infinity (in diagnostics, say). */
    rc = wx_json_parse_flags(body, len, WX_JSON_NONFINITE_AS_NULL, &v, err);
    if (rc == WX_ENOMEM)
        return rc;
    if (rc)
        return wx_error_prefix(err, WX_EPROTO, "reply is not valid JSON");
    error = json_object_get(v, "error");
    vid = json_object_get(v, "id");
    if (!json_is_object(v))
        rc = wx_error_set(err, WX_EPROTO, "reply is not a JSON object");
    else if (!json_is_string(json_object_get(v, "jsonrpc")) ||
             strcmp(json_string_value(json_object_get(v, "jsonrpc")), "2.0"))
        rc = wx_error_set(err, WX_EPROTO,
                          "reply has no \"jsonrpc\": \"2.0\" member");
    else if (json_is_object(error) && json_is_null(vid))
        rc = wx_error_set(err, WX_EPROTO,
                          "worker could not read a request: %s",
                          json_string_value(json_object_get(error,
                                                            "message"))
                              ?: "(no message)");
    else if (!json_is_integer(vid) || json_integer_value(vid) != id)
        rc = wx_error_set(err, WX_EPROTO,
                          "reply does not answer request %" PRId64, id);
    else if (error && !json_is_null(error))
        rc = json_is_object(error)
                 ? reply_error(error, result, err)
                 : wx_error_set(err, WX_EPROTO, "malformed error in reply");
    else if (json_object_get(v, "result"))
        *result = json_incref(json_object_get(v, "result"));
    else
        *result = json_null();
    json_decref(v);
    return rc;
}

int wx__rpc_send(wx__rpc_conn *c, const char *method,
                 const wx__rpc_params *params, const struct iovec *att,
                 size_t n_att, int64_t deadline, int64_t *id, wx_error *err)
{
    int rc = format_request(&c->out, c->next_id, method, params, err);

    if (!rc)
        rc = wx__frame_write(c->to_fd, c->out.data, c->out.len, att, n_att,
                             deadline, err);
    *id = c->next_id++;
    return rc;
}

int wx__rpc_queue(wx__rpc_conn *c, const char *method,
                  const wx__rpc_params *params, size_t *room, int64_t *id,
                  wx_error *err)
{
    int rc = format_request(&c->out, c->next_id, method, params, err);

    if (!rc && room && c->out.len > *room)
        return wx_error_set(err, WX_ETOOBIG, "a request of %zu bytes",
                            c->out.len);
    if (!rc)
        rc = wx__frame_append(&c->queued, c->out.data, c->out.len, err);
    if (rc)
        return rc;
    if (room)
        *room -= c->out.len;
    *id = c->next_id++;
    return 0;
}

int wx__rpc_flush(wx__rpc_conn *c, int64_t deadline, wx_error *err)
{
    int rc = wx__frame_write_framed(c->to_fd, c->queued.data, c->queued.len,
                                    deadline, err);

    wx_buf_reset(&c->queued);
    return rc;
}

int wx__rpc_receive(wx__rpc_conn *c, int64_t id, int64_t deadline,
                    json_t **result, wx_error *err)
{
    bool clean_eof;
    int rc = wx__frame_read(&c->reader, &c->frame, deadline, &clean_eof, err);

    *result = NULL;
    if (!rc)
        rc = wx__rpc_parse_reply(c->frame.body.data, c->frame.body.len, id,
                                 result, err);
    return rc;
}

int wx__rpc_call(wx__rpc_conn *c, const char *method, const json_t *params,
                 const struct iovec *att, size_t n_att, int64_t deadline,
                 json_t **result, wx_error *err)
{
    int64_t id;
    int rc = wx__rpc_send(c, method, &(wx__rpc_params){.json = params}, att,
                          n_att, deadline, &id, err);

    *result = NULL;
    return rc ? rc : wx__rpc_receive(c, id, deadline, result, err);
}

const uint8_t *wx__rpc_attachment(const wx__rpc_conn *c, size_t i,
                                  size_t *len)
{
    if (i >= c->frame.n_att)
        return NULL;
    *len = c->frame.att_off[i + 1] - c->frame.att_off[i];
    return (const uint8_t *)c->frame.att.data + c->frame.att_off[i];
}

/* ---- server ---- */

static void reply_release(wx__rpc_reply *r)
{
    json_decref(r->result);
    json_decref(r->error_data);
    wx_free(r->error_message);
}

/* {"jsonrpc":"2.0","id":I,"result":R} or ...,"error":{...}} */
static int format_reply(wx_buf *out, const json_t *id,
                        const wx__rpc_reply *r, wx_error *err)
{
    int rc;

    wx_buf_reset(out);
    rc = wx_buf_puts(out, "{\"jsonrpc\":\"2.0\",\"id\":", err);
    if (!rc)
        rc = wx_json_write(out, id, WX_JSON_ENSURE_ASCII, err);
    if (!rc && r->error_code) {
        json_t *e = json_pack("{s:i,s:s}", "code", r->error_code, "message",
                              r->error_message ? r->error_message : "error");

        if (e && r->error_data)
            json_object_set(e, "data", r->error_data);
        rc = e ? wx_buf_puts(out, ",\"error\":", err)
               : wx_error_set(err, WX_ENOMEM, "out of memory");
        if (!rc)
            rc = wx_json_write(out, e, WX_JSON_ENSURE_ASCII, err);
        json_decref(e);
    } else if (!rc) {
        rc = wx_buf_puts(out, ",\"result\":", err);
        if (!rc)
            rc = r->result_text
                     ? wx_buf_append(out, r->result_text->data,
                                     r->result_text->len, err)
                 : r->result ? wx_json_write(out, r->result,
                                             WX_JSON_ENSURE_ASCII, err)
                             : wx_buf_puts(out, "null", err);
    }
    return rc ? rc : wx_buf_putc(out, '}', err);
}

static int send_reply(int out_fd, wx_buf *out, const json_t *id,
                      const wx__rpc_reply *r, wx_error *err)
{
    int rc = format_reply(out, id, r, err);

    if (!rc)
        rc = wx__frame_write(out_fd, out->data, out->len, r->att, r->n_att,
                             WX_NO_DEADLINE, err);
    return rc;
}

/* Answer a request we could not read, with id null. */
static int send_parse_error(int out_fd, wx_buf *out, int code,
                            const char *message, wx_error *err)
{
    wx__rpc_reply r = {0};

    r.error_code = code;
    r.error_message = (char *)message;
    return send_reply(out_fd, out, json_null(), &r, err);
}

/* Dispatch one parsed request; sets *stop when the handler asks. */
static int serve_one(json_t *req, const wx__frame *frame, int out_fd,
                     wx_buf *out, wx__rpc_handler handler, void *ctx,
                     void (*release)(void *, wx__rpc_reply *), bool *stop,
                     wx_error *err)
{
    const char *method = json_string_value(json_object_get(req, "method"));
    json_t *id = json_object_get(req, "id");
    json_t *params = json_object_get(req, "params");
    json_t *empty = NULL;
    wx__rpc_reply reply = {0};
    int rc;

    if (!method)
        return id ? send_parse_error(out_fd, out, WX_RPC_INVALID_REQUEST,
                                     "Invalid Request", err)
                  : 0;
    if (!params || json_is_null(params))
        params = empty = json_object();
    rc = handler(ctx, method, params, frame, &reply);
    if (!rc && id)
        rc = send_reply(out_fd, out, id, &reply, err);
    *stop = reply.stop;
    if (release)
        release(ctx, &reply);
    reply_release(&reply);
    json_decref(empty);
    return rc;
}

int wx__rpc_serve(int in_fd, int out_fd, size_t max_frame,
                  wx__rpc_handler handler, void *ctx,
                  void (*release)(void *ctx, wx__rpc_reply *reply),
                  wx_error *err)
{
    wx__frame_reader reader;
    wx__frame frame;
    wx_buf out = WX_BUF_INIT(max_frame);
    bool stop = false;
    int rc = wx__frame_reader_init(&reader, in_fd, max_frame, err);

    wx__frame_init(&frame, max_frame);
    while (!rc && !stop) {
        bool clean_eof = false;
        json_t *req = NULL;

        rc = wx__frame_read(&reader, &frame, WX_NO_DEADLINE, &clean_eof, err);
        if (rc == WX_ECRASHED && clean_eof) {
            rc = 0;
            break;
        }
        if (rc)
            break;
        if (wx_json_parse(frame.body.data, frame.body.len, &req, err) != 0 ||
            !json_is_object(req))
            rc = send_parse_error(out_fd, &out, WX_RPC_PARSE_ERROR,
                                  "Invalid JSON", err);
        else
            rc = serve_one(req, &frame, out_fd, &out, handler, ctx, release,
                           &stop, err);
        json_decref(req);
    }
    wx_buf_release(&out);
    wx__frame_release(&frame);
    wx__frame_reader_release(&reader);
    return rc;
}
