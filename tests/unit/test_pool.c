/*
 * The warm worker pool, driven through tests/helpers/fake_worker.c:
 * round trips of every size in both protocol modes, concurrency, every
 * fault mode, LRU eviction, per-key limits, recycling and shutdown.
 *
 * Every test passes a unique marker argument to its workers, so that it
 * can count their processes in /proc and show that none is left after
 * wx_pool_free (and that no child is left unreaped).
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "hash.h"
#include "pool.h"

#ifndef WX_FAKE_WORKER
#error "WX_FAKE_WORKER must name the fake_worker program"
#endif

#define HEX64(c) c c c c c c c c c c c c c c c c
#define DIGEST_A "sha256:" HEX64("aaaa")
#define DIGEST_B "sha256:" HEX64("bbbb")
#define DIGEST_C "sha256:" HEX64("cccc")

/* Timeouts of the fault tests, in seconds. */
#define START_TIMEOUT 2.0
#define TASK_TIMEOUT 2.0
/* Slack for a loaded machine (and ASan) on top of any deadline, in ms. */
#define MARGIN_MS 2000

typedef struct fx {
    char *home;
    char marker[64];
    char once[4200];
    char track[4200];
    const char *argv[32];
    int argc;
    const char *env[4];
    wx_worker_spec spec;
    wx_pool_options o;
    wx_pool *pool;
} fx;

static int g_seq;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof(*f));

    f->home = tu_tempdir();
    snprintf(f->marker, sizeof(f->marker), "wx-pool-test-%d-%d",
             (int)getpid(), ++g_seq);
    snprintf(f->once, sizeof(f->once), "%s/once", f->home);
    snprintf(f->track, sizeof(f->track), "%s/track", f->home);
    f->argv[f->argc++] = WX_FAKE_WORKER;
    f->argv[f->argc++] = "--bundle-digest";
    f->argv[f->argc++] = "{bundle_digest}";
    f->argv[f->argc++] = f->marker;
    /* A sanitizer build of the fake: no leak report at its exit. */
    f->env[0] = "ASAN_OPTIONS=detect_leaks=0";
    f->spec = (wx_worker_spec){DIGEST_A, f->home, "command", f->argv, f->env};
    f->o = (wx_pool_options)WX_POOL_OPTIONS_INIT;
    f->o.home = f->home;
    f->o.start_timeout = START_TIMEOUT;
    f->o.task_timeout = TASK_TIMEOUT;
    f->o.shutdown_grace = 2.0;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;

    wx_pool_free(f->pool);
    /* Reap anything a failed test left, so the next test starts clean. */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    tu_rmtree(f->home);
    free(f->home);
    free(f);
    return 0;
}

/* Append fake_worker options (NULL-terminated). */
static void fx_args(fx *f, ...)
{
    va_list ap;
    const char *a;

    va_start(ap, f);
    while ((a = va_arg(ap, const char *)) != NULL)
        f->argv[f->argc++] = a;
    va_end(ap);
    f->argv[f->argc] = NULL;
}

static void fx_pool(fx *f)
{
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx_pool_new(&f->o, &f->pool, &err), &err);
}

/* Processes whose command line has `marker` as an argument. */
static int count_marked(const char *marker)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    static char buf[1 << 16];
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char path[300];
        ssize_t len;
        int fd;

        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        len = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        for (ssize_t i = 0; i < len; i += (ssize_t)strlen(buf + i) + 1) {
            buf[len] = '\0';
            if (strcmp(buf + i, marker) == 0) {
                n++;
                break;
            }
        }
    }
    closedir(d);
    return n;
}

/* True when this process has no child left, running or zombie. */
static bool no_children(void)
{
    return waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD;
}

/* Free the pool: nothing of it may be left.  Returns the time it took. */
static int64_t finish(fx *f)
{
    int64_t start = wx__now_ms(), elapsed;

    wx_pool_free(f->pool);
    f->pool = NULL;
    elapsed = wx__now_ms() - start;
    assert_int_equal(count_marked(f->marker), 0);
    if (!no_children())
        fail_msg("a worker process was left unreaped after wx_pool_free");
    return elapsed;
}

static wx_pool_stats stats(fx *f)
{
    wx_pool_stats s;

    wx_pool_stats_get(f->pool, &s);
    return s;
}

static void check_pattern(const uint8_t *data, size_t len, int64_t seed)
{
    for (size_t i = 0; i < len; i++)
        if (data[i] != (uint8_t)((int64_t)i * 31 + seed))
            fail_msg("byte %zu of %zu is %u, expected %u (seed %lld)", i, len,
                     data[i], (uint8_t)((int64_t)i * 31 + seed),
                     (long long)seed);
}

static const wx_blob *blob_named(const wx_blob *b, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(b[i].name, name) == 0)
            return &b[i];
    return NULL;
}

/* One execute with params given as JSON text. */
static int execute(fx *f, const char *params, int64_t seed, wx_blob **out,
                   size_t *n, wx_fault *fault, wx_error *err)
{
    json_t *p = tu_json(params);
    int rc;

    *out = NULL;
    *n = 0;
    rc = wx_pool_execute(f->pool, &f->spec, "sim.model/baseline", p, seed,
                         out, n, fault, err);
    json_decref(p);
    return rc;
}

/* An execute that must succeed and return `bytes` bytes of "out". */
static void execute_ok(fx *f, long bytes, int64_t seed)
{
    char params[128];
    wx_blob *out;
    size_t n;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;
    const wx_blob *o;

    snprintf(params, sizeof(params), "{\"bytes\": %ld, \"stderr\": 100}",
             bytes);
    assert_ok(execute(f, params, seed, &out, &n, &fault, &err), &err);
    o = blob_named(out, n, "out");
    assert_non_null(o);
    assert_int_equal(o->len, bytes);
    check_pattern(o->data, o->len, seed);
    wx_blobs_free(out, n);
    wx_fault_release(&fault);
}

/* ---- 4a: round trips of every size, both ways, both modes ---- */

static uint8_t *make_bytes(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);

    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + seed + (i >> 12));
    return p;
}

static void sha_hex(const uint8_t *data, size_t n, char out[65])
{
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx__sha256_hex(data, n, out, &err), &err);
}

/* Send `size` bytes (plus a small and an empty output) to aggregate. */
static void aggregate_round_trip(fx *f, size_t size, unsigned seed)
{
    wx_output outs[3];
    wx_sim_return srs[2];
    wx_agg_return ret;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;
    json_t *td = tu_json("{\"stderr\": 1048576}"), *sums;
    const char *names[3] = {"big", "small", "empty"};
    size_t lens[3] = {size, 3, 0};

    memset(srs, 0, sizeof(srs));
    memset(outs, 0, sizeof(outs));
    memset(&ret, 0, sizeof(ret));
    for (int i = 0; i < 3; i++) {
        outs[i].name = (char *)names[i];
        outs[i].art.size = lens[i];
        outs[i].art.data = lens[i] ? make_bytes(lens[i], seed + (unsigned)i)
                                   : NULL;
        sha_hex(outs[i].art.data, lens[i], outs[i].art.checksum);
    }
    snprintf(srs[0].task_id, sizeof(srs[0].task_id), "task-%u-a", seed);
    snprintf(srs[1].task_id, sizeof(srs[1].task_id), "task-%u-b", seed);
    memset(srs[0].sim_root, 'a', 64);
    memset(srs[1].sim_root, 'b', 64);
    srs[0].outputs = outs;
    srs[0].n_outputs = 2;
    srs[1].outputs = outs + 2;
    srs[1].n_outputs = 1;
    assert_ok(wx_pool_aggregate(f->pool, &f->spec, "targets.t:loss", srs, 2,
                                td, &ret, &fault, &err),
              &err);
    assert_true(ret.loss == 2.0);
    assert_int_equal(ret.n_replicates, 2);
    sums = json_object_get(ret.diagnostics, "sha256");
    assert_int_equal(json_array_size(sums), 3);
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(json_string_value(json_array_get(sums, i)),
                            outs[i].art.checksum);
    for (int i = 0; i < 3; i++)
        free(outs[i].art.data);
    wx_agg_return_release(&ret);
    wx_fault_release(&fault);
    json_decref(td);
}

static void round_trips(fx *f, bool compat)
{
    static const size_t sizes[] = {0, 65536, 70000, 1u << 20, 64u << 20};
    wx__worker *w = NULL;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;
    wx_pool_stats s;

    if (compat)
        fx_args(f, "--compat", NULL);
    /* The deadline is not under test here: big frames under ASan. */
    f->o.task_timeout = 120;
    f->o.start_timeout = 30;
    fx_pool(f);
    assert_ok(wx__pool_lease(f->pool, &f->spec, &w, &fault, &err), &err);
    assert_int_equal(wx__worker_attachments(w), !compat);
    wx__pool_release(f->pool, w);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        char params[128];
        wx_blob *out;
        size_t n;
        const wx_blob *o;
        int64_t seed = 1000 + (int64_t)k * 77;

        /* worker -> manager, with 1 MB of stderr during the call */
        snprintf(params, sizeof(params),
                 "{\"bytes\": %zu, \"stderr\": 1048576}", sizes[k]);
        assert_ok(execute(f, params, seed, &out, &n, &fault, &err), &err);
        assert_int_equal(n, 1);
        o = blob_named(out, n, "out");
        assert_non_null(o);
        assert_int_equal(o->len, sizes[k]);
        check_pattern(o->data, o->len, seed);
        wx_blobs_free(out, n);
        /* manager -> worker */
        aggregate_round_trip(f, sizes[k], (unsigned)seed);
    }
    s = stats(f);
    assert_int_equal(s.spawned, 1);
    assert_true(s.start_seconds > 0.0 && s.start_seconds < 60.0);
    assert_int_equal(s.reused, 2 * 5);
    assert_int_equal(s.crashed + s.timed_out + s.start_failed, 0);
    wx_fault_release(&fault);
    finish(f);
}

static void test_round_trips_warmexec1(void **state)
{
    round_trips(*state, false);
}

static void test_round_trips_compat(void **state)
{
    round_trips(*state, true);
}

/* ---- 4b: 8 threads x 500 tasks on one bundle ---- */

enum { N_THREADS = 8, N_TASKS = 500 };

typedef struct hammer {
    fx *f;
    int t;
    int failures;
    int mismatches;
    char first_error[WX_ERROR_MSG_MAX];
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;

    for (int i = 0; i < N_TASKS; i++) {
        int64_t seed = (int64_t)h->t * 100000 + i;
        long bytes = 8 + (long)(seed % 61);
        char params[160], payload[32];
        json_t *p;
        wx_blob *out = NULL;
        size_t n = 0;
        wx_fault fault = {0};
        wx_error err = WX_ERROR_INIT;
        const wx_blob *o, *pl;
        int rc;

        snprintf(payload, sizeof(payload), "t%d-i%d", h->t, i);
        snprintf(params, sizeof(params),
                 "{\"bytes\": %ld, \"payload\": \"%s\"}", bytes, payload);
        p = json_loads(params, 0, NULL);
        rc = wx_pool_execute(h->f->pool, &h->f->spec, "sim.model/baseline",
                             p, seed, &out, &n, &fault, &err);
        json_decref(p);
        if (rc) {
            if (!h->failures++)
                snprintf(h->first_error, sizeof(h->first_error), "%s",
                         err.message);
            wx_fault_release(&fault);
            continue;
        }
        o = blob_named(out, n, "out");
        pl = blob_named(out, n, "payload");
        if (!o || !pl || o->len != (size_t)bytes ||
            pl->len != strlen(payload) ||
            memcmp(pl->data, payload, pl->len) != 0) {
            h->mismatches++;
        } else {
            for (size_t b = 0; b < o->len; b++)
                if (o->data[b] != (uint8_t)((int64_t)b * 31 + seed)) {
                    h->mismatches++;
                    break;
                }
        }
        wx_blobs_free(out, n);
        wx_fault_release(&fault);
    }
    return NULL;
}

static void test_many_threads_one_bundle(void **state)
{
    fx *f = *state;
    pthread_t th[N_THREADS];
    hammer h[N_THREADS];
    wx_pool_stats s;

    f->o.max_per_key = 4;
    f->o.max_processes = 8;
    f->o.task_timeout = 30;
    f->o.start_timeout = 30;
    fx_pool(f);
    for (int t = 0; t < N_THREADS; t++) {
        h[t] = (hammer){f, t, 0, 0, ""};
        assert_int_equal(pthread_create(&th[t], NULL, hammer_main, &h[t]),
                         0);
    }
    for (int t = 0; t < N_THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < N_THREADS; t++) {
        if (h[t].failures)
            fail_msg("thread %d: %d calls failed, first: %s", t,
                     h[t].failures, h[t].first_error);
        assert_int_equal(h[t].mismatches, 0);
    }
    s = stats(f);
    assert_true(s.spawned >= 1 && s.spawned <= 4);
    assert_int_equal(s.spawned + s.reused, N_THREADS * N_TASKS);
    assert_true(s.live <= 4);
    assert_int_equal(s.live, s.idle);
    assert_int_equal(count_marked(f->marker), s.live);
    assert_int_equal(s.crashed + s.timed_out + s.start_failed + s.evicted,
                     0);
    finish(f);
}

/* ---- 4c: faults ---- */

typedef struct fault_case {
    const char *args[6];   /* fake_worker options */
    int ok_before;         /* successful calls before the failing one */
    const char *params;    /* of the failing call */
    int rc;
    const char *type;
    bool retryable;
    const char *message;   /* in err.message */
    const char *status;    /* in fault.status ("" = any, NULL = empty) */
    const char *tail;      /* in fault.stderr_tail */
    double min_s;          /* the failure may not come before this */
    double max_s;          /* ...and must come within this (+ margin) */
} fault_case;

static void run_fault(fx *f, const fault_case *c)
{
    wx_blob *out = NULL;
    size_t n = 0;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;
    wx_pool_stats before, after;
    int64_t start, elapsed;
    int rc;

    for (int i = 0; i < 6 && c->args[i]; i++)
        f->argv[f->argc++] = c->args[i];
    fx_args(f, "--once-file", f->once, NULL);
    fx_pool(f);
    for (int i = 0; i < c->ok_before; i++)
        execute_ok(f, 1000 + i, 10 + i);
    before = stats(f);
    start = wx__now_ms();
    rc = execute(f, c->params, 1, &out, &n, &fault, &err);
    elapsed = wx__now_ms() - start;
    if (rc != c->rc)
        fail_msg("expected %s, got %s: %s", wx_err_name(c->rc),
                 wx_err_name(rc), err.message);
    assert_null(out);
    if (!strstr(err.message, c->message))
        fail_msg("message '%s' does not contain '%s'", err.message,
                 c->message);
    assert_non_null(fault.error_type);
    assert_string_equal(fault.error_type, c->type);
    assert_string_equal(wx_fault_type_of(rc), c->type);
    assert_int_equal(fault.retryable, c->retryable);
    assert_true(fault.worker_id[0] != '\0');
    if (!c->status)
        assert_string_equal(fault.status, "");
    else if (!strstr(fault.status, c->status) || !fault.status[0])
        fail_msg("status '%s' does not contain '%s'", fault.status,
                 c->status);
    if (!fault.stderr_tail || !strstr(fault.stderr_tail, c->tail))
        fail_msg("stderr tail '%s' does not contain '%s'",
                 fault.stderr_tail ? fault.stderr_tail : "(none)", c->tail);
    if (elapsed < (int64_t)(c->min_s * 1000) - 20 ||
        elapsed > (int64_t)(c->max_s * 1000) + MARGIN_MS)
        fail_msg("failed after %lld ms, expected %.1f-%.1f s (+%d ms)",
                 (long long)elapsed, c->min_s, c->max_s, MARGIN_MS);
    wx_fault_release(&fault);
    /* The failed worker is gone, and counted. */
    after = stats(f);
    assert_int_equal(after.live, 0);
    assert_int_equal(count_marked(f->marker), 0);
    if (c->rc == WX_ESTART)
        assert_int_equal(after.start_failed, before.start_failed + 1);
    else if (c->rc == WX_ETIMEDOUT)
        assert_int_equal(after.timed_out, before.timed_out + 1);
    else
        assert_int_equal(after.crashed, before.crashed + 1);
    /* The pool goes on: the next task succeeds on a fresh worker. */
    before = after;
    execute_ok(f, 70000, 42);
    after = stats(f);
    assert_int_equal(after.spawned, before.spawned + 1);
    assert_int_equal(after.reused, before.reused);
    assert_int_equal(after.live, 1);
    finish(f);
}

static void test_fault_crash_sigkill(void **state)
{
    static const fault_case c = {
        {"--crash-at", "2", "--crash-how", "sigkill"}, 1, "{}",
        WX_ECRASHED, "WorkerCrashed", true,
        "died during the call (killed by signal 9 (SIGKILL))",
        "killed by signal 9 (SIGKILL)",
        "fake_worker: crashing (sigkill) at execute 2", 0, 0.5};

    run_fault(*state, &c);
}

static void test_fault_crash_sigsegv(void **state)
{
    static const fault_case c = {
        {"--crash-at", "3", "--crash-how", "sigsegv"}, 2, "{}",
        WX_ECRASHED, "WorkerCrashed", true,
        "died during the call (killed by signal 11 (SIGSEGV))",
        "killed by signal 11 (SIGSEGV)",
        "fake_worker: crashing (sigsegv) at execute 3", 0, 0.5};

    run_fault(*state, &c);
}

static void test_fault_crash_exit3(void **state)
{
    static const fault_case c = {
        {"--crash-at", "2", "--crash-how", "exit3"}, 1, "{}",
        WX_ECRASHED, "WorkerCrashed", true,
        "died during the call (exited with status 3)",
        "exited with status 3",
        "fake_worker: crashing (exit3) at execute 2", 0, 0.5};

    run_fault(*state, &c);
}

static void test_fault_hang_in_ready(void **state)
{
    static const fault_case c = {
        {"--hang-ready"}, 0, "{}", WX_ESTART, "WorkerStartFailed", false,
        "did not become ready within start_timeout (2 s)",
        "killed by signal 9 (SIGKILL)", "fake_worker: hanging in ready",
        START_TIMEOUT, START_TIMEOUT};

    run_fault(*state, &c);
}

static void test_fault_hang_in_execute(void **state)
{
    static const fault_case c = {
        {"--hang-execute"}, 0, "{}", WX_ETIMEDOUT, "Timeout", true,
        "gave no reply within task_timeout (2 s) and was killed",
        "killed by signal 9 (SIGKILL)", "fake_worker: hanging in execute",
        TASK_TIMEOUT, TASK_TIMEOUT};

    run_fault(*state, &c);
}

static void test_fault_garbage_on_stdout(void **state)
{
    static const fault_case c = {
        {"--garbage-stdout"}, 0, "{\"stderr\": 5000}", WX_EPROTO,
        "ProtocolError", true, "bytes outside a frame", "killed by signal",
        "fake_worker: breaking the protocol", 0, 0.5};

    run_fault(*state, &c);
}

static void test_fault_oversized_frame(void **state)
{
    static const fault_case c = {
        {"--oversized"}, 0, "{}", WX_EPROTO, "ProtocolError", true,
        "larger than max_frame_bytes", "killed by signal",
        "fake_worker: breaking the protocol", 0, 0.5};

    run_fault(*state, &c);
}

static void test_fault_invalid_json(void **state)
{
    static const fault_case c = {
        {"--invalid-json"}, 0, "{}", WX_EPROTO, "ProtocolError", true,
        "not valid JSON", "killed by signal",
        "fake_worker: breaking the protocol", 0, 0.5};

    run_fault(*state, &c);
}

static void test_fault_huge_artifact(void **state)
{
    static const fault_case c = {
        {"--huge-artifact"}, 0, "{}", WX_EPROTO, "ProtocolError", true,
        "larger than max_frame_bytes", "killed by signal",
        "fake_worker: breaking the protocol", 0, 0.5};

    run_fault(*state, &c);
}

static void test_fault_wrong_digest(void **state)
{
    static const fault_case c = {
        {"--report-digest", "sha256:0123bogus"}, 0, "{}", WX_ESTART,
        "WorkerStartFailed", false,
        "runner reports bundle digest 'sha256:0123bogus', expected '"
        DIGEST_A "'",
        "", "fake_worker: reporting digest sha256:0123bogus", 0, 0.5};

    run_fault(*state, &c);
}

static void test_fault_exit_before_ready(void **state)
{
    static const fault_case c = {
        {"--exit-before-ready"}, 0, "{}", WX_ESTART, "WorkerStartFailed",
        false, "failed to start", "exited with status 1",
        "fake_worker: cannot load the model", 0, 0.5};

    run_fault(*state, &c);
}

static void test_fault_program_missing(void **state)
{
    fx *f = *state;
    static const char *const argv[] = {"/nonexistent/wx-runner", "x", NULL};
    wx_blob *out = NULL;
    size_t n = 0;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;
    wx_pool_stats s;

    f->spec.argv = argv;
    fx_pool(f);
    assert_fails(execute(f, "{}", 1, &out, &n, &fault, &err), WX_ESTART,
                 &err, "/nonexistent/wx-runner");
    assert_string_equal(fault.error_type, "WorkerStartFailed");
    assert_false(fault.retryable);
    s = stats(f);
    assert_int_equal(s.start_failed, 1);
    assert_int_equal(s.live, 0);
    wx_fault_release(&fault);
    finish(f);
}

/*
 * error.h: a failing function fills `err` with the code it returns.  The
 * pool's status and err.code agree for every kind of fault.
 */
static void test_err_code_matches_status(void **state)
{
    static const struct {
        const char *arg;
        int rc;
    } cases[] = {
        {"--crash-at=1", WX_ECRASHED},   {"--garbage-stdout", WX_EPROTO},
        {"--invalid-json", WX_EPROTO},   {"--oversized", WX_EPROTO},
        {"--report-digest=x", WX_ESTART}, {"--exit-before-ready", WX_ESTART},
    };
    fx *f = *state;
    char report[2048] = "";
    int base = f->argc;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wx_blob *out = NULL;
        size_t n = 0;
        wx_error err = WX_ERROR_INIT;
        int rc;

        f->argc = base;
        fx_args(f, cases[i].arg, NULL);
        fx_pool(f);
        rc = execute(f, "{}", 1, &out, &n, NULL, &err);
        assert_int_equal(rc, cases[i].rc);
        if (err.code != rc)
            snprintf(report + strlen(report), sizeof(report) - strlen(report),
                     "\n  %s: returned %s, err.code %s (%s)", cases[i].arg,
                     wx_err_name(rc), wx_err_name(err.code), err.message);
        finish(f);
    }
    if (report[0])
        fail_msg("status and err.code differ:%s", report);
}

static void test_model_error_keeps_the_worker(void **state)
{
    fx *f = *state;
    wx_blob *out = NULL;
    size_t n = 0;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;
    wx_pool_stats s;
    int64_t start;

    fx_pool(f);
    execute_ok(f, 10, 1);
    start = wx__now_ms();
    assert_fails(execute(f,
                         "{\"fail\": \"alpha must be positive\", "
                         "\"stderr\": 300}",
                         2, &out, &n, &fault, &err),
                 WX_EMODEL, &err, "ValueError: alpha must be positive");
    assert_true(wx__now_ms() - start < MARGIN_MS);
    assert_string_equal(fault.error_type, "ModelError");
    assert_false(fault.retryable);
    assert_non_null(fault.traceback);
    assert_string_equal(fault.traceback, "Traceback: fake_worker execute");
    assert_non_null(fault.stderr_tail);
    assert_non_null(strstr(fault.stderr_tail, "eeee"));
    assert_string_equal(fault.status, "");
    wx_fault_release(&fault);
    s = stats(f);
    assert_int_equal(s.spawned, 1);
    assert_int_equal(s.reused, 1);
    assert_int_equal(s.crashed, 0);
    assert_int_equal(s.live, 1);
    assert_int_equal(s.idle, 1);
    /* The next call reuses the warm worker. */
    execute_ok(f, 100, 3);
    s = stats(f);
    assert_int_equal(s.spawned, 1);
    assert_int_equal(s.reused, 2);
    assert_int_equal(count_marked(f->marker), 1);
    finish(f);
}

/*
 * A runner's MemoryError: WX_EOOM, the worker is not reused, and its
 * process is stopped and reaped like any failed worker's.
 */
static void test_memory_error_retires_the_worker(void **state)
{
    fx *f = *state;
    wx_blob *out = NULL;
    size_t n = 0;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;
    wx_pool_stats s;

    fx_pool(f);
    assert_fails(execute(f,
                         "{\"fail\": \"cannot allocate\", \"fail_type\": "
                         "\"MemoryError\"}",
                         2, &out, &n, &fault, &err),
                 WX_EOOM, &err, "MemoryError: cannot allocate");
    assert_string_equal(fault.error_type, "OutOfMemory");
    assert_false(fault.retryable);
    wx_fault_release(&fault);
    s = stats(f);
    assert_int_equal(s.live, 0);
    execute_ok(f, 100, 3);
    s = stats(f);
    assert_int_equal(s.spawned, 2);
    assert_int_equal(s.reused, 0);
    finish(f);
}

/* ---- 4d: LRU eviction and per-key limits ---- */

static void run_on(fx *f, const char *digest, int64_t seed)
{
    f->spec.bundle_digest = digest;
    execute_ok(f, 16, seed);
}

static void expect_stats(fx *f, uint64_t spawned, uint64_t reused,
                         uint64_t evicted)
{
    wx_pool_stats s = stats(f);

    if (s.spawned != spawned || s.reused != reused || s.evicted != evicted)
        fail_msg("spawned %llu reused %llu evicted %llu, expected %llu %llu "
                 "%llu",
                 (unsigned long long)s.spawned, (unsigned long long)s.reused,
                 (unsigned long long)s.evicted, (unsigned long long)spawned,
                 (unsigned long long)reused, (unsigned long long)evicted);
    assert_true(s.live <= 2);
}

static void test_lru_eviction_order(void **state)
{
    fx *f = *state;

    f->o.max_processes = 2;
    fx_pool(f);
    run_on(f, DIGEST_A, 1);
    run_on(f, DIGEST_B, 2);
    run_on(f, DIGEST_A, 3);
    expect_stats(f, 2, 1, 0);
    /* C needs room: B is the least recently used. */
    run_on(f, DIGEST_C, 4);
    expect_stats(f, 3, 1, 1);
    assert_int_equal(count_marked(f->marker), 2);
    /* A survived. */
    run_on(f, DIGEST_A, 5);
    expect_stats(f, 3, 2, 1);
    /* B did not; it comes back in place of C (A was used later). */
    run_on(f, DIGEST_B, 6);
    expect_stats(f, 4, 2, 2);
    run_on(f, DIGEST_A, 7);
    expect_stats(f, 4, 3, 2);
    /* C again: now B is the LRU one. */
    run_on(f, DIGEST_C, 8);
    expect_stats(f, 5, 3, 3);
    run_on(f, DIGEST_A, 9);
    expect_stats(f, 5, 4, 3);
    finish(f);
}

/* Lease and release a warm worker of `digest` (a use without a call). */
static void touch(fx *f, const char *digest)
{
    wx__worker *w = NULL;
    wx_error err = WX_ERROR_INIT;
    uint64_t reused = stats(f).reused;

    f->spec.bundle_digest = digest;
    assert_ok(wx__pool_lease(f->pool, &f->spec, &w, NULL, &err), &err);
    wx__pool_release(f->pool, w);
    assert_int_equal(stats(f).reused, reused + 1);
}

/*
 * The same when the uses come in quick succession (within a millisecond
 * of each other, as they do with many threads): after A then B, C must
 * evict A, the least recently used, and B must still be warm.
 */
static void test_lru_eviction_quick_succession(void **state)
{
    fx *f = *state;

    f->o.max_processes = 2;
    fx_pool(f);
    run_on(f, DIGEST_A, 1);
    run_on(f, DIGEST_B, 2);
    for (int round = 0; round < 3; round++) {
        wx_pool_stats s0 = stats(f);

        touch(f, DIGEST_A);
        touch(f, DIGEST_B);
        run_on(f, DIGEST_C, 5); /* evicts A */
        run_on(f, DIGEST_B, 6); /* B warm */
        if (stats(f).spawned != s0.spawned + 1)
            fail_msg("round %d: C evicted B, the most recently used "
                     "worker, not A",
                     round);
        /* Back to A and B warm: C is now the LRU one. */
        run_on(f, DIGEST_A, 7); /* evicts C */
        assert_int_equal(stats(f).spawned, s0.spawned + 2);
    }
    finish(f);
}

typedef struct per_key_run {
    fx *f;
    int tasks;
    int failures;
} per_key_run;

static void *per_key_main(void *arg)
{
    per_key_run *r = arg;
    char params[4400];

    snprintf(params, sizeof(params),
             "{\"sleep_ms\": 200, \"bytes\": 4, \"track\": \"%s\"}",
             r->f->track);
    for (int i = 0; i < r->tasks; i++) {
        json_t *p = json_loads(params, 0, NULL);
        wx_blob *out = NULL;
        size_t n = 0;

        if (wx_pool_execute(r->f->pool, &r->f->spec, "sim.model/baseline", p,
                            i, &out, &n, NULL, NULL) != 0)
            r->failures++;
        wx_blobs_free(out, n);
        json_decref(p);
    }
    return NULL;
}

typedef struct monitor {
    fx *f;
    volatile bool stop;
    int max_live;
} monitor;

static void *monitor_main(void *arg)
{
    monitor *m = arg;

    while (!m->stop) {
        wx_pool_stats s;

        wx_pool_stats_get(m->f->pool, &s);
        if (s.live > m->max_live)
            m->max_live = s.live;
        usleep(2000);
    }
    return NULL;
}

static void per_key_limit(fx *f, int limit)
{
    per_key_run runs[2] = {{f, 3, 0}, {f, 3, 0}};
    monitor m = {f, false, 0};
    pthread_t th[2], mon;
    long running = -1, most = -1;
    int64_t start, elapsed;
    FILE *fp;

    f->o.max_per_key = limit;
    f->o.max_processes = 4;
    fx_pool(f);
    assert_int_equal(pthread_create(&mon, NULL, monitor_main, &m), 0);
    start = wx__now_ms();
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, per_key_main,
                                        &runs[i]),
                         0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    elapsed = wx__now_ms() - start;
    m.stop = true;
    pthread_join(mon, NULL);
    assert_int_equal(runs[0].failures + runs[1].failures, 0);
    fp = fopen(f->track, "r");
    assert_non_null(fp);
    assert_int_equal(fscanf(fp, "%ld %ld", &running, &most), 2);
    fclose(fp);
    assert_int_equal(running, 0);
    /* Calls of the key ran `limit` at a time, never more. */
    assert_int_equal(most, limit);
    assert_int_equal(m.max_live, limit);
    assert_int_equal(stats(f).spawned, limit);
    if (limit == 1 && elapsed < 6 * 200)
        fail_msg("6 calls of 200 ms one at a time took %lld ms",
                 (long long)elapsed);
    if (limit == 2 && elapsed >= 6 * 200)
        fail_msg("6 calls of 200 ms two at a time took %lld ms",
                 (long long)elapsed);
    finish(f);
}

static void test_max_per_key_1(void **state)
{
    per_key_limit(*state, 1);
}

static void test_max_per_key_2(void **state)
{
    per_key_limit(*state, 2);
}

/* ---- 4e: recycling ---- */

static void test_recycle_after_max_tasks(void **state)
{
    fx *f = *state;
    wx_pool_stats s;

    f->o.max_tasks_per_worker = 3;
    fx_pool(f);
    for (int i = 0; i < 3; i++)
        execute_ok(f, 10, i);
    s = stats(f);
    assert_int_equal(s.spawned, 1);
    assert_int_equal(s.reused, 2);
    assert_int_equal(s.recycled, 1);
    assert_int_equal(s.live, 0);
    assert_int_equal(count_marked(f->marker), 0);
    /* A new worker for the 4th call, recycled after the 6th. */
    for (int i = 3; i < 7; i++)
        execute_ok(f, 10, i);
    s = stats(f);
    assert_int_equal(s.spawned, 3);
    assert_int_equal(s.reused, 4);
    assert_int_equal(s.recycled, 2);
    assert_int_equal(s.live, 1);
    assert_int_equal(count_marked(f->marker), 1);
    finish(f);
}

static void test_recycle_after_ttl(void **state)
{
    fx *f = *state;
    wx_pool_stats s;

    f->o.worker_ttl = 1.0;
    fx_pool(f);
    execute_ok(f, 10, 1);
    execute_ok(f, 10, 2);
    s = stats(f);
    assert_int_equal(s.spawned, 1);
    assert_int_equal(s.reused, 1);
    assert_int_equal(s.recycled, 0);
    usleep(1200 * 1000);
    execute_ok(f, 10, 3);
    s = stats(f);
    assert_int_equal(s.spawned, 2);
    assert_int_equal(s.reused, 1);
    assert_int_equal(s.recycled, 1);
    assert_int_equal(count_marked(f->marker), 1);
    finish(f);
}

/* ---- 4f: shutdown ---- */

static void test_free_stops_idle_workers_promptly(void **state)
{
    fx *f = *state;
    int64_t elapsed;

    f->o.shutdown_grace = 5.0;
    fx_pool(f);
    run_on(f, DIGEST_A, 1);
    run_on(f, DIGEST_B, 2);
    run_on(f, DIGEST_C, 3);
    assert_int_equal(stats(f).idle, 3);
    assert_int_equal(count_marked(f->marker), 3);
    elapsed = finish(f);
    /* Cooperative workers answer shutdown and exit: no grace period. */
    if (elapsed > 1500)
        fail_msg("wx_pool_free took %lld ms for 3 idle workers",
                 (long long)elapsed);
}

/* A pool with no workers at all frees at once too. */
static void test_free_empty_pool(void **state)
{
    fx *f = *state;
    wx_error err = WX_ERROR_INIT;
    wx_pool *p;
    wx_pool_options bad = f->o;

    fx_pool(f);
    assert_true(finish(f) < 500);
    bad.home = NULL;
    assert_fails(wx_pool_new(&bad, &p, &err), WX_EINVAL, &err, "home");
    bad = f->o;
    bad.max_per_key = 0;
    assert_fails(wx_pool_new(&bad, &p, &err), WX_EINVAL, &err, "at least 1");
    bad = f->o;
    bad.task_timeout = 0;
    assert_fails(wx_pool_new(&bad, &p, &err), WX_EINVAL, &err, "positive");
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_round_trips_warmexec1),
        T(test_round_trips_compat),
        T(test_many_threads_one_bundle),
        T(test_fault_crash_sigkill),
        T(test_fault_crash_sigsegv),
        T(test_fault_crash_exit3),
        T(test_fault_hang_in_ready),
        T(test_fault_hang_in_execute),
        T(test_fault_garbage_on_stdout),
        T(test_fault_oversized_frame),
        T(test_fault_invalid_json),
        T(test_fault_huge_artifact),
        T(test_fault_wrong_digest),
        T(test_fault_exit_before_ready),
        T(test_fault_program_missing),
        T(test_err_code_matches_status),
        T(test_model_error_keeps_the_worker),
        T(test_memory_error_retires_the_worker),
        T(test_lru_eviction_order),
        T(test_lru_eviction_quick_succession),
        T(test_max_per_key_1),
        T(test_max_per_key_2),
        T(test_recycle_after_max_tasks),
        T(test_recycle_after_ttl),
        T(test_free_stops_idle_workers_promptly),
        T(test_free_empty_pool),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
