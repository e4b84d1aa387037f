/* warmexec bundle: the local bundle store. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

static const char usage[] =
    "usage: warmexec bundle add DIR\n"
    "       warmexec bundle ls\n"
    "       warmexec bundle show REF\n"
    "       warmexec bundle verify REF\n\n"
    "add     copy the bundle at DIR into the store (home/bundles) and print\n"
    "        its ref, sha256:<digest of its file index>\n"
    "ls      list the stored bundles: ref, name, runner\n"
    "show    the manifest and the file index of a stored bundle\n"
    "verify  re-hash a stored bundle (exit 3 when it is corrupt)\n"
    "REF is sha256:<hex> or <repository>@sha256:<hex>.\n";

static const char *runner_name(const wx_manifest *m)
{
    return m->runner == WX_RUNNER_NATIVE   ? "native"
           : m->runner == WX_RUNNER_PYTHON ? (m->modelops ? "python (modelops)"
                                                          : "python")
                                           : "command";
}

static int list_one(void *user, const char *digest, const char *path)
{
    wx_manifest m;

    (void)user;
    if (wx_manifest_load(path, &m, NULL) != 0) {
        printf("%s  (unreadable manifest)\n", digest);
        return 0;
    }
    printf("%s  %-20s %s\n", digest, m.name, runner_name(&m));
    wx_manifest_release(&m);
    return 0;
}

static void print_list(const char *label, char **items)
{
    printf("%-12s", label);
    for (size_t i = 0; items && items[i]; i++)
        printf("%s%s", i ? ", " : "", items[i]);
    printf("\n");
}

static int show(wx_bundles *b, const char *ref, wx_error *err)
{
    char digest[WX_DIGEST_LEN + 1], path[4096];
    wx_buf index = WX_BUF_INIT(1u << 30);
    wx_manifest m;
    int rc = wx_bundles_ensure_local(b, ref, digest, path, err);

    if (!rc)
        rc = wx_manifest_load(path, &m, err);
    if (rc)
        return rc;
    printf("%-12s%s\n%-12s%s\n%-12s%s\n%-12s%s\n", "ref", digest, "name",
           m.name, "path", path, "runner", runner_name(&m));
    if (m.library)
        printf("%-12s%s\n", "library", m.library);
    print_list("env", m.env);
    print_list("entrypoints", m.entrypoints);
    print_list("targets", m.targets);
    rc = wx_bundle_digest(path, digest, &index, err);
    if (!rc)
        printf("files:\n%s", index.data);
    wx_manifest_release(&m);
    wx_buf_release(&index);
    return rc;
}

static int run_sub(wx_bundles *b, int argc, char **argv, wx_error *err)
{
    char ref[WX_DIGEST_LEN + 1];
    const char *sub = argv[0];
    int rc;

    if (strcmp(sub, "ls") == 0 && argc == 1)
        return wx_bundles_foreach(b, list_one, NULL, err);
    if (argc != 2)
        return wx_error_set(err, WX_EUSAGE, "bundle %s: wrong arguments", sub);
    if (strcmp(sub, "add") == 0) {
        rc = wx_bundles_add(b, argv[1], ref, err);
        if (!rc)
            printf("%s\n", ref);
        return rc;
    }
    if (strcmp(sub, "show") == 0)
        return show(b, argv[1], err);
    if (strcmp(sub, "verify") == 0) {
        rc = wx_bundles_verify(b, argv[1], err);
        if (!rc)
            printf("%s: ok\n", argv[1]);
        return rc;
    }
    return wx_error_set(err, WX_EUSAGE, "unknown subcommand '%s'", sub);
}

int cmd_bundle(cli_ctx *ctx, int argc, char **argv)
{
    wx_error err = WX_ERROR_INIT;
    wx_bundles *b = NULL;
    bool done;
    int first, rc = cli_simple_options("bundle", usage, argc, argv, &first,
                                       &done);

    if (rc || done)
        return rc;
    if (first >= argc)
        return cli_usage_error("bundle", "missing subcommand");
    rc = wx_bundles_open(wx_config_str(ctx->cfg, WX_CONF_HOME), &b, &err);
    if (!rc)
        rc = run_sub(b, argc - first, argv + first, &err);
    wx_bundles_close(b);
    if (rc == WX_EUSAGE)
        return cli_usage_error("bundle", "%s", err.message);
    return rc ? cli_fail(&err) : EXIT_OK;
}

int cli_bundle_ref(cli_ctx *ctx, const char *arg,
                   char ref[WX_DIGEST_LEN + 1], wx_error *err)
{
    wx_bundles *b = NULL;
    struct stat st;
    int rc;

    if (stat(arg, &st) != 0 || !S_ISDIR(st.st_mode)) {
        rc = wx_bundle_ref_validate(arg, err);
        if (!rc)
            snprintf(ref, WX_DIGEST_LEN + 1, "%s", arg);
        return rc ? wx_error_prefix(err, rc, "--bundle %s is neither a "
                                             "directory nor a ref",
                                    arg)
                  : 0;
    }
    rc = wx_bundles_open(wx_config_str(ctx->cfg, WX_CONF_HOME), &b, err);
    if (!rc)
        rc = wx_bundles_add(b, arg, ref, err);
    wx_bundles_close(b);
    return rc;
}
