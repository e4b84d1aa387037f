/* warmexec aggregate: evaluate a target over replicate results. */
#include <stdio.h>

#include "cli.h"

static const char usage[] =
    "usage: warmexec aggregate [FILE|-] [--bundle DIR|REF] [--no-cache] "
    "[--json]\n\n"
    "Read an AggregationTask JSON object\n"
    "  {\"bundle_ref\", \"target_entrypoint\", \"sim_returns\": [...],\n"
    "   \"target_data\"?}\n"
    "whose sim_returns are SimReturns as 'warmexec task run' prints them,\n"
    "evaluate the target in a warm worker and print the AggregationReturn.\n"
    "Outputs stored in the CAS are loaded for the target, whatever their\n"
    "size.  Exit 0 on success, 1 when the aggregation failed.\n";

static int load(cli_ctx *ctx, const cli_run_opts *o, wx_agg_task *task,
                wx_error *err)
{
    json_t *doc = NULL;
    int rc = cli_read_run_input(ctx, o, &doc, err);

    if (!rc)
        rc = wx_agg_task_from_json(task, doc, err);
    json_decref(doc);
    return rc;
}

static void report_failure(const wx_error *err, const wx_fault *fault)
{
    fprintf(stderr, "warmexec: aggregation failed (%s): %s\n",
            fault->error_type ? fault->error_type : "Error", err->message);
    if (fault->traceback)
        fprintf(stderr, "%s\n", fault->traceback);
    if (fault->stderr_tail)
        fprintf(stderr, "worker stderr (last lines):\n%s\n",
                fault->stderr_tail);
}

static int aggregate(cli_ctx *ctx, const cli_run_opts *o)
{
    wx_error err = WX_ERROR_INIT;
    wx_agg_task task = {0};
    wx_agg_return ret = {0};
    wx_fault fault = {0};
    wx_env *env = NULL;
    json_t *out = NULL;
    int rc = load(ctx, o, &task, &err), status = 0;

    if (!rc)
        rc = cli_open_env(ctx, o, &env, &err);
    if (!rc) {
        status = wx_env_run_aggregation(env, &task, &ret, &fault, &err);
        if (status)
            report_failure(&err, &fault);
        else
            rc = wx_agg_return_to_json(&ret, &out, &err);
    }
    if (!rc && out)
        rc = cli_print_value(out, o->json, &err);
    json_decref(out);
    wx_agg_return_release(&ret);
    wx_agg_task_release(&task);
    wx_fault_release(&fault);
    wx_env_close(env);
    if (rc)
        return cli_fail(&err);
    return status ? EXIT_TASK_FAILED : EXIT_OK;
}

int cmd_aggregate(cli_ctx *ctx, int argc, char **argv)
{
    cli_run_opts o;
    bool done;
    int rc = cli_run_options("aggregate", usage, argc, argv, &o, &done);

    if (rc || done)
        return rc;
    return aggregate(ctx, &o);
}
