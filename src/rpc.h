/*
 * JSON-RPC 2.0 over frames: the manager's client side (one connection per
 * worker) and the runner's server loop (docs/protocol.md).
 *
 * A connection belongs to one thread at a time (the pool's lease).
 * Received attachments live in the connection's frame and stay valid
 * until the next reply is read.
 */
#ifndef WX_RPC_H
#define WX_RPC_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <jansson.h>

#include <warmexec/buf.h>
#include <warmexec/error.h>

#include "frame.h"

/* JSON-RPC error codes. */
enum {
    WX_RPC_PARSE_ERROR = -32700,
    WX_RPC_INVALID_REQUEST = -32600,
    WX_RPC_METHOD_NOT_FOUND = -32601,
    WX_RPC_INVALID_PARAMS = -32602,
    WX_RPC_INTERNAL_ERROR = -32603,
    WX_RPC_MODEL_ERROR = -32000,
    WX_RPC_AGGREGATION_ERROR = -32001
};

typedef struct wx__rpc_conn {
    int to_fd;               /* requests are written here */
    wx__frame_reader reader; /* replies are read from here */
    wx__frame frame;         /* the last reply */
    wx_buf out;              /* scratch for request bodies */
    wx_buf queued;           /* framed requests not written yet */
    int64_t next_id;
} wx__rpc_conn;

int wx__rpc_conn_init(wx__rpc_conn *c, int to_fd, int from_fd,
                      size_t max_frame, wx_error *err);
void wx__rpc_conn_release(wx__rpc_conn *c);

/*
 * Send `method` with `params` (borrowed; written compact and ASCII-escaped
 * in insertion order) and `n_att` attachments, and wait until `deadline`
 * for the reply with the same id.  On success `*result` (caller's
 * reference) is the reply's result (null when absent).
 *
 * Failures: WX_ETIMEDOUT; WX_ECRASHED (the worker closed its stdout or
 * stdin); WX_EPROTO (malformed frame or reply, wrong id, or a JSON-RPC
 * error other than a model error); WX_EMODEL (JSON-RPC error -32000 or
 * -32001: the message and `data` are in err; `*result` then holds the
 * error's `data` or NULL) or WX_EOOM when `data.type` is "MemoryError".
 */
int wx__rpc_call(wx__rpc_conn *c, const char *method, const json_t *params,
                 const struct iovec *att, size_t n_att, int64_t deadline,
                 json_t **result, wx_error *err);

/*
 * Work to do while a worker computes its reply: run once the request is
 * written, before waiting for the answer, so that it costs no latency.
 */
typedef struct wx__meanwhile {
    void (*fn)(void *ctx);
    void *ctx;
} wx__meanwhile;

/*
 * A request's params: `len` bytes of JSON text written as they are when
 * `text` is set (built without jansson values, for big requests), else
 * the value `json`.
 */
typedef struct wx__rpc_params {
    const json_t *json;
    const char *text;
    size_t len;
} wx__rpc_params;

/*
 * The two halves of wx__rpc_call: wx__rpc_send() writes a request and
 * gives its id; wx__rpc_receive() waits until `deadline` for the next
 * reply, which must answer `id`.  Failures as wx__rpc_call().
 */
int wx__rpc_send(wx__rpc_conn *c, const char *method,
                 const wx__rpc_params *params, const struct iovec *att,
                 size_t n_att, int64_t deadline, int64_t *id, wx_error *err);
int wx__rpc_receive(wx__rpc_conn *c, int64_t id, int64_t deadline,
                    json_t **result, wx_error *err);

/*
 * Several requests in flight, written at once (their replies come in
 * order, each read with wx__rpc_receive()).  wx__rpc_queue() frames a
 * request without attachments and gives its id; with `room` (may be
 * NULL) a body longer than *room bytes is WX_ETOOBIG (nothing queued)
 * and a body queued is taken from *room.  wx__rpc_flush() writes what is
 * queued, by `deadline`.
 */
int wx__rpc_queue(wx__rpc_conn *c, const char *method,
                  const wx__rpc_params *params, size_t *room, int64_t *id,
                  wx_error *err);
int wx__rpc_flush(wx__rpc_conn *c, int64_t deadline, wx_error *err);

/*
 * Check a reply body for request `id` (the pure part of wx__rpc_call,
 * used by the fuzz target).  Same results as wx__rpc_call.
 */
int wx__rpc_parse_reply(const char *body, size_t len, int64_t id,
                        json_t **result, wx_error *err);

/* The bytes of attachment `i` of the last reply; NULL when out of range. */
const uint8_t *wx__rpc_attachment(const wx__rpc_conn *c, size_t i,
                                  size_t *len);

/* ---- server side (runners) ---- */

/* What a request handler produces. */
typedef struct wx__rpc_reply {
    json_t *result;      /* owned; the result on success */
    const wx_buf *result_text; /* borrowed; instead of `result`: the
                                  result already written as JSON */
    int error_code;      /* 0, or a JSON-RPC error code */
    char *error_message; /* owned; with error_code */
    json_t *error_data;  /* owned or NULL */
    struct iovec *att;   /* attachments of the reply (borrowed by the loop) */
    size_t n_att;
    bool stop;           /* end the loop after this reply (shutdown) */
} wx__rpc_reply;

/*
 * Handle one request.  `params` and the request's attachments (`frame`)
 * are borrowed.  Fill `reply`; return 0, or non-zero to end the loop
 * with that status.
 */
typedef int (*wx__rpc_handler)(void *ctx, const char *method,
                               json_t *params, const wx__frame *frame,
                               wx__rpc_reply *reply);

/*
 * Serve requests from `in_fd`, replying on `out_fd`, until end of input
 * (returns 0), a handler asks to stop (0), or a framing error that cannot
 * be resynchronised (WX_EPROTO).  A body that is not valid JSON is
 * answered with -32700 and id null; a request without an id gets no
 * reply.  After each reply `release` (may be NULL) is called, for the
 * handler's own state (attachments, say); then the loop frees the
 * reply's result, error message (wx_free) and error data.
 */
int wx__rpc_serve(int in_fd, int out_fd, size_t max_frame,
                  wx__rpc_handler handler, void *ctx,
                  void (*release)(void *ctx, wx__rpc_reply *reply),
                  wx_error *err);

#endif
