#define _GNU_SOURCE 1
/* Helpers shared by the unit tests. */
#include "testutil.h"

#include <dirent.h>
#include <sys/wait.h>

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

json_t *tu_json(const char *text)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = NULL;

    if (wx_json_parse(text, strlen(text), &v, &err) != 0)
        fail_msg("cannot parse test JSON '%s': %s", text, err.message);
    return v;
}

json_t *tu_vectors(void)
{
    static json_t *vectors;
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(16u << 20);

    if (vectors)
        return vectors;
    if (wx_buf_read_file(&b, WX_TEST_DATA_DIR "/contracts.json", &err) != 0 ||
        wx_json_parse(b.data, b.len, &vectors, &err) != 0)
        fail_msg("cannot load the vectors: %s", err.message);
    wx_buf_release(&b);
    return vectors;
}

char *tu_canon(const json_t *v)
{
    wx_error err = WX_ERROR_INIT;
    wx_buf b = WX_BUF_INIT(1u << 30);

    assert_ok(wx_json_canonical(&b, v, &err), &err);
    return wx_buf_detach(&b, NULL);
}

char *tu_tempdir(void)
{
    char *path = strdup("/tmp/wx-test-XXXXXX");

    if (!path || !mkdtemp(path))
        fail_msg("mkdtemp failed");
    return path;
}

static int remove_entry(const char *path, const struct stat *st, int flag,
                        struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    /* Make read-only entries removable, but never follow a symlink: a
       test may leave one pointing anywhere. */
    if (flag != FTW_SL && flag != FTW_SLN)
        chmod(path, 0700);
    return remove(path);
}

static int open_dir(const char *path, const struct stat *st, int flag,
                    struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_D)
        chmod(path, 0700);
    return 0;
}

void tu_rmtree(const char *path)
{
    /* Stored bundles have read-only directories: open them up first. */
    nftw(path, open_dir, 16, FTW_PHYS);
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int tu_setup_tempdir(void **state)
{
    *state = tu_tempdir();
    return 0;
}

int tu_teardown_tempdir(void **state)
{
    tu_rmtree(*state);
    free(*state);
    return 0;
}

const char *tu_path(const char *dir, const char *name)
{
    static char path[4096];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return path;
}

size_t tu_count_in_dir(const char *dir, bool files_only)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        n += !files_only || e->d_type == DT_REG;
    }
    closedir(d);
    return n;
}

int tu_wait_all(const pid_t *pids, int n)
{
    int failed = 0;

    for (int i = 0; i < n; i++) {
        int status = 0;

        if (waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) ||
            WEXITSTATUS(status) != 0)
            failed++;
    }
    return failed;
}
