/* The strict JSON reader. */
#include "testutil.h"

#include <math.h>

#include "alloc.h"
#include "json.h"

static int parse(const char *text, json_t **out, wx_error *err)
{
    return wx_json_parse(text, strlen(text), out, err);
}

static void expect_invalid(const char *text, const char *needle)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = NULL;

    assert_fails(parse(text, &v, &err), WX_EINVAL, &err, needle);
    assert_null(v);
}

static void test_scalars(void **state)
{
    json_t *v = tu_json(" [true, false, null, 0, -0, 42, -7, 1.5, -0.0, "
                        "1e2, 1E-2, \"x\"] ");

    assert_int_equal(json_array_size(v), 12);
    assert_true(json_is_true(json_array_get(v, 0)));
    assert_true(json_is_false(json_array_get(v, 1)));
    assert_true(json_is_null(json_array_get(v, 2)));
    assert_true(json_is_integer(json_array_get(v, 3)));
    assert_true(json_is_integer(json_array_get(v, 4)));
    assert_int_equal(json_integer_value(json_array_get(v, 6)), -7);
    assert_true(json_is_real(json_array_get(v, 7)));
    assert_true(signbit(json_real_value(json_array_get(v, 8))));
    assert_true(json_is_real(json_array_get(v, 9)));
    assert_true(json_real_value(json_array_get(v, 10)) == 0.01);
    assert_string_equal(json_string_value(json_array_get(v, 11)), "x");
    json_decref(v);
}

static void test_int_and_float_stay_distinct(void **state)
{
    json_t *v = tu_json("{\"a\": 7, \"b\": 7.0}");

    assert_true(json_is_integer(json_object_get(v, "a")));
    assert_true(json_is_real(json_object_get(v, "b")));
    json_decref(v);
}

static void test_int64_edges_and_big_integers(void **state)
{
    json_t *v = tu_json("[9223372036854775807, -9223372036854775808, "
                        "9223372036854775808, 18446744073709551615, "
                        "-9223372036854775809, 1180591620717411303424]");
    size_t len;

    assert_int_equal(json_integer_value(json_array_get(v, 0)), INT64_MAX);
    assert_int_equal(json_integer_value(json_array_get(v, 1)), INT64_MIN);
    assert_string_equal(wx_json_bigint_text(json_array_get(v, 2), &len),
                        "9223372036854775808");
    assert_int_equal(len, 19);
    assert_string_equal(wx_json_bigint_text(json_array_get(v, 3), NULL),
                        "18446744073709551615");
    assert_string_equal(wx_json_bigint_text(json_array_get(v, 4), NULL),
                        "-9223372036854775809");
    assert_true(wx_json_is_bigint(json_array_get(v, 5)));
    assert_false(wx_json_is_bigint(json_array_get(v, 0)));
    assert_string_equal(wx_json_type_name(json_array_get(v, 5)), "integer");
    json_decref(v);
}

static void test_bigint_constructor(void **state)
{
    json_t *v = wx_json_bigint("-99999999999999999999", 21);

    assert_non_null(v);
    assert_true(wx_json_is_bigint(v));
    json_decref(v);
    assert_null(wx_json_bigint("42", 2));    /* fits int64 */
    assert_null(wx_json_bigint("0123456789012345678901", 22));
    assert_null(wx_json_bigint("12345678901234567890x", 21));
    assert_null(wx_json_bigint("-", 1));
}

static void test_too_many_digits(void **state)
{
    char text[WX_JSON_MAX_INT_DIGITS + 2];

    memset(text, '7', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    expect_invalid(text, "too many digits");
}

static void test_strings_and_escapes(void **state)
{
    json_t *v = tu_json("[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", "
                        "\"\\u00e9\\ud83d\\ude00\", \"caf\xc3\xa9\", "
                        "\"\\u0000x\"]");

    assert_string_equal(json_string_value(json_array_get(v, 0)),
                        "a\"b\\c/d\b\f\n\r\t");
    assert_string_equal(json_string_value(json_array_get(v, 1)),
                        "\xc3\xa9\xf0\x9f\x98\x80");
    assert_string_equal(json_string_value(json_array_get(v, 2)),
                        "caf\xc3\xa9");
    assert_int_equal(json_string_length(json_array_get(v, 3)), 2);
    json_decref(v);
}

/*
 * Plain runs are scanned eight bytes at a time: an escape, a quote, a
 * control character or a UTF-8 sequence at every position of a word must
 * still be seen.
 */
static void test_special_characters_at_every_offset(void **state)
{
    static const struct {
        const char *json, *decoded;
    } specials[] = {{"\\n", "\n"},       {"\\\"", "\""},
                    {"\\\\", "\\"},   {"\xc3\xa9", "\xc3\xa9"},
                    {"\\u00e9", "\xc3\xa9"}};
    wx_error err = WX_ERROR_INIT;

    for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
        for (size_t at = 0; at < 24; at++) {
            char text[128], want[64];
            json_t *v;

            memset(want, 'a', at);
            snprintf(want + at, sizeof(want) - at, "%sbbbbbbbbbbbb",
                     specials[k].decoded);
            snprintf(text, sizeof(text), "\"%.*s%sbbbbbbbbbbbb\"", (int)at,
                     "aaaaaaaaaaaaaaaaaaaaaaaa", specials[k].json);
            assert_ok(wx_json_parse(text, strlen(text), &v, &err), &err);
            assert_string_equal(json_string_value(v), want);
            json_decref(v);
            /* A raw control character is refused wherever it is. */
            text[1 + at] = '\x01';
            assert_fails(wx_json_parse(text, strlen(text), &v, &err),
                         WX_EINVAL, &err, "control character");
        }
    }
}

static void test_duplicate_keys_last_wins(void **state)
{
    json_t *v = tu_json("{\"k\": 1, \"k\": 2}");

    assert_int_equal(json_object_size(v), 1);
    assert_int_equal(json_integer_value(json_object_get(v, "k")), 2);
    json_decref(v);
}

static void test_key_with_nul(void **state)
{
    json_t *v = tu_json("{\"a\\u0000b\": 1, \"a\": 2}");

    assert_int_equal(json_object_size(v), 2);
    assert_non_null(json_object_getn(v, "a\0b", 3));
    json_decref(v);
}

static void test_rejections(void **state)
{
    expect_invalid("", "found the end of the input");
    expect_invalid("   ", "end of the input");
    expect_invalid("{\"a\": 1,}", "expected a string key");
    expect_invalid("[1,]", "expected a value");
    expect_invalid("[1 2]", "expected ',' or ']'");
    expect_invalid("{\"a\" 1}", "expected ':'");
    expect_invalid("{\"a\": 1 \"b\": 2}", "expected ',' or '}'");
    expect_invalid("01", "extra data");
    expect_invalid("1.", "invalid number");
    expect_invalid(".5", "expected a value");
    expect_invalid("1e", "invalid number");
    expect_invalid("-", "invalid number");
    expect_invalid("+1", "expected a value");
    expect_invalid("tru", "expected a value");
    expect_invalid("\"abc", "unterminated string");
    expect_invalid("\"a\tb\"", "control character");
    expect_invalid("\"\\x\"", "invalid escape");
    expect_invalid("\"\\u12\"", "invalid \\u escape");
    expect_invalid("\"\\ud800\"", "lone surrogate");
    expect_invalid("\"\\udc00\"", "lone surrogate");
    expect_invalid("\"\\ud800\\u0041\"", "lone surrogate");
    expect_invalid("\"\xff\"", "invalid UTF-8");
    expect_invalid("\"\xc0\xaf\"", "invalid UTF-8");       /* overlong */
    expect_invalid("\"\xed\xa0\x80\"", "invalid UTF-8");   /* surrogate */
    expect_invalid("\"\xf4\x90\x80\x80\"", "invalid UTF-8"); /* > U+10FFFF */
    expect_invalid("\"\xe2\x82\"", "invalid UTF-8");       /* truncated */
    expect_invalid("\xef\xbb\xbf{}", "byte order mark");
    expect_invalid("[1] x", "extra data");
    expect_invalid("1e400", "Non-finite float not allowed: inf");
    expect_invalid("-1e400", "Non-finite float not allowed: -inf");
    expect_invalid("NaN", "Non-finite float not allowed: nan");
}

static void test_error_position(void **state)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = NULL;

    assert_fails(parse("{\n  \"a\": [1,\n   x]}", &v, &err), WX_EINVAL, &err,
                 "line 3 column 4");
}

static void test_nonfinite_as_null(void **state)
{
    const char *text = "{\"a\": NaN, \"b\": [Infinity, -Infinity, 1e999], "
                       "\"c\": 1.5}";
    wx_error err = WX_ERROR_INIT;
    json_t *v = NULL;

    assert_ok(wx_json_parse_flags(text, strlen(text),
                                  WX_JSON_NONFINITE_AS_NULL, &v, &err),
              &err);
    assert_true(json_is_null(json_object_get(v, "a")));
    assert_int_equal(json_array_size(json_object_get(v, "b")), 3);
    assert_true(json_is_null(json_array_get(json_object_get(v, "b"), 2)));
    assert_true(json_real_value(json_object_get(v, "c")) == 1.5);
    json_decref(v);
    /* Without the flag the same text is refused. */
    assert_fails(wx_json_parse(text, strlen(text), &v, &err), WX_EINVAL, &err,
                 "Non-finite float not allowed: nan");
}

static void test_error_path(void **state)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = NULL;

    assert_fails(parse("{\"a\": [1, {\"b\": [true, NaN]}]}", &v, &err),
                 WX_EINVAL, &err, ", in a[1].b[1]: Non-finite");
    /* After a member is complete its key is no longer part of the path. */
    assert_fails(parse("{\"k\": {\"x\": 1 \"y\": 2}}", &v, &err),
                 WX_EINVAL, &err, ", in k: expected ',' or '}'");
    assert_fails(parse("[0, 1, 2, -]", &v, &err), WX_EINVAL, &err,
                 ", in [3]: invalid number");
}

static void test_depth_limit(void **state)
{
    size_t depth = WX_JSON_MAX_DEPTH + 1;
    char *text = malloc(2 * depth + 1);
    wx_error err = WX_ERROR_INIT;
    json_t *v = NULL;

    memset(text, '[', depth);
    memset(text + depth, ']', depth);
    text[2 * depth] = '\0';
    assert_fails(parse(text, &v, &err), WX_EINVAL, &err, "nesting too deep");
    /* One level less is fine. */
    text[depth - 1] = ' ';
    text[depth] = ' ';
    assert_ok(parse(text, &v, &err), &err);
    json_decref(v);
    free(text);
}

static void test_not_nul_terminated(void **state)
{
    const char text[] = {'[', '1', ']', '9'};
    wx_error err = WX_ERROR_INIT;
    json_t *v = NULL;

    assert_ok(wx_json_parse(text, 3, &v, &err), &err);
    assert_int_equal(json_array_size(v), 1);
    json_decref(v);
}

static void test_out_of_memory(void **state)
{
    const char *text = "{\"a\": [1, 2, {\"b\": \"xyz\"}], \"c\": 1.5}";

    /* Fail each allocation in turn: every failure is clean WX_ENOMEM. */
    for (long n = 0; n < 8; n++) {
        wx_error err = WX_ERROR_INIT;
        json_t *v = NULL;
        int rc;

        wx__alloc_fail_after(n);
        rc = parse(text, &v, &err);
        wx__alloc_fail_after(-1);
        if (rc == 0) {
            json_decref(v);
            continue;
        }
        assert_int_equal(rc, WX_ENOMEM);
        assert_null(v);
    }
}

static void test_utf8_validity_past_ascii_runs(void **state)
{
    /* The check skips ASCII eight bytes at a time: what follows a run
       (valid sequences, a bad or a cut byte) is still checked. */
    static const struct {
        const char *s;
        bool valid;
    } cases[] = {
        {"abcdefghijklmnop", true},
        {"abcdefgh\xc3\xa9ijklmnop\xf0\x9f\x98\x80", true},
        {"abcdefghijk\xff", false},
        {"abcdefgh\xc3\xa9ijklmnop\xe2\x82", false},
        {"abcdefghijklmnop\xc0\xaf", false},
        {"abcdefghijklmnop\xed\xa0\x80", false}, /* a surrogate */
        {"\x80" "abcdefghijklmnop", false},
        {"abcdefg\xff" "ijklmnop", false},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(wx__utf8_valid(cases[i].s, strlen(cases[i].s)),
                         cases[i].valid);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_int_and_float_stay_distinct),
        cmocka_unit_test(test_int64_edges_and_big_integers),
        cmocka_unit_test(test_bigint_constructor),
        cmocka_unit_test(test_too_many_digits),
        cmocka_unit_test(test_strings_and_escapes),
        cmocka_unit_test(test_special_characters_at_every_offset),
        cmocka_unit_test(test_duplicate_keys_last_wins),
        cmocka_unit_test(test_key_with_nul),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_error_position),
        cmocka_unit_test(test_nonfinite_as_null),
        cmocka_unit_test(test_error_path),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_not_nul_terminated),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_utf8_validity_past_ascii_runs),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
