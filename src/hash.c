/* SHA-256 through OpenSSL EVP, BLAKE2b through libsodium, hex. */
#include "internal.h"

#include <openssl/evp.h>
#include <pthread.h>
#include <sodium.h>

#include "hash.h"

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

/*
 * The SHA-256 implementation, fetched once: EVP_sha256() makes OpenSSL 3
 * look the algorithm up again at every init, which costs more than
 * hashing a small artifact.  NULL when the fetch failed (then every hash
 * reports an error).
 */
static EVP_MD *sha256_md;

/* One reusable context per thread for one-shot hashes. */
static _Thread_local EVP_MD_CTX *thread_ctx;
static pthread_key_t thread_ctx_key;
static bool have_thread_ctx_key;

static void free_thread_ctx(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void sha256_setup(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    /* The key only frees the contexts of exiting threads. */
    have_thread_ctx_key =
        pthread_key_create(&thread_ctx_key, free_thread_ctx) == 0;
}

static const EVP_MD *sha256(void)
{
    pthread_once(&sha256_once, sha256_setup);
    return sha256_md;
}

/*
 * sodium_init() selects the fastest implementation for this CPU; the
 * functions are correct without it, so its result is not an error.
 */
static void sodium_setup(void)
{
    if (sodium_init() < 0)
        return;
}

int wx__sha256_begin(wx__sha256_ctx *h, wx_error *err)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();

    if (!ctx)
        return wx_error_set(err, WX_ENOMEM, "out of memory (SHA-256)");
    if (!sha256() || EVP_DigestInit_ex(ctx, sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        return wx_error_set(err, WX_EINTERNAL, "SHA-256 init failed");
    }
    h->evp = ctx;
    return 0;
}

int wx__sha256_update(wx__sha256_ctx *h, const void *data, size_t n,
                      wx_error *err)
{
    if (n && EVP_DigestUpdate(h->evp, data, n) != 1)
        return wx_error_set(err, WX_EINTERNAL, "SHA-256 update failed");
    return 0;
}

int wx__sha256_finish(wx__sha256_ctx *h, uint8_t out[WX_SHA256_LEN],
                      wx_error *err)
{
    unsigned int len = 0;
    int ok = EVP_DigestFinal_ex(h->evp, out, &len);

    wx__sha256_abort(h);
    if (ok != 1 || len != WX_SHA256_LEN)
        return wx_error_set(err, WX_EINTERNAL, "SHA-256 final failed");
    return 0;
}

void wx__sha256_abort(wx__sha256_ctx *h)
{
    EVP_MD_CTX_free(h->evp);
    h->evp = NULL;
}

/* This thread's one-shot context, created at first use. */
static EVP_MD_CTX *one_shot_ctx(void)
{
    if (!thread_ctx && sha256()) {
        thread_ctx = EVP_MD_CTX_new();
        if (thread_ctx && have_thread_ctx_key)
            pthread_setspecific(thread_ctx_key, thread_ctx);
    }
    return thread_ctx;
}

int wx__sha256(const void *data, size_t n, uint8_t out[WX_SHA256_LEN],
               wx_error *err)
{
    EVP_MD_CTX *ctx = one_shot_ctx();
    unsigned int len = 0;

    if (!ctx)
        return wx_error_set(err, WX_EINTERNAL, "SHA-256 unavailable");
    if (EVP_DigestInit_ex(ctx, sha256_md, NULL) != 1 ||
        (n && EVP_DigestUpdate(ctx, data, n) != 1) ||
        EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != WX_SHA256_LEN)
        return wx_error_set(err, WX_EINTERNAL, "SHA-256 failed");
    return 0;
}

int wx__sha256_hex(const void *data, size_t n, char out[WX_HEX256_LEN + 1],
                   wx_error *err)
{
    uint8_t digest[WX_SHA256_LEN];
    int rc = wx__sha256(data, n, digest, err);

    if (rc)
        return rc;
    wx__hex(digest, sizeof(digest), out);
    return 0;
}

void wx__blake2b256(const void *data, size_t n,
                    uint8_t out[WX_BLAKE2B256_LEN])
{
    pthread_once(&sodium_once, sodium_setup);
    /* Cannot fail for a 32-byte output and no key. */
    crypto_generichash(out, WX_BLAKE2B256_LEN, data, n, NULL, 0);
}

void wx__blake2b(const void *data, size_t n, uint8_t *out, size_t outlen)
{
    pthread_once(&sodium_once, sodium_setup);
    crypto_generichash(out, outlen, data, n, NULL, 0);
}

void wx__blake2b256_hex(const void *data, size_t n,
                        char out[WX_HEX256_LEN + 1])
{
    uint8_t digest[WX_BLAKE2B256_LEN];

    wx__blake2b256(data, n, digest);
    wx__hex(digest, sizeof(digest), out);
}

void wx__hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 0xf];
    }
    out[2 * n] = '\0';
}

bool wx__is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];

        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

bool wx__is_hex256(const char *s)
{
    return strlen(s) == WX_HEX256_LEN && wx__is_lower_hex(s, WX_HEX256_LEN);
}
