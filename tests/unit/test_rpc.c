/* JSON-RPC over frames: the client call and the runner's server loop. */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

#include "clock.h"
#include "frame.h"
#include "rpc.h"
#include "wire.h"

/* ---- a server thread running wx__rpc_serve with a test handler ---- */

typedef struct server {
    int req[2];   /* client -> server */
    int rep[2];   /* server -> client */
    pthread_t thread;
    int rc;
    wx_error err;
    int handled;  /* requests the handler saw */
    int notes;    /* "note" requests (sent as notifications) */
    int released;
} server;

static int handle(void *ctx, const char *method, json_t *params,
                  const wx__frame *frame, wx__rpc_reply *reply)
{
    server *s = ctx;
    static struct iovec att[WX_FRAME_ATT_MAX];

    s->handled++;
    if (strcmp(method, "echo") == 0) {
        reply->result = json_incref(params);
    } else if (strcmp(method, "atts") == 0) {
        /* The request's attachments, back in reverse order. */
        for (size_t i = 0; i < frame->n_att; i++) {
            size_t j = frame->n_att - 1 - i;

            att[i] = (struct iovec){frame->att.data + frame->att_off[j],
                                    frame->att_off[j + 1] -
                                        frame->att_off[j]};
        }
        reply->att = att;
        reply->n_att = frame->n_att;
        reply->result = json_pack("{s:I}", "n", (json_int_t)frame->n_att);
    } else if (strcmp(method, "note") == 0) {
        s->notes++;
        reply->result = json_true();
    } else if (strcmp(method, "model_error") == 0 ||
               strcmp(method, "oom") == 0) {
        reply->error_code = WX_RPC_MODEL_ERROR;
        reply->error_message = strdup("alpha must be positive");
        reply->error_data = json_pack(
            "{s:s,s:s,s:s}", "type",
            strcmp(method, "oom") == 0 ? "MemoryError" : "ValueError",
            "message", "alpha must be positive", "traceback",
            "Traceback (most recent call last): ...");
    } else if (strcmp(method, "agg_error") == 0) {
        reply->error_code = WX_RPC_AGGREGATION_ERROR;
        reply->error_message = strdup("division by zero");
    } else if (strcmp(method, "internal") == 0) {
        reply->error_code = WX_RPC_INTERNAL_ERROR;
        reply->error_message = strdup("Internal error");
        reply->error_data = json_string("boom");
    } else if (strcmp(method, "stop") == 0) {
        reply->result = json_pack("{s:b}", "ok", 1);
        reply->stop = true;
    } else if (strcmp(method, "die") == 0) {
        return WX_EINTERNAL;
    } else {
        char message[128];

        snprintf(message, sizeof(message), "Method not found: %s", method);
        reply->error_code = WX_RPC_METHOD_NOT_FOUND;
        reply->error_message = strdup(message);
    }
    return 0;
}

static void release(void *ctx, wx__rpc_reply *reply)
{
    server *s = ctx;

    (void)reply;
    s->released++;
}

static void *serve(void *arg)
{
    server *s = arg;

    s->rc = wx__rpc_serve(s->req[0], s->rep[1], 64u << 20, handle, s,
                          release, &s->err);
    close(s->rep[1]);
    return NULL;
}

/* Start a server; the client ends are non-blocking (deadlines). */
static void server_start(server *s)
{
    memset(s, 0, sizeof(*s));
    assert_int_equal(pipe2(s->req, O_CLOEXEC), 0);
    assert_int_equal(pipe2(s->rep, O_CLOEXEC), 0);
    fcntl(s->req[1], F_SETFL, O_NONBLOCK);
    fcntl(s->rep[0], F_SETFL, O_NONBLOCK);
    assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

/* Close the client's end and wait for the loop to end; its status. */
static int server_stop(server *s)
{
    close(s->req[1]);
    pthread_join(s->thread, NULL);
    close(s->req[0]);
    close(s->rep[0]);
    s->req[1] = -1;
    return s->rc;
}

static int setup(void **state)
{
    server *s = malloc(sizeof(*s));

    server_start(s);
    *state = s;
    return 0;
}

static int teardown(void **state)
{
    server *s = *state;

    if (s->req[1] >= 0)
        server_stop(s);
    free(s);
    return 0;
}

static void conn_init(wx__rpc_conn *c, const server *s)
{
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx__rpc_conn_init(c, s->req[1], s->rep[0], 64u << 20, &err),
              &err);
}

static int call(wx__rpc_conn *c, const char *method, const char *params,
                json_t **result, wx_error *err)
{
    json_t *p = tu_json(params);
    int rc = wx__rpc_call(c, method, p, NULL, 0, wx__deadline_after(10),
                          result, err);

    json_decref(p);
    return rc;
}

/* True when `fd` has bytes (or end of file) to read right now. */
static bool readable(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};

    return poll(&p, 1, 50) == 1;
}

static void test_call_results_and_ids(void **state)
{
    server *s = *state;
    wx__rpc_conn c;
    wx_error err = WX_ERROR_INIT;
    json_t *result = NULL, *expected;

    conn_init(&c, s);
    for (int i = 0; i < 3; i++) {
        assert_ok(call(&c, "echo",
                       "{\"a\":[1,2.5,\"x\"],\"b\":{\"c\":null},\"u\":"
                       "\"caf\\u00e9\"}",
                       &result, &err),
                  &err);
        expected = tu_json("{\"a\":[1,2.5,\"x\"],\"b\":{\"c\":null},\"u\":"
                           "\"caf\\u00e9\"}");
        assert_true(json_equal(result, expected));
        json_decref(expected);
        json_decref(result);
    }
    /* Ids count from 1: three calls so far. */
    assert_int_equal(c.next_id, 4);
    assert_ok(call(&c, "echo", "{}", &result, &err), &err);
    assert_true(json_is_object(result) && json_object_size(result) == 0);
    json_decref(result);
    assert_int_equal(s->handled, 4);
    assert_false(readable(s->rep[0]));
    wx__rpc_conn_release(&c);
    assert_int_equal(server_stop(s), 0);
    /* Released after the reply went out: counted once the loop ended. */
    assert_int_equal(s->released, 4);
}

static void test_call_with_attachments(void **state)
{
    server *s = *state;
    wx__rpc_conn c;
    wx_error err = WX_ERROR_INIT;
    json_t *result = NULL, *params = json_object();
    size_t big_len = 70000, len = 0;
    uint8_t *big = malloc(big_len);
    const uint8_t *got;
    struct iovec att[3];

    for (size_t i = 0; i < big_len; i++)
        big[i] = (uint8_t)(i * 7);
    att[0] = (struct iovec){(void *)"abc", 3};
    att[1] = (struct iovec){(void *)"", 0};
    att[2] = (struct iovec){big, big_len};
    conn_init(&c, s);
    assert_ok(wx__rpc_call(&c, "atts", params, att, 3, wx__deadline_after(10),
                           &result, &err),
              &err);
    assert_int_equal(json_integer_value(json_object_get(result, "n")), 3);
    got = wx__rpc_attachment(&c, 0, &len);
    assert_non_null(got);
    assert_int_equal(len, big_len);
    assert_memory_equal(got, big, big_len);
    got = wx__rpc_attachment(&c, 1, &len);
    assert_non_null(got);
    assert_int_equal(len, 0);
    got = wx__rpc_attachment(&c, 2, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(got, "abc", 3);
    assert_null(wx__rpc_attachment(&c, 3, &len));
    json_decref(result);
    /* The next reply has none. */
    assert_ok(call(&c, "echo", "{}", &result, &err), &err);
    assert_null(wx__rpc_attachment(&c, 0, &len));
    json_decref(result);
    json_decref(params);
    free(big);
    wx__rpc_conn_release(&c);
}

static void test_error_objects(void **state)
{
    server *s = *state;
    wx__rpc_conn c;
    wx_error err = WX_ERROR_INIT;
    json_t *result = NULL;

    conn_init(&c, s);
    /* -32601: a protocol error, with the runner's message. */
    assert_fails(call(&c, "frobnicate", "{}", &result, &err), WX_EPROTO,
                 &err, "JSON-RPC error -32601: Method not found: frobnicate");
    assert_null(result);
    /* -32603 with string data: the data is quoted. */
    assert_fails(call(&c, "internal", "{}", &result, &err), WX_EPROTO, &err,
                 "-32603: Internal error: boom");
    assert_null(result);
    /* -32000: a model error, "Type: message", data handed back. */
    assert_fails(call(&c, "model_error", "{}", &result, &err), WX_EMODEL,
                 &err, "ValueError: alpha must be positive");
    assert_non_null(result);
    assert_string_equal(json_string_value(json_object_get(result,
                                                          "traceback")),
                        "Traceback (most recent call last): ...");
    json_decref(result);
    /* data.type MemoryError: out of memory. */
    assert_fails(call(&c, "oom", "{}", &result, &err), WX_EOOM, &err,
                 "MemoryError: alpha must be positive");
    json_decref(result);
    /* -32001 without data: the message alone. */
    assert_fails(call(&c, "agg_error", "{}", &result, &err), WX_EMODEL, &err,
                 "division by zero");
    assert_null(result);
    /* The connection is still in step after errors. */
    assert_ok(call(&c, "echo", "[7]", &result, &err), &err);
    assert_int_equal(json_integer_value(json_array_get(result, 0)), 7);
    json_decref(result);
    wx__rpc_conn_release(&c);
}

/* Write a raw frame to the server. */
static void send_raw(const server *s, const char *body)
{
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx__frame_write(s->req[1], body, strlen(body), NULL, 0,
                              wx__deadline_after(5), &err),
              &err);
}

/* Read one raw frame from the server and parse its body. */
static json_t *read_raw(const server *s)
{
    wx__frame_reader r;
    wx__frame f;
    wx_error err = WX_ERROR_INIT;
    bool clean_eof;
    json_t *v;

    assert_ok(wx__frame_reader_init(&r, s->rep[0], 1u << 20, &err), &err);
    wx__frame_init(&f, 1u << 20);
    assert_ok(wx__frame_read(&r, &f, wx__deadline_after(5), &clean_eof,
                             &err),
              &err);
    /* One frame at a time: nothing read ahead past it. */
    assert_int_equal(r.ahead_pos, r.ahead_len);
    v = tu_json(f.body.data);
    wx__frame_release(&f);
    wx__frame_reader_release(&r);
    return v;
}

static void test_notifications_get_no_reply(void **state)
{
    server *s = *state;
    wx__rpc_conn c;
    wx_error err = WX_ERROR_INIT;
    json_t *result = NULL;

    send_raw(s, "{\"jsonrpc\":\"2.0\",\"method\":\"note\",\"params\":{}}");
    send_raw(s, "{\"jsonrpc\":\"2.0\",\"method\":\"note\"}");
    /* An unknown method or an error as a notification: still silent. */
    send_raw(s, "{\"jsonrpc\":\"2.0\",\"method\":\"nosuch\",\"params\":{}}");
    send_raw(s, "{\"jsonrpc\":\"2.0\",\"method\":\"model_error\"}");
    /* If any had been answered, this call would read that answer. */
    conn_init(&c, s);
    assert_ok(call(&c, "echo", "{\"k\":1}", &result, &err), &err);
    assert_int_equal(json_integer_value(json_object_get(result, "k")), 1);
    json_decref(result);
    assert_false(readable(s->rep[0]));
    assert_int_equal(s->notes, 2);
    assert_int_equal(s->handled, 5);
    wx__rpc_conn_release(&c);
}

static void test_invalid_requests_are_answered_with_id_null(void **state)
{
    server *s = *state;
    json_t *reply, *expected;
    json_t *result = NULL;
    wx_error err = WX_ERROR_INIT;
    char *text;

    send_raw(s, "{not json");
    reply = read_raw(s);
    expected = tu_json("{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":"
                       "{\"code\":-32700,\"message\":\"Invalid JSON\"}}");
    assert_true(json_equal(reply, expected));
    json_decref(expected);
    /* That reply, seen by a client, names the worker's complaint. */
    text = json_dumps(reply, JSON_COMPACT);
    assert_fails(wx__rpc_parse_reply(text, strlen(text), 1, &result, &err),
                 WX_EPROTO, &err, "could not read a request: Invalid JSON");
    free(text);
    json_decref(reply);
    /* JSON that is not an object: also a parse error. */
    send_raw(s, "[1,2]");
    reply = read_raw(s);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(reply, "error"), "code")),
                     WX_RPC_PARSE_ERROR);
    assert_true(json_is_null(json_object_get(reply, "id")));
    json_decref(reply);
    /* An object without a method, with an id: invalid request. */
    send_raw(s, "{\"jsonrpc\":\"2.0\",\"id\":5,\"params\":{}}");
    reply = read_raw(s);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(reply, "error"), "code")),
                     WX_RPC_INVALID_REQUEST);
    json_decref(reply);
    /* ...and without an id: nothing. */
    send_raw(s, "{\"jsonrpc\":\"2.0\",\"params\":{}}");
    assert_false(readable(s->rep[0]));
    assert_int_equal(s->handled, 0);
    /* The loop goes on: a string id is echoed as it came. */
    send_raw(s, "{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"method\":\"echo\","
                "\"params\":{\"x\":1}}");
    reply = read_raw(s);
    expected = tu_json("{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"result\":"
                       "{\"x\":1}}");
    assert_true(json_equal(reply, expected));
    json_decref(expected);
    json_decref(reply);
}

static void test_server_loop_ends(void **state)
{
    server *s = *state;
    wx__rpc_conn c;
    wx_error err = WX_ERROR_INIT;
    json_t *result = NULL;
    bool clean_eof;

    /* A handler's stop: the reply is sent, then the loop returns 0. */
    conn_init(&c, s);
    assert_ok(call(&c, "stop", "{}", &result, &err), &err);
    assert_true(json_is_true(json_object_get(result, "ok")));
    json_decref(result);
    pthread_join(s->thread, NULL);
    assert_int_equal(s->rc, 0);
    /* ...and its stdout closes: the next read sees a clean end. */
    assert_fails(wx__frame_read(&c.reader, &c.frame, wx__deadline_after(5),
                                &clean_eof, &err),
                 WX_ECRASHED, &err, "stream closed");
    assert_true(clean_eof);
    wx__rpc_conn_release(&c);
    close(s->req[0]);
    close(s->req[1]);
    close(s->rep[0]);
    s->req[1] = -1;

    /* Garbage on its input: WX_EPROTO. */
    server_start(s);
    assert_int_equal(write(s->req[1], "hello\n", 6), 6);
    pthread_join(s->thread, NULL);
    assert_fails(s->rc, WX_EPROTO, &s->err, "bytes outside a frame");
    close(s->req[0]);
    close(s->req[1]);
    close(s->rep[0]);

    /* A handler's failure ends the loop with its status. */
    server_start(s);
    send_raw(s, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"die\"}");
    pthread_join(s->thread, NULL);
    assert_int_equal(s->rc, WX_EINTERNAL);
    close(s->req[0]);
    close(s->req[1]);
    close(s->rep[0]);

    /* End of input inside a frame: not a clean end. */
    server_start(s);
    assert_int_equal(write(s->req[1], "Content-Length: 9\r\n\r\n{", 23), 23);
    assert_int_equal(server_stop(s), WX_ECRASHED);
    s->req[1] = -1;
}

/* Write `body` to `fd` as a frame, by hand. */
static void write_frame_text(int fd, const char *body)
{
    char text[1024];
    int n = snprintf(text, sizeof(text), "Content-Length: %zu\r\n\r\n%s",
                     strlen(body), body);

    assert_int_equal(write(fd, text, (size_t)n), n);
}

static void test_client_failures(void **state)
{
    int req[2], rep[2];
    wx__rpc_conn c;
    wx_error err = WX_ERROR_INIT;
    json_t *result = (json_t *)1, *params = json_object();
    int64_t start;

    assert_int_equal(pipe2(req, O_CLOEXEC | O_NONBLOCK), 0);
    assert_int_equal(pipe2(rep, O_CLOEXEC | O_NONBLOCK), 0);
    assert_ok(wx__rpc_conn_init(&c, req[1], rep[0], 1u << 20, &err), &err);
    /* A reply with another id. */
    write_frame_text(rep[1], "{\"jsonrpc\":\"2.0\",\"id\":99,\"result\":1}");
    assert_fails(wx__rpc_call(&c, "ready", params, NULL, 0,
                              wx__deadline_after(5), &result, &err),
                 WX_EPROTO, &err, "does not answer request 1");
    assert_null(result);
    /* No reply: the deadline. */
    start = wx__now_ms();
    assert_fails(wx__rpc_call(&c, "ready", params, NULL, 0, start + 200,
                              &result, &err),
                 WX_ETIMEDOUT, &err, "deadline");
    assert_true(wx__now_ms() - start >= 190);
    assert_true(wx__now_ms() - start < 2000);
    /* The worker's stdout closes: crashed. */
    close(rep[1]);
    assert_fails(wx__rpc_call(&c, "ready", params, NULL, 0,
                              wx__deadline_after(5), &result, &err),
                 WX_ECRASHED, &err, "stream closed");
    /* Its stdin closes: crashed on the write, without SIGPIPE. */
    close(req[0]);
    assert_fails(wx__rpc_call(&c, "ready", params, NULL, 0,
                              wx__deadline_after(5), &result, &err),
                 WX_ECRASHED, &err, "closed");
    wx__rpc_conn_release(&c);
    close(req[1]);
    close(rep[0]);
    json_decref(params);
}

static int parse_reply(const char *body, int64_t id, json_t **result,
                       wx_error *err)
{
    return wx__rpc_parse_reply(body, strlen(body), id, result, err);
}

static void test_parse_reply(void **state)
{
    static const struct {
        const char *body;
        const char *needle;
    } bad[] = {
        {"{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":1}",
         "does not answer request 1"},
        {"{\"jsonrpc\":\"2.0\",\"id\":\"1\",\"result\":1}", "does not answer"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1.0,\"result\":1}", "does not answer"},
        {"{\"jsonrpc\":\"2.0\",\"result\":1}", "does not answer"},
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":1}", "does not answer"},
        {"{\"jsonrpc\":\"2.0\",\"id\":18446744073709551617,\"result\":1}",
         "does not answer"},
        {"{\"id\":1,\"result\":1}", "\"jsonrpc\": \"2.0\""},
        {"{\"jsonrpc\":\"1.0\",\"id\":1,\"result\":1}", "\"jsonrpc\""},
        {"{\"jsonrpc\":2.0,\"id\":1,\"result\":1}", "\"jsonrpc\""},
        {"[1]", "not a JSON object"},
        {"\"x\"", "not a JSON object"},
        {"{not json", "not valid JSON"},
        {"", "not valid JSON"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1} x", "not valid JSON"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":\"boom\"}",
         "malformed error"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":\"x\","
         "\"message\":\"m\"}}",
         "malformed JSON-RPC error"},
        {"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32000}}",
         "malformed JSON-RPC error"},
        {"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,"
         "\"message\":\"Invalid JSON: x\"}}",
         "could not read a request: Invalid JSON: x"},
    };
    wx_error err = WX_ERROR_INIT;
    json_t *result;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        result = (json_t *)1;
        assert_fails(parse_reply(bad[i].body, 1, &result, &err), WX_EPROTO,
                     &err, bad[i].needle);
        assert_null(result);
    }
    assert_ok(parse_reply("{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":"
                          "{\"ok\":true}}",
                          7, &result, &err),
              &err);
    assert_true(json_is_true(json_object_get(result, "ok")));
    json_decref(result);
    /* No result: null.  "error": null is no error. */
    assert_ok(parse_reply("{\"jsonrpc\":\"2.0\",\"id\":1}", 1, &result,
                          &err),
              &err);
    assert_true(json_is_null(result));
    json_decref(result);
    assert_ok(parse_reply("{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":null,"
                          "\"result\":[1]}",
                          1, &result, &err),
              &err);
    assert_true(json_is_array(result));
    json_decref(result);
    /* NaN and Infinity from a Python runner read as null. */
    assert_ok(parse_reply("{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":"
                          "{\"loss\":NaN,\"d\":[Infinity,-Infinity]}}",
                          1, &result, &err),
              &err);
    assert_true(json_is_null(json_object_get(result, "loss")));
    assert_true(json_is_null(json_array_get(json_object_get(result, "d"),
                                            1)));
    json_decref(result);
    /* The original's error reply with string data. */
    assert_fails(parse_reply("{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{"
                             "\"code\":-32603,\"message\":\"Internal "
                             "error\",\"data\":\"boom\"}}",
                             3, &result, &err),
                 WX_EPROTO, &err,
                 "JSON-RPC error -32603: Internal error: boom");
    assert_fails(parse_reply("{\"jsonrpc\":\"2.0\",\"id\":3,\"error\":{"
                             "\"code\":-32000,\"message\":\"m\",\"data\":{"
                             "\"type\":\"MemoryError\"}}}",
                             3, &result, &err),
                 WX_EOOM, &err, "MemoryError: m");
    json_decref(result);
}

/*
 * The first two frames of contracts.json "jsonrpc_parent_frames" (the
 * original manager's ready and execute, ids 1 and 2): the stream, each
 * frame's length and the execute body's.
 */
static const char *parent_frames(size_t *first, size_t *second,
                                 size_t *execute_body)
{
    json_t *vec = json_object_get(tu_vectors(), "jsonrpc_parent_frames");
    const char *stream = json_string_value(json_object_get(vec,
                                                           "stream_utf8"));
    static wx__frame_header h;
    wx_error err = WX_ERROR_INIT;
    size_t used;

    assert_non_null(stream);
    assert_ok(wx__frame_parse_header(stream, strlen(stream), 1u << 20, &h,
                                     &used, &err),
              &err);
    *first = used + h.content_length;
    assert_ok(wx__frame_parse_header(stream + *first,
                                     strlen(stream) - *first, 1u << 20, &h,
                                     &used, &err),
              &err);
    *second = used + h.content_length;
    *execute_body = h.content_length;
    return stream;
}

/* The text of the execute params of those frames. */
static void vector_execute_params(wx_buf *text)
{
    json_t *params = tu_json("{\"alpha\": 1.0, \"name\": \"caf\xc3\xa9\"}");
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx__wire_execute_params(text, "simulations.test/baseline",
                                      params, 42, &err),
              &err);
    json_decref(params);
}

/*
 * The request bytes equal the original manager's: the first two frames
 * of contracts.json "jsonrpc_parent_frames" (ids 1 and 2).
 */
static void test_request_bytes_match_the_original(void **state)
{
    size_t first, second, body;
    const char *stream = parent_frames(&first, &second, &body);
    int req[2], rep[2];
    wx__rpc_conn c;
    wx_error err = WX_ERROR_INIT;
    json_t *result = NULL, *empty = json_object(), *exec;
    wx_buf text = WX_BUF_INIT(1u << 20);
    char got[1024];
    ssize_t n;

    assert_int_equal(pipe2(req, O_CLOEXEC | O_NONBLOCK), 0);
    assert_int_equal(pipe2(rep, O_CLOEXEC | O_NONBLOCK), 0);
    write_frame_text(rep[1], "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}");
    write_frame_text(rep[1], "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}");
    assert_ok(wx__rpc_conn_init(&c, req[1], rep[0], 1u << 20, &err), &err);
    assert_ok(wx__rpc_call(&c, "ready", empty, NULL, 0, wx__deadline_after(5),
                           &result, &err),
              &err);
    json_decref(result);
    vector_execute_params(&text);
    exec = tu_json(text.data);
    assert_ok(wx__rpc_call(&c, "execute", exec, NULL, 0,
                           wx__deadline_after(5), &result, &err),
              &err);
    json_decref(result);
    n = read(req[0], got, sizeof(got));
    assert_int_equal(n, (ssize_t)(first + second));
    assert_memory_equal(got, stream, first + second);
    wx__rpc_conn_release(&c);
    wx_buf_release(&text);
    json_decref(exec);
    json_decref(empty);
    close(req[0]);
    close(req[1]);
    close(rep[0]);
    close(rep[1]);
}

/*
 * Queued requests go out in one write, byte for byte as sent one by one;
 * one that does not fit the room is refused without taking an id, and
 * the replies are read in order.
 */
static void test_queued_requests(void **state)
{
    size_t first, second, room;
    const char *stream = parent_frames(&first, &second, &room);
    int req[2], rep[2];
    int64_t ids[2];
    wx__rpc_conn c;
    wx_error err = WX_ERROR_INIT;
    json_t *result = NULL, *empty = json_object();
    wx_buf text = WX_BUF_INIT(1u << 20);
    wx__rpc_params exec;
    char got[2048];

    assert_int_equal(pipe2(req, O_CLOEXEC | O_NONBLOCK), 0);
    assert_int_equal(pipe2(rep, O_CLOEXEC | O_NONBLOCK), 0);
    assert_ok(wx__rpc_conn_init(&c, req[1], rep[0], 1u << 20, &err), &err);
    vector_execute_params(&text);
    exec = (wx__rpc_params){.text = text.data, .len = text.len};
    /* room: the execute body fits exactly */
    assert_ok(wx__rpc_queue(&c, "ready", &(wx__rpc_params){.json = empty},
                            NULL, &ids[0], &err),
              &err);
    assert_fails(wx__rpc_queue(&c, "execute", &exec, &(size_t){room - 1},
                               &ids[1], &err),
                 WX_ETOOBIG, &err, "request");
    assert_ok(wx__rpc_queue(&c, "execute", &exec, &room, &ids[1], &err),
              &err);
    assert_int_equal(room, 0);
    assert_false(readable(req[0])); /* nothing written yet */
    assert_ok(wx__rpc_flush(&c, wx__deadline_after(5), &err), &err);
    assert_int_equal(read(req[0], got, sizeof(got)),
                     (ssize_t)(first + second));
    assert_memory_equal(got, stream, first + second);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[1], 2);

    write_frame_text(rep[1], "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":1}");
    write_frame_text(rep[1], "{\"jsonrpc\":\"2.0\",\"id\":2,\"result\":2}");
    for (int i = 0; i < 2; i++) {
        assert_ok(wx__rpc_receive(&c, ids[i], wx__deadline_after(5), &result,
                                  &err),
                  &err);
        assert_int_equal(json_integer_value(result), i + 1);
        json_decref(result);
    }
    wx__rpc_conn_release(&c);
    wx_buf_release(&text);
    json_decref(empty);
    close(req[0]);
    close(req[1]);
    close(rep[0]);
    close(rep[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_call_results_and_ids, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_call_with_attachments, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_error_objects, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notifications_get_no_reply,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_invalid_requests_are_answered_with_id_null, setup,
            teardown),
        cmocka_unit_test_setup_teardown(test_server_loop_ends, setup,
                                        teardown),
        cmocka_unit_test(test_client_failures),
        cmocka_unit_test(test_parse_reply),
        cmocka_unit_test(test_request_bytes_match_the_original),
        cmocka_unit_test(test_queued_requests),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
