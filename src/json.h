/* Internal helpers of the json module. */
#ifndef WX_JSON_INT_H
#define WX_JSON_INT_H

#include <warmexec/json.h>

/* Replace every byte that is not part of valid UTF-8 with '?', in place. */
void wx__utf8_scrub(char *s);

/* Whether the `len` bytes at `s` are valid UTF-8. */
bool wx__utf8_valid(const char *s, size_t len);

#endif
