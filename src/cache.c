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
#include "clock.h"
#include "fs.h"
#include "hash.h"
#include "log.h"
#include "result.h"

#define SCHEMA_VERSION 1
/* How long a statement waits for another process's write lock. */
#define BUSY_TIMEOUT_MS 30000
/* Largest JSON text of one entry: refused on put, treated as damage on get. */
#define MAX_ENTRY_BYTES ((size_t)256 << 20)
/*
 * Puts are committed in groups by a writer thread with its own
 * connection: one transaction per put costs more than a trivial task,
 * and a caller never waits for the disk.  A group is written once it has
 * PENDING_MAX entries or PENDING_BYTES, or is PENDING_MS old; and before
 * anything reads a pending key or changes the table (cache.h).  Each
 * group rewrites the index pages it touches: bigger groups write less
 * (docs/cas.md).
 */
#define PENDING_MAX 4096
#define PENDING_MS 200
#define PENDING_BYTES ((size_t)64 << 20)
/* Open-addressing index of the queued keys (a power of two). */
#define PENDING_SLOTS 8192
/*
 * Reads share one read transaction for up to READ_MS or READ_MAX reads:
 * starting one per lookup costs file locking, more than the lookup.  An
 * entry another process commits meanwhile is seen by the next snapshot.
 */
#define READ_MS 200
#define READ_MAX 1024
/* Page cache of each lookup connection (there is one per thread). */
#define READER_PRAGMAS "PRAGMA cache_size = -8192"

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
/* A statement on aggregations is its twin on sims + 3 (open_conn). */
_Static_assert(ST_GET_AGG == ST_GET_SIM + 3 && ST_PUT_AGG == ST_PUT_SIM + 3,
               "statement order");

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

/* A put not yet committed. */
typedef struct pending_put {
    enum stmt_id id; /* ST_PUT_SIM or ST_PUT_AGG */
    char key[65];
    char second_id[65];
    char *text; /* owned */
    size_t len;
    double created;
} pending_put;

/* A group of puts and the index of their keys. */
typedef struct group {
    pending_put puts[PENDING_MAX];
    size_t n, bytes;
    int64_t since_ms;
    int16_t slots[PENDING_SLOTS]; /* index + 1 into puts, 0 = empty */
} group;

/*
 * A lookup connection and its read snapshot.  Threads looking up at once
 * each take one: a single shared connection serialized them, and the
 * waiting (a futex sleep and wake-up per lookup) cost more than the
 * lookup itself.
 */
typedef struct reader {
    struct reader *next_free, *next_all;
    sqlite3 *db;
    sqlite3_stmt *get[2]; /* sims, aggregations */
    bool reading;         /* a read transaction is open */
    uint64_t reading_from; /* the handle's `epoch` when it began */
    int64_t reading_since_ms;
    unsigned reads;
} reader;

struct wx_cache {
    sqlite3 *db;  /* deletes, stats, clear */
    sqlite3 *wdb; /* the writer thread's, for the groups */
    pthread_mutex_t mu; /* guards everything below but wdb */
    sqlite3_stmt *stmts[ST__COUNT];
    sqlite3_stmt *wput[2]; /* on wdb: sims, aggregations */
    char *path;
    group *queue;    /* filling */
    group *inflight; /* being committed by the writer (n = 0 if not) */
    pthread_t writer;
    bool writer_running, drain_wanted, stopping;
    pthread_cond_t wake, done;
    int write_rc;
    char write_error[256];
    /* Changes through this handle (groups committed, deletes, clears,
       flushes): a snapshot from an older epoch is renewed. */
    uint64_t epoch;
    reader *free_readers, *readers;
};

static void end_read(reader *r);
static void *writer_main(void *arg);

/* A SQLite failure as WX_EIO, with SQLite's own message. */
static int conn_error(const wx_cache *c, sqlite3 *db, const char *what,
                      wx_error *err)
{
    return wx_error_set(err, WX_EIO, "cache %s: %s: %s", c->path, what,
                        sqlite3_errmsg(db));
}

/* The same on the lookup connection. */
static int db_error(const wx_cache *c, const char *what, wx_error *err)
{
    return conn_error(c, c->db, what, err);
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

static int open_db(wx_cache *c, sqlite3 **db, wx_error *err)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                SQLITE_OPEN_NOMUTEX;

    if (sqlite3_open_v2(c->path, db, flags, NULL) == SQLITE_OK)
        return 0;
    if (!*db)
        return wx_error_set(err, WX_ENOMEM, "out of memory (SQLite)");
    return conn_error(c, *db, "open", err);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {0, ms * 1000000L};

    nanosleep(&ts, NULL);
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
    int64_t deadline = wx__now_ms() + BUSY_TIMEOUT_MS;
    sqlite3_stmt *st = NULL;
    const char *mode = NULL;
    int step;

    if (sqlite3_prepare_v2(c->db, "PRAGMA journal_mode = WAL", -1, &st,
                           NULL) != SQLITE_OK)
        return db_error(c, "PRAGMA journal_mode", err);
    while ((step = sqlite3_step(st)) == SQLITE_BUSY &&
           wx__now_ms() < deadline) {
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
                         "PRAGMA foreign_keys = OFF; "
                         "PRAGMA cache_size = -32768",
                      err);
    if (!rc && version == 0)
        rc = create_schema(c, err);
    /* Puts go through the writer's connection (open_writer), lookups
       through the readers' (open_reader). */
    for (int i = 0; !rc && i < ST__COUNT; i++)
        if (i != ST_PUT_SIM && i != ST_PUT_AGG && i != ST_GET_SIM &&
            i != ST_GET_AGG &&
            sqlite3_prepare_v3(c->db, stmt_sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &c->stmts[i],
                               NULL) != SQLITE_OK)
            rc = db_error(c, "prepare", err);
    return rc;
}

/*
 * The writer's pragmas: checkpoints every 32 MiB of WAL instead of 4 MiB
 * (the pages of a random-key index are rewritten far less often) and a
 * 32 MiB page cache for that index (docs/cas.md).
 */
#define WRITER_PRAGMAS                                                        \
    "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 8192; "        \
    "PRAGMA cache_size = -32768"

/*
 * A second connection to the set-up database, with `pragmas` and the
 * statements for sims and aggregations `sims` and `sims + 3` prepared in
 * `st` (the caller finalizes them and closes `*db`, also on failure).
 */
static int open_conn(wx_cache *c, sqlite3 **db, const char *pragmas,
                     enum stmt_id sims, sqlite3_stmt *st[2], const char *what,
                     wx_error *err)
{
    int rc = open_db(c, db, err);

    if (!rc && (sqlite3_busy_timeout(*db, BUSY_TIMEOUT_MS) != SQLITE_OK ||
                sqlite3_exec(*db, pragmas, NULL, NULL, NULL) != SQLITE_OK))
        rc = conn_error(c, *db, what, err);
    for (int i = 0; !rc && i < 2; i++)
        if (sqlite3_prepare_v3(*db, stmt_sql[sims + 3 * i], -1,
                               SQLITE_PREPARE_PERSISTENT, &st[i],
                               NULL) != SQLITE_OK)
            rc = conn_error(c, *db, what, err);
    return rc;
}

/* The writer's connection (the database is set up) and its thread. */
static int open_writer(wx_cache *c, wx_error *err)
{
    int rc = open_conn(c, &c->wdb, WRITER_PRAGMAS, ST_PUT_SIM, c->wput,
                       "writer connection", err);

    if (!rc && pthread_create(&c->writer, NULL, writer_main, c) != 0)
        rc = wx_error_set(err, WX_ENOMEM, "cannot start the cache writer");
    c->writer_running = rc == 0;
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
    pthread_cond_init(&c->wake, NULL);
    pthread_cond_init(&c->done, NULL);
    c->path = wx__strdup(path);
    c->queue = wx__calloc(1, sizeof(*c->queue));
    c->inflight = wx__calloc(1, sizeof(*c->inflight));
    if (!c->path || !c->queue || !c->inflight)
        rc = wx_error_set(err, WX_ENOMEM, "out of memory");
    if (!rc)
        rc = make_parent_dir(path, err);
    if (!rc)
        rc = open_db(c, &c->db, err);
    if (!rc)
        rc = setup_db(c, err);
    if (!rc)
        rc = open_writer(c, err);
    if (rc) {
        wx_cache_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Stop the writer once every queued put is committed. */
static void stop_writer(wx_cache *c)
{
    if (!c->writer_running)
        return;
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->writer, NULL);
    c->writer_running = false;
    if (c->write_rc)
        wx__log(WX_LOG_WARN, "%s", c->write_error);
}

void wx_cache_close(wx_cache *c)
{
    if (!c)
        return;
    stop_writer(c);
    while (c->readers) {
        reader *r = c->readers;

        c->readers = r->next_all;
        end_read(r);
        for (int i = 0; i < 2; i++)
            sqlite3_finalize(r->get[i]);
        sqlite3_close(r->db);
        wx_free(r);
    }
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(c->stmts[i]);
    for (int i = 0; i < 2; i++)
        sqlite3_finalize(c->wput[i]);
    sqlite3_close(c->db);
    sqlite3_close(c->wdb);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->wake);
    pthread_cond_destroy(&c->done);
    wx_free(c->queue);
    wx_free(c->inflight);
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
/* Delete `key` with statement `id` (on the lookup connection). */
static int delete_key(wx_cache *c, enum stmt_id id, const char *key,
                      wx_error *err)
{
    sqlite3_stmt *st = c->stmts[id];
    int rc = 0;

    if (sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_DONE)
        rc = db_error(c, "delete", err);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* ---- lookup connections ---- */

static void end_read(reader *r)
{
    if (!r->reading)
        return;
    sqlite3_exec(r->db, "COMMIT", NULL, NULL, NULL);
    r->reading = false;
}

/* A read transaction for the next lookup, renewed when it is old. */
static int begin_read(wx_cache *c, reader *r, uint64_t epoch, wx_error *err)
{
    /* A snapshot from before a change through this handle (a group
       committed, a delete) would not show it. */
    if (r->reading && (++r->reads >= READ_MAX || r->reading_from != epoch ||
                       wx__now_ms() - r->reading_since_ms >= READ_MS))
        end_read(r);
    if (r->reading)
        return 0;
    if (sqlite3_exec(r->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return conn_error(c, r->db, "begin", err);
    r->reading = true;
    r->reading_from = epoch;
    r->reading_since_ms = wx__now_ms();
    r->reads = 0;
    return 0;
}

/*
 * A change through this handle (c->mu held): every snapshot is now old.
 * Idle connections end theirs at once: an open read transaction keeps a
 * checkpoint from recycling the WAL, which would grow while a connection
 * nobody takes sits on one.
 */
static void new_epoch(wx_cache *c)
{
    c->epoch++;
    for (reader *r = c->free_readers; r; r = r->next_free)
        end_read(r);
}

/* A new lookup connection, listed in the handle (not yet free). */
static int open_reader(wx_cache *c, reader **out, wx_error *err)
{
    reader *r = wx__calloc(1, sizeof(*r));
    int rc = r ? open_conn(c, &r->db, READER_PRAGMAS, ST_GET_SIM, r->get,
                           "lookup connection", err)
               : wx_error_set(err, WX_ENOMEM, "out of memory");

    if (rc) {
        if (r) {
            for (int i = 0; i < 2; i++)
                sqlite3_finalize(r->get[i]);
            sqlite3_close(r->db);
        }
        wx_free(r);
        return rc;
    }
    pthread_mutex_lock(&c->mu);
    r->next_all = c->readers;
    c->readers = r;
    pthread_mutex_unlock(&c->mu);
    *out = r;
    return 0;
}

/* ---- the groups of puts ---- */

static size_t slot_of(enum stmt_id id, const char *key)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)id;

    /* The keys are digests: 16 of their hex digits spread well. */
    for (int i = 0; i < 16; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    return (size_t)(h & (PENDING_SLOTS - 1));
}

/* The put of `key` in `g`, or NULL. */
static pending_put *find_put(group *g, enum stmt_id id, const char *key)
{
    for (size_t s = slot_of(id, key); g->slots[s];
         s = (s + 1) & (PENDING_SLOTS - 1)) {
        pending_put *p = &g->puts[g->slots[s] - 1];

        if (p->id == id && strcmp(p->key, key) == 0)
            return p;
    }
    return NULL;
}

static void group_clear(group *g)
{
    for (size_t i = 0; i < g->n; i++)
        wx_free(g->puts[i].text);
    g->n = g->bytes = 0;
    memset(g->slots, 0, sizeof(g->slots));
}

/* c->mu held. */
static bool is_pending(wx_cache *c, enum stmt_id id, const char *key)
{
    return find_put(c->queue, id, key) || find_put(c->inflight, id, key);
}

/* Commit `g` on the writer's connection in one transaction. */
static int commit_group(wx_cache *c, const group *g, wx_error *err)
{
    int rc = 0;

    if (sqlite3_exec(c->wdb, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
        SQLITE_OK)
        rc = conn_error(c, c->wdb, "begin", err);
    for (size_t i = 0; !rc && i < g->n; i++) {
        const pending_put *p = &g->puts[i];
        sqlite3_stmt *st = c->wput[p->id == ST_PUT_SIM ? 0 : 1];

        if (sqlite3_bind_text(st, 1, p->key, -1, SQLITE_STATIC) ||
            sqlite3_bind_text(st, 2, p->second_id, -1, SQLITE_STATIC) ||
            sqlite3_bind_text(st, 3, p->text, (int)p->len, SQLITE_STATIC) ||
            sqlite3_bind_double(st, 4, p->created) ||
            sqlite3_step(st) != SQLITE_DONE)
            rc = conn_error(c, c->wdb, "write", err);
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    if (!rc && sqlite3_exec(c->wdb, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = conn_error(c, c->wdb, "commit", err);
    if (rc)
        sqlite3_exec(c->wdb, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

/* Whether the queue should be committed now (c->mu held). */
static bool group_due(const wx_cache *c)
{
    const group *q = c->queue;

    return q->n && (c->drain_wanted || c->stopping || q->n == PENDING_MAX ||
                    q->bytes >= PENDING_BYTES ||
                    wx__now_ms() - q->since_ms >= PENDING_MS);
}

/* The writer: commits each group that is due, until stopped and empty. */
static void *writer_main(void *arg)
{
    wx_cache *c = arg;

    pthread_mutex_lock(&c->mu);
    for (;;) {
        wx_error err = WX_ERROR_INIT;
        group *g;
        int rc;

        if (!group_due(c)) {
            if (!c->queue->n) {
                c->drain_wanted = false;
                pthread_cond_broadcast(&c->done);
                if (c->stopping)
                    break;
            }
            wx__cond_wait_ns(&c->wake, &c->mu, PENDING_MS * 1000000LL);
            continue;
        }
        g = c->queue;
        c->queue = c->inflight;
        c->inflight = g;
        pthread_mutex_unlock(&c->mu);
        rc = commit_group(c, g, &err);
        pthread_mutex_lock(&c->mu);
        if (rc && !c->write_rc) {
            c->write_rc = rc;
            snprintf(c->write_error, sizeof(c->write_error), "%.200s",
                     err.message);
        }
        group_clear(g);
        new_epoch(c);
        pthread_cond_broadcast(&c->done);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* A write error of the writer, reported once (c->mu held). */
static int take_write_error(wx_cache *c, wx_error *err)
{
    int rc = c->write_rc;

    if (rc)
        wx_error_set(err, rc, "%s", c->write_error);
    c->write_rc = 0;
    return rc;
}

/* Wait until every queued put is committed (c->mu held). */
static int drain(wx_cache *c, wx_error *err)
{
    while (c->queue->n || c->inflight->n) {
        c->drain_wanted = true;
        pthread_cond_signal(&c->wake);
        pthread_cond_wait(&c->done, &c->mu);
    }
    return take_write_error(c, err);
}

/* Queue a put (taking `text`); a newer put of a queued key replaces it. */
static int queue_put(wx_cache *c, enum stmt_id id, const char *key,
                     const char *second_id, wx_buf *text, wx_error *err)
{
    size_t len = text->len, s;
    char *owned = wx_buf_detach(text, NULL);
    pending_put *p;
    int rc;

    if (!owned)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    pthread_mutex_lock(&c->mu);
    rc = take_write_error(c, err);
    while (c->queue->n == PENDING_MAX) { /* the writer is behind */
        pthread_cond_signal(&c->wake);
        pthread_cond_wait(&c->done, &c->mu);
    }
    p = find_put(c->queue, id, key);
    if (p) {
        c->queue->bytes -= p->len;
        wx_free(p->text);
    } else {
        if (!c->queue->n)
            c->queue->since_ms = wx__now_ms();
        p = &c->queue->puts[c->queue->n];
        for (s = slot_of(id, key); c->queue->slots[s];
             s = (s + 1) & (PENDING_SLOTS - 1))
            ;
        c->queue->slots[s] = (int16_t)(++c->queue->n);
    }
    *p = (pending_put){.id = id, .text = owned, .len = len,
                       .created = now_seconds()};
    snprintf(p->key, sizeof(p->key), "%s", key);
    snprintf(p->second_id, sizeof(p->second_id), "%s", second_id);
    c->queue->bytes += len;
    if (c->queue->n == PENDING_MAX || c->queue->bytes >= PENDING_BYTES)
        pthread_cond_signal(&c->wake);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int wx_cache_flush(wx_cache *c, wx_error *err)
{
    int rc;

    pthread_mutex_lock(&c->mu);
    rc = drain(c, err);
    new_epoch(c); /* the next lookup sees everything committed so far */
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* A delete: pending puts first, so the order of changes is kept. */
static int run_delete(wx_cache *c, enum stmt_id id, const char *key,
                      wx_error *err)
{
    int rc;

    pthread_mutex_lock(&c->mu);
    rc = drain(c, err);
    if (!rc)
        rc = delete_key(c, id, key, err);
    new_epoch(c);
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

/* Read and parse the JSON stored under `key` with `r`. */
static int read_entry(wx_cache *c, reader *r, bool agg, const char *table,
                      const char *key, uint64_t epoch, json_t **doc,
                      wx_error *err)
{
    sqlite3_stmt *st = r->get[agg];
    int rc = begin_read(c, r, epoch, err), step;

    if (!rc && sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC) != SQLITE_OK)
        rc = conn_error(c, r->db, "bind", err);
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
        rc = conn_error(c, r->db, "read", err);
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

/* Read and parse the JSON stored under `key`; `*doc` NULL on a miss. */
static int fetch(wx_cache *c, bool agg, const char *table, const char *key,
                 json_t **doc, wx_error *err)
{
    reader *r = NULL;
    uint64_t epoch;
    int rc = 0;

    *doc = NULL;
    pthread_mutex_lock(&c->mu);
    /* A read of a key still pending sees it: commit the group first. */
    if (is_pending(c, agg ? ST_PUT_AGG : ST_PUT_SIM, key))
        rc = drain(c, err);
    epoch = c->epoch;
    if (!rc && (r = c->free_readers) != NULL)
        c->free_readers = r->next_free;
    pthread_mutex_unlock(&c->mu);
    if (!rc && !r)
        rc = open_reader(c, &r, err);
    if (!rc)
        rc = read_entry(c, r, agg, table, key, epoch, doc, err);
    if (r) {
        pthread_mutex_lock(&c->mu);
        r->next_free = c->free_readers;
        c->free_readers = r;
        pthread_mutex_unlock(&c->mu);
    }
    return rc;
}

/* An entry's text outgrew MAX_ENTRY_BYTES: say so in the cache's terms. */
static int entry_limit(int rc, wx_error *err)
{
    if (rc == WX_ETOOBIG)
        return wx_error_set(err, WX_ETOOBIG,
                            "cache: entry larger than %zu bytes",
                            MAX_ENTRY_BYTES);
    return rc;
}

/* The canonical JSON text of `v` (consumed), bounded by MAX_ENTRY_BYTES. */
static int entry_text(json_t *v, wx_buf *text, wx_error *err)
{
    int rc = wx_json_canonical(text, v, err);

    json_decref(v);
    return entry_limit(rc, err);
}

int wx_cache_get_sim(wx_cache *c, const char *sim_root, wx_sim_return *out,
                     bool *hit, wx_error *err)
{
    wx_sim_return r;
    json_t *doc = NULL;
    int rc = check_key("sim_root", sim_root, err);

    *hit = false;
    if (!rc)
        rc = fetch(c, false, "sims", sim_root, &doc, err);
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
    int rc;

    if (r->error)
        return wx_error_set(err, WX_EINVAL,
                            "cache: refusing the failed SimReturn of "
                            "sim_root %.64s: failures are never cached",
                            r->sim_root);
    rc = wx_sim_return_validate(r, err);
    if (rc)
        return wx_error_prefix(err, rc, "cache: SimReturn");
    /* Written directly, not through jansson values: one per task. */
    rc = entry_limit(wx__sim_return_canonical(r, &text, err), err);
    if (!rc)
        rc = queue_put(c, ST_PUT_SIM, r->sim_root, r->task_id, &text, err);
    wx_buf_release(&text);
    return rc;
}

int wx_cache_delete_sim(wx_cache *c, const char *sim_root, wx_error *err)
{
    int rc = check_key("sim_root", sim_root, err);

    return rc ? rc : run_delete(c, ST_DEL_SIM, sim_root, err);
}

int wx_cache_get_agg(wx_cache *c, const char *agg_digest, wx_agg_return *out,
                     bool *hit, wx_error *err)
{
    wx_agg_return r;
    json_t *doc = NULL;
    int rc = check_key("aggregation digest", agg_digest, err);

    *hit = false;
    if (!rc)
        rc = fetch(c, true, "aggregations", agg_digest, &doc, err);
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
        rc = queue_put(c, ST_PUT_AGG, agg_digest, r->aggregation_id, &text,
                       err);
    wx_buf_release(&text);
    return rc;
}

int wx_cache_delete_agg(wx_cache *c, const char *agg_digest, wx_error *err)
{
    int rc = check_key("aggregation digest", agg_digest, err);

    return rc ? rc : run_delete(c, ST_DEL_AGG, agg_digest, err);
}

int wx_cache_stats_get(wx_cache *c, wx_cache_stats *out, wx_error *err)
{
    sqlite3_stmt *st = c->stmts[ST_STATS];
    int rc;

    pthread_mutex_lock(&c->mu);
    rc = drain(c, err);
    if (!rc && sqlite3_step(st) == SQLITE_ROW) {
        out->sims = sqlite3_column_int64(st, 0);
        out->aggregations = sqlite3_column_int64(st, 1);
        out->bytes = sqlite3_column_int64(st, 2);
    } else if (!rc) {
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
    rc = drain(c, err);
    if (rc) {
        pthread_mutex_unlock(&c->mu);
        return rc;
    }
    rc = exec_sql(c, "BEGIN IMMEDIATE; DELETE FROM sims; "
                     "DELETE FROM aggregations; COMMIT",
                  err);
    if (rc)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    new_epoch(c);
    pthread_mutex_unlock(&c->mu);
    return rc;
}
