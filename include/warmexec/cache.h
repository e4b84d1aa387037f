/*
 * The result cache (DESIGN.md 6): successful SimReturns by sim_root and
 * AggregationReturns by aggregation id, in a SQLite database (WAL mode,
 * busy timeout) that several processes may share.
 *
 * The cache stores what it is given; whether a hit is usable (every CAS
 * object it references still present and intact) is the caller's check,
 * since the cache does not know the CAS (the execution environment does
 * it and deletes entries that fail).
 *
 * A wx_cache is thread-safe.  It runs a writer thread (see
 * wx_cache_flush): as with any threaded library, a process must not
 * fork() without exec while a cache is open, since the child would
 * inherit locks held by that thread.
 */
#ifndef WARMEXEC_CACHE_H
#define WARMEXEC_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include <warmexec/error.h>
#include <warmexec/result.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wx_cache wx_cache;

typedef struct wx_cache_stats {
    int64_t sims;         /* cached simulations */
    int64_t aggregations; /* cached aggregations */
    int64_t bytes;        /* size of the stored JSON texts */
} wx_cache_stats;

/* Open (creating if needed) the cache database at `path`. */
WX_API int wx_cache_open(const char *path, wx_cache **out, wx_error *err);
WX_API void wx_cache_close(wx_cache *cache);

/*
 * Look up the SimReturn stored for `sim_root`.  On a hit `*hit` is true
 * and `*out` (caller releases) is filled; otherwise `*out` is untouched.
 */
WX_API int wx_cache_get_sim(wx_cache *cache, const char *sim_root,
                            wx_sim_return *out, bool *hit, wx_error *err);

/*
 * Store a successful SimReturn under its sim_root (replacing any entry).
 * WX_EINVAL for a SimReturn with an error: failures are never cached.
 */
WX_API int wx_cache_put_sim(wx_cache *cache, const wx_sim_return *r,
                            wx_error *err);

/*
 * Puts are committed in groups by a writer thread (up to 4096 entries or
 * 200 ms, and before a read of a pending key, a delete, stats or close):
 * a put returns before its entry is in the file, and a crash can lose
 * the last 200 ms of entries, which only costs running those tasks
 * again.  Lookups share a read snapshot for up to 200 ms, so an entry
 * another process commits is seen within that time.  wx_cache_flush
 * commits the pending puts now and starts a fresh snapshot.
 */
WX_API int wx_cache_flush(wx_cache *cache, wx_error *err);

/* Forget the entry of `sim_root` (absent is fine). */
WX_API int wx_cache_delete_sim(wx_cache *cache, const char *sim_root,
                               wx_error *err);

/*
 * The same for aggregations, keyed by the full 64-hex aggregation digest
 * (the contract's 16-hex id is stored beside it).
 */
WX_API int wx_cache_get_agg(wx_cache *cache, const char *agg_digest,
                            wx_agg_return *out, bool *hit, wx_error *err);
WX_API int wx_cache_put_agg(wx_cache *cache, const char *agg_digest,
                            const wx_agg_return *r, wx_error *err);
WX_API int wx_cache_delete_agg(wx_cache *cache, const char *agg_digest,
                               wx_error *err);

WX_API int wx_cache_stats_get(wx_cache *cache, wx_cache_stats *out,
                              wx_error *err);

/* Remove every entry. */
WX_API int wx_cache_clear(wx_cache *cache, wx_error *err);

#ifdef __cplusplus
}
#endif

#endif
