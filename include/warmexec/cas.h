/*
 * Content-addressed store (DESIGN.md 6): immutable objects named by the
 * SHA-256 of their bytes, referenced as "cas://<64 lowercase hex>".
 *
 * Two backends behind one interface: the filesystem store (objects at
 * <root>/sha256/<2 hex>/<62 hex>, read-only files, published atomically)
 * and a memory store for tests.  Every read re-hashes the object and
 * refuses content that no longer matches its name.  Only well-formed refs
 * are accepted, so no path can be smuggled in through a ref.
 *
 * A wx_cas is thread-safe; the filesystem store is also safe to share
 * between processes.
 */
#ifndef WARMEXEC_CAS_H
#define WARMEXEC_CAS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <warmexec/error.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "cas://" + 64 hex characters. */
#define WX_CAS_REF_LEN 70

typedef struct wx_cas wx_cas;

/* Durability of the filesystem store (docs/cas.md). */
typedef enum wx_cas_sync {
    WX_CAS_SYNC_FULL,   /* fsync each object and its directory before put
                           returns: a put that returned survives a crash */
    WX_CAS_SYNC_BATCH,  /* no fsync in put; wx_cas_flush() makes every
                           object stored so far durable */
    WX_CAS_SYNC_NONE    /* leave it to the OS: a crash may lose recent
                           objects, never corrupt one that is read back */
} wx_cas_sync;

/*
 * Open (creating if needed) the filesystem store rooted at `root` (e.g.
 * home/cas).  Caller frees with wx_cas_close().
 */
WX_API int wx_cas_open_fs(const char *root, wx_cas_sync sync, wx_cas **out,
                          wx_error *err);

/* A new, empty memory store.  Caller frees with wx_cas_close(). */
WX_API int wx_cas_open_memory(wx_cas **out, wx_error *err);

/*
 * Make every object this handle stored (or found present) durable: under
 * WX_CAS_SYNC_BATCH fsync each one since the last flush and the
 * directories holding them; nothing to do otherwise.  Closing a BATCH
 * store flushes too, ignoring errors.
 */
WX_API int wx_cas_flush(wx_cas *cas, wx_error *err);

WX_API void wx_cas_close(wx_cas *cas);

/*
 * Check `ref` is "cas://<64 lowercase hex>"; on success `hex` (optional,
 * 65 bytes) receives the digest.  WX_EINVAL otherwise.
 */
WX_API int wx_cas_parse_ref(const char *ref, char hex[65], wx_error *err);

/*
 * Store `len` bytes and write their ref into `ref` (WX_CAS_REF_LEN + 1
 * bytes).  `sha256_hex` may give the digest when the caller has already
 * computed it (it is trusted), or be NULL.  Storing an object that is
 * already present succeeds; a present object whose content is damaged is
 * replaced.  WX_EIO (StorageError) on failure.
 */
WX_API int wx_cas_put(wx_cas *cas, const void *data, size_t len,
                      const char *sha256_hex, char ref[WX_CAS_REF_LEN + 1],
                      wx_error *err);

/*
 * Read and verify an object.  `*data` (caller frees with wx_free; NULL
 * when empty) holds `*len` bytes.  WX_EINVAL for a malformed ref,
 * WX_ENOTFOUND when absent, WX_ECORRUPT when the content does not hash to
 * the ref, WX_EIO otherwise.  `max_len` bounds what is read
 * (WX_ETOOBIG beyond it).
 */
WX_API int wx_cas_get(wx_cas *cas, const char *ref, size_t max_len,
                      uint8_t **data, size_t *len, wx_error *err);

/* Whether the object is present (not verified).  Errors as wx_cas_get. */
WX_API int wx_cas_exists(wx_cas *cas, const char *ref, bool *exists,
                         wx_error *err);

/*
 * Re-hash an object: 0 when it matches, WX_ECORRUPT or WX_ENOTFOUND
 * otherwise.  Reads in chunks, without holding it in memory.
 */
WX_API int wx_cas_verify(wx_cas *cas, const char *ref, wx_error *err);

/* Remove an object (absent is fine).  For repairs and tests. */
WX_API int wx_cas_remove(wx_cas *cas, const char *ref, wx_error *err);

/*
 * Visit every object: `fn(user, ref, size)` for each; a non-zero return
 * stops the walk and is returned.
 */
WX_API int wx_cas_foreach(wx_cas *cas,
                          int (*fn)(void *user, const char *ref,
                                    uint64_t size),
                          void *user, wx_error *err);

#ifdef __cplusplus
}
#endif

#endif
