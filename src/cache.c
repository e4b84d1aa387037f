/*
 * The result cache: SimReturns and AggregationReturns as canonical JSON
 * in SQLite.  One connection per wx_cache, serialized by a mutex; other
 * processes share the file through WAL and the busy timeout.
 */
#include "internal.h"

#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <time.h>

#include <warmexec/cache.h>
#include <warmexec/canon.h>
#include <warmexec/json.h>

#include "alloc.h"
#include "fs.h"
#include "hash.h"
#include "log.h"

#define SCHEMA_VERSION 1
/* How long a statement waits for another process's write lock. */
#define BUSY_TIMEOUT_MS 30000
/* Largest JSON text of one entry: refused on put, treated as damage on get. */
#define MAX_ENTRY_BYTES ((size_t)256 << 20)

enum stmt_id {
    ST_GET_SIM,
    ST_PUT_SIM,
    ST_DEL_SIM,
    ST_GET_AGG,
    ST_PUT_AGG,
    ST_DEL_AGG,
    ST_STATS,
    ST__COUNT
};

static const char *const stmt_sql[ST__COUNT] = {
    [ST_GET_SIM] = "SELECT json FROM sims WHERE sim_root = ?1",
    [ST_PUT_SIM] = "INSERT OR REPLACE INTO sims(sim_root, task_id, json, "
                   "created) VALUES (?1, ?2, ?3, ?4)",
    [ST_DEL_SIM] = "DELETE FROM sims WHERE sim_root = ?1",
    [ST_GET_AGG] = "SELECT json FROM aggregations WHERE agg_digest = ?1",
    [ST_PUT_AGG] = "INSERT OR REPLACE INTO aggregations(agg_digest, "
                   "aggregation_id, json, created) VALUES (?1, ?2, ?3, ?4)",
    [ST_DEL_AGG] = "DELETE FROM aggregations WHERE agg_digest = ?1",
    [ST_STATS] =
        "SELECT (SELECT count(*) FROM sims), "
        "(SELECT count(*) FROM aggregations), "
        "(SELECT coalesce(sum(length(CAST(json AS BLOB))), 0) FROM sims) + "
        "(SELECT coalesce(sum(length(CAST(json AS BLOB))), 0) "
        "FROM aggregations)",
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS sims("
    "sim_root TEXT PRIMARY KEY, task_id TEXT, json TEXT NOT NULL, "
    "created REAL);"
    "CREATE TABLE IF NOT EXISTS aggregations("
    "agg_digest TEXT PRIMARY KEY, aggregation_id TEXT, json TEXT NOT NULL, "
    "created REAL);"
    "PRAGMA user_version = 1;";

struct wx_cache {
    sqlite3 *db;
    pthread_mutex_t mu; /* guards db and stmts */
    sqlite3_stmt *stmts[ST__COUNT];
    char *path;
};

/* A SQLite failure as WX_EIO, with SQLite's own message. */
static int db_error(const wx_cache *c, const char *what, wx_error *err)
{
    return wx_error_set(err, WX_EIO, "cache %s: %s: %s", c->path, what,
                        sqlite3_errmsg(c->db));
}

static int exec_sql(wx_cache *c, const char *sql, wx_error *err)
{
    if (sqlite3_exec(c->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return db_error(c, sql, err);
    return 0;
}

/* ---- opening ---- */

static int make_parent_dir(const char *path, wx_error *err)
{
    char copy[PATH_MAX];

    if (strlen(path) >= sizeof(copy))
        return wx_error_set(err, WX_EINVAL, "cache path too long: %s",
                            path);
    snprintf(copy, sizeof(copy), "%s", path);
    return wx__fs_mkdirs(dirname(copy), err);
}

static int open_db(wx_cache *c, wx_error *err)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                SQLITE_OPEN_NOMUTEX;

    if (sqlite3_open_v2(c->path, &c->db, flags, NULL) == SQLITE_OK)
        return 0;
    if (!c->db)
        return wx_error_set(err, WX_ENOMEM, "out of memory (SQLite)");
    return db_error(c, "open", err);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};

    nanosleep(&ts, NULL);
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Switch to WAL, which lets readers and one writer of any process work
 * at once.  The switch needs an exclusive lock that SQLite does not wait
 * for (the busy handler is skipped to avoid deadlock), so when several
 * processes open a new database together it is retried here, for as
 * long as the busy timeout.  SQLite refuses WAL on file systems without
 * shared memory (network file systems); the rollback journal it keeps
 * then is slower but as safe.
 */
static int use_wal(wx_cache *c, wx_error *err)
{
    int64_t deadline = monotonic_ms() + BUSY_TIMEOUT_MS;
    sqlite3_stmt *st = NULL;
    const char *mode = NULL;
    int step;

    if (sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &st,
                           NULL) != SQLITE_OK)
        return db_error(c, "PRAGMA journal_mode", err);
    while ((step = sqlite3_step(st)) == SQLITE_BUSY &&
           monotonic_ms() < deadline) {
        sqlite3_reset(st);
        sleep_ms(10);
    }
    if (step != SQLITE_ROW) {
        sqlite3_finalize(st);
        return db_error(c, "PRAGMA journal_mode", err);
    }
    mode = (const char *)sqlite3_column_text(st, 0);
    if (!mode || strcmp(mode, "wal") != 0)
        wx__log(WX_LOG_WARN, "cache %s: WAL unavailable, journal mode %s",
                c->path, mode ? mode : "unknown");
    sqlite3_finalize(st);
    return 0;
}

static int read_user_version(wx_cache *c, int *version, wx_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = 0;

    if (sqlite3_prepare_v2(c->db, "PRAGMA user_version", -1, &st, NULL) !=
        SQLITE_OK)
        return db_error(c, "PRAGMA user_version", err);
    if (sqlite3_step(st) == SQLITE_ROW)
        *version = sqlite3_column_int(st, 0);
    else
        rc = db_error(c, "PRAGMA user_version", err);
    sqlite3_finalize(st);
    return rc;
}

static int check_version(const wx_cache *c, int version, wx_error *err)
{
    if (version == 0 || version == SCHEMA_VERSION)
        return 0;
    return wx_error_set(err, WX_EINVAL,
                        "cache %s has schema version %d, but this warmexec "
                        "knows version %d only%s",
                        c->path, version, SCHEMA_VERSION,
                        version > SCHEMA_VERSION
                            ? " (written by a newer warmexec): upgrade "
                              "warmexec or use another home"
                            : "");
}

/*
 * Create the tables of a new database.  The version is read again under
 * the write lock: another process may have created them meanwhile.
 */
static int create_schema(wx_cache *c, wx_error *err)
{
    int version = 0;
    int rc = exec_sql(c, "BEGIN IMMEDIATE", err);

    if (rc)
        return rc;
    rc = read_user_version(c, &version, err);
    if (!rc)
        rc = check_version(c, version, err);
    if (!rc && version == 0)
        rc = exec_sql(c, schema_sql, err);
    if (!rc)
        rc = exec_sql(c, "COMMIT", err);
    if (rc)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int setup_db(wx_cache *c, wx_error *err)
{
    int version = 0;
    int rc = sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS) == SQLITE_OK
                 ? 0
                 : db_error(c, "busy timeout", err);

    /* A database of another version is left as it is: checked first. */
    if (!rc)
        rc = read_user_version(c, &version, err);
    if (!rc)
        rc = check_version(c, version, err);
    if (!rc)
        rc = use_wal(c, err);
    if (!rc)
        rc = exec_sql(c, "PRAGMA synchronous = NORMAL; "
                         "PRAGMA foreign_keys = OFF",
                      err);
    if (!rc && version == 0)
        rc = create_schema(c, err);
    for (int i = 0; !rc && i < ST__COUNT; i++)
        if (sqlite3_prepare_v3(c->db, stmt_sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &c->stmts[i],
                               NULL) != SQLITE_OK)
            rc = db_error(c, "prepare", err);
    return rc;
}

int wx_cache_open(const char *path, wx_cache **out, wx_error *err)
{
    wx_cache *c = wx__calloc(1, sizeof(*c));
    int rc = 0;

    *out = NULL;
    if (!c)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    pthread_mutex_init(&c->mu, NULL);
    c->path = wx__strdup(path);
    if (!c->path)
        rc = wx_error_set(err, WX_ENOMEM, "out of memory");
    if (!rc)
        rc = make_parent_dir(path, err);
    if (!rc)
        rc = open_db(c, err);
    if (!rc)
        rc = setup_db(c, err);
    if (rc) {
        wx_cache_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

void wx_cache_close(wx_cache *c)
{
    if (!c)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(c->stmts[i]);
    sqlite3_close(c->db);
    pthread_mutex_destroy(&c->mu);
    wx_free(c->path);
    wx_free(c);
}

/* ---- entries ---- */

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Keys are 64 lowercase hex: sim_root, or the full aggregation digest. */
static int check_key(const char *what, const char *key, wx_error *err)
{
    if (key && wx__is_hex256(key))
        return 0;
    return wx_error_set(err, WX_EINVAL,
                        "cache: %s must be 64 lowercase hex, got '%.100s'",
                        what, key ? key : "(null)");
}

/*
 * Run a write statement: bind the key, and for a put the second id, the
 * JSON text and the time.  One statement is one transaction.
 */
static int run_write(wx_cache *c, enum stmt_id id, const char *key,
                     const char *second_id, const wx_buf *text,
                     wx_error *err)
{
    sqlite3_stmt *st = c->stmts[id];
    int rc = 0;

    pthread_mutex_lock(&c->mu);
    if (sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK ||
        (text && (sqlite3_bind_text(st, 2, second_id, -1, SQLITE_STATIC) !=
                      SQLITE_OK ||
                  sqlite3_bind_text(st, 3, text->data, (int)text->len,
                                    SQLITE_STATIC) != SQLITE_OK ||
                  sqlite3_bind_double(st, 4, now_seconds()) != SQLITE_OK)))
        rc = db_error(c, "bind", err);
    if (!rc && sqlite3_step(st) != SQLITE_DONE)
        rc = db_error(c, text ? "write" : "delete", err);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* Mark the failure in `err` as a damaged entry of `table`. */
static int damaged_entry(const char *table, const char *key, wx_error *err)
{
    if (err)
        err->code = WX_ECORRUPT;
    return wx_error_prefix(err, WX_ECORRUPT, "cache entry %s/%s is damaged",
                           table, key);
}

/* Read and parse the JSON stored under `key`; `*doc` NULL on a miss. */
static int fetch(wx_cache *c, enum stmt_id id, const char *table,
                 const char *key, json_t **doc, wx_error *err)
{
    sqlite3_stmt *st = c->stmts[id];
    int rc = 0, step;

    *doc = NULL;
    pthread_mutex_lock(&c->mu);
    if (sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK)
        rc = db_error(c, "bind", err);
    step = rc ? SQLITE_ERROR : sqlite3_step(st);
    if (!rc && step == SQLITE_ROW) {
        const char *text = (const char *)sqlite3_column_text(st, 0);
        size_t len = (size_t)sqlite3_column_bytes(st, 0);

        if (len > MAX_ENTRY_BYTES)
            rc = wx_error_set(err, WX_ETOOBIG, "%zu bytes, limit %zu", len,
                              MAX_ENTRY_BYTES);
        else if (!text)
            rc = wx_error_set(err, WX_ENOMEM, "out of memory (SQLite)");
        else
            rc = wx_json_parse(text, len, doc, err);
        if (rc && rc != WX_ENOMEM)
            rc = damaged_entry(table, key, err);
    } else if (!rc && step != SQLITE_DONE) {
        rc = db_error(c, "read", err);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* The canonical JSON text of `v` (consumed), bounded by MAX_ENTRY_BYTES. */
static int entry_text(json_t *v, wx_buf *text, wx_error *err)
{
    int rc = wx_json_canonical(text, v, err);

    json_decref(v);
    if (rc == WX_ETOOBIG)
        return wx_error_set(err, WX_ETOOBIG,
                            "cache: entry larger than %zu bytes",
                            MAX_ENTRY_BYTES);
    return rc;
}

int wx_cache_get_sim(wx_cache *c, const char *sim_root, wx_sim_return *out,
                     bool *hit, wx_error *err)
{
    wx_sim_return r;
    json_t *doc = NULL;
    int rc = check_key("sim_root", sim_root, err);

    *hit = false;
    if (!rc)
        rc = fetch(c, ST_GET_SIM, "sims", sim_root, &doc, err);
    if (rc || !doc)
        return rc;
    rc = wx_sim_return_from_json(&r, doc, err);
    json_decref(doc);
    if (!rc && strcmp(r.sim_root, sim_root) != 0) {
        rc = wx_error_set(err, WX_EINVAL, "it holds sim_root %s",
                          r.sim_root);
        wx_sim_return_release(&r);
    }
    if (rc)
        return rc == WX_ENOMEM ? rc : damaged_entry("sims", sim_root, err);
    *out = r;
    *hit = true;
    return 0;
}

int wx_cache_put_sim(wx_cache *c, const wx_sim_return *r, wx_error *err)
{
    wx_buf text = WX_BUF_INIT(MAX_ENTRY_BYTES);
    json_t *v = NULL;
    int rc;

    if (r->error)
        return wx_error_set(err, WX_EINVAL,
                            "cache: refusing the failed SimReturn of "
                            "sim_root %.64s: failures are never cached",
                            r->sim_root);
    rc = wx_sim_return_validate(r, err);
    if (rc)
        return wx_error_prefix(err, rc, "cache: SimReturn");
    rc = wx_sim_return_to_json(r, &v, err);
    if (!rc)
        rc = entry_text(v, &text, err);
    if (!rc)
        rc = run_write(c, ST_PUT_SIM, r->sim_root, r->task_id, &text, err);
    wx_buf_release(&text);
    return rc;
}

int wx_cache_delete_sim(wx_cache *c, const char *sim_root, wx_error *err)
{
    int rc = check_key("sim_root", sim_root, err);

    return rc ? rc : run_write(c, ST_DEL_SIM, sim_root, NULL, NULL, err);
}

int wx_cache_get_agg(wx_cache *c, const char *agg_digest, wx_agg_return *out,
                     bool *hit, wx_error *err)
{
    wx_agg_return r;
    json_t *doc = NULL;
    int rc = check_key("aggregation digest", agg_digest, err);

    *hit = false;
    if (!rc)
        rc = fetch(c, ST_GET_AGG, "aggregations", agg_digest, &doc, err);
    if (rc || !doc)
        return rc;
    rc = wx_agg_return_from_json(&r, doc, err);
    json_decref(doc);
    if (rc)
        return rc == WX_ENOMEM ? rc
                               : damaged_entry("aggregations", agg_digest,
                                               err);
    *out = r;
    *hit = true;
    return 0;
}

int wx_cache_put_agg(wx_cache *c, const char *agg_digest,
                     const wx_agg_return *r, wx_error *err)
{
    wx_buf text = WX_BUF_INIT(MAX_ENTRY_BYTES);
    json_t *v = NULL;
    int rc = check_key("aggregation digest", agg_digest, err);

    if (!rc && strncmp(r->aggregation_id, agg_digest, WX_AGG_ID_LEN) != 0)
        rc = wx_error_set(err, WX_EINVAL,
                          "cache: aggregation_id %.16s is not the start of "
                          "its digest %s",
                          r->aggregation_id, agg_digest);
    if (!rc && (rc = wx_agg_return_validate(r, err)) != 0)
        wx_error_prefix(err, rc, "cache: AggregationReturn");
    if (!rc)
        rc = wx_agg_return_to_json(r, &v, err);
    if (!rc)
        rc = entry_text(v, &text, err);
    if (!rc)
        rc = run_write(c, ST_PUT_AGG, agg_digest, r->aggregation_id, &text,
                       err);
    wx_buf_release(&text);
    return rc;
}

int wx_cache_delete_agg(wx_cache *c, const char *agg_digest, wx_error *err)
{
    int rc = check_key("aggregation digest", agg_digest, err);

    return rc ? rc : run_write(c, ST_DEL_AGG, agg_digest, NULL, NULL, err);
}

int wx_cache_stats_get(wx_cache *c, wx_cache_stats *out, wx_error *err)
{
    sqlite3_stmt *st = c->stmts[ST_STATS];
    int rc = 0;

    pthread_mutex_lock(&c->mu);
    if (sqlite3_step(st) == SQLITE_ROW) {
        out->sims = sqlite3_column_int64(st, 0);
        out->aggregations = sqlite3_column_int64(st, 1);
        out->bytes = sqlite3_column_int64(st, 2);
    } else {
        rc = db_error(c, "stats", err);
    }
    sqlite3_reset(st);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int wx_cache_clear(wx_cache *c, wx_error *err)
{
    int rc;

    pthread_mutex_lock(&c->mu);
    rc = exec_sql(c, "BEGIN IMMEDIATE; DELETE FROM sims; "
                     "DELETE FROM aggregations; COMMIT",
                  err);
    if (rc)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_unlock(&c->mu);
    return rc;
}
