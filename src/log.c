/* Leveled logging through a host-supplied callback. */
#include "internal.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include "log.h"

static wx_log_fn log_fn;
static void *log_user;
static atomic_int log_max = WX_LOG_INFO;

void wx_log_set(wx_log_fn fn, void *user, enum wx_log_level max)
{
    log_fn = fn;
    log_user = user;
    atomic_store(&log_max, (int)max);
}

bool wx__log_enabled(enum wx_log_level level)
{
    return log_fn && (int)level <= atomic_load(&log_max);
}

void wx__log(enum wx_log_level level, const char *fmt, ...)
{
    char line[2048];
    va_list ap;

    if (!wx__log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    log_fn(log_user, level, line);
}

static const char *const level_names[] = {"error", "warn", "info", "debug"};

const char *wx_log_level_name(enum wx_log_level level)
{
    if ((unsigned)level < WX_ARRAY_LEN(level_names))
        return level_names[level];
    return "unknown";
}

int wx_log_level_parse(const char *name)
{
    for (size_t i = 0; i < WX_ARRAY_LEN(level_names); i++)
        if (strcmp(name, level_names[i]) == 0)
            return (int)i;
    return -1;
}
