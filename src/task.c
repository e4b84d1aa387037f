/* SimTask, ReplicateSet and AggregationTask. */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>

#include <warmexec/entrypoint.h>
#include <warmexec/json.h>
#include <warmexec/task.h>

#include "alloc.h"
#include "hash.h"
#include "jfield.h"

#define REPOSITORY_MAX 255
#define DIGEST_PREFIX "sha256:"

static int oom(wx_error *err)
{
    return wx_error_set(err, WX_ENOMEM, "out of memory");
}

static bool repository_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
           c == '/' || c == ':';
}

static bool valid_repository(const char *s, size_t len)
{
    if (len == 0 || len > REPOSITORY_MAX || !repository_char(s[0]) ||
        s[0] == '.' || s[0] == '_' || s[0] == '-' || s[0] == '/' ||
        s[0] == ':')
        return false;
    for (size_t i = 1; i < len; i++)
        if (!repository_char(s[i]))
            return false;
    return true;
}

int wx_bundle_ref_validate(const char *ref, wx_error *err)
{
    const char *at = strrchr(ref, '@');
    const char *digest = at ? at + 1 : ref;

    if (!ref[0])
        return wx_error_set(err, WX_EINVAL, "bundle_ref: must not be empty");
    if (strncmp(digest, DIGEST_PREFIX, strlen(DIGEST_PREFIX)) != 0 ||
        !wx__is_hex256(digest + strlen(DIGEST_PREFIX)) ||
        (at && !valid_repository(ref, (size_t)(at - ref))))
        return wx_error_set(err, WX_EINVAL,
                            "bundle_ref: must be sha256:<64 lowercase hex> "
                            "or <repository>@sha256:<64 lowercase hex>, got "
                            "'%.200s'",
                            ref);
    return 0;
}

/* One parameter value: bool, int64, finite float or string. */
static int validate_param(const char *key, const json_t *v, wx_error *err)
{
    const char *big = wx_json_bigint_text(v, NULL);

    if (big)
        return wx_error_set(err, WX_EINVAL,
                            "params.%s: integer %.80s is outside the int64 "
                            "range [-9223372036854775808, "
                            "9223372036854775807]",
                            key, big);
    if (json_is_boolean(v) || json_is_integer(v) || json_is_real(v))
        return 0;
    if (json_is_string(v))
        return 0;
    return wx_error_set(err, WX_EINVAL,
                        "params.%s: must be a boolean, integer, float or "
                        "string, got %s",
                        key, wx_json_type_name(v));
}

int wx_params_validate(const json_t *params, wx_error *err)
{
    const char *key;
    json_t *v;

    if (!json_is_object(params))
        return wx_error_set(err, WX_EINVAL, "params: must be an object, got %s",
                            params ? wx_json_type_name(params) : "nothing");
    json_object_foreach((json_t *)params, key, v)
    {
        int rc = validate_param(key, v, err);

        if (rc)
            return rc;
    }
    return 0;
}

static int str_json_cmp(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a),
                  json_string_value(*(json_t *const *)b));
}

/* A sorted copy of an array of output names (the contract sorts them). */
static int sorted_outputs(const json_t *outputs, json_t **out, wx_error *err)
{
    size_t n = json_array_size(outputs);
    json_t **items = wx__calloc(n ? n : 1, sizeof(*items));
    json_t *sorted = json_array();
    int rc = 0;

    if (!items || !sorted)
        rc = oom(err);
    for (size_t i = 0; !rc && i < n; i++) {
        items[i] = json_array_get(outputs, i);
        if (!wx__json_is_text(items[i]))
            rc = wx_error_set(err, WX_EINVAL,
                              "outputs[%zu]: must be a string, got %s", i,
                              wx_json_type_name(items[i]));
    }
    if (!rc)
        qsort(items, n, sizeof(*items), str_json_cmp);
    for (size_t i = 0; !rc && i < n; i++)
        if (json_array_append(sorted, items[i]) != 0)
            rc = oom(err);
    wx_free(items);
    if (rc) {
        json_decref(sorted);
        return rc;
    }
    *out = sorted;
    return 0;
}

static const char *const task_keys[] = {"bundle_ref", "entrypoint", "params",
                                        "seed",       "outputs",    "config",
                                        "env",        NULL};

/* The string fields, in the contract's validation order. */
static int task_strings_from_json(wx_task *t, const json_t *v, wx_error *err)
{
    const char *bundle_ref = NULL, *entrypoint = NULL;
    int rc = wx__jf_string(v, "bundle_ref", true, &bundle_ref, err);

    if (!rc)
        rc = wx_bundle_ref_validate(bundle_ref, err);
    if (!rc)
        rc = wx__jf_string(v, "entrypoint", true, &entrypoint, err);
    if (!rc && !entrypoint[0])
        rc = wx_error_set(err, WX_EINVAL, "entrypoint: must not be empty");
    if (!rc) {
        rc = wx_entrypoint_parse(entrypoint, WX_EP_MODEL, NULL, err);
        if (rc)
            return wx_error_prefix(err, rc, "entrypoint");
    }
    if (!rc && (!(t->bundle_ref = wx__strdup(bundle_ref)) ||
                !(t->entrypoint = wx__strdup(entrypoint))))
        rc = oom(err);
    return rc;
}

/* params, seed, outputs, config, env. */
static int task_values_from_json(wx_task *t, const json_t *v, wx_error *err)
{
    json_t *params = json_object_get(v, "params");
    json_t *outputs = NULL, *config = NULL, *env = NULL;
    int rc = wx_params_validate(params, err);

    if (!rc)
        rc = wx__jf_int(v, "seed", true, 0, WX_SEED_MAX, &t->seed, err);
    if (!rc)
        rc = wx__jf_array(v, "outputs", false, &outputs, err);
    if (!rc && outputs)
        rc = sorted_outputs(outputs, &t->outputs, err);
    if (!rc)
        rc = wx__jf_object(v, "config", false, &config, err);
    if (!rc)
        rc = wx__jf_object(v, "env", false, &env, err);
    if (!rc)
        rc = wx_param_id(params, t->param_id, err);
    if (!rc) {
        t->params = json_incref(params);
        t->config = json_incref(config);
        t->env = json_incref(env);
    }
    return rc;
}

int wx_task_from_json(wx_task *t, const json_t *v, wx_error *err)
{
    int rc;

    memset(t, 0, sizeof(*t));
    if (!json_is_object(v))
        return wx_error_set(err, WX_EINVAL, "task must be a JSON object, got %s",
                            wx_json_type_name(v));
    rc = wx__jf_known_keys(v, "task", task_keys, err);
    if (!rc)
        rc = task_strings_from_json(t, v, err);
    if (!rc)
        rc = task_values_from_json(t, v, err);
    if (rc)
        wx_task_release(t);
    return rc;
}

static json_t *or_null(json_t *v)
{
    return v ? json_incref(v) : json_null();
}

int wx_task_to_json(const wx_task *t, json_t **out, wx_error *err)
{
    json_t *v = json_pack("{s:s,s:s,s:O,s:I,s:o,s:o,s:o}", "bundle_ref",
                          t->bundle_ref, "entrypoint", t->entrypoint,
                          "params", t->params, "seed", (json_int_t)t->seed,
                          "outputs", or_null(t->outputs), "config",
                          or_null(t->config), "env", or_null(t->env));

    if (!v)
        return oom(err);
    *out = v;
    return 0;
}

int wx_task_sim_root(const wx_task *t, char out[WX_ID_LEN + 1],
                     wx_error *err)
{
    return wx_sim_root(t->bundle_ref, t->params, (uint64_t)t->seed,
                       t->entrypoint, t->config, t->env, out, err);
}

int wx_task_task_id(const wx_task *t, char out[WX_ID_LEN + 1], wx_error *err)
{
    char root[WX_ID_LEN + 1];
    int rc = wx_task_sim_root(t, root, err);

    return rc ? rc : wx_task_id(root, t->entrypoint, t->outputs, out, err);
}

/*
 * Values in a task are never modified after construction, so copies share
 * the JSON values by reference.
 */
int wx_task_copy(wx_task *dst, const wx_task *src, wx_error *err)
{
    *dst = *src;
    dst->bundle_ref = wx__strdup(src->bundle_ref);
    dst->entrypoint = wx__strdup(src->entrypoint);
    dst->params = json_incref(src->params);
    dst->outputs = json_incref(src->outputs);
    dst->config = json_incref(src->config);
    dst->env = json_incref(src->env);
    if (!dst->bundle_ref || !dst->entrypoint) {
        wx_task_release(dst);
        return oom(err);
    }
    return 0;
}

void wx_task_release(wx_task *t)
{
    wx_free(t->bundle_ref);
    wx_free(t->entrypoint);
    json_decref(t->params);
    json_decref(t->outputs);
    json_decref(t->config);
    json_decref(t->env);
    memset(t, 0, sizeof(*t));
}

int wx_replicate_seed(const wx_replicate_set *rs, int64_t i, int64_t *seed,
                      wx_error *err)
{
    if (i < 0 || i >= rs->n_replicates)
        return wx_error_set(err, WX_EINVAL,
                            "replicate %" PRId64 " is outside [0, %" PRId64
                            ")",
                            i, rs->n_replicates);
    if (rs->base.seed > WX_SEED_MAX - rs->seed_offset ||
        rs->base.seed + rs->seed_offset > WX_SEED_MAX - i)
        return wx_error_set(err, WX_EINVAL,
                            "seed: %" PRId64 " + seed_offset %" PRId64
                            " + replicate %" PRId64
                            " is past the largest seed %" PRId64,
                            rs->base.seed, rs->seed_offset, i,
                            (int64_t)WX_SEED_MAX);
    *seed = rs->base.seed + rs->seed_offset + i;
    return 0;
}

int wx_replicate_set_validate(const wx_replicate_set *rs, wx_error *err)
{
    int64_t last;

    if (rs->n_replicates < 1)
        return wx_error_set(err, WX_EINVAL,
                            "n_replicates: must be at least 1, got %" PRId64,
                            rs->n_replicates);
    if (rs->seed_offset < 0)
        return wx_error_set(err, WX_EINVAL,
                            "seed_offset: must not be negative, got %" PRId64,
                            rs->seed_offset);
    return wx_replicate_seed(rs, rs->n_replicates - 1, &last, err);
}

int wx_replicate_task(const wx_replicate_set *rs, int64_t i, wx_task *out,
                      wx_error *err)
{
    int64_t seed;
    int rc = wx_replicate_seed(rs, i, &seed, err);

    if (!rc)
        rc = wx_task_copy(out, &rs->base, err);
    if (!rc)
        out->seed = seed;
    return rc;
}

void wx_replicate_key(const wx_replicate_set *rs, int64_t i, char *out,
                      size_t out_size)
{
    snprintf(out, out_size, "sim_%.8s_%" PRId64, rs->base.param_id, i);
}

static const char *const replicate_set_keys[] = {
    "base_task", "n_replicates", "seed_offset", NULL};

int wx_replicate_set_from_json(wx_replicate_set *rs, const json_t *v,
                               wx_error *err)
{
    json_t *base = NULL;
    int rc;

    memset(rs, 0, sizeof(*rs));
    if (!json_is_object(v))
        return wx_error_set(err, WX_EINVAL,
                            "ReplicateSet must be a JSON object");
    rc = wx__jf_known_keys(v, "ReplicateSet", replicate_set_keys, err);
    if (!rc)
        rc = wx__jf_object(v, "base_task", true, &base, err);
    if (!rc && (rc = wx_task_from_json(&rs->base, base, err)) != 0)
        wx_error_prefix(err, rc, "base_task");
    if (!rc)
        rc = wx__jf_int(v, "n_replicates", true, 1, INT64_MAX,
                        &rs->n_replicates, err);
    if (!rc)
        rc = wx__jf_int(v, "seed_offset", false, 0, WX_SEED_MAX,
                        &rs->seed_offset, err);
    if (!rc)
        rc = wx_replicate_set_validate(rs, err);
    if (rc)
        wx_replicate_set_release(rs);
    return rc;
}

int wx_replicate_set_to_json(const wx_replicate_set *rs, json_t **out,
                             wx_error *err)
{
    json_t *base = NULL;
    int rc = wx_task_to_json(&rs->base, &base, err);

    if (rc)
        return rc;
    *out = json_pack("{s:o,s:I,s:I}", "base_task", base, "n_replicates",
                     (json_int_t)rs->n_replicates, "seed_offset",
                     (json_int_t)rs->seed_offset);
    return *out ? 0 : oom(err);
}

void wx_replicate_set_release(wx_replicate_set *rs)
{
    wx_task_release(&rs->base);
    memset(rs, 0, sizeof(*rs));
}

static int agg_sim_returns_from_json(wx_agg_task *t, const json_t *list,
                                     wx_error *err)
{
    size_t n = json_array_size(list);

    if (n == 0)
        return wx_error_set(err, WX_EINVAL,
                            "sim_returns: must not be empty");
    t->sim_returns = wx__calloc(n, sizeof(*t->sim_returns));
    if (!t->sim_returns)
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        int rc = wx_sim_return_from_json(&t->sim_returns[i],
                                         json_array_get(list, i), err);

        if (rc)
            return wx_error_prefix(err, rc, "sim_returns[%zu]", i);
        t->n_sim_returns = i + 1;
    }
    return 0;
}

static const char *const agg_task_keys[] = {
    "bundle_ref", "target_entrypoint", "sim_returns", "target_data", NULL};

int wx_agg_task_from_json(wx_agg_task *t, const json_t *v, wx_error *err)
{
    const char *bundle_ref = NULL, *target = NULL;
    json_t *list = NULL;
    int rc;

    memset(t, 0, sizeof(*t));
    if (!json_is_object(v))
        return wx_error_set(err, WX_EINVAL,
                            "AggregationTask must be a JSON object");
    rc = wx__jf_known_keys(v, "AggregationTask", agg_task_keys, err);
    if (!rc)
        rc = wx__jf_string(v, "bundle_ref", true, &bundle_ref, err);
    if (!rc)
        rc = wx_bundle_ref_validate(bundle_ref, err);
    if (!rc)
        rc = wx__jf_string(v, "target_entrypoint", true, &target, err);
    if (!rc && (rc = wx_entrypoint_parse(target, WX_EP_TARGET, NULL, err)))
        wx_error_prefix(err, rc, "target_entrypoint");
    if (!rc)
        rc = wx__jf_array(v, "sim_returns", true, &list, err);
    if (!rc && (!(t->bundle_ref = wx__strdup(bundle_ref)) ||
                !(t->target_entrypoint = wx__strdup(target))))
        rc = oom(err);
    if (!rc)
        rc = agg_sim_returns_from_json(t, list, err);
    if (!rc) {
        json_t *data = json_object_get(v, "target_data");

        t->target_data = json_is_null(data) ? NULL : json_incref(data);
    }
    if (rc)
        wx_agg_task_release(t);
    return rc;
}

int wx_agg_task_to_json(const wx_agg_task *t, json_t **out, wx_error *err)
{
    json_t *list = json_array();
    int rc = list ? 0 : oom(err);

    for (size_t i = 0; !rc && i < t->n_sim_returns; i++) {
        json_t *sr;

        rc = wx_sim_return_to_json(&t->sim_returns[i], &sr, err);
        if (!rc && json_array_append_new(list, sr) != 0)
            rc = oom(err);
    }
    if (rc) {
        json_decref(list);
        return rc;
    }
    *out = json_pack("{s:s,s:s,s:o,s:o}", "bundle_ref", t->bundle_ref,
                     "target_entrypoint", t->target_entrypoint,
                     "sim_returns", list, "target_data",
                     or_null(t->target_data));
    return *out ? 0 : oom(err);
}

int wx_agg_task_id(const wx_agg_task *t, char out[WX_AGG_ID_LEN + 1],
                   char full[WX_ID_LEN + 1], wx_error *err)
{
    const char **roots = wx__calloc(t->n_sim_returns ? t->n_sim_returns : 1,
                                    sizeof(*roots));
    int rc;

    if (!roots)
        return oom(err);
    for (size_t i = 0; i < t->n_sim_returns; i++)
        roots[i] = t->sim_returns[i].sim_root;
    rc = wx_aggregation_id(t->target_entrypoint, roots, t->n_sim_returns, out,
                           full, err);
    wx_free(roots);
    return rc;
}

int wx_agg_task_copy(wx_agg_task *dst, const wx_agg_task *src,
                     wx_error *err)
{
    memset(dst, 0, sizeof(*dst));
    dst->bundle_ref = wx__strdup(src->bundle_ref);
    dst->target_entrypoint = wx__strdup(src->target_entrypoint);
    dst->target_data = json_incref(src->target_data);
    dst->sim_returns = wx__calloc(src->n_sim_returns ? src->n_sim_returns
                                                     : 1,
                                  sizeof(*dst->sim_returns));
    if (!dst->bundle_ref || !dst->target_entrypoint || !dst->sim_returns) {
        wx_agg_task_release(dst);
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < src->n_sim_returns; i++) {
        int rc = wx_sim_return_copy(&dst->sim_returns[i],
                                    &src->sim_returns[i], err);

        if (rc) {
            wx_agg_task_release(dst);
            return rc;
        }
        dst->n_sim_returns = i + 1;
    }
    return 0;
}

void wx_agg_task_release(wx_agg_task *t)
{
    for (size_t i = 0; i < t->n_sim_returns; i++)
        wx_sim_return_release(&t->sim_returns[i]);
    wx_free(t->sim_returns);
    wx_free(t->bundle_ref);
    wx_free(t->target_entrypoint);
    json_decref(t->target_data);
    memset(t, 0, sizeof(*t));
}
