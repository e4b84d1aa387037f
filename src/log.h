/* Internal logging entry point; formatting happens only when enabled. */
#ifndef WX_LOG_H
#define WX_LOG_H

#include <stdbool.h>

#include <warmexec/log.h>

bool wx__log_enabled(enum wx_log_level level);

void wx__log(enum wx_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
