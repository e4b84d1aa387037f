/*
 * The no-op model: the smallest possible work per task, so that what a
 * benchmark measures is warmexec itself.
 *
 *   simulation "noop.model/baseline"   output "out": `bytes` bytes
 *                                      (parameter, default 1, <= 1 GiB),
 *                                      after `sleep_ms` milliseconds
 *                                      (parameter, default 0)
 *   target "noop.targets:size"         loss: the mean size of "out"
 *                                      over the replicates
 *
 * The output's first 8 bytes are the seed (little-endian) and the rest a
 * fixed byte, so every task stores distinct content: a content-addressed
 * store cannot skip the write of a repeated artifact.  The model writes
 * it straight into the runner's buffer (wx_output_buffer).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <warmexec/model.h>

#define MAX_BYTES (INT64_C(1) << 30)
#define FILL 0x5a

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static int noop_baseline(wx_sim_ctx *ctx, void *user)
{
    int64_t bytes = 1, pause = 0;
    uint64_t seed = wx_seed(ctx);
    unsigned char *out;

    (void)user;
    if (wx_has_param(ctx, "bytes") && wx_param_int(ctx, "bytes", &bytes))
        return -1;
    if (wx_has_param(ctx, "sleep_ms") &&
        wx_param_int(ctx, "sleep_ms", &pause))
        return -1;
    if (bytes < 0 || bytes > MAX_BYTES)
        return wx_sim_fail(ctx, "parameter 'bytes' must be in [0, 2^30], "
                                "got %lld", (long long)bytes);
    if (pause > 0 && pause <= 3600000)
        sleep_ms(pause);
    /* Written in place: the runner sends this very buffer. */
    out = wx_output_buffer(ctx, "out", (size_t)bytes);
    if (!out)
        return -1;
    memset(out, FILL, (size_t)bytes);
    for (size_t i = 0; i < 8 && i < (size_t)bytes; i++)
        out[i] = (unsigned char)(seed >> (8 * i));
    return 0;
}

static int noop_size(wx_target_ctx *ctx, void *user)
{
    size_t n = wx_n_replicates(ctx), ok = 0;
    double total = 0.0;

    (void)user;
    for (size_t i = 0; i < n; i++) {
        const void *data;
        size_t len;

        if (wx_replicate_output(ctx, i, "out", &data, &len) != 0)
            continue;
        wx_set_replicate_loss(ctx, i, (double)len);
        total += (double)len;
        ok++;
    }
    if (ok == 0)
        return wx_target_fail(ctx, "no replicate has an output 'out'");
    return wx_set_loss(ctx, total / (double)ok);
}

int wx_model_init(wx_model_registry *reg)
{
    if (wx_model_register_sim(reg, "noop.model/baseline", noop_baseline,
                              NULL) ||
        wx_model_register_target(reg, "noop.targets:size", noop_size, NULL))
        return -1;
    return 0;
}
