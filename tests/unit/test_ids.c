/* Identifier functions beyond the vectors: properties and errors. */
#include "testutil.h"

static const char ROOT_A[] =
    "a2ff36e934ff268b0ac9540443865f96556dbd5e7c704c48464ab8c46902c225";
static const char ROOT_B[] =
    "b8aab49e5a12ddb5327670b56f0cf4e995a1a32e1a35d49edde142ed4639fad8";

static void sim_root_of(const char *params, const char *config,
                        const char *env, uint64_t seed, char out[65])
{
    wx_error err = WX_ERROR_INIT;
    json_t *p = tu_json(params);
    json_t *c = config ? tu_json(config) : NULL;
    json_t *e = env ? tu_json(env) : NULL;

    assert_ok(wx_sim_root("sha256:abc", p, seed, "m.x/baseline", c, e, out,
                          &err),
              &err);
    json_decref(p);
    json_decref(c);
    json_decref(e);
}

static void test_param_id_ignores_key_order(void **state)
{
    wx_error err = WX_ERROR_INIT;
    json_t *a = tu_json("{\"x\": 1, \"y\": \"z\"}");
    json_t *b = tu_json("{\"y\": \"z\", \"x\": 1}");
    json_t *c = tu_json("{\"x\": 1.0, \"y\": \"z\"}");
    char ia[65], ib[65], ic[65];

    assert_ok(wx_param_id(a, ia, &err), &err);
    assert_ok(wx_param_id(b, ib, &err), &err);
    assert_ok(wx_param_id(c, ic, &err), &err);
    assert_string_equal(ia, ib);
    assert_string_not_equal(ia, ic); /* 1 and 1.0 differ */
    json_decref(a);
    json_decref(b);
    json_decref(c);
}

static void test_param_id_needs_object(void **state)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = tu_json("[1]");
    char id[65];

    assert_fails(wx_param_id(v, id, &err), WX_EINVAL, &err, "object");
    json_decref(v);
}

static void test_sim_root_empty_config_equals_absent(void **state)
{
    char none[65], empty[65], set[65], env[65];

    sim_root_of("{}", NULL, NULL, 1, none);
    sim_root_of("{}", "{}", "{}", 1, empty);
    sim_root_of("{}", "{\"dt\": 0.5}", NULL, 1, set);
    sim_root_of("{}", NULL, "{\"K\": \"v\"}", 1, env);
    assert_string_equal(none, empty);
    assert_string_not_equal(none, set);
    assert_string_not_equal(none, env);
    assert_string_not_equal(set, env);
}

static void test_sim_root_depends_on_seed(void **state)
{
    char a[65], b[65], c[65];

    sim_root_of("{}", NULL, NULL, 1, a);
    sim_root_of("{}", NULL, NULL, 2, b);
    sim_root_of("{}", NULL, NULL, UINT64_MAX, c);
    assert_string_not_equal(a, b);
    assert_string_not_equal(b, c);
}

static void test_task_id_outputs(void **state)
{
    wx_error err = WX_ERROR_INIT;
    json_t *bad = tu_json("[\"a\", 1]");
    json_t *ab = tu_json("[\"b\", \"a\"]");
    json_t *ba = tu_json("[\"a\", \"b\"]");
    char x[65], y[65], all[65];

    assert_fails(wx_task_id(ROOT_A, "m.x/y", bad, x, &err), WX_EINVAL, &err,
                 "outputs[1]");
    assert_ok(wx_task_id(ROOT_A, "m.x/y", ab, x, &err), &err);
    assert_ok(wx_task_id(ROOT_A, "m.x/y", ba, y, &err), &err);
    assert_ok(wx_task_id(ROOT_A, "m.x/y", NULL, all, &err), &err);
    assert_string_equal(x, y);
    assert_string_not_equal(x, all);
    json_decref(bad);
    json_decref(ab);
    json_decref(ba);
}

static void test_aggregation_id_order_and_duplicates(void **state)
{
    wx_error err = WX_ERROR_INIT;
    const char *ab[] = {ROOT_A, ROOT_B}, *ba[] = {ROOT_B, ROOT_A};
    const char *aab[] = {ROOT_A, ROOT_A, ROOT_B};
    char x[17], y[17], z[17], other[17];

    assert_ok(wx_aggregation_id("t.m:loss", ab, 2, x, NULL, &err), &err);
    assert_ok(wx_aggregation_id("t.m:loss", ba, 2, y, NULL, &err), &err);
    assert_ok(wx_aggregation_id("t.m:loss", aab, 3, z, NULL, &err), &err);
    assert_ok(wx_aggregation_id("t.m:other", ab, 2, other, NULL, &err), &err);
    assert_string_equal(x, y);
    assert_string_not_equal(x, z);
    assert_string_not_equal(x, other);
    assert_int_equal(strlen(x), 16);
}

static void test_calib_root_ignores_order(void **state)
{
    wx_error err = WX_ERROR_INIT;
    const char *ab[] = {ROOT_A, ROOT_B}, *ba[] = {ROOT_B, ROOT_A};
    char x[65], y[65];

    assert_ok(wx_calib_root("t", "o", ab, 2, "c", "e", x, &err), &err);
    assert_ok(wx_calib_root("t", "o", ba, 2, "c", "e", y, &err), &err);
    assert_string_equal(x, y);
}

static void test_shard_errors(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(256);

    assert_fails(wx_shard("abc", -1, 2, &b, &err), WX_EINVAL, &err,
                 "negative");
    assert_ok(wx_shard("abc", 0, 2, &b, &err), &err);
    assert_string_equal(b.data, "abc");
    wx_buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_id_ignores_key_order),
        cmocka_unit_test(test_param_id_needs_object),
        cmocka_unit_test(test_sim_root_empty_config_equals_absent),
        cmocka_unit_test(test_sim_root_depends_on_seed),
        cmocka_unit_test(test_task_id_outputs),
        cmocka_unit_test(test_aggregation_id_order_and_duplicates),
        cmocka_unit_test(test_calib_root_ignores_order),
        cmocka_unit_test(test_shard_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
