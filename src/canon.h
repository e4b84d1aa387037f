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
#include <warmexec/json.h>

/* A JSON string of `len` bytes of UTF-8, with `flags` (ENSURE_ASCII). */
int wx__canon_string(wx_buf *out, const char *s, size_t len, unsigned flags,
                     wx_error *err);

/* An integer in decimal. */
int wx__canon_int(wx_buf *out, int64_t v, wx_error *err);

/*
 * A JSON text writer for fixed-shape documents: straight into `b`, no
 * jansson values for the shape.  The first failure sticks in `rc` (and
 * `err`); later writes do nothing.  `flags` are wx_json_write()'s, for
 * strings and for whole values.
 */
typedef struct wx__jw {
    wx_buf *b;
    unsigned flags;
    int rc;
    wx_error *err;
} wx__jw;

/* `s` as it is (punctuation, literals). */
void wx__jw_raw(wx__jw *w, const char *s);
/* A JSON string of `s`. */
void wx__jw_str(wx__jw *w, const char *s);
void wx__jw_int(wx__jw *w, int64_t v);
/* A JSON string of the base64 of `n` bytes. */
void wx__jw_base64(wx__jw *w, const uint8_t *data, size_t n);
/* A whole value, as wx_json_write() writes it with w->flags. */
void wx__jw_value(wx__jw *w, const json_t *v);

#endif
