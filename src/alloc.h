/*
 * Internal allocation wrappers.  Every heap allocation of the library goes
 * through these, so tests can make the N-th allocation fail and check that
 * each error path returns WX_ENOMEM cleanly.  Thread-safe.
 */
#ifndef WX_ALLOC_H
#define WX_ALLOC_H

#include <stddef.h>

#include <warmexec/alloc.h>

void *wx__malloc(size_t n);
void *wx__calloc(size_t count, size_t size);
void *wx__realloc(void *p, size_t n);
char *wx__strdup(const char *s);
char *wx__strndup(const char *s, size_t n);

/*
 * Test hook: make the allocation `n` calls from now fail (0 = the next
 * one); a negative `n` turns failure injection off.
 */
void wx__alloc_fail_after(long n);

#endif
