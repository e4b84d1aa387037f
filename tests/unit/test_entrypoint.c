/* Entrypoint grammar beyond the vectors: targets, limits, formatting. */
#include "testutil.h"

static void expect_valid(const char *s, wx_entrypoint_kind kind,
                         const char *import_path, const char *name)
{
    wx_error err = WX_ERROR_INIT;
    wx_entrypoint ep;

    assert_ok(wx_entrypoint_parse(s, kind, &ep, &err), &err);
    assert_int_equal(ep.import_len, strlen(import_path));
    assert_memory_equal(s, import_path, ep.import_len);
    assert_int_equal(ep.name_len, strlen(name));
    assert_memory_equal(s + ep.name_off, name, ep.name_len);
}

static void expect_invalid(const char *s, wx_entrypoint_kind kind,
                           const char *message)
{
    wx_error err = WX_ERROR_INIT;

    assert_fails(wx_entrypoint_parse(s, kind, NULL, &err), WX_EINVAL, &err,
                 message);
}

static void test_model_entrypoints(void **state)
{
    expect_valid("models.sir/baseline", WX_EP_MODEL, "models.sir",
                 "baseline");
    expect_valid("pkg.Model/high-growth.v2", WX_EP_MODEL, "pkg.Model",
                 "high-growth.v2");
    expect_valid("_internal.package_123.MyClass_ABC/x", WX_EP_MODEL,
                 "_internal.package_123.MyClass_ABC", "x");
    /* The colon form is for targets only. */
    expect_invalid("targets.loss:mse", WX_EP_MODEL,
                   "Invalid entrypoint format: targets.loss:mse");
}

static void test_target_entrypoints(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_entrypoint ep;

    expect_valid("targets.incidence:mse", WX_EP_TARGET, "targets.incidence",
                 "mse");
    assert_ok(wx_entrypoint_parse("targets.incidence:poisson_loglik",
                                  WX_EP_TARGET, &ep, &err),
              &err);
    assert_int_equal(ep.sep, ':');
    /* The older slash form, with a slug or an identifier. */
    expect_valid("targets.compute_loss/compute_loss", WX_EP_TARGET,
                 "targets.compute_loss", "compute_loss");
    expect_valid("targets.t/Loss_Fn", WX_EP_TARGET, "targets.t", "Loss_Fn");
    expect_invalid("targets.t:", WX_EP_TARGET, "Invalid object name: ");
    expect_invalid("targets.t:__", WX_EP_TARGET, "Invalid object name: __");
    expect_invalid("targets.t:a-b", WX_EP_TARGET, "Invalid object name: a-b");
    expect_invalid("targets:mse", WX_EP_TARGET,
                   "Invalid import_path format: targets");
    expect_invalid("a.b/c:d", WX_EP_TARGET, "Invalid entrypoint format");
    expect_invalid("targets.t", WX_EP_TARGET, "Invalid entrypoint format");
}

static void test_unicode_word_characters(void **state)
{
    expect_valid("pkg.m\xc3\xb3" "dulo:f\xc3\xbcnf", WX_EP_TARGET,
                 "pkg.m\xc3\xb3" "dulo", "f\xc3\xbcnf");
    /* The first character of the path and of its last part is ASCII. */
    expect_invalid("pkg.\xc3\xb3/x", WX_EP_MODEL, "Invalid import_path");
    expect_invalid("pkg.m\xff/x", WX_EP_MODEL, "Invalid import_path");
    expect_invalid("pkg.a\xe2\x80\xa8/x", WX_EP_MODEL, "Invalid import_path");
}

static void test_trailing_newline_rejected(void **state)
{
    /* Python's `$` accepts these; warmexec does not (docs/formats.md). */
    expect_invalid("pkg.mod/baseline\n", WX_EP_MODEL, "Invalid scenario");
    expect_invalid("pkg.mod\n/x", WX_EP_MODEL, "Invalid import_path");
    expect_invalid("targets.t:mse\n", WX_EP_TARGET, "Invalid object name");
}

static void test_length_limit(void **state)
{
    char s[WX_ENTRYPOINT_MAX + 8];

    memset(s, 'a', sizeof(s) - 1);
    s[sizeof(s) - 1] = '\0';
    s[1] = '.';
    s[sizeof(s) - 3] = '/';
    expect_invalid(s, WX_EP_MODEL, "longer than 1024 bytes");
}

static void test_format(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(4096);

    assert_ok(wx_entrypoint_format("covid.models", "lockdown", &b, &err),
              &err);
    assert_string_equal(b.data, "covid.models/lockdown");
    assert_fails(wx_entrypoint_format("covid", "x", &b, &err), WX_EINVAL,
                 &err, "Invalid import_path format: covid");
    assert_fails(wx_entrypoint_format("covid.m", "X", &b, &err), WX_EINVAL,
                 &err, "Invalid scenario slug: X");
    assert_string_equal(b.data, "covid.models/lockdown");
    wx_buf_release(&b);
}

static void test_scenario_fallback(void **state)
{
    char sc[WX_SCENARIO_MAX + 1];

    wx_entrypoint_scenario("m.x/optimistic", sc);
    assert_string_equal(sc, "optimistic");
    wx_entrypoint_scenario("main", sc);
    assert_string_equal(sc, "baseline");
    wx_entrypoint_scenario("m.x/BAD", sc);
    assert_string_equal(sc, "baseline");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_entrypoints),
        cmocka_unit_test(test_target_entrypoints),
        cmocka_unit_test(test_unicode_word_characters),
        cmocka_unit_test(test_trailing_newline_rejected),
        cmocka_unit_test(test_length_limit),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_scenario_fallback),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
