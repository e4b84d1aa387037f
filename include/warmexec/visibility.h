/* Symbol visibility for the warmexec public API. */
#ifndef WARMEXEC_VISIBILITY_H
#define WARMEXEC_VISIBILITY_H

/*
 * The shared library is built with -fvisibility=hidden; only functions
 * marked WX_API are exported.
 */
#if defined(__GNUC__)
#define WX_API __attribute__((visibility("default")))
#else
#define WX_API
#endif

#endif
