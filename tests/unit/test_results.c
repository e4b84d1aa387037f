/*
 * The results database writer (src/results.c): rows reach the file in
 * batches, the barrier runs before each commit (the study runner syncs
 * the CAS there), and a failing barrier fails the batch instead of
 * committing rows whose objects may not be durable.
 */
#include "testutil.h"

#include <sqlite3.h>

#include "results.h"

#define HEX64(c) c c c c c c c c c c c c c c c c

typedef struct fixture {
    char *dir;
    char *path;
    wx__results *db;
} fixture;

static const wx__run_info run = {
    HEX64("abcd"), "study.json", HEX64("1234"), "sha256:" HEX64("5678"),
    "noop.model/baseline", "[]", 10, 100};

static int setup(void **state)
{
    wx_error err = WX_ERROR_INIT;
    fixture *f = calloc(1, sizeof(*f));

    f->dir = tu_tempdir();
    f->path = strdup(tu_path(f->dir, "results.db"));
    assert_ok(wx__results_open(f->path, &run, &f->db, &err), &err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;

    if (f->db)
        wx__results_close(f->db, false, &err);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f->path);
    free(f);
    return 0;
}

static void add_sim(wx__results *db, int64_t replicate)
{
    wx__sim_row row = {.param_id = HEX64("0a0b"),
                       .replicate = replicate,
                       .params = "{}",
                       .seed = replicate,
                       .task_id = HEX64("0c0d"),
                       .sim_root = HEX64("0e0f"),
                       .ok = true,
                       .outputs = "{}"};

    assert_int_equal(wx__results_add_sim(db, &row), 0);
}

/* Rows in table sims, as another connection sees them. */
static int64_t sims_in_file(const char *path)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int64_t n;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT count(*) FROM sims", -1, &st, NULL),
        SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

typedef struct barrier_log {
    int calls;
    int fail_from; /* the call number from which the barrier fails */
} barrier_log;

static int counting_barrier(void *ctx, wx_error *err)
{
    barrier_log *log = ctx;

    if (++log->calls >= log->fail_from)
        return wx_error_set(err, WX_EIO, "disk refused the sync");
    return 0;
}

static void test_barrier_runs_before_each_commit(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    barrier_log log = {0, 1000};

    wx__results_set_barrier(f->db, counting_barrier, &log);
    add_sim(f->db, 0);
    add_sim(f->db, 1);
    assert_ok(wx__results_flush(f->db, &err), &err);
    assert_true(log.calls >= 1);
    assert_int_equal(sims_in_file(f->path), 2);
    /* Without a barrier rows are committed as before. */
    wx__results_set_barrier(f->db, NULL, NULL);
    log.calls = 0;
    add_sim(f->db, 2);
    assert_ok(wx__results_flush(f->db, &err), &err);
    assert_int_equal(log.calls, 0);
    assert_int_equal(sims_in_file(f->path), 3);
}

static void test_failing_barrier_fails_the_batch(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    barrier_log log = {0, 1};

    wx__results_set_barrier(f->db, counting_barrier, &log);
    add_sim(f->db, 0);
    assert_fails(wx__results_flush(f->db, &err), WX_EIO, &err,
                 "disk refused the sync");
    assert_int_equal(sims_in_file(f->path), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_barrier_runs_before_each_commit,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_failing_barrier_fails_the_batch,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
