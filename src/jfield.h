/*
 * Readers for the fields of a JSON object that name the field and the
 * rule in their error messages ("seed: must be an integer ...").  Every
 * reader borrows from `obj`; nothing is allocated.  Thread-safe.
 *
 * `required`: when false, an absent field (and, for objects and arrays, a
 * null) leaves *out untouched and returns 0.
 */
#ifndef WX_JFIELD_H
#define WX_JFIELD_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include <warmexec/error.h>

/* A string without NUL bytes (and not a big integer). */
int wx__jf_string(const json_t *obj, const char *field, bool required,
                  const char **out, wx_error *err);

/* An integer in [min, max]; booleans and floats are refused. */
int wx__jf_int(const json_t *obj, const char *field, bool required,
               int64_t min, int64_t max, int64_t *out, wx_error *err);

int wx__jf_bool(const json_t *obj, const char *field, bool required,
                bool *out, wx_error *err);

/* A finite number (integer or float) as a double. */
int wx__jf_number(const json_t *obj, const char *field, bool required,
                  double *out, wx_error *err);

/* An object (borrowed). */
int wx__jf_object(const json_t *obj, const char *field, bool required,
                  json_t **out, wx_error *err);

/* An array (borrowed). */
int wx__jf_array(const json_t *obj, const char *field, bool required,
                 json_t **out, wx_error *err);

/* 64 lowercase hex characters, copied into `out`. */
int wx__jf_hex64(const json_t *obj, const char *field, bool required,
                 char out[65], wx_error *err);

/*
 * WX_EINVAL naming the first key of `obj` that is not in the
 * NULL-terminated list `known`.  `what` names the object in the message.
 */
int wx__jf_known_keys(const json_t *obj, const char *what,
                      const char *const *known, wx_error *err);

/* True when `v` is a string without NUL bytes (not a big integer). */
bool wx__json_is_text(const json_t *v);

#endif
