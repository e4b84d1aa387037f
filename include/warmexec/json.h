/*
 * JSON: jansson values and warmexec's own strict reader.  The writers
 * are in <warmexec/canon.h>.
 *
 * Ownership rule for every json_t in the warmexec API: a function that
 * returns or outputs a json_t * gives the caller one reference (release
 * with json_decref()); accessors and arguments only borrow.
 *
 * Why a reader of our own: jansson cannot hold integers outside int64,
 * while Python (and so modelops) writes them, and the contract vectors
 * contain 2^64-1.  The reader keeps such an integer exactly as a "big
 * integer" value (see wx_json_is_bigint()); the writers print it back
 * digit for digit.  Consumers that need an int64 (seeds, parameters)
 * refuse big integers with a clear error.
 */
#ifndef WARMEXEC_JSON_H
#define WARMEXEC_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include <warmexec/buf.h>
#include <warmexec/error.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Deepest nesting of arrays and objects the reader accepts. */
#define WX_JSON_MAX_DEPTH 512

/* Most digits of an integer (Python's default int/str conversion limit). */
#define WX_JSON_MAX_INT_DIGITS 4300

/*
 * Parse `len` bytes of UTF-8 JSON text (RFC 8259, any value at top level,
 * surrounding whitespace allowed) into `*out`.  Strict: invalid UTF-8,
 * lone surrogates, raw control characters in strings, leading zeros,
 * trailing garbage, NaN/Infinity and numbers that overflow a double are
 * WX_EINVAL, with a message giving line, column and the reason.  A number
 * with a fraction or exponent becomes a real, any other number an integer
 * (a big integer outside int64).  Duplicate keys: the last one wins (as in
 * Python).  The caller bounds `len`; nesting is bounded by
 * WX_JSON_MAX_DEPTH.  Thread-safe.
 */
WX_API int wx_json_parse(const char *text, size_t len, json_t **out,
                         wx_error *err);

/* Reader flags. */
enum {
    /*
     * Read NaN, Infinity, -Infinity and numbers that overflow a double as
     * null instead of failing: for replies of Python runners, whose json
     * module writes such tokens (in diagnostics, say).
     */
    WX_JSON_NONFINITE_AS_NULL = 1
};

/* wx_json_parse() with reader flags. */
WX_API int wx_json_parse_flags(const char *text, size_t len, unsigned flags,
                               json_t **out, wx_error *err);

/* True when `v` is an integer outside the int64 range. */
WX_API bool wx_json_is_bigint(const json_t *v);

/*
 * The exact decimal text ("-" and digits) of a big integer, borrowed from
 * `v`; NULL when `v` is not one.  `*len` (optional) gets its length.
 */
WX_API const char *wx_json_bigint_text(const json_t *v, size_t *len);

/*
 * A big-integer value from its decimal text.  NULL when `text` is not an
 * optionally negative digit string without leading zeros that lies
 * outside int64 (use json_integer() for those), or when out of memory.
 */
WX_API json_t *wx_json_bigint(const char *text, size_t len);

/*
 * The value `v` as a short type word for messages: "object", "array",
 * "string", "integer", "float", "boolean", "null".
 */
WX_API const char *wx_json_type_name(const json_t *v);

#ifdef __cplusplus
}
#endif

#endif
