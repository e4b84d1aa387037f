/*
 * The example bundles through the pool: examples/bundles/sir (native C,
 * WX_SIR_BUNDLE: the bundle with libsir.so built) and
 * examples/bundles/sir-python (the same model as a ModelOps wire).  They
 * must write byte-identical outputs, keep S + I + R = N, depend on the
 * seed alone, name the parameter in their errors, and give the same
 * target losses, lowest at the parameters the observed data came from.
 */
#include "testutil.h"

#include <inttypes.h>
#include <math.h>

#include <warmexec/pool.h>

#define C_DIGEST "sha256:" "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1" \
                 "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1"
#define PY_DIGEST "sha256:" "d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2" \
                  "d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2"
#define ENTRYPOINT "sir.model/baseline"
#define MSE "targets.incidence:mse"
#define POISSON "targets.incidence:poisson_nll"
#define TRUE_PARAMS "{\"beta\": 0.3, \"gamma\": 0.1}"
#define N_REPLICATES 10
#define OBSERVED_DAYS 120

static const char *const native_argv[] = {
    WX_RUNNER_PATH, "--bundle-path", "{bundle_path}", "--bundle-digest",
    "{bundle_digest}", NULL};
static const char *const python_argv[] = {
    "python3", WX_PYTHON_RUNNER, "--bundle-path", "{bundle_path}",
    "--bundle-digest", "{bundle_digest}", NULL};
/* Running from the source tree must not leave __pycache__ in it. */
static const char *const python_env[] = {"PYTHONDONTWRITEBYTECODE=1", NULL};

static const wx_worker_spec c_spec = {C_DIGEST, WX_SIR_BUNDLE, "native",
                                      native_argv, NULL};
static const wx_worker_spec py_spec = {PY_DIGEST, WX_SIR_PYTHON_BUNDLE,
                                       "python", python_argv, python_env};

typedef struct fixture {
    char *home;
    wx_pool *pool;
} fixture;

static int setup(void **state)
{
    wx_pool_options o = WX_POOL_OPTIONS_INIT;
    wx_error err = WX_ERROR_INIT;
    fixture *fx = calloc(1, sizeof(*fx));

    fx->home = tu_tempdir();
    o.home = fx->home;
    o.start_timeout = 20;
    o.task_timeout = 60;
    o.shutdown_grace = 2;
    assert_ok(wx_pool_new(&o, &fx->pool, &err), &err);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;

    wx_pool_free(fx->pool);
    tu_rmtree(fx->home);
    free(fx->home);
    free(fx);
    return 0;
}

/* ---- simulations ---- */

typedef struct outputs {
    wx_blob *blobs;
    size_t n;
} outputs;

static int try_simulate(const fixture *fx, const wx_worker_spec *spec,
                        const char *params_json, int64_t seed, outputs *out,
                        wx_fault *fault, wx_error *err)
{
    json_t *params = tu_json(params_json);
    int rc = wx_pool_execute(fx->pool, spec, ENTRYPOINT, params, seed,
                             &out->blobs, &out->n, fault, err);

    json_decref(params);
    return rc;
}

static outputs simulate(const fixture *fx, const wx_worker_spec *spec,
                        const char *params_json, int64_t seed)
{
    wx_error err = WX_ERROR_INIT;
    outputs out = {NULL, 0};

    assert_ok(try_simulate(fx, spec, params_json, seed, &out, NULL, &err),
              &err);
    return out;
}

static void free_outputs(outputs *out)
{
    wx_blobs_free(out->blobs, out->n);
}

static const wx_blob *output_named(const outputs *out, const char *name)
{
    for (size_t i = 0; i < out->n; i++)
        if (strcmp(out->blobs[i].name, name) == 0)
            return &out->blobs[i];
    fail_msg("no output '%s'", name);
    return NULL;
}

static bool same_outputs(const outputs *a, const outputs *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        const wx_blob *other = output_named(b, a->blobs[i].name);

        if (other->len != a->blobs[i].len ||
            memcmp(other->data, a->blobs[i].data, other->len) != 0)
            return false;
    }
    return true;
}

/* The counts of "day,<column>\n0,<n>\n...", checking the day numbers. */
static int64_t *series_values(const wx_blob *b, const char *column,
                              size_t days)
{
    char *text = strndup((const char *)b->data, b->len);
    char header[64], *p = text;
    int64_t *values = calloc(days, sizeof(*values));

    snprintf(header, sizeof(header), "day,%s\n", column);
    assert_true(strncmp(p, header, strlen(header)) == 0);
    p += strlen(header);
    for (size_t d = 0; d < days; d++) {
        char *end;

        assert_int_equal(strtoll(p, &end, 10), (long long)d);
        assert_true(*end == ',');
        values[d] = strtoll(end + 1, &p, 10);
        assert_true(*p++ == '\n');
    }
    assert_true(*p == '\0');
    free(text);
    return values;
}

typedef struct setup_params {
    int64_t population, initial_infected, days;
} setup_params;

static int64_t int_or(const json_t *params, const char *name, int64_t dflt)
{
    const json_t *v = json_object_get(params, name);

    return v ? (int64_t)json_number_value(v) : dflt;
}

static setup_params setup_of(const char *params_json)
{
    json_t *params = tu_json(params_json);
    setup_params s = {int_or(params, "population", 10000),
                      int_or(params, "initial_infected", 10),
                      int_or(params, "days", 120)};

    json_decref(params);
    return s;
}

/*
 * S + I + R = N every day, from the CSVs: S = N - I0 - cumulative
 * incidence, I = prevalence, R = N - S - I.  Valid when every count is
 * non-negative, infections come from the susceptible at the start of the
 * day and recoveries from the infected at the start of the day.
 */
static void check_conservation(const outputs *out, setup_params s)
{
    int64_t *incidence = series_values(output_named(out, "incidence"),
                                       "incidence", (size_t)s.days);
    int64_t *prevalence = series_values(output_named(out, "prevalence"),
                                        "prevalence", (size_t)s.days);
    int64_t n = s.population, sus = n - s.initial_infected;
    int64_t inf = s.initial_infected, rec = 0;

    for (int64_t d = 0; d < s.days; d++) {
        int64_t sus_next = sus - incidence[d], inf_next = prevalence[d];
        int64_t rec_next = n - sus_next - inf_next;

        if (incidence[d] < 0 || incidence[d] > sus || inf_next < 0 ||
            rec_next < rec || rec_next - rec > inf)
            fail_msg("day %" PRId64 ": S %" PRId64 "->%" PRId64 ", I %" PRId64
                     "->%" PRId64 ", R %" PRId64 "->%" PRId64,
                     d, sus, sus_next, inf, inf_next, rec, rec_next);
        sus = sus_next;
        inf = inf_next;
        rec = rec_next;
    }
    assert_int_equal(sus + inf + rec, n);
    free(incidence);
    free(prevalence);
}

static const char *const PARAM_SETS[] = {
    TRUE_PARAMS, /* the defaults */
    "{\"beta\": 0.3, \"gamma\": 0.1, \"population\": 10000, "
    "\"initial_infected\": 10, \"days\": 120}",
    /* infection and recovery probabilities over 0.5: the symmetry */
    "{\"beta\": 3.0, \"gamma\": 0.9, \"population\": 500, "
    "\"initial_infected\": 50, \"days\": 60}",
    /* a million people: mostly the normal approximation */
    "{\"beta\": 1.5, \"gamma\": 0.05, \"population\": 1000000, "
    "\"initial_infected\": 1, \"days\": 365}",
    "{\"beta\": 0, \"gamma\": 1, \"population\": 100, "
    "\"initial_infected\": 100, \"days\": 5}",
    "{\"beta\": 0.5, \"gamma\": 0.2, \"population\": 2000.0, "
    "\"initial_infected\": 3.0, \"days\": 1}",
};

static const int64_t SEEDS[] = {0, 1, 20261129, INT64_MAX};

static void test_c_and_python_outputs_identical(void **state)
{
    const fixture *fx = *state;

    for (size_t i = 0; i < sizeof(PARAM_SETS) / sizeof(*PARAM_SETS); i++) {
        for (size_t k = 0; k < sizeof(SEEDS) / sizeof(*SEEDS); k++) {
            outputs c = simulate(fx, &c_spec, PARAM_SETS[i], SEEDS[k]);
            outputs py = simulate(fx, &py_spec, PARAM_SETS[i], SEEDS[k]);

            if (c.n != 2 || !same_outputs(&c, &py))
                fail_msg("C and Python differ for %s, seed %" PRId64,
                         PARAM_SETS[i], SEEDS[k]);
            check_conservation(&c, setup_of(PARAM_SETS[i]));
            free_outputs(&c);
            free_outputs(&py);
        }
    }
}

static void test_no_infection_without_transmission(void **state)
{
    outputs out = simulate(*state, &c_spec, PARAM_SETS[4], 7);
    const wx_blob *b = output_named(&out, "incidence");
    static const char expected[] = "day,incidence\n0,0\n1,0\n2,0\n3,0\n4,0\n";

    assert_int_equal(b->len, strlen(expected));
    assert_memory_equal(b->data, expected, b->len);
    free_outputs(&out);
}

/* Same seed, same bytes (also on a warm worker); another seed differs. */
static void test_outputs_depend_on_the_seed_alone(void **state)
{
    const wx_worker_spec *specs[] = {&c_spec, &py_spec};

    for (size_t i = 0; i < 2; i++) {
        outputs a = simulate(*state, specs[i], TRUE_PARAMS, 42);
        outputs other = simulate(*state, specs[i], TRUE_PARAMS, 43);
        outputs again = simulate(*state, specs[i], TRUE_PARAMS, 42);

        assert_true(same_outputs(&a, &again));
        assert_false(same_outputs(&a, &other));
        free_outputs(&a);
        free_outputs(&other);
        free_outputs(&again);
    }
}

static void test_bad_params_name_the_parameter(void **state)
{
    static const char *const cases[][2] = {
        {"{\"gamma\": 0.1}", "parameter 'beta' is missing"},
        {"{\"beta\": -0.1, \"gamma\": 0.1}",
         "parameter 'beta' must be >= 0, got -0.1"},
        {"{\"beta\": \"high\", \"gamma\": 0.1}",
         "parameter 'beta' must be a number, got string"},
        {"{\"beta\": 0.3}", "parameter 'gamma' is missing"},
        {"{\"beta\": 0.3, \"gamma\": 0}",
         "parameter 'gamma' must be in (0, 1], got 0"},
        {"{\"beta\": 0.3, \"gamma\": 1.5}",
         "parameter 'gamma' must be in (0, 1], got 1.5"},
        {"{\"beta\": 0.3, \"gamma\": 0.1, \"population\": 0}",
         "parameter 'population' must be in 1..1000000000, got 0"},
        {"{\"beta\": 0.3, \"gamma\": 0.1, \"population\": 2.5}",
         "parameter 'population' must be an integer, got float"},
        {"{\"beta\": 0.3, \"gamma\": 0.1, \"initial_infected\": 20000}",
         "parameter 'initial_infected' must be in 0..population (10000), "
         "got 20000"},
        {"{\"beta\": 0.3, \"gamma\": 0.1, \"initial_infected\": -1}",
         "parameter 'initial_infected' must be in 0..population"},
        {"{\"beta\": 0.3, \"gamma\": 0.1, \"days\": 0}",
         "parameter 'days' must be in 1..10000, got 0"},
        {"{\"beta\": 0.3, \"gamma\": 0.1, \"days\": 10001}",
         "parameter 'days' must be in 1..10000, got 10001"},
    };
    const wx_worker_spec *specs[] = {&c_spec, &py_spec};

    for (size_t s = 0; s < 2; s++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
            wx_error err = WX_ERROR_INIT;
            wx_fault fault = {0};
            outputs out;

            assert_fails(try_simulate(*state, specs[s], cases[i][0], 1, &out,
                                      &fault, &err),
                         WX_EMODEL, &err, cases[i][1]);
            assert_string_equal(fault.error_type, "ModelError");
            wx_fault_release(&fault);
        }
    }
}

/* ---- targets ---- */

typedef struct replicates {
    wx_sim_return srs[N_REPLICATES];
    size_t n;
} replicates;

static void add_replicate(replicates *reps, const outputs *out)
{
    wx_sim_return *sr = &reps->srs[reps->n];

    snprintf(sr->task_id, sizeof(sr->task_id), "replicate-%zu", reps->n++);
    memset(sr->sim_root, 'a', 64);
    sr->outputs = calloc(out->n, sizeof(*sr->outputs));
    sr->n_outputs = out->n;
    for (size_t i = 0; i < out->n; i++) {
        wx_artifact *a = &sr->outputs[i].art;

        sr->outputs[i].name = strdup(out->blobs[i].name);
        a->size = out->blobs[i].len;
        a->data = malloc(a->size ? a->size : 1);
        memcpy(a->data, out->blobs[i].data, a->size);
        memset(a->checksum, 'b', 64);
    }
}

/* A replicate that failed: an error and no outputs. */
static void add_failed_replicate(replicates *reps)
{
    wx_sim_return *sr = &reps->srs[reps->n];

    snprintf(sr->task_id, sizeof(sr->task_id), "replicate-%zu", reps->n++);
    memset(sr->sim_root, 'a', 64);
    sr->error = calloc(1, sizeof(*sr->error));
    sr->error->error_type = strdup("ModelError");
    sr->error->message = strdup("the model failed");
}

/* A replicate with one output, given as text. */
static void add_text_replicate(replicates *reps, const char *name,
                               const char *text)
{
    wx_blob blob = {(char *)name, (uint8_t *)text, strlen(text)};
    outputs out = {&blob, 1};

    add_replicate(reps, &out);
}

/* Replicates with seeds 1..n of the native model (Python's are equal). */
static replicates *simulate_replicates(const fixture *fx,
                                       const char *params_json, size_t n)
{
    replicates *reps = calloc(1, sizeof(*reps));

    for (size_t i = 0; i < n; i++) {
        outputs out = simulate(fx, &c_spec, params_json, (int64_t)i + 1);

        add_replicate(reps, &out);
        free_outputs(&out);
    }
    return reps;
}

static void free_replicates(replicates *reps)
{
    for (size_t i = 0; i < reps->n; i++)
        wx_sim_return_release(&reps->srs[i]);
    free(reps);
}

static int try_aggregate(const fixture *fx, const wx_worker_spec *spec,
                         const char *target, const replicates *reps,
                         wx_agg_return *ret, wx_error *err)
{
    memset(ret, 0, sizeof(*ret));
    return wx_pool_aggregate(fx->pool, spec, target, reps->srs, reps->n, NULL,
                             ret, NULL, err);
}

static double aggregate_loss(const fixture *fx, const wx_worker_spec *spec,
                             const char *target, const replicates *reps)
{
    wx_error err = WX_ERROR_INIT;
    wx_agg_return ret;
    double loss;

    assert_ok(try_aggregate(fx, spec, target, reps, &ret, &err), &err);
    loss = ret.loss;
    wx_agg_return_release(&ret);
    return loss;
}

static void assert_close(double a, double b)
{
    if (!(fabs(a - b) <= 1e-12 * fmax(fabs(a), fabs(b))))
        fail_msg("%.17g and %.17g differ by more than 1e-12 (relative)", a,
                 b);
}

static void check_diagnostics(const json_t *d, const char *target,
                              int64_t n_replicates, int64_t n_failed)
{
    assert_string_equal(json_string_value(json_object_get(d, "target")),
                        target);
    assert_int_equal(json_integer_value(json_object_get(d, "n_days")),
                     OBSERVED_DAYS);
    assert_int_equal(json_integer_value(json_object_get(d, "n_replicates")),
                     n_replicates);
    assert_int_equal(json_integer_value(json_object_get(d, "n_failed")),
                     n_failed);
}

/* Loss, diagnostics and per-replicate losses agree between C and Python. */
static void check_target_agrees(const fixture *fx, const char *target,
                                const char *name, const replicates *reps)
{
    wx_error err = WX_ERROR_INIT;
    wx_agg_return c, py;
    json_t *c_losses, *py_losses;

    assert_ok(try_aggregate(fx, &c_spec, target, reps, &c, &err), &err);
    assert_ok(try_aggregate(fx, &py_spec, target, reps, &py, &err), &err);
    assert_close(c.loss, py.loss);
    check_diagnostics(c.diagnostics, name, (int64_t)reps->n, 0);
    check_diagnostics(py.diagnostics, name, (int64_t)reps->n, 0);
    c_losses = json_object_get(c.diagnostics, "per_replicate_losses");
    py_losses = json_object_get(py.diagnostics, "per_replicate_losses");
    assert_int_equal(json_array_size(c_losses), reps->n);
    assert_int_equal(json_array_size(py_losses), reps->n);
    for (size_t i = 0; i < reps->n; i++)
        assert_close(json_real_value(json_array_get(c_losses, i)),
                     json_real_value(json_array_get(py_losses, i)));
    wx_agg_return_release(&c);
    wx_agg_return_release(&py);
}

static void test_targets_agree(void **state)
{
    const fixture *fx = *state;
    replicates *reps = simulate_replicates(fx, TRUE_PARAMS, N_REPLICATES);

    check_target_agrees(fx, MSE, "incidence_mse", reps);
    check_target_agrees(fx, POISSON, "incidence_poisson_nll", reps);
    free_replicates(reps);
}

/* A failed replicate is left out of the loss, the same way in both. */
static void test_targets_skip_failed_replicates(void **state)
{
    const fixture *fx = *state;
    replicates *reps = simulate_replicates(fx, TRUE_PARAMS, 3);
    const char *targets[] = {MSE, POISSON};

    add_failed_replicate(reps);
    for (size_t t = 0; t < 2; t++) {
        wx_error err = WX_ERROR_INIT;
        wx_agg_return c, py;

        assert_ok(try_aggregate(fx, &c_spec, targets[t], reps, &c, &err),
                  &err);
        assert_ok(try_aggregate(fx, &py_spec, targets[t], reps, &py, &err),
                  &err);
        assert_close(c.loss, py.loss);
        assert_int_equal(json_integer_value(
                             json_object_get(c.diagnostics, "n_failed")),
                         1);
        assert_int_equal(json_integer_value(
                             json_object_get(py.diagnostics, "n_failed")),
                         1);
        wx_agg_return_release(&c);
        wx_agg_return_release(&py);
    }
    free_replicates(reps);
}

/* The loss is lowest at the parameters the observed data came from. */
static void test_loss_lowest_at_true_params(void **state)
{
    const fixture *fx = *state;
    static const char *const params[] = {
        TRUE_PARAMS, "{\"beta\": 0.6, \"gamma\": 0.1}",
        "{\"beta\": 0.3, \"gamma\": 0.3}"};
    replicates *reps[3];

    for (size_t p = 0; p < 3; p++)
        reps[p] = simulate_replicates(fx, params[p], N_REPLICATES);
    for (size_t t = 0; t < 2; t++) {
        const char *target = t ? POISSON : MSE;
        double loss[3];

        for (size_t p = 0; p < 3; p++)
            loss[p] = aggregate_loss(fx, &c_spec, target, reps[p]);
        print_message("%s over %d replicates: %.10g at (0.3, 0.1), %.10g at "
                      "(0.6, 0.1), %.10g at (0.3, 0.3)\n",
                      target, N_REPLICATES, loss[0], loss[1], loss[2]);
        assert_true(loss[0] < loss[1]);
        assert_true(loss[0] < loss[2]);
    }
    for (size_t p = 0; p < 3; p++)
        free_replicates(reps[p]);
}

static void check_target_error(const fixture *fx, replicates *reps,
                               const char *needle)
{
    const wx_worker_spec *specs[] = {&c_spec, &py_spec};
    const char *targets[] = {MSE, POISSON};

    for (size_t s = 0; s < 2; s++) {
        for (size_t t = 0; t < 2; t++) {
            wx_error err = WX_ERROR_INIT;
            wx_agg_return ret;

            assert_fails(try_aggregate(fx, specs[s], targets[t], reps, &ret,
                                       &err),
                         WX_EMODEL, &err, needle);
            wx_agg_return_release(&ret);
        }
    }
    free_replicates(reps);
}

static void test_target_errors(void **state)
{
    const fixture *fx = *state;
    replicates *reps = calloc(1, sizeof(*reps));

    add_failed_replicate(reps);
    add_failed_replicate(reps);
    check_target_error(fx, reps, "every replicate failed (2 of 2)");

    reps = calloc(1, sizeof(*reps));
    add_text_replicate(reps, "prevalence", "day,prevalence\n0,1\n");
    check_target_error(fx, reps, "replicate 0 has no output 'incidence'");

    reps = calloc(1, sizeof(*reps));
    add_text_replicate(reps, "incidence", "day,incidence\n0,1\n1,x\n");
    check_target_error(fx, reps,
                       "replicate 0: output 'incidence': row 2 is not "
                       "'<day>,<count>'");

    reps = simulate_replicates(fx, "{\"beta\": 0.3, \"gamma\": 0.1, "
                                   "\"days\": 60}",
                               1);
    check_target_error(fx, reps,
                       "replicate 0 has 60 days of incidence, the observed "
                       "data has 120");
}

/*
 * The original runner sends outputs as base64 "inline" without "data",
 * and a failed replicate as empty outputs without "error": the Python
 * targets give the same losses from that form.
 */
static const char ORIGINAL_FORM_PY[] =
    "import base64, sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "import wire\n"
    "from targets import incidence\n"
    "def replicate(seed, data):\n"
    "    outs = wire.wire('sir.model/baseline',\n"
    "                     {'beta': 0.3, 'gamma': 0.1}, seed)\n"
    "    return {'task_id': str(seed), 'sim_root': 'r', 'outputs': {\n"
    "        name: dict({'size': len(b), 'checksum': 'c', 'cas_ref': None,\n"
    "                    'inline': base64.b64encode(b).decode()},\n"
    "                   **({'data': b} if data else {}))\n"
    "        for name, b in outs.items()}}\n"
    "original = [replicate(s, False) for s in (1, 2, 3)]\n"
    "original.append({'task_id': 'x', 'sim_root': 'r', 'outputs': {}})\n"
    "current = [dict(replicate(s, True), error=None) for s in (1, 2, 3)]\n"
    "for target in (incidence.mse, incidence.poisson_nll):\n"
    "    a, b = target(original), target(current)\n"
    "    assert a['loss'] == b['loss'], (a, b)\n"
    "    assert a['per_replicate_losses'] == b['per_replicate_losses']\n"
    "    assert a['diagnostics']['n_failed'] == 1, a\n"
    "print('same losses')\n";

static void test_python_targets_read_the_original_form(void **state)
{
    const fixture *fx = *state;
    char command[4096], line[256] = "";
    FILE *f = fopen(tu_path(fx->home, "original_form.py"), "w");
    FILE *p;

    assert_non_null(f);
    fputs(ORIGINAL_FORM_PY, f);
    fclose(f);
    snprintf(command, sizeof(command), "python3 -B %s '%s' 2>&1",
             tu_path(fx->home, "original_form.py"), WX_SIR_PYTHON_BUNDLE);
    p = popen(command, "r");
    assert_non_null(p);
    while (fgets(line, sizeof(line), p))
        fputs(line, stderr);
    assert_int_equal(pclose(p), 0);
    assert_string_equal(line, "same losses\n");
}

/* ---- the benchmark bundle ---- */

/* The output of noop for `seed`: the seed little-endian, then 0x5a. */
static void check_noop_output(const wx_blob *b, size_t len, uint64_t seed)
{
    assert_string_equal(b->name, "out");
    assert_int_equal(b->len, len);
    for (size_t i = 0; i < len; i++) {
        uint8_t want = i < 8 ? (uint8_t)(seed >> (8 * i)) : 0x5a;

        if (b->data[i] != want)
            fail_msg("byte %zu of %zu is %u, expected %u", i, len,
                     b->data[i], want);
    }
}

/*
 * examples/bundles/noop writes its output in place (wx_output_buffer),
 * in both protocol modes: warmexec/1 splices big attachments, compat
 * writes the base64 straight into the reply.  Sizes go up and down so
 * the runner's reused buffers are exercised.
 */
static void test_noop_bundle(void **state)
{
    static const size_t sizes[] = {(5u << 20) + 3, 1, 100000, 0, 7, 8,
                                   (1u << 20) + 1};
    static const wx_worker_spec spec = {
        "sha256:" "e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3"
        "e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3e3",
        WX_NOOP_BUNDLE, "native", native_argv, NULL};
    const fixture *fx = *state;

    for (int attachments = 0; attachments < 2; attachments++) {
        wx_pool_options o = WX_POOL_OPTIONS_INIT;
        wx_error err = WX_ERROR_INIT;
        wx_pool *pool = NULL;
        wx_pool_stats st;
        json_t *bad = tu_json("{\"bytes\": -1}");

        o.home = fx->home;
        o.attachments = attachments;
        o.shutdown_grace = 2;
        assert_ok(wx_pool_new(&o, &pool, &err), &err);
        for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
            char text[64];
            json_t *params;
            wx_blob *blobs = NULL;
            size_t n = 0;
            uint64_t seed = UINT64_C(0x0102030405060708) + k;

            snprintf(text, sizeof(text), "{\"bytes\": %zu}", sizes[k]);
            params = tu_json(text);
            assert_ok(wx_pool_execute(pool, &spec, "noop.model/baseline",
                                      params, (int64_t)seed, &blobs, &n,
                                      NULL, &err),
                      &err);
            assert_int_equal(n, 1);
            check_noop_output(&blobs[0], sizes[k], seed);
            wx_blobs_free(blobs, n);
            json_decref(params);
        }
        assert_fails(wx_pool_execute(pool, &spec, "noop.model/baseline", bad,
                                     1, NULL, NULL, NULL, &err),
                     WX_EMODEL, &err, "parameter 'bytes' must be in");
        wx_pool_stats_get(pool, &st);
        assert_int_equal(st.spawned, 1); /* one warm worker throughout */
        json_decref(bad);
        wx_pool_free(pool);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_c_and_python_outputs_identical),
        cmocka_unit_test(test_no_infection_without_transmission),
        cmocka_unit_test(test_outputs_depend_on_the_seed_alone),
        cmocka_unit_test(test_bad_params_name_the_parameter),
        cmocka_unit_test(test_targets_agree),
        cmocka_unit_test(test_targets_skip_failed_replicates),
        cmocka_unit_test(test_loss_lowest_at_true_params),
        cmocka_unit_test(test_target_errors),
        cmocka_unit_test(test_python_targets_read_the_original_form),
        cmocka_unit_test(test_noop_bundle),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
