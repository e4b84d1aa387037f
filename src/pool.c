/*
 * The warm worker pool.  One mutex guards the worker table and counters;
 * it is never held across I/O or a spawn.  Processes are spawned by one
 * long-lived thread, because PR_SET_PDEATHSIG fires when the spawning
 * *thread* ends: workers must not die with a short-lived caller thread.
 */
#include "internal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <warmexec/pool.h>

#include "alloc.h"
#include "clock.h"
#include "fs.h"
#include "log.h"
#include "pool.h"
#include "frame.h"
#include "proc.h"
#include "wire.h"

/* Bytes of a worker's stderr log quoted in error details. */
#define TAIL_BYTES 4096
/* A worker log larger than this is emptied at release... */
#define LOG_MAX_BYTES ((off_t)64 << 20)
/* ...checked every this many calls: a stat per task costs more than a
 * trivial task's own work. */
#define LOG_CHECK_CALLS 32
/* How long a retiring worker may take to answer `shutdown`. */
#define SHUTDOWN_REPLY_MS 1000

extern char **environ;

enum worker_state { W_STARTING, W_IDLE, W_BUSY };

struct wx__worker {
    struct wx__worker *next;
    char id[32];
    char *key;
    enum worker_state state;
    bool failed;
    bool attachments;
    int64_t started_ms, calls;
    uint64_t last_use; /* the pool's use counter at the last lease */
    wx__proc proc;
    wx__rpc_conn conn;
    bool conn_ready;
    wx__outputs raw; /* the last execute's outputs; buffers reused */
    wx_buf call;     /* the text of execute params; reused */
    char scratch[PATH_MAX];
    char log_path[PATH_MAX];
};

/* A spawn handed to the spawner thread. */
typedef struct spawn_job {
    struct spawn_job *next;
    const wx__spawn_opts *opts;
    wx__proc *proc;
    wx_error *err;
    int rc;
    bool done;
} spawn_job;

struct wx_pool {
    wx_pool_options o;
    char *home;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    wx__worker *workers;
    int total;
    uint64_t seq;
    wx_pool_stats stats;
    uint64_t uses; /* counts leases and releases: the LRU order */
    pthread_t spawner;
    pthread_cond_t spawn_cv;
    spawn_job *jobs;
    bool stopping;
};

/* ---- spawner thread ---- */

static void *spawner_main(void *arg)
{
    wx_pool *p = arg;

    pthread_mutex_lock(&p->mu);
    for (;;) {
        spawn_job *job = p->jobs;

        if (!job && p->stopping)
            break;
        if (!job) {
            pthread_cond_wait(&p->spawn_cv, &p->mu);
            continue;
        }
        p->jobs = job->next;
        pthread_mutex_unlock(&p->mu);
        job->rc = wx__spawn(job->opts, job->proc, job->err);
        pthread_mutex_lock(&p->mu);
        job->done = true;
        pthread_cond_broadcast(&p->spawn_cv);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Spawn on the spawner thread and wait for the result. */
static int spawn_via_spawner(wx_pool *p, const wx__spawn_opts *o,
                             wx__proc *proc, wx_error *err)
{
    spawn_job job = {NULL, o, proc, err, 0, false};
    spawn_job **tail;

    pthread_mutex_lock(&p->mu);
    for (tail = &p->jobs; *tail; tail = &(*tail)->next)
        ;
    *tail = &job;
    pthread_cond_broadcast(&p->spawn_cv);
    while (!job.done)
        pthread_cond_wait(&p->spawn_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    return job.rc;
}

/* ---- building a worker's command line and environment ---- */

typedef struct strv {
    char **items;
    size_t n, cap;
} strv;

static void strv_free(strv *v)
{
    for (size_t i = 0; i < v->n; i++)
        wx_free(v->items[i]);
    wx_free(v->items);
    memset(v, 0, sizeof(*v));
}

/* Append `s` (taken over); keeps the array NULL-terminated. */
static int strv_push(strv *v, char *s, wx_error *err)
{
    if (!s)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    if (v->n + 2 > v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        char **items = wx__realloc(v->items, cap * sizeof(*items));

        if (!items) {
            wx_free(s);
            return wx_error_set(err, WX_ENOMEM, "out of memory");
        }
        v->items = items;
        v->cap = cap;
    }
    v->items[v->n++] = s;
    v->items[v->n] = NULL;
    return 0;
}

/* `arg` with {bundle_path}, {bundle_digest} and {scratch} replaced. */
static char *expand_arg(const char *arg, const wx_worker_spec *spec,
                        const char *scratch)
{
    static const char *const names[] = {"{bundle_path}", "{bundle_digest}",
                                        "{scratch}"};
    const char *values[] = {spec->bundle_path ? spec->bundle_path : "",
                            spec->bundle_digest, scratch};
    wx_buf out = WX_BUF_INIT(1 << 20);

    while (*arg) {
        size_t i = 0;

        while (i < WX_ARRAY_LEN(names) &&
               strncmp(arg, names[i], strlen(names[i])) != 0)
            i++;
        if (i < WX_ARRAY_LEN(names)) {
            if (wx_buf_puts(&out, values[i], NULL))
                goto fail;
            arg += strlen(names[i]);
        } else if (wx_buf_putc(&out, *arg++, NULL)) {
            goto fail;
        }
    }
    return wx_buf_detach(&out, NULL);
fail:
    wx_buf_release(&out);
    return NULL;
}

/* Variables a worker inherits from the manager (docs/pool.md). */
static bool allowed_env(const char *entry)
{
    static const char *const names[] = {"PATH=", "HOME=", "USER=",
                                        "LOGNAME=", "LANG=", "LANGUAGE=",
                                        "TZ=", "TMPDIR=", "LC_"};

    for (size_t i = 0; i < WX_ARRAY_LEN(names); i++)
        if (strncmp(entry, names[i], strlen(names[i])) == 0)
            return true;
    return false;
}

/* True when `entry` sets a variable that one of `extra` sets too. */
static bool overridden(const char *entry, const char *const *extra)
{
    size_t len = strcspn(entry, "=");

    for (; extra && *extra; extra++)
        if (strncmp(*extra, entry, len) == 0 && (*extra)[len] == '=')
            return true;
    return false;
}

static int build_env(const wx_worker_spec *spec, const char *id, strv *env,
                     wx_error *err)
{
    char buf[64];
    int rc = 0;

    for (char **e = environ; !rc && e && *e; e++)
        if (allowed_env(*e) && !overridden(*e, spec->env))
            rc = strv_push(env, wx__strdup(*e), err);
    snprintf(buf, sizeof(buf), "WARMEXEC_WORKER_ID=%s", id);
    if (!rc)
        rc = strv_push(env, wx__strdup(buf), err);
    for (const char *const *e = spec->env; !rc && e && *e; e++) {
        if (!strchr(*e, '='))
            return wx_error_set(err, WX_EINVAL,
                                "env entry '%s' is not NAME=value", *e);
        rc = strv_push(env, wx__strdup(*e), err);
    }
    return rc;
}

static int build_argv(const wx_worker_spec *spec, const char *scratch,
                      strv *argv, wx_error *err)
{
    int rc = 0;

    if (!spec->argv || !spec->argv[0])
        return wx_error_set(err, WX_EINVAL, "runner has no command");
    for (const char *const *a = spec->argv; !rc && *a; a++)
        rc = strv_push(argv, expand_arg(*a, spec, scratch), err);
    return rc;
}

/* ---- faults ---- */

void wx_fault_release(wx_fault *f)
{
    if (!f)
        return;
    wx_free(f->stderr_tail);
    wx_free(f->traceback);
    memset(f, 0, sizeof(*f));
}

const char *wx_fault_type_of(int rc)
{
    switch (rc) {
    case WX_EMODEL:
        return "ModelError";
    case WX_EOOM:
        return "OutOfMemory";
    case WX_ETIMEDOUT:
        return "Timeout";
    case WX_EPROTO:
        return "ProtocolError";
    case WX_ESTART:
        return "WorkerStartFailed";
    case WX_ECRASHED:
        return "WorkerCrashed";
    case WX_EINVAL:
        return "InvalidTask";
    default:
        return "WorkerCrashed";
    }
}

/* The last TAIL_BYTES of a log, from a line start; NULL if empty. */
static char *read_tail(const char *path)
{
    char *buf = NULL, *start;
    ssize_t n;
    off_t size;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return NULL;
    size = lseek(fd, 0, SEEK_END);
    if (size > 0 && (buf = wx__malloc(TAIL_BYTES + 1)) != NULL) {
        off_t from = size > TAIL_BYTES ? size - TAIL_BYTES : 0;

        n = pread(fd, buf, TAIL_BYTES, from);
        buf[n > 0 ? n : 0] = '\0';
        start = from > 0 && strchr(buf, '\n') ? strchr(buf, '\n') + 1 : buf;
        memmove(buf, start, strlen(start) + 1);
        if (!buf[0]) {
            wx_free(buf);
            buf = NULL;
        }
    }
    close(fd);
    return buf;
}

static void fill_fault(wx_fault *f, const wx__worker *w, int rc)
{
    if (!f)
        return;
    f->error_type = wx_fault_type_of(rc);
    f->retryable = rc == WX_ETIMEDOUT || rc == WX_ECRASHED || rc == WX_EPROTO;
    snprintf(f->worker_id, sizeof(f->worker_id), "%s", w->id);
    wx_free(f->stderr_tail);
    f->stderr_tail = read_tail(w->log_path);
}

/* ---- worker lifecycle ---- */

static void free_worker(wx__worker *w)
{
    if (w->conn_ready)
        wx__rpc_conn_release(&w->conn);
    wx__outputs_release(&w->raw);
    wx_buf_release(&w->call);
    wx__proc_close_fds(&w->proc);
    wx_free(w->key);
    wx_free(w);
}

/* Remove the scratch directory of a stopped worker (its log stays). */
static void remove_scratch(const wx__worker *w)
{
    if (w->scratch[0])
        wx__fs_remove_tree(w->scratch);
}

/*
 * Retire a healthy worker: `shutdown` request, close stdin, SIGTERM after
 * the grace period, then SIGKILL of the group.
 */
static void stop_worker(wx_pool *p, wx__worker *w)
{
    if (w->conn_ready && !w->failed && w->proc.in_fd >= 0) {
        json_t *params = json_object(), *result = NULL;

        wx__rpc_call(&w->conn, "shutdown", params, NULL, 0,
                     wx__now_ms() + SHUTDOWN_REPLY_MS, &result, NULL);
        json_decref(result);
        json_decref(params);
    }
    wx__proc_stop(&w->proc, (int)(p->o.shutdown_grace * 1000));
    remove_scratch(w);
}

/*
 * Stop a worker that failed and describe why: `fault` gets its status and
 * stderr tail, `err` the one-line reason.  A hung worker gets SIGKILL at
 * once.
 */
static void fail_worker(wx_pool *p, wx__worker *w, int rc, wx_fault *fault,
                        wx_error *err)
{
    char status[96] = "";

    w->failed = true;
    if (rc == WX_ETIMEDOUT)
        wx__proc_signal(&w->proc, SIGKILL);
    wx__proc_stop(&w->proc, rc == WX_ETIMEDOUT ? 0 : 100);
    if (w->proc.reaped)
        wx__describe_status(w->proc.status, status, sizeof(status));
    if (w->proc.reaped && WIFSIGNALED(w->proc.status) &&
        WTERMSIG(w->proc.status) == SIGKILL && p->o.mem_limit_bytes &&
        rc == WX_ECRASHED)
        rc = WX_EOOM;
    fill_fault(fault, w, rc);
    if (fault)
        snprintf(fault->status, sizeof(fault->status), "%s", status);
    if (rc == WX_ETIMEDOUT)
        wx_error_set(err, rc,
                     "worker %s gave no reply within task_timeout (%g s) "
                     "and was killed",
                     w->id, p->o.task_timeout);
    else if (rc == WX_EOOM)
        wx_error_set(err, rc, "worker %s ran out of memory (%s)", w->id,
                     status);
    else if (rc == WX_ECRASHED && status[0])
        wx_error_prefix(err, rc, "worker %s died during the call (%s)",
                        w->id, status);
    else if (rc == WX_EPROTO)
        wx_error_prefix(err, rc, "worker %s broke the protocol", w->id);
    else
        wx_error_prefix(err, rc, "worker %s failed", w->id);
    pthread_mutex_lock(&p->mu);
    if (rc == WX_ETIMEDOUT)
        p->stats.timed_out++;
    else
        p->stats.crashed++;
    pthread_mutex_unlock(&p->mu);
    remove_scratch(w);
}

/* workers/<id> (created) and logs/<id>.log under the pool's home. */
static int worker_paths(wx_pool *p, wx__worker *w, wx_error *err)
{
    char logs[PATH_MAX];
    int rc;

    if ((size_t)snprintf(w->scratch, sizeof(w->scratch), "%s/workers/%s",
                         p->home, w->id) >= sizeof(w->scratch) ||
        (size_t)snprintf(logs, sizeof(logs), "%s/logs", p->home) >=
            sizeof(logs) ||
        (size_t)snprintf(w->log_path, sizeof(w->log_path), "%s/%s.log",
                         logs, w->id) >= sizeof(w->log_path))
        return wx_error_set(err, WX_EINVAL, "home path too long: %s",
                            p->home);
    rc = wx__fs_mkdirs(w->scratch, err);
    return rc ? rc : wx__fs_mkdirs(logs, err);
}

static int spawn_worker(wx_pool *p, wx__worker *w, const wx_worker_spec *spec,
                        wx_error *err)
{
    strv argv = {0}, env = {0};
    wx__spawn_opts o = {0};
    int rc = worker_paths(p, w, err);

    if (!rc)
        rc = build_argv(spec, w->scratch, &argv, err);
    if (!rc)
        rc = build_env(spec, w->id, &env, err);
    if (!rc) {
        o = (wx__spawn_opts){argv.items, env.items, w->scratch, w->log_path,
                             p->o.mem_limit_bytes};
        rc = spawn_via_spawner(p, &o, &w->proc, err);
    }
    if (!rc) {
        rc = wx__rpc_conn_init(&w->conn, w->proc.in_fd, w->proc.out_fd,
                               p->o.max_frame_bytes, err);
        w->conn_ready = rc == 0;
    }
    strv_free(&argv);
    strv_free(&env);
    return rc;
}

/* The ready result must echo our digest; note warmexec/1 support. */
static int check_ready(wx__worker *w, const json_t *result,
                       const char *digest, wx_error *err)
{
    const char *echoed =
        json_string_value(json_object_get(result, "bundle_digest"));

    if (!json_is_true(json_object_get(result, "ready")))
        return wx_error_set(err, WX_ESTART,
                            "runner did not answer ready: true");
    if (!echoed || strcmp(echoed, digest) != 0)
        return wx_error_set(err, WX_ESTART,
                            "runner reports bundle digest '%.80s', expected "
                            "'%s'",
                            echoed ? echoed : "(none)", digest);
    w->attachments =
        json_is_true(json_object_get(result, "attachments")) &&
        json_is_string(json_object_get(result, "protocol")) &&
        strcmp(json_string_value(json_object_get(result, "protocol")),
               "warmexec/1") == 0;
    return 0;
}

static int handshake(wx_pool *p, wx__worker *w, const wx_worker_spec *spec,
                     wx_error *err)
{
    json_t *params = p->o.attachments
                         ? json_pack("{s:s,s:b}", "protocol", "warmexec/1",
                                     "attachments", 1)
                         : json_object();
    json_t *result = NULL;
    int rc;

    if (!params)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    rc = wx__rpc_call(&w->conn, "ready", params, NULL, 0,
                      wx__deadline_after(p->o.start_timeout), &result, err);
    if (!rc)
        rc = check_ready(w, result, spec->bundle_digest, err);
    json_decref(params);
    json_decref(result);
    return rc;
}

/*
 * Spawn and handshake.  Any failure is WX_ESTART ("WorkerStartFailed")
 * with the runner's status and stderr tail.
 */
static int start_worker(wx_pool *p, wx__worker *w, const wx_worker_spec *spec,
                        wx_fault *fault, wx_error *err)
{
    char status[96] = "";
    int rc = spawn_worker(p, w, spec, err);

    if (!rc)
        rc = handshake(p, w, spec, err);
    if (!rc)
        return 0;
    w->failed = true;
    if (rc == WX_ETIMEDOUT)
        wx__proc_signal(&w->proc, SIGKILL);
    wx__proc_stop(&w->proc, 100);
    if (w->proc.reaped && w->proc.pid)
        wx__describe_status(w->proc.status, status, sizeof(status));
    fill_fault(fault, w, WX_ESTART);
    if (fault)
        snprintf(fault->status, sizeof(fault->status), "%s", status);
    remove_scratch(w);
    if (rc == WX_ETIMEDOUT)
        return wx_error_set(err, WX_ESTART,
                            "worker %s did not become ready within "
                            "start_timeout (%g s)",
                            w->id, p->o.start_timeout);
    if (status[0])
        return wx_error_prefix(err, WX_ESTART,
                               "worker %s failed to start (runner %s)",
                               w->id, status);
    return wx_error_prefix(err, WX_ESTART, "worker %s failed to start",
                           w->id);
}

/* ---- the table (callers hold p->mu) ---- */

static int count_key(const wx_pool *p, const char *key)
{
    int n = 0;

    for (const wx__worker *w = p->workers; w; w = w->next)
        n += strcmp(w->key, key) == 0;
    return n;
}

static bool expired(const wx_pool *p, const wx__worker *w, int64_t now)
{
    return (p->o.max_tasks_per_worker > 0 &&
            w->calls >= p->o.max_tasks_per_worker) ||
           (p->o.worker_ttl > 0 &&
            (double)(now - w->started_ms) >= p->o.worker_ttl * 1000.0);
}

/* The most recently used idle worker of `key` (warmest caches). */
static wx__worker *find_idle(const wx_pool *p, const char *key)
{
    wx__worker *best = NULL;

    for (wx__worker *w = p->workers; w; w = w->next)
        if (w->state == W_IDLE && strcmp(w->key, key) == 0 &&
            (!best || w->last_use > best->last_use))
            best = w;
    return best;
}

/* The least recently used idle worker of another key. */
static wx__worker *find_victim(const wx_pool *p, const char *key)
{
    wx__worker *lru = NULL;

    for (wx__worker *w = p->workers; w; w = w->next)
        if (w->state == W_IDLE && strcmp(w->key, key) != 0 &&
            (!lru || w->last_use < lru->last_use))
            lru = w;
    return lru;
}

static void unlink_worker(wx_pool *p, wx__worker *w)
{
    for (wx__worker **pp = &p->workers; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            p->total--;
            pthread_cond_broadcast(&p->cv);
            return;
        }
    }
}

static wx__worker *new_worker(wx_pool *p, const char *key)
{
    wx__worker *w = wx__calloc(1, sizeof(*w));

    if (!w || !(w->key = wx__strdup(key))) {
        wx_free(w);
        return NULL;
    }
    snprintf(w->id, sizeof(w->id), "w%06" PRIu64, ++p->seq);
    wx__outputs_init(&w->raw, p->o.max_frame_bytes);
    wx_buf_init(&w->call, p->o.max_frame_bytes);
    w->state = W_STARTING;
    w->proc.in_fd = w->proc.out_fd = -1;
    w->started_ms = wx__now_ms();
    w->last_use = ++p->uses;
    w->next = p->workers;
    p->workers = w;
    p->total++;
    return w;
}

/* ---- leases ---- */

/* Start a new worker in a reserved slot (p->mu released meanwhile). */
static int lease_new(wx_pool *p, wx__worker *w, const wx_worker_spec *spec,
                     wx_fault *fault, wx_error *err)
{
    int64_t start_ns = wx__now_ns();
    int rc;

    pthread_mutex_unlock(&p->mu);
    rc = start_worker(p, w, spec, fault, err);
    pthread_mutex_lock(&p->mu);
    if (rc) {
        unlink_worker(p, w);
        p->stats.start_failed++;
        pthread_mutex_unlock(&p->mu);
        free_worker(w);
        pthread_mutex_lock(&p->mu);
        return rc;
    }
    w->state = W_BUSY;
    w->started_ms = wx__now_ms();
    p->stats.spawned++;
    p->stats.start_seconds += (double)(wx__now_ns() - start_ns) / 1e9;
    return 0;
}

/* Stop a worker taken out of the table (p->mu released meanwhile). */
static void retire(wx_pool *p, wx__worker *w)
{
    pthread_mutex_unlock(&p->mu);
    stop_worker(p, w);
    free_worker(w);
    pthread_mutex_lock(&p->mu);
}

int wx__pool_lease(wx_pool *p, const wx_worker_spec *spec, wx__worker **out,
                   wx_fault *fault, wx_error *err)
{
    char key[512];
    int rc = 0;

    snprintf(key, sizeof(key), "%s|%s", spec->bundle_digest,
             spec->runner ? spec->runner : "");
    pthread_mutex_lock(&p->mu);
    for (*out = NULL; !*out && !rc;) {
        wx__worker *w = find_idle(p, key);

        if (w && expired(p, w, wx__now_ms())) {
            unlink_worker(p, w);
            p->stats.recycled++;
            retire(p, w);
        } else if (w) {
            w->state = W_BUSY;
            p->stats.reused++;
            *out = w;
        } else if (count_key(p, key) >= p->o.max_per_key) {
            pthread_cond_wait(&p->cv, &p->mu);
        } else if (p->total < p->o.max_processes) {
            w = new_worker(p, key);
            rc = !w ? wx_error_set(err, WX_ENOMEM, "out of memory")
                    : lease_new(p, w, spec, fault, err);
            *out = rc ? NULL : w;
        } else if ((w = find_victim(p, key)) != NULL) {
            unlink_worker(p, w);
            p->stats.evicted++;
            retire(p, w);
        } else {
            pthread_cond_wait(&p->cv, &p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return rc;
}

/* A call's request is out, or it failed (the worker is then failed). */
static int pool_send(wx_pool *p, wx__worker *w, const char *method,
                     const wx__rpc_params *params, const struct iovec *att,
                     size_t n_att, int64_t deadline, int64_t *id,
                     wx_fault *fault, wx_error *err)
{
    int rc = wx__rpc_send(&w->conn, method, params, att, n_att, deadline, id,
                          err);

    if (rc)
        fail_worker(p, w, rc, fault, err);
    else
        w->calls++;
    return rc;
}

/*
 * A call's reply by `deadline`.  A model error (WX_EMODEL) leaves the
 * worker usable; any other failure fails it.
 */
static int pool_receive(wx_pool *p, wx__worker *w, int64_t id,
                        int64_t deadline, json_t **result, wx_fault *fault,
                        wx_error *err)
{
    int rc = wx__rpc_receive(&w->conn, id, deadline, result, err);

    if (rc == WX_EMODEL || rc == WX_EOOM) {
        const char *tb = json_string_value(json_object_get(*result,
                                                           "traceback"));

        if (fault) {
            fill_fault(fault, w, rc);
            fault->traceback = tb ? wx__strdup(tb) : NULL;
        }
        /* An allocation failure may have left the process damaged. */
        w->failed = rc == WX_EOOM;
        json_decref(*result);
        *result = NULL;
    } else if (rc) {
        fail_worker(p, w, rc, fault, err);
    }
    return rc;
}

/* A whole call; `mw` (may be NULL) runs while the worker works. */
static int pool_call(wx_pool *p, wx__worker *w, const char *method,
                     const wx__rpc_params *params, const struct iovec *att,
                     size_t n_att, const wx__meanwhile *mw, json_t **result,
                     wx_fault *fault, wx_error *err)
{
    int64_t deadline = wx__deadline_after(p->o.task_timeout), id;
    int rc = pool_send(p, w, method, params, att, n_att, deadline, &id, fault,
                       err);

    *result = NULL;
    if (!rc && mw)
        mw->fn(mw->ctx);
    return rc ? rc : pool_receive(p, w, id, deadline, result, fault, err);
}

int wx__pool_call(wx_pool *p, wx__worker *w, const char *method,
                  const json_t *params, const struct iovec *att, size_t n_att,
                  json_t **result, wx_fault *fault, wx_error *err)
{
    return pool_call(p, w, method, &(wx__rpc_params){.json = params}, att,
                     n_att, NULL, result, fault, err);
}

void wx__pool_fail(wx_pool *p, wx__worker *w, int rc, wx_fault *fault,
                   wx_error *err)
{
    fail_worker(p, w, rc, fault, err);
}

/* Keep the log of a long-lived worker from growing without bound. */
static void cap_log(const wx__worker *w)
{
    struct stat st;

    if (w->calls % LOG_CHECK_CALLS != 0)
        return;
    if (stat(w->log_path, &st) == 0 && st.st_size > LOG_MAX_BYTES &&
        truncate(w->log_path, 0) == 0)
        wx__log(WX_LOG_INFO, "worker %s: log over %lld bytes emptied", w->id,
                (long long)LOG_MAX_BYTES);
}

void wx__pool_release(wx_pool *p, wx__worker *w)
{
    pthread_mutex_lock(&p->mu);
    if (w->failed) {
        unlink_worker(p, w);
        pthread_mutex_unlock(&p->mu);
        /* Already stopped unless it failed while still answering
           (a MemoryError reported by the runner). */
        wx__proc_stop(&w->proc, 100);
        remove_scratch(w);
        free_worker(w);
        return;
    }
    if (expired(p, w, wx__now_ms())) {
        unlink_worker(p, w);
        p->stats.recycled++;
        retire(p, w);
        pthread_mutex_unlock(&p->mu);
        return;
    }
    w->state = W_IDLE;
    w->last_use = ++p->uses;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    cap_log(w);
}

const wx__rpc_conn *wx__worker_conn(const wx__worker *w)
{
    return &w->conn;
}

bool wx__worker_attachments(const wx__worker *w)
{
    return w->attachments;
}

size_t wx__pool_max_frame(const wx_pool *p)
{
    return p->o.max_frame_bytes;
}

/* ---- the pool ---- */

static int check_options(const wx_pool_options *o, wx_error *err)
{
    if (!o->home || !o->home[0])
        return wx_error_set(err, WX_EINVAL, "pool: home is not set");
    if (o->max_processes < 1 || o->max_per_key < 1)
        return wx_error_set(err, WX_EINVAL,
                            "pool: max_processes and the workers per "
                            "bundle must be at least 1");
    if (!(o->start_timeout > 0) || !(o->task_timeout > 0))
        return wx_error_set(err, WX_EINVAL,
                            "pool: timeouts must be positive");
    return 0;
}

void wx_pool_options_from_config(const wx_config *cfg, wx_pool_options *out)
{
    int64_t jobs = wx_config_int(cfg, WX_CONF_JOBS);

    if (jobs == 0)
        jobs = sysconf(_SC_NPROCESSORS_ONLN) > 0
                   ? sysconf(_SC_NPROCESSORS_ONLN)
                   : 1;
    *out = (wx_pool_options)WX_POOL_OPTIONS_INIT;
    out->home = wx_config_str(cfg, WX_CONF_HOME);
    out->max_per_key = (int)jobs;
    out->max_processes = (int)wx_config_int(cfg, WX_CONF_MAX_PROCESSES);
    out->start_timeout = wx_config_seconds(cfg, WX_CONF_START_TIMEOUT);
    out->task_timeout = wx_config_seconds(cfg, WX_CONF_TASK_TIMEOUT);
    out->max_tasks_per_worker =
        wx_config_int(cfg, WX_CONF_MAX_TASKS_PER_WORKER);
    out->worker_ttl = wx_config_seconds(cfg, WX_CONF_WORKER_TTL);
    out->mem_limit_bytes = (uint64_t)wx_config_int(cfg, WX_CONF_MEM_LIMIT_BYTES);
    out->max_frame_bytes = (size_t)wx_config_int(cfg, WX_CONF_MAX_FRAME_BYTES);
    out->attachments = wx_config_int(cfg, WX_CONF_ATTACHMENTS) != 0;
    out->shutdown_grace = wx_config_seconds(cfg, WX_CONF_SHUTDOWN_GRACE);
}

int wx_pool_new(const wx_pool_options *opts, wx_pool **out, wx_error *err)
{
    wx_pool *p;
    int rc = check_options(opts, err);

    if (rc)
        return rc;
    p = wx__calloc(1, sizeof(*p));
    if (!p || !(p->home = wx__strdup(opts->home))) {
        wx_free(p);
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    }
    p->o = *opts;
    p->o.home = p->home;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->spawn_cv, NULL);
    /* The attachments a pool sends (an aggregation's replicate bytes) stay
       untouched until the call returns, and a call returns once the
       worker has read the whole request and replied, or after the worker
       is discarded: they may be spliced. */
    wx__frame_splice_attachments();
    if (pthread_create(&p->spawner, NULL, spawner_main, p) != 0) {
        wx_free(p->home);
        wx_free(p);
        return wx_error_set(err, WX_EIO, "cannot start the spawner thread");
    }
    *out = p;
    return 0;
}

static const char shutdown_request[] =
    "{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"shutdown\",\"params\":{}}";

/* Milliseconds from now to `deadline`, at least 0. */
static int ms_left(int64_t deadline)
{
    int64_t left = deadline - wx__now_ms();

    return left > 0 ? (int)WX_MIN(left, INT_MAX) : 0;
}

/*
 * Shut all workers down at once: a `shutdown` request to each (replies are
 * not awaited), close their stdin, give them the grace period to exit,
 * then SIGTERM, another grace period, and SIGKILL of the group.
 */
static void stop_all(wx_pool *p)
{
    int64_t grace = (int64_t)(p->o.shutdown_grace * 1000);
    int64_t deadline = wx__now_ms() + grace;

    for (wx__worker *w = p->workers; w; w = w->next) {
        if (w->conn_ready && !w->failed && w->proc.in_fd >= 0)
            wx__frame_write(w->proc.in_fd, shutdown_request,
                            sizeof(shutdown_request) - 1, NULL, 0,
                            wx__now_ms() + SHUTDOWN_REPLY_MS, NULL);
        wx__proc_close_fds(&w->proc);
    }
    for (wx__worker *w = p->workers; w; w = w->next)
        wx__proc_wait(&w->proc, deadline, NULL);
    for (wx__worker *w = p->workers; w; w = w->next)
        wx__proc_signal(&w->proc, SIGTERM);
    deadline = wx__now_ms() + grace;
    for (wx__worker *w = p->workers; w; w = w->next) {
        wx__proc_stop(&w->proc, ms_left(deadline));
        remove_scratch(w);
    }
}

void wx_pool_free(wx_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_broadcast(&p->spawn_cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->spawner, NULL);
    stop_all(p);
    while (p->workers) {
        wx__worker *w = p->workers;

        p->workers = w->next;
        free_worker(w);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->spawn_cv);
    wx_free(p->home);
    wx_free(p);
}

void wx_pool_stats_get(wx_pool *p, wx_pool_stats *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->stats;
    out->live = p->total;
    out->idle = 0;
    for (wx__worker *w = p->workers; w; w = w->next)
        out->idle += w->state == W_IDLE;
    pthread_mutex_unlock(&p->mu);
}

/* ---- whole calls ---- */

void wx_pool_sigpipe_ignored(void)
{
    wx__frame_sigpipe_ignored();
}

void wx_blobs_free(wx_blob *blobs, size_t n)
{
    for (size_t i = 0; blobs && i < n; i++) {
        wx_free(blobs[i].name);
        wx_free(blobs[i].data);
    }
    wx_free(blobs);
}

/* Owned copies of the raw outputs of a reply. */
static int copy_outputs(const wx__outputs *raw, wx_blob **out, size_t *n,
                        wx_error *err)
{
    wx_blob *blobs = wx__calloc(raw->n ? raw->n : 1, sizeof(*blobs));

    if (!blobs)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    for (size_t i = 0; i < raw->n; i++) {
        blobs[i].name = wx__strdup(raw->items[i].name);
        blobs[i].len = raw->items[i].len;
        if (raw->items[i].len)
            blobs[i].data = wx__malloc(raw->items[i].len);
        if (!blobs[i].name || (raw->items[i].len && !blobs[i].data)) {
            wx_blobs_free(blobs, i + 1);
            return wx_error_set(err, WX_ENOMEM, "out of memory");
        }
        if (raw->items[i].len)
            memcpy(blobs[i].data, raw->items[i].data, raw->items[i].len);
    }
    *out = blobs;
    *n = raw->n;
    return 0;
}

/* Read an execute result; a malformed one fails the worker. */
static int read_execute_result(wx_pool *p, wx__worker *w,
                               const json_t *result, wx__outputs *raw,
                               wx_fault *fault, wx_error *err)
{
    int rc = wx__wire_read_outputs(result, &w->conn, raw, err);

    if (rc == WX_EPROTO)
        fail_worker(p, w, rc, fault, err);
    else if (rc == WX_EMODEL || rc == WX_EOOM)
        fill_fault(fault, w, rc);
    /* An allocation failure may have left the process damaged. */
    w->failed |= rc == WX_EOOM;
    return rc;
}

int64_t wx__pool_task_deadline(const wx_pool *p)
{
    return wx__deadline_after(p->o.task_timeout);
}

bool wx__worker_failed(const wx__worker *w)
{
    return w->failed;
}

int64_t wx__worker_tasks_left(const wx_pool *p, const wx__worker *w)
{
    if (p->o.max_tasks_per_worker <= 0)
        return INT64_MAX;
    return WX_MAX(0, p->o.max_tasks_per_worker - w->calls);
}

int wx__pool_queue_execute(wx__worker *w, const char *entrypoint,
                           const json_t *params, int64_t seed, size_t *room,
                           int64_t *id, wx_error *err)
{
    int rc = wx__wire_execute_params(&w->call, entrypoint, params, seed,
                                     err);

    if (rc)
        return wx_error_prefix(err, rc, "execute params are not valid");
    rc = wx__rpc_queue(&w->conn, "execute",
                       &(wx__rpc_params){.text = w->call.data,
                                         .len = w->call.len},
                       room, id, err);
    w->calls += rc == 0;
    return rc;
}

int wx__pool_flush(wx_pool *p, wx__worker *w, wx_fault *fault, wx_error *err)
{
    int rc = wx__rpc_flush(&w->conn, wx__pool_task_deadline(p), err);

    if (rc)
        fail_worker(p, w, rc, fault, err);
    return rc;
}

int wx__pool_receive_execute(wx_pool *p, wx__worker *w, int64_t id,
                             int64_t deadline, const wx__frame_sink *sink,
                             const wx__outputs **raw, json_t **result,
                             wx_fault *fault, wx_error *err)
{
    int rc;

    *raw = NULL;
    w->conn.reader.sink = sink;
    rc = pool_receive(p, w, id, deadline, result, fault, err);
    w->conn.reader.sink = NULL;
    if (!rc)
        rc = read_execute_result(p, w, *result, &w->raw, fault, err);
    if (!rc)
        *raw = &w->raw;
    return rc;
}

int wx_pool_execute(wx_pool *p, const wx_worker_spec *spec,
                    const char *entrypoint, const json_t *params,
                    int64_t seed, wx_blob **outputs, size_t *n_outputs,
                    wx_fault *fault, wx_error *err)
{
    int64_t deadline = 0, id;
    json_t *result = NULL;
    const wx__outputs *raw;
    wx__worker *w = NULL;
    int rc = wx__pool_lease(p, spec, &w, fault, err);

    if (!rc) {
        deadline = wx__pool_task_deadline(p); /* a start is not the task's */
        rc = wx__pool_queue_execute(w, entrypoint, params, seed, NULL, &id,
                                    err);
    }
    if (!rc)
        rc = wx__pool_flush(p, w, fault, err);
    if (!rc)
        rc = wx__pool_receive_execute(p, w, id, deadline, NULL, &raw,
                                      &result, fault, err);
    if (!rc)
        rc = copy_outputs(raw, outputs, n_outputs, err);
    if (w)
        wx__pool_release(p, w);
    json_decref(result);
    return rc;
}

/* One attachment per output at most (wire.c), at least one slot. */
static size_t attachments_needed(const wx_sim_return *sim_returns, size_t n)
{
    size_t outputs = 0;

    for (size_t i = 0; i < n; i++)
        outputs += sim_returns[i].n_outputs;
    return WX_MAX(1, WX_MIN(outputs, (size_t)WX_FRAME_ATT_MAX));
}

int wx__pool_aggregate(wx_pool *p, const wx_worker_spec *spec,
                       const char *target_entrypoint,
                       const wx_sim_return *sim_returns, size_t n,
                       const json_t *target_data, const wx__meanwhile *mw,
                       wx_agg_return *ret, wx_fault *fault, wx_error *err)
{
    struct iovec *att = wx__calloc(attachments_needed(sim_returns, n),
                                   sizeof(*att));
    wx_buf params = WX_BUF_INIT(SIZE_MAX - 1);
    json_t *result = NULL;
    wx__worker *w = NULL;
    size_t n_att = 0;
    int rc = att ? 0 : wx_error_set(err, WX_ENOMEM, "out of memory");

    if (!rc)
        rc = wx__pool_lease(p, spec, &w, fault, err);
    if (!rc)
        rc = wx__wire_aggregate_params(target_entrypoint, sim_returns, n,
                                       target_data, w->attachments, att,
                                       &n_att, &params, err);
    if (!rc)
        rc = pool_call(p, w, "aggregate",
                       &(wx__rpc_params){.text = params.data,
                                         .len = params.len},
                       att, n_att, mw, &result, fault, err);
    if (!rc) {
        rc = wx__wire_read_agg_result(result, n, ret, err);
        if (rc == WX_EPROTO)
            fail_worker(p, w, rc, fault, err);
        else if (rc)
            fill_fault(fault, w, rc);
        w->failed |= rc == WX_EOOM;
    }
    if (w)
        wx__pool_release(p, w);
    wx_buf_release(&params);
    json_decref(result);
    wx_free(att);
    return rc;
}

int wx_pool_aggregate(wx_pool *p, const wx_worker_spec *spec,
                      const char *target_entrypoint,
                      const wx_sim_return *sim_returns, size_t n,
                      const json_t *target_data, wx_agg_return *ret,
                      wx_fault *fault, wx_error *err)
{
    return wx__pool_aggregate(p, spec, target_entrypoint, sim_returns, n,
                              target_data, NULL, ret, fault, err);
}
