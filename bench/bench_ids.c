/*
 * B0: identifier throughput.  For N tasks (distinct parameter sets) parse
 * the params JSON, validate, and compute param_id, sim_root and task_id,
 * as a study does for every task.  Prints tasks per second.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <warmexec/warmexec.h>

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    wx_error err = WX_ERROR_INIT;
    char text[512], root[WX_ID_LEN + 1], tid[WX_ID_LEN + 1];
    double start = now();

    for (long i = 0; i < n; i++) {
        wx_task t;
        json_t *v;
        int len = snprintf(text, sizeof(text),
                           "{\"bundle_ref\":\"sha256:%064d\",\"entrypoint\":"
                           "\"sir.model/baseline\",\"params\":{\"beta\":%.6f,"
                           "\"gamma\":0.1,\"population\":10000},\"seed\":%ld}",
                           0, 0.1 + (double)i / (double)n, i);

        if (wx_json_parse(text, (size_t)len, &v, &err) != 0 ||
            wx_task_from_json(&t, v, &err) != 0 ||
            wx_task_sim_root(&t, root, &err) != 0 ||
            wx_task_task_id(&t, tid, &err) != 0) {
            fprintf(stderr, "bench_ids: %s\n", err.message);
            return 1;
        }
        wx_task_release(&t);
        json_decref(v);
    }
    printf("%.0f\n", (double)n / (now() - start));
    return 0;
}
