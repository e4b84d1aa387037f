/* The JSON writers: canonical (sorted, raw UTF-8) and wire (ASCII). */
#include "testutil.h"

static char *write_json(const json_t *v, unsigned flags)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(1u << 30);

    assert_ok(wx_json_write(&b, v, flags, &err), &err);
    return wx_buf_detach(&b, NULL);
}

static void expect_canon(const char *input, const char *expected)
{
    json_t *v = tu_json(input);
    char *out = tu_canon(v);

    assert_string_equal(out, expected);
    wx_free(out);
    json_decref(v);
}

static void test_sorting_by_code_point(void **state)
{
    /* UTF-8 byte order = code point order; U+FFFF before U+1F600 (not
       UTF-16 order) and a prefix before its extensions. */
    expect_canon("{\"\\ud83d\\ude00\": 1, \"\\uffff\": 2, \"ab\": 3, "
                 "\"a\": 4, \"B\": 5}",
                 "{\"B\":5,\"a\":4,\"ab\":3,\"\xef\xbf\xbf\":2,"
                 "\"\xf0\x9f\x98\x80\":1}");
}

static void test_nested_and_compact(void **state)
{
    expect_canon("{ \"z\" : [ 1 , { \"y\" : null , \"x\" : [ ] } ] , "
                 "\"a\" : { } }",
                 "{\"a\":{},\"z\":[1,{\"x\":[],\"y\":null}]}");
}

static void test_string_escapes_canonical(void **state)
{
    expect_canon("\"\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f "
                 "\\u2028\\u00e9/\"",
                 "\"\\\"\\\\\\n\\r\\t\\b\\f\\u0001\\u001f\x7f "
                 "\xe2\x80\xa8\xc3\xa9/\"");
}

static void test_ensure_ascii(void **state)
{
    json_t *v = tu_json("{\"k\": \"caf\\u00e9 \\ud83d\\ude00 \\u007f\"}");
    char *out = write_json(v, WX_JSON_ENSURE_ASCII);

    assert_string_equal(out, "{\"k\":\"caf\\u00e9 \\ud83d\\ude00 "
                             "\\u007f\"}");
    wx_free(out);
    json_decref(v);
}

static void test_insertion_order_without_sorting(void **state)
{
    json_t *v = tu_json("{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": "
                        "\"ready\", \"params\": {}}");
    char *out = write_json(v, WX_JSON_ENSURE_ASCII);

    assert_string_equal(out, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":"
                             "\"ready\",\"params\":{}}");
    wx_free(out);
    json_decref(v);
}

static void test_numbers(void **state)
{
    expect_canon("[1, 1.0, -0.0, -0, 1e5, 123456789012345678, 1.5e300, "
                 "-9223372036854775808, 18446744073709551615, "
                 "-18446744073709551615]",
                 "[1,1.0,-0.0,0,100000.0,123456789012345678,1.5e+300,"
                 "-9223372036854775808,18446744073709551615,"
                 "-18446744073709551615]");
}

static void test_failure_leaves_buffer_unchanged(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(12);
    json_t *v = tu_json("{\"key\": \"a long value\"}");

    assert_ok(wx_buf_puts(&b, "prefix", &err), &err);
    assert_fails(wx_json_canonical(&b, v, &err), WX_ETOOBIG, &err, "limit");
    assert_string_equal(b.data, "prefix");
    wx_buf_release(&b);
    json_decref(v);
}

static void test_invalid_utf8_string(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(1024);
    json_t *v = json_stringn_nocheck("\xe2\x82", 2);

    assert_fails(wx_json_write(&b, v, WX_JSON_ENSURE_ASCII, &err), WX_EINVAL,
                 &err, "UTF-8");
    json_decref(v);
    wx_buf_release(&b);
}

/* Write the string `s` alone (a JSON string) with `flags`. */
static char *write_string(const char *s, size_t len, unsigned flags)
{
    json_t *v = json_stringn_nocheck(s, len);
    char *out = write_json(v, flags);

    json_decref(v);
    return out;
}

static void test_escape_at_every_offset(void **state)
{
    /* The writer skips plain text eight bytes at a time: a byte to
       escape must be found wherever it falls in a long run. */
    static const struct {
        const char *in, *ascii, *raw;
    } cases[] = {
        {"\"", "\\\"", "\\\""},     {"\\", "\\\\", "\\\\"},
        {"\n", "\\n", "\\n"},         {"\x01", "\\u0001", "\\u0001"},
        {"\x7f", "\\u007f", "\x7f"},   {"~", "~", "~"},
        {"\xc3\xa9", "\\u00e9", "\xc3\xa9"},
    };

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        for (size_t at = 0; at <= 20; at++) {
            char in[64], ascii[64], raw[64];
            char *out;

            snprintf(in, sizeof(in), "%.*s%s%.*s", (int)at,
                     "abcdefghijklmnopqrstu", cases[c].in, (int)(20 - at),
                     "ABCDEFGHIJKLMNOPQRSTU");
            snprintf(ascii, sizeof(ascii), "\"%.*s%s%.*s\"", (int)at,
                     "abcdefghijklmnopqrstu", cases[c].ascii, (int)(20 - at),
                     "ABCDEFGHIJKLMNOPQRSTU");
            snprintf(raw, sizeof(raw), "\"%.*s%s%.*s\"", (int)at,
                     "abcdefghijklmnopqrstu", cases[c].raw, (int)(20 - at),
                     "ABCDEFGHIJKLMNOPQRSTU");
            out = write_string(in, strlen(in), WX_JSON_ENSURE_ASCII);
            assert_string_equal(out, ascii);
            wx_free(out);
            out = write_string(in, strlen(in), 0);
            assert_string_equal(out, raw);
            wx_free(out);
        }
    }
}

static void test_many_keys(void **state)
{
    json_t *v = json_object();
    char key[16], *out;

    /* More members than the writer's stack array. */
    for (int i = 99; i >= 0; i--) {
        snprintf(key, sizeof(key), "k%02d", i);
        json_object_set_new(v, key, json_integer(i));
    }
    out = tu_canon(v);
    assert_memory_equal(out, "{\"k00\":0,\"k01\":1,", 17);
    assert_non_null(strstr(out, "\"k98\":98,\"k99\":99}"));
    wx_free(out);
    json_decref(v);
}

static void test_large_string_round_trip(void **state)
{
    size_t n = 3u << 20;
    char *text = malloc(n + 3);
    json_t *v;
    char *out;

    text[0] = '"';
    for (size_t i = 1; i <= n; i++)
        text[i] = (char)('a' + i % 26);
    text[n + 1] = '"';
    text[n + 2] = '\0';
    v = tu_json(text);
    out = write_json(v, WX_JSON_ENSURE_ASCII);
    assert_string_equal(out, text);
    wx_free(out);
    json_decref(v);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sorting_by_code_point),
        cmocka_unit_test(test_nested_and_compact),
        cmocka_unit_test(test_string_escapes_canonical),
        cmocka_unit_test(test_ensure_ascii),
        cmocka_unit_test(test_insertion_order_without_sorting),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_failure_leaves_buffer_unchanged),
        cmocka_unit_test(test_invalid_utf8_string),
        cmocka_unit_test(test_escape_at_every_offset),
        cmocka_unit_test(test_many_keys),
        cmocka_unit_test(test_large_string_round_trip),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
