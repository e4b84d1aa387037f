/* Model host: registry, simulation and target contexts, replies. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <unistd.h>

#include <warmexec/canon.h>
#include <warmexec/json.h>
#include <warmexec/version.h>

#include "alloc.h"
#include "b64.h"
#include "canon.h"
#include "host.h"

/* An output buffer kept between calls is at most this large. */
#define SLOT_KEEP_MAX ((size_t)256 << 20)
/* The largest compat result (base64 of every output). */
#define RESULT_TEXT_MAX ((size_t)1 << 31)

typedef struct entry {
    char *entrypoint;
    void *fn;
    void *user;
} entry;

typedef struct blob {
    char *name;
    uint8_t *data;
    size_t len;
} blob;

typedef struct replicate {
    blob *outputs; /* data owned only when decoded from base64 */
    bool *owned;
    size_t n;
    bool failed;
} replicate;

struct host {
    const char *digest;
    const char *bundle_path;
    bool attachments;
    wx_model_registry reg;
    entry *sims, *targets;
    size_t n_sims, n_targets;
    bool init_failed;
    /* the call in progress */
    wx_sim_ctx sim;
    wx_target_ctx target;
    json_t *params;
    uint64_t seed;
    const char *entrypoint;
    blob *outputs; /* data in the slots below */
    size_t n_outputs;
    /* Output i is copied into slot i, kept from call to call: writing
     * into fresh memory costs far more than copying into warm memory. */
    uint8_t *slot_data[WX_FRAME_ATT_MAX];
    size_t slot_cap[WX_FRAME_ATT_MAX];
    size_t n_slots; /* slots ever used */
    wx_buf result_text; /* compat results, written directly as JSON */
    char message[1024];
    replicate *reps;
    size_t n_reps;
    char *target_data;
    double loss;
    bool loss_set;
    json_t *rep_losses;
    json_t *diagnostics;
    struct iovec att[WX_FRAME_ATT_MAX];
};

static host *host_of_sim(wx_sim_ctx *c)
{
    return c->impl;
}

static host *host_of_target(wx_target_ctx *c)
{
    return c->impl;
}

static int fail_message(host *h, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Record the first error of the call; always returns -1. */
static int fail_message(host *h, const char *fmt, ...)
{
    va_list ap;

    if (h->message[0])
        return -1;
    va_start(ap, fmt);
    vsnprintf(h->message, sizeof(h->message), fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- registry ---- */

static int add_entry(host *h, entry **list, size_t *n, const char *name,
                     void *fn, void *user)
{
    entry *grown;

    if (!name || !name[0] || !fn) {
        h->init_failed = true;
        return -1;
    }
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*list)[i].entrypoint, name) == 0) {
            h->init_failed = true;
            return -1;
        }
    grown = wx__realloc(*list, (*n + 1) * sizeof(**list));
    if (!grown)
        return -1;
    *list = grown;
    grown[*n] = (entry){wx__strdup(name), fn, user};
    if (!grown[*n].entrypoint)
        return -1;
    (*n)++;
    return 0;
}

static int register_sim(wx_model_registry *reg, const char *ep, wx_sim_fn fn,
                        void *user)
{
    host *h = reg->impl;

    return add_entry(h, &h->sims, &h->n_sims, ep, (void *)fn, user);
}

static int register_target(wx_model_registry *reg, const char *ep,
                           wx_target_fn fn, void *user)
{
    host *h = reg->impl;

    return add_entry(h, &h->targets, &h->n_targets, ep, (void *)fn, user);
}

/* ---- simulation context ---- */

static json_t *param(wx_sim_ctx *c, const char *name)
{
    host *h = host_of_sim(c);
    json_t *v = json_object_get(h->params, name);

    if (!v)
        fail_message(h, "parameter '%s' is missing", name);
    return v;
}

static int param_double(wx_sim_ctx *c, const char *name, double *out)
{
    json_t *v = param(c, name);

    if (!v)
        return -1;
    if (!json_is_number(v))
        return fail_message(host_of_sim(c),
                            "parameter '%s' must be a number, got %s", name,
                            wx_json_type_name(v));
    *out = json_number_value(v);
    return 0;
}

static int param_int(wx_sim_ctx *c, const char *name, int64_t *out)
{
    json_t *v = param(c, name);
    double d = json_is_real(v) ? json_real_value(v) : 0.5;

    if (!v)
        return -1;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 0;
    }
    if (json_is_real(v) && d == floor(d) && fabs(d) < 9.0e18) {
        *out = (int64_t)d;
        return 0;
    }
    return fail_message(host_of_sim(c),
                        "parameter '%s' must be an integer, got %s", name,
                        wx_json_type_name(v));
}

static int param_bool(wx_sim_ctx *c, const char *name, int *out)
{
    json_t *v = param(c, name);

    if (!v)
        return -1;
    if (!json_is_boolean(v))
        return fail_message(host_of_sim(c),
                            "parameter '%s' must be true or false, got %s",
                            name, wx_json_type_name(v));
    *out = json_is_true(v);
    return 0;
}

static int param_string(wx_sim_ctx *c, const char *name, const char **out)
{
    json_t *v = param(c, name);

    if (!v)
        return -1;
    if (!json_is_string(v) || wx_json_is_bigint(v))
        return fail_message(host_of_sim(c),
                            "parameter '%s' must be a string, got %s", name,
                            wx_json_type_name(v));
    *out = json_string_value(v);
    return 0;
}

static int has_param(wx_sim_ctx *c, const char *name)
{
    return json_object_get(host_of_sim(c)->params, name) != NULL;
}

static uint64_t seed_of(wx_sim_ctx *c)
{
    return host_of_sim(c)->seed;
}

static const char *entrypoint_of(wx_sim_ctx *c)
{
    return host_of_sim(c)->entrypoint;
}

/* Slot `i` with room for `len` bytes (its old bytes are not kept). */
static int slot_reserve(host *h, size_t i, size_t len)
{
    uint8_t *grown;

    if (i >= h->n_slots)
        h->n_slots = i + 1;
    if (len <= h->slot_cap[i])
        return 0;
    grown = wx__malloc(len);
    if (!grown)
        return -1;
    wx_free(h->slot_data[i]);
    h->slot_data[i] = grown;
    h->slot_cap[i] = len;
    return 0;
}

/* After a call: a slot over SLOT_KEEP_MAX bytes is given back. */
static void slots_trim(host *h)
{
    for (size_t i = 0; i < h->n_slots; i++) {
        if (h->slot_cap[i] > SLOT_KEEP_MAX) {
            wx_free(h->slot_data[i]);
            h->slot_data[i] = NULL;
            h->slot_cap[i] = 0;
        }
    }
}

/* A new output `name` of `len` bytes; NULL (with a message) on error. */
static uint8_t *new_output(host *h, const char *name, size_t len)
{
    blob *grown;
    blob b = {NULL, NULL, len};

    if (!name || !name[0]) {
        fail_message(h, "an output needs a name");
        return NULL;
    }
    for (size_t i = 0; i < h->n_outputs; i++) {
        if (strcmp(h->outputs[i].name, name) == 0) {
            fail_message(h, "output '%s' added twice", name);
            return NULL;
        }
    }
    if (h->n_outputs >= WX_FRAME_ATT_MAX) {
        fail_message(h, "more than %d outputs", WX_FRAME_ATT_MAX);
        return NULL;
    }
    grown = wx__realloc(h->outputs, (h->n_outputs + 1) * sizeof(*grown));
    if (!grown) {
        fail_message(h, "out of memory");
        return NULL;
    }
    h->outputs = grown;
    b.name = wx__strdup(name);
    if (!b.name || slot_reserve(h, h->n_outputs, len) != 0) {
        wx_free(b.name);
        fail_message(h, "out of memory for output '%s'", name);
        return NULL;
    }
    /* A valid pointer even for 0 bytes: NULL means failure. */
    b.data = len ? h->slot_data[h->n_outputs] : (uint8_t *)"";
    h->outputs[h->n_outputs++] = b;
    return b.data;
}

static int add_output(wx_sim_ctx *c, const char *name, const void *data,
                      size_t len)
{
    uint8_t *dst = new_output(host_of_sim(c), name, len);

    if (!dst)
        return -1;
    if (len)
        memcpy(dst, data, len);
    return 0;
}

static void *output_buffer(wx_sim_ctx *c, const char *name, size_t len)
{
    return new_output(host_of_sim(c), name, len);
}

static int sim_fail(wx_sim_ctx *c, const char *message)
{
    return fail_message(host_of_sim(c), "%s", message);
}

/* ---- target context ---- */

static size_t n_replicates(wx_target_ctx *c)
{
    return host_of_target(c)->n_reps;
}

static int replicate_output(wx_target_ctx *c, size_t i, const char *name,
                            const void **data, size_t *len)
{
    host *h = host_of_target(c);

    if (i >= h->n_reps)
        return -1;
    for (size_t k = 0; k < h->reps[i].n; k++) {
        if (strcmp(h->reps[i].outputs[k].name, name) == 0) {
            *data = h->reps[i].outputs[k].data;
            *len = h->reps[i].outputs[k].len;
            return 0;
        }
    }
    return -1;
}

static int replicate_failed(wx_target_ctx *c, size_t i)
{
    host *h = host_of_target(c);

    return i < h->n_reps && h->reps[i].failed;
}

static const char *target_data(wx_target_ctx *c)
{
    return host_of_target(c)->target_data;
}

static int set_loss(wx_target_ctx *c, double loss)
{
    host *h = host_of_target(c);

    h->loss = loss;
    h->loss_set = true;
    return 0;
}

static int set_replicate_loss(wx_target_ctx *c, size_t i, double loss)
{
    host *h = host_of_target(c);

    if (i >= h->n_reps || !isfinite(loss))
        return -1;
    return json_array_set_new(h->rep_losses, i, json_real(loss));
}

static int set_diagnostics(wx_target_ctx *c, const char *text)
{
    host *h = host_of_target(c);
    json_t *v = NULL;

    if (!text || wx_json_parse(text, strlen(text), &v, NULL) != 0 ||
        !json_is_object(v)) {
        json_decref(v);
        return fail_message(h, "diagnostics must be a JSON object");
    }
    json_decref(h->diagnostics);
    h->diagnostics = v;
    return 0;
}

static int target_fail(wx_target_ctx *c, const char *message)
{
    return fail_message(host_of_target(c), "%s", message);
}

static const char *bundle_path_of(wx_model_registry *reg)
{
    return ((host *)reg->impl)->bundle_path;
}

static const wx_model_api api = {
    WX_MODEL_ABI_VERSION, register_sim,    register_target, param_double,
    param_int,            param_bool,      param_string,    has_param,
    seed_of,              entrypoint_of,   add_output,      sim_fail,
    n_replicates,         replicate_output, replicate_failed, target_data,
    set_loss,             set_replicate_loss, set_diagnostics, target_fail,
    bundle_path_of,       output_buffer,
};

host *host_new(const char *digest, const char *bundle_path)
{
    host *h = wx__calloc(1, sizeof(*h));

    if (!h)
        return NULL;
    h->digest = digest;
    h->bundle_path = bundle_path;
    h->reg = (wx_model_registry){&api, h};
    h->sim = (wx_sim_ctx){&api, h};
    h->target = (wx_target_ctx){&api, h};
    wx_buf_init(&h->result_text, RESULT_TEXT_MAX);
    return h;
}

static void free_entries(entry *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wx_free(list[i].entrypoint);
    wx_free(list);
}

void host_free(host *h)
{
    if (!h)
        return;
    free_entries(h->sims, h->n_sims);
    free_entries(h->targets, h->n_targets);
    for (size_t i = 0; i < h->n_slots; i++)
        wx_free(h->slot_data[i]);
    wx_buf_release(&h->result_text);
    wx_free(h);
}

wx_model_registry *host_registry(host *h)
{
    return &h->reg;
}

/* ---- requests ---- */

static void set_error(wx__rpc_reply *reply, int code, const char *message)
{
    reply->error_code = code;
    reply->error_message = wx__strdup(message);
    /* A C model has no exception type: the message says it all. */
    if (code == WX_RPC_MODEL_ERROR || code == WX_RPC_AGGREGATION_ERROR)
        reply->error_data = json_pack("{s:s}", "message", message);
}

static const entry *find_entry(const entry *list, size_t n, const char *ep)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].entrypoint, ep) == 0)
            return &list[i];
    return NULL;
}

/* "name" of "import.path:name" or "import.path/name". */
static const char *short_name(const char *ep)
{
    const char *cut = strrchr(ep, ':');

    if (!cut)
        cut = strrchr(ep, '/');
    return cut ? cut + 1 : ep;
}

/* A target by entrypoint, else by its name alone. */
static const entry *find_target(const host *h, const char *ep)
{
    const entry *e = find_entry(h->targets, h->n_targets, ep);

    for (size_t i = 0; !e && i < h->n_targets; i++)
        if (strcmp(short_name(h->targets[i].entrypoint), short_name(ep)) == 0)
            e = &h->targets[i];
    return e;
}

static void unknown_entry(host *h, const entry *list, size_t n,
                          const char *what, const char *ep)
{
    size_t used = (size_t)snprintf(h->message, sizeof(h->message),
                                   "unknown %s '%s' (this bundle has:", what,
                                   ep);

    for (size_t i = 0; i < n && used < sizeof(h->message); i++)
        used += (size_t)snprintf(h->message + used, sizeof(h->message) - used,
                                 " %s", list[i].entrypoint);
    if (used < sizeof(h->message))
        snprintf(h->message + used, sizeof(h->message) - used, ")");
}

static bool read_seed(const json_t *v, uint64_t *seed)
{
    const char *big = wx_json_bigint_text(v, NULL);

    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *seed = (uint64_t)json_integer_value(v);
        return true;
    }
    if (big && big[0] != '-') {
        *seed = strtoull(big, NULL, 10);
        return true;
    }
    return false;
}

/* Output i as the reference {"$att": i} to its attachment. */
static json_t *attachment_json(host *h, size_t i)
{
    const blob *b = &h->outputs[i];

    h->att[i] = (struct iovec){b->data, b->len};
    return json_pack("{s:I}", "$att", (json_int_t)i);
}

/*
 * The compat result {"<name>":"<base64>",...} written straight into
 * h->result_text: no JSON value and no fresh copy of the artifacts.
 */
static int compat_result_text(host *h)
{
    wx_buf *t = &h->result_text;
    wx_error err = WX_ERROR_INIT;
    int rc;

    wx_buf_reset(t);
    rc = wx_buf_putc(t, '{', &err);
    for (size_t i = 0; !rc && i < h->n_outputs; i++) {
        const blob *b = &h->outputs[i];
        size_t n = wx__b64_encoded_len(b->len);

        if (i)
            rc = wx_buf_putc(t, ',', &err);
        if (!rc)
            rc = wx__canon_string(t, b->name, strlen(b->name),
                                  WX_JSON_ENSURE_ASCII, &err);
        if (!rc)
            rc = wx_buf_puts(t, ":\"", &err);
        if (!rc)
            rc = wx_buf_reserve(t, n + 1, &err);
        if (!rc) {
            wx__b64_encode(b->data, b->len, t->data + t->len);
            t->len += n;
            rc = wx_buf_putc(t, '"', &err);
        }
    }
    return rc ? rc : wx_buf_putc(t, '}', &err);
}

static int execute_reply(host *h, wx__rpc_reply *reply)
{
    json_t *result;

    if (!h->attachments) {
        if (compat_result_text(h) != 0)
            set_error(reply, WX_RPC_INTERNAL_ERROR,
                      "out of memory for the result");
        else
            reply->result_text = &h->result_text;
        return 0;
    }
    result = json_object();

    for (size_t i = 0; result && i < h->n_outputs; i++) {
        json_t *v = attachment_json(h, i);

        if (!v || json_object_set_new(result, h->outputs[i].name, v)) {
            json_decref(result);
            result = NULL;
        }
    }
    if (!result) {
        set_error(reply, WX_RPC_INTERNAL_ERROR, "out of memory");
        return 0;
    }
    reply->result = result;
    reply->att = h->att;
    reply->n_att = h->n_outputs;
    return 0;
}

static int handle_execute(host *h, json_t *params, wx__rpc_reply *reply)
{
    const char *ep = json_string_value(json_object_get(params, "entrypoint"));
    const char *digest =
        json_string_value(json_object_get(params, "bundle_digest"));
    json_t *p = json_object_get(params, "params");
    const entry *e;
    int rc;

    if (!ep || !json_is_object(p) ||
        !read_seed(json_object_get(params, "seed"), &h->seed)) {
        set_error(reply, WX_RPC_INVALID_PARAMS,
                  "Invalid params (expected entrypoint, params, seed)");
        return 0;
    }
    if (digest && strcmp(digest, h->digest) != 0) {
        snprintf(h->message, sizeof(h->message),
                 "Bundle digest mismatch: expected %s, got %s", h->digest,
                 digest);
        set_error(reply, WX_RPC_INTERNAL_ERROR, h->message);
        return 0;
    }
    e = find_entry(h->sims, h->n_sims, ep);
    if (!e) {
        unknown_entry(h, h->sims, h->n_sims, "entrypoint", ep);
        set_error(reply, WX_RPC_MODEL_ERROR, h->message);
        return 0;
    }
    h->params = p;
    h->entrypoint = ep;
    rc = ((wx_sim_fn)e->fn)(&h->sim, e->user);
    if (rc != 0 && !h->message[0])
        snprintf(h->message, sizeof(h->message),
                 "simulation %s returned %d", ep, rc);
    if (h->message[0]) {
        set_error(reply, WX_RPC_MODEL_ERROR, h->message);
        return 0;
    }
    return execute_reply(h, reply);
}

/* The bytes of one serialised output (attachment borrowed, base64 owned). */
static int load_output(const json_t *inl, const wx__frame *frame, blob *b,
                       bool *owned)
{
    json_t *att = json_object_get(inl, "$att");

    *owned = false;
    if (json_is_null(inl) || !inl)
        return 0;
    if (json_is_integer(att) && json_integer_value(att) >= 0 &&
        (size_t)json_integer_value(att) < frame->n_att) {
        size_t i = (size_t)json_integer_value(att);

        b->data = (uint8_t *)frame->att.data + frame->att_off[i];
        b->len = frame->att_off[i + 1] - frame->att_off[i];
        return 0;
    }
    if (!json_is_string(inl))
        return -1;
    b->data = wx__malloc(wx__b64_decoded_max(json_string_length(inl)) + 1);
    if (!b->data)
        return -1;
    *owned = true;
    return wx__b64_decode(json_string_value(inl), json_string_length(inl),
                          b->data, &b->len, NULL);
}

static int load_replicate(replicate *r, const json_t *sr,
                          const wx__frame *frame)
{
    json_t *outputs = json_object_get(sr, "outputs"), *o;
    size_t n = json_object_size(outputs);
    const char *name;

    r->failed = !json_is_null(json_object_get(sr, "error")) &&
                json_object_get(sr, "error");
    r->outputs = wx__calloc(n ? n : 1, sizeof(*r->outputs));
    r->owned = wx__calloc(n ? n : 1, sizeof(*r->owned));
    if (!r->outputs || !r->owned)
        return -1;
    json_object_foreach(outputs, name, o)
    {
        blob *b = &r->outputs[r->n];

        b->name = (char *)name;
        if (load_output(json_object_get(o, "inline"), frame, b,
                        &r->owned[r->n++]) != 0)
            return -1;
    }
    return 0;
}

static int load_target_call(host *h, json_t *params, const wx__frame *frame)
{
    json_t *list = json_object_get(params, "sim_returns");
    json_t *data = json_object_get(params, "target_data");

    h->n_reps = json_array_size(list);
    h->reps = wx__calloc(h->n_reps ? h->n_reps : 1, sizeof(*h->reps));
    h->rep_losses = json_array();
    if (!h->reps || !h->rep_losses)
        return fail_message(h, "out of memory");
    for (size_t i = 0; i < h->n_reps; i++) {
        if (json_array_append_new(h->rep_losses, json_null()) ||
            load_replicate(&h->reps[i], json_array_get(list, i), frame))
            return fail_message(h, "sim_returns[%zu] cannot be read", i);
    }
    if (data && !json_is_null(data)) {
        wx_buf text = WX_BUF_INIT(SIZE_MAX - 1);

        if (wx_json_canonical(&text, data, NULL) != 0 ||
            !(h->target_data = wx_buf_detach(&text, NULL)))
            return fail_message(h, "target_data cannot be written");
    }
    return 0;
}

static bool any_set(const json_t *losses)
{
    size_t i;
    json_t *v;

    json_array_foreach(losses, i, v) if (!json_is_null(v)) return true;
    return false;
}

static int aggregate_reply(host *h, wx__rpc_reply *reply)
{
    json_t *result;

    if (!h->loss_set)
        fail_message(h, "Target evaluator must return 'loss'");
    else if (!isfinite(h->loss))
        fail_message(h, "Loss must be finite, got %s",
                     isnan(h->loss) ? "nan" : "inf");
    if (h->message[0]) {
        set_error(reply, WX_RPC_AGGREGATION_ERROR, h->message);
        return 0;
    }
    result = json_pack("{s:f,s:O,s:I,s:{}}", "loss", h->loss, "diagnostics",
                       h->diagnostics ? h->diagnostics : json_object(),
                       "n_replicates", (json_int_t)h->n_reps, "outputs");
    if (result && any_set(h->rep_losses))
        json_object_set(result, "per_replicate_losses", h->rep_losses);
    if (!result)
        set_error(reply, WX_RPC_INTERNAL_ERROR, "out of memory");
    reply->result = result;
    return 0;
}

static int handle_aggregate(host *h, json_t *params, const wx__frame *frame,
                            wx__rpc_reply *reply)
{
    const char *ep =
        json_string_value(json_object_get(params, "target_entrypoint"));
    const entry *e;
    int rc;

    if (!ep || !json_is_array(json_object_get(params, "sim_returns"))) {
        set_error(reply, WX_RPC_INVALID_PARAMS,
                  "Invalid params (expected target_entrypoint, "
                  "sim_returns)");
        return 0;
    }
    e = find_target(h, ep);
    if (!e)
        unknown_entry(h, h->targets, h->n_targets, "target", ep);
    else if (load_target_call(h, params, frame) == 0) {
        rc = ((wx_target_fn)e->fn)(&h->target, e->user);
        if (rc != 0 && !h->message[0])
            fail_message(h, "target %s returned %d", ep, rc);
    }
    if (h->message[0]) {
        set_error(reply, WX_RPC_AGGREGATION_ERROR, h->message);
        return 0;
    }
    return aggregate_reply(h, reply);
}

static json_t *ready_result(host *h, json_t *params)
{
    json_t *r = json_pack("{s:b,s:s,s:s,s:s,s:i}", "ready", 1,
                          "bundle_digest", h->digest, "runner", "native",
                          "version", WX_VERSION_STRING, "pid",
                          (int)getpid());

    if (r && json_is_true(json_object_get(params, "attachments")) &&
        json_is_string(json_object_get(params, "protocol")) &&
        strcmp(json_string_value(json_object_get(params, "protocol")),
               "warmexec/1") == 0) {
        h->attachments = true;
        json_object_set_new(r, "protocol", json_string("warmexec/1"));
        json_object_set_new(r, "attachments", json_true());
    }
    return r;
}

int host_handle(void *ctx, const char *method, json_t *params,
                const wx__frame *frame, wx__rpc_reply *reply)
{
    host *h = ctx;

    h->message[0] = '\0';
    if (!json_is_object(params)) {
        set_error(reply, WX_RPC_INVALID_PARAMS,
                  "Invalid params (expected object)");
        return 0;
    }
    if (strcmp(method, "ready") == 0)
        reply->result = ready_result(h, params);
    else if (strcmp(method, "execute") == 0)
        return handle_execute(h, params, reply);
    else if (strcmp(method, "aggregate") == 0)
        return handle_aggregate(h, params, frame, reply);
    else if (strcmp(method, "shutdown") == 0) {
        reply->result = json_pack("{s:b}", "ok", 1);
        reply->stop = true;
    } else {
        snprintf(h->message, sizeof(h->message), "Method not found: %s",
                 method);
        set_error(reply, WX_RPC_METHOD_NOT_FOUND, h->message);
    }
    return 0;
}

static void free_call(host *h)
{
    for (size_t i = 0; i < h->n_outputs; i++)
        wx_free(h->outputs[i].name);
    slots_trim(h);
    wx_free(h->outputs);
    h->outputs = NULL;
    h->n_outputs = 0;
    for (size_t i = 0; i < h->n_reps; i++) {
        for (size_t k = 0; k < h->reps[i].n; k++)
            if (h->reps[i].owned[k])
                wx_free(h->reps[i].outputs[k].data);
        wx_free(h->reps[i].outputs);
        wx_free(h->reps[i].owned);
    }
    wx_free(h->reps);
    h->reps = NULL;
    h->n_reps = 0;
    wx_free(h->target_data);
    h->target_data = NULL;
    json_decref(h->rep_losses);
    json_decref(h->diagnostics);
    h->rep_losses = h->diagnostics = NULL;
    h->loss_set = false;
    h->params = NULL;
}

void host_release(void *ctx, wx__rpc_reply *reply)
{
    (void)reply;
    free_call(ctx);
}
