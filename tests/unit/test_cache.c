/* Unit tests of the SQLite result cache. */
#include "testutil.h"

#include <pthread.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <warmexec/cache.h>

#include "clock.h"

/* SHA-256 of "hello" ("aGVsbG8=" in base64). */
#define HELLO_SHA                                                             \
    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
#define CAS_HEX                                                               \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct fixture {
    char *dir;
    char path[4096]; /* <dir>/cache.db */
    wx_cache *cache;
} fixture;

static int setup(void **state)
{
    wx_error err = WX_ERROR_INIT;
    fixture *f = calloc(1, sizeof(*f));

    f->dir = tu_tempdir();
    snprintf(f->path, sizeof(f->path), "%s/cache.db", f->dir);
    assert_ok(wx_cache_open(f->path, &f->cache, &err), &err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    wx_cache_close(f->cache);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* A sim_root that differs for each (a, b). */
static void make_root(unsigned a, unsigned b, char root[WX_ID_LEN + 1])
{
    char seed[64];

    snprintf(seed, sizeof(seed), "root %u %u", a, b);
    wx_digest_hex(seed, strlen(seed), root);
}

/* A successful SimReturn with one inline and one CAS artifact. */
static void make_sim(wx_sim_return *r, const char *root, const char *task)
{
    char text[2048];
    wx_error err = WX_ERROR_INIT;
    json_t *v;

    snprintf(text, sizeof(text),
             "{\"task_id\":\"%s\",\"sim_root\":\"%s\",\"outputs\":{"
             "\"table\":{\"size\":5,\"checksum\":\"" HELLO_SHA "\","
             "\"inline\":\"aGVsbG8=\"},"
             "\"big\":{\"size\":1048576,\"checksum\":\"" CAS_HEX "\","
             "\"ref\":\"cas://" CAS_HEX "\"}},"
             "\"error\":null,\"error_details\":null,"
             "\"metrics\":{\"seconds\":1.5,\"attempts\":1},"
             "\"cached\":false,\"logs_ref\":null}",
             task, root);
    v = tu_json(text);
    assert_ok(wx_sim_return_from_json(r, v, &err), &err);
    json_decref(v);
}

static void make_agg(wx_agg_return *r, const char *id, double loss)
{
    char text[1024];
    wx_error err = WX_ERROR_INIT;
    json_t *v;

    snprintf(text, sizeof(text),
             "{\"aggregation_id\":\"%s\",\"loss\":%.17g,"
             "\"diagnostics\":{\"rmse\":0.5,\"note\":\"caf\\u00e9\"},"
             "\"outputs\":{\"fit\":{\"size\":5,\"checksum\":\"" HELLO_SHA
             "\",\"inline\":\"aGVsbG8=\"}},\"n_replicates\":3}",
             id, loss);
    v = tu_json(text);
    assert_ok(wx_agg_return_from_json(r, v, &err), &err);
    json_decref(v);
}

/* Canonical JSON text of a SimReturn (free with wx_free). */
static char *sim_text(const wx_sim_return *r)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = NULL;
    char *text;

    assert_ok(wx_sim_return_to_json(r, &v, &err), &err);
    text = tu_canon(v);
    json_decref(v);
    return text;
}

static char *agg_text(const wx_agg_return *r)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = NULL;
    char *text;

    assert_ok(wx_agg_return_to_json(r, &v, &err), &err);
    text = tu_canon(v);
    json_decref(v);
    return text;
}

/* Get `root` and check it equals `expected`. */
static void assert_sim_cached(wx_cache *cache, const wx_sim_return *expected)
{
    wx_error err = WX_ERROR_INIT;
    wx_sim_return got;
    bool hit = false;
    char *want = sim_text(expected), *have;

    assert_ok(wx_cache_get_sim(cache, expected->sim_root, &got, &hit, &err),
              &err);
    assert_true(hit);
    have = sim_text(&got);
    assert_string_equal(have, want);
    wx_free(have);
    wx_free(want);
    wx_sim_return_release(&got);
}

static void assert_sim_missing(wx_cache *cache, const char *root)
{
    wx_error err = WX_ERROR_INIT;
    wx_sim_return got;
    bool hit = true;

    memset(&got, 0x5a, sizeof(got));
    assert_ok(wx_cache_get_sim(cache, root, &got, &hit, &err), &err);
    assert_false(hit);
    assert_int_equal((unsigned char)got.task_id[0], 0x5a); /* untouched */
}

static wx_cache_stats stats_of(wx_cache *cache)
{
    wx_error err = WX_ERROR_INIT;
    wx_cache_stats s = {-1, -1, -1};

    assert_ok(wx_cache_stats_get(cache, &s, &err), &err);
    return s;
}

static void test_sim_round_trip(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char root[WX_ID_LEN + 1];
    wx_sim_return r, got;
    bool hit = false;

    make_root(1, 1, root);
    make_sim(&r, root, "task-1");
    assert_sim_missing(f->cache, root);
    assert_ok(wx_cache_put_sim(f->cache, &r, &err), &err);
    assert_sim_cached(f->cache, &r);
    assert_ok(wx_cache_get_sim(f->cache, root, &got, &hit, &err), &err);
    /* Stored canonically: the outputs come back in name order. */
    assert_int_equal(got.n_outputs, 2);
    assert_string_equal(got.outputs[0].name, "big");
    assert_string_equal(got.outputs[0].art.ref, "cas://" CAS_HEX);
    assert_int_equal(got.outputs[0].art.size, 1048576);
    assert_string_equal(got.outputs[1].name, "table");
    assert_memory_equal(got.outputs[1].art.data, "hello", 5);
    assert_null(got.outputs[1].art.ref);
    assert_string_equal(got.task_id, "task-1");
    assert_true(json_is_real(json_object_get(got.metrics, "seconds")));
    wx_sim_return_release(&got);
    wx_sim_return_release(&r);
}

static void test_sim_replace_and_delete(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char root[WX_ID_LEN + 1], other[WX_ID_LEN + 1];
    wx_sim_return r1, r2;

    make_root(1, 1, root);
    make_root(1, 2, other);
    make_sim(&r1, root, "first");
    make_sim(&r2, root, "second");
    assert_ok(wx_cache_put_sim(f->cache, &r1, &err), &err);
    assert_ok(wx_cache_put_sim(f->cache, &r2, &err), &err);
    assert_sim_cached(f->cache, &r2);
    assert_int_equal(stats_of(f->cache).sims, 1);
    assert_ok(wx_cache_delete_sim(f->cache, root, &err), &err);
    assert_sim_missing(f->cache, root);
    assert_ok(wx_cache_delete_sim(f->cache, root, &err), &err);
    assert_ok(wx_cache_delete_sim(f->cache, other, &err), &err);
    assert_int_equal(stats_of(f->cache).sims, 0);
    wx_sim_return_release(&r1);
    wx_sim_return_release(&r2);
}

static void test_put_sim_refuses_failures(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char root[WX_ID_LEN + 1], text[1024];
    wx_sim_return r;
    json_t *v;

    make_root(2, 1, root);
    snprintf(text, sizeof(text),
             "{\"task_id\":\"t\",\"sim_root\":\"%s\",\"outputs\":{},"
             "\"error\":{\"error_type\":\"ModelError\",\"message\":\"boom\","
             "\"retryable\":false},\"error_details\":{\"size\":5,"
             "\"checksum\":\"" HELLO_SHA "\",\"inline\":\"aGVsbG8=\"}}",
             root);
    v = tu_json(text);
    assert_ok(wx_sim_return_from_json(&r, v, &err), &err);
    json_decref(v);
    assert_fails(wx_cache_put_sim(f->cache, &r, &err), WX_EINVAL, &err,
                 "failures are never cached");
    assert_sim_missing(f->cache, root);
    wx_sim_return_release(&r);
    /* An invalid SimReturn is refused too. */
    make_sim(&r, root, "t");
    r.sim_root[0] = 'X';
    assert_fails(wx_cache_put_sim(f->cache, &r, &err), WX_EINVAL, &err,
                 "sim_root must be 64 lowercase hex");
    assert_int_equal(stats_of(f->cache).sims, 0);
    wx_sim_return_release(&r);
}

static void test_bad_keys_are_refused(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char root[WX_ID_LEN + 1];
    wx_sim_return sim;
    wx_agg_return agg;
    bool hit;

    make_root(3, 1, root);
    root[5] = 'A';
    assert_fails(wx_cache_get_sim(f->cache, root, &sim, &hit, &err),
                 WX_EINVAL, &err, "sim_root must be 64 lowercase hex");
    assert_fails(wx_cache_get_sim(f->cache, "abc", &sim, &hit, &err),
                 WX_EINVAL, &err, "got 'abc'");
    assert_fails(wx_cache_delete_sim(f->cache, "'; DROP TABLE sims; --",
                                     &err),
                 WX_EINVAL, &err, "sim_root");
    assert_fails(wx_cache_get_agg(f->cache, "../x", &agg, &hit, &err),
                 WX_EINVAL, &err, "aggregation digest");
    assert_fails(wx_cache_delete_agg(f->cache, NULL, &err), WX_EINVAL, &err,
                 "aggregation digest");
}

static void test_agg_round_trip_replace_delete(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char digest[WX_ID_LEN + 1], id[WX_AGG_ID_LEN + 1], *want, *have;
    wx_agg_return r, r2, got;
    bool hit = false;

    make_root(4, 1, digest);
    snprintf(id, sizeof(id), "%.16s", digest);
    make_agg(&r, id, 0.125);
    make_agg(&r2, id, 1e-300);
    assert_ok(wx_cache_get_agg(f->cache, digest, &got, &hit, &err), &err);
    assert_false(hit);
    assert_ok(wx_cache_put_agg(f->cache, digest, &r, &err), &err);
    assert_ok(wx_cache_get_agg(f->cache, digest, &got, &hit, &err), &err);
    assert_true(hit);
    assert_true(got.loss == 0.125);
    assert_int_equal(got.n_replicates, 3);
    want = agg_text(&r);
    have = agg_text(&got);
    assert_string_equal(have, want);
    wx_free(want);
    wx_free(have);
    wx_agg_return_release(&got);
    assert_ok(wx_cache_put_agg(f->cache, digest, &r2, &err), &err);
    assert_ok(wx_cache_get_agg(f->cache, digest, &got, &hit, &err), &err);
    assert_true(got.loss == 1e-300);
    wx_agg_return_release(&got);
    assert_int_equal(stats_of(f->cache).aggregations, 1);
    assert_ok(wx_cache_delete_agg(f->cache, digest, &err), &err);
    assert_ok(wx_cache_get_agg(f->cache, digest, &got, &hit, &err), &err);
    assert_false(hit);
    wx_agg_return_release(&r);
    wx_agg_return_release(&r2);
}

static void test_put_agg_checks_id_against_digest(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char digest[WX_ID_LEN + 1];
    wx_agg_return r;

    make_root(5, 1, digest);
    make_agg(&r, "0123456789abcdef", 1.0);
    if (strncmp(digest, "0123456789abcdef", 16) == 0)
        fail_msg("unlucky digest");
    assert_fails(wx_cache_put_agg(f->cache, digest, &r, &err), WX_EINVAL,
                 &err, "is not the start of its digest");
    assert_int_equal(stats_of(f->cache).aggregations, 0);
    wx_agg_return_release(&r);
}

static void test_stats_and_clear(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    size_t bytes = 0;
    wx_cache_stats s = stats_of(f->cache);

    assert_int_equal(s.sims, 0);
    assert_int_equal(s.aggregations, 0);
    assert_int_equal(s.bytes, 0);
    for (unsigned i = 0; i < 3; i++) {
        char root[WX_ID_LEN + 1], id[WX_AGG_ID_LEN + 1], *text;
        wx_sim_return r;
        wx_agg_return a;

        make_root(6, i, root);
        make_sim(&r, root, "task");
        assert_ok(wx_cache_put_sim(f->cache, &r, &err), &err);
        text = sim_text(&r);
        bytes += strlen(text);
        wx_free(text);
        wx_sim_return_release(&r);
        if (i == 2)
            continue;
        snprintf(id, sizeof(id), "%.16s", root);
        make_agg(&a, id, 2.5);
        assert_ok(wx_cache_put_agg(f->cache, root, &a, &err), &err);
        text = agg_text(&a);
        bytes += strlen(text);
        wx_free(text);
        wx_agg_return_release(&a);
    }
    s = stats_of(f->cache);
    assert_int_equal(s.sims, 3);
    assert_int_equal(s.aggregations, 2);
    assert_int_equal(s.bytes, bytes);
    assert_ok(wx_cache_clear(f->cache, &err), &err);
    s = stats_of(f->cache);
    assert_int_equal(s.sims + s.aggregations + s.bytes, 0);
}

static void test_reopen_keeps_data(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char root[WX_ID_LEN + 1];
    wx_sim_return r;

    make_root(7, 1, root);
    make_sim(&r, root, "kept");
    assert_ok(wx_cache_put_sim(f->cache, &r, &err), &err);
    wx_cache_close(f->cache);
    f->cache = NULL;
    assert_ok(wx_cache_open(f->path, &f->cache, &err), &err);
    assert_sim_cached(f->cache, &r);
    wx_sim_return_release(&r);
}

/* Run one SQL statement on the database file with a separate connection. */
static void sql(const char *path, const char *statement)
{
    sqlite3 *db = NULL;
    char *msg = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, statement, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("%s: %s", statement, msg);
    sqlite3_close(db);
}

/* Rows of `table` as another connection (another process) sees them. */
static int64_t rows_seen_outside(const char *path, const char *table)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    char query[64];
    int64_t n;

    snprintf(query, sizeof(query), "SELECT count(*) FROM %s", table);
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, query, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

/*
 * Puts are committed in groups: invisible outside until the group is
 * full, flushed or closed; a read, replace or delete of a pending entry
 * in this handle sees it.
 */
static void test_puts_are_committed_in_groups(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char root[WX_ID_LEN + 1];
    wx_sim_return r, newer;
    int64_t start = wx__now_ms();

    for (unsigned i = 0; i < 10; i++) {
        make_root(30, i, root);
        make_sim(&r, root, "t");
        assert_ok(wx_cache_put_sim(f->cache, &r, &err), &err);
        wx_sim_return_release(&r);
    }
    /* A group also commits once 200 ms old: only a stalled machine
     * takes that long for 10 puts. */
    if (wx__now_ms() - start < 150)
        assert_int_equal(rows_seen_outside(f->path, "sims"), 0);
    /* A read of a pending key commits the group first. */
    make_root(30, 3, root);
    make_sim(&r, root, "t");
    assert_sim_cached(f->cache, &r);
    assert_int_equal(rows_seen_outside(f->path, "sims"), 10);
    /* Replacing a pending entry keeps the newer one. */
    make_sim(&newer, root, "newer");
    assert_ok(wx_cache_put_sim(f->cache, &r, &err), &err);
    assert_ok(wx_cache_put_sim(f->cache, &newer, &err), &err);
    assert_sim_cached(f->cache, &newer);
    /* Deleting a pending entry deletes it. */
    assert_ok(wx_cache_put_sim(f->cache, &r, &err), &err);
    assert_ok(wx_cache_delete_sim(f->cache, root, &err), &err);
    assert_sim_missing(f->cache, root);
    wx_sim_return_release(&r);
    wx_sim_return_release(&newer);
    /* Without a flush the writer commits within its 200 ms... */
    for (unsigned i = 0; i < 300; i++) {
        make_root(31, i, root);
        make_sim(&r, root, "t");
        assert_ok(wx_cache_put_sim(f->cache, &r, &err), &err);
        wx_sim_return_release(&r);
    }
    start = wx__now_ms();
    while (rows_seen_outside(f->path, "sims") < 9 + 300 &&
           wx__now_ms() - start < 10000)
        usleep(20000);
    assert_int_equal(rows_seen_outside(f->path, "sims"), 9 + 300);
    /* ...and a flush at once. */
    make_root(31, 300, root);
    make_sim(&r, root, "t");
    assert_ok(wx_cache_put_sim(f->cache, &r, &err), &err);
    wx_sim_return_release(&r);
    assert_ok(wx_cache_flush(f->cache, &err), &err);
    assert_int_equal(rows_seen_outside(f->path, "sims"), 9 + 301);
    /* And close commits what is pending. */
    make_root(32, 0, root);
    make_sim(&r, root, "t");
    assert_ok(wx_cache_put_sim(f->cache, &r, &err), &err);
    wx_sim_return_release(&r);
    wx_cache_close(f->cache);
    f->cache = NULL;
    assert_int_equal(rows_seen_outside(f->path, "sims"), 9 + 302);
}

static void test_open_sets_wal_and_schema_version(void **state)
{
    fixture *f = *state;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;

    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st,
                                        NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st,
                                        NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

static void test_newer_schema_is_refused(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    wx_cache *cache = (wx_cache *)&err; /* must be reset */

    sql(f->path, "PRAGMA user_version = 2");
    assert_fails(wx_cache_open(f->path, &cache, &err), WX_EINVAL, &err,
                 "has schema version 2, but this warmexec knows version 1 "
                 "only (written by a newer warmexec)");
    assert_null(cache);
    assert_non_null(strstr(err.message, f->path));
}

static void test_not_a_database_is_refused(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    wx_cache *cache = NULL;
    const char *path = tu_path(f->dir, "junk.db");
    FILE *file = fopen(path, "w");
    char junk[4096];

    memset(junk, 'x', sizeof(junk));
    assert_non_null(file);
    fwrite(junk, 1, sizeof(junk), file);
    fclose(file);
    assert_fails(wx_cache_open(path, &cache, &err), WX_EIO, &err,
                 "file is not a database");
    assert_null(cache);
}

static void test_open_creates_parent_directories(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    wx_cache *cache = NULL;

    assert_ok(wx_cache_open(tu_path(f->dir, "a/b/cache.db"), &cache, &err),
              &err);
    assert_int_equal(stats_of(cache).sims, 0);
    wx_cache_close(cache);
    assert_int_equal(access(tu_path(f->dir, "a/b/cache.db"), F_OK), 0);
}

static void test_damaged_entries_are_reported(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char root[WX_ID_LEN + 1], other[WX_ID_LEN + 1], statement[512];
    wx_sim_return r, got;
    bool hit = true;

    make_root(8, 1, root);
    make_root(8, 2, other);
    snprintf(statement, sizeof(statement),
             "INSERT INTO sims VALUES ('%s', 't', '{\"task_id\":', 0)", root);
    sql(f->path, statement);
    assert_fails(wx_cache_get_sim(f->cache, root, &got, &hit, &err),
                 WX_ECORRUPT, &err, "cache entry sims/");
    assert_false(hit);
    /* An entry stored under another key is damage too. */
    make_sim(&r, other, "t");
    assert_ok(wx_cache_put_sim(f->cache, &r, &err), &err);
    assert_ok(wx_cache_flush(f->cache, &err), &err);
    snprintf(statement, sizeof(statement),
             "DELETE FROM sims WHERE sim_root = '%s';"
             "UPDATE sims SET sim_root = '%s' WHERE sim_root = '%s'",
             root, root, other);
    sql(f->path, statement);
    assert_fails(wx_cache_get_sim(f->cache, root, &got, &hit, &err),
                 WX_ECORRUPT, &err, "it holds sim_root");
    wx_sim_return_release(&r);
}

/* A child process: 200 puts of its own entries into the shared file. */
static int child_writes(const char *path, unsigned id)
{
    wx_error err = WX_ERROR_INIT;
    wx_cache *cache = NULL;
    int rc = wx_cache_open(path, &cache, &err);

    for (unsigned i = 0; !rc && i < 200; i++) {
        char root[WX_ID_LEN + 1];
        wx_sim_return r;

        make_root(100 + id, i, root);
        make_sim(&r, root, "child");
        rc = wx_cache_put_sim(cache, &r, &err);
        wx_sim_return_release(&r);
    }
    if (rc)
        fprintf(stderr, "child %u: %s\n", id, err.message);
    wx_cache_close(cache);
    return rc ? 1 : 0;
}

static void test_processes_share_one_database(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char path[4096];
    pid_t pids[4];

    /* A fresh file: the children also race to create the schema.  No
     * handle (and so no writer thread) is open in the parent while it
     * forks: a child inherits locks other threads hold (ASan's
     * allocator's among them) and could wait on them for ever. */
    snprintf(path, sizeof(path), "%s/shared.db", f->dir);
    wx_cache_close(f->cache);
    f->cache = NULL;
    for (unsigned i = 0; i < 4; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0)
            _exit(child_writes(path, i));
    }
    assert_int_equal(tu_wait_all(pids, 4), 0);
    assert_ok(wx_cache_open(path, &f->cache, &err), &err);
    assert_int_equal(stats_of(f->cache).sims, 800);
    for (unsigned id = 0; id < 4; id++)
        for (unsigned i = 0; i < 200; i++) {
            char root[WX_ID_LEN + 1];
            wx_sim_return r;

            make_root(100 + id, i, root);
            make_sim(&r, root, "child");
            assert_sim_cached(f->cache, &r);
            wx_sim_return_release(&r);
        }
}

typedef struct thread_job {
    wx_cache *cache;
    unsigned id;
    int failures;
} thread_job;

static void *put_and_get(void *arg)
{
    thread_job *job = arg;

    for (unsigned i = 0; i < 100; i++) {
        wx_error err = WX_ERROR_INIT;
        char root[WX_ID_LEN + 1];
        wx_sim_return r, got;
        bool hit = false;

        make_root(200 + job->id, i, root);
        make_sim(&r, root, "thread");
        if (wx_cache_put_sim(job->cache, &r, &err) ||
            wx_cache_get_sim(job->cache, root, &got, &hit, &err) || !hit)
            job->failures++;
        if (hit)
            wx_sim_return_release(&got);
        wx_sim_return_release(&r);
    }
    return NULL;
}

/* Every entry of thread 0 is gone (counted as failures if not). */
static void *expect_gone(void *arg)
{
    thread_job *job = arg;

    for (unsigned i = 0; i < 100; i++) {
        wx_error err = WX_ERROR_INIT;
        char root[WX_ID_LEN + 1];
        wx_sim_return got;
        bool hit = false;

        make_root(200, i, root);
        if (wx_cache_get_sim(job->cache, root, &got, &hit, &err) || hit)
            job->failures++;
        if (hit)
            wx_sim_return_release(&got);
    }
    return NULL;
}

static void run_threads(wx_cache *cache, void *(*fn)(void *))
{
    pthread_t threads[4];
    thread_job jobs[4];

    for (unsigned i = 0; i < 4; i++) {
        jobs[i] = (thread_job){cache, i, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, fn, &jobs[i]),
                         0);
    }
    for (unsigned i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(jobs[i].failures, 0);
    }
}

/*
 * Threads looking up at once each use a connection of their own, whose
 * snapshots may be older than a delete or clear through the handle: what
 * the handle removed is never served afterwards.
 */
static void test_threads_share_one_handle(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;

    run_threads(f->cache, put_and_get);
    assert_int_equal(stats_of(f->cache).sims, 400);
    for (unsigned i = 0; i < 100; i++) {
        char root[WX_ID_LEN + 1];

        make_root(200, i, root);
        assert_ok(wx_cache_delete_sim(f->cache, root, &err), &err);
    }
    run_threads(f->cache, expect_gone);
    run_threads(f->cache, put_and_get);
    assert_ok(wx_cache_clear(f->cache, &err), &err);
    run_threads(f->cache, expect_gone);
    assert_int_equal(stats_of(f->cache).sims, 0);
}

/*
 * Lookup connections left idle do not keep a snapshot once the handle
 * commits: another connection can then checkpoint and truncate the WAL.
 */
static void test_idle_lookups_release_the_wal(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    sqlite3 *db = NULL;
    wx_sim_return r;
    char root[WX_ID_LEN + 1];
    int wal_frames = -1;

    run_threads(f->cache, put_and_get);
    make_root(300, 0, root);
    make_sim(&r, root, "last");
    assert_ok(wx_cache_put_sim(f->cache, &r, &err), &err);
    assert_ok(wx_cache_flush(f->cache, &err), &err);
    /* A checkpoint works on a connection that has read the WAL. */
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "SELECT count(*) FROM sims", NULL,
                                  NULL, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_wal_checkpoint_v2(db, "main",
                                               SQLITE_CHECKPOINT_TRUNCATE,
                                               &wal_frames, NULL),
                     SQLITE_OK);
    assert_int_equal(wal_frames, 0);
    sqlite3_close(db);
    assert_sim_cached(f->cache, &r);
    wx_sim_return_release(&r);
}

#define CACHE_TEST(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        CACHE_TEST(test_sim_round_trip),
        CACHE_TEST(test_sim_replace_and_delete),
        CACHE_TEST(test_put_sim_refuses_failures),
        CACHE_TEST(test_bad_keys_are_refused),
        CACHE_TEST(test_agg_round_trip_replace_delete),
        CACHE_TEST(test_put_agg_checks_id_against_digest),
        CACHE_TEST(test_stats_and_clear),
        CACHE_TEST(test_reopen_keeps_data),
        CACHE_TEST(test_puts_are_committed_in_groups),
        CACHE_TEST(test_open_sets_wal_and_schema_version),
        CACHE_TEST(test_newer_schema_is_refused),
        CACHE_TEST(test_not_a_database_is_refused),
        CACHE_TEST(test_open_creates_parent_directories),
        CACHE_TEST(test_damaged_entries_are_reported),
        CACHE_TEST(test_processes_share_one_database),
        CACHE_TEST(test_threads_share_one_handle),
        CACHE_TEST(test_idle_lookups_release_the_wal),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
