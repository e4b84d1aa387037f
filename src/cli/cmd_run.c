/* warmexec run: run a study, with progress, a summary and resume. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#ifdef WX_HAVE_MPI
#include <warmexec/mpi.h>
#endif

#define MAX_TARGET_FLAGS 64

static const char usage[] =
    "usage: warmexec run STUDY.json [--bundle DIR|REF] [--out FILE] [-j N]\n"
    "                    [--target T]... [--no-cache] [--csv DIR] [--json]\n\n"
    "Run every (parameter set x replicate) task of a ModelOps\n"
    "SimulationStudy or SimJob file in warm workers, then one aggregation\n"
    "per parameter set and target, and record everything in a SQLite\n"
    "results database (docs/results.md).\n\n"
    "  --bundle DIR|REF  the bundle (a directory is added to the store)\n"
    "  --out FILE        the results database (default results.db)\n"
    "  -j N              parallel workers (default: the number of CPUs)\n"
    "  --target T        a target entrypoint; repeatable (default: the\n"
    "                    study's targets, else the bundle's)\n"
    "  --no-cache        neither read nor write the result cache\n"
    "  --csv DIR         also write sims.csv and aggregations.csv\n"
    "  --json            print the summary as JSON\n\n"
    "Ctrl-C stops cleanly (in-flight tasks finish, everything done is\n"
    "recorded); a second Ctrl-C abandons them.  Running the same command\n"
    "again resumes.  Exit: 0 all ok, 1 some tasks failed, 2 usage, 3 bad\n"
    "input, 4 system failure, 130 interrupted.\n";

typedef struct run_args {
    const char *study, *bundle, *out, *csv, *jobs;
    const char *targets[MAX_TARGET_FLAGS + 1];
    size_t n_targets;
    bool no_cache, json;
} run_args;

static volatile sig_atomic_t stop_flag;

static void on_sigint(int sig)
{
    static const char msg[] =
        "\nwarmexec: stopping after the tasks in flight (Ctrl-C again to "
        "abandon them)\n";

    if (stop_flag) {
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_flag = 1;
    if (write(2, msg, sizeof(msg) - 1) < 0)
        return;
}

static int parse(int argc, char **argv, run_args *a, bool *done)
{
    static const struct option options[] = {
        {"help", no_argument, NULL, 'h'},
        {"bundle", required_argument, NULL, 'b'},
        {"out", required_argument, NULL, 'o'},
        {"target", required_argument, NULL, 't'},
        {"no-cache", no_argument, NULL, 'n'},
        {"csv", required_argument, NULL, 'c'},
        {"json", no_argument, NULL, 'J'},
        {NULL, 0, NULL, 0}};
    int c;

    *done = false;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "hj:", options, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(usage, stdout);
            *done = true;
            return EXIT_OK;
        case 'b': a->bundle = optarg; break;
        case 'o': a->out = optarg; break;
        case 'j': a->jobs = optarg; break;
        case 'n': a->no_cache = true; break;
        case 'c': a->csv = optarg; break;
        case 'J': a->json = true; break;
        case 't':
            if (a->n_targets == MAX_TARGET_FLAGS)
                return cli_usage_error("run", "too many --target flags");
            a->targets[a->n_targets++] = optarg;
            break;
        default:
            return cli_usage_error("run", "unknown or incomplete option '%s'",
                                   argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("run", "expected one STUDY file");
    a->study = argv[optind];
    return EXIT_OK;
}

/* "1m05s", "3.2s", "2h01m". */
static void format_duration(double s, char *out, size_t max)
{
    if (s < 0)
        snprintf(out, max, "?");
    else if (s < 60)
        snprintf(out, max, "%.1fs", s);
    else if (s < 3600)
        snprintf(out, max, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf(out, max, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

/* On a terminal: one line rewritten in place; otherwise a log line. */
static void show_progress(void *user, const wx_run_progress *p, bool final)
{
    bool tty = *(bool *)user;
    char eta[32];

    format_duration(p->eta_s, eta, sizeof(eta));
    fprintf(stderr,
            "%s[%zu/%zu] %.1f tasks/s  ETA %s  failed %zu  cached %zu"
            "  resumed %zu  aggregations %zu/%zu%s",
            tty ? "\r\033[K" : "warmexec: ", p->done + p->skipped, p->total,
            p->rate, eta, p->failed, p->cached, p->skipped, p->aggs_done,
            p->aggs_total, tty && !final ? "" : "\n");
    fflush(stderr);
}

static void print_summary(const wx_study *st, const wx_run_summary *s)
{
    const wx_run_progress *p = &s->progress;
    char took[32];

    format_duration(p->elapsed_s, took, sizeof(took));
    printf("study        %s: %zu parameter sets, %zu tasks\n", st->path,
           st->n_sets, p->total);
    printf("simulations  %zu ok, %zu failed (this run: %zu ran, %zu from "
           "the cache, %zu already recorded)\n",
           s->sims_ok, s->sims_failed, p->done - p->cached, p->cached,
           p->skipped);
    printf("aggregations %zu ok, %zu failed\n", s->aggs_ok, s->aggs_failed);
    printf("time         %s (%.1f tasks/s)%s\n", took, p->rate,
           s->interrupted ? ", interrupted" : "");
    for (size_t i = 0; i < s->n_errors; i++)
        printf("%s %s: %zu\n", i ? "            " : "failures    ",
               s->errors[i].type, s->errors[i].count);
    for (size_t i = 0; i < s->n_best; i++) {
        if (i == 0 || strcmp(s->best[i].target, s->best[i - 1].target))
            printf("best by %s:\n", s->best[i].target);
        printf("  %-14.6g %s\n", s->best[i].loss, s->best[i].params);
    }
    printf("results      %s (tables runs, sims, aggregations; view "
           "losses)\n",
           s->results_path);
}

static int print_summary_json(const wx_run_summary *s, wx_error *err)
{
    const wx_run_progress *p = &s->progress;
    json_t *v = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:b,s:s,s:{},s:[]}", "tasks",
        (json_int_t)p->total, "ok", (json_int_t)s->sims_ok, "failed",
        (json_int_t)s->sims_failed, "cached", (json_int_t)p->cached,
        "resumed", (json_int_t)p->skipped, "aggregations_ok",
        (json_int_t)s->aggs_ok, "aggregations_failed",
        (json_int_t)s->aggs_failed, "seconds", p->elapsed_s, "tasks_per_s",
        p->rate, "interrupted", s->interrupted, "results", s->results_path,
        "failures", "best");
    int rc;

    for (size_t i = 0; v && i < s->n_errors; i++)
        json_object_set_new(json_object_get(v, "failures"), s->errors[i].type,
                            json_integer((json_int_t)s->errors[i].count));
    for (size_t i = 0; v && i < s->n_best; i++) {
        json_t *params = NULL;

        wx_json_parse(s->best[i].params, strlen(s->best[i].params), &params,
                      NULL);
        json_array_append_new(json_object_get(v, "best"),
                              json_pack("{s:s,s:s,s:f,s:o}", "target",
                                        s->best[i].target, "param_id",
                                        s->best[i].param_id, "loss",
                                        s->best[i].loss, "params",
                                        params ? params : json_null()));
    }
    rc = v ? cli_print_value(v, true, err)
           : wx_error_set(err, WX_ENOMEM, "out of memory");
    json_decref(v);
    return rc;
}

/* What every rank does first (cmd_run has set -j): the bundle. */
static int setup_engine(cli_ctx *ctx, const run_args *a,
                        char ref[WX_DIGEST_LEN + 1], wx_error *err)
{
    return a->bundle ? cli_bundle_ref(ctx, a->bundle, ref, err) : 0;
}

static int setup(cli_ctx *ctx, const run_args *a, wx_study *st,
                 char ref[WX_DIGEST_LEN + 1], wx_error *err)
{
    int rc = setup_engine(ctx, a, ref, err);

    if (!rc)
        rc = wx_study_load(a->study,
                           (size_t)wx_config_int(ctx->cfg,
                                                 WX_CONF_MAX_INPUT_BYTES),
                           st, err);
    return rc;
}

/* A worker that went away is a crash to report, not a reason to die. */
static void ignore_sigpipe(void)
{
    signal(SIGPIPE, SIG_IGN);
    wx_pool_sigpipe_ignored();
}

/*
 * A distributed run says up front that it can be resumed: when a rank dies
 * the launcher kills the others, and what rank 0 writes then may not reach
 * the job's output before the launcher exits.
 */
static void announce_ranks(int ranks)
{
    if (ranks == 2)
        fputs("warmexec: 2 MPI ranks: rank 0 records results, rank 1 runs "
              "tasks", stderr);
    else
        fprintf(stderr, "warmexec: %d MPI ranks: rank 0 records results, "
                "ranks 1-%d run tasks", ranks, ranks - 1);
    fputs("; if the job ends early, run the same command again to "
          "resume\n", stderr);
}

/*
 * Run the study here, or on the `ranks` MPI ranks `maker`'s service
 * reaches (0: a local run).
 */
static int run_study(cli_ctx *ctx, const run_args *a, wx_service_maker maker,
                     void *maker_user, int ranks)
{
    char ref[WX_DIGEST_LEN + 1];
    wx_error err = WX_ERROR_INIT;
    wx_run_summary sum = {0};
    wx_study st = {0};
    bool tty = isatty(2);
    wx_run_options o;
    int rc = setup(ctx, a, &st, ref, &err);

    if (rc)
        return cli_fail(&err);
    if (ranks > 1)
        announce_ranks(ranks);
    o = (wx_run_options){.bundle_ref = a->bundle ? ref : NULL,
                         .targets = a->targets,
                         .results_path = a->out,
                         .csv_dir = a->csv,
                         .no_cache = a->no_cache,
                         .progress = show_progress,
                         .progress_user = &tty,
                         .progress_interval = tty ? 0.2 : 5.0,
                         .stop = &stop_flag,
                         .make_service = maker,
                         .service_user = maker_user};
    signal(SIGINT, on_sigint);
    ignore_sigpipe();
    rc = wx_study_run(ctx->cfg, &st, &o, &sum, &err);
    signal(SIGINT, SIG_DFL);
    if (!rc || rc == WX_EMODEL || rc == WX_ECANCELED) {
        show_progress(&tty, &sum.progress, true);
        if (a->json)
            print_summary_json(&sum, &err);
        else
            print_summary(&st, &sum);
    }
    wx_run_summary_release(&sum);
    wx_study_release(&st);
    if (rc == WX_ECANCELED) {
        fprintf(stderr, "warmexec: %s\n", err.message);
        return 130;
    }
    if (rc == WX_EMODEL)
        return EXIT_TASK_FAILED;
    return rc ? cli_fail(&err) : EXIT_OK;
}

#ifdef WX_HAVE_MPI
/*
 * mpirun and srun end a job with SIGTERM when one of its ranks dies, on
 * Ctrl-C and at a time limit: say what that means for the study.
 */
static void on_launcher_sigterm(int sig)
{
    static const char msg[] =
        "warmexec: the MPI launcher is ending the job (a rank that died, "
        "Ctrl-C or a time limit: see its message); every result recorded "
        "so far is kept: run the same command again to resume\n";

    if (write(2, msg, sizeof(msg) - 1) < 0)
        return;
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Ranks 1..N-1: serve rank 0, which reports any failure to start. */
static int serve_rank(cli_ctx *ctx, const run_args *a, int rank)
{
    char ref[WX_DIGEST_LEN + 1];
    wx_error setup_err = WX_ERROR_INIT, err = WX_ERROR_INIT;
    int rc = setup_engine(ctx, a, ref, &setup_err);

    ignore_sigpipe();
    if (wx_mpi_serve(ctx->cfg, rc ? &setup_err : NULL, &err) != 0) {
        wx_error_prefix(&err, err.code, "MPI rank %d", rank);
        return cli_fail(&err);
    }
    return EXIT_OK;
}

/* Under mpirun or srun: rank 0 runs the study, the others serve it. */
static int run_mpi(cli_ctx *ctx, const run_args *a)
{
    wx_error err = WX_ERROR_INIT;
    wx_mpi_world w;
    int rc;

    if (wx_mpi_init(NULL, NULL, &w, &err) != 0)
        return cli_fail(&err);
    if (w.size == 1) {
        rc = run_study(ctx, a, NULL, NULL, 0);
    } else if (w.rank == 0) {
        wx_mpi_options mo = {.cfg = ctx->cfg};

        signal(SIGTERM, on_launcher_sigterm);
        rc = run_study(ctx, a, wx_mpi_service_maker, &mo, w.size);
        wx_mpi_stop_workers();
    } else {
        rc = serve_rank(ctx, a, w.rank);
    }
    wx_mpi_finalize();
    return rc;
}
#endif

int cmd_run(cli_ctx *ctx, int argc, char **argv)
{
    run_args a = {.out = "results.db"};
    wx_error err = WX_ERROR_INIT;
    bool done;
    int rc = parse(argc, argv, &a, &done);

    if (rc || done)
        return rc;
    if (a.jobs && wx_config_set(ctx->cfg, WX_CONF_JOBS, a.jobs,
                                WX_CONF_FROM_FLAG, &err) != 0)
        return cli_usage_error("run", "-j: %s", err.message);
#ifdef WX_HAVE_MPI
    if (wx_mpi_launched())
        return run_mpi(ctx, &a);
#endif
    return run_study(ctx, &a, NULL, NULL, 0);
}
