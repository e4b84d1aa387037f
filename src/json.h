/* Internal helpers of the json module. */
#ifndef WX_JSON_INT_H
#define WX_JSON_INT_H

#include <warmexec/json.h>

/* Replace every byte that is not part of valid UTF-8 with '?', in place. */
void wx__utf8_scrub(char *s);

/* Whether the `len` bytes at `s` are valid UTF-8. */
bool wx__utf8_valid(const char *s, size_t len);

/*
 * The end of the run of plain characters (printable ASCII, 0x20 to 0x7e,
 * other than '"' and '\\') starting at p: what a JSON string holds without
 * an escape in any mode.
 */
const char *wx__json_plain_run_end(const char *p, const char *end);

#endif
