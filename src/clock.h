/* Monotonic time and deadlines (milliseconds).  Thread-safe. */
#ifndef WX_CLOCK_H
#define WX_CLOCK_H

#include <pthread.h>
#include <stdint.h>

/* A deadline that never passes. */
#define WX_NO_DEADLINE INT64_MAX

/* Milliseconds on the monotonic clock. */
int64_t wx__now_ms(void);

/* Nanoseconds on the monotonic clock. */
int64_t wx__now_ns(void);

/* now + `seconds` (non-negative; huge values give WX_NO_DEADLINE). */
int64_t wx__deadline_after(double seconds);

/*
 * Milliseconds left until `deadline` as a poll(2) timeout: 0 when past,
 * -1 (wait forever) for WX_NO_DEADLINE, capped to INT_MAX.
 */
int wx__poll_timeout(int64_t deadline);

/*
 * pthread_cond_timedwait(cv, mu) for at most `ns` nanoseconds (the
 * condition variable uses the default, real-time clock).
 */
int wx__cond_wait_ns(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ns);

#endif
