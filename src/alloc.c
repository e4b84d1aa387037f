/* Allocation wrappers with failure injection for tests. */
#include "internal.h"

#include <stdatomic.h>

#include "alloc.h"

static atomic_long fail_countdown = -1;

/* True when the injected failure is due now. */
static bool inject_failure(void)
{
    long n = atomic_load_explicit(&fail_countdown, memory_order_relaxed);

    if (n < 0)
        return false;
    n = atomic_fetch_sub(&fail_countdown, 1);
    return n == 0;
}

void wx__alloc_fail_after(long n)
{
    atomic_store(&fail_countdown, n < 0 ? -1 : n);
}

void *wx__malloc(size_t n)
{
    if (inject_failure())
        return NULL;
    return malloc(n ? n : 1);
}

void *wx__calloc(size_t count, size_t size)
{
    if (inject_failure())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *wx__realloc(void *p, size_t n)
{
    if (inject_failure())
        return NULL;
    return realloc(p, n ? n : 1);
}

char *wx__strndup(const char *s, size_t n)
{
    char *copy = wx__malloc(n + 1);

    if (!copy)
        return NULL;
    memcpy(copy, s, n);
    copy[n] = '\0';
    return copy;
}

char *wx__strdup(const char *s)
{
    return wx__strndup(s, strlen(s));
}

void wx_free(void *p)
{
    free(p);
}
