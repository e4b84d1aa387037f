/*
 * The byte-exact vectors computed with the Python original
 * (tests/data/contracts.json): float_repr, canonical_json, digest_bytes,
 * param_id, entrypoint_parse, sim_root, task_id, aggregation_id,
 * calib_root, shard and replicate_set.
 */
#include "testutil.h"

#include <inttypes.h>

#include "num.h"

static json_t *group(const char *name)
{
    json_t *g = json_object_get(tu_vectors(), name);

    if (!g)
        fail_msg("vector group %s missing", name);
    return json_is_object(g) && json_object_get(g, "cases")
               ? json_object_get(g, "cases")
               : g;
}

static const char *str(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    if (!s)
        fail_msg("vector field %s missing", key);
    return s;
}

/* A JSON value from a *_json_text field; NULL when the field is null. */
static json_t *json_field(const json_t *obj, const char *key)
{
    json_t *text = json_object_get(obj, key);

    return json_is_string(text) ? tu_json(json_string_value(text)) : NULL;
}

/* A seed stored as an exact integer (a big integer past INT64_MAX). */
static uint64_t u64(const json_t *v)
{
    const char *big = wx_json_bigint_text(v, NULL);

    if (big)
        return strtoull(big, NULL, 10);
    return (uint64_t)json_integer_value(v);
}

static void test_float_repr(void **state)
{
    json_t *c;
    size_t i;

    json_array_foreach(group("float_repr"), i, c)
    {
        uint64_t bits = strtoull(str(c, "bits_hex"), NULL, 16);
        char out[WX_FLOAT_REPR_MAX];
        double d;

        memcpy(&d, &bits, sizeof(d));
        out[wx__float_repr(d, out)] = '\0';
        assert_string_equal(out, str(c, "expected"));
    }
}

static void test_canonical_json(void **state)
{
    json_t *c;
    size_t i;

    json_array_foreach(group("canonical_json"), i, c)
    {
        json_t *v = json_field(c, "input_json_text");
        char *canon = tu_canon(v);
        char digest[WX_ID_LEN + 1];

        assert_string_equal(canon, str(c, "expected_utf8"));
        wx_digest_hex(canon, strlen(canon), digest);
        assert_string_equal(digest, str(c, "digest_bytes"));
        wx_free(canon);
        json_decref(v);
    }
}

static void test_canonical_json_errors(void **state)
{
    json_t *cases = json_object_get(
        json_object_get(tu_vectors(), "canonical_json"), "error_cases");
    json_t *c;
    size_t i;

    assert_true(json_array_size(cases) > 0);
    json_array_foreach(cases, i, c)
    {
        const char *text = str(c, "input_json_text");
        wx_error err = WX_ERROR_INIT;
        json_t *v = NULL;

        /* The original fails in canonical_json(); warmexec already
           refuses the non-JSON token when reading, with the same words. */
        assert_fails(wx_json_parse(text, strlen(text), &v, &err), WX_EINVAL,
                     &err, str(c, "message"));
    }
}

static void test_digest_bytes(void **state)
{
    json_t *c;
    size_t i;

    json_array_foreach(group("digest_bytes"), i, c)
    {
        const char *in = str(c, "input_utf8");
        char out[WX_ID_LEN + 1];

        wx_digest_hex(in, strlen(in), out);
        assert_string_equal(out, str(c, "expected"));
    }
}

static void test_param_id(void **state)
{
    json_t *c;
    size_t i;

    json_array_foreach(group("param_id"), i, c)
    {
        wx_error err = WX_ERROR_INIT;
        json_t *params = json_field(c, "params_json_text");
        char id[WX_ID_LEN + 1];
        char *canon = tu_canon(params);
        const char *pre = str(c, "hashed_preimage_utf8");

        assert_string_equal(canon, pre + strlen("contracts:param:v1|"));
        assert_ok(wx_param_id(params, id, &err), &err);
        assert_string_equal(id, str(c, "expected_param_id"));
        wx_free(canon);
        json_decref(params);
    }
}

/* The one deliberate deviation: a trailing newline is never accepted. */
static bool has_trailing_newline(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && s[n - 1] == '\n';
}

static void check_entrypoint_case(const json_t *c)
{
    const char *in = str(c, "input");
    wx_error err = WX_ERROR_INIT;
    wx_entrypoint ep;
    int rc = wx_entrypoint_parse(in, WX_EP_MODEL, &ep, &err);

    if (json_is_true(json_object_get(c, "valid")) &&
        !has_trailing_newline(in)) {
        const char *ip = str(c, "import_path"), *sc = str(c, "scenario");

        assert_ok(rc, &err);
        assert_int_equal(ep.import_len, strlen(ip));
        assert_memory_equal(in, ip, ep.import_len);
        assert_int_equal(ep.name_len, strlen(sc));
        assert_memory_equal(in + ep.name_off, sc, ep.name_len);
    } else if (has_trailing_newline(in)) {
        assert_int_equal(rc, WX_EINVAL);
    } else {
        assert_fails(rc, WX_EINVAL, &err, str(c, "error"));
        assert_string_equal(err.message, str(c, "error"));
    }
}

static void test_entrypoint_parse(void **state)
{
    json_t *c;
    size_t i, newline_cases = 0;

    json_array_foreach(group("entrypoint_parse"), i, c)
    {
        check_entrypoint_case(c);
        newline_cases += has_trailing_newline(str(c, "input"));
    }
    assert_int_equal(newline_cases, 1);
}

static void check_sim_root_case(const json_t *c)
{
    const json_t *in = json_object_get(c, "input");
    json_t *params = json_field(in, "params_json_text");
    json_t *config = json_field(in, "config_json_text");
    json_t *env = json_field(in, "env_json_text");
    wx_error err = WX_ERROR_INIT;
    char root[WX_ID_LEN + 1], scenario[WX_SCENARIO_MAX + 1];

    wx_entrypoint_scenario(str(in, "entrypoint"), scenario);
    assert_string_equal(scenario, str(c, "scenario_used"));
    assert_ok(wx_sim_root(str(in, "bundle_ref"), params,
                          u64(json_object_get(in, "seed")),
                          str(in, "entrypoint"), config, env, root, &err),
              &err);
    assert_string_equal(root, str(c, "expected_sim_root"));
    json_decref(params);
    json_decref(config);
    json_decref(env);
}

static void test_sim_root(void **state)
{
    json_t *c;
    size_t i;

    json_array_foreach(group("sim_root"), i, c) check_sim_root_case(c);
}

static void test_task_id(void **state)
{
    json_t *c;
    size_t i;

    json_array_foreach(group("task_id"), i, c)
    {
        const json_t *in = json_object_get(c, "input");
        json_t *outputs = json_object_get(in, "outputs");
        wx_error err = WX_ERROR_INIT;
        char id[WX_ID_LEN + 1];

        assert_ok(wx_task_id(str(in, "sim_root"), str(in, "entrypoint"),
                             json_is_null(outputs) ? NULL : outputs, id,
                             &err),
                  &err);
        assert_string_equal(id, str(c, "expected_task_id"));
    }
}

static void test_aggregation_id(void **state)
{
    json_t *c;
    size_t i;

    json_array_foreach(group("aggregation_id"), i, c)
    {
        const json_t *in = json_object_get(c, "input");
        const json_t *roots = json_object_get(in, "sim_roots");
        const char *list[16];
        char id[WX_AGG_ID_LEN + 1], full[WX_ID_LEN + 1];
        wx_error err = WX_ERROR_INIT;

        assert_true(json_array_size(roots) <= 16);
        for (size_t k = 0; k < json_array_size(roots); k++)
            list[k] = json_string_value(json_array_get(roots, k));
        assert_ok(wx_aggregation_id(str(in, "target_entrypoint"), list,
                                    json_array_size(roots), id, full, &err),
                  &err);
        assert_string_equal(id, str(c, "expected_aggregation_id"));
        assert_string_equal(full, str(c, "blake2b256_full"));
    }
}

static void test_calib_root(void **state)
{
    json_t *c;
    size_t i;

    json_array_foreach(group("calib_root"), i, c)
    {
        const json_t *in = json_object_get(c, "input");
        const json_t *roots = json_object_get(in, "sim_roots");
        const char *list[16];
        char root[WX_ID_LEN + 1];
        wx_error err = WX_ERROR_INIT;

        for (size_t k = 0; k < json_array_size(roots); k++)
            list[k] = json_string_value(json_array_get(roots, k));
        assert_ok(wx_calib_root(str(in, "targets_id"), str(in, "optimizer_id"),
                                list, json_array_size(roots),
                                str(in, "calib_code_id"), str(in, "env_id"),
                                root, &err),
                  &err);
        assert_string_equal(root, str(c, "expected_calib_root"));
    }
}

static void test_shard(void **state)
{
    json_t *c, *e = json_object_get(tu_vectors(), "shard_error");
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(4096);
    size_t i;

    json_array_foreach(group("shard"), i, c)
    {
        wx_buf_reset(&b);
        assert_ok(wx_shard(str(c, "digest"),
                           (int)json_integer_value(json_object_get(c, "depth")),
                           (int)json_integer_value(json_object_get(c, "width")),
                           &b, &err),
                  &err);
        assert_string_equal(b.data, str(c, "expected"));
    }
    assert_fails(wx_shard(str(e, "digest"),
                          (int)json_integer_value(json_object_get(e, "depth")),
                          (int)json_integer_value(json_object_get(e, "width")),
                          &b, &err),
                 WX_EINVAL, &err, str(e, "message"));
    wx_buf_release(&b);
}

static void test_replicate_set(void **state)
{
    json_t *v = group("replicate_set");
    json_t *seeds = json_object_get(v, "expected_task_seeds");
    json_t *keys = json_object_get(v, "contract_replicate_keys");
    wx_error err = WX_ERROR_INIT;
    char task_text[512];
    wx_replicate_set rs = {0};
    json_t *task;

    snprintf(task_text, sizeof(task_text),
             "{\"bundle_ref\":\"sha256:%064d\",\"entrypoint\":"
             "\"simulations.test/baseline\",\"params\":{\"alpha\":1.0,"
             "\"beta\":2.0},\"seed\":%" JSON_INTEGER_FORMAT "}",
             0, json_integer_value(json_object_get(v, "base_seed")));
    task = tu_json(task_text);
    assert_ok(wx_task_from_json(&rs.base, task, &err), &err);
    assert_string_equal(rs.base.param_id, str(v, "param_id"));
    rs.n_replicates = json_integer_value(json_object_get(v, "n_replicates"));
    rs.seed_offset = json_integer_value(json_object_get(v, "seed_offset"));
    assert_ok(wx_replicate_set_validate(&rs, &err), &err);
    for (int64_t i = 0; i < rs.n_replicates; i++) {
        wx_task t;
        char key[64];

        assert_ok(wx_replicate_task(&rs, i, &t, &err), &err);
        assert_int_equal(t.seed, json_integer_value(json_array_get(seeds, i)));
        wx_replicate_key(&rs, i, key, sizeof(key));
        assert_string_equal(key, json_string_value(json_array_get(keys, i)));
        wx_task_release(&t);
    }
    wx_replicate_set_release(&rs);
    json_decref(task);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float_repr),
        cmocka_unit_test(test_canonical_json),
        cmocka_unit_test(test_canonical_json_errors),
        cmocka_unit_test(test_digest_bytes),
        cmocka_unit_test(test_param_id),
        cmocka_unit_test(test_entrypoint_parse),
        cmocka_unit_test(test_sim_root),
        cmocka_unit_test(test_task_id),
        cmocka_unit_test(test_aggregation_id),
        cmocka_unit_test(test_calib_root),
        cmocka_unit_test(test_shard),
        cmocka_unit_test(test_replicate_set),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
