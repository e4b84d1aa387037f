/*
 * The real runners through the pool: warmexec-runner with the C test
 * bundle, and runners/python/warmexec_runner.py with a modelops-style
 * bundle, each in compat (base64) and warmexec/1 (attachments) mode.
 */
#include "testutil.h"

#include <sys/stat.h>

#include <warmexec/pool.h>

#define DIGEST "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static const char *const native_argv[] = {
    WX_RUNNER_PATH, "--bundle-path", "{bundle_path}", "--bundle-digest",
    "{bundle_digest}", NULL};
static const char *const python_argv[] = {
    "python3", WX_PYTHON_RUNNER, "--bundle-path", "{bundle_path}",
    "--bundle-digest", "{bundle_digest}", NULL};

static const char WIRE_PY[] =
    "import json\n"
    "print('wire.py imported')\n"
    "def wire(entrypoint, params, seed):\n"
    "    print('running', entrypoint, seed)\n"
    "    if params.get('fail'):\n"
    "        raise ValueError('alpha must be positive')\n"
    "    n = int(params.get('bytes', 5))\n"
    "    return {'table': bytes((i * 31 + seed) % 256 for i in range(n)),\n"
    "            'metadata': json.dumps({'seed': seed}).encode()}\n";

static const char TARGETS_PY[] =
    "def loss(sim_returns, target_data=None):\n"
    "    print('evaluating', len(sim_returns))\n"
    "    sizes = [len(o['data']) for sr in sim_returns\n"
    "             for o in sr['outputs'].values()]\n"
    "    return {'loss': float(sum(sizes)), 'diagnostics': {'sizes': sizes,\n"
    "            'td': target_data}}\n";

typedef struct fixture {
    char *home;
    char *python_bundle;
} fixture;

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));

    fx->home = tu_tempdir();
    fx->python_bundle = tu_tempdir();
    write_text(tu_path(fx->python_bundle, "wire.py"), WIRE_PY);
    assert_int_equal(mkdir(tu_path(fx->python_bundle, "targets"), 0755), 0);
    write_text(tu_path(fx->python_bundle, "targets/__init__.py"), "");
    write_text(tu_path(fx->python_bundle, "targets/loss.py"), TARGETS_PY);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;

    tu_rmtree(fx->home);
    tu_rmtree(fx->python_bundle);
    free(fx->home);
    free(fx->python_bundle);
    free(fx);
    return 0;
}

static wx_pool *new_pool(const fixture *fx, bool attachments)
{
    wx_pool_options o = WX_POOL_OPTIONS_INIT;
    wx_error err = WX_ERROR_INIT;
    wx_pool *p = NULL;

    o.home = fx->home;
    o.attachments = attachments;
    o.start_timeout = 20;
    o.task_timeout = 20;
    o.shutdown_grace = 2;
    assert_ok(wx_pool_new(&o, &p, &err), &err);
    return p;
}

static int run(wx_pool *p, const wx_worker_spec *spec, const char *ep,
               const char *params_json, int64_t seed, wx_blob **out,
               size_t *n, wx_fault *fault, wx_error *err)
{
    json_t *params = tu_json(params_json);
    int rc = wx_pool_execute(p, spec, ep, params, seed, out, n, fault, err);

    json_decref(params);
    return rc;
}

static const wx_blob *find_blob(const wx_blob *b, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(b[i].name, name) == 0)
            return &b[i];
    fail_msg("no output %s", name);
    return NULL;
}

static void check_pattern(const wx_blob *b, size_t len, int64_t seed)
{
    assert_int_equal(b->len, len);
    for (size_t i = 0; i < len; i++)
        if (b->data[i] != (uint8_t)((int64_t)i * 31 + seed))
            fail_msg("byte %zu of %s differs", i, b->name);
}

/* The native runner in one mode: outputs, printing, errors, aggregate. */
static void native_session(const fixture *fx, bool attachments)
{
    wx_worker_spec spec = {DIGEST, WX_NATIVE_BUNDLE, "native", native_argv,
                           NULL};
    wx_pool *p = new_pool(fx, attachments);
    wx_error err = WX_ERROR_INIT;
    wx_fault fault = {0};
    wx_pool_stats st;
    wx_blob *out;
    size_t n;

    assert_ok(run(p, &spec, "test.model/echo",
                  "{\"bytes\": 70000, \"print\": 1}", 7, &out, &n, &fault,
                  &err),
              &err);
    check_pattern(find_blob(out, n, "out"), 70000, 7);
    assert_memory_equal(find_blob(out, n, "seed")->data, "7", 1);
    wx_blobs_free(out, n);
    assert_fails(run(p, &spec, "test.model/echo", "{\"fail\": \"x<0\"}", 1,
                     &out, &n, &fault, &err),
                 WX_EMODEL, &err, "model refused: x<0");
    assert_string_equal(fault.error_type, "ModelError");
    wx_fault_release(&fault);
    assert_fails(run(p, &spec, "test.model/nope", "{}", 1, &out, &n, &fault,
                     &err),
                 WX_EMODEL, &err, "unknown entrypoint 'test.model/nope'");
    wx_fault_release(&fault);
    assert_fails(run(p, &spec, "test.model/echo", "{\"bytes\": \"many\"}", 1,
                     &out, &n, &fault, &err),
                 WX_EMODEL, &err, "parameter 'bytes' must be an integer");
    wx_fault_release(&fault);
    wx_pool_stats_get(p, &st);
    assert_int_equal(st.spawned, 1); /* model errors keep the worker */
    wx_pool_free(p);
}

static void test_native_runner_compat(void **state)
{
    native_session(*state, false);
}

static void test_native_runner_attachments(void **state)
{
    native_session(*state, true);
}

/* Replicates with loaded "out" artifacts of the given sizes. */
static wx_sim_return *replicates(const size_t *sizes, size_t n)
{
    wx_sim_return *srs = calloc(n, sizeof(*srs));

    for (size_t i = 0; i < n; i++) {
        wx_output *o = calloc(1, sizeof(*o));

        snprintf(srs[i].task_id, sizeof(srs[i].task_id), "t%zu", i);
        memset(srs[i].sim_root, 'a', 64);
        o->name = strdup("out");
        o->art.size = sizes[i];
        o->art.data = calloc(1, sizes[i] ? sizes[i] : 1);
        memset(o->art.checksum, 'b', 64);
        if (sizes[i] > 100)
            o->art.ref = strdup("cas://cccccccccccccccccccccccccccccccccccc"
                                "cccccccccccccccccccccccccccc");
        srs[i].outputs = o;
        srs[i].n_outputs = 1;
    }
    return srs;
}

static void free_replicates(wx_sim_return *srs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wx_sim_return_release(&srs[i]);
    free(srs);
}

static void aggregate_session(const fixture *fx, bool attachments,
                              const wx_worker_spec *spec, const char *target,
                              double expect_loss)
{
    static const size_t sizes[] = {0, 10, 70000};
    wx_sim_return *srs = replicates(sizes, 3);
    json_t *td = tu_json("{\"obs\": [1, 2]}");
    wx_pool *p = new_pool(fx, attachments);
    wx_error err = WX_ERROR_INIT;
    wx_agg_return ret = {0};
    char *diag;

    assert_ok(wx_pool_aggregate(p, spec, target, srs, 3, td, &ret, NULL,
                                &err),
              &err);
    assert_true(ret.loss == expect_loss);
    assert_int_equal(ret.n_replicates, 3);
    diag = tu_canon(ret.diagnostics);
    assert_non_null(strstr(diag, "\"sizes\":[0,10,70000]"));
    assert_non_null(strstr(diag, "{\"obs\":[1,2]}"));
    wx_free(diag);
    wx_agg_return_release(&ret);
    free_replicates(srs, 3);
    json_decref(td);
    wx_pool_free(p);
}

static void test_native_aggregate(void **state)
{
    wx_worker_spec spec = {DIGEST, WX_NATIVE_BUNDLE, "native", native_argv,
                           NULL};

    aggregate_session(*state, false, &spec, "test.targets:sizes", 3.0);
    aggregate_session(*state, true, &spec, "test.targets:sizes", 3.0);
}

static void test_native_crash_and_bad_bundle(void **state)
{
    const fixture *fx = *state;
    wx_worker_spec spec = {DIGEST, WX_NATIVE_BUNDLE, "native", native_argv,
                           NULL};
    /* Another digest: a key of its own, so a new worker is started. */
    wx_worker_spec missing = {"sha256:" "ffffffffffffffffffffffffffffffff"
                              "ffffffffffffffffffffffffffffffff",
                              fx->python_bundle, "native", native_argv,
                              NULL};
    wx_pool *p = new_pool(fx, true);
    wx_error err = WX_ERROR_INIT;
    wx_fault fault = {0};
    wx_blob *out;
    size_t n;

    assert_fails(run(p, &spec, "test.model/echo", "{\"abort\": 1}", 1, &out,
                     &n, &fault, &err),
                 WX_ECRASHED, &err, "SIGABRT");
    assert_string_equal(fault.error_type, "WorkerCrashed");
    wx_fault_release(&fault);
    assert_ok(run(p, &spec, "test.model/echo", "{}", 1, &out, &n, &fault,
                  &err),
              &err);
    wx_blobs_free(out, n);
    /* A bundle without a manifest: the runner says why on stderr. */
    assert_fails(run(p, &missing, "test.model/echo", "{}", 1, &out, &n,
                     &fault, &err),
                 WX_ESTART, &err, "exited with status 1");
    assert_non_null(fault.stderr_tail);
    assert_non_null(strstr(fault.stderr_tail, "warmexec.json"));
    wx_fault_release(&fault);
    wx_pool_free(p);
}

/* The Python runner gives the same artifacts in both modes. */
static void test_python_runner_modes_agree(void **state)
{
    const fixture *fx = *state;
    wx_worker_spec spec = {DIGEST, fx->python_bundle, "python", python_argv,
                           NULL};
    wx_blob *outs[2];
    size_t ns[2];

    for (int mode = 0; mode < 2; mode++) {
        wx_pool *p = new_pool(fx, mode == 1);
        wx_error err = WX_ERROR_INIT;

        assert_ok(run(p, &spec, "model.sir/baseline", "{\"bytes\": 100000}",
                      42, &outs[mode], &ns[mode], NULL, &err),
                  &err);
        wx_pool_free(p);
    }
    assert_int_equal(ns[0], 2);
    assert_int_equal(ns[1], 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(outs[0][i].name, outs[1][i].name);
        assert_int_equal(outs[0][i].len, outs[1][i].len);
        assert_memory_equal(outs[0][i].data, outs[1][i].data, outs[0][i].len);
    }
    check_pattern(find_blob(outs[0], 2, "table"), 100000, 42);
    wx_blobs_free(outs[0], ns[0]);
    wx_blobs_free(outs[1], ns[1]);
}

static void test_python_runner_errors_and_aggregate(void **state)
{
    const fixture *fx = *state;
    wx_worker_spec spec = {DIGEST, fx->python_bundle, "python", python_argv,
                           NULL};

    for (int mode = 0; mode < 2; mode++) {
        wx_pool *p = new_pool(fx, mode == 1);
        wx_error err = WX_ERROR_INIT;
        wx_fault fault = {0};
        wx_pool_stats st;
        wx_blob *out;
        size_t n;

        assert_fails(run(p, &spec, "model.sir/baseline", "{\"fail\": 1}", 1,
                         &out, &n, &fault, &err),
                     WX_EMODEL, &err, "ValueError: alpha must be positive");
        wx_fault_release(&fault);
        assert_ok(run(p, &spec, "model.sir/baseline", "{}", 3, &out, &n,
                      &fault, &err),
                  &err);
        wx_blobs_free(out, n);
        wx_pool_stats_get(p, &st);
        assert_int_equal(st.spawned, 1);
        wx_pool_free(p);
    }
    aggregate_session(fx, false, &spec, "targets.loss:loss", 70010.0);
    aggregate_session(fx, true, &spec, "targets.loss/loss", 70010.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_native_runner_compat),
        cmocka_unit_test(test_native_runner_attachments),
        cmocka_unit_test(test_native_aggregate),
        cmocka_unit_test(test_native_crash_and_bad_bundle),
        cmocka_unit_test(test_python_runner_modes_agree),
        cmocka_unit_test(test_python_runner_errors_and_aggregate),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
