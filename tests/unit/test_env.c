/*
 * The execution environment (src/env.c): each helper of the seed plan and
 * its error path, then wx_env_run / wx_env_run_aggregation / wx_env_health
 * with tests/helpers/fake_worker.c (fault injection) and the example SIR
 * bundles.  Each of the original's bugs (reference section 9) that lives
 * here has a test showing the right behaviour: CAS artifacts with their
 * real size and checksum, aggregation over outputs stored in the CAS, ids
 * that include config/env, one error taxonomy for run and aggregation, a
 * result cache that stores and serves results (and never a damaged one).
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <warmexec/canon.h>

#include "alloc.h"
#include "clock.h"
#include "env.h"
#include "hash.h"
#include "pool.h"
#include "wire.h"

#ifndef WX_FAKE_WORKER
#error "WX_FAKE_WORKER must name the fake_worker program"
#endif

#define EMPTY_HEX                                                             \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define HEX64(c) c c c c c c c c c c c c c c c c
#define UNKNOWN_REF "sha256:" HEX64("0f0f")
#define SIM_EP "sim.model/baseline"
#define SIR_EP "sir.model/baseline"
#define SIR_PARAMS "{\"beta\": 0.3, \"gamma\": 0.1}"
#define MSE "targets.incidence:mse"
#define DEFAULT_INLINE_MAX 64000
/* Slack for a loaded machine (and ASan) on top of a deadline, in ms. */
#define MARGIN_MS 2500

/* ---- fixture ---- */

typedef struct fx {
    char *home;
    char marker[64];
    char once[4200];
    wx_config *cfg;
    wx_cas *cas;         /* memory CAS given to the env, or NULL */
    wx_cas *fs_cas;      /* our own handle on home/cas, or NULL */
    wx_bundles *bundles; /* home/bundles, given to the env */
    wx_env *env;
    bool no_cache;
    int n_bundles;
} fx;

static int g_seq;

static void fx_set(fx *f, wx_conf_id id, const char *text)
{
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx_config_set(f->cfg, id, text, WX_CONF_FROM_FLAG, &err), &err);
}

static int setup(void **state)
{
    wx_error err = WX_ERROR_INIT;
    fx *f = calloc(1, sizeof(*f));

    f->home = tu_tempdir();
    snprintf(f->marker, sizeof(f->marker), "wx-env-test-%d-%d",
             (int)getpid(), ++g_seq);
    snprintf(f->once, sizeof(f->once), "%s/once", f->home);
    assert_ok(wx_config_new(&f->cfg, &err), &err);
    fx_set(f, WX_CONF_HOME, f->home);
    fx_set(f, WX_CONF_NATIVE_RUNNER, WX_RUNNER_PATH);
    fx_set(f, WX_CONF_PYTHON_RUNNER, WX_PYTHON_RUNNER);
    fx_set(f, WX_CONF_START_TIMEOUT, "10");
    fx_set(f, WX_CONF_TASK_TIMEOUT, "10");
    fx_set(f, WX_CONF_SHUTDOWN_GRACE, "2");
    fx_set(f, WX_CONF_CAS_SYNC, "none");
    assert_ok(wx_bundles_open(f->home, &f->bundles, &err), &err);
    *state = f;
    return 0;
}

/* The same with a memory CAS given to the environment. */
static int setup_mem(void **state)
{
    wx_error err = WX_ERROR_INIT;
    fx *f;

    setup(state);
    f = *state;
    assert_ok(wx_cas_open_memory(&f->cas, &err), &err);
    return 0;
}

static void fx_close_env(fx *f)
{
    wx_env_close(f->env);
    f->env = NULL;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

static int teardown(void **state)
{
    fx *f = *state;

    wx__alloc_fail_after(-1);
    fx_close_env(f);
    wx_cas_close(f->cas);
    wx_cas_close(f->fs_cas);
    wx_bundles_close(f->bundles);
    wx_config_free(f->cfg);
    tu_rmtree(f->home);
    free(f->home);
    free(f);
    return 0;
}

static void fx_env(fx *f)
{
    wx_env_options o = {0};
    wx_error err = WX_ERROR_INIT;

    o.cas = f->cas;
    o.bundles = f->bundles;
    o.no_cache = f->no_cache;
    assert_ok(wx_env_open(f->cfg, &o, &f->env, &err), &err);
}

/* Our own handle on the env's filesystem CAS (home/cas). */
static wx_cas *fx_fs_cas(fx *f)
{
    wx_error err = WX_ERROR_INIT;

    if (!f->fs_cas)
        assert_ok(wx_cas_open_fs(tu_path(f->home, "cas"), WX_CAS_SYNC_NONE,
                                 &f->fs_cas, &err),
                  &err);
    return f->fs_cas;
}

/* The CAS the environment uses. */
static wx_cas *fx_cas(fx *f)
{
    return f->cas ? f->cas : fx_fs_cas(f);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fputs(text, fp) >= 0, 1);
    assert_int_equal(fclose(fp), 0);
}

/* A new source directory under home with `manifest` as warmexec.json
 * (NULL: none, only a README). */
static const char *fx_bundle_dir(fx *f, const char *manifest)
{
    static char dir[4200];
    char path[4400];

    snprintf(dir, sizeof(dir), "%s/src-%d", f->home, ++f->n_bundles);
    assert_int_equal(mkdir(dir, 0755), 0);
    snprintf(path, sizeof(path), "%s/README", dir);
    write_file(path, "a test bundle\n");
    snprintf(path, sizeof(path), "%s/warmexec.json", dir);
    if (manifest)
        write_file(path, manifest);
    return dir;
}

static void fx_add(fx *f, const char *dir, char ref[WX_DIGEST_LEN + 1])
{
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx_bundles_add(f->bundles, dir, ref, &err), &err);
}

/* Copy a file (for fx_store_raw). */
static void copy_file(const char *from, const char *to)
{
    char buf[4096];
    size_t n;
    FILE *in = fopen(from, "rb"), *out;

    if (!in)
        return; /* absent: nothing to copy */
    out = fopen(to, "wb");
    assert_non_null(out);
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/*
 * Put the bundle directory `dir` (made by fx_bundle_dir) into the store
 * by hand, under its digest: wx_bundles_add refuses a manifest that
 * cannot run, but a store written by another (older) warmexec, or by
 * hand, may hold one.
 */
static void fx_store_raw(fx *f, const char *dir, char ref[WX_DIGEST_LEN + 1])
{
    static const char *const files[] = {"README", "warmexec.json"};
    wx_error err = WX_ERROR_INIT;
    char path[4400], to[4500];

    assert_ok(wx_bundle_digest(dir, ref, NULL, &err), &err);
    snprintf(path, sizeof(path), "%s/bundles", f->home);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/bundles/sha256", f->home);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/bundles/sha256/%s", f->home, ref + 7);
    assert_int_equal(mkdir(path, 0755), 0);
    for (size_t i = 0; i < 2; i++) {
        char from[4400];

        snprintf(from, sizeof(from), "%s/%s", dir, files[i]);
        snprintf(to, sizeof(to), "%s/%s", path, files[i]);
        copy_file(from, to);
    }
}

/*
 * Store a bundle that runs the fake worker with the given options
 * (NULL-terminated) and write its ref.
 */
static void fx_fake_bundle(fx *f, char ref[WX_DIGEST_LEN + 1], ...)
{
    json_t *argv = json_pack("[s,s,s]", WX_FAKE_WORKER, "--bundle-digest",
                             "{bundle_digest}");
    json_t *m;
    const char *a;
    char *text;
    va_list ap;

    va_start(ap, ref);
    while ((a = va_arg(ap, const char *)) != NULL)
        json_array_append_new(argv, json_string(a));
    va_end(ap);
    json_array_append_new(argv, json_string(f->marker));
    /* A sanitizer build of the fake: no leak report at its exit. */
    m = json_pack("{s:s,s:{s:o},s:{s:s}}", "name", "fake", "runner",
                  "command", argv, "env", "ASAN_OPTIONS", "detect_leaks=0");
    text = tu_canon(m);
    fx_add(f, fx_bundle_dir(f, text), ref);
    wx_free(text);
    json_decref(m);
}

/* A task from its parts; `outputs` is JSON text or NULL. */
static void make_task(wx_task *t, const char *ref, const char *entrypoint,
                      const char *params, int64_t seed, const char *outputs)
{
    wx_error err = WX_ERROR_INIT;
    json_t *v = json_pack("{s:s,s:s,s:o,s:I}", "bundle_ref", ref,
                          "entrypoint", entrypoint, "params", tu_json(params),
                          "seed", (json_int_t)seed);

    if (outputs)
        json_object_set_new(v, "outputs", tu_json(outputs));
    assert_ok(wx_task_from_json(t, v, &err), &err);
    json_decref(v);
}

static void sha_hex(const void *data, size_t n, char out[65])
{
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx__sha256_hex(data, n, out, &err), &err);
}

static const wx_output *output_named(const wx_sim_return *r, const char *name)
{
    for (size_t i = 0; i < r->n_outputs; i++)
        if (strcmp(r->outputs[i].name, name) == 0)
            return &r->outputs[i];
    fail_msg("no output '%s'", name);
    return NULL;
}

static json_int_t metric(const wx_sim_return *r, const char *name)
{
    json_t *v = json_object_get(r->metrics, name);

    if (!json_is_integer(v))
        fail_msg("metrics.%s is missing", name);
    return json_integer_value(v);
}

/* The bytes of an artifact: inline, or read (verified) from the CAS. */
static uint8_t *artifact_bytes(wx_cas *cas, const wx_artifact *a,
                               size_t *len)
{
    wx_error err = WX_ERROR_INIT;
    uint8_t *data = NULL;

    if (!a->ref) {
        *len = a->size;
        data = malloc(a->size ? a->size : 1);
        if (a->size)
            memcpy(data, a->data, a->size);
        return data;
    }
    assert_ok(wx_cas_get(cas, a->ref, SIZE_MAX, &data, len, &err), &err);
    return data;
}

/* The artifact's size and checksum are those of its bytes. */
static void assert_artifact_true(wx_cas *cas, const wx_artifact *a)
{
    wx_error err = WX_ERROR_INIT;
    size_t len = 0;
    uint8_t *data = artifact_bytes(cas, a, &len);
    char hex[65];

    assert_ok(wx_artifact_validate(a, &err), &err);
    assert_int_equal(a->size, len);
    sha_hex(data, len, hex);
    assert_string_equal(a->checksum, hex);
    if (a->ref) {
        assert_string_equal(a->ref + 6, hex);
        assert_ok(wx_cas_verify(cas, a->ref, &err), &err);
    }
    wx_free(data);
}

static void check_pattern(const uint8_t *data, size_t len, int64_t seed)
{
    for (size_t i = 0; i < len; i++)
        if (data[i] != (uint8_t)((int64_t)i * 31 + seed))
            fail_msg("byte %zu of %zu is wrong", i, len);
}

/* Two results carry the same outputs (names, sizes, checksums, storage). */
static void assert_same_outputs(const wx_sim_return *a,
                                const wx_sim_return *b)
{
    assert_int_equal(a->n_outputs, b->n_outputs);
    for (size_t i = 0; i < a->n_outputs; i++) {
        const wx_artifact *x = &a->outputs[i].art;
        const wx_artifact *y = &output_named(b, a->outputs[i].name)->art;

        assert_int_equal(x->size, y->size);
        assert_string_equal(x->checksum, y->checksum);
        assert_int_equal(x->ref != NULL, y->ref != NULL);
        if (x->ref)
            assert_string_equal(x->ref, y->ref);
        else if (x->size)
            assert_memory_equal(x->data, y->data, x->size);
    }
}

/* The error_details of a failed result, parsed (its bytes checked). */
static json_t *details_of(wx_cas *cas, const wx_sim_return *r)
{
    wx_error err = WX_ERROR_INIT;
    size_t len = 0;
    uint8_t *data;
    json_t *v = NULL;

    assert_non_null(r->error_details);
    assert_artifact_true(cas, r->error_details);
    data = artifact_bytes(cas, r->error_details, &len);
    assert_ok(wx_json_parse((const char *)data, len, &v, &err), &err);
    wx_free(data);
    assert_true(json_is_object(v));
    return v;
}

static const char *jstr(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));

    if (!s)
        fail_msg("%s is not a string", key);
    return s;
}

/* The path of object `ref` in the filesystem CAS under home. */
static const char *object_path(fx *f, const char *ref)
{
    static char path[4400];

    snprintf(path, sizeof(path), "%s/cas/sha256/%.2s/%s", f->home, ref + 6,
             ref + 8);
    return path;
}

/* Flip one byte of a file in place (objects are read-only: chmod). */
static void flip_byte(const char *path, off_t at)
{
    uint8_t b;
    int fd;

    assert_int_equal(chmod(path, 0644), 0);
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

static json_t *health(fx *f)
{
    wx_error err = WX_ERROR_INIT;
    json_t *h = NULL;

    assert_ok(wx_env_health(f->env, &h, &err), &err);
    return h;
}

static json_int_t health_int(fx *f, const char *section, const char *key)
{
    json_t *h = health(f);
    json_t *v = section ? json_object_get(json_object_get(h, section), key)
                        : json_object_get(h, key);
    json_int_t n;

    if (!json_is_integer(v))
        fail_msg("health %s.%s is not an integer", section ? section : "",
                 key);
    n = json_integer_value(v);
    json_decref(h);
    return n;
}

/* Leases served by the pool so far (a call of any kind needs one). */
static json_int_t leases(fx *f)
{
    return health_int(f, "workers", "spawned") +
           health_int(f, "workers", "reused") +
           health_int(f, "workers", "start_failed");
}

/* Run a task; the result must pass the contract's validation. */
static int run(fx *f, const wx_task *t, wx_sim_return *r)
{
    wx_error err = WX_ERROR_INIT;
    int rc = wx_env_run(f->env, t, r);

    if (wx_sim_return_validate(r, &err) != 0)
        fail_msg("wx_env_run returned an invalid SimReturn: %s", err.message);
    assert_true((rc == 0) == (r->error == NULL));
    return rc;
}

static void run_ok(fx *f, const wx_task *t, wx_sim_return *r)
{
    int rc = run(f, t, r);

    if (rc)
        fail_msg("run failed: %s (%s)", r->error->message,
                 r->error->error_type);
}

/* An aggregation task over `results` (copied through their JSON form). */
static void make_agg(wx_agg_task *a, const char *ref, const char *target,
                     const wx_sim_return *results, size_t n,
                     const char *target_data)
{
    wx_error err = WX_ERROR_INIT;
    json_t *list = json_array(), *v;

    for (size_t i = 0; i < n; i++) {
        json_t *sr = NULL;

        assert_ok(wx_sim_return_to_json(&results[i], &sr, &err), &err);
        json_array_append_new(list, sr);
    }
    v = json_pack("{s:s,s:s,s:o}", "bundle_ref", ref, "target_entrypoint",
                  target, "sim_returns", list);
    if (target_data)
        json_object_set_new(v, "target_data", tu_json(target_data));
    assert_ok(wx_agg_task_from_json(a, v, &err), &err);
    json_decref(v);
}

/* ======================================================================
 * Helpers of the seed plan
 * ====================================================================== */

/* ---- error types (DESIGN.md 2.3) ---- */

static void test_error_type(void **state)
{
    static const struct {
        int rc;
        const char *type;
    } cases[] = {
        {WX_ENOTFOUND, "BundleNotFound"}, {WX_ECORRUPT, "BundleCorrupt"},
        {WX_EINVAL, "InvalidTask"},       {WX_EIO, "StorageError"},
        {WX_ESTART, "WorkerStartFailed"}, {WX_EMODEL, "ModelError"},
        {WX_ECRASHED, "WorkerCrashed"},   {WX_EOOM, "OutOfMemory"},
        {WX_ETIMEDOUT, "Timeout"},        {WX_EPROTO, "ProtocolError"},
        {WX_ENOMEM, "InternalError"},     {WX_EINTERNAL, "InternalError"},
    };
    wx_fault fault = {0};

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_string_equal(wx__error_type(cases[i].rc, NULL), cases[i].type);
        /* A fault without a type does not change it. */
        assert_string_equal(wx__error_type(cases[i].rc, &fault),
                            cases[i].type);
    }
    /* The pool's verdict wins: a SIGKILL under a memory limit is OOM. */
    fault.error_type = "OutOfMemory";
    assert_string_equal(wx__error_type(WX_ECRASHED, &fault), "OutOfMemory");
}

/* ---- resolve_bundle ---- */

static void test_resolve_bundle(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1], sir[WX_DIGEST_LEN + 1], repo[200];
    wx__resolved r;
    wx_error err = WX_ERROR_INIT;
    struct stat st;

    fx_fake_bundle(f, ref, "--compat", NULL);
    assert_ok(wx__resolve_bundle(f->bundles, f->cfg, ref, &r, &err), &err);
    assert_string_equal(r.digest, ref);
    assert_int_equal(stat(tu_path(r.path, "warmexec.json"), &st), 0);
    assert_non_null(strstr(r.path, ref + 7));
    assert_int_equal(r.manifest.runner, WX_RUNNER_COMMAND);
    assert_string_equal(r.runner.spec.bundle_digest, ref);
    assert_string_equal(r.runner.spec.bundle_path, r.path);
    assert_string_equal(r.runner.spec.runner, "command");
    assert_string_equal(r.runner.spec.argv[0], WX_FAKE_WORKER);
    assert_string_equal(r.runner.spec.argv[3], "--compat");
    assert_string_equal(r.runner.spec.env[0],
                        "ASAN_OPTIONS=detect_leaks=0");
    wx__resolved_release(&r);

    /* <repository>@sha256:<hex> names the same bundle. */
    snprintf(repo, sizeof(repo), "registry.example/models/fake@%s", ref);
    assert_ok(wx__resolve_bundle(f->bundles, f->cfg, repo, &r, &err), &err);
    assert_string_equal(r.digest, ref);
    wx__resolved_release(&r);

    /* A native bundle runs the configured native runner. */
    fx_add(f, WX_SIR_BUNDLE, sir);
    assert_ok(wx__resolve_bundle(f->bundles, f->cfg, sir, &r, &err), &err);
    assert_int_equal(r.manifest.runner, WX_RUNNER_NATIVE);
    assert_string_equal(r.runner.spec.argv[0], WX_RUNNER_PATH);
    assert_string_equal(r.runner.spec.runner, "native");
    wx__resolved_release(&r);
}

static void test_resolve_bundle_errors(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1], bad[WX_DIGEST_LEN + 1];
    char none[WX_DIGEST_LEN + 1], path[4400];
    wx_bundles *fresh = NULL;
    wx__resolved r;
    wx_error err = WX_ERROR_INIT;
    FILE *fp;

    assert_fails(wx__resolve_bundle(f->bundles, f->cfg, UNKNOWN_REF, &r,
                                    &err),
                 WX_ENOTFOUND, &err, HEX64("0f0f"));
    assert_null(r.manifest.name);
    assert_null(r.runner.argv);
    assert_fails(wx__resolve_bundle(f->bundles, f->cfg, "sha256:xyz", &r,
                                    &err),
                 WX_EINVAL, &err, "");
    assert_fails(wx__resolve_bundle(f->bundles, f->cfg, "not a ref", &r,
                                    &err),
                 WX_EINVAL, &err, "");

    /* A manifest that cannot run: WorkerStartFailed, with the reason. */
    fx_store_raw(f, fx_bundle_dir(f, "{\"runner\": 42}"), bad);
    assert_fails(wx__resolve_bundle(f->bundles, f->cfg, bad, &r, &err),
                 WX_ESTART, &err, "cannot run");
    assert_non_null(strstr(err.message, "runner"));
    assert_null(r.manifest.name);
    assert_string_equal(wx__error_type(WX_ESTART, NULL), "WorkerStartFailed");
    fx_store_raw(f, fx_bundle_dir(f, NULL), none);
    assert_fails(wx__resolve_bundle(f->bundles, f->cfg, none, &r, &err),
                 WX_ESTART, &err, "not a bundle");

    /* Stored content changed: BundleCorrupt (when a process first uses
     * the bundle). */
    fx_fake_bundle(f, ref, NULL);
    snprintf(path, sizeof(path), "%s/bundles/sha256/%s/README", f->home,
             ref + 7);
    assert_int_equal(chmod(path, 0644), 0);
    fp = fopen(path, "a");
    assert_non_null(fp);
    fputs("tampered\n", fp);
    fclose(fp);
    assert_ok(wx_bundles_open(f->home, &fresh, &err), &err);
    assert_fails(wx__resolve_bundle(fresh, f->cfg, ref, &r, &err),
                 WX_ECORRUPT, &err, "");
    assert_string_equal(wx__error_type(WX_ECORRUPT, NULL), "BundleCorrupt");
    wx_bundles_close(fresh);
}

/* ---- handle_artifacts ---- */

typedef struct raw_set {
    wx__raw_output items[8];
    wx__outputs outs;
} raw_set;

static void raw_set_init(raw_set *s, size_t n, const char *const *names,
                         uint8_t *const *data, const size_t *lens)
{
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < n; i++)
        s->items[i] = (wx__raw_output){names[i], data[i], lens[i], WX__NO_ATT};
    s->outs.items = s->items;
    s->outs.n = n;
}

static void free_outputs(wx_output *o, size_t n)
{
    for (size_t i = 0; o && i < n; i++) {
        wx_free(o[i].name);
        wx_artifact_release(&o[i].art);
    }
    wx_free(o);
}

static uint8_t *pattern(size_t n, int64_t seed)
{
    uint8_t *p = malloc(n ? n : 1);

    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((int64_t)i * 31 + seed);
    return p;
}

static void test_handle_artifacts(void **state)
{
    fx *f = *state;
    static const char *const names[] = {"at_limit", "over", "empty", "x"};
    uint8_t *data[4] = {pattern(64000, 1), pattern(64001, 2), NULL,
                        (uint8_t *)"x"};
    const size_t lens[4] = {64000, 64001, 0, 1};
    size_t inline_max = (size_t)wx_config_int(f->cfg,
                                              WX_CONF_INLINE_MAX_BYTES);
    wx_output *out = NULL;
    wx_error err = WX_ERROR_INIT;
    raw_set s;
    char hex[65];
    bool exists = false;

    /* The default threshold of the original: 64000 bytes stay inline. */
    assert_int_equal(inline_max, DEFAULT_INLINE_MAX);
    raw_set_init(&s, 4, names, data, lens);
    assert_ok(wx__handle_artifacts(f->cas, inline_max, NULL, &s.outs, &out,
                                   &err),
              &err);
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(out[i].name, names[i]);
        assert_int_equal(out[i].art.size, lens[i]);
        sha_hex(data[i], lens[i], hex);
        assert_string_equal(out[i].art.checksum, hex);
        assert_artifact_true(f->cas, &out[i].art);
    }
    /* exactly 64000: inline, a copy of the bytes */
    assert_null(out[0].art.ref);
    assert_non_null(out[0].art.data);
    assert_ptr_not_equal(out[0].art.data, data[0]);
    assert_memory_equal(out[0].art.data, data[0], 64000);
    /* 64001: in the CAS under its SHA-256, with its real size (the
     * original recorded size 0 and the ref as checksum) */
    assert_non_null(out[1].art.ref);
    assert_null(out[1].art.data);
    sha_hex(data[1], 64001, hex);
    assert_string_equal(out[1].art.ref + 6, hex);
    assert_int_equal(out[1].art.size, 64001);
    assert_ok(wx_cas_exists(f->cas, out[1].art.ref, &exists, &err), &err);
    assert_true(exists);
    /* empty: inline, no bytes */
    assert_null(out[2].art.ref);
    assert_int_equal(out[2].art.size, 0);
    assert_string_equal(out[2].art.checksum, EMPTY_HEX);
    free_outputs(out, 4);

    /* Another threshold: everything above 0 bytes goes to the CAS. */
    assert_ok(wx__handle_artifacts(f->cas, 0, NULL, &s.outs, &out, &err), &err);
    assert_non_null(out[0].art.ref);
    assert_null(out[2].art.ref);
    assert_non_null(out[3].art.ref);
    for (size_t i = 0; i < 4; i++)
        assert_artifact_true(f->cas, &out[i].art);
    free_outputs(out, 4);

    /* No outputs: an empty array, not a failure (create_sim_return
     * reports it). */
    s.outs.n = 0;
    out = NULL;
    assert_ok(wx__handle_artifacts(f->cas, inline_max, NULL, &s.outs, &out,
                                   &err),
              &err);
    assert_non_null(out);
    free_outputs(out, 0);
    free(data[0]);
    free(data[1]);
}

/* Every allocation failure, the CAS put's included, is reported cleanly
 * (no leak, `*outputs` untouched). */
static void test_handle_artifacts_out_of_memory(void **state)
{
    fx *f = *state;
    static const char *const names[] = {"small", "big"};
    uint8_t *data[2] = {(uint8_t *)"abc", pattern(70000, 3)};
    const size_t lens[2] = {3, 70000};
    bool cas_failed = false;
    raw_set s;
    long n;

    raw_set_init(&s, 2, names, data, lens);
    for (n = 0; n < 50; n++) {
        wx_output *out = (wx_output *)&n; /* must stay untouched */
        wx_error err = WX_ERROR_INIT;
        int rc;

        wx__alloc_fail_after(n);
        rc = wx__handle_artifacts(f->cas, DEFAULT_INLINE_MAX, NULL, &s.outs,
                                  &out, &err);
        wx__alloc_fail_after(-1);
        if (rc == 0) {
            free_outputs(out, 2);
            break;
        }
        assert_fails(rc, WX_ENOMEM, &err, "out of memory");
        assert_ptr_equal(out, (wx_output *)&n);
        cas_failed |= strstr(err.message, "cannot store output 'big'") != NULL;
    }
    assert_true(n > 0 && n < 50);
    /* The memory CAS's own allocation failed at one of these. */
    assert_true(cas_failed);
    free(data[1]);
}

/* Replace the fan-out root of a filesystem CAS by a regular file: every
 * put of a new object then fails (even for root, unlike chmod 0555). */
static void break_fs_cas(const char *root)
{
    char path[4400];

    snprintf(path, sizeof(path), "%s/sha256", root);
    tu_rmtree(path);
    write_file(path, "not a directory\n");
}

static void test_handle_artifacts_storage_error(void **state)
{
    fx *f = *state;
    static const char *const names[] = {"small", "big"};
    uint8_t *data[2] = {(uint8_t *)"abc", pattern(70000, 4)};
    const size_t lens[2] = {3, 70000};
    wx_output *out = NULL;
    wx_error err = WX_ERROR_INIT;
    wx_cas *cas = NULL;
    raw_set s;

    raw_set_init(&s, 2, names, data, lens);
    assert_ok(wx_cas_open_fs(tu_path(f->home, "cas"), WX_CAS_SYNC_NONE, &cas,
                             &err),
              &err);
    break_fs_cas(tu_path(f->home, "cas"));
    assert_fails(wx__handle_artifacts(cas, DEFAULT_INLINE_MAX, NULL, &s.outs,
                                      &out, &err),
                 WX_EIO, &err, "cannot store output 'big'");
    assert_null(out);
    assert_string_equal(wx__error_type(WX_EIO, NULL), "StorageError");
    /* Small outputs do not touch the store. */
    s.outs.n = 1;
    assert_ok(wx__handle_artifacts(cas, DEFAULT_INLINE_MAX, NULL, &s.outs,
                                   &out, &err),
              &err);
    free_outputs(out, 1);
    wx_cas_close(cas);
    free(data[1]);
}

/* ---- create_sim_return ---- */

/* handle_artifacts of small outputs named `names`. */
static wx_output *some_outputs(wx_cas *cas, size_t n,
                               const char *const *names)
{
    uint8_t *data[8];
    size_t lens[8];
    wx_output *out = NULL;
    wx_error err = WX_ERROR_INIT;
    raw_set s;

    for (size_t i = 0; i < n; i++) {
        data[i] = (uint8_t *)names[i];
        lens[i] = strlen(names[i]);
    }
    raw_set_init(&s, n, names, data, lens);
    assert_ok(wx__handle_artifacts(cas, DEFAULT_INLINE_MAX, NULL, &s.outs,
                                   &out, &err),
              &err);
    return out;
}

static void test_create_sim_return_ids(void **state)
{
    fx *f = *state;
    static const char *const names[] = {"a", "b"};
    wx_task t = {0}, plain = {0};
    wx_sim_return r;
    wx_error err = WX_ERROR_INIT;
    char root[65], tid[65], plain_root[65], plain_tid[65];
    json_t *v;

    /* A task with config and env: the ids must cover them (the original
     * computed sim_root without them). */
    v = tu_json("{\"bundle_ref\": \"" UNKNOWN_REF "\", \"entrypoint\": "
                "\"" SIM_EP "\", \"params\": {\"x\": 1.5}, \"seed\": 3, "
                "\"config\": {\"dt\": 0.5}, \"env\": {\"OMP\": \"1\"}}");
    assert_ok(wx_task_from_json(&t, v, &err), &err);
    json_decref(v);
    make_task(&plain, UNKNOWN_REF, SIM_EP, "{\"x\": 1.5}", 3, NULL);
    assert_ok(wx_task_sim_root(&t, root, &err), &err);
    assert_ok(wx_task_task_id(&t, tid, &err), &err);
    assert_ok(wx_task_sim_root(&plain, plain_root, &err), &err);
    assert_ok(wx_task_task_id(&plain, plain_tid, &err), &err);
    assert_string_not_equal(root, plain_root);

    assert_ok(wx__create_sim_return(&t, NULL,
                                    some_outputs(f->cas, 2, names), 2, &r,
                                    &err),
              &err);
    assert_string_equal(r.sim_root, root);
    assert_string_equal(r.task_id, tid);
    assert_int_equal(r.n_outputs, 2);
    assert_null(r.error);
    assert_false(r.cached);
    assert_ok(wx_sim_return_validate(&r, &err), &err);
    wx_sim_return_release(&r);

    assert_ok(wx__create_sim_return(&plain, NULL,
                                    some_outputs(f->cas, 2, names), 2, &r,
                                    &err),
              &err);
    assert_string_equal(r.sim_root, plain_root);
    assert_string_equal(r.task_id, plain_tid);
    wx_sim_return_release(&r);
    wx_task_release(&plain);

    /* Requested outputs: task_id is SimTask.task_id() (the original used
     * the names returned). */
    make_task(&plain, UNKNOWN_REF, SIM_EP, "{\"x\": 1.5}", 3, "[\"a\"]");
    assert_ok(wx_task_task_id(&plain, tid, &err), &err);
    assert_string_not_equal(tid, plain_tid);
    assert_ok(wx__create_sim_return(&plain, NULL,
                                    some_outputs(f->cas, 2, names), 2, &r,
                                    &err),
              &err);
    assert_string_equal(r.task_id, tid);
    wx_sim_return_release(&r);
    wx_task_release(&plain);
    wx_task_release(&t);
}

static void test_create_sim_return_errors(void **state)
{
    fx *f = *state;
    static const char *const dup[] = {"a", "a"};
    wx_task t = {0};
    wx_sim_return r;
    wx_error err = WX_ERROR_INIT;

    make_task(&t, UNKNOWN_REF, SIM_EP, "{}", 1, NULL);
    /* No outputs: a model error, and nothing is left allocated. */
    assert_fails(wx__create_sim_return(&t, NULL,
                                       wx__calloc(1, sizeof(wx_output)), 0,
                                       &r, &err),
                 WX_EMODEL, &err, "no outputs");
    assert_null(r.outputs);
    assert_int_equal(r.n_outputs, 0);
    /* An invalid result is refused and its outputs freed (ASan). */
    assert_fails(wx__create_sim_return(&t, NULL,
                                       some_outputs(f->cas, 2, dup), 2, &r,
                                       &err),
                 WX_EINVAL, &err, "");
    assert_null(r.outputs);
    wx_task_release(&t);
}

/* ---- select_outputs ---- */

static void test_select_outputs(void **state)
{
    fx *f = *state;
    static const char *const names[] = {"c", "a", "b"};
    wx_task all = {0}, some = {0}, missing = {0};
    wx_sim_return r;
    wx_error err = WX_ERROR_INIT;
    char tid[65];

    make_task(&all, UNKNOWN_REF, SIM_EP, "{}", 1, NULL);
    make_task(&some, UNKNOWN_REF, SIM_EP, "{}", 1, "[\"a\", \"c\"]");
    make_task(&missing, UNKNOWN_REF, SIM_EP, "{}", 1, "[\"a\", \"z\"]");

    /* All: nothing removed, task_id with "*". */
    assert_ok(wx__create_sim_return(&all, NULL,
                                    some_outputs(f->cas, 3, names), 3, &r,
                                    &err),
              &err);
    assert_ok(wx__select_outputs(&all, &r, &err), &err);
    assert_int_equal(r.n_outputs, 3);
    assert_ok(wx_task_task_id(&all, tid, &err), &err);
    assert_string_equal(r.task_id, tid);

    /* A subset of the same result: kept in the runner's order, the rest
     * released, task_id left for the caller (still that of `all`). */
    assert_ok(wx__select_outputs(&some, &r, &err), &err);
    assert_int_equal(r.n_outputs, 2);
    assert_string_equal(r.outputs[0].name, "c");
    assert_string_equal(r.outputs[1].name, "a");
    assert_memory_equal(r.outputs[0].art.data, "c", 1);
    assert_memory_equal(r.outputs[1].art.data, "a", 1);
    assert_string_equal(r.task_id, tid);
    assert_ok(wx_sim_return_validate(&r, &err), &err);

    /* A requested output that was not produced. */
    assert_fails(wx__select_outputs(&missing, &r, &err), WX_EMODEL, &err,
                 "requested output 'z' was not produced");
    /* Nothing was removed by the failed selection. */
    assert_int_equal(r.n_outputs, 2);
    wx_sim_return_release(&r);
    wx_task_release(&all);
    wx_task_release(&some);
    wx_task_release(&missing);
}

/* ---- create_error_return ---- */

static void test_create_error_return(void **state)
{
    fx *f = *state;
    wx_task t = {0};
    wx_sim_return r;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;
    char tid[65], root[65];
    json_t *d;

    make_task(&t, UNKNOWN_REF, SIM_EP, "{\"x\": 1}", 5, "[\"out\"]");
    assert_ok(wx_task_task_id(&t, tid, &err), &err);
    assert_ok(wx_task_sim_root(&t, root, &err), &err);

    /* A worker fault: every detail lands in error_details. */
    fault.error_type = "WorkerCrashed";
    fault.retryable = true;
    snprintf(fault.worker_id, sizeof(fault.worker_id), "w-42");
    snprintf(fault.status, sizeof(fault.status),
             "killed by signal 9 (SIGKILL)");
    fault.stderr_tail = wx__strdup("loading\nfake_worker: crashing\n");
    fault.traceback = wx__strdup("Traceback (most recent call last): ...");
    wx__create_error_return(&t, WX_ECRASHED, "worker w-42 died", &fault, 3,
                            f->cas, DEFAULT_INLINE_MAX, &r);
    assert_ok(wx_sim_return_validate(&r, &err), &err);
    assert_string_equal(r.sim_root, root);
    assert_string_equal(r.task_id, tid);
    assert_int_equal(r.n_outputs, 0);
    assert_false(r.cached);
    assert_string_equal(r.error->error_type, "WorkerCrashed");
    assert_string_equal(r.error->message, "worker w-42 died");
    assert_true(r.error->retryable);
    assert_null(r.error_details->ref);
    d = details_of(f->cas, &r);
    assert_string_equal(jstr(d, "error"), "worker w-42 died");
    assert_string_equal(jstr(d, "type"), "WorkerCrashed");
    assert_string_equal(jstr(d, "bundle_ref"), UNKNOWN_REF);
    assert_string_equal(jstr(d, "entrypoint"), SIM_EP);
    assert_string_equal(jstr(d, "worker"), "w-42");
    assert_string_equal(jstr(d, "status"), "killed by signal 9 (SIGKILL)");
    assert_string_equal(jstr(d, "stderr_tail"),
                        "loading\nfake_worker: crashing\n");
    assert_string_equal(jstr(d, "traceback"),
                        "Traceback (most recent call last): ...");
    assert_int_equal(json_integer_value(json_object_get(d, "attempts")), 3);
    json_decref(d);
    wx_sim_return_release(&r);
    wx_fault_release(&fault);

    /* No fault: the type comes from the status; no worker fields. */
    wx__create_error_return(&t, WX_ENOTFOUND, "bundle not found", NULL, 0,
                            f->cas, DEFAULT_INLINE_MAX, &r);
    assert_ok(wx_sim_return_validate(&r, &err), &err);
    assert_string_equal(r.error->error_type, "BundleNotFound");
    assert_false(r.error->retryable);
    assert_string_equal(r.task_id, tid);
    d = details_of(f->cas, &r);
    assert_string_equal(jstr(d, "type"), "BundleNotFound");
    assert_null(json_object_get(d, "worker"));
    assert_null(json_object_get(d, "stderr_tail"));
    assert_int_equal(json_integer_value(json_object_get(d, "attempts")), 0);
    json_decref(d);
    wx_sim_return_release(&r);

    /* A stderr tail with bytes that are not UTF-8 still gives JSON. */
    fault = (wx_fault){0};
    fault.error_type = "ModelError";
    fault.stderr_tail = wx__strdup("bad \xff\xfe bytes\n");
    wx__create_error_return(&t, WX_EMODEL, "ValueError: x", &fault, 1,
                            f->cas, DEFAULT_INLINE_MAX, &r);
    d = details_of(f->cas, &r);
    assert_non_null(strstr(jstr(d, "stderr_tail"), "bytes"));
    assert_false(r.error->retryable);
    json_decref(d);
    wx_sim_return_release(&r);
    wx_fault_release(&fault);
    wx_task_release(&t);
}

/* ErrorInfo.retryable for each type (DESIGN.md 2.3). */
static void test_create_error_return_retryable(void **state)
{
    fx *f = *state;
    static const struct {
        int rc;
        const char *fault_type;
        const char *type;
        bool retryable;
    } cases[] = {
        {WX_EINVAL, NULL, "InvalidTask", false},
        {WX_ENOTFOUND, NULL, "BundleNotFound", false},
        {WX_ECORRUPT, NULL, "BundleCorrupt", false},
        {WX_ESTART, "WorkerStartFailed", "WorkerStartFailed", false},
        {WX_EMODEL, "ModelError", "ModelError", false},
        {WX_ECRASHED, "WorkerCrashed", "WorkerCrashed", true},
        {WX_EOOM, "OutOfMemory", "OutOfMemory", false},
        {WX_ETIMEDOUT, "Timeout", "Timeout", true},
        {WX_EPROTO, "ProtocolError", "ProtocolError", true},
        {WX_EIO, NULL, "StorageError", true},
        {WX_ECRASHED, NULL, "WorkerCrashed", true},
        {WX_ETIMEDOUT, NULL, "Timeout", true},
    };
    wx_task t = {0};
    wx_error err = WX_ERROR_INIT;

    make_task(&t, UNKNOWN_REF, SIM_EP, "{}", 0, NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wx_fault fault = {0};
        wx_sim_return r;

        fault.error_type = cases[i].fault_type;
        wx__create_error_return(&t, cases[i].rc, "failed", &fault, 1, f->cas,
                                DEFAULT_INLINE_MAX, &r);
        assert_ok(wx_sim_return_validate(&r, &err), &err);
        assert_string_equal(r.error->error_type, cases[i].type);
        if (r.error->retryable != cases[i].retryable)
            fail_msg("%s: retryable %d", cases[i].type, r.error->retryable);
        wx_sim_return_release(&r);
    }
    wx_task_release(&t);
}

/* Details larger than the inline limit go to the CAS, with their real
 * size and checksum. */
static void test_create_error_return_large_details(void **state)
{
    fx *f = *state;
    char *message = malloc(70001);
    wx_task t = {0};
    wx_sim_return r;
    wx_error err = WX_ERROR_INIT;
    json_t *d;

    memset(message, 'm', 70000);
    message[70000] = '\0';
    make_task(&t, UNKNOWN_REF, SIM_EP, "{}", 0, NULL);
    wx__create_error_return(&t, WX_EMODEL, message, NULL, 1, f->cas,
                            DEFAULT_INLINE_MAX, &r);
    assert_ok(wx_sim_return_validate(&r, &err), &err);
    assert_non_null(r.error_details->ref);
    assert_null(r.error_details->data);
    assert_true(r.error_details->size > 70000);
    d = details_of(f->cas, &r); /* size and checksum of the object */
    assert_string_equal(jstr(d, "error"), message);
    assert_string_equal(jstr(d, "type"), "ModelError");
    json_decref(d);
    wx_sim_return_release(&r);

    /* At the limit it stays inline; one byte over, in the CAS. */
    wx__create_error_return(&t, WX_EMODEL, "short", NULL, 1, f->cas,
                            DEFAULT_INLINE_MAX, &r);
    {
        size_t len = (size_t)r.error_details->size;

        assert_null(r.error_details->ref);
        wx_sim_return_release(&r);
        wx__create_error_return(&t, WX_EMODEL, "short", NULL, 1, f->cas, len,
                                &r);
        assert_null(r.error_details->ref);
        wx_sim_return_release(&r);
        wx__create_error_return(&t, WX_EMODEL, "short", NULL, 1, f->cas,
                                len - 1, &r);
        assert_non_null(r.error_details->ref);
        assert_int_equal(r.error_details->size, len);
        d = details_of(f->cas, &r);
        json_decref(d);
        wx_sim_return_release(&r);
    }
    wx_task_release(&t);
    free(message);
}

/* ---- resolve_cas_references ---- */

/* A replicate with an inline output "a" and a CAS output "b". */
static void cas_replicate(wx_cas *cas, wx_sim_return *r, const void *bytes,
                          size_t len)
{
    wx_error err = WX_ERROR_INIT;
    char ref[WX_CAS_REF_LEN + 1];

    memset(r, 0, sizeof(*r));
    snprintf(r->task_id, sizeof(r->task_id), "t");
    memset(r->sim_root, 'a', 64);
    r->outputs = calloc(2, sizeof(wx_output));
    r->n_outputs = 2;
    r->outputs[0].name = wx__strdup("a");
    r->outputs[0].art.size = 2;
    r->outputs[0].art.data = (uint8_t *)wx__strdup("hi");
    sha_hex("hi", 2, r->outputs[0].art.checksum);
    r->outputs[1].name = wx__strdup("b");
    r->outputs[1].art.size = len;
    sha_hex(bytes, len, r->outputs[1].art.checksum);
    assert_ok(wx_cas_put(cas, bytes, len, NULL, ref, &err), &err);
    r->outputs[1].art.ref = wx__strdup(ref);
}

static void test_resolve_cas_references(void **state)
{
    fx *f = *state;
    uint8_t *big = pattern(70000, 9);
    wx_sim_return r[2];
    wx_error err = WX_ERROR_INIT;
    uint8_t *inline_a;

    cas_replicate(f->cas, &r[0], "first", 5);
    cas_replicate(f->cas, &r[1], big, 70000);
    inline_a = r[1].outputs[0].art.data;
    assert_ok(wx__resolve_cas_references(f->cas, r, 2, SIZE_MAX, &err), &err);
    for (int i = 0; i < 2; i++) {
        const wx_artifact *b = &r[i].outputs[1].art;

        /* Loaded and still a ref (the original dropped neither and failed
         * validation). */
        assert_non_null(b->data);
        assert_non_null(b->ref);
    }
    assert_memory_equal(r[0].outputs[1].art.data, "first", 5);
    assert_memory_equal(r[1].outputs[1].art.data, big, 70000);
    /* Inline outputs are left alone. */
    assert_ptr_equal(r[1].outputs[0].art.data, inline_a);
    /* Loading again is a no-op. */
    assert_ok(wx__resolve_cas_references(f->cas, r, 2, SIZE_MAX, &err), &err);
    wx_sim_return_release(&r[0]);
    wx_sim_return_release(&r[1]);

    /* A missing object. */
    cas_replicate(f->cas, &r[0], "first", 5);
    cas_replicate(f->cas, &r[1], big, 70000);
    assert_ok(wx_cas_remove(f->cas, r[1].outputs[1].art.ref, &err), &err);
    assert_fails(wx__resolve_cas_references(f->cas, r, 2, SIZE_MAX, &err),
                 WX_ENOTFOUND, &err, "sim_returns[1].b");
    wx_sim_return_release(&r[0]);
    wx_sim_return_release(&r[1]);

    /* An object whose size is not the artifact's. */
    cas_replicate(f->cas, &r[0], "first", 5);
    r[0].outputs[1].art.size = 4;
    assert_fails(wx__resolve_cas_references(f->cas, r, 1, SIZE_MAX, &err),
                 WX_ECORRUPT, &err, "has 5 bytes, the artifact says 4");
    assert_non_null(strstr(err.message, "sim_returns[0].b"));
    wx_sim_return_release(&r[0]);

    /* More than the limit. */
    cas_replicate(f->cas, &r[0], big, 70000);
    assert_fails(wx__resolve_cas_references(f->cas, r, 1, 1000, &err),
                 WX_ETOOBIG, &err, "sim_returns[0].b");
    wx_sim_return_release(&r[0]);
    free(big);
}

/* A damaged object in a filesystem CAS is never loaded. */
static void test_resolve_cas_references_corrupt(void **state)
{
    fx *f = *state;
    wx_cas *cas = fx_fs_cas(f);
    wx_sim_return r;
    wx_error err = WX_ERROR_INIT;

    cas_replicate(cas, &r, "some bytes here", 15);
    flip_byte(object_path(f, r.outputs[1].art.ref), 3);
    assert_fails(wx__resolve_cas_references(cas, &r, 1, SIZE_MAX, &err),
                 WX_ECORRUPT, &err, "corrupt");
    assert_null(r.outputs[1].art.data);
    wx_sim_return_release(&r);
}

/* ---- check_cached ---- */

static void test_check_cached(void **state)
{
    fx *f = *state;
    wx_cas *cas = fx_fs_cas(f);
    wx_sim_return r;
    wx_error err = WX_ERROR_INIT;
    char *ref;

    cas_replicate(cas, &r, "cached bytes", 12);
    assert_ok(wx__check_cached(cas, &r, &err), &err);
    ref = r.outputs[1].art.ref;
    flip_byte(object_path(f, ref), 0);
    assert_fails(wx__check_cached(cas, &r, &err), WX_ECORRUPT, &err,
                 ref + 6);
    assert_ok(wx_cas_remove(cas, ref, &err), &err);
    assert_fails(wx__check_cached(cas, &r, &err), WX_ENOTFOUND, &err,
                 ref + 6);
    /* Inline-only results need nothing from the store. */
    wx_free(r.outputs[1].art.ref);
    r.outputs[1].art.ref = NULL;
    r.outputs[1].art.size = 0;
    memcpy(r.outputs[1].art.checksum, EMPTY_HEX, 65);
    assert_ok(wx__check_cached(cas, &r, &err), &err);
    wx_sim_return_release(&r);
}

/* ======================================================================
 * wx_env_run
 * ====================================================================== */

static void test_run_success_and_cache_hit(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1], tid[65], root[65];
    wx_task t = {0};
    wx_sim_return a, b;
    wx_error err = WX_ERROR_INIT;
    json_int_t before;

    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    make_task(&t, ref, SIM_EP, "{\"bytes\": 100, \"payload\": \"hi\"}", 17,
              NULL);
    run_ok(f, &t, &a);
    assert_false(a.cached);
    assert_int_equal(metric(&a, "attempts"), 1);
    assert_true(json_is_number(json_object_get(a.metrics, "duration_s")));
    assert_ok(wx_task_task_id(&t, tid, &err), &err);
    assert_ok(wx_task_sim_root(&t, root, &err), &err);
    assert_string_equal(a.task_id, tid);
    assert_string_equal(a.sim_root, root);
    assert_int_equal(a.n_outputs, 2);
    assert_int_equal(output_named(&a, "out")->art.size, 100);
    check_pattern(output_named(&a, "out")->art.data, 100, 17);
    assert_memory_equal(output_named(&a, "payload")->art.data, "hi", 2);
    for (size_t i = 0; i < a.n_outputs; i++)
        assert_artifact_true(f->cas, &a.outputs[i].art);

    /* The same task again: served from the cache, no worker call. */
    before = leases(f);
    run_ok(f, &t, &b);
    assert_true(b.cached);
    assert_int_equal(metric(&b, "attempts"), 0);
    assert_int_equal(leases(f), before);
    assert_string_equal(b.task_id, a.task_id);
    assert_string_equal(b.sim_root, a.sim_root);
    assert_same_outputs(&a, &b);
    assert_int_equal(health_int(f, NULL, "tasks"), 2);
    assert_int_equal(health_int(f, NULL, "cache_hits"), 1);
    assert_int_equal(health_int(f, NULL, "failures"), 0);
    wx_sim_return_release(&a);
    wx_sim_return_release(&b);

    /* Another seed is another task. */
    t.seed = 18;
    run_ok(f, &t, &a);
    assert_false(a.cached);
    check_pattern(output_named(&a, "out")->art.data, 100, 18);
    wx_sim_return_release(&a);
    wx_task_release(&t);
}

/* A cached result whose CAS object was deleted is not served: the task
 * runs again and its put re-creates the object. */
static void test_run_cache_object_removed(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    wx_task t = {0};
    wx_sim_return a, b, c;
    wx_error err = WX_ERROR_INIT;
    const wx_artifact *out;
    bool exists = true;

    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    make_task(&t, ref, SIM_EP, "{\"bytes\": 70000}", 5, NULL);
    run_ok(f, &t, &a);
    out = &output_named(&a, "out")->art;
    assert_non_null(out->ref);
    assert_int_equal(out->size, 70000);
    assert_artifact_true(f->cas, out);

    assert_ok(wx_cas_remove(f->cas, out->ref, &err), &err);
    assert_ok(wx_cas_exists(f->cas, out->ref, &exists, &err), &err);
    assert_false(exists);
    run_ok(f, &t, &b);
    assert_false(b.cached);
    assert_int_equal(metric(&b, "attempts"), 1);
    assert_same_outputs(&a, &b);
    /* Repaired: present and intact. */
    assert_artifact_true(f->cas, &output_named(&b, "out")->art);
    /* ...and cached again. */
    run_ok(f, &t, &c);
    assert_true(c.cached);
    assert_same_outputs(&a, &c);
    assert_int_equal(health_int(f, NULL, "cache_hits"), 1);
    wx_sim_return_release(&a);
    wx_sim_return_release(&b);
    wx_sim_return_release(&c);
    wx_task_release(&t);
}

/*
 * More big attachments in one reply than the streams kept for one
 * (WX__INGEST_MAX): the first ones stream, the others take the ordinary
 * way, and all of them, the same bytes, are one object.
 */
static void test_run_many_big_outputs(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1], name[16];
    wx_task t = {0};
    wx_sim_return r;
    const wx_artifact *out;

    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    make_task(&t, ref, SIM_EP,
              "{\"bytes\": 1048577, \"copies\": 10, \"payload\": \"p\"}",
              4, NULL);
    run_ok(f, &t, &r);
    assert_int_equal(r.n_outputs, 12);
    out = &output_named(&r, "out")->art;
    assert_artifact_true(fx_cas(f), out);
    for (int i = 1; i <= 10; i++) {
        snprintf(name, sizeof(name), "copy%d", i);
        assert_string_equal(output_named(&r, name)->art.ref, out->ref);
    }
    assert_int_equal(tu_count_in_dir(tu_path(f->home, "cas/sha256"), true),
                     0);
    wx_sim_return_release(&r);
    wx_task_release(&t);
}

/* The caller's work while a worker runs: it sees the worker leased. */
typedef struct step_probe {
    fx *f;
    int calls;
    json_int_t busy; /* workers leased when it ran */
} step_probe;

static void probe(void *ctx)
{
    step_probe *p = ctx;

    p->calls++;
    p->busy = health_int(p->f, "workers", "live") -
              health_int(p->f, "workers", "idle");
}

/*
 * wx_env_run() in steps (what a dispatcher lane does): begin looks up,
 * execute calls the caller's work exactly once, while the worker is
 * leased, or after the attempt when no worker ran (an unknown bundle);
 * end stores the result in the cache, so that the next begin is a hit.
 * A task begun ahead reports the duration of its execution, not of its
 * wait (0.2 s here) between the steps.
 */
static void test_run_in_steps(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    step_probe p = {.f = f};
    wx__meanwhile mw = {probe, &p};
    wx_task t = {0}, lost = {0};
    wx__env_outcome out;
    wx__env_job j;
    wx_sim_return r;
    json_t *v;
    wx_error err = WX_ERROR_INIT;

    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    make_task(&t, ref, SIM_EP, "{\"bytes\": 10}", 2, NULL);
    run_ok(f, &t, &r); /* a warm worker: its start is not the point */
    wx_sim_return_release(&r);
    t.seed = 3;
    assert_false(wx__env_begin(f->env, &t, &j, &r));
    usleep(200000);
    wx__env_execute(f->env, &j, &mw, &out, &r);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.busy, 1);
    usleep(200000);
    assert_int_equal(wx__env_end(f->env, &j, &out, &r), 0);
    check_pattern(output_named(&r, "out")->art.data, 10, 3);
    assert_true(json_real_value(json_object_get(r.metrics, "duration_s")) <
                0.19);
    wx_sim_return_release(&r);
    assert_true(wx__env_begin(f->env, &t, &j, &r));
    assert_true(r.cached);
    wx_sim_return_release(&r);

    v = tu_json("{\"bundle_ref\": \"" UNKNOWN_REF "\", \"entrypoint\": "
                "\"" SIM_EP "\", \"params\": {}, \"seed\": 1}");
    assert_ok(wx_task_from_json(&lost, v, &err), &err);
    json_decref(v);
    p.calls = 0;
    assert_false(wx__env_begin(f->env, &lost, &j, &r));
    wx__env_execute(f->env, &j, &mw, &out, &r);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.busy, 0);
    assert_int_equal(wx__env_end(f->env, &j, &out, &r), WX_ENOTFOUND);
    assert_non_null(r.error);
    wx_sim_return_release(&r);
    wx_task_release(&lost);
    wx_task_release(&t);
}

/*
 * Begin tasks t[0..n-1] (none cached), execute them as one batch with
 * the probe as the caller's work, and end them: statuses in rcs.
 */
static void run_batch(fx *f, const wx_task *t, size_t n, step_probe *p,
                      wx_sim_return *r, int *rcs)
{
    wx__env_job jobs[WX__BATCH_MAX];
    const wx__env_job *jp[WX__BATCH_MAX];
    wx__env_outcome outs[WX__BATCH_MAX];
    wx_sim_return *rp[WX__BATCH_MAX];
    wx__meanwhile mw = {probe, p};

    for (size_t i = 0; i < n; i++) {
        assert_false(wx__env_begin(f->env, &t[i], &jobs[i], &r[i]));
        jp[i] = &jobs[i];
        rp[i] = &r[i];
    }
    wx__env_execute_batch(f->env, jp, n, &mw, outs, rp);
    for (size_t i = 0; i < n; i++)
        rcs[i] = wx__env_end(f->env, &jobs[i], &outs[i], &r[i]);
}

/* Tasks t[i] = {"bytes": 10, <extra>} with seed 10 + i. */
static void make_tasks(wx_task *t, size_t n, const char *ref,
                       const char *extra)
{
    for (size_t i = 0; i < n; i++) {
        char params[128];

        snprintf(params, sizeof(params), "{\"bytes\": 10%s%s}",
                 extra ? ", " : "", extra ? extra : "");
        make_task(&t[i], ref, SIM_EP, params, 10 + (int64_t)i, NULL);
    }
}

/* Task i of make_tasks() succeeded with its own output. */
static void expect_task_ok(const wx_sim_return *r, int rc, size_t i)
{
    assert_int_equal(rc, 0);
    check_pattern(output_named(r, "out")->art.data, 10, 10 + (int64_t)i);
}

static void release_tasks(wx_task *t, wx_sim_return *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        wx_sim_return_release(&r[i]);
        wx_task_release(&t[i]);
    }
}

/*
 * A batch runs on one worker, each task its own result, the caller's
 * work once while the worker is leased; the next begin of each is a hit.
 */
static void test_batch_on_one_worker(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    step_probe p = {.f = f};
    wx_task t[6];
    wx_sim_return r[6];
    wx__env_job j;
    int rcs[6];

    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    make_tasks(t, 6, ref, NULL);
    run_batch(f, t, 6, &p, r, rcs);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.busy, 1);
    for (size_t i = 0; i < 6; i++) {
        expect_task_ok(&r[i], rcs[i], i);
        assert_int_equal(metric(&r[i], "attempts"), 1);
        wx_sim_return_release(&r[i]);
        assert_true(wx__env_begin(f->env, &t[i], &j, &r[i]));
    }
    assert_int_equal(health_int(f, "workers", "spawned"), 1);
    release_tasks(t, r, 6);
}

/*
 * The worker crashes on the third task of five: that task is retried
 * (its second attempt), the two after it, which it never reached, run
 * on a new worker as their first; with no retries the third one fails.
 */
static void test_batch_worker_crash(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    step_probe p = {.f = f};
    wx_task t[5];
    wx_sim_return r[5];
    int rcs[5];
    char once[4300];

    for (int retries = 1; retries >= 0; retries--) {
        fx_close_env(f);
        fx_set(f, WX_CONF_MAX_RETRIES, retries ? "1" : "0");
        snprintf(once, sizeof(once), "%s-%d", f->once, retries);
        fx_fake_bundle(f, ref, "--crash-at", "3", "--once-file", once, NULL);
        fx_env(f);
        make_tasks(t, 5, ref, NULL);
        run_batch(f, t, 5, &p, r, rcs);
        for (size_t i = 0; i < 5; i++) {
            bool crashed = i == 2;

            assert_int_equal(rcs[i], crashed && !retries ? WX_ECRASHED : 0);
            assert_int_equal(metric(&r[i], "attempts"),
                             crashed && retries ? 2 : 1);
            if (!rcs[i])
                expect_task_ok(&r[i], rcs[i], i);
        }
        assert_int_equal(health_int(f, "workers", "crashed"), 1);
        assert_int_equal(health_int(f, "workers", "spawned"), 2);
        release_tasks(t, r, 5);
    }
}

/* A worker takes no more of a batch than max_tasks_per_worker allows. */
static void test_batch_within_max_tasks_per_worker(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    step_probe p = {.f = f};
    wx_task t[5];
    wx_sim_return r[5];
    int rcs[5];

    fx_set(f, WX_CONF_MAX_TASKS_PER_WORKER, "2");
    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    make_tasks(t, 5, ref, NULL);
    run_batch(f, t, 5, &p, r, rcs);
    for (size_t i = 0; i < 5; i++)
        expect_task_ok(&r[i], rcs[i], i);
    /* 2 + 2 + 1 tasks. */
    assert_int_equal(health_int(f, "workers", "spawned"), 3);
    release_tasks(t, r, 5);
}

/*
 * Each task of a batch has task_timeout from the reply before it: two of
 * 1.3 s each pass a 2 s timeout, the one that hangs times out alone, and
 * the task after it runs on a new worker.
 */
static void test_batch_timeout(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    step_probe p = {.f = f};
    wx_task t[4];
    wx_sim_return r[4];
    int rcs[4];

    fx_set(f, WX_CONF_TASK_TIMEOUT, "2");
    fx_set(f, WX_CONF_MAX_RETRIES, "0");
    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    make_tasks(t, 2, ref, "\"sleep_ms\": 1300");
    make_task(&t[2], ref, SIM_EP, "{\"sleep_ms\": 10000}", 12, NULL);
    make_task(&t[3], ref, SIM_EP, "{\"bytes\": 10}", 13, NULL);
    run_batch(f, t, 4, &p, r, rcs);
    assert_int_equal(rcs[0], 0);
    assert_int_equal(rcs[1], 0);
    assert_int_equal(rcs[2], WX_ETIMEDOUT);
    assert_string_equal(r[2].error->error_type, "Timeout");
    expect_task_ok(&r[3], rcs[3], 3);
    assert_int_equal(metric(&r[3], "attempts"), 1);
    assert_int_equal(health_int(f, "workers", "spawned"), 2);
    release_tasks(t, r, 4);
}

/*
 * Requests after the first that would not fit in the batch's 16 KiB go
 * alone after it: sent at once, these 7 of 160 KB would fill even a
 * 1 MiB pipe while the worker waits for its first 1.3 MB reply to be
 * read.
 */
static void test_batch_big_requests(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    step_probe p = {.f = f};
    wx_task t[8];
    wx_sim_return r[8];
    int rcs[8];
    char *params = wx__malloc(170000);
    size_t head;

    fx_set(f, WX_CONF_TASK_TIMEOUT, "5");
    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    strcpy(params, "{\"bytes\": 1200000, \"payload\": \"");
    head = strlen(params);
    memset(params + head, 'x', 160000);
    strcpy(params + head + 160000, "\"}");
    for (size_t i = 0; i < 8; i++)
        make_task(&t[i], ref, SIM_EP, params, 10 + (int64_t)i, NULL);
    run_batch(f, t, 8, &p, r, rcs);
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(rcs[i], 0);
        assert_int_equal(output_named(&r[i], "payload")->art.size, 160000);
        assert_int_equal(output_named(&r[i], "out")->art.size, 1200000);
        assert_int_equal(metric(&r[i], "attempts"), 1);
    }
    wx_free(params);
    release_tasks(t, r, 8);
}

/*
 * An output of more than 1 MiB goes to the filesystem CAS while it
 * arrives (warmexec/1) or after it is decoded (compat): the same object,
 * intact, named by its SHA-256, and no temporary file is left behind.
 */
static void test_run_big_output_stored(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1], first[WX_CAS_REF_LEN + 1];
    wx_task t = {0};
    wx_sim_return r;
    const wx_artifact *out;
    size_t len = 0;
    uint8_t *data;

    fx_fake_bundle(f, ref, NULL);
    f->no_cache = true;
    for (int attachments = 1; attachments >= 0; attachments--) {
        fx_set(f, WX_CONF_ATTACHMENTS, attachments ? "true" : "false");
        wx_env_close(f->env);
        fx_env(f);
        /* A small attachment after the big one ("payload"). */
        make_task(&t, ref, SIM_EP,
                  "{\"bytes\": 2097153, \"payload\": \"hi\"}", 7, NULL);
        run_ok(f, &t, &r);
        assert_int_equal(output_named(&r, "payload")->art.size, 2);
        out = &output_named(&r, "out")->art;
        assert_non_null(out->ref);
        assert_int_equal(out->size, 2097153);
        assert_artifact_true(fx_cas(f), out);
        data = artifact_bytes(fx_cas(f), out, &len);
        check_pattern(data, len, 7);
        wx_free(data);
        if (attachments)
            snprintf(first, sizeof(first), "%s", out->ref);
        else
            assert_string_equal(out->ref, first);
        assert_int_equal(
            tu_count_in_dir(tu_path(f->home, "cas/sha256"), true), 0);
        wx_sim_return_release(&r);
        wx_task_release(&t);
    }
}

/* The same with a damaged object in the filesystem CAS. */
static void test_run_cache_object_corrupt(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    wx_task t = {0};
    wx_sim_return a, b, c;
    wx_error err = WX_ERROR_INIT;
    const char *obj;

    fx_fake_bundle(f, ref, NULL);
    fx_env(f); /* its own CAS: home/cas */
    make_task(&t, ref, SIM_EP, "{\"bytes\": 70000}", 6, NULL);
    run_ok(f, &t, &a);
    obj = object_path(f, output_named(&a, "out")->art.ref);
    assert_artifact_true(fx_cas(f), &output_named(&a, "out")->art);
    flip_byte(obj, 1234);
    assert_fails(wx_cas_verify(fx_cas(f), output_named(&a, "out")->art.ref,
                               &err),
                 WX_ECORRUPT, &err, "corrupt");

    run_ok(f, &t, &b);
    assert_false(b.cached);
    assert_int_equal(metric(&b, "attempts"), 1);
    assert_same_outputs(&a, &b);
    assert_artifact_true(fx_cas(f), &output_named(&b, "out")->art);
    run_ok(f, &t, &c);
    assert_true(c.cached);
    wx_sim_return_release(&a);
    wx_sim_return_release(&b);
    wx_sim_return_release(&c);
    wx_task_release(&t);
}

static void test_run_model_error(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1], tid[65];
    wx_task t = {0};
    wx_sim_return r;
    wx_error err = WX_ERROR_INIT;
    json_t *d;

    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    make_task(&t, ref, SIM_EP, "{\"fail\": \"alpha must be positive\"}", 1,
              NULL);
    assert_int_equal(run(f, &t, &r), WX_EMODEL);
    assert_string_equal(r.error->error_type, "ModelError");
    assert_non_null(strstr(r.error->message, "alpha must be positive"));
    assert_false(r.error->retryable);
    assert_int_equal(r.n_outputs, 0);
    assert_false(r.cached);
    /* Not retried. */
    assert_int_equal(metric(&r, "attempts"), 1);
    assert_ok(wx_task_task_id(&t, tid, &err), &err);
    assert_string_equal(r.task_id, tid);
    d = details_of(f->cas, &r);
    assert_string_equal(jstr(d, "type"), "ModelError");
    assert_non_null(strstr(jstr(d, "error"), "alpha must be positive"));
    assert_string_equal(jstr(d, "bundle_ref"), ref);
    assert_string_equal(jstr(d, "entrypoint"), SIM_EP);
    assert_true(jstr(d, "worker")[0] != '\0');
    assert_string_equal(jstr(d, "traceback"),
                        "Traceback: fake_worker execute");
    assert_int_equal(json_integer_value(json_object_get(d, "attempts")), 1);
    json_decref(d);
    wx_sim_return_release(&r);

    /* Failures are never cached: the next run executes again, on the same
     * warm worker (a model error does not cost the worker). */
    assert_int_equal(run(f, &t, &r), WX_EMODEL);
    assert_false(r.cached);
    assert_int_equal(metric(&r, "attempts"), 1);
    assert_int_equal(health_int(f, "workers", "spawned"), 1);
    assert_int_equal(health_int(f, NULL, "failures"), 2);
    wx_sim_return_release(&r);
    wx_task_release(&t);

    /* MemoryError: OutOfMemory, not retried. */
    make_task(&t, ref, SIM_EP,
              "{\"fail\": \"cannot allocate\", \"fail_type\": "
              "\"MemoryError\"}",
              1, NULL);
    assert_int_equal(run(f, &t, &r), WX_EOOM);
    assert_string_equal(r.error->error_type, "OutOfMemory");
    assert_false(r.error->retryable);
    assert_int_equal(metric(&r, "attempts"), 1);
    wx_sim_return_release(&r);
    wx_task_release(&t);
}

/* With a small inline limit, error details go to the CAS. */
static void test_run_error_details_in_cas(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    wx_task t = {0};
    wx_sim_return r;
    json_t *d;

    fx_set(f, WX_CONF_INLINE_MAX_BYTES, "100");
    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    make_task(&t, ref, SIM_EP, "{\"fail\": \"too big to inline\"}", 1, NULL);
    assert_int_equal(run(f, &t, &r), WX_EMODEL);
    assert_non_null(r.error_details->ref);
    assert_true(r.error_details->size > 100);
    d = details_of(f->cas, &r); /* real size and checksum */
    assert_non_null(strstr(jstr(d, "error"), "too big to inline"));
    json_decref(d);
    wx_sim_return_release(&r);
    wx_task_release(&t);
}

/* A worker that dies on its first task: retried on a fresh worker. */
static void test_run_crash_retried(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    wx_task t = {0};
    wx_sim_return r;

    fx_fake_bundle(f, ref, "--crash-at", "1", "--once-file", f->once, NULL);
    fx_env(f);
    make_task(&t, ref, SIM_EP, "{\"bytes\": 70000}", 2, NULL);
    run_ok(f, &t, &r);
    assert_int_equal(metric(&r, "attempts"), 2);
    assert_false(r.cached);
    {
        size_t len = 0;
        uint8_t *data = artifact_bytes(f->cas, &output_named(&r, "out")->art,
                                       &len);

        assert_int_equal(len, 70000);
        check_pattern(data, len, 2);
        wx_free(data);
    }
    assert_artifact_true(f->cas, &output_named(&r, "out")->art);
    assert_int_equal(health_int(f, "workers", "crashed"), 1);
    assert_int_equal(health_int(f, "workers", "spawned"), 2);
    assert_int_equal(health_int(f, NULL, "failures"), 0);
    wx_sim_return_release(&r);
    wx_task_release(&t);
}

/* A worker that dies every time: WorkerCrashed after 1 + max_retries
 * attempts, with its exit status and stderr tail. */
static void test_run_crash_always(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    wx_task t = {0};
    wx_sim_return r;
    json_t *d;

    fx_set(f, WX_CONF_MAX_RETRIES, "2");
    fx_fake_bundle(f, ref, "--crash-at", "1", NULL);
    fx_env(f);
    make_task(&t, ref, SIM_EP, "{\"bytes\": 10}", 2, NULL);
    assert_int_equal(run(f, &t, &r), WX_ECRASHED);
    assert_string_equal(r.error->error_type, "WorkerCrashed");
    assert_true(r.error->retryable);
    assert_int_equal(metric(&r, "attempts"), 3);
    d = details_of(f->cas, &r);
    assert_string_equal(jstr(d, "type"), "WorkerCrashed");
    assert_non_null(strstr(jstr(d, "status"), "signal 9"));
    assert_non_null(strstr(jstr(d, "stderr_tail"),
                           "fake_worker: crashing (sigkill) at execute 1"));
    assert_int_equal(json_integer_value(json_object_get(d, "attempts")), 3);
    json_decref(d);
    assert_int_equal(health_int(f, "workers", "crashed"), 3);
    assert_int_equal(health_int(f, "workers", "live"), 0);
    wx_sim_return_release(&r);

    /* max_retries 0: one attempt. */
    fx_close_env(f);
    fx_set(f, WX_CONF_MAX_RETRIES, "0");
    fx_env(f);
    assert_int_equal(run(f, &t, &r), WX_ECRASHED);
    assert_int_equal(metric(&r, "attempts"), 1);
    wx_sim_return_release(&r);
    wx_task_release(&t);
}

static void test_run_timeout(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    wx_task t = {0};
    wx_sim_return r;
    int64_t start, elapsed;
    json_t *d;

    fx_set(f, WX_CONF_TASK_TIMEOUT, "1");
    fx_set(f, WX_CONF_MAX_RETRIES, "1");
    fx_fake_bundle(f, ref, "--hang-execute", NULL);
    fx_env(f);
    make_task(&t, ref, SIM_EP, "{}", 2, NULL);
    start = wx__now_ms();
    assert_int_equal(run(f, &t, &r), WX_ETIMEDOUT);
    elapsed = wx__now_ms() - start;
    assert_string_equal(r.error->error_type, "Timeout");
    assert_true(r.error->retryable);
    assert_int_equal(metric(&r, "attempts"), 2);
    if (elapsed < 2000 - 50 || elapsed > 2000 + MARGIN_MS)
        fail_msg("two 1 s timeouts took %lld ms", (long long)elapsed);
    d = details_of(f->cas, &r);
    assert_non_null(strstr(jstr(d, "stderr_tail"),
                           "fake_worker: hanging in execute"));
    json_decref(d);
    assert_int_equal(health_int(f, "workers", "timed_out"), 2);
    wx_sim_return_release(&r);
    wx_task_release(&t);
}

/* Failures before any worker: bundle not found, corrupt, cannot run. */
static void test_run_bundle_failures(void **state)
{
    fx *f = *state;
    char bad[WX_DIGEST_LEN + 1], dead[WX_DIGEST_LEN + 1];
    wx_task t = {0};
    wx_sim_return r;
    json_t *d;

    fx_store_raw(f, fx_bundle_dir(f, "{\"runner\": \"cobol\"}"), bad);
    fx_fake_bundle(f, dead, "--exit-before-ready", NULL);
    fx_env(f);

    make_task(&t, UNKNOWN_REF, SIM_EP, "{}", 1, NULL);
    assert_int_equal(run(f, &t, &r), WX_ENOTFOUND);
    assert_string_equal(r.error->error_type, "BundleNotFound");
    assert_false(r.error->retryable);
    assert_non_null(strstr(r.error->message, HEX64("0f0f")));
    assert_int_equal(metric(&r, "attempts"), 0);
    d = details_of(f->cas, &r);
    assert_string_equal(jstr(d, "bundle_ref"), UNKNOWN_REF);
    json_decref(d);
    wx_sim_return_release(&r);
    wx_task_release(&t);

    make_task(&t, bad, SIM_EP, "{}", 1, NULL);
    assert_int_equal(run(f, &t, &r), WX_ESTART);
    assert_string_equal(r.error->error_type, "WorkerStartFailed");
    assert_false(r.error->retryable);
    assert_int_equal(metric(&r, "attempts"), 0);
    wx_sim_return_release(&r);
    wx_task_release(&t);

    /* The runner exits before ready: not retried, its stderr kept. */
    make_task(&t, dead, SIM_EP, "{}", 1, NULL);
    assert_int_equal(run(f, &t, &r), WX_ESTART);
    assert_string_equal(r.error->error_type, "WorkerStartFailed");
    assert_int_equal(metric(&r, "attempts"), 1);
    d = details_of(f->cas, &r);
    assert_non_null(strstr(jstr(d, "stderr_tail"), "cannot load the model"));
    json_decref(d);
    wx_sim_return_release(&r);
    wx_task_release(&t);
    assert_int_equal(health_int(f, NULL, "failures"), 3);
    assert_int_equal(health_int(f, NULL, "cache_hits"), 0);
}

/* Requested outputs: a subset is returned; the cache holds them all. */
static void test_run_requested_outputs(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1], tid[65];
    wx_task t = {0};
    wx_sim_return r;
    wx_error err = WX_ERROR_INIT;

    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    make_task(&t, ref, SIM_EP, "{\"bytes\": 10, \"payload\": \"p\"}", 3,
              "[\"payload\"]");
    run_ok(f, &t, &r);
    assert_false(r.cached);
    assert_int_equal(r.n_outputs, 1);
    assert_string_equal(r.outputs[0].name, "payload");
    assert_ok(wx_task_task_id(&t, tid, &err), &err);
    assert_string_equal(r.task_id, tid);
    wx_sim_return_release(&r);
    wx_task_release(&t);

    /* Same simulation, another output: a cache hit. */
    make_task(&t, ref, SIM_EP, "{\"bytes\": 10, \"payload\": \"p\"}", 3,
              "[\"out\"]");
    run_ok(f, &t, &r);
    assert_true(r.cached);
    assert_int_equal(r.n_outputs, 1);
    assert_string_equal(r.outputs[0].name, "out");
    assert_ok(wx_task_task_id(&t, tid, &err), &err);
    assert_string_equal(r.task_id, tid);
    wx_sim_return_release(&r);
    wx_task_release(&t);

    /* An output the model does not produce. */
    make_task(&t, ref, SIM_EP, "{\"bytes\": 10}", 4, "[\"nope\", \"out\"]");
    assert_int_equal(run(f, &t, &r), WX_EMODEL);
    assert_string_equal(r.error->error_type, "ModelError");
    assert_non_null(strstr(r.error->message, "'nope'"));
    wx_sim_return_release(&r);
    wx_task_release(&t);
}

/* The CAS cannot store: StorageError, retried, then reported. */
static void test_run_storage_error(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    wx_task t = {0};
    wx_sim_return r;

    fx_set(f, WX_CONF_MAX_RETRIES, "1");
    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    break_fs_cas(tu_path(f->home, "cas"));
    make_task(&t, ref, SIM_EP, "{\"bytes\": 70000}", 1, NULL);
    assert_int_equal(run(f, &t, &r), WX_EIO);
    assert_string_equal(r.error->error_type, "StorageError");
    assert_true(r.error->retryable);
    assert_non_null(strstr(r.error->message, "cannot store output 'out'"));
    assert_int_equal(metric(&r, "attempts"), 2);
    wx_sim_return_release(&r);
    /* Small outputs do not need the store. */
    wx_task_release(&t);
    make_task(&t, ref, SIM_EP, "{\"bytes\": 100}", 1, NULL);
    run_ok(f, &t, &r);
    wx_sim_return_release(&r);
    wx_task_release(&t);
}

static void test_run_no_cache(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    wx_task t = {0};
    wx_sim_return r;
    json_t *h;

    f->no_cache = true;
    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    make_task(&t, ref, SIM_EP, "{\"bytes\": 10}", 1, NULL);
    for (int i = 0; i < 3; i++) {
        run_ok(f, &t, &r);
        assert_false(r.cached);
        assert_int_equal(metric(&r, "attempts"), 1);
        wx_sim_return_release(&r);
    }
    h = health(f);
    assert_true(json_is_false(json_object_get(h, "cache")));
    assert_int_equal(json_integer_value(json_object_get(h, "cache_hits")), 0);
    json_decref(h);
    wx_task_release(&t);
}

/*
 * A runner that reports MemoryError: OutOfMemory, not retried, and the
 * worker is retired (docs/pool.md: "An allocation failure may have left
 * the process damaged"), whether the error comes as a JSON-RPC error
 * (warmexec/1) or in the original's in-band form (compat).
 */
static int aggregate(fx *f, const wx_agg_task *a, wx_agg_return *ret,
                     wx_fault *fault, wx_error *err);

static void memory_error_retires(fx *f, bool attachments)
{
    static const char wire[] =
        "def wire(entrypoint, params, seed):\n"
        "    if params.get('oom'):\n"
        "        raise MemoryError('cannot allocate the grid')\n"
        "    return {'out': b'ok'}\n";
    static const char target[] =
        "def boom(sim_returns, target_data):\n"
        "    raise MemoryError('cannot allocate the losses')\n";
    char ref[WX_DIGEST_LEN + 1], path[4400];
    const char *dir = fx_bundle_dir(f, NULL);
    wx_task t = {0};
    wx_sim_return r;
    wx_agg_task a = {0};
    wx_agg_return ret;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;

    snprintf(path, sizeof(path), "%s/wire.py", dir);
    write_file(path, wire);
    snprintf(path, sizeof(path), "%s/oom", dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/oom/target.py", dir);
    write_file(path, target);
    fx_add(f, dir, ref);
    fx_set(f, WX_CONF_ATTACHMENTS, attachments ? "true" : "false");
    fx_env(f);
    make_task(&t, ref, "m.x/baseline", "{\"oom\": true}", 1, NULL);
    assert_int_equal(run(f, &t, &r), WX_EOOM);
    assert_string_equal(r.error->error_type, "OutOfMemory");
    assert_non_null(strstr(r.error->message, "cannot allocate the grid"));
    assert_false(r.error->retryable);
    assert_int_equal(metric(&r, "attempts"), 1);
    wx_sim_return_release(&r);
    wx_task_release(&t);
    if (health_int(f, "workers", "live") != 0)
        fail_msg("the worker that reported MemoryError (%s) is still alive",
                 attachments ? "JSON-RPC error" : "in-band");
    make_task(&t, ref, "m.x/baseline", "{}", 1, NULL);
    run_ok(f, &t, &r);
    assert_int_equal(health_int(f, "workers", "spawned"), 2);

    /* The same for a target. */
    make_agg(&a, ref, "oom.target:boom", &r, 1, NULL);
    assert_fails(aggregate(f, &a, &ret, &fault, &err), WX_EOOM, &err,
                 "cannot allocate the losses");
    assert_non_null(fault.error_type);
    assert_string_equal(fault.error_type, "OutOfMemory");
    assert_false(fault.retryable);
    if (health_int(f, "workers", "live") != 0)
        fail_msg("the worker whose target reported MemoryError (%s) is still "
                 "alive",
                 attachments ? "JSON-RPC error" : "in-band");
    wx_agg_task_release(&a);
    wx_fault_release(&fault);
    wx_sim_return_release(&r);
    wx_task_release(&t);
}

static void test_run_memory_error_rpc(void **state)
{
    memory_error_retires(*state, true);
}

static void test_run_memory_error_inband(void **state)
{
    memory_error_retires(*state, false);
}

/* A runner that speaks only the original protocol (base64 artifacts). */
static void test_run_compat_worker(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    wx_task t = {0};
    wx_sim_return r;
    size_t len = 0;
    uint8_t *data;

    fx_fake_bundle(f, ref, "--compat", NULL);
    fx_env(f);
    make_task(&t, ref, SIM_EP, "{\"bytes\": 70000, \"payload\": \"\"}", 9,
              NULL);
    run_ok(f, &t, &r);
    assert_int_equal(r.n_outputs, 2);
    data = artifact_bytes(f->cas, &output_named(&r, "out")->art, &len);
    assert_int_equal(len, 70000);
    check_pattern(data, len, 9);
    wx_free(data);
    assert_artifact_true(f->cas, &output_named(&r, "out")->art);
    assert_int_equal(output_named(&r, "payload")->art.size, 0);
    assert_string_equal(output_named(&r, "payload")->art.checksum, EMPTY_HEX);
    wx_sim_return_release(&r);
    wx_task_release(&t);
}

/* Threads share one environment (DESIGN.md 2.1). */
typedef struct worker_arg {
    fx *f;
    const char *ref;
    int t;
    int failures;
} worker_arg;

static void *run_many(void *p)
{
    worker_arg *w = p;

    for (int i = 0; i < 10; i++) {
        char params[64];
        wx_task t = {0};
        wx_sim_return r;
        const wx_output *o;
        int64_t seed = w->t * 100 + i;

        snprintf(params, sizeof(params), "{\"bytes\": %d}",
                 i % 2 ? 70000 : 100);
        make_task(&t, w->ref, SIM_EP, params, seed, NULL);
        if (wx_env_run(w->f->env, &t, &r) != 0 || r.n_outputs != 1)
            w->failures++;
        else {
            o = &r.outputs[0];
            if (o->art.size != (i % 2 ? 70000u : 100u) ||
                (i % 2) != (o->art.ref != NULL))
                w->failures++;
        }
        wx_sim_return_release(&r);
        wx_task_release(&t);
    }
    return NULL;
}

static void test_run_threads(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    pthread_t th[4];
    worker_arg args[4];

    fx_set(f, WX_CONF_JOBS, "2");
    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    for (int i = 0; i < 4; i++) {
        args[i] = (worker_arg){f, ref, i, 0};
        assert_int_equal(pthread_create(&th[i], NULL, run_many, &args[i]),
                         0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    assert_int_equal(health_int(f, NULL, "tasks"), 40);
    assert_int_equal(health_int(f, NULL, "failures"), 0);
    assert_true(health_int(f, "workers", "spawned") <= 2);
}

/* The native and Python SIR examples through the environment. */
static void test_run_sir(void **state)
{
    fx *f = *state;
    char native[WX_DIGEST_LEN + 1], python[WX_DIGEST_LEN + 1];
    wx_task tn = {0}, tp = {0};
    wx_sim_return a, b, c;
    const wx_artifact *inc;

    fx_add(f, WX_SIR_BUNDLE, native);
    fx_add(f, WX_SIR_PYTHON_BUNDLE, python);
    fx_env(f);
    make_task(&tn, native, SIR_EP, SIR_PARAMS, 1, NULL);
    make_task(&tp, python, SIR_EP, SIR_PARAMS, 1, NULL);
    run_ok(f, &tn, &a);
    assert_int_equal(a.n_outputs, 2);
    inc = &output_named(&a, "incidence")->art;
    assert_true(inc->size > 14);
    assert_memory_equal(inc->data, "day,incidence\n", 14);
    assert_non_null(output_named(&a, "prevalence"));
    for (size_t i = 0; i < a.n_outputs; i++)
        assert_artifact_true(f->cas, &a.outputs[i].art);
    run_ok(f, &tn, &b);
    assert_true(b.cached);
    assert_int_equal(metric(&b, "attempts"), 0);
    assert_same_outputs(&a, &b);
    /* The Python model writes the same bytes. */
    run_ok(f, &tp, &c);
    assert_false(c.cached);
    assert_same_outputs(&a, &c);
    assert_string_not_equal(a.sim_root, c.sim_root); /* another bundle */
    wx_sim_return_release(&a);
    wx_sim_return_release(&b);
    wx_sim_return_release(&c);
    wx_task_release(&tn);
    wx_task_release(&tp);

    /* A model error names the parameter. */
    make_task(&tn, native, SIR_EP, "{\"beta\": 0.3, \"gamma\": 1.5}", 1,
              NULL);
    assert_int_equal(run(f, &tn, &a), WX_EMODEL);
    assert_string_equal(a.error->error_type, "ModelError");
    assert_non_null(strstr(a.error->message, "gamma"));
    assert_int_equal(metric(&a, "attempts"), 1);
    wx_sim_return_release(&a);
    wx_task_release(&tn);
}

/* ======================================================================
 * wx_env_run_aggregation
 * ====================================================================== */

/* Run `n` replicates (seeds 1..n) of `params`. */
static wx_sim_return *run_replicates(fx *f, const char *ref,
                                     const char *entrypoint,
                                     const char *params, size_t n)
{
    wx_sim_return *r = calloc(n, sizeof(*r));

    for (size_t i = 0; i < n; i++) {
        wx_task t = {0};

        make_task(&t, ref, entrypoint, params, (int64_t)i + 1, NULL);
        run_ok(f, &t, &r[i]);
        wx_task_release(&t);
    }
    return r;
}

static void free_results(wx_sim_return *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wx_sim_return_release(&r[i]);
    free(r);
}

static int aggregate(fx *f, const wx_agg_task *a, wx_agg_return *ret,
                     wx_fault *fault, wx_error *err)
{
    wx_fault_release(fault);
    return wx_env_run_aggregation(f->env, a, ret, fault, err);
}

/* 10 replicates whose outputs are all in the CAS (the original failed
 * here before calling the evaluator). */
/*
 * The caller's work during an aggregation runs exactly once: while the
 * worker aggregates, or after a cache hit, when no worker ran.
 */
static void test_aggregation_with_meanwhile(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    step_probe p = {.f = f};
    wx__meanwhile mw = {probe, &p};
    wx_sim_return *reps;
    wx_agg_task a = {0};
    wx_agg_return ret;
    wx_error err = WX_ERROR_INIT;

    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    reps = run_replicates(f, ref, SIM_EP, "{\"bytes\": 10}", 3);
    make_agg(&a, ref, "targets.t:loss", reps, 3, NULL);
    assert_ok(wx__env_run_aggregation(f->env, &a, &mw, &ret, NULL, &err),
              &err);
    assert_true(ret.loss == 3.0);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.busy, 1);
    wx_agg_return_release(&ret);
    p.calls = 0;
    assert_ok(wx__env_run_aggregation(f->env, &a, &mw, &ret, NULL, &err),
              &err);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.busy, 0);
    wx_agg_return_release(&ret);
    wx_agg_task_release(&a);
    free_results(reps, 3);
}

static void test_aggregation_over_cas_outputs(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1], id[WX_AGG_ID_LEN + 1], full[65];
    wx_sim_return *reps, failed;
    wx_agg_task a = {0};
    wx_agg_return ret, again;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;
    json_t *sums;
    json_int_t before;

    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    reps = run_replicates(f, ref, SIM_EP, "{\"bytes\": 70000}", 10);
    for (size_t i = 0; i < 10; i++) {
        const wx_artifact *o = &output_named(&reps[i], "out")->art;

        assert_non_null(o->ref);
        assert_int_equal(o->size, 70000);
    }
    make_agg(&a, ref, "targets.t:loss", reps, 10, NULL);
    assert_ok(aggregate(f, &a, &ret, &fault, &err), &err);
    assert_true(ret.loss == 10.0);
    assert_int_equal(ret.n_replicates, 10);
    assert_ok(wx_agg_task_id(&a, id, full, &err), &err);
    assert_string_equal(ret.aggregation_id, id);
    assert_ok(wx_agg_return_validate(&ret, &err), &err);
    /* The evaluator received every stored object's exact bytes. */
    sums = json_object_get(ret.diagnostics, "sha256");
    assert_int_equal(json_array_size(sums), 10);
    for (size_t i = 0; i < 10; i++) {
        const wx_artifact *o = &output_named(&reps[i], "out")->art;
        size_t len = 0;
        uint8_t *data = artifact_bytes(f->cas, o, &len);
        char hex[65];

        sha_hex(data, len, hex);
        wx_free(data);
        assert_string_equal(json_string_value(json_array_get(sums, i)), hex);
        assert_string_equal(hex, o->checksum);
        /* The task's replicates are not modified (nothing loaded). */
        assert_null(output_named(&a.sim_returns[i], "out")->art.data);
    }

    /* The same aggregation again: from the cache, no worker call. */
    before = leases(f);
    assert_ok(aggregate(f, &a, &again, &fault, &err), &err);
    assert_int_equal(leases(f), before);
    assert_true(again.loss == ret.loss);
    assert_string_equal(again.aggregation_id, id);
    assert_int_equal(again.n_replicates, 10);
    {
        char *x = tu_canon(ret.diagnostics), *y = tu_canon(again.diagnostics);

        assert_string_equal(x, y);
        wx_free(x);
        wx_free(y);
    }
    wx_agg_return_release(&ret);
    wx_agg_return_release(&again);
    wx_agg_task_release(&a);

    /* A failed replicate is passed along (with its error flag) rather
     * than dropped. */
    {
        wx_task t = {0};
        wx_sim_return all[11];

        make_task(&t, ref, SIM_EP, "{\"fail\": \"no\"}", 11, NULL);
        assert_int_equal(run(f, &t, &failed), WX_EMODEL);
        wx_task_release(&t);
        memcpy(all, reps, 10 * sizeof(*all));
        all[10] = failed;
        make_agg(&a, ref, "targets.t:loss", all, 11, NULL);
        assert_ok(aggregate(f, &a, &ret, &fault, &err), &err);
        assert_true(ret.loss == 11.0);
        assert_int_equal(ret.n_replicates, 11);
        assert_int_equal(
            json_array_size(json_object_get(ret.diagnostics, "sha256")), 10);
        wx_agg_return_release(&ret);
        wx_agg_task_release(&a);
        wx_sim_return_release(&failed);
    }
    free_results(reps, 10);
    wx_fault_release(&fault);
}

/* A replicate's stored output is gone: StorageError in the fault. */
static void test_aggregation_missing_object(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    wx_sim_return *reps;
    wx_agg_task a = {0};
    wx_agg_return ret;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;

    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    reps = run_replicates(f, ref, SIM_EP, "{\"bytes\": 70000}", 3);
    make_agg(&a, ref, "targets.t:loss", reps, 3, NULL);
    assert_ok(wx_cas_remove(f->cas, output_named(&reps[1], "out")->art.ref,
                            &err),
              &err);
    assert_fails(aggregate(f, &a, &ret, &fault, &err), WX_ENOTFOUND, &err,
                 "sim_returns[1].out");
    assert_non_null(fault.error_type);
    assert_string_equal(fault.error_type, "StorageError");
    assert_true(fault.retryable);
    assert_null(ret.diagnostics);
    wx_agg_task_release(&a);
    free_results(reps, 3);
    wx_fault_release(&fault);
}

/* SIR: the loss over CAS-stored outputs equals the loss over inline ones. */
static void test_aggregation_sir_cas_equals_inline(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1], id[WX_AGG_ID_LEN + 1];
    wx_sim_return *stored, *inlined;
    wx_agg_task a = {0}, b = {0};
    wx_agg_return ra, rb, again;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;
    json_t *per;
    json_int_t before;

    /* Everything above 100 bytes in the CAS. */
    fx_set(f, WX_CONF_INLINE_MAX_BYTES, "100");
    fx_add(f, WX_SIR_BUNDLE, ref);
    fx_env(f);
    stored = run_replicates(f, ref, SIR_EP, SIR_PARAMS, 10);
    for (size_t i = 0; i < 10; i++)
        for (size_t k = 0; k < stored[i].n_outputs; k++) {
            assert_non_null(stored[i].outputs[k].art.ref);
            assert_true(stored[i].outputs[k].art.size > 100);
        }
    make_agg(&a, ref, MSE, stored, 10, NULL);
    assert_ok(aggregate(f, &a, &ra, &fault, &err), &err);
    assert_true(isfinite(ra.loss));
    assert_true(ra.loss >= 0.0);
    assert_int_equal(ra.n_replicates, 10);
    assert_ok(wx_agg_task_id(&a, id, NULL, &err), &err);
    assert_string_equal(ra.aggregation_id, id);
    assert_string_equal(jstr(ra.diagnostics, "target"), "incidence_mse");
    assert_int_equal(json_integer_value(
                         json_object_get(ra.diagnostics, "n_replicates")),
                     10);
    per = json_object_get(ra.diagnostics, "per_replicate_losses");
    if (per)
        assert_int_equal(json_array_size(per), 10);

    before = leases(f);
    assert_ok(aggregate(f, &a, &again, &fault, &err), &err);
    assert_int_equal(leases(f), before);
    assert_true(again.loss == ra.loss);
    wx_agg_return_release(&again);

    /* The same replicates with every output inline: another environment
     * (its own home, the default threshold, no cache). */
    fx_close_env(f);
    {
        char *home2 = tu_tempdir();
        char ref2[WX_DIGEST_LEN + 1];
        wx_bundles *bundles2 = NULL;
        wx_cas *cas2 = NULL;
        wx_env *env2 = NULL;
        wx_env_options o = {0};
        wx_env *keep = NULL;

        fx_set(f, WX_CONF_HOME, home2);
        fx_set(f, WX_CONF_INLINE_MAX_BYTES, "64000");
        assert_ok(wx_bundles_open(home2, &bundles2, &err), &err);
        assert_ok(wx_bundles_add(bundles2, WX_SIR_BUNDLE, ref2, &err), &err);
        assert_string_equal(ref2, ref);
        assert_ok(wx_cas_open_memory(&cas2, &err), &err);
        o.cas = cas2;
        o.bundles = bundles2;
        o.no_cache = true;
        assert_ok(wx_env_open(f->cfg, &o, &env2, &err), &err);
        keep = f->env;
        f->env = env2;
        inlined = run_replicates(f, ref, SIR_EP, SIR_PARAMS, 10);
        for (size_t i = 0; i < 10; i++) {
            assert_string_equal(inlined[i].sim_root, stored[i].sim_root);
            for (size_t k = 0; k < inlined[i].n_outputs; k++) {
                assert_null(inlined[i].outputs[k].art.ref);
                assert_string_equal(inlined[i].outputs[k].art.checksum,
                                    stored[i].outputs[k].art.checksum);
            }
        }
        make_agg(&b, ref, MSE, inlined, 10, NULL);
        assert_ok(aggregate(f, &b, &rb, &fault, &err), &err);
        assert_true(rb.loss == ra.loss);
        assert_string_equal(rb.aggregation_id, ra.aggregation_id);
        wx_agg_return_release(&rb);
        f->env = keep;
        wx_env_close(env2);
        wx_cas_close(cas2);
        wx_bundles_close(bundles2);
        fx_set(f, WX_CONF_HOME, f->home);
        tu_rmtree(home2);
        free(home2);
    }
    wx_agg_return_release(&ra);
    wx_agg_task_release(&a);
    wx_agg_task_release(&b);
    free_results(stored, 10);
    free_results(inlined, 10);
    wx_fault_release(&fault);
}

/* A target that fails: ModelError in the fault, the worker kept. */
static void test_aggregation_failing_target(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    wx_sim_return *reps;
    wx_agg_task a = {0};
    wx_agg_return ret;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;

    fx_add(f, WX_SIR_BUNDLE, ref);
    fx_env(f);
    /* 50 days of incidence; the observed data has 120. */
    reps = run_replicates(f, ref, SIR_EP,
                          "{\"beta\": 0.3, \"gamma\": 0.1, \"days\": 50}", 2);
    make_agg(&a, ref, MSE, reps, 2, NULL);
    assert_fails(aggregate(f, &a, &ret, &fault, &err), WX_EMODEL, &err,
                 "50 days");
    assert_non_null(fault.error_type);
    assert_string_equal(fault.error_type, "ModelError");
    assert_false(fault.retryable);
    assert_true(fault.worker_id[0] != '\0');
    assert_null(ret.diagnostics);
    /* Not cached, and the worker stays warm. */
    assert_fails(aggregate(f, &a, &ret, &fault, &err), WX_EMODEL, &err,
                 "50 days");
    assert_int_equal(health_int(f, "workers", "crashed"), 0);
    assert_int_equal(health_int(f, "workers", "spawned"), 1);
    wx_agg_task_release(&a);

    /* A target the bundle does not have. */
    make_agg(&a, ref, "targets.incidence:nope", reps, 2, NULL);
    assert_int_not_equal(aggregate(f, &a, &ret, &fault, &err), 0);
    assert_non_null(fault.error_type);
    assert_string_equal(fault.error_type, "ModelError");
    wx_agg_task_release(&a);
    free_results(reps, 2);
    wx_fault_release(&fault);
}

/* run() and run_aggregation() report the same kind of failure with the
 * same error type and retryability (the original raised in one and
 * returned an error in the other). */
static void test_one_error_semantics(void **state)
{
    fx *f = *state;
    char bad[WX_DIGEST_LEN + 1], dead[WX_DIGEST_LEN + 1];
    char corrupt[WX_DIGEST_LEN + 1], path[4400];
    const char *refs[4];
    char sr_json[512], hex[65];
    wx_sim_return sr;
    wx_error err = WX_ERROR_INIT;
    json_t *v;
    FILE *fp;

    fx_store_raw(f, fx_bundle_dir(f, "{\"runner\": 7}"), bad);
    fx_fake_bundle(f, dead, "--exit-before-ready", NULL);
    fx_fake_bundle(f, corrupt, "--compat", NULL);
    snprintf(path, sizeof(path), "%s/bundles/sha256/%s/README", f->home,
             corrupt + 7);
    assert_int_equal(chmod(path, 0644), 0);
    fp = fopen(path, "a");
    fputs("x", fp);
    fclose(fp);
    fx_env(f);
    refs[0] = UNKNOWN_REF;
    refs[1] = bad;
    refs[2] = dead;
    refs[3] = corrupt;

    /* One inline replicate to aggregate. */
    sha_hex("hi", 2, hex);
    snprintf(sr_json, sizeof(sr_json),
             "{\"task_id\": \"t\", \"sim_root\": \"%s\", \"outputs\": "
             "{\"o\": {\"size\": 2, \"checksum\": \"%s\", \"inline\": "
             "\"aGk=\"}}}",
             HEX64("abcd"), hex);
    v = tu_json(sr_json);
    assert_ok(wx_sim_return_from_json(&sr, v, &err), &err);
    json_decref(v);

    for (size_t i = 0; i < 4; i++) {
        wx_task t = {0};
        wx_sim_return r;
        wx_agg_task a = {0};
        wx_agg_return ret;
        wx_fault fault = {0};
        wx_error aerr = WX_ERROR_INIT;
        int rc, arc;

        make_task(&t, refs[i], SIM_EP, "{}", 1, NULL);
        rc = run(f, &t, &r);
        assert_int_not_equal(rc, 0);
        make_agg(&a, refs[i], "targets.t:loss", &sr, 1, NULL);
        arc = wx_env_run_aggregation(f->env, &a, &ret, &fault, &aerr);
        if (arc != rc || !fault.error_type ||
            strcmp(fault.error_type, r.error->error_type) != 0 ||
            fault.retryable != r.error->retryable)
            fail_msg("%s: run gave %s %s (retryable %d), run_aggregation %s "
                     "%s (retryable %d): %s",
                     refs[i], wx_err_name(rc), r.error->error_type,
                     r.error->retryable, wx_err_name(arc),
                     fault.error_type ? fault.error_type : "(none)",
                     fault.retryable, aerr.message);
        wx_sim_return_release(&r);
        wx_agg_task_release(&a);
        wx_task_release(&t);
        wx_fault_release(&fault);
    }
    wx_sim_return_release(&sr);
}

/* ======================================================================
 * wx_env_health and wx_env_open
 * ====================================================================== */

static void test_health(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    static const char *const counters[] = {
        "spawned", "reused", "evicted", "recycled", "crashed",
        "timed_out", "start_failed", "live", "idle"};
    wx_task t = {0};
    wx_sim_return r;
    json_t *h, *w;

    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    h = health(f);
    assert_string_equal(jstr(h, "type"), "isolated_warm");
    assert_string_equal(jstr(h, "home"), f->home);
    assert_true(json_is_true(json_object_get(h, "cache")));
    w = json_object_get(h, "workers");
    assert_int_equal(json_object_size(w), 10);
    assert_true(json_real_value(json_object_get(w, "start_seconds")) == 0.0);
    for (size_t i = 0; i < 9; i++) {
        assert_true(json_is_integer(json_object_get(w, counters[i])));
        assert_int_equal(json_integer_value(json_object_get(w, counters[i])),
                         0);
    }
    assert_int_equal(json_integer_value(json_object_get(h, "tasks")), 0);
    json_decref(h);

    make_task(&t, ref, SIM_EP, "{\"bytes\": 1}", 1, NULL);
    run_ok(f, &t, &r); /* a miss */
    wx_sim_return_release(&r);
    run_ok(f, &t, &r); /* a hit */
    wx_sim_return_release(&r);
    wx_task_release(&t);
    make_task(&t, ref, SIM_EP, "{\"fail\": \"x\"}", 1, NULL);
    run(f, &t, &r); /* a failure */
    wx_sim_return_release(&r);
    wx_task_release(&t);

    h = health(f);
    assert_int_equal(json_integer_value(json_object_get(h, "tasks")), 3);
    assert_int_equal(json_integer_value(json_object_get(h, "cache_hits")), 1);
    assert_int_equal(json_integer_value(json_object_get(h, "failures")), 1);
    w = json_object_get(h, "workers");
    assert_int_equal(json_integer_value(json_object_get(w, "spawned")), 1);
    assert_true(json_real_value(json_object_get(w, "start_seconds")) > 0.0);
    assert_int_equal(json_integer_value(json_object_get(w, "reused")), 1);
    assert_int_equal(json_integer_value(json_object_get(w, "live")), 1);
    assert_int_equal(json_integer_value(json_object_get(w, "idle")), 1);
    json_decref(h);
}

static void test_open_errors(void **state)
{
    fx *f = *state;
    wx_env *env = NULL;
    wx_error err = WX_ERROR_INIT;
    wx_env_options o = {0};

    o.cas = f->cas;
    fx_set(f, WX_CONF_HOME, "");
    assert_fails(wx_env_open(f->cfg, &o, &env, &err), WX_EINVAL, &err,
                 "home");
    assert_null(env);
}

/* ---- results computed elsewhere (the MPI service's two ends) ---- */

/* An environment without stores, as on an MPI worker rank. */
static wx_env *forwarding_env(fx *f)
{
    wx_env_options o = {.bundles = f->bundles, .forward_bytes = true};
    wx_error err = WX_ERROR_INIT;
    wx_env *env = NULL;

    assert_ok(wx_env_open(f->cfg, &o, &env, &err), &err);
    return env;
}

/* Big outputs and error details come back loaded under their ref. */
static void test_forward_bytes(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1], hex[65];
    wx_env *fwd;
    wx_task t = {0};
    wx_sim_return r;
    const wx_artifact *o;
    bool present = true;
    wx_error err = WX_ERROR_INIT;

    fx_set(f, WX_CONF_INLINE_MAX_BYTES, "100");
    fx_fake_bundle(f, ref, NULL);
    fwd = forwarding_env(f);
    make_task(&t, ref, SIM_EP, "{\"bytes\": 70000, \"payload\": \"hi\"}", 3,
              NULL);
    assert_int_equal(wx_env_run(fwd, &t, &r), 0);
    o = &output_named(&r, "out")->art;
    assert_non_null(o->ref);
    assert_non_null(o->data);
    assert_int_equal(o->size, 70000);
    check_pattern(o->data, 70000, 3);
    sha_hex(o->data, 70000, hex);
    assert_string_equal(o->checksum, hex);
    assert_string_equal(o->ref + strlen(WX_CAS_PREFIX), hex);
    assert_ok(wx_cas_exists(f->cas, o->ref, &present, &err), &err);
    assert_false(present); /* nothing was stored here */
    assert_null(output_named(&r, "payload")->art.ref);
    wx_sim_return_release(&r);
    wx_task_release(&t);

    make_task(&t, ref, SIM_EP, "{\"fail\": \"too big to inline\"}", 1, NULL);
    assert_int_equal(wx_env_run(fwd, &t, &r), WX_EMODEL);
    assert_non_null(r.error_details->ref);
    assert_non_null(r.error_details->data);
    assert_true(r.error_details->size > 100);
    wx_sim_return_release(&r);
    wx_task_release(&t);
    wx_env_close(fwd);
}

/* Adopted results land in the CAS and the cache, as if run here. */
static void test_adopt(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    wx_env *fwd;
    wx_task t = {0};
    wx_sim_return r, hit;
    json_int_t before;

    fx_fake_bundle(f, ref, NULL);
    fwd = forwarding_env(f);
    fx_env(f);
    make_task(&t, ref, SIM_EP, "{\"bytes\": 70000}", 5, NULL);
    assert_false(wx_env_lookup(f->env, &t, &hit));
    assert_int_equal(wx_env_run(fwd, &t, &r), 0);
    assert_int_equal(wx_env_adopt(f->env, &t, &r, 0), 0);
    assert_null(output_named(&r, "out")->art.data); /* stored, unloaded */
    assert_artifact_true(f->cas, &output_named(&r, "out")->art);

    /* Served from the cache with no worker call. */
    before = leases(f);
    assert_true(wx_env_lookup(f->env, &t, &hit));
    assert_int_equal(leases(f), before);
    assert_true(hit.cached);
    assert_string_equal(hit.task_id, r.task_id);
    assert_same_outputs(&r, &hit);
    wx_sim_return_release(&hit);
    wx_sim_return_release(&r);

    /* Bytes that do not hash to their ref: a StorageError return. */
    t.seed = 6;
    assert_int_equal(wx_env_run(fwd, &t, &r), 0);
    ((wx_output *)output_named(&r, "out"))->art.data[7] ^= 1;
    assert_int_equal(wx_env_adopt(f->env, &t, &r, 0), WX_EIO);
    assert_non_null(r.error);
    assert_string_equal(r.error->error_type, "StorageError");
    assert_true(r.error->retryable);
    assert_int_equal(r.n_outputs, 0);
    wx_sim_return_release(&r);
    assert_false(wx_env_lookup(f->env, &t, &hit));

    /* A failure is adopted as it came and never cached. */
    wx_task_release(&t);
    make_task(&t, ref, SIM_EP, "{\"fail\": \"no\"}", 1, NULL);
    assert_int_equal(wx_env_run(fwd, &t, &r), WX_EMODEL);
    assert_int_equal(wx_env_adopt(f->env, &t, &r, WX_EMODEL), WX_EMODEL);
    assert_string_equal(r.error->error_type, "ModelError");
    wx_sim_return_release(&r);
    assert_false(wx_env_lookup(f->env, &t, &hit));
    wx_task_release(&t);
    wx_env_close(fwd);
}

/* An aggregation: replicates loaded here, run elsewhere, adopted here. */
static void test_adopt_aggregation(void **state)
{
    fx *f = *state;
    char ref[WX_DIGEST_LEN + 1];
    wx_sim_return *reps;
    wx_agg_task a = {0}, loaded;
    wx_agg_return ret, hit;
    wx_fault fault = {0};
    wx_error err = WX_ERROR_INIT;
    wx_env *fwd;

    fx_fake_bundle(f, ref, NULL);
    fx_env(f);
    fwd = forwarding_env(f);
    reps = run_replicates(f, ref, SIM_EP, "{\"bytes\": 70000}", 4);
    make_agg(&a, ref, "targets.t:loss", reps, 4, NULL);
    assert_false(wx_env_lookup_aggregation(f->env, &a, &hit));
    assert_ok(wx_agg_task_copy(&loaded, &a, &err), &err);
    assert_ok(wx_env_load_replicates(f->env, &loaded, &err), &err);
    for (size_t i = 0; i < 4; i++)
        check_pattern(output_named(&loaded.sim_returns[i], "out")->art.data,
                      70000, (int64_t)i + 1);
    /* The forwarding side has no store: it needs the bytes loaded. */
    assert_int_equal(wx_env_run_aggregation(fwd, &a, &ret, &fault, &err),
                     WX_ENOTFOUND);
    assert_string_equal(fault.error_type, "StorageError");
    wx_fault_release(&fault);
    assert_ok(wx_env_run_aggregation(fwd, &loaded, &ret, &fault, &err),
              &err);
    assert_true(ret.loss == 4.0);
    wx_env_adopt_aggregation(f->env, &a, &ret);
    assert_true(wx_env_lookup_aggregation(f->env, &a, &hit));
    assert_true(hit.loss == ret.loss);
    assert_string_equal(hit.aggregation_id, ret.aggregation_id);
    wx_agg_return_release(&hit);
    wx_agg_return_release(&ret);
    wx_agg_task_release(&loaded);
    wx_agg_task_release(&a);
    free_results(reps, 4);
    wx_env_close(fwd);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
#define M(name) cmocka_unit_test_setup_teardown(name, setup_mem, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        M(test_error_type),
        M(test_resolve_bundle),
        M(test_resolve_bundle_errors),
        M(test_handle_artifacts),
        M(test_handle_artifacts_out_of_memory),
        T(test_handle_artifacts_storage_error),
        M(test_create_sim_return_ids),
        M(test_create_sim_return_errors),
        M(test_select_outputs),
        M(test_create_error_return),
        M(test_create_error_return_retryable),
        M(test_create_error_return_large_details),
        M(test_resolve_cas_references),
        T(test_resolve_cas_references_corrupt),
        T(test_check_cached),
        M(test_run_success_and_cache_hit),
        M(test_run_cache_object_removed),
        T(test_run_cache_object_corrupt),
        T(test_run_big_output_stored),
        T(test_run_in_steps),
        M(test_batch_on_one_worker),
        M(test_batch_worker_crash),
        M(test_batch_within_max_tasks_per_worker),
        M(test_batch_timeout),
        M(test_batch_big_requests),
        T(test_run_many_big_outputs),
        M(test_run_model_error),
        M(test_run_error_details_in_cas),
        M(test_run_crash_retried),
        M(test_run_crash_always),
        M(test_run_timeout),
        M(test_run_bundle_failures),
        M(test_run_requested_outputs),
        T(test_run_storage_error),
        M(test_run_no_cache),
        M(test_run_memory_error_rpc),
        M(test_run_memory_error_inband),
        M(test_run_compat_worker),
        M(test_run_threads),
        M(test_run_sir),
        M(test_aggregation_with_meanwhile),
        M(test_aggregation_over_cas_outputs),
        M(test_aggregation_missing_object),
        T(test_aggregation_sir_cas_equals_inline),
        M(test_aggregation_failing_target),
        M(test_one_error_semantics),
        M(test_health),
        M(test_open_errors),
        M(test_forward_bytes),
        M(test_adopt),
        M(test_adopt_aggregation),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
