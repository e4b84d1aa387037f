/* TableArtifact, ErrorInfo, SimReturn, AggregationReturn. */
#include "testutil.h"

#include "alloc.h"
#include "result.h"

#define HEX_A "ba448eaf1cbca2a2bea4fbcb4e1c0b1dc5dfc9ab2d95bf40a3d8bcd5e3ea9e02"
#define HEX_B "0000000000000000000000000000000000000000000000000000000000000001"
#define ROOT "b0d54af4e4127702aefdb315314eeffb466634f38395dd4c7568ee4ffd0f1652"

/* Parse `text` as `kind` and expect failure mentioning `needle`. */
static void expect_artifact_error(const char *text, const char *needle)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = tu_json(text);
    wx_artifact a;

    assert_fails(wx_artifact_from_json(&a, v, &err), WX_EINVAL, &err, needle);
    assert_null(a.data);
    assert_null(a.ref);
    json_decref(v);
}

/* JSON -> struct -> JSON gives the canonical text back. */
static void expect_artifact_round_trip(const char *text)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = tu_json(text), *back;
    wx_artifact a;
    char *x, *y;

    assert_ok(wx_artifact_from_json(&a, v, &err), &err);
    assert_ok(wx_artifact_to_json(&a, &back, &err), &err);
    x = tu_canon(v);
    y = tu_canon(back);
    assert_string_equal(x, y);
    wx_free(x);
    wx_free(y);
    wx_artifact_release(&a);
    json_decref(v);
    json_decref(back);
}

static void test_artifact_round_trips(void **state)
{
    expect_artifact_round_trip("{\"size\":17,\"checksum\":\"" HEX_A "\","
                               "\"inline\":\"c21hbGwtdGFibGUtYnl0ZXM=\"}");
    expect_artifact_round_trip("{\"size\":0,\"checksum\":\"" HEX_A "\","
                               "\"inline\":\"\"}");
    expect_artifact_round_trip("{\"size\":70000,\"checksum\":\"" HEX_A "\","
                               "\"ref\":\"cas://" HEX_B "\"}");
}

static void test_artifact_decodes_inline(void **state)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = tu_json("{\"size\":3,\"checksum\":\"" HEX_A "\","
                        "\"inline\":\"YWJj\",\"content_type\":\"x\"}");
    wx_artifact a;

    assert_ok(wx_artifact_from_json(&a, v, &err), &err);
    assert_int_equal(a.size, 3);
    assert_memory_equal(a.data, "abc", 3);
    assert_null(a.ref);
    wx_artifact_release(&a);
    json_decref(v);
}

static void test_artifact_invariants(void **state)
{
    expect_artifact_error("{\"size\":3,\"checksum\":\"" HEX_A "\"}",
                          "exactly one of inline or ref");
    expect_artifact_error("{\"size\":3,\"checksum\":\"" HEX_A "\",\"inline\":"
                          "\"YWJj\",\"ref\":\"cas://" HEX_B "\"}",
                          "exactly one of inline or ref");
    expect_artifact_error("{\"size\":4,\"checksum\":\"" HEX_A "\","
                          "\"inline\":\"YWJj\"}",
                          "inline bytes length (3) doesn't match size (4)");
    expect_artifact_error("{\"size\":-1,\"checksum\":\"" HEX_A "\","
                          "\"inline\":\"\"}",
                          "size: must be an integer in [0,");
    expect_artifact_error("{\"size\":0,\"checksum\":\"\",\"inline\":\"\"}",
                          "checksum is required");
    expect_artifact_error("{\"size\":0,\"checksum\":\"ABC\",\"inline\":\"\"}",
                          "checksum must be 64-character hex");
    expect_artifact_error("{\"size\":1,\"checksum\":\"" HEX_A "\","
                          "\"ref\":\"s3://bucket/x\"}",
                          "ref must be cas://");
    expect_artifact_error("{\"size\":1,\"checksum\":\"" HEX_A "\","
                          "\"ref\":\"cas://../../etc/passwd\"}",
                          "ref must be cas://");
    expect_artifact_error("{\"size\":3,\"checksum\":\"" HEX_A "\","
                          "\"inline\":\"YW*j\"}",
                          "invalid base64");
    expect_artifact_error("{\"size\":3,\"checksum\":\"" HEX_A "\","
                          "\"inline\":\"YWJj\",\"extra\":1}",
                          "unknown field 'extra'");
}

static void test_inline_cap(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_artifact a = {0};

    a.size = WX_INLINE_CAP + 1;
    a.data = calloc(1, a.size);
    memcpy(a.checksum, HEX_A, 65);
    assert_fails(wx_artifact_validate(&a, &err), WX_EINVAL, &err,
                 "inline artifacts must be <= 524288 bytes");
    a.size = WX_INLINE_CAP;
    assert_ok(wx_artifact_validate(&a, &err), &err);
    wx_artifact_release(&a);
}

static void test_artifact_copy_is_deep(void **state)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = tu_json("{\"size\":3,\"checksum\":\"" HEX_A "\","
                        "\"inline\":\"YWJj\"}");
    wx_artifact a, b;

    assert_ok(wx_artifact_from_json(&a, v, &err), &err);
    assert_ok(wx_artifact_copy(&b, &a, &err), &err);
    assert_ptr_not_equal(a.data, b.data);
    wx_artifact_release(&a);
    assert_memory_equal(b.data, "abc", 3);
    wx_artifact_release(&b);
    json_decref(v);
}

static const char SUCCESS[] =
    "{\"task_id\":\"cd097c4f49320696f359c21c76e1e9be9ae35ae86ef760ae7e9b79477"
    "672d43d\",\"sim_root\":\"" ROOT "\",\"outputs\":{\"table\":{\"size\":17,"
    "\"checksum\":\"" HEX_A "\",\"inline\":\"c21hbGwtdGFibGUtYnl0ZXM=\"},"
    "\"big\":{\"size\":70000,\"checksum\":\"" HEX_B "\",\"ref\":\"cas://" HEX_B
    "\"}},\"error\":null,\"error_details\":null,\"metrics\":{\"attempts\":1,"
    "\"duration_s\":0.25},\"cached\":true,\"logs_ref\":null}";

static const char FAILURE[] =
    "{\"task_id\":\"59c0f4c083042d02bee776e9ae64e067f17ba2a757f928ba670f8a168"
    "e292e20\",\"sim_root\":\"" ROOT "\",\"outputs\":{},\"error\":{"
    "\"error_type\":\"ModelError\",\"message\":\"alpha must be positive\","
    "\"retryable\":false},\"error_details\":{\"size\":2,\"checksum\":\"" HEX_A
    "\",\"inline\":\"e30=\"},\"metrics\":{},\"cached\":false,"
    "\"logs_ref\":\"logs/w1.log\"}";

static void expect_sim_return_round_trip(const char *text)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = tu_json(text), *back;
    wx_sim_return r;
    char *x, *y;

    assert_ok(wx_sim_return_from_json(&r, v, &err), &err);
    assert_ok(wx_sim_return_to_json(&r, &back, &err), &err);
    x = tu_canon(v);
    y = tu_canon(back);
    assert_string_equal(x, y);
    wx_free(x);
    wx_free(y);
    wx_sim_return_release(&r);
    json_decref(v);
    json_decref(back);
}

static void test_sim_return_round_trips(void **state)
{
    expect_sim_return_round_trip(SUCCESS);
    expect_sim_return_round_trip(FAILURE);
}

static void test_sim_return_fields(void **state)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = tu_json(FAILURE);
    wx_sim_return r;

    assert_ok(wx_sim_return_from_json(&r, v, &err), &err);
    assert_int_equal(r.n_outputs, 0);
    assert_string_equal(r.error->error_type, "ModelError");
    assert_false(r.error->retryable);
    assert_memory_equal(r.error_details->data, "{}", 2);
    assert_string_equal(r.logs_ref, "logs/w1.log");
    assert_false(r.cached);
    wx_sim_return_release(&r);
    json_decref(v);
}

/* The direct canonical writer gives the bytes of to_json + canonical. */
static void expect_canonical_text(const char *text)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf direct = WX_BUF_INIT(1 << 20);
    json_t *v = tu_json(text), *back;
    wx_sim_return r;
    char *expected;

    assert_ok(wx_sim_return_from_json(&r, v, &err), &err);
    assert_ok(wx_sim_return_to_json(&r, &back, &err), &err);
    expected = tu_canon(back);
    assert_ok(wx_buf_puts(&direct, "kept:", &err), &err);
    assert_ok(wx__sim_return_canonical(&r, &direct, &err), &err);
    assert_memory_equal(direct.data, "kept:", 5);
    assert_string_equal((const char *)direct.data + 5, expected);
    wx_free(expected);
    /* The outputs alone. */
    expected = tu_canon(json_object_get(back, "outputs"));
    wx_buf_reset(&direct);
    assert_ok(wx__outputs_canonical(r.outputs, r.n_outputs, &direct, &err),
              &err);
    assert_string_equal((const char *)direct.data, expected);
    wx_free(expected);
    wx_buf_release(&direct);
    wx_sim_return_release(&r);
    json_decref(v);
    json_decref(back);
}

#define ART(size, hex) "{\"size\":" #size ",\"checksum\":\"" hex "\"," \
                       "\"inline\":\"\"}"

static void test_sim_return_canonical_text(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf out = WX_BUF_INIT(1 << 20);
    wx_sim_return r;
    json_t *v;

    expect_canonical_text(SUCCESS);
    expect_canonical_text(FAILURE);
    /* More outputs than the writer sorts on its stack, names out of
       order, a prefix, non-ASCII, an escape; metrics out of order. */
    expect_canonical_text(
        "{\"task_id\":\"" HEX_B "\",\"sim_root\":\"" ROOT "\",\"outputs\":{"
        "\"z\":" ART(0, HEX_A) ",\"a\":" ART(0, HEX_A) ",\"\\u00e9t\\u00e9\":"
        ART(0, HEX_B) ",\"A\":" ART(0, HEX_A) ",\"b0\":" ART(0, HEX_A)
        ",\"b\":" ART(0, HEX_A) ",\"aa\":" ART(0, HEX_A) ",\"a\\\"q\":"
        ART(0, HEX_A) ",\"10\":" ART(0, HEX_A) ",\"9\":" ART(0, HEX_A)
        "},\"error\":null,\"error_details\":null,\"metrics\":{\"z\":1e-7,"
        "\"attempts\":3,\"big\":1e300,\"duration_s\":0.125},"
        "\"cached\":false,\"logs_ref\":\"logs/\\u00e9.log\"}");
    /* A string that is not UTF-8 fails and leaves the buffer as it was. */
    v = tu_json(SUCCESS);
    assert_ok(wx_sim_return_from_json(&r, v, &err), &err);
    wx_free(r.logs_ref);
    r.logs_ref = wx__strdup("bad \xff byte");
    assert_ok(wx_buf_puts(&out, "kept", &err), &err);
    assert_fails(wx__sim_return_canonical(&r, &out, &err), WX_EINVAL, &err,
                 "not valid UTF-8");
    assert_int_equal(out.len, 4);
    wx_buf_release(&out);
    wx_sim_return_release(&r);
    json_decref(v);
}

static void expect_sim_return_error(const char *text, const char *needle)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = tu_json(text);
    wx_sim_return r;

    assert_fails(wx_sim_return_from_json(&r, v, &err), WX_EINVAL, &err,
                 needle);
    assert_null(r.outputs);
    json_decref(v);
}

static void test_sim_return_invariants(void **state)
{
    expect_sim_return_error("{\"task_id\":\"t\",\"sim_root\":\"" ROOT "\"}",
                            "outputs must contain at least one artifact");
    expect_sim_return_error("{\"task_id\":\"\",\"sim_root\":\"" ROOT "\","
                            "\"error\":{\"error_type\":\"X\",\"message\":"
                            "\"m\"}}",
                            "task_id is required");
    expect_sim_return_error("{\"task_id\":\"t\",\"sim_root\":\"" ROOT "\","
                            "\"error\":{\"error_type\":\"X\",\"message\":"
                            "\"m\"}}",
                            "error_details is required");
    expect_sim_return_error("{\"task_id\":\"t\",\"sim_root\":\"abc\"}",
                            "sim_root: must be 64 lowercase hex");
    expect_sim_return_error("{\"task_id\":\"t\",\"sim_root\":\"" ROOT "\","
                            "\"outputs\":{\"x\":{\"size\":1,\"checksum\":\""
                            HEX_A "\"}}}",
                            "outputs.x: Must provide exactly one");
    expect_sim_return_error("{\"task_id\":\"t\",\"sim_root\":\"" ROOT "\","
                            "\"outputs\":{\"\":{\"size\":0,\"checksum\":\""
                            HEX_A "\",\"inline\":\"\"}}}",
                            "names must be non-empty");
    expect_sim_return_error("{\"task_id\":\"t\",\"sim_root\":\"" ROOT "\","
                            "\"metrics\":{\"m\":\"x\"},\"outputs\":{\"a\":{"
                            "\"size\":0,\"checksum\":\"" HEX_A "\",\"inline\""
                            ":\"\"}}}",
                            "metrics.m: must be a number");
}

static const char AGG[] =
    "{\"aggregation_id\":\"bfeb6e20cf810e3a\",\"loss\":0.5,\"diagnostics\":"
    "{\"n\":1,\"td\":{\"obs\":[1,2]}},\"outputs\":{},\"n_replicates\":3}";

static void test_agg_return(void **state)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = tu_json(AGG), *back;
    wx_agg_return r;
    char *x, *y;

    assert_ok(wx_agg_return_from_json(&r, v, &err), &err);
    assert_true(r.loss == 0.5);
    assert_int_equal(r.n_replicates, 3);
    assert_ok(wx_agg_return_to_json(&r, &back, &err), &err);
    x = tu_canon(v);
    y = tu_canon(back);
    assert_string_equal(x, y);
    r.n_replicates = 0;
    assert_fails(wx_agg_return_validate(&r, &err), WX_EINVAL, &err,
                 "n_replicates must be positive");
    wx_free(x);
    wx_free(y);
    wx_agg_return_release(&r);
    json_decref(v);
    json_decref(back);
}

static void test_agg_return_errors(void **state)
{
    wx_error err = WX_ERROR_INIT;
    const char *bad[][2] = {
        {"{\"aggregation_id\":\"bfeb6e20\",\"loss\":1,\"n_replicates\":1}",
         "16 lowercase hex"},
        {"{\"aggregation_id\":\"bfeb6e20cf810e3a\",\"loss\":\"x\","
         "\"n_replicates\":1}",
         "loss: must be a number"},
        {"{\"aggregation_id\":\"bfeb6e20cf810e3a\",\"loss\":1,"
         "\"n_replicates\":0}",
         "n_replicates: must be an integer in [1,"},
        {"{\"aggregation_id\":\"bfeb6e20cf810e3a\",\"loss\":1,"
         "\"n_replicates\":1,\"diagnostics\":[1]}",
         "diagnostics: must be an object"},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *v = tu_json(bad[i][0]);
        wx_agg_return r;

        assert_fails(wx_agg_return_from_json(&r, v, &err), WX_EINVAL, &err,
                     bad[i][1]);
        json_decref(v);
    }
}

static void test_error_info(void **state)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = tu_json("{\"error_type\":\"Timeout\",\"message\":\"no reply\","
                        "\"retryable\":true}"),
           *back;
    wx_error_info e;

    assert_ok(wx_error_info_from_json(&e, v, &err), &err);
    assert_true(e.retryable);
    assert_ok(wx_error_info_to_json(&e, &back, &err), &err);
    assert_true(json_equal(v, back));
    wx_error_info_release(&e);
    json_decref(v);
    json_decref(back);
    v = tu_json("{\"message\":\"m\"}");
    assert_fails(wx_error_info_from_json(&e, v, &err), WX_EINVAL, &err,
                 "error_type: is required");
    json_decref(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_artifact_round_trips),
        cmocka_unit_test(test_artifact_decodes_inline),
        cmocka_unit_test(test_artifact_invariants),
        cmocka_unit_test(test_inline_cap),
        cmocka_unit_test(test_artifact_copy_is_deep),
        cmocka_unit_test(test_sim_return_round_trips),
        cmocka_unit_test(test_sim_return_fields),
        cmocka_unit_test(test_sim_return_invariants),
        cmocka_unit_test(test_sim_return_canonical_text),
        cmocka_unit_test(test_agg_return),
        cmocka_unit_test(test_agg_return_errors),
        cmocka_unit_test(test_error_info),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
