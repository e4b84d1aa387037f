/* Memory returned to callers by warmexec. */
#ifndef WARMEXEC_ALLOC_H
#define WARMEXEC_ALLOC_H

#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Free memory that a warmexec function handed over to the caller ("caller
 * frees with wx_free()").  NULL is allowed.
 */
WX_API void wx_free(void *p);

#ifdef __cplusplus
}
#endif

#endif
