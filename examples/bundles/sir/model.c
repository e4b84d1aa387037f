/*
 * A stochastic SIR model (chain-binomial, daily steps) and two targets
 * that compare its daily incidence with observed data, as a native
 * warmexec bundle.  See README.md for the parameters and outputs.
 *
 *   simulation "sir.model/baseline"      outputs "incidence", "prevalence"
 *   target "targets.incidence:mse"          mean squared error per day
 *   target "targets.incidence:poisson_nll"  Poisson negative log-likelihood
 *
 * ../sir-python/wire.py is the same model in Python; for the same
 * parameters and seed both write byte-identical outputs.  That holds
 * because every random draw below is specified to the operation:
 *
 *   splitmix64(x):  x = x + 0x9e3779b97f4a7c15; z = x;
 *                   z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
 *                   z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
 *                   return z ^ (z >> 31)                 (all mod 2^64)
 *   seeding:        x = seed; s[0], s[1], s[2], s[3] = four successive
 *                   splitmix64(x) outputs
 *   next():         xoshiro256** (Blackman and Vigna, 2018)
 *   uniform():      (next() >> 11) * 2^-53, in [0, 1)
 *   binomial(n, p): n <= 0 or p <= 0: 0, without a draw;
 *                   p >= 1: n, without a draw;
 *                   p > 0.5: n - binomial(n, 1 - p);
 *                   n * p < 30: inversion by pmf recursion,
 *                       q = 1 - p; odds = p / q; pmf = pow(q, n);
 *                       u = uniform(); k = 0;
 *                       while (u > pmf and k < n)
 *                           u = u - pmf; k = k + 1;
 *                           pmf = ((pmf * odds) * (n - k + 1)) / k;
 *                       return k;
 *                   otherwise the normal approximation (Box-Muller),
 *                       u1 = uniform(); u2 = uniform();
 *                       z = sqrt(-2 * log(1 - u1)) * cos(TWO_PI * u2);
 *                       mean = n * p; sd = sqrt(mean * (1 - p));
 *                       x = floor((mean + sd * z) + 0.5), clamped to [0, n]
 *   day d = 0 .. days-1, from the counts S, I at the start of the day:
 *                   p_inf = 1 - exp(-((beta * I) / N));
 *                   new_inf = binomial(S, p_inf);
 *                   new_rec = binomial(I, 1 - exp(-gamma));
 *                   S = S - new_inf; I = I + new_inf - new_rec
 *
 * Arithmetic is IEEE-754 double, round to nearest, with the C library's
 * exp, log, pow, sqrt and cos (which Python's math module calls too);
 * integers convert to double exactly (population <= 10^9).  A fused
 * multiply-add would round differently, so no statement below multiplies
 * and adds in one expression (compilers contract only within one; gcc
 * with -std=c11 not at all).
 */
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <warmexec/model.h>

#define TWO_PI 6.283185307179586 /* the double nearest 2 pi (math.tau) */
#define INVERSION_LIMIT 30.0     /* n * p below it: inversion */
#define MAX_POPULATION INT64_C(1000000000)
#define MAX_DAYS INT64_C(10000)
#define RATE_FLOOR 1e-9 /* smallest Poisson rate: log() stays finite */
#define OBSERVED_FILE "data/observed_incidence.csv"

/* ---- random numbers ---- */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** */
static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static double rng_uniform(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

/* For n * p < INVERSION_LIMIT and p <= 0.5: pow(q, n) cannot underflow. */
static int64_t binomial_inversion(rng *r, int64_t n, double p)
{
    double q = 1.0 - p;
    double odds = p / q;
    double pmf = pow(q, (double)n);
    double u = rng_uniform(r);
    int64_t k = 0;

    while (u > pmf && k < n) {
        u -= pmf;
        k++;
        pmf = pmf * odds * (double)(n - k + 1) / (double)k;
    }
    return k;
}

static int64_t binomial_normal(rng *r, int64_t n, double p)
{
    double u1 = rng_uniform(r);
    double u2 = rng_uniform(r);
    double z = sqrt(-2.0 * log(1.0 - u1)) * cos(TWO_PI * u2);
    double mean = (double)n * p;
    double sd = sqrt(mean * (1.0 - p));
    double spread = sd * z;
    double x = floor(mean + spread + 0.5);

    if (x < 0.0)
        return 0;
    return x > (double)n ? n : (int64_t)x;
}

static int64_t binomial(rng *r, int64_t n, double p)
{
    if (n <= 0 || p <= 0.0)
        return 0;
    if (p >= 1.0)
        return n;
    if (p > 0.5)
        return n - binomial(r, n, 1.0 - p);
    if ((double)n * p < INVERSION_LIMIT)
        return binomial_inversion(r, n, p);
    return binomial_normal(r, n, p);
}

/* ---- parameters ---- */

typedef struct sir_params {
    double beta;  /* transmission rate per day */
    double gamma; /* recovery rate per day */
    int64_t population;
    int64_t initial_infected;
    int64_t days;
} sir_params;

/* Optional integer parameter `name`, else `fallback`. */
static int int_param(wx_sim_ctx *ctx, const char *name, int64_t fallback,
                     int64_t *out)
{
    *out = fallback;
    if (wx_has_param(ctx, name) && wx_param_int(ctx, name, out))
        return -1; /* the runner's message names the parameter */
    return 0;
}

static int out_of_range(wx_sim_ctx *ctx, const char *name, int64_t value,
                        int64_t lo, int64_t hi)
{
    return wx_sim_fail(ctx,
                       "parameter '%s' must be in %" PRId64 "..%" PRId64
                       ", got %" PRId64,
                       name, lo, hi, value);
}

/* The parameters, checked in this order (wire.py checks the same way). */
static int read_params(wx_sim_ctx *ctx, sir_params *p)
{
    if (wx_param_double(ctx, "beta", &p->beta))
        return -1;
    if (!isfinite(p->beta) || p->beta < 0.0)
        return wx_sim_fail(ctx, "parameter 'beta' must be >= 0, got %g",
                           p->beta);
    if (wx_param_double(ctx, "gamma", &p->gamma))
        return -1;
    if (!(p->gamma > 0.0 && p->gamma <= 1.0))
        return wx_sim_fail(ctx, "parameter 'gamma' must be in (0, 1], got %g",
                           p->gamma);
    if (int_param(ctx, "population", 10000, &p->population))
        return -1;
    if (p->population < 1 || p->population > MAX_POPULATION)
        return out_of_range(ctx, "population", p->population, 1,
                            MAX_POPULATION);
    if (int_param(ctx, "initial_infected", 10, &p->initial_infected))
        return -1;
    if (p->initial_infected < 0 || p->initial_infected > p->population)
        return wx_sim_fail(ctx,
                           "parameter 'initial_infected' must be in "
                           "0..population (%" PRId64 "), got %" PRId64,
                           p->population, p->initial_infected);
    if (int_param(ctx, "days", 120, &p->days))
        return -1;
    if (p->days < 1 || p->days > MAX_DAYS)
        return out_of_range(ctx, "days", p->days, 1, MAX_DAYS);
    return 0;
}

/* ---- simulation ---- */

/* New infections and end-of-day prevalence for each day. */
static void simulate(const sir_params *p, uint64_t seed, int64_t *incidence,
                     int64_t *prevalence)
{
    double p_recover = 1.0 - exp(-p->gamma);
    int64_t susceptible = p->population - p->initial_infected;
    int64_t infected = p->initial_infected;
    rng r;

    rng_seed(&r, seed);
    for (int64_t day = 0; day < p->days; day++) {
        double force = p->beta * (double)infected / (double)p->population;
        int64_t infections = binomial(&r, susceptible, 1.0 - exp(-force));
        int64_t recoveries = binomial(&r, infected, p_recover);

        susceptible -= infections;
        infected += infections - recoveries;
        incidence[day] = infections;
        prevalence[day] = infected;
    }
}

/* Add output `name` as the CSV "day,<name>\n0,<v0>\n1,<v1>\n...". */
static int add_series(wx_sim_ctx *ctx, const char *name,
                      const int64_t *values, int64_t days)
{
    /* a row is at most two 20-digit numbers, a comma and a newline */
    size_t cap = 8 + strlen(name) + (size_t)days * 42;
    char *text = malloc(cap);
    size_t used;
    int rc;

    if (!text)
        return wx_sim_fail(ctx, "out of memory for output '%s'", name);
    used = (size_t)snprintf(text, cap, "day,%s\n", name);
    for (int64_t day = 0; day < days; day++)
        used += (size_t)snprintf(text + used, cap - used,
                                 "%" PRId64 ",%" PRId64 "\n", day,
                                 values[day]);
    rc = wx_output(ctx, name, text, used);
    free(text);
    return rc;
}

static int sir_baseline(wx_sim_ctx *ctx, void *user)
{
    sir_params p;
    int64_t *incidence, *prevalence;
    int rc;

    (void)user;
    if (read_params(ctx, &p) != 0)
        return -1;
    incidence = malloc((size_t)p.days * sizeof(*incidence));
    prevalence = malloc((size_t)p.days * sizeof(*prevalence));
    if (!incidence || !prevalence)
        rc = wx_sim_fail(ctx, "out of memory for %" PRId64 " days", p.days);
    else {
        simulate(&p, wx_seed(ctx), incidence, prevalence);
        rc = add_series(ctx, "incidence", incidence, p.days);
        if (rc == 0)
            rc = add_series(ctx, "prevalence", prevalence, p.days);
    }
    free(incidence);
    free(prevalence);
    return rc;
}

/* ---- series CSV ---- */

/* The observed incidence, loaded once by wx_model_init. */
typedef struct series {
    int64_t *values;
    size_t n;
} series;

static series observed;

static bool skip_text(const char **p, const char *end, const char *text)
{
    size_t len = strlen(text);

    if ((size_t)(end - *p) < len || memcmp(*p, text, len) != 0)
        return false;
    *p += len;
    return true;
}

/* A count of 1 to 15 digits at *p, or -1. */
static int64_t read_count(const char **p, const char *end)
{
    int64_t value = 0;
    int digits = 0;

    for (; *p < end && **p >= '0' && **p <= '9' && digits <= 15; (*p)++) {
        value = value * 10 + (**p - '0');
        digits++;
    }
    return digits >= 1 && digits <= 15 ? value : -1;
}

/*
 * Parse "day,<column>\n" and then rows "<day>,<count>\n" for days 0, 1,
 * ... (the last newline may be missing) into at most `max` values.
 * The number of rows, or -1 with the reason in `why`.
 */
static long parse_series(const char *text, size_t len, const char *column,
                         int64_t *values, size_t max, char *why,
                         size_t why_len)
{
    const char *p = text, *end = text + len;
    size_t n = 0;

    if (!skip_text(&p, end, "day,") || !skip_text(&p, end, column) ||
        !skip_text(&p, end, "\n")) {
        snprintf(why, why_len, "the header is not 'day,%s'", column);
        return -1;
    }
    while (p < end) {
        int64_t day = read_count(&p, end);
        int64_t count = skip_text(&p, end, ",") ? read_count(&p, end) : -1;

        if (day < 0 || count < 0 || (p < end && !skip_text(&p, end, "\n"))) {
            snprintf(why, why_len, "row %zu is not '<day>,<count>'", n + 1);
            return -1;
        }
        if ((size_t)day != n) {
            snprintf(why, why_len, "row %zu is day %" PRId64 ", expected %zu",
                     n + 1, day, n);
            return -1;
        }
        if (n == max) {
            snprintf(why, why_len, "more than %zu rows", max);
            return -1;
        }
        values[n++] = count;
    }
    return (long)n;
}

/* The whole file, or NULL (one spare byte: never malloc(0)). */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    long size;

    if (f && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 &&
        fseek(f, 0, SEEK_SET) == 0 && (text = malloc((size_t)size + 1)) &&
        fread(text, 1, (size_t)size, f) == (size_t)size)
        *len = (size_t)size;
    else {
        free(text);
        text = NULL;
    }
    if (f)
        fclose(f);
    return text;
}

/* Load <bundle>/OBSERVED_FILE; errors go to stderr (the worker log). */
static int load_observed(const char *bundle, series *out)
{
    char path[4096], why[128];
    size_t len = 0, rows = 1;
    char *text;
    long n = -1;

    snprintf(path, sizeof(path), "%s/%s", bundle, OBSERVED_FILE);
    text = read_file(path, &len);
    if (!text) {
        fprintf(stderr, "sir: cannot read %s\n", path);
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        rows += text[i] == '\n';
    out->values = malloc(rows * sizeof(*out->values));
    if (out->values)
        n = parse_series(text, len, "incidence", out->values, rows, why,
                         sizeof(why));
    else
        snprintf(why, sizeof(why), "out of memory");
    free(text);
    if (n <= 0) {
        fprintf(stderr, "sir: %s: %s\n", path, n == 0 ? "no rows" : why);
        free(out->values);
        out->values = NULL;
        return -1;
    }
    out->n = (size_t)n;
    return 0;
}

/* ---- targets ---- */

/* The simulated incidence of the replicates that ran. */
typedef struct replicates {
    size_t n;          /* replicates given */
    size_t n_ok;       /* of which ran */
    size_t n_days;     /* = observed days */
    int64_t *values;   /* n rows of n_days: row i when ok[i] */
    bool *ok;
} replicates;

static void free_replicates(replicates *reps)
{
    free(reps->values);
    free(reps->ok);
}

static int read_replicate(wx_target_ctx *ctx, size_t i, int64_t *row,
                          size_t n_days)
{
    const void *data;
    size_t len;
    char why[128];
    long n;

    if (wx_replicate_output(ctx, i, "incidence", &data, &len) != 0)
        return wx_target_fail(ctx, "replicate %zu has no output 'incidence'",
                              i);
    n = parse_series(data, len, "incidence", row, n_days, why, sizeof(why));
    if (n < 0)
        return wx_target_fail(ctx, "replicate %zu: output 'incidence': %s", i,
                              why);
    if ((size_t)n != n_days)
        return wx_target_fail(ctx,
                              "replicate %zu has %ld days of incidence, "
                              "the observed data has %zu",
                              i, n, n_days);
    return 0;
}

/* Read every replicate; fails unless all that ran are well formed. */
static int read_replicates(wx_target_ctx *ctx, const series *obs,
                           replicates *reps)
{
    *reps = (replicates){wx_n_replicates(ctx), 0, obs->n, NULL, NULL};
    if (reps->n == 0)
        return wx_target_fail(ctx, "no replicates to compare");
    reps->values = malloc(reps->n * obs->n * sizeof(*reps->values));
    reps->ok = calloc(reps->n, sizeof(*reps->ok));
    if (!reps->values || !reps->ok)
        return wx_target_fail(ctx, "out of memory for %zu replicates",
                              reps->n);
    for (size_t i = 0; i < reps->n; i++) {
        if (wx_replicate_failed(ctx, i))
            continue;
        if (read_replicate(ctx, i, reps->values + i * obs->n, obs->n) != 0)
            return -1;
        reps->ok[i] = true;
        reps->n_ok++;
    }
    if (reps->n_ok == 0)
        return wx_target_fail(ctx,
                              "every replicate failed (%zu of %zu): no "
                              "incidence to compare",
                              reps->n, reps->n);
    return 0;
}

static int set_diagnostics(wx_target_ctx *ctx, const char *target,
                           const replicates *reps)
{
    char json[256];

    snprintf(json, sizeof(json),
             "{\"target\":\"%s\",\"n_days\":%zu,\"n_replicates\":%zu,"
             "\"n_failed\":%zu}",
             target, reps->n_days, reps->n, reps->n - reps->n_ok);
    return wx_set_diagnostics(ctx, json);
}

static double mean_squared_error(const int64_t *sim, const series *obs)
{
    double sum = 0.0;

    for (size_t d = 0; d < obs->n; d++) {
        double diff = (double)(sim[d] - obs->values[d]);
        double square = diff * diff;

        sum += square;
    }
    return sum / (double)obs->n;
}

/* Loss: the mean over replicates of each one's mean squared error. */
static int incidence_mse(wx_target_ctx *ctx, void *user)
{
    const series *obs = user;
    replicates reps;
    double total = 0.0;
    int rc = read_replicates(ctx, obs, &reps);

    for (size_t i = 0; rc == 0 && i < reps.n; i++) {
        if (reps.ok[i]) {
            double loss = mean_squared_error(reps.values + i * obs->n, obs);

            wx_set_replicate_loss(ctx, i, loss);
            total += loss;
        }
    }
    if (rc == 0) {
        wx_set_loss(ctx, total / (double)reps.n_ok);
        rc = set_diagnostics(ctx, "incidence_mse", &reps);
    }
    free_replicates(&reps);
    return rc;
}

/* sum over days of rate - obs * ln(rate) + ln(obs!) */
static double poisson_nll(const double *rate, const series *obs)
{
    double sum = 0.0;

    for (size_t d = 0; d < obs->n; d++) {
        double k = (double)obs->values[d];
        double weighted_log = k * log(rate[d]);
        double term = rate[d] - weighted_log;

        term += lgamma(k + 1.0);
        sum += term;
    }
    return sum;
}

/* The floored rates of one replicate, or the mean of those that ran. */
static void replicate_rates(const replicates *reps, size_t i, double *rate)
{
    for (size_t d = 0; d < reps->n_days; d++)
        rate[d] = fmax((double)reps->values[i * reps->n_days + d], RATE_FLOOR);
}

static void mean_rates(const replicates *reps, double *rate)
{
    for (size_t d = 0; d < reps->n_days; d++) {
        int64_t sum = 0;

        for (size_t i = 0; i < reps->n; i++)
            if (reps->ok[i])
                sum += reps->values[i * reps->n_days + d];
        rate[d] = fmax((double)sum / (double)reps->n_ok, RATE_FLOOR);
    }
}

/*
 * Loss: the Poisson negative log-likelihood of the observed incidence
 * when day d's rate is the mean simulated incidence of day d; each
 * replicate's loss uses its own incidence as the rates.
 */
static int incidence_poisson_nll(wx_target_ctx *ctx, void *user)
{
    const series *obs = user;
    replicates reps;
    double *rate = malloc(obs->n * sizeof(*rate));
    int rc = read_replicates(ctx, obs, &reps);

    if (rc == 0 && !rate)
        rc = wx_target_fail(ctx, "out of memory for %zu days", obs->n);
    for (size_t i = 0; rc == 0 && i < reps.n; i++) {
        if (reps.ok[i]) {
            replicate_rates(&reps, i, rate);
            wx_set_replicate_loss(ctx, i, poisson_nll(rate, obs));
        }
    }
    if (rc == 0) {
        mean_rates(&reps, rate);
        wx_set_loss(ctx, poisson_nll(rate, obs));
        rc = set_diagnostics(ctx, "incidence_poisson_nll", &reps);
    }
    free(rate);
    free_replicates(&reps);
    return rc;
}

/*
 * Load the observed data here, once per worker: the targets then only
 * read it.  The worker's working directory is a scratch directory, so
 * the file is found through the bundle path.
 */
int wx_model_init(wx_model_registry *reg)
{
    if (load_observed(wx_model_bundle_path(reg), &observed) != 0)
        return -1;
    if (wx_model_register_sim(reg, "sir.model/baseline", sir_baseline,
                              NULL) ||
        wx_model_register_target(reg, "targets.incidence:mse", incidence_mse,
                                 &observed) ||
        wx_model_register_target(reg, "targets.incidence:poisson_nll",
                                 incidence_poisson_nll, &observed))
        return -1;
    return 0;
}
