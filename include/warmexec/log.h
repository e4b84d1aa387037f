/*
 * Logging.  The library never prints; it hands each log line to a callback
 * that the host installs.  Without a callback, log lines are dropped.
 */
#ifndef WARMEXEC_LOG_H
#define WARMEXEC_LOG_H

#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

enum wx_log_level {
    WX_LOG_ERROR = 0,
    WX_LOG_WARN = 1,
    WX_LOG_INFO = 2,
    WX_LOG_DEBUG = 3
};

/*
 * Receives one formatted line (no trailing newline).  May be called from
 * any thread, concurrently; `msg` is only valid during the call.
 */
typedef void (*wx_log_fn)(void *user, enum wx_log_level level,
                          const char *msg);

/*
 * Install `fn` (NULL removes it) and the most verbose level that reaches
 * it.  Process-wide; call it before starting work in other threads.
 */
WX_API void wx_log_set(wx_log_fn fn, void *user, enum wx_log_level max);

/* "error", "warn", "info" or "debug". */
WX_API const char *wx_log_level_name(enum wx_log_level level);

/* Parse a level name as above; -1 when unknown. */
WX_API int wx_log_level_parse(const char *name);

#ifdef __cplusplus
}
#endif

#endif
