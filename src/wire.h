/*
 * The messages of the worker protocol: `execute` and `aggregate` params
 * and results, in compat (base64) or warmexec/1 (attachments) form, and
 * the original's in-band error encodings (docs/protocol.md).
 */
#ifndef WX_WIRE_H
#define WX_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <jansson.h>

#include <warmexec/buf.h>
#include <warmexec/error.h>
#include <warmexec/result.h>

#include "rpc.h"

/* One artifact of an execute result; bytes borrowed (see wx__outputs). */
typedef struct wx__raw_output {
    const char *name;
    const uint8_t *data;
    size_t len;
    size_t att; /* the attachment holding the bytes, or WX__NO_ATT */
} wx__raw_output;

#define WX__NO_ATT SIZE_MAX

/*
 * The artifacts of one execute result.  Names are borrowed from the
 * result JSON, bytes from the connection's last frame (attachments) or
 * from `decoded` (base64): valid until the next call and while the result
 * is alive.  Buffers are reused from call to call.
 */
typedef struct wx__outputs {
    wx__raw_output *items;
    size_t n, cap;
    wx_buf decoded;
} wx__outputs;

void wx__outputs_init(wx__outputs *o, size_t max_bytes);
void wx__outputs_release(wx__outputs *o);

/*
 * The text of execute params {"entrypoint":E,"params":P,"seed":S} into
 * `out` (reset first): the original's key order, compact and ASCII-escaped,
 * P in its own key order.  A string that is not UTF-8 is WX_EINVAL.
 */
int wx__wire_execute_params(wx_buf *out, const char *entrypoint,
                            const json_t *params, int64_t seed,
                            wx_error *err);

/*
 * Read an execute result.  An in-band error (a result whose only member
 * "error" is base64 of {"error","type",...}) gives WX_EMODEL with "type:
 * message" (WX_EOOM for a MemoryError).  A value that is neither a base64
 * string nor an attachment reference is WX_EPROTO.
 */
int wx__wire_read_outputs(const json_t *result, const wx__rpc_conn *conn,
                          wx__outputs *out, wx_error *err);

/*
 * Write aggregate params as JSON text into `out` (reset first).  Every
 * output's bytes must be loaded (WX_EINVAL).  With `attachments`, the
 * bytes travel as attachments listed in `att` (one per output, the
 * first WX_FRAME_ATT_MAX outputs: room for as many; `*n_att` set), the
 * rest as base64.
 */
int wx__wire_aggregate_params(const char *target,
                              const wx_sim_return *sim_returns, size_t n,
                              const json_t *target_data, bool attachments,
                              struct iovec *att, size_t *n_att, wx_buf *out,
                              wx_error *err);

/*
 * Read an aggregate result into `ret` (loss, diagnostics, n_replicates =
 * `n_sim_returns`).  The in-band error {"error","type",...} gives
 * WX_EMODEL (WX_EOOM for MemoryError); a missing or non-finite loss is
 * WX_EMODEL with the original's message.
 */
int wx__wire_read_agg_result(const json_t *result, size_t n_sim_returns,
                             wx_agg_return *ret, wx_error *err);

/* WX_EOOM when `type` names an allocation failure, else WX_EMODEL. */
int wx__wire_model_error_code(const char *type);

#endif
