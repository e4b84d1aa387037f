/*
 * Benchmarks B1 and B3-B6 of docs/performance.md, each with the reference
 * it is compared with, through the public API only.  One measurement per
 * invocation; bench/run.sh repeats them and takes medians.  Every mode
 * prints numbers separated by spaces on one line:
 *
 *   pipe N                     raw pipe round trip with a child process
 *                              (64-byte message): p50 p99, microseconds
 *   run HOME BUNDLE N CACHE    N warm trivial tasks through wx_env_run,
 *                              CACHE "cache" or "nocache": p50 p99, us
 *   artifact HOME BUNDLE BYTES N MODE SYNC
 *                              N tasks returning BYTES each, MODE "wx1"
 *                              (attachments) or "compat" (base64), SYNC a
 *                              cas_sync value: MB/s through wx_env_run,
 *                              then MB/s including a final wx_env_sync
 *   sha BYTES N                raw SHA-256 (OpenSSL EVP) over a reused
 *                              buffer: MB/s
 *   aggregate HOME BUNDLE R BYTES N
 *                              R replicates of BYTES, then N aggregations
 *                              over them (cache off): p50 milliseconds
 *   start HOME BUNDLE N        N workers started one after another
 *                              (max_tasks_per_worker=1): mean spawn to
 *                              ready, milliseconds
 *   forkexec PROGRAM N         fork + exec + wait of PROGRAM: p50, ms
 *   workers HOME BUNDLE K      K warm workers of one bundle: manager heap
 *                              bytes and RSS bytes per worker
 *
 * BUNDLE is a bundle directory; HOME a fresh warmexec home.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <warmexec/warmexec.h>

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const wx_error *err)
{
    fprintf(stderr, "bench_exec: %s: %s\n", what,
            err ? err->message : strerror(errno));
    exit(1);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

/* Sorts `v` and returns its q-quantile (0 <= q < 1). */
static double quantile(double *v, size_t n, double q)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return v[(size_t)(q * (double)n)];
}

static double *samples(size_t n)
{
    double *v = calloc(n ? n : 1, sizeof(*v));

    if (!v)
        die("calloc", NULL);
    return v;
}

/* ---- pipe: the floor of any round trip to a worker ---- */

static void echo_child(int in, int out)
{
    char msg[64];
    ssize_t got;

    while ((got = read(in, msg, sizeof(msg))) > 0)
        if (write(out, msg, (size_t)got) != got)
            break;
    _exit(0);
}

static int bench_pipe(long n)
{
    int to[2], from[2];
    char msg[64] = "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"execute\"}";
    double *v = samples((size_t)n);
    pid_t pid;

    if (pipe(to) || pipe(from))
        die("pipe", NULL);
    pid = fork();
    if (pid == 0) {
        close(to[1]);
        close(from[0]);
        echo_child(to[0], from[1]);
    }
    close(to[0]);
    close(from[1]);
    for (long i = 0; i < n; i++) {
        double t0 = now();
        size_t got = 0;

        if (write(to[1], msg, sizeof(msg)) != (ssize_t)sizeof(msg))
            die("write", NULL);
        while (got < sizeof(msg)) {
            ssize_t r = read(from[0], msg + got, sizeof(msg) - got);

            if (r <= 0)
                die("read", NULL);
            got += (size_t)r;
        }
        v[i] = (now() - t0) * 1e6;
    }
    close(to[1]);
    waitpid(pid, NULL, 0);
    printf("%.1f %.1f\n", quantile(v, (size_t)n, 0.5),
           quantile(v, (size_t)n, 0.99));
    free(v);
    return 0;
}

/* ---- an environment on a fresh home with one bundle ---- */

typedef struct bench_env {
    wx_config *cfg;
    wx_bundles *bundles;
    wx_env *env;
    char ref[WX_DIGEST_LEN + 1];
} bench_env;

static void set(wx_config *cfg, wx_conf_id id, const char *text)
{
    wx_error err = WX_ERROR_INIT;

    if (wx_config_set(cfg, id, text, WX_CONF_FROM_FLAG, &err))
        die("config", &err);
}

/* `settings`: pairs of (wx_conf_id, text), ended by -1. */
static void env_open(bench_env *b, const char *home, const char *bundle,
                     bool no_cache, const int *ids, const char *const *texts)
{
    wx_error err = WX_ERROR_INIT;
    wx_env_options o = {0};

    if (wx_config_new(&b->cfg, &err) || wx_config_load_env(b->cfg, &err))
        die("config", &err);
    set(b->cfg, WX_CONF_HOME, home);
    for (size_t i = 0; ids && ids[i] >= 0; i++)
        set(b->cfg, (wx_conf_id)ids[i], texts[i]);
    if (wx_bundles_open(home, &b->bundles, &err) ||
        wx_bundles_add(b->bundles, bundle, b->ref, &err))
        die("bundle", &err);
    o.bundles = b->bundles;
    o.no_cache = no_cache;
    if (wx_env_open(b->cfg, &o, &b->env, &err))
        die("env", &err);
}

static void env_close(bench_env *b)
{
    wx_env_close(b->env);
    wx_bundles_close(b->bundles);
    wx_config_free(b->cfg);
}

static void make_task(const bench_env *b, const char *params, wx_task *t)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = json_pack("{s:s,s:s,s:o,s:i}", "bundle_ref", b->ref,
                          "entrypoint", "noop.model/baseline", "params",
                          json_loads(params, 0, NULL), "seed", 0);

    if (!v || wx_task_from_json(t, v, &err))
        die("task", &err);
    json_decref(v);
}

static void run_one(bench_env *b, const wx_task *t, wx_sim_return *r)
{
    if (wx_env_run(b->env, t, r) != 0) {
        fprintf(stderr, "bench_exec: task failed: %s\n",
                r->error ? r->error->message : "?");
        exit(1);
    }
}

/* ---- run: B1 ---- */

static int bench_run(const char *home, const char *bundle, long n,
                     bool cache)
{
    bench_env b;
    wx_task t;
    wx_sim_return r;
    double *v = samples((size_t)n);

    env_open(&b, home, bundle, !cache, NULL, NULL);
    make_task(&b, "{}", &t);
    run_one(&b, &t, &r); /* start the worker */
    wx_sim_return_release(&r);
    for (long i = 0; i < n; i++) {
        double t0 = now();

        t.seed = i + 1;
        run_one(&b, &t, &r);
        v[i] = (now() - t0) * 1e6;
        wx_sim_return_release(&r);
    }
    printf("%.1f %.1f\n", quantile(v, (size_t)n, 0.5),
           quantile(v, (size_t)n, 0.99));
    wx_task_release(&t);
    env_close(&b);
    free(v);
    return 0;
}

/* ---- artifact: B3 ---- */

static int bench_artifact(const char *home, const char *bundle, long bytes,
                          long n, const char *mode, const char *sync)
{
    static const int ids[] = {WX_CONF_ATTACHMENTS, WX_CONF_CAS_SYNC, -1};
    const char *texts[] = {strcmp(mode, "wx1") == 0 ? "true" : "false",
                           sync};
    wx_error err = WX_ERROR_INIT;
    char params[64];
    bench_env b;
    wx_task t;
    wx_sim_return r;
    double t0, ran, synced;

    env_open(&b, home, bundle, true, ids, texts);
    snprintf(params, sizeof(params), "{\"bytes\": %ld}", bytes);
    make_task(&b, params, &t);
    run_one(&b, &t, &r); /* start the worker, size its buffers */
    wx_sim_return_release(&r);
    t0 = now();
    for (long i = 0; i < n; i++) {
        t.seed = i + 1;
        run_one(&b, &t, &r);
        wx_sim_return_release(&r);
    }
    ran = now() - t0;
    if (wx_env_sync(b.env, &err))
        die("sync", &err);
    synced = now() - t0;
    printf("%.1f %.1f\n", (double)bytes * (double)n / ran / 1e6,
           (double)bytes * (double)n / synced / 1e6);
    wx_task_release(&t);
    env_close(&b);
    return 0;
}

static int bench_sha(long bytes, long n)
{
    unsigned char *buf = malloc((size_t)bytes), md[32];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    double t0;

    if (!buf || !ctx)
        die("malloc", NULL);
    memset(buf, 0x5a, (size_t)bytes);
    t0 = now();
    for (long i = 0; i < n; i++) {
        EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
        EVP_DigestUpdate(ctx, buf, (size_t)bytes);
        EVP_DigestFinal_ex(ctx, md, NULL);
    }
    printf("%.1f\n", (double)bytes * (double)n / (now() - t0) / 1e6);
    EVP_MD_CTX_free(ctx);
    free(buf);
    return 0;
}

/* ---- aggregate: B4 ---- */

static int bench_aggregate(const char *home, const char *bundle, long reps,
                           long bytes, long n)
{
    wx_error err = WX_ERROR_INIT;
    wx_sim_return *sims = calloc((size_t)reps, sizeof(*sims));
    double *v = samples((size_t)n);
    char params[64];
    bench_env b;
    wx_task t;
    wx_agg_task at = {0};

    env_open(&b, home, bundle, true, NULL, NULL);
    snprintf(params, sizeof(params), "{\"bytes\": %ld}", bytes);
    make_task(&b, params, &t);
    for (long i = 0; i < reps; i++) {
        t.seed = i;
        run_one(&b, &t, &sims[i]);
    }
    at.bundle_ref = b.ref;
    at.target_entrypoint = "noop.targets:size";
    at.sim_returns = sims;
    at.n_sim_returns = (size_t)reps;
    for (long i = 0; i < n + 1; i++) {
        wx_agg_return ret;
        double t0 = now();

        if (wx_env_run_aggregation(b.env, &at, &ret, NULL, &err))
            die("aggregation", &err);
        if (i > 0) /* the first one starts nothing but warms the path */
            v[i - 1] = (now() - t0) * 1e3;
        wx_agg_return_release(&ret);
    }
    printf("%.3f\n", quantile(v, (size_t)n, 0.5));
    for (long i = 0; i < reps; i++)
        wx_sim_return_release(&sims[i]);
    free(sims);
    free(v);
    wx_task_release(&t);
    env_close(&b);
    return 0;
}

/* ---- start: B5 ---- */

static double health_number(wx_env *env, const char *key)
{
    wx_error err = WX_ERROR_INIT;
    json_t *h;
    double x;

    if (wx_env_health(env, &h, &err))
        die("health", &err);
    x = json_number_value(json_object_get(json_object_get(h, "workers"),
                                          key));
    json_decref(h);
    return x;
}

static int bench_start(const char *home, const char *bundle, long n)
{
    static const int ids[] = {WX_CONF_MAX_TASKS_PER_WORKER, -1};
    const char *texts[] = {"1"};
    bench_env b;
    wx_task t;
    wx_sim_return r;

    env_open(&b, home, bundle, true, ids, texts);
    make_task(&b, "{}", &t);
    /* The pool times each start; the task itself does not matter (in
     * another bundle than noop it fails, after the worker started). */
    for (long i = 0; i < n; i++) {
        t.seed = i;
        wx_env_run(b.env, &t, &r);
        wx_sim_return_release(&r);
    }
    printf("%.2f\n", health_number(b.env, "start_seconds") /
                         health_number(b.env, "spawned") * 1e3);
    wx_task_release(&t);
    env_close(&b);
    return 0;
}

static int bench_forkexec(const char *program, long n)
{
    double *v = samples((size_t)n);

    for (long i = 0; i < n; i++) {
        double t0 = now();
        pid_t pid = fork();
        int status;

        if (pid == 0) {
            execl(program, program, (char *)NULL);
            _exit(127);
        }
        if (pid < 0 || waitpid(pid, &status, 0) != pid || status != 0)
            die("fork+exec", NULL);
        v[i] = (now() - t0) * 1e3;
    }
    printf("%.3f\n", quantile(v, (size_t)n, 0.5));
    free(v);
    return 0;
}

/* ---- workers: B6 (manager side) ---- */

typedef struct busy_arg {
    bench_env *b;
    long seed;
} busy_arg;

static void *busy_task(void *arg)
{
    busy_arg *a = arg;
    wx_task t;
    wx_sim_return r;

    make_task(a->b, "{\"sleep_ms\": 300}", &t);
    t.seed = a->seed;
    run_one(a->b, &t, &r);
    wx_sim_return_release(&r);
    wx_task_release(&t);
    return NULL;
}

static long rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");

    if (!f || fscanf(f, "%ld %ld", &pages, &resident) != 2)
        die("statm", NULL);
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static size_t heap_bytes(void)
{
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
}

/* Start k workers at once (k concurrent sleeping tasks); returns when all
 * are idle again. */
static void hold_workers(bench_env *b, long k, long seed0)
{
    pthread_t *th = calloc((size_t)k, sizeof(*th));
    busy_arg *args = calloc((size_t)k, sizeof(*args));

    for (long i = 0; i < k; i++) {
        args[i] = (busy_arg){b, seed0 + i};
        if (pthread_create(&th[i], NULL, busy_task, &args[i]))
            die("pthread_create", NULL);
    }
    for (long i = 0; i < k; i++)
        pthread_join(th[i], NULL);
    free(th);
    free(args);
}

static int bench_workers(const char *home, const char *bundle, long k)
{
    static const int ids[] = {WX_CONF_JOBS, WX_CONF_MAX_PROCESSES, -1};
    char jobs[32];
    const char *texts[] = {jobs, jobs};
    bench_env b;
    size_t heap0, heap1;
    long rss0, rss1;

    snprintf(jobs, sizeof(jobs), "%ld", k);
    env_open(&b, home, bundle, true, ids, texts);
    /* One round with one worker first, so that one-time allocations
     * (bundle resolution, thread stacks of the pool) are not counted. */
    hold_workers(&b, 1, 0);
    heap0 = heap_bytes();
    rss0 = rss_bytes();
    hold_workers(&b, k, 1);
    heap1 = heap_bytes();
    rss1 = rss_bytes();
    if ((long)health_number(b.env, "live") != k) {
        fprintf(stderr, "bench_exec: %g workers live, expected %ld\n",
                health_number(b.env, "live"), k);
        return 1;
    }
    /* The k threads of this program (stacks, arenas) are not the
     * manager's: they were joined before measuring. */
    printf("%.0f %.0f\n", ((double)heap1 - (double)heap0) / (double)(k - 1),
           ((double)rss1 - (double)rss0) / (double)(k - 1));
    env_close(&b);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";

    if (strcmp(mode, "pipe") == 0 && argc == 3)
        return bench_pipe(atol(argv[2]));
    if (strcmp(mode, "run") == 0 && argc == 6)
        return bench_run(argv[2], argv[3], atol(argv[4]),
                         strcmp(argv[5], "cache") == 0);
    if (strcmp(mode, "artifact") == 0 && argc == 8)
        return bench_artifact(argv[2], argv[3], atol(argv[4]), atol(argv[5]),
                              argv[6], argv[7]);
    if (strcmp(mode, "sha") == 0 && argc == 4)
        return bench_sha(atol(argv[2]), atol(argv[3]));
    if (strcmp(mode, "aggregate") == 0 && argc == 7)
        return bench_aggregate(argv[2], argv[3], atol(argv[4]),
                               atol(argv[5]), atol(argv[6]));
    if (strcmp(mode, "start") == 0 && argc == 5)
        return bench_start(argv[2], argv[3], atol(argv[4]));
    if (strcmp(mode, "forkexec") == 0 && argc == 4)
        return bench_forkexec(argv[2], atol(argv[3]));
    if (strcmp(mode, "workers") == 0 && argc == 5)
        return bench_workers(argv[2], argv[3], atol(argv[4]));
    fprintf(stderr, "usage: see the comment at the top of bench_exec.c\n");
    return 2;
}
