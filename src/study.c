/* Study files: SimulationStudy and SimJob, expanded into parameter sets. */
#include "internal.h"

#include <stdio.h>

#include <warmexec/buf.h>
#include <warmexec/entrypoint.h>
#include <warmexec/ids.h>
#include <warmexec/json.h>
#include <warmexec/study.h>
#include <warmexec/task.h>

#include "alloc.h"
#include "hash.h"
#include "jfield.h"

/* Bounds on what one study may ask for. */
#define MAX_REPLICATES 10000000
#define MAX_TASKS 100000000

/* Parameter sets by param_id, for grouping equal entries. */
typedef struct set_index {
    size_t *slots; /* set number + 1; 0 = empty */
    size_t cap;
} set_index;

static uint64_t id_hash(const char *param_id)
{
    uint64_t h = 0;

    for (int i = 0; i < 16; i++)
        h = h << 4 | (uint64_t)(param_id[i] <= '9' ? param_id[i] - '0'
                                                   : param_id[i] - 'a' + 10);
    return h;
}

static int index_grow(set_index *ix, const wx_study *st, wx_error *err)
{
    size_t cap = ix->cap ? ix->cap * 2 : 1024;
    size_t *slots = wx__calloc(cap, sizeof(*slots));

    if (!slots)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    for (size_t i = 0; i < st->n_sets; i++) {
        size_t k = id_hash(st->sets[i].param_id) & (cap - 1);

        while (slots[k])
            k = (k + 1) & (cap - 1);
        slots[k] = i + 1;
    }
    wx_free(ix->slots);
    ix->slots = slots;
    ix->cap = cap;
    return 0;
}

/* The set with `param_id`, or the empty slot where it would go. */
static size_t *index_slot(const set_index *ix, const wx_study *st,
                          const char *param_id)
{
    size_t k = id_hash(param_id) & (ix->cap - 1);

    while (ix->slots[k] &&
           strcmp(st->sets[ix->slots[k] - 1].param_id, param_id) != 0)
        k = (k + 1) & (ix->cap - 1);
    return &ix->slots[k];
}

int64_t wx_study_seed(const char *param_id, int64_t r)
{
    char text[128];
    uint8_t d[8];
    int n = snprintf(text, sizeof(text), "%s:%lld", param_id, (long long)r);

    wx__blake2b(text, (size_t)n, d, sizeof(d));
    /* int_be(...) mod 2^32: the last four bytes, big-endian. */
    return (int64_t)((uint32_t)d[4] << 24 | (uint32_t)d[5] << 16 |
                     (uint32_t)d[6] << 8 | d[7]);
}

void wx_study_release(wx_study *st)
{
    for (size_t i = 0; i < st->n_sets; i++) {
        json_decref(st->sets[i].params);
        wx_free(st->sets[i].seeds);
    }
    wx_free(st->sets);
    for (size_t i = 0; st->targets && st->targets[i]; i++)
        wx_free(st->targets[i]);
    wx_free(st->targets);
    wx_free(st->entrypoint);
    wx_free(st->bundle_ref);
    wx_free(st->path);
    json_decref(st->outputs);
    memset(st, 0, sizeof(*st));
}

size_t wx_study_tasks(const wx_study *st)
{
    size_t n = 0;

    for (size_t i = 0; i < st->n_sets; i++)
        n += st->sets[i].n_seeds;
    return n;
}

static int push_seeds(wx_param_set *set, const int64_t *seeds, size_t n,
                      wx_error *err)
{
    int64_t *grown = wx__realloc(set->seeds,
                                 (set->n_seeds + n) * sizeof(*grown));

    if (!grown)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    memcpy(grown + set->n_seeds, seeds, n * sizeof(*seeds));
    set->seeds = grown;
    set->n_seeds += n;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

/* Add the seeds an existing set does not have yet, in order. */
static int merge_seeds(wx_param_set *set, const int64_t *seeds, size_t n,
                       wx_error *err)
{
    int64_t *sorted = wx__malloc((set->n_seeds ? set->n_seeds : 1) *
                                 sizeof(*sorted));
    int rc = sorted ? 0 : wx_error_set(err, WX_ENOMEM, "out of memory");

    if (!rc) {
        memcpy(sorted, set->seeds, set->n_seeds * sizeof(*sorted));
        qsort(sorted, set->n_seeds, sizeof(*sorted), cmp_i64);
    }
    for (size_t i = 0; !rc && i < n; i++)
        if (!bsearch(&seeds[i], sorted, set->n_seeds - 0, sizeof(*sorted),
                     cmp_i64))
            rc = push_seeds(set, &seeds[i], 1, err);
    wx_free(sorted);
    return rc;
}

/* Parameters with their seeds: a new set, or more seeds for an old one. */
static int add_entry(wx_study *st, set_index *ix, json_t *params,
                     const int64_t *seeds, size_t n, wx_error *err)
{
    char param_id[65];
    size_t *slot;
    wx_param_set *set;
    int rc = wx_params_validate(params, err);

    if (!rc)
        rc = wx_param_id(params, param_id, err);
    if (!rc && (st->n_sets + 1) * 2 > ix->cap)
        rc = index_grow(ix, st, err);
    if (rc)
        return rc;
    slot = index_slot(ix, st, param_id);
    if (*slot)
        return merge_seeds(&st->sets[*slot - 1], seeds, n, err);
    if ((st->n_sets & (st->n_sets - 1)) == 0) {
        size_t cap = st->n_sets ? st->n_sets * 2 : 16;
        wx_param_set *grown = wx__realloc(st->sets, cap * sizeof(*grown));

        if (!grown)
            return wx_error_set(err, WX_ENOMEM, "out of memory");
        st->sets = grown;
    }
    set = &st->sets[st->n_sets];
    memset(set, 0, sizeof(*set));
    memcpy(set->param_id, param_id, sizeof(param_id));
    set->params = json_incref(params);
    st->n_sets++;
    *slot = st->n_sets;
    return push_seeds(set, seeds, n, err);
}

/* Seeds s0 + i of an entry without a seed (overflow impossible: s0 <
   2^32 and n <= MAX_REPLICATES). */
static int derived_seeds(json_t *params, int64_t n, int64_t **out,
                         wx_error *err)
{
    char param_id[65];
    int64_t *seeds = wx__malloc((size_t)n * sizeof(*seeds));
    int rc = seeds ? wx_param_id(params, param_id, err)
                   : wx_error_set(err, WX_ENOMEM, "out of memory");

    if (rc) {
        wx_free(seeds);
        return rc;
    }
    seeds[0] = wx_study_seed(param_id, 0);
    for (int64_t i = 1; i < n; i++)
        seeds[i] = seeds[0] + i;
    *out = seeds;
    return 0;
}

static int set_string(char **dst, const char *s, wx_error *err)
{
    *dst = wx__strdup(s);
    return *dst ? 0 : wx_error_set(err, WX_ENOMEM, "out of memory");
}

/* "targets": a list of target entrypoints. */
static int read_targets(const json_t *list, const char *field, wx_study *st,
                        wx_error *err)
{
    size_t n = json_array_size(list), i;
    json_t *v;

    st->targets = wx__calloc(n + 1, sizeof(*st->targets));
    if (!st->targets)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    json_array_foreach(list, i, v)
    {
        int rc;

        if (!wx__json_is_text(v))
            return wx_error_set(err, WX_EINVAL, "%s[%zu]: must be a string",
                                field, i);
        rc = wx_entrypoint_parse(json_string_value(v), WX_EP_TARGET, NULL,
                                 err);
        if (!rc)
            rc = set_string(&st->targets[i], json_string_value(v), err);
        if (rc)
            return wx_error_prefix(err, rc, "%s[%zu]", field, i);
    }
    return 0;
}

/* One entry of parameter_sets: {"params": {...}, "seed"?} or {...}. */
static int read_entry(wx_study *st, set_index *ix, json_t *entry,
                      int64_t n_replicates, wx_error *err)
{
    json_t *params = json_object_get(entry, "params");
    int64_t seed = -1, *seeds = NULL;
    int rc;

    if (!json_is_object(entry))
        return wx_error_set(err, WX_EINVAL, "must be an object");
    if (!params)
        params = entry; /* the older plain form */
    rc = wx__jf_int(entry, "seed", false, 0, WX_SEED_MAX, &seed, err);
    if (!rc)
        rc = wx_params_validate(params, err);
    if (!rc && seed >= 0)
        return add_entry(st, ix, params, &seed, 1, err);
    if (!rc)
        rc = derived_seeds(params, n_replicates, &seeds, err);
    if (!rc)
        rc = add_entry(st, ix, params, seeds, (size_t)n_replicates, err);
    wx_free(seeds);
    return rc;
}

static int read_entrypoint(const json_t *doc, wx_study *st, wx_error *err)
{
    const char *model = NULL, *scenario = "baseline";
    char ep[WX_ENTRYPOINT_MAX + 2];
    int rc = wx__jf_string(doc, "model", true, &model, err);

    if (!rc)
        rc = wx__jf_string(doc, "scenario", false, &scenario, err);
    if (rc)
        return rc;
    snprintf(ep, sizeof(ep), "%s/%s", model, scenario);
    rc = wx_entrypoint_parse(ep, WX_EP_MODEL, NULL, err);
    if (rc)
        return wx_error_prefix(err, rc, "model/scenario '%s'", ep);
    return set_string(&st->entrypoint, ep, err);
}

static int read_simulation_study(const json_t *doc, wx_study *st,
                                 wx_error *err)
{
    json_t *sets = NULL, *targets = NULL, *e;
    int64_t n_rep = 1;
    set_index ix = {0};
    size_t i;
    int rc = read_entrypoint(doc, st, err);

    if (!rc)
        rc = wx__jf_int(doc, "n_replicates", false, 1, MAX_REPLICATES, &n_rep,
                        err);
    if (!rc)
        rc = wx__jf_array(doc, "parameter_sets", true, &sets, err);
    if (!rc && json_array_size(sets) == 0)
        rc = wx_error_set(err, WX_EINVAL,
                          "parameter_sets: must not be empty");
    if (!rc)
        rc = wx__jf_array(doc, "outputs", false, &st->outputs, err);
    if (!rc && st->outputs)
        json_incref(st->outputs);
    if (!rc)
        rc = wx__jf_array(doc, "targets", false, &targets, err);
    if (!rc)
        rc = read_targets(targets, "targets", st, err);
    json_array_foreach(sets, i, e)
    {
        if (rc)
            break;
        rc = read_entry(st, &ix, e, n_rep, err);
        if (rc)
            wx_error_prefix(err, rc, "parameter_sets[%zu]", i);
    }
    wx_free(ix.slots);
    return rc;
}

/* The param_id a SimJob states must be the one its values hash to. */
static int check_param_id(const json_t *p, json_t *values, wx_error *err)
{
    const char *stated = NULL;
    char id[65];
    int rc = wx__jf_string(p, "param_id", false, &stated, err);

    if (!rc)
        rc = wx_params_validate(values, err);
    if (!rc && stated) {
        rc = wx_param_id(values, id, err);
        if (!rc && strcmp(stated, id) != 0)
            rc = wx_error_set(err, WX_EINVAL,
                              "params.param_id: %.64s does not match the "
                              "values (%s)",
                              stated, id);
    }
    return rc;
}

/* The entrypoint and bundle_ref every task of a SimJob must share. */
static int same_as_first(char **first, const char *value, const char *field,
                         wx_error *err)
{
    if (!*first)
        return set_string(first, value, err);
    if (strcmp(*first, value) != 0)
        return wx_error_set(err, WX_EINVAL,
                            "%s: every task must have the same %s ('%s' "
                            "and '%s')",
                            field, field, *first, value);
    return 0;
}

static int read_job_task(wx_study *st, set_index *ix, const json_t *t,
                         wx_error *err)
{
    const char *ep = NULL, *ref = NULL;
    json_t *p = NULL, *values = NULL;
    int64_t seed = 0;
    int rc = wx__jf_string(t, "entrypoint", true, &ep, err);

    if (!rc)
        rc = wx__jf_string(t, "bundle_ref", false, &ref, err);
    if (!rc)
        rc = wx__jf_int(t, "seed", true, 0, WX_SEED_MAX, &seed, err);
    if (!rc)
        rc = wx__jf_object(t, "params", true, &p, err);
    if (!rc)
        rc = wx__jf_object(p, "values", true, &values, err);
    if (!rc)
        rc = check_param_id(p, values, err);
    if (!rc)
        rc = wx_entrypoint_parse(ep, WX_EP_MODEL, NULL, err);
    if (!rc)
        rc = same_as_first(&st->entrypoint, ep, "entrypoint", err);
    if (!rc && ref)
        rc = same_as_first(&st->bundle_ref, ref, "bundle_ref", err);
    return rc ? rc : add_entry(st, ix, values, &seed, 1, err);
}

static int read_task_list(wx_study *st, set_index *ix, const json_t *list,
                          wx_error *err)
{
    size_t i;
    json_t *t;

    if (!json_is_array(list))
        return wx_error_set(err, WX_EINVAL, "tasks: must be a list");
    json_array_foreach(list, i, t)
    {
        int rc = read_job_task(st, ix, t, err);

        if (rc)
            return wx_error_prefix(err, rc, "tasks[%zu]", i);
    }
    return 0;
}

/* tasks[], or the legacy batches[].tasks[]. */
static int read_job_tasks(const json_t *doc, wx_study *st, wx_error *err)
{
    json_t *tasks = json_object_get(doc, "tasks");
    json_t *batches = json_object_get(doc, "batches"), *b;
    set_index ix = {0};
    size_t k;
    int rc = 0;

    if (!tasks && !json_is_array(batches))
        rc = wx_error_set(err, WX_EINVAL,
                          "tasks: is required (a list of tasks)");
    else if (tasks)
        rc = read_task_list(st, &ix, tasks, err);
    json_array_foreach(tasks ? NULL : batches, k, b)
    {
        if (rc)
            break;
        rc = read_task_list(st, &ix, json_object_get(b, "tasks"), err);
        if (rc)
            wx_error_prefix(err, rc, "batches[%zu]", k);
    }
    wx_free(ix.slots);
    if (!rc && st->n_sets == 0)
        rc = wx_error_set(err, WX_EINVAL, "tasks: must not be empty");
    return rc;
}

/* target_spec.data.target_entrypoints of a SimJob. */
static int read_job_targets(const json_t *doc, wx_study *st, wx_error *err)
{
    json_t *data = json_object_get(json_object_get(doc, "target_spec"),
                                   "data");
    json_t *list = json_object_get(data, "target_entrypoints");

    if (list && !json_is_array(list))
        return wx_error_set(err, WX_EINVAL,
                            "target_spec.data.target_entrypoints: must be a "
                            "list");
    return read_targets(list, "target_spec.data.target_entrypoints", st, err);
}

static int read_simjob(const json_t *doc, wx_study *st, wx_error *err)
{
    int rc = read_job_tasks(doc, st, err);

    return rc ? rc : read_job_targets(doc, st, err);
}

static bool is_simjob(const json_t *doc)
{
    const char *type = json_string_value(json_object_get(doc, "job_type"));

    return json_object_get(doc, "tasks") || json_object_get(doc, "batches") ||
           (type && strcmp(type, "simulation") == 0);
}

static int read_study(const json_t *doc, wx_study *st, wx_error *err)
{
    const char *kind = json_string_value(json_object_get(doc, "kind"));
    const char *type = json_string_value(json_object_get(doc, "job_type"));

    if (!json_is_object(doc))
        return wx_error_set(err, WX_EINVAL,
                            "a study must be a JSON object");
    if ((kind && strcmp(kind, "SimulationStudy") != 0) ||
        (type && strcmp(type, "simulation") != 0))
        return wx_error_set(err, WX_EINVAL,
                            "%s studies are not run by warmexec run (only "
                            "SimulationStudy and simulation SimJob files)",
                            kind ? kind : type);
    if (!is_simjob(doc))
        return read_simulation_study(doc, st, err);
    return read_simjob(doc, st, err);
}

static int check_size(const wx_study *st, wx_error *err)
{
    if (wx_study_tasks(st) > MAX_TASKS)
        return wx_error_set(err, WX_EINVAL,
                            "the study has more than %d tasks", MAX_TASKS);
    return 0;
}

int wx_study_load(const char *path, size_t max_bytes, wx_study *st,
                  wx_error *err)
{
    wx_buf text = WX_BUF_INIT(max_bytes);
    json_t *doc = NULL;
    int rc;

    memset(st, 0, sizeof(*st));
    rc = wx_buf_read_file(&text, path, err);
    if (!rc)
        rc = wx__sha256_hex(text.data, text.len, st->sha256, err);
    if (!rc)
        rc = wx_json_parse(text.data, text.len, &doc, err);
    if (!rc)
        rc = read_study(doc, st, err);
    if (!rc)
        rc = check_size(st, err);
    if (!rc)
        rc = set_string(&st->path, path, err);
    json_decref(doc);
    wx_buf_release(&text);
    if (rc) {
        wx_study_release(st);
        return wx_error_prefix(err, rc, "%s", path);
    }
    return 0;
}
