/*
 * Entrypoint identifiers, with the grammar of modelops-contracts.
 *
 *   model entrypoint   import.path/scenario     ("covid.models.SEIR/lockdown")
 *   target entrypoint  import.path:name         ("targets.incidence:mse")
 *                      or import.path/name      (the older form)
 *
 * import_path matches ^[A-Za-z_][\w.]*\.[A-Za-z_]\w*$ (\w: letters and
 * digits of any script, and '_'); scenario matches
 * ^[a-z0-9](?:[a-z0-9\-_.]{0,62}[a-z0-9])?$; an object name is \w+ and
 * not only underscores.  Unlike Python's `$`, a trailing newline is never
 * accepted.  Entrypoints are at most WX_ENTRYPOINT_MAX bytes.
 * All functions are thread-safe.
 */
#ifndef WARMEXEC_ENTRYPOINT_H
#define WARMEXEC_ENTRYPOINT_H

#include <stddef.h>

#include <warmexec/buf.h>
#include <warmexec/error.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

#define WX_ENTRYPOINT_MAX 1024
#define WX_SCENARIO_MAX 64

typedef enum wx_entrypoint_kind {
    WX_EP_MODEL, /* import.path/scenario only */
    WX_EP_TARGET /* import.path:name or import.path/name */
} wx_entrypoint_kind;

/* Where the parts of a parsed entrypoint lie in the parsed string. */
typedef struct wx_entrypoint {
    size_t import_len; /* import path = s[0, import_len) */
    size_t name_off;   /* scenario or name = s[name_off, name_off+name_len) */
    size_t name_len;
    char sep;          /* '/' or ':' */
} wx_entrypoint;

/*
 * Parse `s` as an entrypoint of `kind` into `*out` (optional).  On
 * failure WX_EINVAL with the contract's message: "Invalid entrypoint
 * format: S", "Invalid import_path format: P", "Invalid scenario slug: X"
 * or "Invalid object name: N".
 */
WX_API int wx_entrypoint_parse(const char *s, wx_entrypoint_kind kind,
                               wx_entrypoint *out, wx_error *err);

/*
 * Validate the parts and append "import_path/scenario" to `out`.
 * WX_EINVAL as wx_entrypoint_parse().
 */
WX_API int wx_entrypoint_format(const char *import_path,
                                const char *scenario, wx_buf *out,
                                wx_error *err);

/*
 * The scenario of a model entrypoint into `out`, or "baseline" when `s`
 * does not parse (the contracts' sim_root rule).
 */
WX_API void wx_entrypoint_scenario(const char *s,
                                   char out[WX_SCENARIO_MAX + 1]);

#ifdef __cplusplus
}
#endif

#endif
