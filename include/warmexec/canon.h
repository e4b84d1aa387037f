/*
 * JSON writers: canonical JSON for identifiers (byte-identical to the
 * Python contracts) and compact JSON for the wire, both with Python's
 * number and string formatting.  Thread-safe.
 */
#ifndef WARMEXEC_CANON_H
#define WARMEXEC_CANON_H

#include <jansson.h>

#include <warmexec/buf.h>
#include <warmexec/error.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writer flags. */
enum {
    WX_JSON_SORT_KEYS = 1,   /* keys by code point (= UTF-8 byte) order */
    WX_JSON_ENSURE_ASCII = 2, /* \uXXXX for every non-ASCII character */
    WX_JSON_PRETTY = 4        /* indent=2 with ": " (Python's indent=2) */
};

/*
 * Append the compact JSON text of `v` (no whitespace) to `out`.  Strings,
 * integers and floats are written exactly as Python's json.dumps with
 * separators=(",",":") writes them (floats as repr(), `-0.0` kept); with
 * WX_JSON_ENSURE_ASCII as with ensure_ascii=True, without it raw UTF-8;
 * with WX_JSON_SORT_KEYS as with sort_keys=True, else in insertion order.
 * WX_EINVAL for a non-finite real or an invalid string.
 */
WX_API int wx_json_write(wx_buf *out, const json_t *v, unsigned flags,
                         wx_error *err);

/*
 * Canonical JSON of the contracts: byte-identical to Python
 * json.dumps(v, sort_keys=True, separators=(",",":"), ensure_ascii=False).
 */
WX_API int wx_json_canonical(wx_buf *out, const json_t *v, wx_error *err);

#ifdef __cplusplus
}
#endif

#endif
