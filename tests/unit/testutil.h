/* Helpers shared by the unit tests (cmocka). */
#ifndef WX_TESTUTIL_H
#define WX_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <cmocka.h>

#include <warmexec/warmexec.h>

/* Fail the test with the error message when `rc` is not 0. */
#define assert_ok(rc, err)                                                    \
    do {                                                                      \
        int rc_ = (rc);                                                       \
        if (rc_ != 0)                                                         \
            fail_msg("expected success, got %s: %s", wx_err_name(rc_),       \
                     (err)->message);                                         \
    } while (0)

/* Assert that `rc` is `code` and the message contains `needle`. */
#define assert_fails(rc, code, err, needle)                                   \
    do {                                                                      \
        int rc_ = (rc);                                                       \
        if (rc_ != (code))                                                    \
            fail_msg("expected %s, got %s (%s)", wx_err_name(code),           \
                     wx_err_name(rc_), (err)->message);                       \
        if (!strstr((err)->message, (needle)))                                \
            fail_msg("message '%s' does not contain '%s'", (err)->message,   \
                     (needle));                                               \
    } while (0)

/* Parse JSON text with warmexec's reader; fails the test on error. */
json_t *tu_json(const char *text);

/* The contract vectors (tests/data/contracts.json); parsed once. */
json_t *tu_vectors(void);

/* Canonical JSON of `v` as a new string (free with wx_free). */
char *tu_canon(const json_t *v);

/* A fresh empty temporary directory (free with tu_rmtree + free). */
char *tu_tempdir(void);

/* rm -rf `path`. */
/*
 * Wait for every child in `pids`, then return how many did not exit 0:
 * a test must not end (and remove its directory) while a child runs.
 */
int tu_wait_all(const pid_t *pids, int n);

/* Names in `dir` other than "." and ".." (only regular files when
 * `files_only`). */
size_t tu_count_in_dir(const char *dir, bool files_only);

void tu_rmtree(const char *path);

/* cmocka setup/teardown giving a test a fresh temporary directory. */
int tu_setup_tempdir(void **state);
int tu_teardown_tempdir(void **state);

/* "<dir>/<name>" in a static buffer (valid until the next call). */
const char *tu_path(const char *dir, const char *name);

#endif
