/*
 * First include of every .c file in src/: feature macros, the headers
 * nearly every module needs, and small internal helpers.
 */
#ifndef WX_INTERNAL_H
#define WX_INTERNAL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <warmexec/error.h>

#define WX_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#define WX_MIN(a, b) ((a) < (b) ? (a) : (b))
#define WX_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Clear an error without zeroing its message buffer (set per task). */
void wx__error_clear(wx_error *err);

/* Abort with file:line for a broken invariant (a bug in warmexec). */
#define WX_BUG(msg) wx__bug(__FILE__, __LINE__, (msg))
void wx__bug(const char *file, int line, const char *msg)
    __attribute__((noreturn));

#endif
