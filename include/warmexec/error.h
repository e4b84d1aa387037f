/*
 * warmexec error codes and the wx_error detail record.
 *
 * Every fallible function returns an int: 0 on success, a negative WX_E*
 * code on failure.  When the caller passes a non-NULL wx_error *, the
 * function also fills it with the code and a one-line message that can be
 * shown to a user as it is.  On success a wx_error is left untouched.
 *
 * Codes are append-only: a value is never renumbered or reused.
 */
#ifndef WARMEXEC_ERROR_H
#define WARMEXEC_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

/* XX(name, value, description) */
#define WX_ERRNO_MAP(XX)                                                      \
    XX(EINVAL, -1, "invalid input")                                           \
    XX(ENOMEM, -2, "out of memory")                                           \
    XX(EIO, -3, "input/output error")                                         \
    XX(ETOOBIG, -4, "size limit exceeded")                                    \
    XX(ENOTFOUND, -5, "not found")                                            \
    XX(ECORRUPT, -6, "content does not match its digest")                     \
    XX(EPROTO, -7, "protocol error")                                          \
    XX(ETIMEDOUT, -8, "timed out")                                            \
    XX(ECRASHED, -9, "worker crashed")                                        \
    XX(ESTART, -10, "worker failed to start")                                 \
    XX(EMODEL, -11, "model error")                                            \
    XX(EOOM, -12, "worker ran out of memory")                                 \
    XX(EUSAGE, -13, "usage error")                                            \
    XX(ECANCELED, -14, "canceled")                                            \
    XX(EINTERNAL, -15, "internal error")

enum {
    WX_OK = 0,
#define WX__ERR_ENUM(name, value, desc) WX_##name = (value),
    WX_ERRNO_MAP(WX__ERR_ENUM)
#undef WX__ERR_ENUM
};

#define WX_ERROR_MSG_MAX 1024

/*
 * Detail record for a failure.  Plain value type; put it on the stack with
 * WX_ERROR_INIT.  `message` is always NUL-terminated.  `sys_errno` is the
 * errno of the failing system call, or 0.
 */
typedef struct wx_error {
    int code;
    int sys_errno;
    char message[WX_ERROR_MSG_MAX];
} wx_error;

#define WX_ERROR_INIT {0, 0, {0}}

/* Static description of a code ("invalid input"); never NULL. */
WX_API const char *wx_strerror(int code);

/* Name of a code without the WX_ prefix ("EINVAL"); never NULL. */
WX_API const char *wx_err_name(int code);

/*
 * Fill `err` (if not NULL) with `code` and a printf-style message, and
 * return `code`, so a failing path can end with `return wx_error_set(...)`.
 * A message longer than WX_ERROR_MSG_MAX - 1 bytes is truncated.
 */
WX_API int wx_error_set(wx_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

WX_API int wx_error_vset(wx_error *err, int code, const char *fmt,
                         va_list ap) __attribute__((format(printf, 3, 0)));

/*
 * As wx_error_set(), with ": <strerror(sys_errno)>" appended and
 * err->sys_errno set.
 */
WX_API int wx_error_set_sys(wx_error *err, int code, int sys_errno,
                            const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Prefix the existing message of `err` (if not NULL) with a printf-style
 * context string and ": ", set its code to `rc` (the status being passed
 * up, which may differ from the one the message came with) and keep
 * sys_errno.  Returns `rc`, so a caller can `return wx_error_prefix(...)`.
 * Nothing happens when `rc` is 0.
 */
WX_API int wx_error_prefix(wx_error *err, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif
