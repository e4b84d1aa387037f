/*
 * Shared pieces of the warmexec command line.  The CLI uses only the
 * public API (<warmexec/...>); this is the one place that prints messages
 * and chooses exit codes.
 */
#ifndef WX_CLI_H
#define WX_CLI_H

#include <stdbool.h>

#include <warmexec/warmexec.h>

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
