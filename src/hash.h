/*
 * Digests: SHA-256 (OpenSSL EVP) for content addressing and checksums,
 * BLAKE2b (libsodium) for the contract identifiers, and lowercase hex.
 * All functions are thread-safe.
 */
#ifndef WX_HASH_H
#define WX_HASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <warmexec/error.h>

#define WX_SHA256_LEN 32
#define WX_BLAKE2B256_LEN 32
/* Lowercase hex of a 32-byte digest, without the terminating NUL. */
#define WX_HEX256_LEN 64

/* Streaming SHA-256; `evp` is an EVP_MD_CTX owned by the context. */
typedef struct wx__sha256_ctx {
    void *evp;
} wx__sha256_ctx;

#define WX__SHA256_INIT {NULL}

int wx__sha256_begin(wx__sha256_ctx *h, wx_error *err);
int wx__sha256_update(wx__sha256_ctx *h, const void *data, size_t n,
                      wx_error *err);
/* Write the digest and free the context (also on failure). */
int wx__sha256_finish(wx__sha256_ctx *h, uint8_t out[WX_SHA256_LEN],
                      wx_error *err);
/* Free the context without a digest; safe on an unused context. */
void wx__sha256_abort(wx__sha256_ctx *h);

/* One-shot SHA-256. */
int wx__sha256(const void *data, size_t n, uint8_t out[WX_SHA256_LEN],
               wx_error *err);

/* One-shot SHA-256 as 64 lowercase hex characters + NUL. */
int wx__sha256_hex(const void *data, size_t n, char out[WX_HEX256_LEN + 1],
                   wx_error *err);

/* BLAKE2b with a 32-byte digest, no key: the contracts' digest_bytes(). */
void wx__blake2b256(const void *data, size_t n,
                    uint8_t out[WX_BLAKE2B256_LEN]);

/* BLAKE2b with an `outlen`-byte digest (1..64): a different hash for
   each length, not a truncation. */
void wx__blake2b(const void *data, size_t n, uint8_t *out, size_t outlen);

/* BLAKE2b-256 as 64 lowercase hex characters + NUL. */
void wx__blake2b256_hex(const void *data, size_t n,
                        char out[WX_HEX256_LEN + 1]);

/*
 * Lowercase hex of `n` bytes into `out`, which must hold 2n + 1 bytes
 * (NUL-terminated).
 */
void wx__hex(const uint8_t *bytes, size_t n, char *out);

/* True when s[0..n) consists of lowercase hex digits only. */
bool wx__is_lower_hex(const char *s, size_t n);

/* True when `s` is exactly 64 lowercase hex characters. */
bool wx__is_hex256(const char *s);

#endif
