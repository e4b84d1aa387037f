/*
 * The native model ABI: what a model library written in C (or anything
 * with a C ABI) uses to run inside warmexec-runner.  Self-contained: no
 * other warmexec header or library is needed to build a model.
 *
 * A model library exports one function,
 *
 *     int wx_model_init(wx_model_registry *reg);
 *
 * which the runner calls once, right after loading the library.  It
 * registers simulation functions by entrypoint ("sir.model/baseline") and
 * target functions by entrypoint ("sir.targets:mse") and returns 0.  The
 * library then stays loaded, warm, for every task of its bundle.
 *
 * A simulation reads parameters and the seed from its context, adds named
 * outputs (bytes, copied), and returns 0; or reports an error with
 * wx_sim_fail() and returns non-zero.  A parameter accessor that fails
 * (missing parameter, wrong type) records a message naming the parameter,
 * so `if (wx_param_double(ctx, "beta", &beta)) return -1;` is enough.
 *
 * A target reads the outputs of every replicate and the target data, sets
 * the loss (and optionally per-replicate losses and a JSON object of
 * diagnostics), and returns 0; or reports an error with wx_target_fail().
 *
 * Everything passed to a function is valid during the call only.  Calls
 * happen on one thread at a time.  stdout is redirected to stderr before
 * the library is loaded, so printf() cannot corrupt the protocol; both end
 * up in the worker's log.  SIGPIPE is ignored in the runner: a write to a
 * closed pipe fails with EPIPE instead.
 */
#ifndef WARMEXEC_MODEL_H
#define WARMEXEC_MODEL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WX_MODEL_ABI_VERSION 1

typedef struct wx_model_api wx_model_api;

/* Contexts handed to model code; opaque apart from the function table. */
typedef struct wx_model_registry {
    const wx_model_api *api;
    void *impl;
} wx_model_registry;

typedef struct wx_sim_ctx {
    const wx_model_api *api;
    void *impl;
} wx_sim_ctx;

typedef struct wx_target_ctx {
    const wx_model_api *api;
    void *impl;
} wx_target_ctx;

typedef int (*wx_sim_fn)(wx_sim_ctx *ctx, void *user);
typedef int (*wx_target_fn)(wx_target_ctx *ctx, void *user);

/* The runner's functions.  Use the wrappers below. */
struct wx_model_api {
    int abi_version;
    int (*register_sim)(wx_model_registry *reg, const char *entrypoint,
                        wx_sim_fn fn, void *user);
    int (*register_target)(wx_model_registry *reg, const char *entrypoint,
                           wx_target_fn fn, void *user);
    int (*param_double)(wx_sim_ctx *ctx, const char *name, double *out);
    int (*param_int)(wx_sim_ctx *ctx, const char *name, int64_t *out);
    int (*param_bool)(wx_sim_ctx *ctx, const char *name, int *out);
    int (*param_string)(wx_sim_ctx *ctx, const char *name, const char **out);
    int (*has_param)(wx_sim_ctx *ctx, const char *name);
    uint64_t (*seed)(wx_sim_ctx *ctx);
    const char *(*entrypoint)(wx_sim_ctx *ctx);
    int (*output)(wx_sim_ctx *ctx, const char *name, const void *data,
                  size_t len);
    int (*sim_fail)(wx_sim_ctx *ctx, const char *message);
    size_t (*n_replicates)(wx_target_ctx *ctx);
    int (*replicate_output)(wx_target_ctx *ctx, size_t i, const char *name,
                            const void **data, size_t *len);
    int (*replicate_failed)(wx_target_ctx *ctx, size_t i);
    const char *(*target_data)(wx_target_ctx *ctx);
    int (*set_loss)(wx_target_ctx *ctx, double loss);
    int (*set_replicate_loss)(wx_target_ctx *ctx, size_t i, double loss);
    int (*set_diagnostics)(wx_target_ctx *ctx, const char *json_object);
    int (*target_fail)(wx_target_ctx *ctx, const char *message);
    const char *(*bundle_path)(wx_model_registry *reg);
    void *(*output_buffer)(wx_sim_ctx *ctx, const char *name, size_t len);
};

/* Registration (in wx_model_init).  0, or -1 for a bad or duplicate name. */
static inline int wx_model_register_sim(wx_model_registry *reg,
                                        const char *entrypoint, wx_sim_fn fn,
                                        void *user)
{
    return reg->api->register_sim(reg, entrypoint, fn, user);
}

static inline int wx_model_register_target(wx_model_registry *reg,
                                           const char *entrypoint,
                                           wx_target_fn fn, void *user)
{
    return reg->api->register_target(reg, entrypoint, fn, user);
}

/*
 * The bundle's directory (read-only), for loading data in wx_model_init:
 * the working directory of a worker is a scratch directory, not the
 * bundle.  Valid for the life of the process.
 */
static inline const char *wx_model_bundle_path(wx_model_registry *reg)
{
    return reg->api->bundle_path(reg);
}

/*
 * Parameters.  0 on success; -1 when missing or of another type (the
 * context then holds a message naming the parameter).  An integer
 * parameter reads as a double; an integral float reads as an integer.
 */
static inline int wx_param_double(wx_sim_ctx *c, const char *name,
                                  double *out)
{
    return c->api->param_double(c, name, out);
}

static inline int wx_param_int(wx_sim_ctx *c, const char *name, int64_t *out)
{
    return c->api->param_int(c, name, out);
}

static inline int wx_param_bool(wx_sim_ctx *c, const char *name, int *out)
{
    return c->api->param_bool(c, name, out);
}

/* The string stays valid during the call. */
static inline int wx_param_string(wx_sim_ctx *c, const char *name,
                                  const char **out)
{
    return c->api->param_string(c, name, out);
}

static inline int wx_has_param(wx_sim_ctx *c, const char *name)
{
    return c->api->has_param(c, name);
}

static inline uint64_t wx_seed(wx_sim_ctx *c)
{
    return c->api->seed(c);
}

static inline const char *wx_entrypoint(wx_sim_ctx *c)
{
    return c->api->entrypoint(c);
}

/* Add (a copy of) an output.  -1 for a duplicate or empty name. */
static inline int wx_output(wx_sim_ctx *c, const char *name,
                            const void *data, size_t len)
{
    return c->api->output(c, name, data, len);
}

/*
 * Add an output of `len` bytes and return a buffer to write it into,
 * valid until the simulation returns: a big output then costs no copy.
 * NULL (with a message, as wx_output) for a duplicate or empty name or
 * when memory runs out.
 */
static inline void *wx_output_buffer(wx_sim_ctx *c, const char *name,
                                     size_t len)
{
    return c->api->output_buffer(c, name, len);
}

/* Report a model error; returns -1 so `return wx_sim_fail(...)` works. */
static inline int wx_sim_fail(wx_sim_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static inline int wx_sim_fail(wx_sim_ctx *c, const char *fmt, ...)
{
    char message[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    return c->api->sim_fail(c, message);
}

static inline size_t wx_n_replicates(wx_target_ctx *c)
{
    return c->api->n_replicates(c);
}

/*
 * Output `name` of replicate `i`: 0, or -1 when the replicate has no such
 * output (a failed replicate has none).
 */
static inline int wx_replicate_output(wx_target_ctx *c, size_t i,
                                      const char *name, const void **data,
                                      size_t *len)
{
    return c->api->replicate_output(c, i, name, data, len);
}

/* 1 when replicate `i` failed (its error is not passed on), else 0. */
static inline int wx_replicate_failed(wx_target_ctx *c, size_t i)
{
    return c->api->replicate_failed(c, i);
}

/* The target data as JSON text, or NULL when there is none. */
static inline const char *wx_target_data(wx_target_ctx *c)
{
    return c->api->target_data(c);
}

static inline int wx_set_loss(wx_target_ctx *c, double loss)
{
    return c->api->set_loss(c, loss);
}

static inline int wx_set_replicate_loss(wx_target_ctx *c, size_t i,
                                        double loss)
{
    return c->api->set_replicate_loss(c, i, loss);
}

/* Diagnostics: JSON text of an object.  -1 when it is not one. */
static inline int wx_set_diagnostics(wx_target_ctx *c, const char *json)
{
    return c->api->set_diagnostics(c, json);
}

static inline int wx_target_fail(wx_target_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static inline int wx_target_fail(wx_target_ctx *c, const char *fmt, ...)
{
    char message[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    return c->api->target_fail(c, message);
}

/* What a model library exports. */
#if defined(__GNUC__)
#define WX_MODEL_EXPORT __attribute__((visibility("default")))
#else
#define WX_MODEL_EXPORT
#endif

WX_MODEL_EXPORT int wx_model_init(wx_model_registry *reg);

#ifdef __cplusplus
}
#endif

#endif
