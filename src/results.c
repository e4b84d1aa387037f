/* The results database of a study: schema, batched writer, summaries. */
#include "internal.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <warmexec/version.h>

#include "alloc.h"
#include "clock.h"
#include "fs.h"
#include "results.h"

#define SCHEMA_VERSION 1
/* A batch is committed after this many rows or this many milliseconds. */
#define BATCH_ROWS 2000
#define BATCH_MS 200

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS runs ("
    " run_key TEXT PRIMARY KEY, study TEXT, study_sha256 TEXT,"
    " bundle_ref TEXT, entrypoint TEXT, targets TEXT, n_param_sets INTEGER,"
    " n_tasks INTEGER, status TEXT, warmexec_version TEXT, started TEXT,"
    " finished TEXT);"
    "CREATE TABLE IF NOT EXISTS sims ("
    " param_id TEXT NOT NULL, replicate INTEGER NOT NULL, params TEXT,"
    " seed INTEGER, task_id TEXT, sim_root TEXT, status TEXT,"
    " error_type TEXT, error_message TEXT, outputs TEXT, duration REAL,"
    " cached INTEGER, PRIMARY KEY (param_id, replicate));"
    "CREATE TABLE IF NOT EXISTS aggregations ("
    " param_id TEXT NOT NULL, target TEXT NOT NULL, loss REAL,"
    " n_replicates INTEGER, diagnostics TEXT, status TEXT, error_type TEXT,"
    " error TEXT, aggregation_id TEXT, PRIMARY KEY (param_id, target));"
    "CREATE VIEW IF NOT EXISTS losses AS"
    " SELECT a.param_id, a.target, a.loss, a.n_replicates, p.params"
    " FROM aggregations a JOIN (SELECT param_id, min(params) AS params"
    " FROM sims GROUP BY param_id) p USING (param_id)"
    " WHERE a.status = 'ok';";

typedef struct row {
    struct row *next;
    bool is_agg;
    char *text[8]; /* owned copies of the row's strings */
    int64_t i1, i2;
    double d;
    bool b1, b2;
} row;

struct wx__results {
    sqlite3 *db;
    sqlite3_stmt *ins_sim, *ins_agg;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    row *head, *tail;
    size_t queued;
    uint64_t added, committed;
    bool stopping;
    int write_rc;
    char write_error[256];
    pthread_t writer;
    char run_key[65];
    int (*barrier)(void *ctx, wx_error *err);
    void *barrier_ctx;
};

static int db_error(sqlite3 *db, wx_error *err, const char *what)
{
    return wx_error_set(err, WX_EIO, "results database: %s: %s", what,
                        db ? sqlite3_errmsg(db) : "cannot open");
}

static int exec(sqlite3 *db, const char *sql, wx_error *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK) {
        wx_error_set(err, WX_EIO, "results database: %s",
                     msg ? msg : sqlite3_errstr(rc));
        sqlite3_free(msg);
        return WX_EIO;
    }
    return 0;
}

/* ---- rows ---- */

static void row_free(row *r)
{
    for (size_t i = 0; i < WX_ARRAY_LEN(r->text); i++)
        wx_free(r->text[i]);
    wx_free(r);
}

/* Copy `n` strings (NULL allowed) into r->text. */
static bool copy_texts(row *r, const char *const *texts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (texts[i] && !(r->text[i] = wx__strdup(texts[i])))
            return false;
    return true;
}

static void bind_text(sqlite3_stmt *st, int col, const char *s)
{
    if (s)
        sqlite3_bind_text(st, col, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, col);
}

static int insert_sim(wx__results *r, const row *w)
{
    sqlite3_stmt *st = r->ins_sim;

    bind_text(st, 1, w->text[0]);
    sqlite3_bind_int64(st, 2, w->i1);
    bind_text(st, 3, w->text[1]);
    sqlite3_bind_int64(st, 4, w->i2);
    bind_text(st, 5, w->text[2]);
    bind_text(st, 6, w->text[3]);
    bind_text(st, 7, w->b1 ? "ok" : "error");
    bind_text(st, 8, w->text[4]);
    bind_text(st, 9, w->text[5]);
    bind_text(st, 10, w->text[6]);
    sqlite3_bind_double(st, 11, w->d);
    sqlite3_bind_int(st, 12, w->b2);
    return sqlite3_step(st);
}

static int insert_agg(wx__results *r, const row *w)
{
    sqlite3_stmt *st = r->ins_agg;

    bind_text(st, 1, w->text[0]);
    bind_text(st, 2, w->text[1]);
    if (w->b1)
        sqlite3_bind_double(st, 3, w->d);
    else
        sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, w->i1);
    bind_text(st, 5, w->text[2]);
    bind_text(st, 6, w->b1 ? "ok" : "error");
    bind_text(st, 7, w->text[3]);
    bind_text(st, 8, w->text[4]);
    bind_text(st, 9, w->text[5]);
    return sqlite3_step(st);
}

/* One transaction for a batch of rows. */
static int commit_batch(wx__results *r, row *batch)
{
    int rc = sqlite3_exec(r->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);

    for (row *w = batch; rc == SQLITE_OK && w; w = w->next) {
        sqlite3_stmt *st = w->is_agg ? r->ins_agg : r->ins_sim;

        rc = (w->is_agg ? insert_agg(r, w) : insert_sim(r, w));
        rc = rc == SQLITE_DONE ? SQLITE_OK : rc;
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL);
    else
        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

void wx__results_set_barrier(wx__results *r,
                             int (*fn)(void *ctx, wx_error *err), void *ctx)
{
    pthread_mutex_lock(&r->mu);
    r->barrier = fn;
    r->barrier_ctx = ctx;
    pthread_mutex_unlock(&r->mu);
}

/* Run the barrier (writer thread); its failure is the batch's. */
static int pass_barrier(wx__results *r)
{
    wx_error err = WX_ERROR_INIT;
    int (*fn)(void *ctx, wx_error *err);
    void *ctx;
    int rc;

    pthread_mutex_lock(&r->mu);
    fn = r->barrier;
    ctx = r->barrier_ctx;
    pthread_mutex_unlock(&r->mu);
    /* Outside the lock: syncing may take a while, producers go on. */
    rc = fn ? fn(ctx, &err) : 0;
    pthread_mutex_lock(&r->mu);
    if (rc && !r->write_rc) {
        r->write_rc = rc;
        snprintf(r->write_error, sizeof(r->write_error), "%.200s",
                 err.message);
    }
    pthread_mutex_unlock(&r->mu);
    return rc ? SQLITE_IOERR : SQLITE_OK;
}

static void *writer_main(void *arg)
{
    wx__results *r = arg;

    pthread_mutex_lock(&r->mu);
    for (;;) {
        row *batch = r->head;
        size_t n = r->queued;
        int rc;

        if (!batch && r->stopping)
            break;
        if (n < BATCH_ROWS && !r->stopping) {
            wx__cond_wait_ns(&r->wake, &r->mu, BATCH_MS * 1000000LL);
            batch = r->head;
            n = r->queued;
        }
        if (!batch)
            continue;
        r->head = r->tail = NULL;
        r->queued = 0;
        pthread_mutex_unlock(&r->mu);
        rc = pass_barrier(r);
        if (rc == SQLITE_OK)
            rc = commit_batch(r, batch);
        while (batch) {
            row *next = batch->next;

            row_free(batch);
            batch = next;
        }
        pthread_mutex_lock(&r->mu);
        if (rc != SQLITE_OK && !r->write_rc) {
            r->write_rc = WX_EIO;
            snprintf(r->write_error, sizeof(r->write_error), "%s",
                     sqlite3_errmsg(r->db));
        }
        r->committed += n;
        pthread_cond_broadcast(&r->done);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static int enqueue(wx__results *r, row *w)
{
    pthread_mutex_lock(&r->mu);
    if (r->tail)
        r->tail->next = w;
    else
        r->head = w;
    r->tail = w;
    r->queued++;
    r->added++;
    if (r->queued >= BATCH_ROWS)
        pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->mu);
    return 0;
}

int wx__results_add_sim(wx__results *r, const wx__sim_row *s)
{
    const char *texts[] = {s->param_id, s->params,     s->task_id,
                           s->sim_root, s->error_type, s->error_message,
                           s->outputs};
    row *w = wx__calloc(1, sizeof(*w));

    if (!w || !copy_texts(w, texts, WX_ARRAY_LEN(texts))) {
        if (w)
            row_free(w);
        return WX_ENOMEM;
    }
    w->i1 = s->replicate;
    w->i2 = s->seed;
    w->d = s->duration;
    w->b1 = s->ok;
    w->b2 = s->cached;
    return enqueue(r, w);
}

int wx__results_add_agg(wx__results *r, const wx__agg_row *a)
{
    const char *texts[] = {a->param_id, a->target, a->diagnostics,
                           a->error_type, a->error, a->aggregation_id};
    row *w = wx__calloc(1, sizeof(*w));

    if (!w || !copy_texts(w, texts, WX_ARRAY_LEN(texts))) {
        if (w)
            row_free(w);
        return WX_ENOMEM;
    }
    w->is_agg = true;
    w->b1 = a->ok;
    w->d = a->loss;
    w->i1 = a->n_replicates;
    return enqueue(r, w);
}

int wx__results_flush(wx__results *r, wx_error *err)
{
    int rc;

    pthread_mutex_lock(&r->mu);
    pthread_cond_signal(&r->wake);
    while (r->committed < r->added) {
        pthread_cond_signal(&r->wake);
        pthread_cond_wait(&r->done, &r->mu);
    }
    rc = r->write_rc;
    if (rc)
        wx_error_set(err, rc, "results database: %s", r->write_error);
    pthread_mutex_unlock(&r->mu);
    return rc;
}

/* ---- open and close ---- */

static void now_text(char out[32])
{
    time_t t = time(NULL);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The one run of the database: ours, or none yet. */
static int check_run(wx__results *r, const wx__run_info *run, wx_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(r->db, "SELECT run_key, study FROM runs",
                                -1, &st, NULL);

    if (rc != SQLITE_OK)
        return db_error(r->db, err, "read runs");
    rc = 0;
    while (!rc && sqlite3_step(st) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);

        if (key && strcmp(key, run->run_key) != 0)
            rc = wx_error_set(err, WX_EINVAL,
                              "the results database holds another study "
                              "(%s, or the same study with another bundle "
                              "or targets); choose another --out",
                              sqlite3_column_text(st, 1));
    }
    sqlite3_finalize(st);
    return rc;
}

static int record_run(wx__results *r, const wx__run_info *run, wx_error *err)
{
    char now[32];
    sqlite3_stmt *st = NULL;
    int rc;

    now_text(now);
    rc = sqlite3_prepare_v2(
        r->db,
        "INSERT INTO runs (run_key, study, study_sha256, bundle_ref,"
        " entrypoint, targets, n_param_sets, n_tasks, status,"
        " warmexec_version, started) VALUES (?,?,?,?,?,?,?,?,'running',?,?)"
        " ON CONFLICT (run_key) DO UPDATE SET status = 'running'",
        -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_error(r->db, err, "record the run");
    bind_text(st, 1, run->run_key);
    bind_text(st, 2, run->study);
    bind_text(st, 3, run->study_sha256);
    bind_text(st, 4, run->bundle_ref);
    bind_text(st, 5, run->entrypoint);
    bind_text(st, 6, run->targets);
    sqlite3_bind_int64(st, 7, run->n_sets);
    sqlite3_bind_int64(st, 8, run->n_tasks);
    bind_text(st, 9, WX_VERSION_STRING);
    bind_text(st, 10, now);
    rc = sqlite3_step(st) == SQLITE_DONE ? 0
                                         : db_error(r->db, err, "record run");
    sqlite3_finalize(st);
    return rc;
}

static int prepare(wx__results *r, wx_error *err)
{
    if (sqlite3_prepare_v2(r->db,
                           "INSERT OR REPLACE INTO sims VALUES "
                           "(?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &r->ins_sim, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(r->db,
                           "INSERT OR REPLACE INTO aggregations VALUES "
                           "(?,?,?,?,?,?,?,?,?)",
                           -1, &r->ins_agg, NULL) != SQLITE_OK)
        return db_error(r->db, err, "prepare");
    return 0;
}

/* Schema, version check and pragmas of a fresh or existing database. */
static int setup_db(sqlite3 *db, wx_error *err)
{
    sqlite3_stmt *st = NULL;
    int version = 0, rc;

    sqlite3_busy_timeout(db, 30000);
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version > SCHEMA_VERSION)
        return wx_error_set(err, WX_EINVAL,
                            "the results database has schema version %d; "
                            "this warmexec reads up to %d",
                            version, SCHEMA_VERSION);
    rc = exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
              err);
    if (!rc)
        rc = exec(db, schema, err);
    if (!rc)
        rc = exec(db, "PRAGMA user_version = 1", err);
    return rc;
}

/* A path we cannot create is the user's to fix: bad input, not I/O. */
static int open_db(const char *path, sqlite3 **db, wx_error *err)
{
    int rc = sqlite3_open_v2(path, db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                 SQLITE_OPEN_NOMUTEX,
                             NULL);

    if (rc != SQLITE_OK)
        return wx_error_set(err, WX_EINVAL,
                            "cannot write the results database %s: %s", path,
                            *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
    rc = setup_db(*db, err);
    if (rc == WX_EIO)
        return wx_error_prefix(err, WX_EINVAL,
                               "cannot write the results database %s", path);
    return rc;
}

int wx__results_open(const char *path, const wx__run_info *run,
                     wx__results **out, wx_error *err)
{
    wx__results *r = wx__calloc(1, sizeof(*r));
    int rc;

    if (!r)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->wake, NULL);
    pthread_cond_init(&r->done, NULL);
    snprintf(r->run_key, sizeof(r->run_key), "%s", run->run_key);
    rc = open_db(path, &r->db, err);
    if (!rc)
        rc = check_run(r, run, err);
    if (!rc)
        rc = record_run(r, run, err);
    if (!rc)
        rc = prepare(r, err);
    if (!rc && pthread_create(&r->writer, NULL, writer_main, r) != 0)
        rc = wx_error_set(err, WX_EIO, "cannot start the writer thread");
    if (rc) {
        sqlite3_finalize(r->ins_sim);
        sqlite3_finalize(r->ins_agg);
        sqlite3_close(r->db);
        wx_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

static int finish_run(wx__results *r, bool complete, wx_error *err)
{
    char sql[256], now[32];

    now_text(now);
    snprintf(sql, sizeof(sql),
             "UPDATE runs SET status = '%s', finished = '%s'"
             " WHERE run_key = '%s'",
             complete ? "complete" : "interrupted", now, r->run_key);
    return exec(r->db, sql, err);
}

int wx__results_close(wx__results *r, bool complete, wx_error *err)
{
    int rc = wx__results_flush(r, err);

    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_signal(&r->wake);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->writer, NULL);
    if (!rc)
        rc = finish_run(r, complete, err);
    sqlite3_finalize(r->ins_sim);
    sqlite3_finalize(r->ins_agg);
    /* Leave one self-contained file behind (no -wal/-shm). */
    if (!rc)
        exec(r->db, "PRAGMA wal_checkpoint(TRUNCATE);"
                    " PRAGMA journal_mode = DELETE;",
             NULL);
    sqlite3_close(r->db);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->wake);
    pthread_cond_destroy(&r->done);
    wx_free(r);
    return rc;
}

/* ---- reading back ---- */

int wx__results_done(wx__results *r,
                     void (*sim)(void *user, const char *param_id,
                                 int64_t replicate),
                     void (*agg)(void *user, const char *param_id,
                                 const char *target),
                     void *user, wx_error *err)
{
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(r->db, "SELECT param_id, replicate FROM sims",
                           -1, &st, NULL) != SQLITE_OK)
        return db_error(r->db, err, "read sims");
    while (sqlite3_step(st) == SQLITE_ROW)
        sim(user, (const char *)sqlite3_column_text(st, 0),
            sqlite3_column_int64(st, 1));
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(r->db,
                           "SELECT param_id, target FROM aggregations", -1,
                           &st, NULL) != SQLITE_OK)
        return db_error(r->db, err, "read aggregations");
    while (sqlite3_step(st) == SQLITE_ROW)
        agg(user, (const char *)sqlite3_column_text(st, 0),
            (const char *)sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
    return 0;
}

/* Recorded rows by status: the state of the whole study. */
static int count_rows(wx__results *r, wx_run_summary *sum, wx_error *err)
{
    static const char sql[] =
        "SELECT (SELECT count(*) FROM sims WHERE status = 'ok'),"
        " (SELECT count(*) FROM sims WHERE status = 'error'),"
        " (SELECT count(*) FROM aggregations WHERE status = 'ok'),"
        " (SELECT count(*) FROM aggregations WHERE status = 'error')";
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        sqlite3_finalize(st);
        return db_error(r->db, err, "count rows");
    }
    sum->sims_ok = (size_t)sqlite3_column_int64(st, 0);
    sum->sims_failed = (size_t)sqlite3_column_int64(st, 1);
    sum->aggs_ok = (size_t)sqlite3_column_int64(st, 2);
    sum->aggs_failed = (size_t)sqlite3_column_int64(st, 3);
    sqlite3_finalize(st);
    return 0;
}

static int count_errors(wx__results *r, wx_run_summary *sum, wx_error *err)
{
    static const char sql[] =
        "SELECT error_type, count(*) FROM ("
        " SELECT error_type FROM sims WHERE status = 'error'"
        " UNION ALL SELECT error_type FROM aggregations"
        " WHERE status = 'error') GROUP BY error_type ORDER BY 2 DESC";
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_error(r->db, err, "count errors");
    while (sqlite3_step(st) == SQLITE_ROW) {
        wx_error_count *grown = wx__realloc(
            sum->errors, (sum->n_errors + 1) * sizeof(*grown));

        if (!grown)
            break;
        sum->errors = grown;
        snprintf(grown[sum->n_errors].type, sizeof(grown->type), "%s",
                 sqlite3_column_text(st, 0) ? (const char *)
                                                  sqlite3_column_text(st, 0)
                                            : "?");
        grown[sum->n_errors++].count = (size_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return 0;
}

static int add_best(wx_run_summary *sum, sqlite3_stmt *st)
{
    wx_best *grown = wx__realloc(sum->best, (sum->n_best + 1) * sizeof(*grown));
    wx_best *b;

    if (!grown)
        return WX_ENOMEM;
    sum->best = grown;
    b = &grown[sum->n_best];
    memset(b, 0, sizeof(*b));
    b->target = wx__strdup((const char *)sqlite3_column_text(st, 0));
    snprintf(b->param_id, sizeof(b->param_id), "%s",
             sqlite3_column_text(st, 1));
    b->loss = sqlite3_column_double(st, 2);
    b->params = wx__strdup(sqlite3_column_text(st, 3)
                               ? (const char *)sqlite3_column_text(st, 3)
                               : "{}");
    sum->n_best++;
    return b->target && b->params ? 0 : WX_ENOMEM;
}

int wx__results_summary(wx__results *r, int best_per_target,
                        wx_run_summary *sum, wx_error *err)
{
    static const char sql[] =
        "SELECT target, param_id, loss, params FROM ("
        " SELECT *, row_number() OVER (PARTITION BY target ORDER BY loss,"
        " param_id) AS k FROM losses) WHERE k <= ? ORDER BY target, k";
    sqlite3_stmt *st = NULL;
    int rc = wx__results_flush(r, err);

    if (!rc)
        rc = count_rows(r, sum, err);
    if (!rc)
        rc = count_errors(r, sum, err);
    if (rc)
        return rc;
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_error(r->db, err, "best losses");
    sqlite3_bind_int(st, 1, best_per_target);
    while (!rc && sqlite3_step(st) == SQLITE_ROW)
        rc = add_best(sum, st);
    sqlite3_finalize(st);
    return rc ? wx_error_set(err, rc, "out of memory") : 0;
}

void wx_run_summary_release(wx_run_summary *s)
{
    for (size_t i = 0; i < s->n_best; i++) {
        wx_free(s->best[i].target);
        wx_free(s->best[i].params);
    }
    wx_free(s->best);
    wx_free(s->errors);
    s->best = NULL;
    s->errors = NULL;
    s->n_best = s->n_errors = 0;
}

/* ---- CSV export ---- */

static void csv_field(FILE *f, const char *s, bool last)
{
    if (s && strpbrk(s, ",\"\n\r")) {
        fputc('"', f);
        for (; *s; s++) {
            if (*s == '"')
                fputc('"', f);
            fputc(*s, f);
        }
        fputc('"', f);
    } else if (s) {
        fputs(s, f);
    }
    fputc(last ? '\n' : ',', f);
}

/* The result of `sql` as a CSV file with a header line. */
static int export_query(sqlite3 *db, const char *sql, const char *path,
                        wx_error *err)
{
    sqlite3_stmt *st = NULL;
    FILE *f;
    int cols, rc = 0;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_error(db, err, "export");
    f = fopen(path, "w");
    if (!f) {
        sqlite3_finalize(st);
        return wx_error_set_sys(err, WX_EIO, errno, "create %s", path);
    }
    cols = sqlite3_column_count(st);
    for (int i = 0; i < cols; i++)
        csv_field(f, sqlite3_column_name(st, i), i == cols - 1);
    while (sqlite3_step(st) == SQLITE_ROW)
        for (int i = 0; i < cols; i++)
            csv_field(f, (const char *)sqlite3_column_text(st, i),
                      i == cols - 1);
    if (ferror(f) | fclose(f))
        rc = wx_error_set(err, WX_EIO, "cannot write %s", path);
    sqlite3_finalize(st);
    return rc;
}

int wx__results_export_csv(wx__results *r, const char *dir, wx_error *err)
{
    char path[4096];
    int rc = wx__results_flush(r, err);

    if (!rc)
        rc = wx__fs_mkdirs(dir, err);
    if (!rc)
        rc = wx__path_join(path, sizeof(path), dir, "sims.csv", err);
    if (!rc)
        rc = export_query(r->db,
                          "SELECT param_id, replicate, seed, status,"
                          " error_type, error_message, duration, cached,"
                          " task_id, sim_root, params FROM sims"
                          " ORDER BY param_id, replicate",
                          path, err);
    if (!rc)
        rc = wx__path_join(path, sizeof(path), dir, "aggregations.csv", err);
    if (!rc)
        rc = export_query(r->db,
                          "SELECT a.param_id, a.target, a.status, a.loss,"
                          " a.n_replicates, a.error_type, a.error, p.params"
                          " FROM aggregations a LEFT JOIN (SELECT param_id,"
                          " min(params) AS params FROM sims GROUP BY"
                          " param_id) p USING (param_id)"
                          " ORDER BY a.target, a.loss",
                          path, err);
    return rc;
}
