/* Unit tests of the atomic file write and directory helpers. */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs.h"

/* Assert that the file at `path` holds exactly `n` bytes of `data`. */
static void assert_file_content(const char *path, const void *data,
                                size_t n)
{
    char *buf = malloc(n + 1);
    FILE *f = fopen(path, "rb");

    assert_non_null(buf);
    assert_non_null(f);
    assert_int_equal(fread(buf, 1, n + 1, f), n);
    assert_memory_equal(buf, data, n);
    fclose(f);
    free(buf);
}

static void assert_mode(const char *path, mode_t expected)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, expected);
}

/* Assert that `dir` holds exactly the entries `names` (NULL-terminated). */
static void assert_dir_entries(const char *dir, const char *const names[])
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t count = 0, expected = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        bool known = false;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        for (size_t i = 0; names[i]; i++)
            known = known || strcmp(e->d_name, names[i]) == 0;
        if (!known)
            fail_msg("unexpected entry '%s' in %s", e->d_name, dir);
        count++;
    }
    closedir(d);
    while (names[expected])
        expected++;
    assert_int_equal(count, expected);
}

static bool is_dir(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void test_write_atomic_creates_file(void **state)
{
    static const char data[] = "binary\0content\n\xff";
    static const char *const entries[] = {"out.bin", NULL};
    const char *dir = *state;
    char path[4096];
    wx_error err = WX_ERROR_INIT;
    mode_t old_mask = umask(022);

    snprintf(path, sizeof(path), "%s", tu_path(dir, "out.bin"));
    assert_ok(wx__fs_write_atomic(path, data, sizeof(data), 0640, &err),
              &err);
    umask(old_mask);
    assert_file_content(path, data, sizeof(data));
    assert_mode(path, 0640);
    assert_dir_entries(dir, entries);
}

static void test_write_atomic_replaces_file(void **state)
{
    static const char *const entries[] = {"state.json", NULL};
    const char *dir = *state;
    char path[4096], old[32];
    wx_error err = WX_ERROR_INIT;
    mode_t old_mask = umask(022);
    int fd;

    snprintf(path, sizeof(path), "%s", tu_path(dir, "state.json"));
    assert_ok(wx__fs_write_atomic(path, "old content, longer", 19, 0644,
                                  &err),
              &err);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_ok(wx__fs_write_atomic(path, "new", 3, 0600, &err), &err);
    umask(old_mask);
    assert_file_content(path, "new", 3);
    assert_mode(path, 0600);
    assert_dir_entries(dir, entries);
    /* A reader that opened the old file still sees all of it. */
    assert_int_equal(read(fd, old, sizeof(old)), 19);
    assert_memory_equal(old, "old content, longer", 19);
    close(fd);
}

static void test_write_atomic_of_empty_data(void **state)
{
    const char *dir = *state;
    wx_error err = WX_ERROR_INIT;
    struct stat st;

    assert_ok(wx__fs_write_atomic(tu_path(dir, "empty"), "", 0, 0644, &err),
              &err);
    assert_int_equal(stat(tu_path(dir, "empty"), &st), 0);
    assert_int_equal(st.st_size, 0);
}

static void test_write_atomic_into_missing_dir_fails(void **state)
{
    static const char *const no_entries[] = {NULL};
    const char *dir = *state;
    wx_error err = WX_ERROR_INIT;

    assert_fails(wx__fs_write_atomic(tu_path(dir, "missing/out"), "x", 1,
                                     0644, &err),
                 WX_EIO, &err, "missing");
    assert_int_equal(err.sys_errno, ENOENT);
    assert_dir_entries(dir, no_entries);
}

static void test_write_atomic_over_directory_removes_temp_file(void **state)
{
    static const char *const entries[] = {"sub", NULL};
    const char *dir = *state;
    char sub[4096];
    wx_error err = WX_ERROR_INIT;

    snprintf(sub, sizeof(sub), "%s", tu_path(dir, "sub"));
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_fails(wx__fs_write_atomic(sub, "x", 1, 0644, &err), WX_EIO, &err,
                 "cannot write");
    assert_non_null(strstr(err.message, sub));
    assert_dir_entries(dir, entries);
    assert_true(is_dir(sub));
}

static void test_mkdirs_creates_nested_dirs(void **state)
{
    const char *dir = *state;
    char path[4096];
    wx_error err = WX_ERROR_INIT;
    mode_t old_mask = umask(022);

    snprintf(path, sizeof(path), "%s", tu_path(dir, "a/b/c"));
    assert_ok(wx__fs_mkdirs(path, &err), &err);
    umask(old_mask);
    assert_true(is_dir(tu_path(dir, "a")));
    assert_true(is_dir(tu_path(dir, "a/b")));
    assert_true(is_dir(path));
    assert_mode(path, 0755);
}

static void test_mkdirs_accepts_existing_dirs(void **state)
{
    const char *dir = *state;
    char path[4096];
    wx_error err = WX_ERROR_INIT;

    snprintf(path, sizeof(path), "%s", tu_path(dir, "x/y"));
    assert_ok(wx__fs_mkdirs(path, &err), &err);
    assert_ok(wx__fs_mkdirs(path, &err), &err);
    assert_ok(wx__fs_mkdirs(dir, &err), &err);
    assert_ok(wx__fs_mkdirs(tu_path(dir, "x/y/"), &err), &err);
    assert_ok(wx__fs_mkdirs(tu_path(dir, "x//z"), &err), &err);
    assert_true(is_dir(tu_path(dir, "x/z")));
}

static void test_mkdirs_below_a_file_fails(void **state)
{
    const char *dir = *state;
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx__fs_write_atomic(tu_path(dir, "file"), "x", 1, 0644, &err),
              &err);
    assert_fails(wx__fs_mkdirs(tu_path(dir, "file/sub"), &err), WX_EIO,
                 &err, "mkdir");
    assert_int_equal(err.sys_errno, ENOTDIR);
}

static void test_mkdirs_of_an_existing_file_fails(void **state)
{
    const char *dir = *state;
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx__fs_write_atomic(tu_path(dir, "plain"), "x", 1, 0644, &err),
              &err);
    assert_fails(wx__fs_mkdirs(tu_path(dir, "plain"), &err), WX_EIO, &err,
                 "mkdir");
    assert_int_equal(err.sys_errno, ENOTDIR);
}

static void test_mkdirs_of_empty_path_fails(void **state)
{
    wx_error err = WX_ERROR_INIT;

    assert_fails(wx__fs_mkdirs("", &err), WX_EINVAL, &err, "bad directory");
}

static void test_write_all_writes_everything(void **state)
{
    enum { SIZE = 300000 };
    const char *dir = *state;
    char *data = malloc(SIZE);
    wx_error err = WX_ERROR_INIT;
    int fd = open(tu_path(dir, "all"), O_WRONLY | O_CREAT, 0644);

    assert_non_null(data);
    assert_true(fd >= 0);
    for (size_t i = 0; i < SIZE; i++)
        data[i] = (char)(i % 253);
    assert_ok(wx__fs_write_all(fd, data, SIZE, &err), &err);
    assert_ok(wx__fs_write_all(fd, data, 0, &err), &err);
    assert_int_equal(close(fd), 0);
    assert_file_content(tu_path(dir, "all"), data, SIZE);
    free(data);
}

static void test_write_all_to_read_only_fd_fails(void **state)
{
    const char *dir = *state;
    wx_error err = WX_ERROR_INIT;
    int fd;

    assert_ok(wx__fs_write_atomic(tu_path(dir, "ro"), "x", 1, 0644, &err),
              &err);
    fd = open(tu_path(dir, "ro"), O_RDONLY);
    assert_true(fd >= 0);
    assert_fails(wx__fs_write_all(fd, "y", 1, &err), WX_EIO, &err,
                 "write failed");
    assert_int_equal(err.sys_errno, EBADF);
    close(fd);
}

static void test_open_temp_names_hidden_unique_files(void **state)
{
    const char *dir = *state;
    char first[4096], second[4096], prefix[4096];
    wx_error err = WX_ERROR_INIT;
    int fd1 = wx__fs_open_temp(dir, "job", first, sizeof(first), 0600, &err);
    int fd2 = wx__fs_open_temp(dir, "job", second, sizeof(second), 0600, &err);

    assert_true(fd1 >= 0);
    assert_true(fd2 >= 0);
    assert_string_not_equal(first, second);
    snprintf(prefix, sizeof(prefix), "%s/.job.", dir);
    assert_memory_equal(first, prefix, strlen(prefix));
    assert_int_equal(strlen(first), strlen(prefix) + strlen("XXXXXX.tmp"));
    assert_string_equal(first + strlen(first) - 4, ".tmp");
    close(fd1);
    close(fd2);
}

static void test_open_temp_with_short_name_buffer_fails(void **state)
{
    char name[8];
    wx_error err = WX_ERROR_INIT;

    assert_fails(wx__fs_open_temp(*state, "job", name, sizeof(name), 0600,
                                  &err),
                 WX_EINVAL, &err, "too long");
}

static void test_sync_parent(void **state)
{
    const char *dir = *state;
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx__fs_sync_parent(tu_path(dir, "any"), &err), &err);
    assert_fails(wx__fs_sync_parent(tu_path(dir, "missing/any"), &err),
                 WX_EIO, &err, "missing");
}

#define FS_TEST(f)                                                            \
    cmocka_unit_test_setup_teardown(f, tu_setup_tempdir, tu_teardown_tempdir)

int main(void)
{
    const struct CMUnitTest tests[] = {
        FS_TEST(test_write_atomic_creates_file),
        FS_TEST(test_write_atomic_replaces_file),
        FS_TEST(test_write_atomic_of_empty_data),
        FS_TEST(test_write_atomic_into_missing_dir_fails),
        FS_TEST(test_write_atomic_over_directory_removes_temp_file),
        FS_TEST(test_mkdirs_creates_nested_dirs),
        FS_TEST(test_mkdirs_accepts_existing_dirs),
        FS_TEST(test_mkdirs_below_a_file_fails),
        FS_TEST(test_mkdirs_of_an_existing_file_fails),
        cmocka_unit_test(test_mkdirs_of_empty_path_fails),
        FS_TEST(test_write_all_writes_everything),
        FS_TEST(test_write_all_to_read_only_fd_fails),
        FS_TEST(test_open_temp_names_hidden_unique_files),
        FS_TEST(test_open_temp_with_short_name_buffer_fails),
        FS_TEST(test_sync_parent),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
