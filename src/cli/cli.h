/*
 * Shared pieces of the warmexec command line.  The CLI uses only the
 * public API (<warmexec/...>); this is the one place that prints messages
 * and chooses exit codes.
 */
#ifndef WX_CLI_H
#define WX_CLI_H

#include <stdbool.h>

#include <warmexec/warmexec.h>

/* Options of the commands that run tasks. */
typedef struct cli_run_opts {
    const char *input;  /* FILE or "-" */
    const char *bundle; /* --bundle DIR|REF, or NULL */
    bool no_cache;      /* --no-cache */
    bool json;          /* --json: one line of canonical JSON */
} cli_run_opts;

/* Exit codes (docs/errors.md). */
enum {
    EXIT_OK = 0,
    EXIT_TASK_FAILED = 1, /* ran, but some tasks failed */
    EXIT_USAGE = 2,       /* bad command line */
    EXIT_BAD_INPUT = 3,   /* invalid input, config or bundle (permanent) */
    EXIT_SYSTEM = 4,      /* system or I/O failure (may pass on retry) */
    EXIT_INTERNAL = 70    /* a bug in warmexec */
};

/* What every command receives. */
typedef struct cli_ctx {
    wx_config *cfg; /* effective configuration (defaults < env < flags) */
} cli_ctx;

typedef struct cli_command {
    const char *name;
    int (*run)(cli_ctx *ctx, int argc, char **argv);
    const char *summary; /* one line for `warmexec --help` */
} cli_command;

int cmd_canon(cli_ctx *ctx, int argc, char **argv);
int cmd_task(cli_ctx *ctx, int argc, char **argv);
int cmd_config(cli_ctx *ctx, int argc, char **argv);
int cmd_bundle(cli_ctx *ctx, int argc, char **argv);
int cmd_run(cli_ctx *ctx, int argc, char **argv);
int cmd_aggregate(cli_ctx *ctx, int argc, char **argv);

/*
 * The ref of a --bundle argument: a directory is added to the store (the
 * development convenience of DESIGN.md 5), anything else must be a ref.
 */
int cli_bundle_ref(cli_ctx *ctx, const char *arg,
                   char ref[WX_DIGEST_LEN + 1], wx_error *err);

/*
 * Parse [FILE|-] [--bundle DIR|REF] [--no-cache] [--json] (and --help,
 * which prints `usage` and sets *done).  EXIT_USAGE on bad options.
 */
int cli_run_options(const char *command, const char *usage, int argc,
                    char **argv, cli_run_opts *o, bool *done);

/* The execution environment for a command, honouring --no-cache. */
int cli_open_env(cli_ctx *ctx, const cli_run_opts *o, wx_env **env,
                 wx_error *err);

/* Print a JSON value: indented for people, or canonical with `compact`. */
int cli_print_value(const json_t *v, bool compact, wx_error *err);
int cmd_cas(cli_ctx *ctx, int argc, char **argv);
int cmd_cache(cli_ctx *ctx, int argc, char **argv);

/* The exit code for a library status. */
int cli_exit_code(int rc);

/* Print "warmexec: <message>" for `err` and return its exit code. */
int cli_fail(const wx_error *err);

/* Print "warmexec: <command>: <message>" and usage hint; EXIT_USAGE. */
int cli_usage_error(const char *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Read and parse JSON from `path` ("-" = stdin), bounded by the
 * max_input_bytes setting.  `*out` owned by the caller (json_decref).
 */
int cli_read_json(cli_ctx *ctx, const char *path, json_t **out,
                  wx_error *err);

/*
 * The JSON input of a run command (`o->input`); with --bundle, its
 * "bundle_ref" is replaced by the ref of that bundle.
 */
int cli_read_run_input(cli_ctx *ctx, const cli_run_opts *o, json_t **out,
                       wx_error *err);

/*
 * "<home>/<name>" into `out` (`size` bytes): a file or directory of the
 * state directory.  WX_EINVAL when home is not set or the path too long.
 */
int cli_home_path(cli_ctx *ctx, const char *name, char *out, size_t size,
                  wx_error *err);

/* Write `v` canonically plus a newline to stdout. */
int cli_print_json(const json_t *v, wx_error *err);

/*
 * Handle the options shared by simple commands: --help (prints `usage`,
 * returns 0 and sets *done) and unknown options (EXIT_USAGE).  On return
 * *first_arg is the index of the first operand.
 */
int cli_simple_options(const char *command, const char *usage, int argc,
                       char **argv, int *first_arg, bool *done);

#endif
