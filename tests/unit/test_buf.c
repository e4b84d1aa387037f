/* Unit tests of wx_buf: growth, the max limit, ownership, file reading. */
#include "testutil.h"

#include <errno.h>
#include <unistd.h>

#include <warmexec/buf.h>

#include "alloc.h"

#define NO_LIMIT ((size_t)1 << 30)

/* The invariants every buffer keeps: data not NULL, data[len] == 0. */
static void assert_buf_valid(const wx_buf *b)
{
    assert_non_null(b->data);
    assert_true(b->len <= b->max);
    assert_int_equal(b->data[b->len], '\0');
}

static void assert_buf_equals(const wx_buf *b, const char *expected)
{
    assert_buf_valid(b);
    assert_int_equal(b->len, strlen(expected));
    assert_string_equal(b->data, expected);
}

/* `n` bytes of a pattern that includes NUL bytes. */
static char *make_pattern(size_t n)
{
    char *p = malloc(n ? n : 1);

    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)(i * 7 % 251);
    return p;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void test_init_gives_empty_string(void **state)
{
    wx_buf b;

    wx_buf_init(&b, 10);
    assert_buf_equals(&b, "");
    assert_int_equal(b.max, 10);
    wx_buf_release(&b);
}

static void test_static_init_gives_empty_string(void **state)
{
    wx_buf b = WX_BUF_INIT(5);

    assert_ptr_equal(b.data, wx_buf_empty);
    assert_buf_equals(&b, "");
    assert_int_equal(b.max, 5);
}

static void test_append_puts_putc_printf(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(NO_LIMIT);

    assert_ok(wx_buf_append(&b, "ab", 2, &err), &err);
    assert_ok(wx_buf_puts(&b, "cd", &err), &err);
    assert_ok(wx_buf_putc(&b, 'e', &err), &err);
    assert_ok(wx_buf_printf(&b, &err, "-%d-%s", 42, "x"), &err);
    assert_buf_equals(&b, "abcde-42-x");
    wx_buf_release(&b);
}

static void test_append_keeps_embedded_nul(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(NO_LIMIT);

    assert_ok(wx_buf_append(&b, "a\0b", 3, &err), &err);
    assert_ok(wx_buf_putc(&b, '\0', &err), &err);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "a\0b\0", 5);
    wx_buf_release(&b);
}

static void test_empty_writes_keep_valid_string(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(NO_LIMIT);

    assert_ok(wx_buf_append(&b, "", 0, &err), &err);
    assert_buf_equals(&b, "");
    assert_ok(wx_buf_puts(&b, "", &err), &err);
    assert_buf_equals(&b, "");
    assert_ok(wx_buf_printf(&b, &err, "%s", ""), &err);
    assert_buf_equals(&b, "");
    wx_buf_release(&b);
}

static void test_growth_across_many_appends(void **state)
{
    enum { ROUNDS = 20000 };
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(NO_LIMIT);

    for (int i = 0; i < ROUNDS; i++) {
        assert_ok(wx_buf_putc(&b, (char)('a' + i % 26), &err), &err);
        assert_ok(wx_buf_append(&b, "0123456789", 10, &err), &err);
        assert_ok(wx_buf_printf(&b, &err, "%05d", i), &err);
        assert_int_equal(b.data[b.len], '\0');
    }
    assert_int_equal(b.len, (size_t)ROUNDS * 16);
    assert_true(b.cap > b.len);
    for (int i = 0; i < ROUNDS; i++) {
        char expected[17];

        snprintf(expected, sizeof(expected), "%c0123456789%05d",
                 'a' + i % 26, i);
        assert_memory_equal(b.data + (size_t)i * 16, expected, 16);
    }
    wx_buf_release(&b);
}

static void test_append_past_max_fails_and_keeps_content(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(8);

    assert_ok(wx_buf_puts(&b, "12345", &err), &err);
    assert_fails(wx_buf_append(&b, "6789", 4, &err), WX_ETOOBIG, &err,
                 "limit of 8 bytes");
    assert_buf_equals(&b, "12345");
    assert_fails(wx_buf_printf(&b, &err, "%d", 6789), WX_ETOOBIG, &err,
                 "limit");
    assert_buf_equals(&b, "12345");
    assert_ok(wx_buf_puts(&b, "678", &err), &err);
    assert_buf_equals(&b, "12345678");
    assert_fails(wx_buf_putc(&b, 'x', &err), WX_ETOOBIG, &err, "limit");
    assert_fails(wx_buf_puts(&b, "x", &err), WX_ETOOBIG, &err, "limit");
    assert_buf_equals(&b, "12345678");
    assert_ok(wx_buf_append(&b, "", 0, &err), &err);
    wx_buf_release(&b);
}

static void test_zero_max_accepts_nothing(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(0);

    assert_fails(wx_buf_putc(&b, 'x', &err), WX_ETOOBIG, &err, "limit");
    assert_buf_equals(&b, "");
    assert_ok(wx_buf_append(&b, "", 0, &err), &err);
    assert_buf_equals(&b, "");
    wx_buf_release(&b);
}

static void test_reset_drops_content(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(NO_LIMIT);

    wx_buf_reset(&b);
    assert_buf_equals(&b, "");
    assert_ok(wx_buf_puts(&b, "hello", &err), &err);
    wx_buf_reset(&b);
    assert_buf_equals(&b, "");
    assert_int_equal(b.max, NO_LIMIT);
    assert_ok(wx_buf_puts(&b, "xy", &err), &err);
    assert_buf_equals(&b, "xy");
    wx_buf_release(&b);
}

static void test_truncate_cuts_content(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(NO_LIMIT);

    wx_buf_truncate(&b, 0);
    assert_buf_equals(&b, "");
    assert_ok(wx_buf_puts(&b, "hello world", &err), &err);
    wx_buf_truncate(&b, b.len);
    assert_buf_equals(&b, "hello world");
    wx_buf_truncate(&b, 5);
    assert_buf_equals(&b, "hello");
    wx_buf_truncate(&b, 0);
    assert_buf_equals(&b, "");
    wx_buf_release(&b);
}

static void test_release_leaves_empty_buffer(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(100);

    assert_ok(wx_buf_puts(&b, "content", &err), &err);
    wx_buf_release(&b);
    assert_buf_equals(&b, "");
    assert_int_equal(b.max, 100);
    assert_ok(wx_buf_puts(&b, "again", &err), &err);
    assert_buf_equals(&b, "again");
    wx_buf_release(&b);
}

static void test_detach_hands_over_content(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(100);
    size_t len = 0;
    char *s;

    assert_ok(wx_buf_puts(&b, "abc", &err), &err);
    s = wx_buf_detach(&b, &len);
    assert_non_null(s);
    assert_string_equal(s, "abc");
    assert_int_equal(len, 3);
    assert_buf_equals(&b, "");
    assert_int_equal(b.max, 100);
    wx_free(s);
}

static void test_detach_of_empty_buffer_gives_owned_string(void **state)
{
    wx_buf b = WX_BUF_INIT(100);
    size_t len = 99;
    char *s = wx_buf_detach(&b, &len);

    assert_non_null(s);
    assert_ptr_not_equal(s, wx_buf_empty);
    assert_string_equal(s, "");
    assert_int_equal(len, 0);
    assert_buf_equals(&b, "");
    wx_free(s);
    s = wx_buf_detach(&b, NULL);
    assert_non_null(s);
    assert_string_equal(s, "");
    wx_free(s);
}

static void test_read_file_appends_whole_file(void **state)
{
    enum { SIZE = 200000 }; /* several read() calls */
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(NO_LIMIT);
    const char *dir = *state;
    char *data = make_pattern(SIZE);

    write_file(tu_path(dir, "in"), data, SIZE);
    assert_ok(wx_buf_puts(&b, "pre:", &err), &err);
    assert_ok(wx_buf_read_file(&b, tu_path(dir, "in"), &err), &err);
    assert_buf_valid(&b);
    assert_int_equal(b.len, 4 + SIZE);
    assert_memory_equal(b.data, "pre:", 4);
    assert_memory_equal(b.data + 4, data, SIZE);
    wx_buf_release(&b);
    free(data);
}

static void test_read_file_of_exactly_max_bytes(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(100);
    const char *dir = *state;
    char *data = make_pattern(100);

    write_file(tu_path(dir, "in"), data, 100);
    assert_ok(wx_buf_read_file(&b, tu_path(dir, "in"), &err), &err);
    assert_buf_valid(&b);
    assert_int_equal(b.len, 100);
    assert_memory_equal(b.data, data, 100);
    wx_buf_release(&b);
    free(data);
}

static void test_read_empty_file(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(100);
    const char *dir = *state;

    write_file(tu_path(dir, "empty"), "", 0);
    assert_ok(wx_buf_read_file(&b, tu_path(dir, "empty"), &err), &err);
    assert_buf_equals(&b, "");
    wx_buf_release(&b);
}

static void test_read_missing_file_is_not_found(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(100);
    const char *dir = *state;
    const char *path = tu_path(dir, "missing.json");

    assert_fails(wx_buf_read_file(&b, path, &err), WX_ENOTFOUND, &err, path);
    assert_int_equal(err.sys_errno, ENOENT);
    assert_buf_equals(&b, "");
}

static void test_read_file_larger_than_max_fails(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(100);
    const char *dir = *state;
    char *data = make_pattern(101);
    const char *path = tu_path(dir, "big");

    write_file(path, data, 101);
    assert_fails(wx_buf_read_file(&b, path, &err), WX_ETOOBIG, &err, path);
    assert_non_null(strstr(err.message, "limit of 100 bytes"));
    assert_buf_valid(&b);
    assert_int_equal(b.len, 0); /* nothing half-read is kept */
    wx_buf_release(&b);
    free(data);
}

static void test_read_directory_is_io_error(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(100);
    const char *dir = *state;

    assert_fails(wx_buf_read_file(&b, dir, &err), WX_EIO, &err, dir);
    assert_int_equal(err.sys_errno, EISDIR);
    assert_buf_valid(&b);
    wx_buf_release(&b);
}

/* A pipe whose write end already holds `n` bytes and is closed. */
static int pipe_with(const void *data, size_t n)
{
    int fds[2];

    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], data, n), (ssize_t)n);
    assert_int_equal(close(fds[1]), 0);
    return fds[0];
}

static void test_read_fd_from_pipe(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(NO_LIMIT);
    char *data = make_pattern(4096);
    int fd = pipe_with(data, 4096);

    assert_ok(wx_buf_read_fd(&b, fd, &err), &err);
    assert_buf_valid(&b);
    assert_int_equal(b.len, 4096);
    assert_memory_equal(b.data, data, 4096);
    close(fd);
    wx_buf_release(&b);
    free(data);
}

static void test_read_fd_past_max_fails(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(10);
    int fd = pipe_with("0123456789A", 11);

    assert_ok(wx_buf_puts(&b, "ab", &err), &err);
    assert_fails(wx_buf_read_fd(&b, fd, &err), WX_ETOOBIG, &err,
                 "limit of 10 bytes");
    assert_buf_valid(&b);
    assert_string_equal(b.data, "ab"); /* the old content, unchanged */
    close(fd);
    wx_buf_release(&b);
}

static void test_read_from_write_end_is_io_error(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(10);
    int fds[2];

    assert_int_equal(pipe(fds), 0);
    assert_fails(wx_buf_read_fd(&b, fds[1], &err), WX_EIO, &err,
                 "read failed");
    assert_int_equal(err.sys_errno, EBADF);
    assert_buf_valid(&b);
    close(fds[0]);
    close(fds[1]);
    wx_buf_release(&b);
}

static void test_first_allocation_failure_is_enomem(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(NO_LIMIT);
    int rc;

    wx__alloc_fail_after(0);
    rc = wx_buf_puts(&b, "abc", &err);
    wx__alloc_fail_after(-1);
    assert_fails(rc, WX_ENOMEM, &err, "out of memory");
    assert_buf_equals(&b, "");
    assert_ok(wx_buf_puts(&b, "abc", &err), &err);
    assert_buf_equals(&b, "abc");
    wx_buf_release(&b);
}

static void test_growth_failure_keeps_content(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(NO_LIMIT);
    char *data = make_pattern(4096);
    int rc;

    assert_ok(wx_buf_puts(&b, "keep", &err), &err);
    wx__alloc_fail_after(0);
    rc = wx_buf_append(&b, data, 4096, &err);
    wx__alloc_fail_after(-1);
    assert_fails(rc, WX_ENOMEM, &err, "out of memory");
    assert_buf_equals(&b, "keep");
    wx__alloc_fail_after(0);
    rc = wx_buf_printf(&b, &err, "%4096s", "x");
    wx__alloc_fail_after(-1);
    assert_fails(rc, WX_ENOMEM, &err, "out of memory");
    assert_buf_equals(&b, "keep");
    wx_buf_release(&b);
    free(data);
}

static void test_detach_of_empty_buffer_out_of_memory(void **state)
{
    wx_buf b = WX_BUF_INIT(100);
    char *s;

    wx__alloc_fail_after(0);
    s = wx_buf_detach(&b, NULL);
    wx__alloc_fail_after(-1);
    assert_null(s);
    assert_buf_equals(&b, "");
}

#define FILE_TEST(f)                                                          \
    cmocka_unit_test_setup_teardown(f, tu_setup_tempdir, tu_teardown_tempdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_gives_empty_string),
        cmocka_unit_test(test_static_init_gives_empty_string),
        cmocka_unit_test(test_append_puts_putc_printf),
        cmocka_unit_test(test_append_keeps_embedded_nul),
        cmocka_unit_test(test_empty_writes_keep_valid_string),
        cmocka_unit_test(test_growth_across_many_appends),
        cmocka_unit_test(test_append_past_max_fails_and_keeps_content),
        cmocka_unit_test(test_zero_max_accepts_nothing),
        cmocka_unit_test(test_reset_drops_content),
        cmocka_unit_test(test_truncate_cuts_content),
        cmocka_unit_test(test_release_leaves_empty_buffer),
        cmocka_unit_test(test_detach_hands_over_content),
        cmocka_unit_test(test_detach_of_empty_buffer_gives_owned_string),
        FILE_TEST(test_read_file_appends_whole_file),
        FILE_TEST(test_read_file_of_exactly_max_bytes),
        FILE_TEST(test_read_empty_file),
        FILE_TEST(test_read_missing_file_is_not_found),
        FILE_TEST(test_read_file_larger_than_max_fails),
        FILE_TEST(test_read_directory_is_io_error),
        cmocka_unit_test(test_read_fd_from_pipe),
        cmocka_unit_test(test_read_fd_past_max_fails),
        cmocka_unit_test(test_read_from_write_end_is_io_error),
        cmocka_unit_test(test_first_allocation_failure_is_enomem),
        cmocka_unit_test(test_growth_failure_keeps_content),
        cmocka_unit_test(test_detach_of_empty_buffer_out_of_memory),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
