/*
 * Standard base64 (RFC 4648 alphabet, '=' padding), as Python's
 * base64.b64encode writes it.  Decoding is strict: characters outside the
 * alphabet, missing or misplaced padding, and non-zero trailing bits are
 * errors (Python's default decoder silently drops unknown characters;
 * warmexec refuses them so a corrupted artifact is never accepted).
 */
#ifndef WX_B64_H
#define WX_B64_H

#include <stddef.h>
#include <stdint.h>

#include <warmexec/error.h>

/* Length of the encoding of `n` bytes, without a NUL; 0 on overflow. */
size_t wx__b64_encoded_len(size_t n);

/*
 * Encode `n` bytes into `out`, which must hold wx__b64_encoded_len(n) + 1
 * bytes; the result is NUL-terminated.
 */
void wx__b64_encode(const uint8_t *in, size_t n, char *out);

/* Upper bound of the decoded size of `n` characters. */
size_t wx__b64_decoded_max(size_t n);

/*
 * Decode `n` characters into `out` (wx__b64_decoded_max(n) bytes) and
 * store the decoded length in `*out_len`.  WX_EINVAL on malformed input.
 */
int wx__b64_decode(const char *in, size_t n, uint8_t *out, size_t *out_len,
                   wx_error *err);

#endif
