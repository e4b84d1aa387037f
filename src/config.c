/* The configuration table and its values. */
#include "internal.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <strings.h>
#include <unistd.h>

#include <warmexec/config.h>
#include <warmexec/log.h>

#include "alloc.h"

#define KiB 1024ll
#define MiB (1024ll * KiB)
#define GiB (1024ll * MiB)

/* In the order of wx_cas_sync. */
static const char *const cas_sync_names[] = {"full", "batch", "none", NULL};

static const wx_conf_entry table[WX_CONF__COUNT] = {
    [WX_CONF_HOME] = {"home", WX_CONF_STRING, NULL, "WARMEXEC_HOME", 0, 0,
                      "state directory (bundles, CAS, cache, worker logs); "
                      "default $XDG_CACHE_HOME/warmexec or "
                      "~/.cache/warmexec"},
    [WX_CONF_LOG_LEVEL] = {"log_level", WX_CONF_LEVEL, "warn",
                           "WARMEXEC_LOG_LEVEL", 0, 0,
                           "most verbose log level shown: error, warn, "
                           "info, debug"},
    [WX_CONF_MAX_INPUT_BYTES] = {"max_input_bytes", WX_CONF_BYTES, "256M",
                                 "WARMEXEC_MAX_INPUT_BYTES", 1, 64 * GiB,
                                 "largest JSON input (task, study, "
                                 "aggregation) read from a file or stdin"},
    [WX_CONF_JOBS] = {"jobs", WX_CONF_INT, "0", "WARMEXEC_JOBS", 0, 4096,
                      "dispatcher threads, and warm workers per bundle; 0 = "
                      "the number of CPUs"},
    [WX_CONF_MAX_PROCESSES] = {"max_processes", WX_CONF_INT, "128",
                               "WARMEXEC_MAX_PROCESSES", 1, 4096,
                               "most worker processes alive at once"},
    [WX_CONF_START_TIMEOUT] = {"start_timeout", WX_CONF_SECONDS, "60",
                               "WARMEXEC_START_TIMEOUT", 0, 0,
                               "seconds from spawn to the runner's ready"},
    [WX_CONF_TASK_TIMEOUT] = {"task_timeout", WX_CONF_SECONDS, "1800",
                              "WARMEXEC_TASK_TIMEOUT", 0, 0,
                              "seconds a task may take; then its worker is "
                              "killed"},
    [WX_CONF_MAX_TASKS_PER_WORKER] = {"max_tasks_per_worker", WX_CONF_INT,
                                      "0", "WARMEXEC_MAX_TASKS_PER_WORKER",
                                      0, INT64_MAX,
                                      "recycle a worker after this many "
                                      "tasks; 0 = never"},
    [WX_CONF_WORKER_TTL] = {"worker_ttl", WX_CONF_SECONDS, "0",
                            "WARMEXEC_WORKER_TTL", 0, 0,
                            "recycle a worker after this many seconds; 0 = "
                            "never"},
    [WX_CONF_MEM_LIMIT_BYTES] = {"mem_limit_bytes", WX_CONF_BYTES, "0",
                                 "WARMEXEC_MEM_LIMIT_BYTES", 0, 1024 * GiB,
                                 "address-space limit of a worker; 0 = none"},
    [WX_CONF_MAX_FRAME_BYTES] = {"max_frame_bytes", WX_CONF_BYTES, "1G",
                                 "WARMEXEC_MAX_FRAME_BYTES", 64 * KiB,
                                 64 * GiB,
                                 "largest protocol frame a worker may send"},
    [WX_CONF_ATTACHMENTS] = {"attachments", WX_CONF_BOOL, "true",
                             "WARMEXEC_ATTACHMENTS", 0, 1,
                             "offer runners the warmexec/1 extension (raw "
                             "artifact bytes instead of base64)"},
    [WX_CONF_SHUTDOWN_GRACE] = {"shutdown_grace", WX_CONF_SECONDS, "5",
                                "WARMEXEC_SHUTDOWN_GRACE", 0, 0,
                                "seconds a worker gets to exit after "
                                "shutdown, and again after SIGTERM"},
    [WX_CONF_NATIVE_RUNNER] = {"native_runner", WX_CONF_STRING, NULL,
                               "WARMEXEC_NATIVE_RUNNER", 0, 0,
                               "the native runner program; default "
                               "warmexec-runner next to this program"},
    [WX_CONF_PYTHON] = {"python", WX_CONF_STRING, "python3",
                        "WARMEXEC_PYTHON", 0, 0,
                        "the Python interpreter of python bundles"},
    [WX_CONF_PYTHON_RUNNER] = {"python_runner", WX_CONF_STRING, NULL,
                               "WARMEXEC_PYTHON_RUNNER", 0, 0,
                               "warmexec_runner.py; default "
                               "../share/warmexec/ next to this program, else "
                               "the source tree's"},
    [WX_CONF_INLINE_MAX_BYTES] = {"inline_artifact_max_bytes", WX_CONF_BYTES,
                                  "64000", "WARMEXEC_INLINE_ARTIFACT_MAX_BYTES",
                                  0, 524288,
                                  "artifacts up to this size stay inline in "
                                  "results; larger ones go to the CAS"},
    [WX_CONF_MAX_RETRIES] = {"max_retries", WX_CONF_INT, "2",
                             "WARMEXEC_MAX_RETRIES", 0, 100,
                             "retries of a task after a retryable failure "
                             "(crash, timeout, protocol error), each on a "
                             "fresh worker"},
    [WX_CONF_CAS_SYNC] = {"cas_sync", WX_CONF_CHOICE, "batch",
                          "WARMEXEC_CAS_SYNC", 0, 0,
                          "when CAS objects reach the disk: full, batch "
                          "or none (docs/cas.md)",
                          cas_sync_names},
};

typedef struct conf_value {
    char *text; /* STRING values; owned */
    int64_t i;  /* INT, BYTES, LEVEL */
    double d;   /* SECONDS */
    wx_conf_source source;
} conf_value;

struct wx_config {
    conf_value v[WX_CONF__COUNT];
};

const wx_conf_entry *wx_conf_entry_get(wx_conf_id id)
{
    if ((unsigned)id >= WX_CONF__COUNT)
        return NULL;
    return &table[id];
}

int wx_conf_find(const char *name)
{
    for (int i = 0; i < WX_CONF__COUNT; i++)
        if (strcmp(table[i].name, name) == 0)
            return i;
    return -1;
}

const char *wx_conf_source_name(wx_conf_source source)
{
    switch (source) {
    case WX_CONF_FROM_DEFAULT:
        return "default";
    case WX_CONF_FROM_ENV:
        return "environment";
    case WX_CONF_FROM_FLAG:
        return "flag";
    }
    return "unknown";
}

/* $XDG_CACHE_HOME/warmexec, else $HOME/.cache/warmexec. */
static int default_home(char *out, size_t max, wx_error *err)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int n;

    if (xdg && xdg[0] == '/')
        n = snprintf(out, max, "%s/warmexec", xdg);
    else if (home && home[0] == '/')
        n = snprintf(out, max, "%s/.cache/warmexec", home);
    else
        return wx_error_set(err, WX_EINVAL,
                            "cannot choose a home directory: set "
                            "WARMEXEC_HOME (HOME is not set)");
    if (n < 0 || (size_t)n >= max)
        return wx_error_set(err, WX_EINVAL, "home directory path too long");
    return 0;
}

/* Parse "123", "64K", "1M", "2G" into bytes. */
static int parse_bytes(const char *text, int64_t *out)
{
    char *end;
    long long v;
    long long mult = 1;

    if (*text < '0' || *text > '9')
        return -1;
    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno)
        return -1;
    if (*end == 'K' || *end == 'k')
        mult = KiB;
    else if (*end == 'M' || *end == 'm')
        mult = MiB;
    else if (*end == 'G' || *end == 'g')
        mult = GiB;
    if (mult != 1)
        end++;
    if (*end != '\0' || v > INT64_MAX / mult)
        return -1;
    *out = v * mult;
    return 0;
}

static int parse_int(const char *text, int64_t *out)
{
    char *end;
    long long v;

    if (!((*text >= '0' && *text <= '9') || *text == '-'))
        return -1;
    errno = 0;
    v = strtoll(text, &end, 10);
    if (end == text || *end != '\0' || errno)
        return -1;
    *out = v;
    return 0;
}

static int parse_seconds(const char *text, double *out)
{
    char *end;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (end == text || *end != '\0' || errno || !isfinite(v) || v < 0)
        return -1;
    *out = v;
    return 0;
}

static int parse_bool(const char *text, int64_t *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};

    for (size_t i = 0; i < WX_ARRAY_LEN(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = 1;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

static int parse_choice(const wx_conf_entry *e, const char *text,
                        int64_t *out)
{
    for (int64_t i = 0; e->choices[i]; i++) {
        if (strcasecmp(text, e->choices[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return -1;
}

static const char *type_rule(wx_conf_type type)
{
    switch (type) {
    case WX_CONF_CHOICE:
        return "one of"; /* followed by the choices */
    case WX_CONF_BOOL:
        return "true or false";
    case WX_CONF_STRING:
        return "text";
    case WX_CONF_INT:
        return "an integer";
    case WX_CONF_BYTES:
        return "a byte count such as 65536, 64K, 1M or 2G";
    case WX_CONF_SECONDS:
        return "a non-negative number of seconds";
    case WX_CONF_LEVEL:
        return "one of error, warn, info, debug";
    }
    return "?";
}

/* "full, batch, none" for messages. */
static const char *choice_list(const wx_conf_entry *e)
{
    static _Thread_local char text[256];
    size_t used = 0;

    text[0] = '\0';
    for (size_t i = 0; e->choices[i] && used < sizeof(text); i++)
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%s%s",
                                 i ? ", " : "", e->choices[i]);
    return text;
}

/* Parse `text` for entry `e` into `v` (without touching v->text). */
static int parse_value(const wx_conf_entry *e, const char *text,
                       conf_value *v)
{
    int64_t i = 0;

    switch (e->type) {
    case WX_CONF_STRING:
        return 0;
    case WX_CONF_SECONDS:
        return parse_seconds(text, &v->d);
    case WX_CONF_BOOL:
        return parse_bool(text, &v->i);
    case WX_CONF_CHOICE:
        return parse_choice(e, text, &v->i);
    case WX_CONF_LEVEL:
        i = wx_log_level_parse(text);
        if (i < 0)
            return -1;
        v->i = i;
        return 0;
    case WX_CONF_INT:
    case WX_CONF_BYTES:
        if ((e->type == WX_CONF_INT ? parse_int(text, &i)
                                    : parse_bytes(text, &i)) != 0 ||
            i < e->min || i > e->max)
            return -1;
        v->i = i;
        return 0;
    }
    return -1;
}

int wx_config_set(wx_config *cfg, wx_conf_id id, const char *text,
                  wx_conf_source source, wx_error *err)
{
    const wx_conf_entry *e = wx_conf_entry_get(id);
    conf_value parsed;

    if (!e)
        return wx_error_set(err, WX_EINVAL, "unknown setting %d", (int)id);
    parsed = cfg->v[id];
    if (parse_value(e, text, &parsed) != 0) {
        if (e->type == WX_CONF_INT || e->type == WX_CONF_BYTES)
            return wx_error_set(err, WX_EINVAL,
                                "%s: '%s' is not %s in [%" PRId64
                                ", %" PRId64 "]",
                                e->name, text, type_rule(e->type), e->min,
                                e->max);
        if (e->type == WX_CONF_CHOICE)
            return wx_error_set(err, WX_EINVAL, "%s: '%s' is not one of %s",
                                e->name, text, choice_list(e));
        return wx_error_set(err, WX_EINVAL, "%s: '%s' is not %s", e->name,
                            text, type_rule(e->type));
    }
    if (e->type == WX_CONF_STRING) {
        char *copy = wx__strdup(text);

        if (!copy)
            return wx_error_set(err, WX_ENOMEM, "out of memory");
        wx_free(cfg->v[id].text);
        parsed.text = copy;
    }
    parsed.source = source;
    cfg->v[id] = parsed;
    return 0;
}

/* The directory of the running program, from /proc/self/exe. */
static bool program_dir(char *out, size_t max)
{
    ssize_t n = readlink("/proc/self/exe", out, max - 1);
    char *slash;

    if (n <= 0)
        return false;
    out[n] = '\0';
    slash = strrchr(out, '/');
    if (!slash)
        return false;
    *slash = '\0';
    return true;
}

/* Defaults that depend on where the program is installed. */
static const char *computed_default(wx_conf_id id, char *buf, size_t max)
{
    char dir[PATH_MAX - 64]; /* room for the file names appended */

    switch (id) {
    case WX_CONF_HOME:
        /* No usable HOME: leave it empty; using it reports why. */
        return default_home(buf, max, NULL) == 0 ? buf : "";
    case WX_CONF_NATIVE_RUNNER:
        if (!program_dir(dir, sizeof(dir)))
            return "warmexec-runner";
        snprintf(buf, max, "%s/warmexec-runner", dir);
        return buf;
    case WX_CONF_PYTHON_RUNNER:
        if (program_dir(dir, sizeof(dir))) {
            snprintf(buf, max, "%s/../share/warmexec/warmexec_runner.py", dir);
            if (access(buf, R_OK) == 0)
                return buf;
        }
        return WX_PYTHON_RUNNER_SOURCE;
    default:
        return "";
    }
}

int wx_config_new(wx_config **out, wx_error *err)
{
    char home[PATH_MAX];
    wx_config *cfg = wx__calloc(1, sizeof(*cfg));
    int rc = 0;

    if (!cfg)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    for (int i = 0; i < WX_CONF__COUNT && !rc; i++) {
        const char *def = table[i].def;

        if (!def)
            def = computed_default((wx_conf_id)i, home, sizeof(home));
        rc = wx_config_set(cfg, (wx_conf_id)i, def, WX_CONF_FROM_DEFAULT,
                           err);
    }
    if (rc) {
        wx_config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

void wx_config_free(wx_config *cfg)
{
    if (!cfg)
        return;
    for (int i = 0; i < WX_CONF__COUNT; i++)
        wx_free(cfg->v[i].text);
    wx_free(cfg);
}

int wx_config_load_env(wx_config *cfg, wx_error *err)
{
    for (int i = 0; i < WX_CONF__COUNT; i++) {
        const char *text = getenv(table[i].env);
        int rc;

        if (!text)
            continue;
        rc = wx_config_set(cfg, (wx_conf_id)i, text, WX_CONF_FROM_ENV, err);
        if (rc)
            return wx_error_prefix(err, rc, "%s", table[i].env);
    }
    return 0;
}

const char *wx_config_str(const wx_config *cfg, wx_conf_id id)
{
    return cfg->v[id].text ? cfg->v[id].text : "";
}

int64_t wx_config_int(const wx_config *cfg, wx_conf_id id)
{
    return cfg->v[id].i;
}

double wx_config_seconds(const wx_config *cfg, wx_conf_id id)
{
    return cfg->v[id].d;
}

wx_conf_source wx_config_source(const wx_config *cfg, wx_conf_id id)
{
    return cfg->v[id].source;
}

int wx_config_format(const wx_config *cfg, wx_conf_id id, wx_buf *out,
                     wx_error *err)
{
    const conf_value *v = &cfg->v[id];

    switch (table[id].type) {
    case WX_CONF_STRING:
        return wx_buf_puts(out, wx_config_str(cfg, id), err);
    case WX_CONF_LEVEL:
        return wx_buf_puts(out, wx_log_level_name((enum wx_log_level)v->i),
                           err);
    case WX_CONF_BOOL:
        return wx_buf_puts(out, v->i ? "true" : "false", err);
    case WX_CONF_CHOICE:
        return wx_buf_puts(out, table[id].choices[v->i], err);
    case WX_CONF_SECONDS:
        return wx_buf_printf(out, err, "%g", v->d);
    case WX_CONF_INT:
    case WX_CONF_BYTES:
        return wx_buf_printf(out, err, "%" PRId64, v->i);
    }
    return 0;
}
