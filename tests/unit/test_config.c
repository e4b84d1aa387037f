/* Unit tests of the configuration table and its values. */
#define _GNU_SOURCE 1 /* setenv, unsetenv */
#include "testutil.h"

#include <ctype.h>

#include <warmexec/cas.h>
#include <warmexec/config.h>
#include <warmexec/log.h>

#include "alloc.h"

#define MiB (1024ll * 1024)
#define GiB (1024ll * MiB)

/* Each test starts from a known environment: HOME set, nothing else. */
static int clean_environment(void **state)
{
    for (int i = 0; i < WX_CONF__COUNT; i++)
        unsetenv(wx_conf_entry_get((wx_conf_id)i)->env);
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/tester", 1);
    return 0;
}

static wx_config *new_config(void)
{
    wx_error err = WX_ERROR_INIT;
    wx_config *cfg = NULL;

    assert_ok(wx_config_new(&cfg, &err), &err);
    assert_non_null(cfg);
    return cfg;
}

/* The effective value of `id` as wx_config_format() writes it. */
static void assert_formats_as(const wx_config *cfg, wx_conf_id id,
                              const char *expected)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(4096);

    assert_ok(wx_config_format(cfg, id, &b, &err), &err);
    assert_string_equal(b.data, expected);
    wx_buf_release(&b);
}

static void assert_all_default(const wx_config *cfg)
{
    for (int i = 0; i < WX_CONF__COUNT; i++)
        assert_int_equal(wx_config_source(cfg, (wx_conf_id)i),
                         WX_CONF_FROM_DEFAULT);
}

/* Set max_input_bytes from `text` and return the parsed value. */
static int64_t parse_bytes_ok(wx_config *cfg, const char *text)
{
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx_config_set(cfg, WX_CONF_MAX_INPUT_BYTES, text,
                            WX_CONF_FROM_FLAG, &err),
              &err);
    return wx_config_int(cfg, WX_CONF_MAX_INPUT_BYTES);
}

static void test_every_entry_is_complete(void **state)
{
    for (int i = 0; i < WX_CONF__COUNT; i++) {
        const wx_conf_entry *e = wx_conf_entry_get((wx_conf_id)i);
        char env[128] = "WARMEXEC_";

        assert_non_null(e);
        assert_non_null(e->name);
        assert_non_null(e->env);
        assert_non_null(e->doc);
        assert_true(e->name[0] != '\0');
        assert_true(e->doc[0] != '\0');
        assert_memory_equal(e->env, "WARMEXEC_", 9);
        for (size_t j = 0; e->name[j]; j++)
            env[9 + j] = (char)toupper((unsigned char)e->name[j]);
        assert_string_equal(e->env, env);
        assert_int_equal(wx_conf_find(e->name), i);
    }
}

static void test_entry_get_rejects_out_of_range_ids(void **state)
{
    assert_null(wx_conf_entry_get(WX_CONF__COUNT));
    assert_null(wx_conf_entry_get((wx_conf_id)-1));
}

static void test_find_by_name(void **state)
{
    assert_int_equal(wx_conf_find("home"), WX_CONF_HOME);
    assert_int_equal(wx_conf_find("log_level"), WX_CONF_LOG_LEVEL);
    assert_int_equal(wx_conf_find("max_input_bytes"),
                     WX_CONF_MAX_INPUT_BYTES);
    assert_int_equal(wx_conf_find("HOME"), -1);
    assert_int_equal(wx_conf_find("max_input"), -1);
    assert_int_equal(wx_conf_find(""), -1);
}

static void test_defaults(void **state)
{
    wx_config *cfg = new_config();

    assert_string_equal(wx_config_str(cfg, WX_CONF_HOME),
                        "/home/tester/.cache/warmexec");
    assert_int_equal(wx_config_int(cfg, WX_CONF_LOG_LEVEL), WX_LOG_WARN);
    assert_int_equal(wx_config_int(cfg, WX_CONF_MAX_INPUT_BYTES), 256 * MiB);
    assert_all_default(cfg);
    wx_config_free(cfg);
}

static void test_home_uses_absolute_xdg_cache_home(void **state)
{
    wx_config *cfg;

    setenv("XDG_CACHE_HOME", "/var/cache/tester", 1);
    cfg = new_config();
    assert_string_equal(wx_config_str(cfg, WX_CONF_HOME),
                        "/var/cache/tester/warmexec");
    wx_config_free(cfg);
}

static void test_home_ignores_relative_xdg_cache_home(void **state)
{
    wx_config *cfg;

    setenv("XDG_CACHE_HOME", "relative/cache", 1);
    cfg = new_config();
    assert_string_equal(wx_config_str(cfg, WX_CONF_HOME),
                        "/home/tester/.cache/warmexec");
    wx_config_free(cfg);
}

static void test_home_is_empty_without_home_variables(void **state)
{
    wx_config *cfg;

    unsetenv("HOME");
    cfg = new_config();
    assert_string_equal(wx_config_str(cfg, WX_CONF_HOME), "");
    assert_all_default(cfg);
    wx_config_free(cfg);
}

static void test_load_env_applies_valid_values(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_config *cfg = new_config();

    setenv("WARMEXEC_MAX_INPUT_BYTES", "64K", 1);
    setenv("WARMEXEC_LOG_LEVEL", "debug", 1);
    assert_ok(wx_config_load_env(cfg, &err), &err);
    assert_int_equal(wx_config_int(cfg, WX_CONF_MAX_INPUT_BYTES), 65536);
    assert_int_equal(wx_config_int(cfg, WX_CONF_LOG_LEVEL), WX_LOG_DEBUG);
    assert_int_equal(wx_config_source(cfg, WX_CONF_MAX_INPUT_BYTES),
                     WX_CONF_FROM_ENV);
    assert_int_equal(wx_config_source(cfg, WX_CONF_LOG_LEVEL),
                     WX_CONF_FROM_ENV);
    assert_int_equal(wx_config_source(cfg, WX_CONF_HOME),
                     WX_CONF_FROM_DEFAULT);
    wx_config_free(cfg);
}

static void test_load_env_sets_home(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_config *cfg = new_config();

    setenv("WARMEXEC_HOME", "/srv/warmexec", 1);
    assert_ok(wx_config_load_env(cfg, &err), &err);
    assert_string_equal(wx_config_str(cfg, WX_CONF_HOME), "/srv/warmexec");
    assert_int_equal(wx_config_source(cfg, WX_CONF_HOME), WX_CONF_FROM_ENV);
    wx_config_free(cfg);
}

static void test_load_env_rejects_bad_byte_count(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_config *cfg = new_config();

    setenv("WARMEXEC_MAX_INPUT_BYTES", "12X", 1);
    assert_fails(wx_config_load_env(cfg, &err), WX_EINVAL, &err,
                 "WARMEXEC_MAX_INPUT_BYTES");
    assert_non_null(strstr(err.message, "'12X'"));
    assert_non_null(strstr(err.message, "byte count"));
    assert_int_equal(wx_config_int(cfg, WX_CONF_MAX_INPUT_BYTES), 256 * MiB);
    assert_all_default(cfg);
    wx_config_free(cfg);
}

static void test_load_env_rejects_bad_log_level(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_config *cfg = new_config();

    setenv("WARMEXEC_LOG_LEVEL", "verbose", 1);
    assert_fails(wx_config_load_env(cfg, &err), WX_EINVAL, &err,
                 "WARMEXEC_LOG_LEVEL");
    assert_non_null(strstr(err.message, "error, warn, info, debug"));
    assert_int_equal(wx_config_int(cfg, WX_CONF_LOG_LEVEL), WX_LOG_WARN);
    assert_all_default(cfg);
    wx_config_free(cfg);
}

/* A choice setting: its names in any case, its index as the value. */
static void test_choice_setting(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_config *cfg = new_config();
    wx_buf text = WX_BUF_INIT(64);
    const wx_conf_entry *e = wx_conf_entry_get(WX_CONF_CAS_SYNC);

    assert_int_equal(e->type, WX_CONF_CHOICE);
    assert_int_equal(wx_config_int(cfg, WX_CONF_CAS_SYNC), WX_CAS_SYNC_BATCH);
    assert_ok(wx_config_set(cfg, WX_CONF_CAS_SYNC, "FULL", WX_CONF_FROM_FLAG,
                            &err),
              &err);
    assert_int_equal(wx_config_int(cfg, WX_CONF_CAS_SYNC), WX_CAS_SYNC_FULL);
    assert_ok(wx_config_set(cfg, WX_CONF_CAS_SYNC, "none", WX_CONF_FROM_FLAG,
                            &err),
              &err);
    assert_int_equal(wx_config_int(cfg, WX_CONF_CAS_SYNC), WX_CAS_SYNC_NONE);
    assert_ok(wx_config_format(cfg, WX_CONF_CAS_SYNC, &text, &err), &err);
    assert_string_equal(text.data, "none");
    assert_fails(wx_config_set(cfg, WX_CONF_CAS_SYNC, "sometimes",
                               WX_CONF_FROM_FLAG, &err),
                 WX_EINVAL, &err,
                 "cas_sync: 'sometimes' is not one of full, batch, none");
    assert_int_equal(wx_config_int(cfg, WX_CONF_CAS_SYNC), WX_CAS_SYNC_NONE);
    wx_buf_release(&text);
    wx_config_free(cfg);
}

static void test_byte_suffixes(void **state)
{
    wx_config *cfg = new_config();

    assert_int_equal(parse_bytes_ok(cfg, "1"), 1);
    assert_int_equal(parse_bytes_ok(cfg, "65536"), 65536);
    assert_int_equal(parse_bytes_ok(cfg, "64K"), 65536);
    assert_int_equal(parse_bytes_ok(cfg, "64k"), 65536);
    assert_int_equal(parse_bytes_ok(cfg, "1M"), MiB);
    assert_int_equal(parse_bytes_ok(cfg, "3m"), 3 * MiB);
    assert_int_equal(parse_bytes_ok(cfg, "2G"), 2 * GiB);
    assert_int_equal(parse_bytes_ok(cfg, "1g"), GiB);
    wx_config_free(cfg);
}

static void test_byte_count_upper_bound_is_accepted(void **state)
{
    wx_config *cfg = new_config();

    assert_int_equal(parse_bytes_ok(cfg, "64G"), 64 * GiB);
    assert_int_equal(parse_bytes_ok(cfg, "68719476736"), 64 * GiB);
    wx_config_free(cfg);
}

static void test_bad_byte_counts_are_rejected(void **state)
{
    static const char *const bad[] = {
        "0", "-1", "65G", "68719476737", "", "K", "1KB", "1.5M", "1T", "1 K",
        "12X", "99999999999999999999", "9223372036854775807G", " 64K",
        "+64K", "\t1M",
        /* Would wrap around to 1G and 1K without the overflow check. */
        "17179869185G", "18014398509481985K",
    };
    wx_config *cfg = new_config();

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        wx_error err = WX_ERROR_INIT;

        assert_fails(wx_config_set(cfg, WX_CONF_MAX_INPUT_BYTES, bad[i],
                                   WX_CONF_FROM_FLAG, &err),
                     WX_EINVAL, &err, "max_input_bytes");
        assert_non_null(strstr(err.message, "[1, 68719476736]"));
    }
    assert_int_equal(wx_config_int(cfg, WX_CONF_MAX_INPUT_BYTES), 256 * MiB);
    assert_all_default(cfg);
    wx_config_free(cfg);
}

static void test_failed_set_keeps_value_and_source(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_config *cfg = new_config();

    assert_int_equal(parse_bytes_ok(cfg, "1M"), MiB);
    assert_fails(wx_config_set(cfg, WX_CONF_MAX_INPUT_BYTES, "oops",
                               WX_CONF_FROM_ENV, &err),
                 WX_EINVAL, &err, "'oops'");
    assert_int_equal(wx_config_int(cfg, WX_CONF_MAX_INPUT_BYTES), MiB);
    assert_int_equal(wx_config_source(cfg, WX_CONF_MAX_INPUT_BYTES),
                     WX_CONF_FROM_FLAG);
    wx_config_free(cfg);
}

static void test_set_of_unknown_id_fails(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_config *cfg = new_config();

    assert_fails(wx_config_set(cfg, WX_CONF__COUNT, "x", WX_CONF_FROM_FLAG,
                               &err),
                 WX_EINVAL, &err, "unknown setting");
    wx_config_free(cfg);
}

static void test_source_is_reported(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_config *cfg = new_config();

    assert_ok(wx_config_set(cfg, WX_CONF_LOG_LEVEL, "info", WX_CONF_FROM_FLAG,
                            &err),
              &err);
    assert_int_equal(wx_config_source(cfg, WX_CONF_LOG_LEVEL),
                     WX_CONF_FROM_FLAG);
    assert_int_equal(wx_config_int(cfg, WX_CONF_LOG_LEVEL), WX_LOG_INFO);
    assert_int_equal(wx_config_source(cfg, WX_CONF_HOME),
                     WX_CONF_FROM_DEFAULT);
    wx_config_free(cfg);
}

static void test_source_names(void **state)
{
    assert_string_equal(wx_conf_source_name(WX_CONF_FROM_DEFAULT), "default");
    assert_string_equal(wx_conf_source_name(WX_CONF_FROM_ENV), "environment");
    assert_string_equal(wx_conf_source_name(WX_CONF_FROM_FLAG), "flag");
    assert_string_equal(wx_conf_source_name((wx_conf_source)42), "unknown");
}

static void test_format_writes_effective_values(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_config *cfg = new_config();

    assert_formats_as(cfg, WX_CONF_HOME, "/home/tester/.cache/warmexec");
    assert_formats_as(cfg, WX_CONF_LOG_LEVEL, "warn");
    assert_formats_as(cfg, WX_CONF_MAX_INPUT_BYTES, "268435456");
    assert_ok(wx_config_set(cfg, WX_CONF_LOG_LEVEL, "error",
                            WX_CONF_FROM_FLAG, &err),
              &err);
    assert_formats_as(cfg, WX_CONF_LOG_LEVEL, "error");
    wx_config_free(cfg);
}

static void test_format_appends(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_config *cfg = new_config();
    wx_buf b = WX_BUF_INIT(4096);

    assert_ok(wx_buf_puts(&b, "max=", &err), &err);
    assert_ok(wx_config_format(cfg, WX_CONF_MAX_INPUT_BYTES, &b, &err), &err);
    assert_string_equal(b.data, "max=268435456");
    wx_buf_release(&b);
    wx_config_free(cfg);
}

static void test_new_out_of_memory(void **state)
{
    wx_error err = WX_ERROR_INIT;

    for (long n = 0; n < 2; n++) {
        wx_config *cfg = NULL;
        int rc;

        wx__alloc_fail_after(n);
        rc = wx_config_new(&cfg, &err);
        wx__alloc_fail_after(-1);
        assert_fails(rc, WX_ENOMEM, &err, "out of memory");
        assert_null(cfg);
    }
}

static void test_set_string_out_of_memory_keeps_value(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_config *cfg = new_config();
    int rc;

    wx__alloc_fail_after(0);
    rc = wx_config_set(cfg, WX_CONF_HOME, "/elsewhere", WX_CONF_FROM_FLAG,
                       &err);
    wx__alloc_fail_after(-1);
    assert_fails(rc, WX_ENOMEM, &err, "out of memory");
    assert_string_equal(wx_config_str(cfg, WX_CONF_HOME),
                        "/home/tester/.cache/warmexec");
    assert_int_equal(wx_config_source(cfg, WX_CONF_HOME),
                     WX_CONF_FROM_DEFAULT);
    wx_config_free(cfg);
}

#define CONFIG_TEST(f) cmocka_unit_test_setup(f, clean_environment)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_entry_is_complete),
        cmocka_unit_test(test_entry_get_rejects_out_of_range_ids),
        cmocka_unit_test(test_find_by_name),
        CONFIG_TEST(test_defaults),
        CONFIG_TEST(test_home_uses_absolute_xdg_cache_home),
        CONFIG_TEST(test_home_ignores_relative_xdg_cache_home),
        CONFIG_TEST(test_home_is_empty_without_home_variables),
        CONFIG_TEST(test_load_env_applies_valid_values),
        CONFIG_TEST(test_load_env_sets_home),
        CONFIG_TEST(test_load_env_rejects_bad_byte_count),
        CONFIG_TEST(test_load_env_rejects_bad_log_level),
        CONFIG_TEST(test_choice_setting),
        CONFIG_TEST(test_byte_suffixes),
        CONFIG_TEST(test_byte_count_upper_bound_is_accepted),
        CONFIG_TEST(test_bad_byte_counts_are_rejected),
        CONFIG_TEST(test_failed_set_keeps_value_and_source),
        CONFIG_TEST(test_set_of_unknown_id_fails),
        CONFIG_TEST(test_source_is_reported),
        cmocka_unit_test(test_source_names),
        CONFIG_TEST(test_format_writes_effective_values),
        CONFIG_TEST(test_format_appends),
        CONFIG_TEST(test_new_out_of_memory),
        CONFIG_TEST(test_set_string_out_of_memory_keeps_value),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
