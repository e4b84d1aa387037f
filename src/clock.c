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

int wx__cond_wait_ns(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ns)
{
    struct timespec until;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)(ns / 1000000000);
    until.tv_nsec += (long)(ns % 1000000000);
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    return pthread_cond_timedwait(cv, mu, &until);
}
