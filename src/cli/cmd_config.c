/* warmexec config: the effective configuration and where it came from. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char usage[] =
    "usage: warmexec config [--json]\n\n"
    "Print every setting with its effective value, its source (default,\n"
    "environment or flag), its WARMEXEC_* variable and what it does.\n"
    "  --json   one JSON object per setting, one per line\n";

static int print_entry(cli_ctx *ctx, wx_conf_id id, bool as_json,
                       wx_error *err)
{
    const wx_conf_entry *e = wx_conf_entry_get(id);
    const char *source = wx_conf_source_name(wx_config_source(ctx->cfg, id));
    wx_buf value = WX_BUF_INIT(1 << 16);
    int rc = wx_config_format(ctx->cfg, id, &value, err);

    if (!rc && as_json) {
        json_t *row = json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", e->name,
                                "value", value.data, "source", source, "env",
                                e->env, "doc", e->doc);

        rc = row ? cli_print_json(row, err)
                 : wx_error_set(err, WX_EINVAL, "value is not UTF-8");
        json_decref(row);
    } else if (!rc) {
        printf("%-24s %-40s %-12s %s\n    %s\n", e->name, value.data, source,
               e->env, e->doc);
    }
    wx_buf_release(&value);
    return rc;
}

int cmd_config(cli_ctx *ctx, int argc, char **argv)
{
    wx_error err = WX_ERROR_INIT;
    bool as_json = false;
    int i, rc = EXIT_OK;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage, stdout);
            return EXIT_OK;
        }
        if (strcmp(argv[i], "--json") != 0)
            return cli_usage_error("config", "unknown argument '%s'",
                                   argv[i]);
        as_json = true;
    }
    if (!as_json)
        printf("%-24s %-40s %-12s %s\n", "NAME", "VALUE", "SOURCE",
               "VARIABLE");
    for (i = 0; i < WX_CONF__COUNT && !rc; i++)
        rc = print_entry(ctx, (wx_conf_id)i, as_json, &err);
    return rc ? cli_fail(&err) : EXIT_OK;
}
