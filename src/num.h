/*
 * Locale-independent number text: Python's repr(float) and strict
 * decimal parsing.  Thread-safe.
 */
#ifndef WX_NUM_H
#define WX_NUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest Python float repr: "-2.2250738585072014e-308" plus NUL. */
#define WX_FLOAT_REPR_MAX 32

/*
 * Write Python's repr() of a finite double into `out` and return its
 * length: the shortest digit string that reads back to the same double;
 * fixed notation when the decimal exponent is in [-4, 16) (with ".0" for
 * integral values), else "d[.ddd]e+XX".  `-0.0` stays "-0.0".  Returns 0
 * (and writes nothing) for NaN or infinity, which have no JSON form.
 */
size_t wx__float_repr(double v, char out[WX_FLOAT_REPR_MAX]);

/*
 * Parse `len` bytes of a JSON number token with a fraction or exponent
 * into the nearest double (as C's strtod in the "C" locale).  Returns 0,
 * WX_EINVAL when the text is not fully consumed, or WX_ENOMEM.  Overflow
 * yields +-infinity.
 */
int wx__parse_double(const char *text, size_t len, double *out);

/*
 * Parse an optional '-' and decimal digits (no leading '+', no spaces)
 * into an int64.  False on syntax error or overflow.
 */
bool wx__parse_int64(const char *text, size_t len, int64_t *out);

#endif
