/* warmexec canon: print canonical JSON. */
#include <stdio.h>

#include "cli.h"

static const char usage[] =
    "usage: warmexec canon [FILE|-]\n\n"
    "Read one JSON document from FILE (default: standard input) and print\n"
    "its canonical form and a newline: keys sorted by code point, no\n"
    "whitespace, raw UTF-8, floats as Python repr() -- byte-identical to\n"
    "Python json.dumps(v, sort_keys=True, separators=(\",\",\":\"),\n"
    "ensure_ascii=False).  NaN and Infinity are refused (exit 3).\n";

int cmd_canon(cli_ctx *ctx, int argc, char **argv)
{
    wx_error err = WX_ERROR_INIT;
    json_t *doc = NULL;
    const char *path = "-";
    bool done;
    int first, rc = cli_simple_options("canon", usage, argc, argv, &first,
                                       &done);

    if (rc || done)
        return rc;
    if (argc - first > 1)
        return cli_usage_error("canon", "expected at most one FILE");
    if (first < argc)
        path = argv[first];
    rc = cli_read_json(ctx, path, &doc, &err);
    if (!rc)
        rc = cli_print_json(doc, &err);
    json_decref(doc);
    return rc ? cli_fail(&err) : EXIT_OK;
}
