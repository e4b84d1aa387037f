/* Contract identifiers (reference section 1.6). */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>

#include <warmexec/canon.h>
#include <warmexec/entrypoint.h>
#include <warmexec/ids.h>
#include <warmexec/json.h>

#include "alloc.h"
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

/* digest_bytes(canonical_json(v)) */
static int leaf_from_json(leaf *lf, const char *kind, const char *name,
                          const json_t *v, wx_error *err)
{
    wx_buf b = WX_BUF_INIT(ID_INPUT_MAX);
    int rc = wx_json_canonical(&b, v, err);

    if (!rc)
        wx_digest_hex(b.data, b.len, lf->digest);
    lf->kind = kind;
    lf->name = name;
    wx_buf_release(&b);
    return rc;
}

static int leaf_cmp(const void *a, const void *b)
{
    const leaf *x = a, *y = b;
    int c = strcmp(x->kind, y->kind);

    return c ? c : strcmp(x->name, y->name);
}

/* compute_root(): sort by (kind, name), hash the canonical payload. */
static int compute_root(leaf *leaves, size_t n, char out[WX_ID_LEN + 1],
                        wx_error *err)
{
    json_t *list = json_array(), *payload = NULL;
    leaf root;
    int rc;

    qsort(leaves, n, sizeof(*leaves), leaf_cmp);
    for (size_t i = 0; list && i < n; i++) {
        json_t *item = json_pack("{s:s,s:s,s:s}", "digest", leaves[i].digest,
                                 "kind", leaves[i].kind, "name",
                                 leaves[i].name);

        if (!item || json_array_append_new(list, item) != 0) {
            json_decref(list);
            list = NULL;
        }
    }
    if (list)
        payload = json_pack("{s:o,s:i}", "leaves", list, "version", 1);
    if (!payload)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    rc = leaf_from_json(&root, "", "", payload, err);
    if (!rc)
        memcpy(out, root.digest, sizeof(root.digest));
    json_decref(payload);
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

/* A JSON integer for any uint64 (a big integer past INT64_MAX). */
static json_t *seed_value(uint64_t seed)
{
    char text[24];
    int n;

    if (seed <= INT64_MAX)
        return json_integer((json_int_t)seed);
    n = snprintf(text, sizeof(text), "%" PRIu64, seed);
    return wx_json_bigint(text, (size_t)n);
}

static bool non_empty_object(const json_t *v)
{
    return v && json_object_size(v) > 0;
}

/* The leaves of sim_root in `leaves` (room for 6); returns the count. */
static int sim_root_leaves(leaf *leaves, const char *bundle_ref,
                           const json_t *params, uint64_t seed,
                           const char *entrypoint, const json_t *config,
                           const json_t *env, wx_error *err)
{
    char scenario[WX_SCENARIO_MAX + 1];
    json_t *code = json_pack("{s:s}", "ref", bundle_ref);
    json_t *seed_json = seed_value(seed);
    json_t *scenario_json;
    int n = 0, rc = 0;

    wx_entrypoint_scenario(entrypoint, scenario);
    scenario_json = json_string(scenario);
    if (!code || !seed_json || !scenario_json)
        rc = wx_error_set(err, WX_ENOMEM, "out of memory");
    if (!rc)
        rc = leaf_from_json(&leaves[n++], "code", "bundle", code, err);
    if (!rc)
        rc = leaf_from_json(&leaves[n++], "params", "parameters", params, err);
    if (!rc)
        rc = leaf_from_json(&leaves[n++], "seed", "seed", seed_json, err);
    if (!rc)
        rc = leaf_from_json(&leaves[n++], "scenario", "name", scenario_json,
                            err);
    if (!rc && non_empty_object(config))
        rc = leaf_from_json(&leaves[n++], "config", "config", config, err);
    if (!rc && non_empty_object(env))
        rc = leaf_from_json(&leaves[n++], "env", "env", env, err);
    json_decref(code);
    json_decref(seed_json);
    json_decref(scenario_json);
    return rc ? rc : n;
}

int wx_sim_root(const char *bundle_ref, const json_t *params, uint64_t seed,
                const char *entrypoint, const json_t *config,
                const json_t *env, char out[WX_ID_LEN + 1], wx_error *err)
{
    leaf leaves[6];
    int n;

    if (!json_is_object(params))
        return wx_error_set(err, WX_EINVAL, "params must be an object");
    n = sim_root_leaves(leaves, bundle_ref, params, seed, entrypoint, config,
                        env, err);
    if (n < 0)
        return n;
    return compute_root(leaves, (size_t)n, out, err);
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
    wx_buf key = WX_BUF_INIT(ID_INPUT_MAX);
    json_t *payload = NULL;
    leaf lf;
    int rc = outputs_key(outputs, &key, err);

    if (!rc) {
        payload = json_pack("{s:s,s:s%,s:s}", "entrypoint", entrypoint,
                            "outputs", key.data, key.len, "sim_root",
                            sim_root);
        if (!payload)
            rc = wx_error_set(err, WX_EINVAL,
                              "task_id inputs must be valid UTF-8");
    }
    if (!rc)
        rc = leaf_from_json(&lf, "", "", payload, err);
    if (!rc)
        memcpy(out, lf.digest, sizeof(lf.digest));
    json_decref(payload);
    wx_buf_release(&key);
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

/* The sorted sim_roots as a JSON array of strings. */
static json_t *sorted_roots(const char *const *sim_roots, size_t n)
{
    const char **sorted = wx__calloc(n ? n : 1, sizeof(*sorted));
    json_t *list = json_array();

    if (!sorted || !list)
        goto fail;
    memcpy(sorted, sim_roots, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), str_cmp);
    for (size_t i = 0; i < n; i++)
        if (json_array_append_new(list, json_string(sorted[i])) != 0)
            goto fail;
    wx_free(sorted);
    return list;
fail:
    wx_free(sorted);
    json_decref(list);
    return NULL;
}

int wx_calib_root(const char *targets_id, const char *optimizer_id,
                  const char *const *sim_roots, size_t n,
                  const char *calib_code_id, const char *env_id,
                  char out[WX_ID_LEN + 1], wx_error *err)
{
    leaf leaves[5];
    json_t *roots = sorted_roots(sim_roots, n);
    int rc;

    if (!roots)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    leaf_from_text(&leaves[0], "targets", "data", targets_id);
    leaf_from_text(&leaves[1], "optimizer", "config", optimizer_id);
    leaf_from_text(&leaves[2], "code", "calib", calib_code_id);
    leaf_from_text(&leaves[3], "env", "runtime", env_id);
    rc = leaf_from_json(&leaves[4], "code", "sim_roots", roots, err);
    json_decref(roots);
    return rc ? rc : compute_root(leaves, WX_ARRAY_LEN(leaves), out, err);
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
