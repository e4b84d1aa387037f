/* Logging through the host callback. */
#include "testutil.h"

#include "log.h"

typedef struct captured {
    int calls;
    enum wx_log_level level;
    char line[256];
} captured;

static void capture(void *user, enum wx_log_level level, const char *msg)
{
    captured *c = user;

    c->calls++;
    c->level = level;
    snprintf(c->line, sizeof(c->line), "%s", msg);
}

static void test_lines_reach_the_callback(void **state)
{
    captured c = {0};

    wx_log_set(capture, &c, WX_LOG_INFO);
    wx__log(WX_LOG_WARN, "worker %d died: %s", 7, "SIGKILL");
    assert_int_equal(c.calls, 1);
    assert_int_equal(c.level, WX_LOG_WARN);
    assert_string_equal(c.line, "worker 7 died: SIGKILL");
    wx_log_set(NULL, NULL, WX_LOG_INFO);
}

static void test_level_filter(void **state)
{
    captured c = {0};

    wx_log_set(capture, &c, WX_LOG_WARN);
    assert_true(wx__log_enabled(WX_LOG_ERROR));
    assert_false(wx__log_enabled(WX_LOG_INFO));
    wx__log(WX_LOG_INFO, "dropped");
    wx__log(WX_LOG_DEBUG, "dropped");
    assert_int_equal(c.calls, 0);
    wx__log(WX_LOG_ERROR, "kept");
    assert_int_equal(c.calls, 1);
    wx_log_set(NULL, NULL, WX_LOG_DEBUG);
    assert_false(wx__log_enabled(WX_LOG_ERROR)); /* no callback */
    wx__log(WX_LOG_ERROR, "nowhere");
    assert_int_equal(c.calls, 1);
}

static void test_level_names(void **state)
{
    for (int l = WX_LOG_ERROR; l <= WX_LOG_DEBUG; l++)
        assert_int_equal(wx_log_level_parse(wx_log_level_name(l)), l);
    assert_int_equal(wx_log_level_parse("verbose"), -1);
    assert_string_equal(wx_log_level_name((enum wx_log_level)9), "unknown");
}

static void test_long_line_is_truncated(void **state)
{
    captured c = {0};
    char big[4000];

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    wx_log_set(capture, &c, WX_LOG_DEBUG);
    wx__log(WX_LOG_INFO, "%s", big);
    assert_int_equal(c.calls, 1);
    assert_int_equal(strlen(c.line), sizeof(c.line) - 1);
    wx_log_set(NULL, NULL, WX_LOG_INFO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_reach_the_callback),
        cmocka_unit_test(test_level_filter),
        cmocka_unit_test(test_level_names),
        cmocka_unit_test(test_long_line_is_truncated),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
