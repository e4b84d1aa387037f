/* Internal helpers of the result module (contract types). */
#ifndef WX_RESULT_INT_H
#define WX_RESULT_INT_H

#include <warmexec/buf.h>
#include <warmexec/result.h>

/*
 * Append the canonical JSON text of a valid `r` to `out`: the bytes
 * wx_json_canonical() writes for wx_sim_return_to_json(r), without
 * building the jansson values (the result cache writes one per task).
 */
int wx__sim_return_canonical(const wx_sim_return *r, wx_buf *out,
                             wx_error *err);

/* The same for an outputs object {name: artifact, ...} alone. */
int wx__outputs_canonical(const wx_output *outputs, size_t n, wx_buf *out,
                          wx_error *err);

#endif
