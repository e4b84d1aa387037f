/*
 * The identifiers of modelops-contracts, byte-identical to the Python
 * implementation (reference section 1.6): digest_bytes, param_id,
 * provenance roots (sim_root, calib_root), task_id, aggregation_id and
 * shard paths.  These are pure functions of their arguments; validation of
 * whole tasks lives in <warmexec/contracts.h>.  All functions are
 * thread-safe; output buffers are caller-owned.
 */
#ifndef WARMEXEC_IDS_H
#define WARMEXEC_IDS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <warmexec/buf.h>
#include <warmexec/error.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 64 lowercase hex characters. */
#define WX_ID_LEN 64
/* An aggregation id is the first 16 hex characters of its digest. */
#define WX_AGG_ID_LEN 16

/* digest_bytes(): lowercase hex BLAKE2b-256 of `n` bytes. */
WX_API void wx_digest_hex(const void *data, size_t n, char out[WX_ID_LEN + 1]);

/*
 * param_id of a parameter object: BLAKE2b-256 of "contracts:param:v1|" +
 * canonical JSON.  WX_EINVAL when `params` is not an object or cannot be
 * written canonically.
 */
WX_API int wx_param_id(const json_t *params, char out[WX_ID_LEN + 1],
                       wx_error *err);

/*
 * sim_root: provenance root of one simulation.  `config` and `env` may be
 * NULL; an empty object counts as absent.  The scenario leaf comes from
 * the entrypoint, "baseline" when it does not parse (as in the original).
 * The seed is any uint64 here; a SimTask narrows it (contracts.h).
 */
WX_API int wx_sim_root(const char *bundle_ref, const json_t *params,
                       uint64_t seed, const char *entrypoint,
                       const json_t *config, const json_t *env,
                       char out[WX_ID_LEN + 1], wx_error *err);

/*
 * task_id of (sim_root, entrypoint, outputs): `outputs` NULL means all
 * outputs ("*"); otherwise an array of strings, sorted before joining
 * with ",".  WX_EINVAL when `outputs` holds a non-string.
 */
WX_API int wx_task_id(const char *sim_root, const char *entrypoint,
                      const json_t *outputs, char out[WX_ID_LEN + 1],
                      wx_error *err);

/*
 * aggregation_id of a target over `n` sim_roots (order irrelevant,
 * duplicates kept): the first 16 hex characters of BLAKE2b-256 of
 * "target:root1,root2,...".  `full` (optional) receives all 64.
 */
WX_API int wx_aggregation_id(const char *target_entrypoint,
                             const char *const *sim_roots, size_t n,
                             char out[WX_AGG_ID_LEN + 1],
                             char full[WX_ID_LEN + 1], wx_error *err);

/* calib_root: provenance root of a calibration (reference 1.6.7). */
WX_API int wx_calib_root(const char *targets_id, const char *optimizer_id,
                         const char *const *sim_roots, size_t n,
                         const char *calib_code_id, const char *env_id,
                         char out[WX_ID_LEN + 1], wx_error *err);

/*
 * shard(digest, depth, width): "ab/cd/<digest>" for depth 2, width 2.
 * WX_EINVAL "Digest too short for sharding: need at least N chars, got M".
 */
WX_API int wx_shard(const char *digest, int depth, int width, wx_buf *out,
                    wx_error *err);

#ifdef __cplusplus
}
#endif

#endif
