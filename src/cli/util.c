/* Messages, exit codes and input helpers of the CLI. */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cli_exit_code(int rc)
{
    switch (rc) {
    case WX_OK:
        return EXIT_OK;
    case WX_EUSAGE:
        return EXIT_USAGE;
    case WX_EINVAL:
    case WX_ETOOBIG:
    case WX_ENOTFOUND:
    case WX_ECORRUPT:
        return EXIT_BAD_INPUT;
    case WX_EINTERNAL:
        return EXIT_INTERNAL;
    default:
        return EXIT_SYSTEM;
    }
}

int cli_fail(const wx_error *err)
{
    fprintf(stderr, "warmexec: %s\n",
            err->message[0] ? err->message : wx_strerror(err->code));
    return cli_exit_code(err->code);
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "warmexec: %s: ", command);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see 'warmexec %s --help')\n", command);
    return EXIT_USAGE;
}

int cli_read_json(cli_ctx *ctx, const char *path, json_t **out,
                  wx_error *err)
{
    wx_buf b = WX_BUF_INIT(
        (size_t)wx_config_int(ctx->cfg, WX_CONF_MAX_INPUT_BYTES));
    int rc = wx_buf_read_file(&b, path, err);

    if (rc == WX_ETOOBIG)
        wx_error_prefix(err, rc, "input larger than max_input_bytes "
                                 "(WARMEXEC_MAX_INPUT_BYTES)");
    if (!rc) {
        rc = wx_json_parse(b.data, b.len, out, err);
        if (rc)
            wx_error_prefix(err, rc, "%s",
                            strcmp(path, "-") == 0 ? "standard input" : path);
    }
    wx_buf_release(&b);
    return rc;
}

int cli_read_run_input(cli_ctx *ctx, const cli_run_opts *o, json_t **out,
                       wx_error *err)
{
    char ref[WX_DIGEST_LEN + 1];
    int rc = cli_read_json(ctx, o->input, out, err);

    if (!rc && o->bundle) {
        rc = cli_bundle_ref(ctx, o->bundle, ref, err);
        if (!rc && json_is_object(*out))
            json_object_set_new(*out, "bundle_ref", json_string(ref));
        if (rc) {
            json_decref(*out);
            *out = NULL;
        }
    }
    return rc;
}

int cli_home_path(cli_ctx *ctx, const char *name, char *out, size_t size,
                  wx_error *err)
{
    const char *home = wx_config_str(ctx->cfg, WX_CONF_HOME);

    if (!home || !home[0])
        return wx_error_set(err, WX_EINVAL,
                            "home is not set: set WARMEXEC_HOME (or HOME)");
    if ((size_t)snprintf(out, size, "%s/%s", home, name) >= size)
        return wx_error_set(err, WX_EINVAL, "home path too long: %s", home);
    return 0;
}

int cli_print_json(const json_t *v, wx_error *err)
{
    return cli_print_value(v, true, err);
}

int cli_print_value(const json_t *v, bool compact, wx_error *err)
{
    wx_buf b = WX_BUF_INIT(SIZE_MAX - 1);
    int rc = wx_json_write(&b, v,
                           compact ? WX_JSON_SORT_KEYS
                                   : WX_JSON_SORT_KEYS | WX_JSON_PRETTY,
                           err);

    if (!rc) {
        rc = wx_buf_putc(&b, '\n', err);
    }
    if (!rc && (fwrite(b.data, 1, b.len, stdout) != b.len ||
                fflush(stdout) != 0))
        rc = wx_error_set(err, WX_EIO, "cannot write to standard output");
    wx_buf_release(&b);
    return rc;
}

int cli_simple_options(const char *command, const char *usage, int argc,
                       char **argv, int *first_arg, bool *done)
{
    static const struct option options[] = {{"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    int c;

    *done = false;
    optind = 0; /* 0 makes GNU getopt start afresh */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "+h", options, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            *done = true;
            return EXIT_OK;
        }
        return cli_usage_error(command, "unknown option '%s'",
                               argv[optind - 1]);
    }
    *first_arg = optind;
    return EXIT_OK;
}

int cli_run_options(const char *command, const char *usage, int argc,
                    char **argv, cli_run_opts *o, bool *done)
{
    static const struct option options[] = {
        {"help", no_argument, NULL, 'h'},
        {"bundle", required_argument, NULL, 'b'},
        {"no-cache", no_argument, NULL, 'n'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0}};
    int c;

    *o = (cli_run_opts){"-", NULL, false, false};
    *done = false;
    optind = 0; /* 0 makes GNU getopt start afresh */
    opterr = 0;
    /* No '+': options may follow the FILE operand. */
    while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            *done = true;
            return EXIT_OK;
        }
        if (c == 'b')
            o->bundle = optarg;
        else if (c == 'n')
            o->no_cache = true;
        else if (c == 'j')
            o->json = true;
        else
            return cli_usage_error(command, "unknown option '%s'",
                                   argv[optind - 1]);
    }
    if (argc - optind > 1)
        return cli_usage_error(command, "expected at most one FILE");
    if (optind < argc)
        o->input = argv[optind];
    return EXIT_OK;
}

int cli_open_env(cli_ctx *ctx, const cli_run_opts *o, wx_env **env,
                 wx_error *err)
{
    wx_env_options opts = {0};

    opts.no_cache = o->no_cache;
    return wx_env_open(ctx->cfg, &opts, env, err);
}
