/* warmexec task: commands on one SimTask. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: warmexec task ids [FILE|-]\n"
    "       warmexec task run [FILE|-] [--bundle DIR|REF] [--no-cache] "
    "[--json]\n\n"
    "run: run the task in a warm worker and print its SimReturn (inline\n"
    "artifacts as base64, stored ones as cas:// refs).  --bundle gives the\n"
    "bundle (a directory is added to the store first) and replaces the\n"
    "task's bundle_ref; --no-cache neither reads nor writes the result\n"
    "cache; --json prints one line.  Exit 0 on success, 1 when the task\n"
    "failed (the SimReturn then carries the error).\n\n"
    "ids: read one SimTask JSON object from FILE (default: standard input):\n"
    "  {\"bundle_ref\", \"entrypoint\", \"params\", \"seed\",\n"
    "   \"outputs\"?, \"config\"?, \"env\"?}\n"
    "and print its identifiers as canonical JSON:\n"
    "  {\"param_id\":...,\"sim_root\":...,\"task_id\":...}\n"
    "task_id is SimTask.task_id() of modelops-contracts: it covers the\n"
    "requested outputs (null or absent = all).  An invalid task is one\n"
    "line on stderr naming the field and the rule, and exit code 3.\n";

static int print_ids(const wx_task *t, wx_error *err)
{
    char sim_root[WX_ID_LEN + 1], task_id[WX_ID_LEN + 1];
    json_t *ids;
    int rc = wx_task_sim_root(t, sim_root, err);

    if (!rc)
        rc = wx_task_task_id(t, task_id, err);
    if (rc)
        return rc;
    ids = json_pack("{s:s,s:s,s:s}", "param_id", t->param_id, "sim_root",
                    sim_root, "task_id", task_id);
    if (!ids)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    rc = cli_print_json(ids, err);
    json_decref(ids);
    return rc;
}

static int task_ids(cli_ctx *ctx, const char *path)
{
    wx_error err = WX_ERROR_INIT;
    wx_task task = {0};
    json_t *doc = NULL;
    int rc = cli_read_json(ctx, path, &doc, &err);

    if (!rc)
        rc = wx_task_from_json(&task, doc, &err);
    if (!rc)
        rc = print_ids(&task, &err);
    wx_task_release(&task);
    json_decref(doc);
    return rc ? cli_fail(&err) : EXIT_OK;
}

static int task_ids_main(cli_ctx *ctx, int argc, char **argv)
{
    bool done;
    int first, rc = cli_simple_options("task ids", usage, argc, argv,
                                       &first, &done);

    if (rc || done)
        return rc;
    if (argc - first > 1)
        return cli_usage_error("task ids", "expected at most one FILE");
    return task_ids(ctx, first < argc ? argv[first] : "-");
}

/* Read the task, with --bundle replacing its bundle_ref. */
static int load_task(cli_ctx *ctx, const cli_run_opts *o, wx_task *task,
                     wx_error *err)
{
    json_t *doc = NULL;
    int rc = cli_read_run_input(ctx, o, &doc, err);

    if (!rc)
        rc = wx_task_from_json(task, doc, err);
    json_decref(doc);
    return rc;
}

static int task_run(cli_ctx *ctx, const cli_run_opts *o)
{
    wx_error err = WX_ERROR_INIT;
    wx_sim_return ret = {0};
    wx_task task = {0};
    wx_env *env = NULL;
    json_t *out = NULL;
    int rc = load_task(ctx, o, &task, &err), status;

    if (!rc)
        rc = cli_open_env(ctx, o, &env, &err);
    if (rc) {
        wx_task_release(&task);
        return cli_fail(&err);
    }
    status = wx_env_run(env, &task, &ret);
    rc = wx_sim_return_to_json(&ret, &out, &err);
    if (!rc)
        rc = cli_print_value(out, o->json, &err);
    if (!rc && status && ret.error)
        fprintf(stderr, "warmexec: task failed (%s): %s\n",
                ret.error->error_type, ret.error->message);
    json_decref(out);
    wx_sim_return_release(&ret);
    wx_task_release(&task);
    wx_env_close(env);
    if (rc)
        return cli_fail(&err);
    return status ? EXIT_TASK_FAILED : EXIT_OK;
}

int cmd_task(cli_ctx *ctx, int argc, char **argv)
{
    cli_run_opts o;
    bool done;
    int first, rc = cli_simple_options("task", usage, argc, argv, &first,
                                       &done);

    if (rc || done)
        return rc;
    if (first >= argc)
        return cli_usage_error("task", "missing subcommand (ids, run)");
    if (strcmp(argv[first], "ids") == 0)
        return task_ids_main(ctx, argc - first, argv + first);
    if (strcmp(argv[first], "run") != 0)
        return cli_usage_error("task", "unknown subcommand '%s'",
                               argv[first]);
    rc = cli_run_options("task run", usage, argc - first, argv + first, &o,
                         &done);
    if (rc || done)
        return rc;
    return task_run(ctx, &o);
}
