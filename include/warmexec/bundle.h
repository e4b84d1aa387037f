/*
 * Bundles (DESIGN.md 5, docs/bundles.md): immutable directories of model
 * code and data, named by their digest, kept in a local store.
 *
 * Manifest: <bundle>/warmexec.json
 *   {"name": "...", "runner": "native" | "python" | {"command": [...]},
 *    "library": "relative/path.so", "env": {"NAME": "value"},
 *    "entrypoints": [...], "targets": [...]}
 * A ModelOps Python bundle without warmexec.json (it has
 * .modelops/manifest.json or wire.py) runs with the python runner.
 *
 * Digest: SHA-256 of the index, one line per regular file sorted by path
 * bytes: "<mode 644|755> <sha256 hex> <relative path>\n".  Symlinks and
 * special files are refused; .git/ and the patterns of .warmexecignore are
 * skipped.  The ref of a bundle is "sha256:<hex>".
 *
 * Store: home/bundles/sha256/<hex>/, read-only, created by an atomic
 * rename (several processes may add the same bundle at once).
 *
 * A wx_bundles is thread-safe.
 */
#ifndef WARMEXEC_BUNDLE_H
#define WARMEXEC_BUNDLE_H

#include <stdbool.h>
#include <stddef.h>

#include <warmexec/buf.h>
#include <warmexec/config.h>
#include <warmexec/error.h>
#include <warmexec/pool.h>
#include <warmexec/visibility.h>

#ifdef __cplusplus
extern "C" {
#endif

/* "sha256:" + 64 hex characters. */
#define WX_DIGEST_LEN 71

/* Largest manifest read. */
#define WX_MANIFEST_MAX (1 << 20)

typedef enum wx_runner_kind {
    WX_RUNNER_NATIVE,
    WX_RUNNER_PYTHON,
    WX_RUNNER_COMMAND
} wx_runner_kind;

typedef struct wx_manifest {
    char *name;           /* owned; the directory name when absent */
    wx_runner_kind runner;
    char **command;       /* owned, NULL-terminated; WX_RUNNER_COMMAND */
    char *library;        /* owned; WX_RUNNER_NATIVE */
    char **env;           /* owned, NULL-terminated "NAME=value" */
    char **entrypoints;   /* owned, NULL-terminated (may be empty) */
    char **targets;       /* owned, NULL-terminated (may be empty) */
    bool modelops;        /* no warmexec.json: a ModelOps Python bundle */
} wx_manifest;

/*
 * Read the manifest of the bundle directory `dir`.  WX_EINVAL with a
 * message naming the field and the rule for a bad manifest; WX_ENOTFOUND
 * when `dir` has neither warmexec.json nor a ModelOps wire.
 */
WX_API int wx_manifest_load(const char *dir, wx_manifest *out,
                            wx_error *err);
WX_API void wx_manifest_release(wx_manifest *m);

/*
 * The digest of the tree at `dir` ("sha256:<hex>" into `digest`).  With
 * `index` not NULL, the index text is appended to it.  WX_EINVAL for a
 * symlink or special file, WX_EIO for read errors.
 */
WX_API int wx_bundle_digest(const char *dir, char digest[WX_DIGEST_LEN + 1],
                            wx_buf *index, wx_error *err);

typedef struct wx_bundles wx_bundles;

/* Open the store under `home` (home/bundles). */
WX_API int wx_bundles_open(const char *home, wx_bundles **out,
                           wx_error *err);
WX_API void wx_bundles_close(wx_bundles *b);

/*
 * Add the bundle at `dir` to the store (a copy; nothing happens when it
 * is already there) and write its ref "sha256:<hex>" into `ref`.
 */
WX_API int wx_bundles_add(wx_bundles *b, const char *dir,
                          char ref[WX_DIGEST_LEN + 1], wx_error *err);

/*
 * Resolve a ref ("sha256:<hex>" or "<repository>@sha256:<hex>") to the
 * stored bundle: `digest` gets "sha256:<hex>", `path` (PATH_MAX bytes)
 * its directory.  The first time a process uses a bundle its content is
 * re-hashed.  WX_EINVAL for a malformed ref, WX_ENOTFOUND when it is not
 * in the store (BundleNotFound), WX_ECORRUPT when its content no longer
 * matches (BundleCorrupt).
 */
WX_API int wx_bundles_ensure_local(wx_bundles *b, const char *ref,
                                   char digest[WX_DIGEST_LEN + 1], char *path,
                                   wx_error *err);

/* Re-hash a stored bundle now (0, WX_ENOTFOUND or WX_ECORRUPT). */
WX_API int wx_bundles_verify(wx_bundles *b, const char *ref, wx_error *err);

/*
 * Visit every stored bundle: fn(user, digest, path).  A non-zero return
 * stops the walk and is returned.
 */
WX_API int wx_bundles_foreach(wx_bundles *b,
                              int (*fn)(void *user, const char *digest,
                                        const char *path),
                              void *user, wx_error *err);

/*
 * The command that runs a bundle's runner, as a pool worker spec.  Owns
 * its strings; release with wx_runner_release().
 */
typedef struct wx_runner {
    wx_worker_spec spec;
    char **argv; /* owned, NULL-terminated */
    char **env;  /* owned, NULL-terminated */
    char *digest;
    char *path;
} wx_runner;

/*
 * Build the runner of the bundle at `path` with `digest` from its
 * manifest: native -> the native_runner setting, python -> the python
 * setting + python_runner setting, command -> the manifest's argv.
 */
WX_API int wx_runner_for(const wx_manifest *m, const char *digest,
                         const char *path, const wx_config *cfg,
                         wx_runner *out, wx_error *err);
WX_API void wx_runner_release(wx_runner *r);

#ifdef __cplusplus
}
#endif

#endif
