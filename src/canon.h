/*
 * Pieces of the JSON writers for modules that write fixed-shape JSON
 * directly (identifiers), without building jansson values first.  Same
 * output as <warmexec/canon.h>.  Thread-safe.
 */
#ifndef WX_CANON_H
#define WX_CANON_H

#include <stddef.h>
#include <stdint.h>

#include <warmexec/buf.h>
#include <warmexec/canon.h>
#include <warmexec/error.h>

/* A JSON string of `len` bytes of UTF-8, with `flags` (ENSURE_ASCII). */
int wx__canon_string(wx_buf *out, const char *s, size_t len, unsigned flags,
                     wx_error *err);

/* An integer in decimal. */
int wx__canon_int(wx_buf *out, int64_t v, wx_error *err);

#endif
