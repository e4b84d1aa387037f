/*
 * The local simulation service: callbacks, futures and the original's
 * submit / gather / submit_batch / submit_replicate_set /
 * submit_batch_with_aggregation, over the C test bundle.
 */
#include "testutil.h"

#include <stdatomic.h>

typedef struct fixture {
    char *home;
    wx_config *cfg;
    wx_env *env;
    wx_service *svc;
    char ref[WX_DIGEST_LEN + 1];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    wx_error err = WX_ERROR_INIT;
    wx_bundles *b = NULL;

    fx->home = tu_tempdir();
    assert_ok(wx_config_new(&fx->cfg, &err), &err);
    assert_ok(wx_config_set(fx->cfg, WX_CONF_HOME, fx->home,
                            WX_CONF_FROM_FLAG, &err),
              &err);
    assert_ok(wx_config_set(fx->cfg, WX_CONF_JOBS, "2", WX_CONF_FROM_FLAG,
                            &err),
              &err);
    assert_ok(wx_config_set(fx->cfg, WX_CONF_NATIVE_RUNNER, WX_RUNNER_PATH,
                            WX_CONF_FROM_FLAG, &err),
              &err);
    assert_ok(wx_bundles_open(fx->home, &b, &err), &err);
    assert_ok(wx_bundles_add(b, WX_NATIVE_BUNDLE, fx->ref, &err), &err);
    wx_bundles_close(b);
    assert_ok(wx_env_open(fx->cfg, NULL, &fx->env, &err), &err);
    /* A queue of one: submits wait, aggregations from callbacks must not. */
    assert_ok(wx_service_local(fx->env, 2, 1, &fx->svc, &err), &err);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;

    wx_service_free(fx->svc);
    wx_env_close(fx->env);
    wx_config_free(fx->cfg);
    tu_rmtree(fx->home);
    free(fx->home);
    free(fx);
    return 0;
}

static void make_task(const fixture *fx, const char *params, int64_t seed,
                      wx_task *t)
{
    char text[512];
    wx_error err = WX_ERROR_INIT;
    json_t *v;

    snprintf(text, sizeof(text),
             "{\"bundle_ref\":\"%s\",\"entrypoint\":\"test.model/echo\","
             "\"params\":%s,\"seed\":%lld}",
             fx->ref, params, (long long)seed);
    v = tu_json(text);
    assert_ok(wx_task_from_json(t, v, &err), &err);
    json_decref(v);
}

/* The "seed" output of the echo model is the seed in decimal. */
static int64_t seed_output(const wx_sim_return *r)
{
    for (size_t i = 0; i < r->n_outputs; i++)
        if (strcmp(r->outputs[i].name, "seed") == 0) {
            /* Artifact bytes are not NUL-terminated: copy before parsing. */
            char text[32] = {0};
            size_t n = r->outputs[i].art.size;

            assert_true(n < sizeof text);
            memcpy(text, r->outputs[i].art.data, n);
            return strtoll(text, NULL, 10);
        }
    fail_msg("no seed output");
    return -1;
}

static void test_batch_and_gather_keep_order(void **state)
{
    fixture *fx = *state;
    wx_error err = WX_ERROR_INIT;
    wx_task tasks[20];
    wx_future *futures[20];
    wx_sim_return rets[20];

    for (int i = 0; i < 20; i++)
        make_task(fx, "{\"bytes\": 10}", 1000 + i, &tasks[i]);
    assert_ok(wx_service_submit_batch(fx->svc, tasks, 20, futures, &err),
              &err);
    wx_service_gather(futures, 20, rets);
    for (int i = 0; i < 20; i++) {
        assert_null(rets[i].error);
        assert_int_equal(seed_output(&rets[i]), 1000 + i);
        wx_sim_return_release(&rets[i]);
        wx_future_free(futures[i]);
        wx_task_release(&tasks[i]);
    }
}

static atomic_int completions;

static void count_done(void *user, wx_sim_return *ret, int status)
{
    assert_int_equal(status, 0);
    assert_ptr_equal(user, &completions);
    atomic_fetch_add(&completions, 1);
    wx_sim_return_release(ret);
}

static void test_callbacks_each_called_once(void **state)
{
    fixture *fx = *state;
    wx_error err = WX_ERROR_INIT;
    wx_task t;

    atomic_store(&completions, 0);
    for (int i = 0; i < 50; i++) {
        make_task(fx, "{}", i, &t);
        assert_ok(wx_service_submit(fx->svc, &t, count_done, &completions,
                                    &err),
                  &err);
        wx_task_release(&t);
    }
    wx_service_wait(fx->svc);
    assert_int_equal(atomic_load(&completions), 50);
}

typedef struct order_log {
    int64_t seeds[40];
    int n;
} order_log;

static void log_order(void *user, wx_sim_return *ret, int status)
{
    order_log *log = user;

    assert_int_equal(status, 0);
    log->seeds[log->n++] = seed_output(ret);
    wx_sim_return_release(ret);
}

/*
 * One dispatcher finishes each simulation while the worker runs the next
 * (its callback comes one job later), yet every callback comes once, in
 * order, and the last one as soon as the queue runs dry: a wait returns.
 */
static void test_one_lane_completes_in_order(void **state)
{
    fixture *fx = *state;
    wx_error err = WX_ERROR_INIT;
    wx_service *one;
    order_log log = {.n = 0};
    wx_sim_return r;
    wx_future *f;
    wx_task t;

    assert_ok(wx_service_local(fx->env, 1, 4, &one, &err), &err);
    for (int i = 0; i < 40; i++) {
        make_task(fx, "{}", 500 + i, &t);
        assert_ok(wx_service_submit(one, &t, log_order, &log, &err), &err);
        wx_task_release(&t);
    }
    wx_service_wait(one);
    assert_int_equal(log.n, 40);
    for (int i = 0; i < 40; i++)
        assert_int_equal(log.seeds[i], 500 + i);
    /* A lone job completes without a next one to overlap with. */
    make_task(fx, "{}", 77, &t);
    assert_ok(wx_service_submit_future(one, &t, &f, &err), &err);
    assert_int_equal(wx_future_sim(f, &r), 0);
    assert_int_equal(seed_output(&r), 77);
    wx_sim_return_release(&r);
    wx_future_free(f);
    wx_task_release(&t);
    wx_service_free(one);
}

/*
 * A lane that begins the next simulation while its worker runs a long
 * one leaves it in the queue: the other lane, free first, runs it.
 */
static void test_long_job_holds_up_no_other(void **state)
{
    fixture *fx = *state;
    static const char *const params[] = {"{\"sleep_ms\": 1500}", "{}",
                                         "{\"sleep_ms\": 300}"};
    wx_error err = WX_ERROR_INIT;
    wx_service *two;
    order_log log = {.n = 0};
    wx_task t;

    assert_ok(wx_service_local(fx->env, 2, 4, &two, &err), &err);
    for (int i = 0; i < 3; i++) {
        make_task(fx, params[i], i, &t);
        assert_ok(wx_service_submit(two, &t, log_order, &log, &err), &err);
        wx_task_release(&t);
    }
    wx_service_wait(two);
    wx_service_free(two);
    assert_int_equal(log.n, 3);
    assert_int_equal(log.seeds[2], 0); /* the long one ends last */
}

static wx_replicate_set make_set(const fixture *fx, const char *params,
                                 int64_t seed, int64_t n, int64_t offset)
{
    wx_replicate_set rs = {0};

    make_task(fx, params, seed, &rs.base);
    rs.n_replicates = n;
    rs.seed_offset = offset;
    return rs;
}

static void test_replicate_set_with_target(void **state)
{
    fixture *fx = *state;
    wx_replicate_set rs = make_set(fx, "{\"bytes\": 7}", 40, 5, 2);
    wx_error err = WX_ERROR_INIT;
    wx_future *sims[5], *agg = NULL;
    wx_agg_return ret;
    char *diag;

    assert_ok(wx_service_submit_replicate_set(fx->svc, &rs,
                                              "test.targets:sizes", NULL,
                                              sims, &agg, &err),
              &err);
    for (int i = 0; i < 5; i++) {
        wx_sim_return r;

        assert_int_equal(wx_future_sim(sims[i], &r), 0);
        assert_int_equal(seed_output(&r), 42 + i); /* base + offset + i */
        wx_sim_return_release(&r);
        wx_future_free(sims[i]);
    }
    assert_ok(wx_future_agg(agg, &ret, NULL, &err), &err);
    assert_true(ret.loss == 5.0);
    assert_int_equal(ret.n_replicates, 5);
    diag = tu_canon(ret.diagnostics);
    assert_non_null(strstr(diag, "\"sizes\":[7,7,7,7,7]"));
    wx_free(diag);
    wx_agg_return_release(&ret);
    wx_future_free(agg);
    wx_replicate_set_release(&rs);
}

static void test_failed_replicate_reaches_the_target(void **state)
{
    fixture *fx = *state;
    wx_replicate_set rs = make_set(fx, "{\"fail\": \"no\"}", 1, 3, 0);
    wx_error err = WX_ERROR_INIT;
    wx_future *sims[3], *agg = NULL;
    wx_agg_return ret;
    char *diag;

    assert_ok(wx_service_submit_replicate_set(fx->svc, &rs,
                                              "test.targets:sizes", NULL,
                                              sims, &agg, &err),
              &err);
    for (int i = 0; i < 3; i++) {
        wx_sim_return r;

        assert_int_equal(wx_future_sim(sims[i], &r), WX_EMODEL);
        assert_string_equal(r.error->error_type, "ModelError");
        wx_sim_return_release(&r);
        wx_future_free(sims[i]);
    }
    assert_ok(wx_future_agg(agg, &ret, NULL, &err), &err);
    diag = tu_canon(ret.diagnostics);
    assert_non_null(strstr(diag, "\"failed\":3"));
    wx_free(diag);
    wx_agg_return_release(&ret);
    wx_future_free(agg);
    wx_replicate_set_release(&rs);
}

static void test_batch_with_aggregation(void **state)
{
    fixture *fx = *state;
    wx_replicate_set sets[3] = {make_set(fx, "{\"bytes\": 1}", 1, 2, 0),
                                make_set(fx, "{\"bytes\": 2}", 1, 3, 0),
                                make_set(fx, "{\"bytes\": 3}", 1, 4, 0)};
    wx_error err = WX_ERROR_INIT;
    wx_future *sims[9], *aggs[3];

    assert_ok(wx_service_submit_batch_with_aggregation(
                  fx->svc, sets, 3, "test.targets:sizes", NULL, sims, aggs,
                  &err),
              &err);
    for (int i = 0; i < 9; i++) {
        wx_sim_return r;

        assert_int_equal(wx_future_sim(sims[i], &r), 0);
        wx_sim_return_release(&r);
        wx_future_free(sims[i]);
    }
    for (int i = 0; i < 3; i++) {
        wx_agg_return ret;

        assert_ok(wx_future_agg(aggs[i], &ret, NULL, &err), &err);
        assert_int_equal(ret.n_replicates, 2 + i);
        wx_agg_return_release(&ret);
        wx_future_free(aggs[i]);
        wx_replicate_set_release(&sets[i]);
    }
}

static void test_aggregation_error_has_the_taxonomy(void **state)
{
    fixture *fx = *state;
    wx_replicate_set rs = make_set(fx, "{}", 1, 2, 0);
    wx_error err = WX_ERROR_INIT;
    wx_future *sims[2], *agg = NULL;
    wx_fault fault = {0};
    wx_agg_return ret;

    assert_ok(wx_service_submit_replicate_set(fx->svc, &rs,
                                              "test.targets:missing", NULL,
                                              sims, &agg, &err),
              &err);
    for (int i = 0; i < 2; i++) {
        wx_sim_return r;

        wx_future_sim(sims[i], &r);
        wx_sim_return_release(&r);
        wx_future_free(sims[i]);
    }
    assert_int_equal(wx_future_agg(agg, &ret, &fault, &err), WX_EMODEL);
    assert_string_equal(fault.error_type, "ModelError");
    assert_non_null(strstr(err.message, "unknown target"));
    wx_fault_release(&fault);
    wx_future_free(agg);
    wx_replicate_set_release(&rs);
}

static void test_invalid_replicate_set_refused(void **state)
{
    fixture *fx = *state;
    wx_replicate_set rs = make_set(fx, "{}", 1, 0, 0);
    wx_error err = WX_ERROR_INIT;
    wx_future *agg = NULL;

    assert_fails(wx_service_submit_replicate_set(fx->svc, &rs, NULL, NULL,
                                                 NULL, &agg, &err),
                 WX_EINVAL, &err, "n_replicates: must be at least 1");
    wx_replicate_set_release(&rs);
}

static atomic_int cancelled;

static void count_cancelled(void *user, wx_sim_return *ret, int status)
{
    (void)user;
    assert_int_equal(status, WX_ECANCELED);
    assert_null(ret->outputs);
    assert_null(ret->error);
    assert_string_equal(ret->task_id, "");
    atomic_fetch_add(&cancelled, 1);
    wx_sim_return_release(ret);
}

static void agg_cancelled(void *user, wx_agg_return *ret, int status,
                          const wx_error *err, const wx_fault *fault)
{
    (void)user;
    assert_null(ret);
    assert_int_equal(status, WX_ECANCELED);
    assert_non_null(strstr(err->message, "cancelled"));
    assert_string_equal(fault->error_type, "Cancelled");
    atomic_fetch_add(&cancelled, 1);
}

/* Once the flag is set, jobs that have not started are dropped. */
static void test_cancel_flag_drops_jobs_not_started(void **state)
{
    fixture *fx = *state;
    volatile sig_atomic_t stop = 0;
    wx_error err = WX_ERROR_INIT;
    wx_agg_task at = {0};
    wx_sim_return r;
    wx_future *f;
    wx_task t;

    wx_service_local_cancel_on(fx->svc, &stop);
    make_task(fx, "{}", 7, &t);
    assert_ok(wx_service_submit_future(fx->svc, &t, &f, &err), &err);
    assert_int_equal(wx_future_sim(f, &r), 0); /* runs while unset */
    wx_future_free(f);
    stop = 1;
    atomic_store(&cancelled, 0);
    for (int i = 0; i < 5; i++)
        assert_ok(wx_service_submit(fx->svc, &t, count_cancelled, NULL,
                                    &err),
                  &err);
    at.bundle_ref = fx->ref;
    at.target_entrypoint = "test.targets:sizes";
    at.sim_returns = &r;
    at.n_sim_returns = 1;
    assert_ok(wx_service_submit_aggregation(fx->svc, &at, agg_cancelled,
                                            NULL, &err),
              &err);
    wx_service_wait(fx->svc);
    assert_int_equal(atomic_load(&cancelled), 6);
    wx_service_local_cancel_on(fx->svc, NULL); /* `stop` goes out of scope */
    wx_sim_return_release(&r);
    wx_task_release(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_and_gather_keep_order),
        cmocka_unit_test(test_callbacks_each_called_once),
        cmocka_unit_test(test_one_lane_completes_in_order),
        cmocka_unit_test(test_long_job_holds_up_no_other),
        cmocka_unit_test(test_replicate_set_with_target),
        cmocka_unit_test(test_failed_replicate_reaches_the_target),
        cmocka_unit_test(test_batch_with_aggregation),
        cmocka_unit_test(test_aggregation_error_has_the_taxonomy),
        cmocka_unit_test(test_invalid_replicate_set_refused),
        cmocka_unit_test(test_cancel_flag_drops_jobs_not_started),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
