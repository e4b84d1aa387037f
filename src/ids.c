/* Contract identifiers (reference section 1.6). */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>

#include <warmexec/canon.h>
#include <warmexec/entrypoint.h>
#include <warmexec/ids.h>
#include <warmexec/json.h>

#include "alloc.h"
#include "canon.h"
#include "hash.h"

/* Identifier inputs are small; a generous bound keeps them honest. */
#define ID_INPUT_MAX (64u << 20)

#define PARAM_PREFIX "contracts:param:v1|"

/* A provenance leaf; `digest` is 64 hex. */
typedef struct leaf {
    const char *kind;
    const char *name;
    char digest[WX_ID_LEN + 1];
} leaf;

void wx_digest_hex(const void *data, size_t n, char out[WX_ID_LEN + 1])
{
    wx__blake2b256_hex(data, n, out);
}

static void set_leaf(leaf *lf, const char *kind, const char *name,
                     const wx_buf *canonical)
{
    lf->kind = kind;
    lf->name = name;
    wx_digest_hex(canonical->data, canonical->len, lf->digest);
}

/* digest_bytes(canonical_json(v)); `b` is scratch space. */
static int leaf_from_json(leaf *lf, const char *kind, const char *name,
                          const json_t *v, wx_buf *b, wx_error *err)
{
    int rc;

    wx_buf_reset(b);
    rc = wx_json_canonical(b, v, err);
    if (!rc)
        set_leaf(lf, kind, name, b);
    return rc;
}

static int put_str(wx_buf *b, const char *s, wx_error *err)
{
    return wx__canon_string(b, s, strlen(s), 0, err);
}

static int put_u64(wx_buf *b, uint64_t v, wx_error *err)
{
    char text[24], *p = text + sizeof(text);

    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return wx_buf_append(b, p, (size_t)(text + sizeof(text) - p), err);
}

static int leaf_cmp(const void *a, const void *b)
{
    const leaf *x = a, *y = b;
    int c = strcmp(x->kind, y->kind);

    return c ? c : strcmp(x->name, y->name);
}

/*
 * compute_root(): sort by (kind, name) and hash the canonical payload
 * {"leaves":[{"digest":D,"kind":K,"name":N},...],"version":1}, written
 * directly in its (already sorted) key order.
 */
static int compute_root(leaf *leaves, size_t n, wx_buf *b,
                        char out[WX_ID_LEN + 1], wx_error *err)
{
    int rc;

    qsort(leaves, n, sizeof(*leaves), leaf_cmp);
    wx_buf_reset(b);
    rc = wx_buf_puts(b, "{\"leaves\":[", err);
    for (size_t i = 0; !rc && i < n; i++) {
        rc = wx_buf_puts(b, i ? ",{\"digest\":\"" : "{\"digest\":\"", err);
        if (!rc)
            rc = wx_buf_append(b, leaves[i].digest, WX_ID_LEN, err);
        if (!rc)
            rc = wx_buf_puts(b, "\",\"kind\":", err);
        if (!rc)
            rc = put_str(b, leaves[i].kind, err);
        if (!rc)
            rc = wx_buf_puts(b, ",\"name\":", err);
        if (!rc)
            rc = put_str(b, leaves[i].name, err);
        if (!rc)
            rc = wx_buf_putc(b, '}', err);
    }
    if (!rc)
        rc = wx_buf_puts(b, "],\"version\":1}", err);
    if (!rc)
        wx_digest_hex(b->data, b->len, out);
    return rc;
}

int wx_param_id(const json_t *params, char out[WX_ID_LEN + 1], wx_error *err)
{
    wx_buf b = WX_BUF_INIT(ID_INPUT_MAX);
    int rc;

    if (!json_is_object(params))
        return wx_error_set(err, WX_EINVAL, "params must be an object");
    rc = wx_buf_puts(&b, PARAM_PREFIX, err);
    if (!rc)
        rc = wx_json_canonical(&b, params, err);
    if (!rc)
        wx_digest_hex(b.data, b.len, out);
    wx_buf_release(&b);
    return rc;
}

static bool non_empty_object(const json_t *v)
{
    return v && json_object_size(v) > 0;
}

/* The fixed leaves of sim_root: code, seed and scenario. */
static int fixed_leaves(leaf *leaves, const char *bundle_ref, uint64_t seed,
                        const char *entrypoint, wx_buf *b, wx_error *err)
{
    char scenario[WX_SCENARIO_MAX + 1];
    int rc;

    wx_buf_reset(b);
    rc = wx_buf_puts(b, "{\"ref\":", err);
    if (!rc)
        rc = put_str(b, bundle_ref, err);
    if (!rc)
        rc = wx_buf_putc(b, '}', err);
    if (rc)
        return rc;
    set_leaf(&leaves[0], "code", "bundle", b);
    wx_buf_reset(b);
    rc = put_u64(b, seed, err);
    if (rc)
        return rc;
    set_leaf(&leaves[1], "seed", "seed", b);
    wx_entrypoint_scenario(entrypoint, scenario);
    wx_buf_reset(b);
    rc = put_str(b, scenario, err);
    if (!rc)
        set_leaf(&leaves[2], "scenario", "name", b);
    return rc;
}

int wx_sim_root(const char *bundle_ref, const json_t *params, uint64_t seed,
                const char *entrypoint, const json_t *config,
                const json_t *env, char out[WX_ID_LEN + 1], wx_error *err)
{
    wx_buf b = WX_BUF_INIT(ID_INPUT_MAX);
    leaf leaves[6];
    size_t n = 3;
    int rc;

    if (!json_is_object(params))
        return wx_error_set(err, WX_EINVAL, "params must be an object");
    rc = fixed_leaves(leaves, bundle_ref, seed, entrypoint, &b, err);
    if (!rc)
        rc = leaf_from_json(&leaves[n++], "params", "parameters", params, &b,
                            err);
    /* An empty config or env counts as absent. */
    if (!rc && non_empty_object(config))
        rc = leaf_from_json(&leaves[n++], "config", "config", config, &b,
                            err);
    if (!rc && non_empty_object(env))
        rc = leaf_from_json(&leaves[n++], "env", "env", env, &b, err);
    if (!rc)
        rc = compute_root(leaves, n, &b, out, err);
    wx_buf_release(&b);
    return rc;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Append `n` strings sorted and joined by `sep` to `b`. */
static int append_sorted_join(wx_buf *b, const char *const *items, size_t n,
                              char sep, wx_error *err)
{
    const char **sorted = wx__calloc(n ? n : 1, sizeof(*sorted));
    int rc = 0;

    if (!sorted)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    memcpy(sorted, items, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), str_cmp);
    for (size_t i = 0; !rc && i < n; i++) {
        if (i)
            rc = wx_buf_putc(b, sep, err);
        if (!rc)
            rc = wx_buf_puts(b, sorted[i], err);
    }
    wx_free(sorted);
    return rc;
}

/* outputs_key: "*" for NULL, else the sorted names joined by ",". */
static int outputs_key(const json_t *outputs, wx_buf *key, wx_error *err)
{
    size_t n = json_array_size(outputs);
    const char **names;
    int rc;

    if (!outputs)
        return wx_buf_putc(key, '*', err);
    if (!json_is_array(outputs))
        return wx_error_set(err, WX_EINVAL, "outputs must be a list");
    names = wx__calloc(n ? n : 1, sizeof(*names));
    if (!names)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const json_t *name = json_array_get(outputs, i);

        if (!json_is_string(name) || wx_json_is_bigint(name))
            rc = wx_error_set(err, WX_EINVAL,
                              "outputs[%zu] must be a string", i);
        else
            names[i] = json_string_value(name);
    }
    if (!rc)
        rc = append_sorted_join(key, names, n, ',', err);
    wx_free(names);
    return rc;
}

int wx_task_id(const char *sim_root, const char *entrypoint,
               const json_t *outputs, char out[WX_ID_LEN + 1], wx_error *err)
{
    wx_buf key = WX_BUF_INIT(ID_INPUT_MAX), b = WX_BUF_INIT(ID_INPUT_MAX);
    int rc = outputs_key(outputs, &key, err);

    /* {"entrypoint":E,"outputs":K,"sim_root":R}, keys already sorted. */
    if (!rc)
        rc = wx_buf_puts(&b, "{\"entrypoint\":", err);
    if (!rc)
        rc = put_str(&b, entrypoint, err);
    if (!rc)
        rc = wx_buf_puts(&b, ",\"outputs\":", err);
    if (!rc)
        rc = wx__canon_string(&b, key.data, key.len, 0, err);
    if (!rc)
        rc = wx_buf_puts(&b, ",\"sim_root\":", err);
    if (!rc)
        rc = put_str(&b, sim_root, err);
    if (!rc)
        rc = wx_buf_putc(&b, '}', err);
    if (!rc)
        wx_digest_hex(b.data, b.len, out);
    wx_buf_release(&key);
    wx_buf_release(&b);
    return rc;
}

int wx_aggregation_id(const char *target_entrypoint,
                      const char *const *sim_roots, size_t n,
                      char out[WX_AGG_ID_LEN + 1], char full[WX_ID_LEN + 1],
                      wx_error *err)
{
    wx_buf content = WX_BUF_INIT(ID_INPUT_MAX);
    char digest[WX_ID_LEN + 1];
    int rc = wx_buf_printf(&content, err, "%s:", target_entrypoint);

    if (!rc)
        rc = append_sorted_join(&content, sim_roots, n, ',', err);
    if (!rc) {
        wx_digest_hex(content.data, content.len, digest);
        memcpy(out, digest, WX_AGG_ID_LEN);
        out[WX_AGG_ID_LEN] = '\0';
        if (full)
            memcpy(full, digest, sizeof(digest));
    }
    wx_buf_release(&content);
    return rc;
}

static void leaf_from_text(leaf *lf, const char *kind, const char *name,
                           const char *text)
{
    lf->kind = kind;
    lf->name = name;
    wx_digest_hex(text, strlen(text), lf->digest);
}

/* The sorted sim_roots as a canonical JSON array of strings. */
static int sorted_roots_json(const char *const *sim_roots, size_t n,
                             wx_buf *b, wx_error *err)
{
    int rc;

    wx_buf_reset(b);
    rc = wx_buf_putc(b, '[', err);
    if (!rc && n) {
        const char **sorted = wx__calloc(n, sizeof(*sorted));

        if (!sorted)
            return wx_error_set(err, WX_ENOMEM, "out of memory");
        memcpy(sorted, sim_roots, n * sizeof(*sorted));
        qsort(sorted, n, sizeof(*sorted), str_cmp);
        for (size_t i = 0; !rc && i < n; i++) {
            if (i)
                rc = wx_buf_putc(b, ',', err);
            if (!rc)
                rc = put_str(b, sorted[i], err);
        }
        wx_free(sorted);
    }
    return rc ? rc : wx_buf_putc(b, ']', err);
}

int wx_calib_root(const char *targets_id, const char *optimizer_id,
                  const char *const *sim_roots, size_t n,
                  const char *calib_code_id, const char *env_id,
                  char out[WX_ID_LEN + 1], wx_error *err)
{
    wx_buf b = WX_BUF_INIT(ID_INPUT_MAX);
    leaf leaves[5];
    int rc;

    leaf_from_text(&leaves[0], "targets", "data", targets_id);
    leaf_from_text(&leaves[1], "optimizer", "config", optimizer_id);
    leaf_from_text(&leaves[2], "code", "calib", calib_code_id);
    leaf_from_text(&leaves[3], "env", "runtime", env_id);
    rc = sorted_roots_json(sim_roots, n, &b, err);
    if (!rc) {
        set_leaf(&leaves[4], "code", "sim_roots", &b);
        rc = compute_root(leaves, WX_ARRAY_LEN(leaves), &b, out, err);
    }
    wx_buf_release(&b);
    return rc;
}

int wx_shard(const char *digest, int depth, int width, wx_buf *out,
             wx_error *err)
{
    size_t len = strlen(digest);
    size_t need = (size_t)(depth > 0 ? depth : 0) * (size_t)(width > 0 ? width : 0);
    int rc = 0;

    if (depth < 0 || width < 0)
        return wx_error_set(err, WX_EINVAL,
                            "shard depth and width must not be negative");
    if (len < need)
        return wx_error_set(err, WX_EINVAL,
                            "Digest too short for sharding: need at least "
                            "%zu chars, got %zu",
                            need, len);
    for (int i = 0; !rc && i < depth; i++) {
        rc = wx_buf_append(out, digest + (size_t)i * (size_t)width,
                           (size_t)width, err);
        if (!rc)
            rc = wx_buf_putc(out, '/', err);
    }
    return rc ? rc : wx_buf_puts(out, digest, err);
}
