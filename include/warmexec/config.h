/*
 * Configuration: one table of settings (name, type, default, WARMEXEC_*
 * environment variable, documentation) that drives parsing, validation,
 * `warmexec config` and the CLI help.  Precedence: default < environment
 * < command-line flag.
 *
 * A wx_config is a value set for that table.  It is not thread-safe to
 * modify; once built, concurrent reads are safe.
 */
#ifndef WARMEXEC_CONFIG_H
#define WARMEXEC_CONFIG_H

#include <stdint.h>

#include <warmexec/buf.h>
#include <warmexec/error.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Identifiers of the settings, in table order. */
typedef enum wx_conf_id {
    WX_CONF_HOME,
    WX_CONF_LOG_LEVEL,
    WX_CONF_MAX_INPUT_BYTES,
    WX_CONF_JOBS,
    WX_CONF_MAX_PROCESSES,
    WX_CONF_START_TIMEOUT,
    WX_CONF_TASK_TIMEOUT,
    WX_CONF_MAX_TASKS_PER_WORKER,
    WX_CONF_WORKER_TTL,
    WX_CONF_MEM_LIMIT_BYTES,
    WX_CONF_MAX_FRAME_BYTES,
    WX_CONF_ATTACHMENTS,
    WX_CONF_SHUTDOWN_GRACE,
    WX_CONF_NATIVE_RUNNER,
    WX_CONF_PYTHON,
    WX_CONF_PYTHON_RUNNER,
    WX_CONF_INLINE_MAX_BYTES,
    WX_CONF_MAX_RETRIES,
    WX_CONF_CAS_SYNC,
    WX_CONF__COUNT
} wx_conf_id;

typedef enum wx_conf_type {
    WX_CONF_STRING,  /* free text */
    WX_CONF_INT,     /* integer within [min, max] */
    WX_CONF_BYTES,   /* integer byte count; suffixes K, M, G (powers of 2) */
    WX_CONF_SECONDS, /* non-negative decimal number of seconds */
    WX_CONF_LEVEL,   /* log level: error, warn, info, debug */
    WX_CONF_BOOL,    /* true/false, yes/no, on/off, 1/0 */
    WX_CONF_CHOICE   /* one of the entry's `choices`; the value is its index */
} wx_conf_type;

typedef enum wx_conf_source {
    WX_CONF_FROM_DEFAULT,
    WX_CONF_FROM_ENV,
    WX_CONF_FROM_FLAG
} wx_conf_source;

/* One row of the table; all strings are static. */
typedef struct wx_conf_entry {
    const char *name;     /* "task_timeout" */
    wx_conf_type type;
    const char *def;      /* default as text; NULL when computed */
    const char *env;      /* "WARMEXEC_TASK_TIMEOUT" */
    int64_t min, max;     /* bounds for INT and BYTES */
    const char *doc;      /* one line */
    const char *const *choices; /* CHOICE: the names, NULL-terminated */
} wx_conf_entry;

typedef struct wx_config wx_config;

/* The table row of `id`; NULL for an out-of-range id. */
WX_API const wx_conf_entry *wx_conf_entry_get(wx_conf_id id);

/* Look a setting up by name; -1 when unknown. */
WX_API int wx_conf_find(const char *name);

/*
 * A new configuration holding the defaults.  Caller frees with
 * wx_config_free().  WX_ENOMEM.
 */
WX_API int wx_config_new(wx_config **out, wx_error *err);
WX_API void wx_config_free(wx_config *cfg);

/*
 * Apply every WARMEXEC_* variable that is set in the environment.  A value
 * that does not parse is WX_EINVAL naming the variable and the rule.
 */
WX_API int wx_config_load_env(wx_config *cfg, wx_error *err);

/* Set one value from text, recording its source.  WX_EINVAL. */
WX_API int wx_config_set(wx_config *cfg, wx_conf_id id, const char *text,
                         wx_conf_source source, wx_error *err);

/* Typed access.  The string is owned by `cfg`. */
WX_API const char *wx_config_str(const wx_config *cfg, wx_conf_id id);
WX_API int64_t wx_config_int(const wx_config *cfg, wx_conf_id id);
WX_API double wx_config_seconds(const wx_config *cfg, wx_conf_id id);

WX_API wx_conf_source wx_config_source(const wx_config *cfg, wx_conf_id id);

/* "default", "environment" or "flag". */
WX_API const char *wx_conf_source_name(wx_conf_source source);

/* Append the effective value of `id` as text to `out`. */
WX_API int wx_config_format(const wx_config *cfg, wx_conf_id id, wx_buf *out,
                            wx_error *err);

#ifdef __cplusplus
}
#endif

#endif
