/* warmexec: the command line.  Dispatches to one function per command. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int cmd_version(cli_ctx *ctx, int argc, char **argv);
static int cmd_help(cli_ctx *ctx, int argc, char **argv);

static const cli_command commands[] = {
    {"run", cmd_run, "run a study: every task, aggregation and result"},
    {"task", cmd_task, "run one SimTask, or compute its identifiers"},
    {"aggregate", cmd_aggregate, "evaluate a target over replicate results"},
    {"bundle", cmd_bundle, "add, list, show and verify stored bundles"},
    {"canon", cmd_canon, "print the canonical JSON of a JSON document"},
    {"cas", cmd_cas, "put, get and verify objects of the content store"},
    {"cache", cmd_cache, "statistics of the result cache, or clear it"},
    {"config", cmd_config, "show the effective configuration and sources"},
    {"version", cmd_version, "print the version"},
    {"help", cmd_help, "show this help, or a command's help"},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void print_help(void)
{
    printf("usage: warmexec [--help] [--version] COMMAND [ARGS]\n\n"
           "Run simulation studies in warm, isolated worker processes.\n\n"
           "Commands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        printf("  %-9s %s\n", commands[i].name, commands[i].summary);
    printf("\nRun 'warmexec COMMAND --help' for a command's options.\n"
           "Exit codes: 0 ok, 1 some tasks failed, 2 usage, 3 bad input,\n"
           "4 system failure, 70 internal error (docs/errors.md).\n");
}

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int cmd_version(cli_ctx *ctx, int argc, char **argv)
{
    static const char usage[] = "usage: warmexec version\n\n"
                                "Print the version of warmexec.\n";
    bool done;
    int first, rc = cli_simple_options("version", usage, argc, argv, &first,
                                       &done);

    if (rc || done)
        return rc;
    if (first < argc)
        return cli_usage_error("version", "unexpected argument '%s'",
                               argv[first]);
    printf("warmexec %s\n", wx_version());
    return EXIT_OK;
}

static int cmd_help(cli_ctx *ctx, int argc, char **argv)
{
    const cli_command *cmd;
    char *help_argv[] = {argv[0], "--help", NULL};

    if (argc < 2) {
        print_help();
        return EXIT_OK;
    }
    cmd = find_command(argv[1]);
    if (!cmd)
        return cli_usage_error("help", "unknown command '%s'", argv[1]);
    help_argv[0] = argv[1];
    return cmd->run(ctx, 2, help_argv);
}

/* Defaults, then WARMEXEC_* variables. */
static int load_config(cli_ctx *ctx)
{
    wx_error err = WX_ERROR_INIT;

    if (wx_config_new(&ctx->cfg, &err) != 0 ||
        wx_config_load_env(ctx->cfg, &err) != 0)
        return cli_fail(&err);
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    cli_ctx ctx = {NULL};
    const cli_command *cmd;
    int rc;

    if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        print_help();
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0)
        argv[1] = "version";
    cmd = find_command(argv[1]);
    if (!cmd) {
        fprintf(stderr, "warmexec: unknown command '%s' (see 'warmexec "
                        "--help')\n",
                argv[1]);
        return EXIT_USAGE;
    }
    rc = load_config(&ctx);
    if (rc == EXIT_OK)
        rc = cmd->run(&ctx, argc - 1, argv + 1);
    wx_config_free(ctx.cfg);
    return rc;
}
