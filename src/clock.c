/* Monotonic clock helpers. */
#include "internal.h"

#include <limits.h>
#include <time.h>

#include "clock.h"

int64_t wx__now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t wx__now_ms(void)
{
    return wx__now_ns() / 1000000;
}

int64_t wx__deadline_after(double seconds)
{
    int64_t now = wx__now_ms();

    if (!(seconds < (double)(INT64_MAX - now) / 1000.0))
        return WX_NO_DEADLINE;
    return now + (int64_t)(seconds * 1000.0);
}

int wx__poll_timeout(int64_t deadline)
{
    int64_t left;

    if (deadline == WX_NO_DEADLINE)
        return -1;
    left = deadline - wx__now_ms();
    if (left <= 0)
        return 0;
    return left > INT_MAX ? INT_MAX : (int)left;
}
