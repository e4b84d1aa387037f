/*
 * The C test bundle of the native runner.  Simulation
 * "test.model/echo" writes output "out" of `bytes` bytes (out[i] =
 * i*31 + seed) and "seed" (the seed in decimal); on request it prints to
 * stdout, fails, crashes, or first sleeps `sleep_ms` milliseconds.  Target "test.targets:sizes" has loss = the
 * number of replicates, per-replicate loss = size of "out", and
 * diagnostics {"sizes": [...], "failed": n, "data": <target_data>}.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <warmexec/model.h>

static int echo(wx_sim_ctx *ctx, void *user)
{
    int64_t bytes = 0, print = 0, sleep_ms = 0;
    const char *fail = NULL;
    uint64_t seed = wx_seed(ctx);
    char text[32];
    uint8_t *out;
    int rc;

    (void)user;
    if (wx_has_param(ctx, "bytes") && wx_param_int(ctx, "bytes", &bytes))
        return -1;
    if (wx_has_param(ctx, "fail") && wx_param_string(ctx, "fail", &fail))
        return -1;
    if (wx_has_param(ctx, "print") && wx_param_int(ctx, "print", &print))
        return -1;
    if (wx_has_param(ctx, "sleep_ms") &&
        wx_param_int(ctx, "sleep_ms", &sleep_ms))
        return -1;
    if (sleep_ms > 0) {
        struct timespec ts = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000};

        nanosleep(&ts, NULL);
    }
    if (print) {
        /* All of these must land in the worker log, not the protocol. */
        printf("printf from the model\n");
        fflush(stdout);
        if (write(1, "write(1) from the model\n", 24) < 0)
            return -1;
        if (system("echo child process output") < 0)
            return -1;
    }
    if (fail)
        return wx_sim_fail(ctx, "model refused: %s", fail);
    if (wx_has_param(ctx, "abort"))
        abort();
    out = malloc(bytes > 0 ? (size_t)bytes : 1);
    for (int64_t i = 0; i < bytes; i++)
        out[i] = (uint8_t)(i * 31 + (int64_t)seed);
    rc = wx_output(ctx, "out", out, (size_t)bytes);
    free(out);
    snprintf(text, sizeof(text), "%" PRIu64, seed);
    return rc ? rc : wx_output(ctx, "seed", text, strlen(text));
}

static int sizes(wx_target_ctx *ctx, void *user)
{
    size_t n = wx_n_replicates(ctx), failed = 0;
    const char *data = wx_target_data(ctx);
    char *diag = malloc(64 + n * 24 + (data ? strlen(data) : 4));
    size_t used = (size_t)sprintf(diag, "{\"sizes\":[");

    (void)user;
    for (size_t i = 0; i < n; i++) {
        const void *bytes;
        size_t len = 0;

        if (wx_replicate_failed(ctx, i))
            failed++;
        if (wx_replicate_output(ctx, i, "out", &bytes, &len) == 0)
            wx_set_replicate_loss(ctx, i, (double)len);
        used += (size_t)sprintf(diag + used, "%s%zu", i ? "," : "", len);
    }
    sprintf(diag + used, "],\"failed\":%zu,\"data\":%s}", failed,
            data ? data : "null");
    wx_set_loss(ctx, (double)n);
    if (wx_set_diagnostics(ctx, diag) != 0) {
        free(diag);
        return -1;
    }
    free(diag);
    return 0;
}

int wx_model_init(wx_model_registry *reg)
{
    if (wx_model_register_sim(reg, "test.model/echo", echo, NULL) ||
        wx_model_register_target(reg, "test.targets:sizes", sizes, NULL))
        return -1;
    return 0;
}
