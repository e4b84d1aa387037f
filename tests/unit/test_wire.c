/*
 * The execute/aggregate messages of the worker protocol (src/wire.c):
 * execute params byte for byte, execute results from base64 and from
 * attachments (a real round trip through tests/helpers/fake_worker.c and
 * frames built by hand), the original's in-band errors, aggregate params
 * in both modes (the seed's serialize_sim_returns, without its bugs) and
 * aggregate results.
 */
#include "testutil.h"

#include <math.h>
#include <sys/wait.h>
#include <unistd.h>

#include <warmexec/canon.h>

#include "b64.h"
#include "frame.h"
#include "hash.h"
#include "pool.h"
#include "rpc.h"
#include "wire.h"

#ifndef WX_FAKE_WORKER
#error "WX_FAKE_WORKER must name the fake_worker program"
#endif

#define HEX64(c) c c c c c c c c c c c c c c c c
#define DIGEST_W "sha256:" HEX64("9a9a")
#define EMPTY_HEX                                                             \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define ABC_HEX                                                               \
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

/* ---- helpers ---- */

/* Standard base64 of `len` bytes (free with free). */
static char *b64(const void *data, size_t len)
{
    char *out = malloc(wx__b64_encoded_len(len) + 1);

    wx__b64_encode(data, len, out);
    out[wx__b64_encoded_len(len)] = '\0';
    return out;
}

static void sha_hex(const void *data, size_t n, char out[65])
{
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx__sha256_hex(data, n, out, &err), &err);
}

/* Compact wire text of `v` (ASCII-escaped, insertion order); free(). */
static char *wire_text(const json_t *v)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(1u << 30);

    assert_ok(wx_json_write(&b, v, WX_JSON_ENSURE_ASCII, &err), &err);
    return wx_buf_detach(&b, NULL);
}

/* A connection whose last frame carries the given attachments. */
static wx__rpc_conn *conn_with(const char *const *atts, const size_t *lens,
                               size_t n)
{
    wx__rpc_conn *c = calloc(1, sizeof(*c));
    wx_error err = WX_ERROR_INIT;
    size_t off = 0;

    assert_non_null(c);
    wx__frame_init(&c->frame, 1u << 20);
    for (size_t i = 0; i < n; i++) {
        c->frame.att_off[i] = off;
        assert_ok(wx_buf_append(&c->frame.att, atts[i], lens[i], &err),
                  &err);
        off += lens[i];
    }
    c->frame.att_off[n] = off;
    c->frame.n_att = n;
    return c;
}

static void conn_free(wx__rpc_conn *c)
{
    wx__frame_release(&c->frame);
    free(c);
}

static const wx__raw_output *raw_named(const wx__outputs *o,
                                       const char *name)
{
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->items[i].name, name) == 0)
            return &o->items[i];
    fail_msg("no output '%s'", name);
    return NULL;
}

static void assert_raw(const wx__outputs *o, const char *name,
                       const void *data, size_t len)
{
    const wx__raw_output *r = raw_named(o, name);

    assert_int_equal(r->len, len);
    if (len)
        assert_memory_equal(r->data, data, len);
}

/* The result of the last read_text: output names are borrowed from it. */
static json_t *g_result;

/* Read `text` as an execute result over `conn`. */
static int read_text(const char *text, const wx__rpc_conn *conn,
                     wx__outputs *out, wx_error *err)
{
    json_decref(g_result);
    g_result = tu_json(text);
    return wx__wire_read_outputs(g_result, conn, out, err);
}

static void read_text_done(void)
{
    json_decref(g_result);
    g_result = NULL;
}

/* {"error": base64(inner)} */
static char *inband(const char *inner)
{
    char *enc = b64(inner, strlen(inner));
    size_t n = strlen(enc) + 32;
    char *text = malloc(n);

    snprintf(text, n, "{\"error\": \"%s\"}", enc);
    free(enc);
    return text;
}

/* ---- execute params ---- */

/* The text of execute params, checked and given back (the caller's). */
static char *execute_params(const char *entrypoint, const json_t *params,
                            int64_t seed)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(1u << 30);

    assert_ok(wx_buf_puts(&b, "left over", &err), &err); /* reset first */
    assert_ok(wx__wire_execute_params(&b, entrypoint, params, seed, &err),
              &err);
    return wx_buf_detach(&b, NULL);
}

static void test_execute_params_bytes(void **state)
{
    static const char expected[] =
        "{\"entrypoint\":\"simulations.test/baseline\",\"params\":"
        "{\"alpha\":1.0,\"name\":\"caf\\u00e9\"},\"seed\":42}";
    json_t *vec = json_object_get(tu_vectors(), "jsonrpc_parent_frames");
    const char *stream =
        json_string_value(json_object_get(vec, "stream_utf8"));
    json_t *params = tu_json("{\"alpha\": 1.0, \"name\": \"caf\\u00e9\"}");
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(1u << 30);
    char *text;

    (void)state;
    text = execute_params("simulations.test/baseline", params, 42);
    assert_string_equal(text, expected);
    /* The same bytes the original manager wrote (contract vector). */
    assert_non_null(stream);
    assert_non_null(strstr(stream, expected));
    wx_free(text);
    json_decref(params);

    /* Key order entrypoint, params, seed; params in the model's order
     * (Python dict order), not sorted; seeds up to 2^63-1 exactly. */
    params = tu_json("{\"z\": 1, \"a\": \"x\", \"m\": true}");
    text = execute_params("pkg.mod/baseline", params, INT64_MAX);
    assert_string_equal(text, "{\"entrypoint\":\"pkg.mod/baseline\","
                              "\"params\":{\"z\":1,\"a\":\"x\",\"m\":true},"
                              "\"seed\":9223372036854775807}");
    wx_free(text);
    json_decref(params);

    params = json_object();
    text = execute_params("m.x/s", params, 0);
    assert_string_equal(text,
                        "{\"entrypoint\":\"m.x/s\",\"params\":{},\"seed\":0}");
    wx_free(text);

    /* An entrypoint that is not UTF-8 is refused. */
    assert_fails(wx__wire_execute_params(&b, "m.\xff/s", params, 0, &err),
                 WX_EINVAL, &err, "UTF-8");
    wx_buf_release(&b);
    json_decref(params);
}

/* ---- execute results: a real round trip through the fake worker ---- */

typedef struct pool_fx {
    char *home;
    char marker[64];
    const char *argv[12];
    const char *env[2];
    wx_worker_spec spec;
    wx_pool *pool;
} pool_fx;

static int g_seq;

static pool_fx *pool_fx_new(bool compat)
{
    pool_fx *f = calloc(1, sizeof(*f));
    wx_pool_options o = WX_POOL_OPTIONS_INIT;
    wx_error err = WX_ERROR_INIT;
    int argc = 0;

    f->home = tu_tempdir();
    snprintf(f->marker, sizeof(f->marker), "wx-wire-test-%d-%d",
             (int)getpid(), ++g_seq);
    f->argv[argc++] = WX_FAKE_WORKER;
    f->argv[argc++] = "--bundle-digest";
    f->argv[argc++] = "{bundle_digest}";
    f->argv[argc++] = f->marker;
    if (compat)
        f->argv[argc++] = "--compat";
    f->argv[argc] = NULL;
    f->env[0] = "ASAN_OPTIONS=detect_leaks=0";
    f->spec = (wx_worker_spec){DIGEST_W, f->home, "command", f->argv, f->env};
    o.home = f->home;
    o.start_timeout = 10;
    o.task_timeout = 30;
    o.shutdown_grace = 2;
    assert_ok(wx_pool_new(&o, &f->pool, &err), &err);
    return f;
}

static void pool_fx_free(pool_fx *f)
{
    wx_pool_free(f->pool);
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    tu_rmtree(f->home);
    free(f->home);
    free(f);
}

static void check_pattern(const uint8_t *data, size_t len, int64_t seed)
{
    for (size_t i = 0; i < len; i++)
        if (data[i] != (uint8_t)((int64_t)i * 31 + seed))
            fail_msg("byte %zu of %zu is wrong", i, len);
}

static void read_outputs_round_trip(bool compat)
{
    pool_fx *f = pool_fx_new(compat);
    json_t *params = tu_json("{\"bytes\": 70000, \"payload\": \"hello\"}");
    char *text = execute_params("sim.model/baseline", params, 7);
    json_t *call = tu_json(text);
    json_t *result = NULL, *v;
    wx__worker *w = NULL;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;
    wx__outputs out;
    const wx__raw_output *o;
    const uint8_t *att;
    size_t att_len = 0;

    wx__outputs_init(&out, 1u << 30);
    assert_ok(wx__pool_lease(f->pool, &f->spec, &w, &fault, &err), &err);
    assert_int_equal(wx__worker_attachments(w), !compat);
    assert_ok(wx__pool_call(f->pool, w, "execute", call, NULL, 0, &result,
                            &fault, &err),
              &err);
    v = json_object_get(result, "out");
    if (compat) {
        assert_true(json_is_string(v));
    } else {
        assert_int_equal(json_integer_value(json_object_get(v, "$att")), 0);
        assert_int_equal(json_integer_value(json_object_get(
                             json_object_get(result, "payload"), "$att")),
                         1);
    }
    assert_ok(wx__wire_read_outputs(result, wx__worker_conn(w), &out, &err),
              &err);
    assert_int_equal(out.n, 2);
    /* In the runner's order. */
    assert_string_equal(out.items[0].name, "out");
    assert_string_equal(out.items[1].name, "payload");
    o = raw_named(&out, "out");
    assert_int_equal(o->len, 70000);
    check_pattern(o->data, o->len, 7);
    assert_raw(&out, "payload", "hello", 5);
    att = wx__rpc_attachment(wx__worker_conn(w), 0, &att_len);
    if (compat) {
        assert_null(att);
    } else {
        /* Zero copy: the bytes are the attachment in the frame. */
        assert_ptr_equal(o->data, att);
        assert_int_equal(att_len, 70000);
    }
    wx__pool_release(f->pool, w);
    wx__outputs_release(&out);
    json_decref(result);
    json_decref(call);
    json_decref(params);
    wx_free(text);
    wx_fault_release(&fault);
    pool_fx_free(f);
}

static void test_read_outputs_round_trip_attachments(void **state)
{
    (void)state;
    read_outputs_round_trip(false);
}

static void test_read_outputs_round_trip_compat(void **state)
{
    (void)state;
    read_outputs_round_trip(true);
}

/* ---- execute results from frames built here ---- */

static void test_read_outputs_base64_and_attachments(void **state)
{
    static const char *const atts[] = {"abc", "", "\x00\xff\x01"};
    static const size_t lens[] = {3, 0, 3};
    wx__rpc_conn *c = conn_with(atts, lens, 3);
    wx_error err = WX_ERROR_INIT;
    wx__outputs out;

    (void)state;
    wx__outputs_init(&out, 1u << 20);
    assert_ok(read_text("{\"x\": {\"$att\": 0}, \"b\": \"aGVsbG8=\", "
                        "\"y\": {\"$att\": 1}, \"e\": \"\", "
                        "\"z\": {\"$att\": 2}, \"w\": \"AP8B\"}",
                        c, &out, &err),
              &err);
    assert_int_equal(out.n, 6);
    assert_string_equal(out.items[0].name, "x");
    assert_string_equal(out.items[1].name, "b");
    assert_string_equal(out.items[5].name, "w");
    assert_raw(&out, "x", "abc", 3);
    assert_raw(&out, "b", "hello", 5);
    assert_raw(&out, "y", "", 0);
    assert_raw(&out, "e", "", 0);
    assert_raw(&out, "z", "\x00\xff\x01", 3);
    assert_raw(&out, "w", "\x00\xff\x01", 3);
    /* The structure is reused for the next call: old items are gone. */
    assert_ok(read_text("{\"only\": \"b25l\"}", c, &out, &err), &err);
    assert_int_equal(out.n, 1);
    assert_raw(&out, "only", "one", 3);
    /* No outputs at all is not a wire error (the env reports it). */
    assert_ok(read_text("{}", c, &out, &err), &err);
    assert_int_equal(out.n, 0);
    wx__outputs_release(&out);
    read_text_done();
    conn_free(c);
}

static void test_read_outputs_protocol_errors(void **state)
{
    static const struct {
        const char *result;
        const char *needle;
    } cases[] = {
        {"{\"a\": {\"$att\": 1}}", "output 'a' names a missing attachment"},
        {"{\"a\": {\"$att\": 7}}", "missing attachment"},
        {"{\"a\": {\"$att\": -1}}", "missing attachment"},
        {"{\"a\": {\"$att\": 0, \"x\": 1}}", "neither base64 nor"},
        {"{\"a\": {\"$att\": \"0\"}}", "neither base64 nor"},
        {"{\"a\": {}}", "neither base64 nor"},
        {"{\"ok\": \"YQ==\", \"a\": 5}", "output 'a' is neither"},
        {"{\"a\": 1.5}", "neither base64 nor"},
        {"{\"a\": 123456789012345678901234567890}", "neither base64 nor"},
        {"{\"a\": null}", "neither base64 nor"},
        {"{\"a\": true}", "neither base64 nor"},
        {"{\"a\": [\"YQ==\"]}", "neither base64 nor"},
        {"{\"a\": \"!!!!\"}", "output 'a'"},
        {"{\"a\": \"YQ\"}", "output 'a'"},
        {"{\"a\": \"YQ==YQ==\"}", "output 'a'"},
        {"{\"ok\": \"YQ==\", \"a\": \"Y Q==\"}", "output 'a'"},
        {"[]", "not an object"},
        {"\"YQ==\"", "not an object"},
        {"null", "not an object"},
    };
    static const char *const atts[] = {"abc"};
    static const size_t lens[] = {3};
    wx__rpc_conn *c = conn_with(atts, lens, 1);
    wx__outputs out;

    (void)state;
    wx__outputs_init(&out, 1u << 20);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wx_error err = WX_ERROR_INIT;
        int rc = read_text(cases[i].result, c, &out, &err);

        if (rc != WX_EPROTO || !strstr(err.message, cases[i].needle))
            fail_msg("%s: got %s '%s', expected EPROTO '%s'", cases[i].result,
                     wx_err_name(rc), err.message, cases[i].needle);
    }
    wx__outputs_release(&out);
    read_text_done();
    conn_free(c);
}

static void test_read_outputs_inband_error(void **state)
{
    wx__rpc_conn *c = conn_with(NULL, NULL, 0);
    wx_error err = WX_ERROR_INIT;
    wx__outputs out;
    char *text;

    (void)state;
    wx__outputs_init(&out, 1u << 20);
    /* The original runner's failure, byte for byte (spec 2.6). */
    text = inband("{\"error\": \"alpha must be positive\", \"type\": "
                  "\"ValueError\", \"entrypoint\": \"pkg.mod/baseline\"}");
    assert_fails(read_text(text, c, &out, &err), WX_EMODEL, &err,
                 "ValueError: alpha must be positive");
    assert_string_equal(err.message, "ValueError: alpha must be positive");
    assert_int_equal(out.n, 0);
    free(text);
    /* MemoryError is OutOfMemory. */
    text = inband("{\"error\": \"\", \"type\": \"MemoryError\", "
                  "\"entrypoint\": \"pkg.mod/baseline\"}");
    assert_fails(read_text(text, c, &out, &err), WX_EOOM, &err,
                 "MemoryError");
    free(text);
    /* No type: still a model error with the message. */
    text = inband("{\"error\": \"boom\"}");
    assert_fails(read_text(text, c, &out, &err), WX_EMODEL, &err, "boom");
    free(text);
    wx__outputs_release(&out);
    read_text_done();
    conn_free(c);
}

/* A lone "error" member that is not the original's envelope is an output. */
static void test_read_outputs_lone_error_output(void **state)
{
    static const char *const atts[] = {"{\"error\": \"x\"}"};
    static const size_t lens[] = {14};
    static const char *const not_envelopes[] = {
        "hello",                       /* not JSON */
        "{\"type\": \"ValueError\"}",  /* no "error" */
        "{\"error\": 5, \"type\": \"T\"}", /* "error" not a string */
        "[\"error\"]",                 /* not an object */
        "\"error\"",
    };
    wx__rpc_conn *c = conn_with(atts, lens, 1);
    wx_error err = WX_ERROR_INIT;
    wx__outputs out;

    (void)state;
    wx__outputs_init(&out, 1u << 20);
    for (size_t i = 0; i < sizeof(not_envelopes) / sizeof(*not_envelopes);
         i++) {
        char *text = inband(not_envelopes[i]);

        assert_ok(read_text(text, c, &out, &err), &err);
        assert_int_equal(out.n, 1);
        assert_raw(&out, "error", not_envelopes[i],
                   strlen(not_envelopes[i]));
        free(text);
    }
    /* An envelope next to another output is two outputs. */
    {
        const char *inner = "{\"error\": \"x\", \"type\": \"T\"}";
        char *enc = b64(inner, strlen(inner));
        char text[256];

        snprintf(text, sizeof(text), "{\"error\": \"%s\", \"t\": \"YQ==\"}",
                 enc);
        assert_ok(read_text(text, c, &out, &err), &err);
        assert_int_equal(out.n, 2);
        assert_raw(&out, "error", inner, strlen(inner));
        assert_raw(&out, "t", "a", 1);
        free(enc);
    }
    /* An attachment named "error" is an output, whatever it holds. */
    assert_ok(read_text("{\"error\": {\"$att\": 0}}", c, &out, &err), &err);
    assert_int_equal(out.n, 1);
    assert_raw(&out, "error", atts[0], lens[0]);
    /* A lone "error" that is not base64 at all: a broken output. */
    assert_fails(read_text("{\"error\": \"not base64!\"}", c, &out, &err),
                 WX_EPROTO, &err, "output 'error'");
    wx__outputs_release(&out);
    read_text_done();
    conn_free(c);
}

static void test_model_error_code(void **state)
{
    (void)state;
    assert_int_equal(wx__wire_model_error_code("MemoryError"), WX_EOOM);
    assert_int_equal(wx__wire_model_error_code("ValueError"), WX_EMODEL);
    assert_int_equal(wx__wire_model_error_code("memoryerror"), WX_EMODEL);
    assert_int_equal(wx__wire_model_error_code(NULL), WX_EMODEL);
}

/* ---- aggregate params ---- */

/* Replicates: two outputs (one a loaded CAS artifact), an empty one, and
 * a failed replicate. */
typedef struct reps {
    wx_sim_return sr[3];
    wx_output o0[2], o1[1];
    wx_error_info e2;
    uint8_t big[300];
    char big_hex[65], big_ref[80];
} reps;

static void reps_init(reps *r)
{
    memset(r, 0, sizeof(*r));
    for (size_t i = 0; i < sizeof(r->big); i++)
        r->big[i] = (uint8_t)(i * 7 + 3);
    sha_hex(r->big, sizeof(r->big), r->big_hex);
    snprintf(r->big_ref, sizeof(r->big_ref), "cas://%s", r->big_hex);
    r->o0[0].name = "small";
    r->o0[0].art.size = 3;
    r->o0[0].art.data = (uint8_t *)"abc";
    memcpy(r->o0[0].art.checksum, ABC_HEX, 65);
    r->o0[1].name = "big";
    r->o0[1].art.size = sizeof(r->big);
    r->o0[1].art.data = r->big;
    r->o0[1].art.ref = r->big_ref;
    memcpy(r->o0[1].art.checksum, r->big_hex, 65);
    r->o1[0].name = "empty";
    memcpy(r->o1[0].art.checksum, EMPTY_HEX, 65);
    r->e2.error_type = "ModelError";
    r->e2.message = "boom";
    for (int i = 0; i < 3; i++) {
        snprintf(r->sr[i].task_id, sizeof(r->sr[i].task_id), "t%d", i);
        memset(r->sr[i].sim_root, 'a' + i, 64);
    }
    r->sr[0].outputs = r->o0;
    r->sr[0].n_outputs = 2;
    r->sr[1].outputs = r->o1;
    r->sr[1].n_outputs = 1;
    r->sr[2].error = &r->e2;
}

/* wx__wire_aggregate_params(), its text read back as a JSON value. */
static int agg_params(const char *target, const wx_sim_return *sr, size_t n,
                      const json_t *td, bool attachments, struct iovec *att,
                      size_t *n_att, json_t **params, wx_error *err)
{
    wx_buf text = WX_BUF_INIT(SIZE_MAX - 1);
    int rc = wx__wire_aggregate_params(target, sr, n, td, attachments, att,
                                       n_att, &text, err);

    if (!rc)
        rc = wx_json_parse(text.data, text.len, params, err);
    wx_buf_release(&text);
    return rc;
}

static void test_aggregate_params_base64(void **state)
{
    reps r;
    struct iovec att[4];
    size_t n_att = 99;
    json_t *params = NULL, *td = tu_json("{\"k\": [1, 2]}");
    wx_error err = WX_ERROR_INIT;
    char *text, *big64, expected[4096];

    (void)state;
    reps_init(&r);
    assert_ok(agg_params("targets.t:loss", r.sr, 3, td, false, att, &n_att,
                         &params, &err),
              &err);
    assert_int_equal(n_att, 0);
    big64 = b64(r.big, sizeof(r.big));
    snprintf(expected, sizeof(expected),
             "{\"target_entrypoint\":\"targets.t:loss\",\"sim_returns\":["
             "{\"task_id\":\"t0\",\"sim_root\":\"%s\",\"outputs\":{"
             "\"small\":{\"size\":3,\"checksum\":\"" ABC_HEX "\","
             "\"inline\":\"YWJj\",\"cas_ref\":null},"
             "\"big\":{\"size\":300,\"checksum\":\"%s\",\"inline\":\"%s\","
             "\"cas_ref\":\"%s\"}},\"error\":null},"
             "{\"task_id\":\"t1\",\"sim_root\":\"%s\",\"outputs\":{"
             "\"empty\":{\"size\":0,\"checksum\":\"" EMPTY_HEX "\","
             "\"inline\":\"\",\"cas_ref\":null}},\"error\":null},"
             "{\"task_id\":\"t2\",\"sim_root\":\"%s\",\"outputs\":{},"
             "\"error\":{\"error_type\":\"ModelError\",\"message\":\"boom\"}}"
             "],\"target_data\":{\"k\":[1,2]}}",
             r.sr[0].sim_root, r.big_hex, big64, r.big_ref, r.sr[1].sim_root,
             r.sr[2].sim_root);
    text = wire_text(params);
    assert_string_equal(text, expected);
    wx_free(text);
    json_decref(params);
    free(big64);
    /* The text itself, not only its value, is what Python writes. */
    {
        wx_buf raw = WX_BUF_INIT(SIZE_MAX - 1);

        assert_ok(wx__wire_aggregate_params("targets.t:loss", r.sr, 3, td,
                                            false, att, &n_att, &raw, &err),
                  &err);
        assert_string_equal(raw.data, expected);
        wx_buf_release(&raw);
    }

    /* No target data: null. */
    assert_ok(agg_params("targets.t:loss", r.sr + 1, 1, NULL, false, att,
                         &n_att, &params, &err),
              &err);
    assert_true(json_is_null(json_object_get(params, "target_data")));
    json_decref(params);
    json_decref(td);
}

static void test_aggregate_params_attachments(void **state)
{
    reps r;
    struct iovec att[WX_FRAME_ATT_MAX];
    size_t n_att = 0;
    json_t *params = NULL, *list, *outs;
    wx_error err = WX_ERROR_INIT;

    (void)state;
    reps_init(&r);
    assert_ok(agg_params("targets.t:loss", r.sr, 3, NULL, true, att, &n_att,
                         &params, &err),
              &err);
    assert_int_equal(n_att, 3);
    list = json_object_get(params, "sim_returns");
    assert_int_equal(json_array_size(list), 3);
    outs = json_object_get(json_array_get(list, 0), "outputs");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(outs, "small"),
                                         "inline"),
                         "$att")),
                     0);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(outs, "big"),
                                         "inline"),
                         "$att")),
                     1);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(outs, "big"), "cas_ref")),
                        r.big_ref);
    outs = json_object_get(json_array_get(list, 1), "outputs");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_object_get(outs, "empty"),
                                         "inline"),
                         "$att")),
                     2);
    assert_int_equal(att[0].iov_len, 3);
    assert_memory_equal(att[0].iov_base, "abc", 3);
    assert_int_equal(att[1].iov_len, sizeof(r.big));
    assert_memory_equal(att[1].iov_base, r.big, sizeof(r.big));
    assert_int_equal(att[2].iov_len, 0);
    /* The failed replicate says so. */
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_array_get(list, 2), "error"), "error_type")),
        "ModelError");
    assert_int_equal(
        json_object_size(json_object_get(json_array_get(list, 2), "outputs")),
        0);
    json_decref(params);
}

/* A CAS artifact whose bytes were not loaded is refused (the seed sent
 * "inline": null for it). */
static void test_aggregate_params_unloaded(void **state)
{
    reps r;
    struct iovec att[WX_FRAME_ATT_MAX];
    size_t n_att = 0;
    json_t *params = NULL;
    wx_error err = WX_ERROR_INIT;

    (void)state;
    for (int mode = 0; mode < 2; mode++) {
        reps_init(&r);
        r.o0[1].art.data = NULL;
        params = NULL;
        assert_fails(agg_params("targets.t:loss", r.sr, 3, NULL, mode, att,
                                &n_att, &params, &err),
                     WX_EINVAL, &err, "output 'big' of t0 is not loaded");
        assert_null(params);
    }
}

/* More than WX_FRAME_ATT_MAX artifacts: the rest travel as base64. */
typedef struct many {
    wx_sim_return *sr;
    size_t n_sr;
    uint8_t bytes[WX_FRAME_ATT_MAX + 3];
} many;

static void many_init(many *m, size_t n_sr, size_t per)
{
    size_t k = 0;

    m->sr = calloc(n_sr, sizeof(*m->sr));
    m->n_sr = n_sr;
    for (size_t i = 0; i < n_sr; i++) {
        m->sr[i].outputs = calloc(per, sizeof(wx_output));
        m->sr[i].n_outputs = per;
        snprintf(m->sr[i].task_id, sizeof(m->sr[i].task_id), "t%zu", i);
        memset(m->sr[i].sim_root, 'c', 64);
        for (size_t j = 0; j < per; j++, k++) {
            wx_output *o = &m->sr[i].outputs[j];

            m->bytes[k] = (uint8_t)(k * 13 + 1);
            o->name = malloc(32);
            snprintf(o->name, 32, "o%zu", j);
            o->art.size = 1;
            o->art.data = &m->bytes[k];
            sha_hex(o->art.data, 1, o->art.checksum);
        }
    }
}

static void many_free(many *m)
{
    for (size_t i = 0; i < m->n_sr; i++) {
        for (size_t j = 0; j < m->sr[i].n_outputs; j++)
            free(m->sr[i].outputs[j].name);
        free(m->sr[i].outputs);
    }
    free(m->sr);
}

static void test_aggregate_params_attachment_overflow(void **state)
{
    many *m = calloc(1, sizeof(*m));
    struct iovec *att = calloc(WX_FRAME_ATT_MAX, sizeof(*att));
    size_t n_att = 0, k = 0;
    json_t *params = NULL, *list, *sr;
    wx_error err = WX_ERROR_INIT;
    size_t i;

    (void)state;
    many_init(m, 13, 79); /* 1027 outputs */
    assert_ok(agg_params("targets.t:loss", m->sr, m->n_sr, NULL, true, att,
                         &n_att, &params, &err),
              &err);
    assert_int_equal(n_att, WX_FRAME_ATT_MAX);
    list = json_object_get(params, "sim_returns");
    json_array_foreach(list, i, sr)
    {
        for (size_t j = 0; j < m->sr[i].n_outputs; j++, k++) {
            json_t *inl = json_object_get(
                json_object_get(json_object_get(sr, "outputs"),
                                m->sr[i].outputs[j].name),
                "inline");

            if (k < WX_FRAME_ATT_MAX) {
                assert_int_equal(json_integer_value(
                                     json_object_get(inl, "$att")),
                                 (json_int_t)k);
                assert_int_equal(att[k].iov_len, 1);
                assert_int_equal(*(uint8_t *)att[k].iov_base, m->bytes[k]);
            } else {
                char *enc = b64(&m->bytes[k], 1);

                assert_true(json_is_string(inl));
                assert_string_equal(json_string_value(inl), enc);
                free(enc);
            }
        }
    }
    assert_int_equal(k, WX_FRAME_ATT_MAX + 3);
    json_decref(params);
    many_free(m);
    free(m);
    free(att);
}

/* aggregate through the fake worker: it answers with the SHA-256 of every
 * output it received, in order. */
static void aggregate_round_trip(const wx_sim_return *sr, size_t n,
                                 bool compat)
{
    pool_fx *f = pool_fx_new(compat);
    struct iovec *att = calloc(WX_FRAME_ATT_MAX, sizeof(*att));
    size_t n_att = 0, k = 0;
    json_t *params = NULL, *result = NULL, *sums;
    wx__worker *w = NULL;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;
    wx_agg_return ret;

    memset(&ret, 0, sizeof(ret));
    assert_ok(wx__pool_lease(f->pool, &f->spec, &w, &fault, &err), &err);
    assert_ok(agg_params("targets.t:loss", sr, n, NULL,
                         wx__worker_attachments(w), att, &n_att, &params,
                         &err),
              &err);
    if (compat)
        assert_int_equal(n_att, 0);
    else
        assert_true(n_att > 0);
    assert_ok(wx__pool_call(f->pool, w, "aggregate", params, att, n_att,
                            &result, &fault, &err),
              &err);
    assert_ok(wx__wire_read_agg_result(result, n, &ret, &err), &err);
    assert_true(ret.loss == (double)n);
    assert_int_equal(ret.n_replicates, (int64_t)n);
    sums = json_object_get(ret.diagnostics, "sha256");
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < sr[i].n_outputs; j++, k++)
            assert_string_equal(json_string_value(json_array_get(sums, k)),
                                sr[i].outputs[j].art.checksum);
    assert_int_equal(json_array_size(sums), k);
    wx__pool_release(f->pool, w);
    wx_agg_return_release(&ret);
    json_decref(params);
    json_decref(result);
    wx_fault_release(&fault);
    free(att);
    pool_fx_free(f);
}

static void test_aggregate_round_trip(void **state)
{
    reps r;
    many *m = calloc(1, sizeof(*m));

    (void)state;
    reps_init(&r);
    aggregate_round_trip(r.sr, 3, false);
    aggregate_round_trip(r.sr, 3, true);
    /* 1027 outputs: 1024 attachments and 3 base64 strings, one frame. */
    many_init(m, 13, 79); /* 1027 outputs */
    aggregate_round_trip(m->sr, m->n_sr, false);
    many_free(m);
    free(m);
}

/* ---- aggregate results ---- */

static int read_agg(const char *text, size_t n, wx_agg_return *ret,
                    wx_error *err)
{
    json_t *result = tu_json(text);
    int rc;

    memset(ret, 0, sizeof(*ret));
    rc = wx__wire_read_agg_result(result, n, ret, err);
    json_decref(result);
    return rc;
}

static void assert_diag(const wx_agg_return *ret, const char *canon)
{
    char *text = tu_canon(ret->diagnostics);

    assert_string_equal(text, canon);
    wx_free(text);
}

static void test_read_agg_result(void **state)
{
    json_t *result;
    wx_agg_return ret;
    wx_error err = WX_ERROR_INIT;

    (void)state;
    /* loss, a copy of diagnostics; n_replicates is the replicates sent. */
    result = tu_json("{\"loss\": 1.5, \"diagnostics\": {\"a\": [1, 2]}, "
                     "\"n_replicates\": 99, \"outputs\": {}}");
    memset(&ret, 0, sizeof(ret));
    assert_ok(wx__wire_read_agg_result(result, 3, &ret, &err), &err);
    assert_true(ret.loss == 1.5);
    assert_int_equal(ret.n_replicates, 3);
    assert_ptr_not_equal(ret.diagnostics,
                         json_object_get(result, "diagnostics"));
    json_object_set_new(json_object_get(result, "diagnostics"), "b",
                        json_true());
    json_decref(result);
    assert_diag(&ret, "{\"a\":[1,2]}");
    wx_agg_return_release(&ret);

    /* An integer loss; no diagnostics: an empty object. */
    assert_ok(read_agg("{\"loss\": 3}", 1, &ret, &err), &err);
    assert_true(ret.loss == 3.0);
    assert_diag(&ret, "{}");
    wx_agg_return_release(&ret);

    /* Diagnostics that are not an object are dropped. */
    assert_ok(read_agg("{\"loss\": 0.0, \"diagnostics\": [1]}", 1, &ret,
                       &err),
              &err);
    assert_diag(&ret, "{}");
    wx_agg_return_release(&ret);
}

static void test_read_agg_result_per_replicate_losses(void **state)
{
    wx_agg_return ret;
    wx_error err = WX_ERROR_INIT;

    (void)state;
    assert_ok(read_agg("{\"loss\": 2.0, \"per_replicate_losses\": [1.0, 3.0]}",
                       2, &ret, &err),
              &err);
    assert_diag(&ret, "{\"per_replicate_losses\":[1.0,3.0]}");
    wx_agg_return_release(&ret);
    assert_ok(read_agg("{\"loss\": 2.0, \"diagnostics\": {\"t\": \"x\"}, "
                       "\"per_replicate_losses\": [1.0, 3.0]}",
                       2, &ret, &err),
              &err);
    assert_diag(&ret, "{\"per_replicate_losses\":[1.0,3.0],\"t\":\"x\"}");
    wx_agg_return_release(&ret);
    /* The evaluator's own diagnostics win. */
    assert_ok(read_agg("{\"loss\": 2.0, \"diagnostics\": "
                       "{\"per_replicate_losses\": [9]}, "
                       "\"per_replicate_losses\": [1.0, 3.0]}",
                       2, &ret, &err),
              &err);
    assert_diag(&ret, "{\"per_replicate_losses\":[9]}");
    wx_agg_return_release(&ret);
    /* Not a list: ignored. */
    assert_ok(read_agg("{\"loss\": 2.0, \"per_replicate_losses\": 5}", 2,
                       &ret, &err),
              &err);
    assert_diag(&ret, "{}");
    wx_agg_return_release(&ret);
}

static void test_read_agg_result_errors(void **state)
{
    static const struct {
        const char *result;
        int rc;
        const char *needle;
    } cases[] = {
        /* The original's in-band failure (spec 2.6). */
        {"{\"error\": \"no column 'x'\", \"type\": \"KeyError\", "
         "\"target_entrypoint\": \"targets.t:loss\"}",
         WX_EMODEL, "KeyError: no column 'x'"},
        {"{\"error\": \"\", \"type\": \"MemoryError\", "
         "\"target_entrypoint\": \"targets.t:loss\"}",
         WX_EOOM, "MemoryError"},
        {"{\"error\": \"bad\", \"loss\": 1.0}", WX_EMODEL, "bad"},
        {"{\"diagnostics\": {}}", WX_EMODEL,
         "Target evaluator must return 'loss' in result dict"},
        {"{}", WX_EMODEL, "must return 'loss'"},
        {"{\"loss\": null}", WX_EMODEL,
         "Loss must be a finite number, got a non-finite value"},
        {"{\"loss\": \"1.0\"}", WX_EMODEL, "Loss must be a finite number"},
        {"{\"loss\": [1.0]}", WX_EMODEL, "Loss must be a finite number"},
        {"{\"loss\": true}", WX_EMODEL, "Loss must be a finite number"},
        {"[1.0]", WX_EPROTO, "not an object"},
        {"1.0", WX_EPROTO, "not an object"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wx_agg_return ret;
        wx_error err = WX_ERROR_INIT;
        int rc = read_agg(cases[i].result, 2, &ret, &err);

        if (rc != cases[i].rc || !strstr(err.message, cases[i].needle))
            fail_msg("%s: got %s '%s', expected %s '%s'", cases[i].result,
                     wx_err_name(rc), err.message, wx_err_name(cases[i].rc),
                     cases[i].needle);
        assert_null(ret.diagnostics);
    }
}

/* NaN and Infinity from a Python evaluator arrive through the reply reader
 * as null, and are a model error. */
static void test_read_agg_result_non_finite(void **state)
{
    static const char *const bodies[] = {
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"loss\":NaN}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"loss\":Infinity}}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"loss\":-Infinity,"
        "\"diagnostics\":{\"x\":NaN}}}",
    };

    (void)state;
    for (size_t i = 0; i < 3; i++) {
        json_t *result = NULL;
        wx_agg_return ret;
        wx_error err = WX_ERROR_INIT;

        assert_ok(wx__rpc_parse_reply(bodies[i], strlen(bodies[i]), 1,
                                      &result, &err),
                  &err);
        memset(&ret, 0, sizeof(ret));
        assert_fails(wx__wire_read_agg_result(result, 1, &ret, &err),
                     WX_EMODEL, &err, "Loss must be a finite number");
        json_decref(result);
    }
    /* A NaN only in the diagnostics is fine. */
    {
        const char *body = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":"
                           "{\"loss\":0.5,\"diagnostics\":{\"x\":NaN}}}";
        json_t *result = NULL;
        wx_agg_return ret;
        wx_error err = WX_ERROR_INIT;

        assert_ok(wx__rpc_parse_reply(body, strlen(body), 1, &result, &err),
                  &err);
        memset(&ret, 0, sizeof(ret));
        assert_ok(wx__wire_read_agg_result(result, 1, &ret, &err), &err);
        assert_true(ret.loss == 0.5);
        assert_true(json_is_null(json_object_get(ret.diagnostics, "x")));
        wx_agg_return_release(&ret);
        json_decref(result);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_execute_params_bytes),
        cmocka_unit_test(test_read_outputs_round_trip_attachments),
        cmocka_unit_test(test_read_outputs_round_trip_compat),
        cmocka_unit_test(test_read_outputs_base64_and_attachments),
        cmocka_unit_test(test_read_outputs_protocol_errors),
        cmocka_unit_test(test_read_outputs_inband_error),
        cmocka_unit_test(test_read_outputs_lone_error_output),
        cmocka_unit_test(test_model_error_code),
        cmocka_unit_test(test_aggregate_params_base64),
        cmocka_unit_test(test_aggregate_params_attachments),
        cmocka_unit_test(test_aggregate_params_unloaded),
        cmocka_unit_test(test_aggregate_params_attachment_overflow),
        cmocka_unit_test(test_aggregate_round_trip),
        cmocka_unit_test(test_read_agg_result),
        cmocka_unit_test(test_read_agg_result_per_replicate_losses),
        cmocka_unit_test(test_read_agg_result_errors),
        cmocka_unit_test(test_read_agg_result_non_finite),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
