/*
 * The model host of warmexec-runner: the registry a model library fills,
 * and the execute/aggregate requests run against it (model.h ABI).
 * Single-threaded.
 */
#ifndef WX_RUNNER_HOST_H
#define WX_RUNNER_HOST_H

#include <stdbool.h>

#include <warmexec/model.h>

#include "rpc.h"

typedef struct host host;

/* A host for the bundle `digest` at `bundle_path`.  NULL: out of memory. */
host *host_new(const char *digest, const char *bundle_path);
void host_free(host *h);

/* The registry to pass to the library's wx_model_init(). */
wx_model_registry *host_registry(host *h);

/* Serve one request (the wx__rpc_handler of the runner). */
int host_handle(void *ctx, const char *method, json_t *params,
                const wx__frame *frame, wx__rpc_reply *reply);

/* After a reply is written: forget the call (outputs stay for reuse). */
void host_release(void *ctx, wx__rpc_reply *reply);

#endif
