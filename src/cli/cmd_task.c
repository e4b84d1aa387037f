/* warmexec task: commands on one SimTask. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: warmexec task ids [FILE|-]\n\n"
    "Read one SimTask JSON object from FILE (default: standard input):\n"
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

int cmd_task(cli_ctx *ctx, int argc, char **argv)
{
    bool done;
    int first, rc = cli_simple_options("task", usage, argc, argv, &first,
                                       &done);

    if (rc || done)
        return rc;
    if (first >= argc)
        return cli_usage_error("task", "missing subcommand (ids)");
    if (strcmp(argv[first], "ids") == 0)
        return task_ids_main(ctx, argc - first, argv + first);
    return cli_usage_error("task", "unknown subcommand '%s'", argv[first]);
}
