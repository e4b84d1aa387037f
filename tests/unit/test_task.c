/* SimTask, ReplicateSet and AggregationTask. */
#include "testutil.h"

#define REF "sha256:abababababababababababababababababababababababababababababababab"
#define ROOT "b0d54af4e4127702aefdb315314eeffb466634f38395dd4c7568ee4ffd0f1652"
#define HEX_A "ba448eaf1cbca2a2bea4fbcb4e1c0b1dc5dfc9ab2d95bf40a3d8bcd5e3ea9e02"

/* A task with the given seed and params texts, plus `extra` members. */
static char *task_text(const char *seed, const char *params,
                       const char *extra)
{
    char *text = NULL;

    if (asprintf(&text,
                 "{\"bundle_ref\":\"" REF "\",\"entrypoint\":"
                 "\"simulations.test/baseline\",\"params\":%s,\"seed\":%s%s}",
                 params, seed, extra) < 0)
        fail_msg("asprintf");
    return text;
}

static void expect_task_error(const char *text, const char *needle)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = tu_json(text);
    wx_task t;

    assert_fails(wx_task_from_json(&t, v, &err), WX_EINVAL, &err, needle);
    assert_null(t.bundle_ref);
    assert_null(t.params);
    json_decref(v);
}

static void expect_field_error(const char *seed, const char *params,
                               const char *extra, const char *needle)
{
    char *text = task_text(seed, params, extra);

    expect_task_error(text, needle);
    free(text);
}

static void test_valid_task(void **state)
{
    char *text = task_text("42", "{\"beta\":2.0,\"alpha\":1.0}",
                           ",\"outputs\":[\"table\",\"metadata\"],"
                           "\"config\":{\"dt\":0.5},\"env\":{\"K\":\"v\"}");
    json_t *v = tu_json(text);
    wx_error err = WX_ERROR_INIT;
    wx_task t;

    assert_ok(wx_task_from_json(&t, v, &err), &err);
    assert_string_equal(t.bundle_ref, REF);
    assert_int_equal(t.seed, 42);
    assert_string_equal(t.param_id, "8d1aa96348b4f859c80472726974e538bd45b9bc"
                                    "68c866bd3e0e17d5af4e3e8e");
    /* outputs are sorted, as the contract does */
    assert_string_equal(json_string_value(json_array_get(t.outputs, 0)),
                        "metadata");
    assert_non_null(t.config);
    wx_task_release(&t);
    json_decref(v);
    free(text);
}

static void test_round_trip(void **state)
{
    char *text = task_text("7", "{\"a\":1,\"s\":\"x\",\"f\":true}",
                           ",\"outputs\":null,\"config\":{},\"env\":null");
    json_t *v = tu_json(text), *back;
    wx_error err = WX_ERROR_INIT;
    wx_task t, copy;
    char *x, *y;
    char id1[65], id2[65];

    assert_ok(wx_task_from_json(&t, v, &err), &err);
    assert_ok(wx_task_to_json(&t, &back, &err), &err);
    x = tu_canon(v);
    y = tu_canon(back);
    assert_string_equal(x, y);
    assert_ok(wx_task_copy(&copy, &t, &err), &err);
    assert_ok(wx_task_task_id(&t, id1, &err), &err);
    wx_task_release(&t);
    assert_ok(wx_task_task_id(&copy, id2, &err), &err);
    assert_string_equal(id1, id2);
    wx_task_release(&copy);
    wx_free(x);
    wx_free(y);
    json_decref(v);
    json_decref(back);
    free(text);
}

static void test_ids_follow_the_contract(void **state)
{
    /* The task methods pass config, env and the requested outputs on to
       the pure functions checked by test_vectors. */
    char *text = task_text("42", "{\"alpha\":1.0,\"beta\":2.0}",
                           ",\"outputs\":[\"x\"],\"config\":{\"dt\":1}");
    json_t *v = tu_json(text), *outputs = tu_json("[\"x\"]");
    wx_error err = WX_ERROR_INIT;
    char root[65], tid[65], expect_root[65], expect_tid[65];
    wx_task t;

    assert_ok(wx_task_from_json(&t, v, &err), &err);
    assert_ok(wx_task_sim_root(&t, root, &err), &err);
    assert_ok(wx_task_task_id(&t, tid, &err), &err);
    assert_ok(wx_sim_root(REF, t.params, 42, "simulations.test/baseline",
                          t.config, NULL, expect_root, &err),
              &err);
    assert_ok(wx_task_id(expect_root, "simulations.test/baseline", outputs,
                         expect_tid, &err),
              &err);
    assert_string_equal(root, expect_root);
    assert_string_equal(tid, expect_tid);
    wx_task_release(&t);
    json_decref(v);
    json_decref(outputs);
    free(text);
}

static void test_seed_rules(void **state)
{
    const char *ok[] = {"0", "9223372036854775807"};

    for (size_t i = 0; i < 2; i++) {
        char *text = task_text(ok[i], "{}", "");
        json_t *v = tu_json(text);
        wx_error err = WX_ERROR_INIT;
        wx_task t;

        assert_ok(wx_task_from_json(&t, v, &err), &err);
        wx_task_release(&t);
        json_decref(v);
        free(text);
    }
    expect_field_error("-1", "{}", "",
                       "seed: must be an integer in [0, 9223372036854775807]"
                       ", got -1");
    expect_field_error("9223372036854775808", "{}", "",
                       "got 9223372036854775808");
    expect_field_error("18446744073709551616", "{}", "",
                       "got 18446744073709551616");
    expect_field_error("true", "{}", "", "seed: must be an integer, got "
                                         "boolean");
    expect_field_error("42.0", "{}", "", "seed: must be an integer, got "
                                         "float");
    expect_field_error("\"42\"", "{}", "", "got string");
}

static void test_params_rules(void **state)
{
    expect_field_error("1", "[1]", "", "params: must be an object, got array");
    expect_field_error("1", "{\"x\":[1]}", "",
                       "params.x: must be a boolean, integer, float or "
                       "string, got array");
    expect_field_error("1", "{\"x\":null}", "", "params.x:");
    expect_field_error("1", "{\"x\":{}}", "", "got object");
    expect_field_error("1", "{\"n\":1180591620717411303424}", "",
                       "params.n: integer 1180591620717411303424 is outside "
                       "the int64 range");
}

static void test_field_rules(void **state)
{
    expect_task_error("[]", "task must be a JSON object");
    expect_task_error("{\"entrypoint\":\"a.b/c\",\"params\":{},\"seed\":1}",
                      "bundle_ref: is required");
    expect_task_error("{\"bundle_ref\":\"\",\"entrypoint\":\"a.b/c\","
                      "\"params\":{},\"seed\":1}",
                      "bundle_ref: must not be empty");
    expect_task_error("{\"bundle_ref\":\"local://x\",\"entrypoint\":\"a.b/c\","
                      "\"params\":{},\"seed\":1}",
                      "bundle_ref: must be sha256:<64 lowercase hex>");
    expect_task_error("{\"bundle_ref\":\"" REF "\",\"entrypoint\":\"\","
                      "\"params\":{},\"seed\":1}",
                      "entrypoint: must not be empty");
    expect_task_error("{\"bundle_ref\":\"" REF "\",\"entrypoint\":"
                      "\"not:valid:format\",\"params\":{},\"seed\":1}",
                      "entrypoint: Invalid entrypoint format");
    expect_task_error("{\"bundle_ref\":\"" REF "\",\"entrypoint\":\"a.b/C\","
                      "\"params\":{},\"seed\":1}",
                      "entrypoint: Invalid scenario slug: C");
    expect_task_error("{\"bundle_ref\":\"" REF "\",\"entrypoint\":\"a.b/c\","
                      "\"params\":{},\"seed\":1,\"paramz\":{}}",
                      "task: unknown field 'paramz'");
    expect_field_error("1", "{}", ",\"outputs\":\"table\"",
                       "outputs: must be a list, got string");
    expect_field_error("1", "{}", ",\"outputs\":[\"a\",2]",
                       "outputs[1]: must be a string, got integer");
    expect_field_error("1", "{}", ",\"config\":[]",
                       "config: must be an object, got array");
    expect_field_error("1", "{}", ",\"env\":\"x\"",
                       "env: must be an object, got string");
}

static void test_bundle_refs(void **state)
{
    wx_error err = WX_ERROR_INIT;
    const char *good[] = {REF, "sir-demo@" REF, "host:5000/team/sir@" REF};
    const char *bad[] = {"sha256:ABABABABABABABABABABABABABABABABABABABABABABAB"
                         "ABABABABABABABABAB",
                         "sha256:abab", "@" REF, "-x@" REF, "a b@" REF,
                         REF "@x"};

    for (size_t i = 0; i < 3; i++)
        assert_ok(wx_bundle_ref_validate(good[i], &err), &err);
    for (size_t i = 0; i < 6; i++)
        assert_fails(wx_bundle_ref_validate(bad[i], &err), WX_EINVAL, &err,
                     "bundle_ref: must be");
}

static wx_replicate_set make_set(int64_t seed, int64_t n, int64_t offset)
{
    char seed_text[32];
    char *text;
    json_t *v;
    wx_error err = WX_ERROR_INIT;
    wx_replicate_set rs = {0};

    snprintf(seed_text, sizeof(seed_text), "%lld", (long long)seed);
    text = task_text(seed_text, "{\"alpha\":1.0,\"beta\":2.0}", "");
    v = tu_json(text);
    assert_ok(wx_task_from_json(&rs.base, v, &err), &err);
    rs.n_replicates = n;
    rs.seed_offset = offset;
    json_decref(v);
    free(text);
    return rs;
}

static void test_replicate_set_rules(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_replicate_set rs = make_set(INT64_MAX - 2, 3, 0);
    int64_t seed;

    assert_ok(wx_replicate_set_validate(&rs, &err), &err);
    assert_ok(wx_replicate_seed(&rs, 2, &seed, &err), &err);
    assert_int_equal(seed, INT64_MAX);
    rs.n_replicates = 4;
    assert_fails(wx_replicate_set_validate(&rs, &err), WX_EINVAL, &err,
                 "past the largest seed");
    rs.n_replicates = 0;
    assert_fails(wx_replicate_set_validate(&rs, &err), WX_EINVAL, &err,
                 "n_replicates: must be at least 1");
    rs.n_replicates = 1;
    rs.seed_offset = -1;
    assert_fails(wx_replicate_set_validate(&rs, &err), WX_EINVAL, &err,
                 "seed_offset: must not be negative");
    assert_fails(wx_replicate_seed(&rs, 5, &seed, &err), WX_EINVAL, &err,
                 "outside");
    wx_replicate_set_release(&rs);
}

static void test_replicate_set_json(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_replicate_set rs = make_set(42, 3, 10), back;
    json_t *v, *v2;
    char *x, *y;

    assert_ok(wx_replicate_set_to_json(&rs, &v, &err), &err);
    assert_ok(wx_replicate_set_from_json(&back, v, &err), &err);
    assert_int_equal(back.n_replicates, 3);
    assert_int_equal(back.seed_offset, 10);
    assert_ok(wx_replicate_set_to_json(&back, &v2, &err), &err);
    x = tu_canon(v);
    y = tu_canon(v2);
    assert_string_equal(x, y);
    json_object_set_new(v, "n_replicates", json_integer(0));
    wx_replicate_set_release(&back);
    assert_fails(wx_replicate_set_from_json(&back, v, &err), WX_EINVAL, &err,
                 "n_replicates");
    wx_free(x);
    wx_free(y);
    json_decref(v);
    json_decref(v2);
    wx_replicate_set_release(&rs);
}

static const char SR[] = "{\"task_id\":\"t1\",\"sim_root\":\"" ROOT "\","
                         "\"outputs\":{\"x\":{\"size\":0,\"checksum\":\""
                         HEX_A "\",\"inline\":\"\"}}}";

static void test_agg_task(void **state)
{
    char *text = NULL;
    json_t *v, *back;
    wx_error err = WX_ERROR_INIT;
    wx_agg_task t, t2;
    char id[17], full[65], *x, *y;

    assert_true(asprintf(&text,
                         "{\"bundle_ref\":\"" REF "\",\"target_entrypoint\":"
                         "\"targets.compute_loss/compute_loss\","
                         "\"sim_returns\":[%s],\"target_data\":{\"obs\":[1]}}",
                         SR) > 0);
    v = tu_json(text);
    assert_ok(wx_agg_task_from_json(&t, v, &err), &err);
    assert_int_equal(t.n_sim_returns, 1);
    assert_ok(wx_agg_task_id(&t, id, full, &err), &err);
    {
        const char *roots[] = {ROOT};
        char expect[17];

        assert_ok(wx_aggregation_id("targets.compute_loss/compute_loss",
                                    roots, 1, expect, NULL, &err),
                  &err);
        assert_string_equal(id, expect);
    }
    assert_ok(wx_agg_task_to_json(&t, &back, &err), &err);
    assert_ok(wx_agg_task_from_json(&t2, back, &err), &err);
    x = tu_canon(back);
    json_decref(back);
    assert_ok(wx_agg_task_to_json(&t2, &back, &err), &err);
    y = tu_canon(back);
    assert_string_equal(x, y);
    wx_agg_task_release(&t);
    wx_agg_task_release(&t2);
    wx_free(x);
    wx_free(y);
    json_decref(v);
    json_decref(back);
    free(text);
}

static void test_agg_task_errors(void **state)
{
    wx_error err = WX_ERROR_INIT;
    const char *bad[][2] = {
        {"{\"bundle_ref\":\"" REF "\",\"target_entrypoint\":\"t.m:loss\","
         "\"sim_returns\":[]}",
         "sim_returns: must not be empty"},
        {"{\"bundle_ref\":\"" REF "\",\"target_entrypoint\":\"loss\","
         "\"sim_returns\":[1]}",
         "target_entrypoint: Invalid entrypoint format"},
        {"{\"bundle_ref\":\"" REF "\",\"target_entrypoint\":\"t.m:loss\","
         "\"sim_returns\":[{\"task_id\":\"t\"}]}",
         "sim_returns[0]: sim_root: is required"},
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *v = tu_json(bad[i][0]);
        wx_agg_task t;

        assert_fails(wx_agg_task_from_json(&t, v, &err), WX_EINVAL, &err,
                     bad[i][1]);
        assert_null(t.sim_returns);
        json_decref(v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_task),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_ids_follow_the_contract),
        cmocka_unit_test(test_seed_rules),
        cmocka_unit_test(test_params_rules),
        cmocka_unit_test(test_field_rules),
        cmocka_unit_test(test_bundle_refs),
        cmocka_unit_test(test_replicate_set_rules),
        cmocka_unit_test(test_replicate_set_json),
        cmocka_unit_test(test_agg_task),
        cmocka_unit_test(test_agg_task_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
