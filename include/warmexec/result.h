/*
 * Results of the contracts (reference section 1.7-1.8): TableArtifact,
 * ErrorInfo, SimReturn and AggregationReturn, with their invariants and
 * their JSON form (docs/formats.md).
 *
 * These are plain value structs.  Each owns every pointer in it; the
 * matching _release() frees the contents and leaves a zeroed struct.
 * Not thread-safe to modify; concurrent reads are safe.
 */
#ifndef WARMEXEC_RESULT_H
#define WARMEXEC_RESULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include <warmexec/error.h>
#include <warmexec/ids.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest inline artifact the contract allows (INLINE_CAP). */
#define WX_INLINE_CAP 524288

/* Prefix of a content-addressed artifact reference. */
#define WX_CAS_PREFIX "cas://"

/*
 * TableArtifact: the bytes of one output, either inline (ref == NULL,
 * `data` holds `size` bytes) or stored in the CAS (ref = "cas://<64 hex>";
 * `data` is NULL, or holds the `size` bytes once loaded for an
 * aggregation).  `checksum` is the SHA-256 hex of the bytes.  warmexec
 * treats artifact bytes as opaque: there is no content type.
 */
typedef struct wx_artifact {
    uint64_t size;
    char checksum[WX_ID_LEN + 1];
    uint8_t *data; /* owned; NULL when empty or not loaded */
    char *ref;     /* owned; NULL for inline */
} wx_artifact;

/* One named output of a simulation. */
typedef struct wx_output {
    char *name; /* owned */
    wx_artifact art;
} wx_output;

/* ErrorInfo: what went wrong, in the taxonomy of DESIGN.md 2.3. */
typedef struct wx_error_info {
    char *error_type; /* owned; "ModelError", "Timeout", ... */
    char *message;    /* owned */
    bool retryable;
} wx_error_info;

/* SimReturn: the result of one SimTask, success or failure. */
typedef struct wx_sim_return {
    char task_id[WX_ID_LEN + 1];
    char sim_root[WX_ID_LEN + 1];
    wx_output *outputs; /* owned array of n_outputs */
    size_t n_outputs;
    wx_error_info *error;       /* owned; NULL on success */
    wx_artifact *error_details; /* owned; set whenever error is */
    json_t *metrics;            /* owned reference or NULL: name -> number */
    char *logs_ref;             /* owned or NULL */
    bool cached;
} wx_sim_return;

/* AggregationReturn: the loss of a target over a set of replicates. */
typedef struct wx_agg_return {
    char aggregation_id[WX_AGG_ID_LEN + 1];
    double loss;         /* finite */
    json_t *diagnostics; /* owned reference; an object (may be empty) */
    wx_output *outputs;  /* owned array of n_outputs */
    size_t n_outputs;
    int64_t n_replicates; /* > 0 */
} wx_agg_return;

/*
 * Check the TableArtifact invariants in the contract's order: exactly one
 * of inline or ref ("Must provide exactly one of inline or ref"), inline
 * length equals size and size <= WX_INLINE_CAP, ref is "cas://<64 hex>",
 * checksum is 64 lowercase hex.  WX_EINVAL with the contract's message.
 */
WX_API int wx_artifact_validate(const wx_artifact *a, wx_error *err);

WX_API void wx_artifact_release(wx_artifact *a);

/* Deep copy; `dst` is overwritten (release it first).  WX_ENOMEM. */
WX_API int wx_artifact_copy(wx_artifact *dst, const wx_artifact *src,
                            wx_error *err);

/*
 * JSON: {"size":N,"checksum":H,"inline":base64} or
 * {"size":N,"checksum":H,"ref":"cas://..."} (a "content_type" key is
 * accepted and ignored).  from_json validates; on failure `*a` is left
 * released.  to_json writes inline bytes as base64 and never writes
 * loaded CAS bytes.
 */
WX_API int wx_artifact_from_json(wx_artifact *a, const json_t *v,
                                 wx_error *err);
WX_API int wx_artifact_to_json(const wx_artifact *a, json_t **out,
                               wx_error *err);

WX_API void wx_error_info_release(wx_error_info *e);

/* {"error_type":T,"message":M,"retryable":B} */
WX_API int wx_error_info_from_json(wx_error_info *e, const json_t *v,
                                   wx_error *err);
WX_API int wx_error_info_to_json(const wx_error_info *e, json_t **out,
                                 wx_error *err);

/*
 * Check the SimReturn invariants: task_id non-empty, sim_root 64 hex,
 * outputs non-empty unless error is set, error requires error_details,
 * every artifact valid, output names unique and non-empty.
 */
WX_API int wx_sim_return_validate(const wx_sim_return *r, wx_error *err);

WX_API void wx_sim_return_release(wx_sim_return *r);

/* Deep copy into `dst` (overwritten; released on failure).  WX_ENOMEM. */
WX_API int wx_sim_return_copy(wx_sim_return *dst, const wx_sim_return *src,
                              wx_error *err);

/*
 * JSON: {"task_id","sim_root","outputs":{name: artifact},"error":null|
 * ErrorInfo,"error_details":null|artifact,"metrics":{},"cached":B,
 * "logs_ref":null|S}.  from_json validates.
 */
WX_API int wx_sim_return_from_json(wx_sim_return *r, const json_t *v,
                                   wx_error *err);
WX_API int wx_sim_return_to_json(const wx_sim_return *r, json_t **out,
                                 wx_error *err);

/* Check: 16 hex aggregation_id, finite loss, n_replicates > 0. */
WX_API int wx_agg_return_validate(const wx_agg_return *r, wx_error *err);

WX_API void wx_agg_return_release(wx_agg_return *r);

/*
 * JSON: {"aggregation_id","loss","diagnostics":{},"outputs":{},
 * "n_replicates"}.  from_json validates.
 */
WX_API int wx_agg_return_from_json(wx_agg_return *r, const json_t *v,
                                   wx_error *err);
WX_API int wx_agg_return_to_json(const wx_agg_return *r, json_t **out,
                                 wx_error *err);

#ifdef __cplusplus
}
#endif

#endif
