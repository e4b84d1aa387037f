/* Unit tests of the error codes and the wx_error detail record. */
#include "testutil.h"

#include <errno.h>
#include <limits.h>

#include <warmexec/error.h>

/* A message of `n` 'x' characters, longer than any wx_error can hold. */
static char *long_text(size_t n)
{
    char *s = malloc(n + 1);

    assert_non_null(s);
    memset(s, 'x', n);
    s[n] = '\0';
    return s;
}

static void assert_message_full(const wx_error *err)
{
    assert_int_equal(err->message[WX_ERROR_MSG_MAX - 1], '\0');
    assert_int_equal(strlen(err->message), WX_ERROR_MSG_MAX - 1);
}

/* A wx_error followed by guard bytes that catch a write past its end. */
typedef struct guarded_error {
    wx_error err;
    unsigned char guard[64];
} guarded_error;

static void guard_init(guarded_error *g)
{
    memset(g, 0, sizeof(*g));
    memset(g->guard, 0x5a, sizeof(g->guard));
}

static void assert_guard_intact(const guarded_error *g)
{
    for (size_t i = 0; i < sizeof(g->guard); i++)
        assert_int_equal(g->guard[i], 0x5a);
}

/* The message is `full` cut to WX_ERROR_MSG_MAX - 1 bytes. */
static void assert_message_cut_from(const guarded_error *g, const char *full)
{
    size_t len = strlen(full);

    if (len > WX_ERROR_MSG_MAX - 1)
        len = WX_ERROR_MSG_MAX - 1;
    assert_int_equal(strlen(g->err.message), len);
    assert_memory_equal(g->err.message, full, len);
    assert_guard_intact(g);
}

static void test_every_code_has_its_name_and_description(void **state)
{
    static const struct {
        int code;
        int value;
        const char *name;
        const char *desc;
    } codes[] = {
#define CODE_ROW(name, value, desc) {WX_##name, value, #name, desc},
        WX_ERRNO_MAP(CODE_ROW)
#undef CODE_ROW
    };

    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_int_equal(codes[i].code, codes[i].value);
        assert_true(codes[i].code < 0);
        assert_string_equal(wx_err_name(codes[i].code), codes[i].name);
        assert_string_equal(wx_strerror(codes[i].code), codes[i].desc);
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(codes[i].code, codes[j].code);
    }
}

static void test_codes_keep_their_values(void **state)
{
    assert_int_equal(WX_OK, 0);
    assert_int_equal(WX_EINVAL, -1);
    assert_int_equal(WX_ETOOBIG, -4);
    assert_int_equal(WX_ENOTFOUND, -5);
    assert_int_equal(WX_EINTERNAL, -15);
    assert_string_equal(wx_err_name(WX_EINVAL), "EINVAL");
    assert_string_equal(wx_strerror(WX_ENOMEM), "out of memory");
}

static void test_success_has_name_and_description(void **state)
{
    assert_string_equal(wx_err_name(WX_OK), "OK");
    assert_string_equal(wx_strerror(WX_OK), "success");
}

static void test_unknown_code_is_described(void **state)
{
    const int unknown[] = {1, -16, -1000, INT_MIN, INT_MAX};

    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        assert_string_equal(wx_err_name(unknown[i]), "EUNKNOWN");
        assert_string_equal(wx_strerror(unknown[i]), "unknown error");
    }
}

static void test_set_fills_record_and_returns_code(void **state)
{
    wx_error err = {WX_EIO, EPERM, "stale"};

    assert_int_equal(wx_error_set(&err, WX_ENOTFOUND, "no %s #%d", "task",
                                  7),
                     WX_ENOTFOUND);
    assert_int_equal(err.code, WX_ENOTFOUND);
    assert_int_equal(err.sys_errno, 0);
    assert_string_equal(err.message, "no task #7");
}

static void test_set_truncates_long_message(void **state)
{
    guarded_error g;
    char *text = long_text(5000);

    guard_init(&g);
    assert_int_equal(wx_error_set(&g.err, WX_EINVAL, "%s", text), WX_EINVAL);
    assert_message_full(&g.err);
    assert_message_cut_from(&g, text);
    free(text);
}

static void test_set_sys_appends_strerror(void **state)
{
    wx_error err = WX_ERROR_INIT;
    char expected[WX_ERROR_MSG_MAX];

    snprintf(expected, sizeof(expected), "open a.json: %s", strerror(ENOENT));
    assert_int_equal(wx_error_set_sys(&err, WX_EIO, ENOENT, "open %s",
                                      "a.json"),
                     WX_EIO);
    assert_int_equal(err.code, WX_EIO);
    assert_int_equal(err.sys_errno, ENOENT);
    assert_string_equal(err.message, expected);
}

static void test_set_sys_truncates_at_every_length(void **state)
{
    char *text = long_text(WX_ERROR_MSG_MAX);
    char full[2 * WX_ERROR_MSG_MAX];

    for (int n = WX_ERROR_MSG_MAX - 40; n <= WX_ERROR_MSG_MAX; n++) {
        guarded_error g;

        guard_init(&g);
        snprintf(full, sizeof(full), "%.*s: %s", n, text, strerror(EACCES));
        wx_error_set_sys(&g.err, WX_EIO, EACCES, "%.*s", n, text);
        assert_message_cut_from(&g, full);
        assert_int_equal(g.err.sys_errno, EACCES);
    }
    free(text);
}

static void test_prefix_adds_context_and_keeps_code(void **state)
{
    wx_error err = WX_ERROR_INIT;
    char expected[WX_ERROR_MSG_MAX];

    snprintf(expected, sizeof(expected), "study s1: read failed: %s",
             strerror(EIO));
    wx_error_set_sys(&err, WX_EIO, EIO, "read failed");
    assert_int_equal(wx_error_prefix(&err, WX_EIO, "study %s", "s1"), WX_EIO);
    assert_string_equal(err.message, expected);
    assert_int_equal(err.code, WX_EIO);
    assert_int_equal(err.sys_errno, EIO);
}

static void test_prefix_sets_the_passed_status(void **state)
{
    wx_error err = WX_ERROR_INIT;

    /* A reply that is not JSON: the parser said EINVAL, the caller passes
       EPROTO up, and err must agree with the returned status. */
    wx_error_set(&err, WX_EINVAL, "invalid JSON");
    assert_int_equal(wx_error_prefix(&err, WX_EPROTO, "reply"), WX_EPROTO);
    assert_int_equal(err.code, WX_EPROTO);
    assert_string_equal(err.message, "reply: invalid JSON");
}

static void test_prefix_nests(void **state)
{
    wx_error err = WX_ERROR_INIT;

    wx_error_set(&err, WX_EINVAL, "bad value");
    wx_error_prefix(&err, WX_EINVAL, "field %s", "x");
    wx_error_prefix(&err, WX_EINVAL, "task %d", 3);
    assert_string_equal(err.message, "task 3: field x: bad value");
    assert_int_equal(err.code, WX_EINVAL);
}

static void test_prefix_does_nothing_on_success(void **state)
{
    wx_error err = WX_ERROR_INIT;

    wx_error_set(&err, WX_EPROTO, "earlier");
    assert_int_equal(wx_error_prefix(&err, 0, "context"), 0);
    assert_string_equal(err.message, "earlier");
    assert_int_equal(err.code, WX_EPROTO);
}

static void test_prefix_truncates_at_every_length(void **state)
{
    char *text = long_text(WX_ERROR_MSG_MAX);
    char full[2 * WX_ERROR_MSG_MAX];

    for (int n = WX_ERROR_MSG_MAX - 40; n < WX_ERROR_MSG_MAX; n++) {
        guarded_error g;

        guard_init(&g);
        wx_error_set(&g.err, WX_EINVAL, "%.*s", n, text);
        snprintf(full, sizeof(full), "context: %s", g.err.message);
        wx_error_prefix(&g.err, WX_EINVAL, "context");
        assert_message_cut_from(&g, full);
        assert_int_equal(g.err.code, WX_EINVAL);
    }
    free(text);
}

static void test_null_error_is_allowed(void **state)
{
    assert_int_equal(wx_error_set(NULL, WX_EINVAL, "x %d", 1), WX_EINVAL);
    assert_int_equal(wx_error_set_sys(NULL, WX_EIO, ENOENT, "x"), WX_EIO);
    assert_int_equal(wx_error_prefix(NULL, WX_EIO, "ctx"), WX_EIO);
    assert_int_equal(wx_error_prefix(NULL, 0, "ctx"), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_code_has_its_name_and_description),
        cmocka_unit_test(test_codes_keep_their_values),
        cmocka_unit_test(test_success_has_name_and_description),
        cmocka_unit_test(test_unknown_code_is_described),
        cmocka_unit_test(test_set_fills_record_and_returns_code),
        cmocka_unit_test(test_set_truncates_long_message),
        cmocka_unit_test(test_set_sys_appends_strerror),
        cmocka_unit_test(test_set_sys_truncates_at_every_length),
        cmocka_unit_test(test_prefix_adds_context_and_keeps_code),
        cmocka_unit_test(test_prefix_sets_the_passed_status),
        cmocka_unit_test(test_prefix_nests),
        cmocka_unit_test(test_prefix_does_nothing_on_success),
        cmocka_unit_test(test_prefix_truncates_at_every_length),
        cmocka_unit_test(test_null_error_is_allowed),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
