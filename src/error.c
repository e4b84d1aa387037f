/* Error codes and the wx_error detail record. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

const char *wx_strerror(int code)
{
    switch (code) {
    case WX_OK:
        return "success";
#define WX__ERR_DESC(name, value, desc)                                      \
    case WX_##name:                                                           \
        return desc;
        WX_ERRNO_MAP(WX__ERR_DESC)
#undef WX__ERR_DESC
    }
    return "unknown error";
}

const char *wx_err_name(int code)
{
    switch (code) {
    case WX_OK:
        return "OK";
#define WX__ERR_NAME(name, value, desc)                                      \
    case WX_##name:                                                           \
        return #name;
        WX_ERRNO_MAP(WX__ERR_NAME)
#undef WX__ERR_NAME
    }
    return "EUNKNOWN";
}

/* Append `s` to the string dst[0, *used), truncating at `cap` - 1. */
static void append_truncated(char *dst, size_t cap, size_t *used,
                             const char *s)
{
    size_t n = strlen(s);

    if (n > cap - 1 - *used)
        n = cap - 1 - *used;
    memcpy(dst + *used, s, n);
    *used += n;
    dst[*used] = '\0';
}

int wx_error_vset(wx_error *err, int code, const char *fmt, va_list ap)
{
    if (err) {
        err->code = code;
        err->sys_errno = 0;
        vsnprintf(err->message, sizeof(err->message), fmt, ap);
    }
    return code;
}

int wx_error_set(wx_error *err, int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    wx_error_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

int wx_error_set_sys(wx_error *err, int code, int sys_errno,
                     const char *fmt, ...)
{
    va_list ap;
    size_t used;

    if (!err)
        return code;
    va_start(ap, fmt);
    wx_error_vset(err, code, fmt, ap);
    va_end(ap);
    used = strlen(err->message);
    append_truncated(err->message, sizeof(err->message), &used, ": ");
    append_truncated(err->message, sizeof(err->message), &used,
                     strerror(sys_errno));
    err->sys_errno = sys_errno;
    return code;
}

int wx_error_prefix(wx_error *err, int rc, const char *fmt, ...)
{
    char old[WX_ERROR_MSG_MAX];
    va_list ap;
    size_t used;

    if (!err || rc == 0)
        return rc;
    err->code = rc;
    memcpy(old, err->message, sizeof(old));
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    used = strlen(err->message);
    append_truncated(err->message, sizeof(err->message), &used, ": ");
    append_truncated(err->message, sizeof(err->message), &used, old);
    return rc;
}

void wx__error_clear(wx_error *err)
{
    err->code = 0;
    err->sys_errno = 0;
    err->message[0] = '\0';
}

void wx__bug(const char *file, int line, const char *msg)
{
    /* The one place the library writes to stderr: a broken invariant. */
    fprintf(stderr, "warmexec BUG at %s:%d: %s\n", file, line, msg);
    abort();
}
