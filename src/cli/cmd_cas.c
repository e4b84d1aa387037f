/* warmexec cas: the content-addressed store in <home>/cas. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include <warmexec/cas.h>

#include "cli.h"

/* Room for a path under home (PATH_MAX is POSIX, not C11). */
#define HOME_PATH_MAX 4096

static const char usage[] =
    "usage: warmexec cas put FILE|-\n"
    "       warmexec cas get REF [-o FILE]\n"
    "       warmexec cas verify [REF...]\n\n"
    "The content-addressed store in <home>/cas (docs/cas.md): immutable\n"
    "objects named by the SHA-256 of their bytes, cas://<64 lowercase hex>.\n"
    "  put     store FILE (- = standard input) durably; print its ref\n"
    "  get     write the object's bytes to standard output, or to FILE\n"
    "          with -o/--output; an object whose bytes no longer match its\n"
    "          ref is refused (exit 3)\n"
    "  verify  re-hash the given objects, or every object when none is\n"
    "          given; print a line per damaged or missing object and a\n"
    "          summary 'N objects, M damaged'; exit 3 when M > 0\n"
    "Objects larger than max_input_bytes (WARMEXEC_MAX_INPUT_BYTES) are\n"
    "refused by put and get.  A malformed ref is exit 3.\n";

static size_t max_object_bytes(cli_ctx *ctx)
{
    return (size_t)wx_config_int(ctx->cfg, WX_CONF_MAX_INPUT_BYTES);
}

static int open_store(cli_ctx *ctx, wx_cas **cas, wx_error *err)
{
    char root[HOME_PATH_MAX];
    int rc = cli_home_path(ctx, "cas", root, sizeof(root), err);

    return rc ? rc : wx_cas_open_fs(root, WX_CAS_SYNC_FULL, cas, err);
}

static int put_file(cli_ctx *ctx, const char *path, wx_error *err)
{
    wx_buf data = WX_BUF_INIT(max_object_bytes(ctx));
    char ref[WX_CAS_REF_LEN + 1];
    wx_cas *cas = NULL;
    int rc = wx_buf_read_file(&data, path, err);

    if (rc == WX_ETOOBIG)
        wx_error_prefix(err, rc, "input larger than max_input_bytes "
                                 "(WARMEXEC_MAX_INPUT_BYTES)");
    if (!rc)
        rc = open_store(ctx, &cas, err);
    if (!rc)
        rc = wx_cas_put(cas, data.data, data.len, NULL, ref, err);
    if (!rc && (printf("%s\n", ref) < 0 || fflush(stdout) != 0))
        rc = wx_error_set(err, WX_EIO, "cannot write to standard output");
    wx_cas_close(cas);
    wx_buf_release(&data);
    return rc;
}

static int cas_put(cli_ctx *ctx, int argc, char **argv)
{
    wx_error err = WX_ERROR_INIT;
    bool done;
    int first, rc = cli_simple_options("cas put", usage, argc, argv, &first,
                                       &done);

    if (rc || done)
        return rc;
    if (argc - first != 1)
        return cli_usage_error("cas put", "expected one FILE (or -)");
    rc = put_file(ctx, argv[first], &err);
    return rc ? cli_fail(&err) : EXIT_OK;
}

/* Write the bytes to `path`, or to standard output when it is NULL. */
static int write_output(const char *path, const uint8_t *data, size_t len,
                        wx_error *err)
{
    FILE *f = path ? fopen(path, "wb") : stdout;
    bool ok;

    if (!f)
        return wx_error_set_sys(err, WX_EIO, errno, "cannot create %s",
                                path);
    ok = fwrite(data, 1, len, f) == len;
    ok = (path ? fclose(f) : fflush(f)) == 0 && ok;
    if (!ok)
        return wx_error_set(err, WX_EIO, "cannot write %s",
                            path ? path : "standard output");
    return 0;
}

static int get_object(cli_ctx *ctx, const char *ref, const char *output,
                      wx_error *err)
{
    wx_cas *cas = NULL;
    uint8_t *data = NULL;
    size_t len = 0;
    int rc = wx_cas_parse_ref(ref, NULL, err);

    if (!rc)
        rc = open_store(ctx, &cas, err);
    if (!rc)
        rc = wx_cas_get(cas, ref, max_object_bytes(ctx), &data, &len, err);
    if (!rc)
        rc = write_output(output, data, len, err);
    wx_free(data);
    wx_cas_close(cas);
    return rc;
}

static int cas_get(cli_ctx *ctx, int argc, char **argv)
{
    static const struct option options[] = {
        {"help", no_argument, NULL, 'h'},
        {"output", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0}};
    wx_error err = WX_ERROR_INIT;
    const char *output = NULL;
    int c;

    /*
     * 0, not 1: getopt starts afresh, forgetting the "+" (stop at the
     * first operand) of the earlier parse, so -o may follow REF.
     */
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "ho:", options, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return EXIT_OK;
        }
        if (c != 'o')
            return cli_usage_error("cas get", "unknown option or missing "
                                              "FILE: '%s'",
                                   argv[optind - 1]);
        output = optarg;
    }
    if (argc - optind != 1)
        return cli_usage_error("cas get", "expected one REF");
    if (get_object(ctx, argv[optind], output, &err) != 0)
        return cli_fail(&err);
    return EXIT_OK;
}

/* Counts of a verify run; `err` receives a failure that stops it. */
typedef struct verify_run {
    wx_cas *cas;
    size_t objects, damaged;
    wx_error *err;
} verify_run;

/* Verify one object: a damaged or missing one is reported and counted. */
static int verify_one(void *user, const char *ref, uint64_t size)
{
    verify_run *run = user;
    wx_error problem = WX_ERROR_INIT;
    int rc = wx_cas_verify(run->cas, ref, &problem);

    run->objects++;
    if (rc == WX_ECORRUPT || rc == WX_ENOTFOUND) {
        run->damaged++;
        printf("%s: %s\n", rc == WX_ECORRUPT ? "damaged" : "missing",
               problem.message);
        return 0;
    }
    if (rc)
        *run->err = problem;
    return rc;
}

static int verify_refs(verify_run *run, int n, char **refs)
{
    int rc = 0;

    for (int i = 0; i < n && !rc; i++)
        rc = wx_cas_parse_ref(refs[i], NULL, run->err);
    for (int i = 0; i < n && !rc; i++)
        rc = verify_one(run, refs[i], 0);
    return rc;
}

static int verify_store(cli_ctx *ctx, int n, char **refs)
{
    wx_error err = WX_ERROR_INIT;
    verify_run run = {NULL, 0, 0, &err};
    int rc = open_store(ctx, &run.cas, &err);

    if (!rc && n > 0)
        rc = verify_refs(&run, n, refs);
    else if (!rc)
        rc = wx_cas_foreach(run.cas, verify_one, &run, &err);
    wx_cas_close(run.cas);
    if (rc)
        return cli_fail(&err);
    printf("%zu objects, %zu damaged\n", run.objects, run.damaged);
    if (run.damaged == 0)
        return EXIT_OK;
    fprintf(stderr, "warmexec: %zu of %zu objects damaged or missing\n",
            run.damaged, run.objects);
    return EXIT_BAD_INPUT;
}

static int cas_verify(cli_ctx *ctx, int argc, char **argv)
{
    bool done;
    int first, rc = cli_simple_options("cas verify", usage, argc, argv,
                                       &first, &done);

    if (rc || done)
        return rc;
    return verify_store(ctx, argc - first, argv + first);
}

int cmd_cas(cli_ctx *ctx, int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*run)(cli_ctx *ctx, int argc, char **argv);
    } subcommands[] = {
        {"put", cas_put}, {"get", cas_get}, {"verify", cas_verify}};
    bool done;
    int first, rc = cli_simple_options("cas", usage, argc, argv, &first,
                                       &done);

    if (rc || done)
        return rc;
    if (first >= argc)
        return cli_usage_error("cas", "missing subcommand (put, get, "
                                      "verify)");
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
        if (strcmp(argv[first], subcommands[i].name) == 0)
            return subcommands[i].run(ctx, argc - first, argv + first);
    return cli_usage_error("cas", "unknown subcommand '%s'", argv[first]);
}
