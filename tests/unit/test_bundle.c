/*
 * Bundles (src/bundle.c, docs/bundles.md): manifests, the digest rule,
 * the local store, and wx_runner_for() down to a worker of the pool.
 *
 * The digest is checked against an independent computation of the rule
 * of docs/bundles.md written here (its own walk, the Python semantics of
 * fnmatch, one-shot SHA-256), and against index texts written by hand.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <warmexec/bundle.h>
#include <warmexec/pool.h>

#include "hash.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define HEX0 "0000000000000000000000000000000000000000000000000000000000000000"

/* ---- fixture: <tmp>/src (a bundle being written), <tmp>/home ---- */

typedef struct fixture {
    char *tmp;
    char src[PATH_MAX];
    char home[PATH_MAX];
} fixture;

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));

    assert_non_null(fx);
    fx->tmp = tu_tempdir();
    snprintf(fx->src, sizeof(fx->src), "%s/src", fx->tmp);
    snprintf(fx->home, sizeof(fx->home), "%s/home", fx->tmp);
    assert_int_equal(mkdir(fx->src, 0755), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;

    tu_rmtree(fx->tmp);
    free(fx->tmp);
    free(fx);
    return 0;
}

/* "<dir>/<rel>" in one of 8 rotating static buffers. */
static const char *P(const char *dir, const char *rel)
{
    static char bufs[8][PATH_MAX];
    static int next;
    char *p = bufs[next++ % 8];
    size_t a = strlen(dir), b = strlen(rel);

    /* `dir` may itself be one of the buffers: build with memmove. */
    if (a + b + 2 > PATH_MAX)
        fail_msg("path too long");
    memmove(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, rel, b + 1);
    return p;
}

/* mkdir -p */
static void make_dirs(const char *path)
{
    char buf[PATH_MAX];

    snprintf(buf, sizeof(buf), "%s", path);
    for (char *s = buf + 1; *s; s++) {
        if (*s == '/') {
            *s = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                fail_msg("mkdir %s: %s", buf, strerror(errno));
            *s = '/';
        }
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        fail_msg("mkdir %s: %s", buf, strerror(errno));
}

/* Write `n` bytes to `path` (parent directories created), chmod `mode`. */
static void write_bytes(const char *path, const void *data, size_t n,
                        mode_t mode)
{
    char dir[PATH_MAX];
    char *slash;
    FILE *f;

    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = '\0';
        make_dirs(dir);
    }
    f = fopen(path, "wb");
    if (!f)
        fail_msg("cannot create %s: %s", path, strerror(errno));
    if (n)
        assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text), 0644);
}

/* The whole content of `path` (malloc'ed, NUL-terminated). */
static char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t n = 0, cap = 0;

    if (!f)
        fail_msg("cannot open %s: %s", path, strerror(errno));
    for (;;) {
        size_t got;

        if (n + 4096 + 1 > cap) {
            cap = (n + 4096 + 1) * 2;
            data = realloc(data, cap);
            assert_non_null(data);
        }
        got = fread(data + n, 1, 4096, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    data[n] = '\0';
    if (len)
        *len = n;
    return data;
}

/* Write warmexec.json into `dir`. */
static void manifest(const char *dir, const char *json)
{
    write_text(P(dir, "warmexec.json"), json);
}

static void digest_ok(const char *dir, char digest[WX_DIGEST_LEN + 1])
{
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx_bundle_digest(dir, digest, NULL, &err), &err);
    assert_int_equal(strlen(digest), WX_DIGEST_LEN);
    assert_memory_equal(digest, "sha256:", 7);
    assert_true(wx__is_hex256(digest + 7));
}

static void sha256_hex_of(const void *data, size_t n, char hex[65])
{
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx__sha256_hex(data, n, hex, &err), &err);
}

/* ---- the reference digest: docs/bundles.md, Python semantics ---- */

typedef struct ref_entry {
    char *rel;
    int mode;
} ref_entry;

typedef struct ref_walk {
    const char *root;
    char *patterns[64];
    size_t n_patterns;
    ref_entry *files;
    size_t n, cap;
} ref_walk;

/*
 * ignored(rel, is_dir) of the documented Python: fnmatch.fnmatchcase,
 * where '*' also matches '/', is fnmatch(3) without FNM_PATHNAME.
 */
static bool ref_ignored(const ref_walk *w, const char *rel, bool is_dir)
{
    const char *base = strrchr(rel, '/');

    base = base ? base + 1 : rel;
    if (is_dir && strcmp(base, ".git") == 0)
        return true;
    for (size_t i = 0; i < w->n_patterns; i++) {
        char p[PATH_MAX];
        size_t len;

        snprintf(p, sizeof(p), "%s", w->patterns[i]);
        len = strlen(p);
        if (len > 1 && p[len - 1] == '/') {
            if (!is_dir)
                continue;
            p[len - 1] = '\0';
        }
        if (fnmatch(p, strchr(p, '/') ? rel : base, 0) == 0)
            return true;
    }
    return false;
}

static void ref_files(ref_walk *w, const char *rel)
{
    char dir[PATH_MAX];
    struct dirent *e;
    DIR *d;

    snprintf(dir, sizeof(dir), "%s%s%s", w->root, rel[0] ? "/" : "", rel);
    d = opendir(dir);
    assert_non_null(d);
    while ((e = readdir(d)) != NULL) {
        char child[PATH_MAX], full[2 * PATH_MAX];
        struct stat st;

        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(child, sizeof(child), "%s%s%s", rel, rel[0] ? "/" : "",
                 e->d_name);
        snprintf(full, sizeof(full), "%s/%s", w->root, child);
        assert_int_equal(lstat(full, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            if (!ref_ignored(w, child, true))
                ref_files(w, child);
        } else if (!S_ISREG(st.st_mode)) {
            fail_msg("reference digest: not a regular file: %s", child);
        } else if (!ref_ignored(w, child, false)) {
            if (w->n == w->cap) {
                w->cap = w->cap ? 2 * w->cap : 32;
                w->files = realloc(w->files, w->cap * sizeof(*w->files));
                assert_non_null(w->files);
            }
            w->files[w->n].rel = strdup(child);
            w->files[w->n++].mode = (st.st_mode & 0111) ? 755 : 644;
        }
    }
    closedir(d);
}

static int ref_cmp(const void *a, const void *b)
{
    const unsigned char *x = (const unsigned char *)((const ref_entry *)a)->rel;
    const unsigned char *y = (const unsigned char *)((const ref_entry *)b)->rel;

    while (*x && *x == *y)
        x++, y++;
    return (int)*x - (int)*y;
}

/* The documented digest of `root`; the index text into `index` if set. */
static void ref_digest(const char *root, char digest[WX_DIGEST_LEN + 1],
                       char **index)
{
    ref_walk w = {.root = root};
    struct stat st;
    char *text = calloc(1, 1);
    size_t text_len = 0;
    char hex[65];

    if (stat(P(root, ".warmexecignore"), &st) == 0 && S_ISREG(st.st_mode)) {
        char *ign = read_all(P(root, ".warmexecignore"), NULL);
        char *save = NULL;

        /* str.splitlines(): \n, \r\n and \r end a line. */
        for (char *s = ign; *s; s++)
            if (*s == '\r')
                *s = '\n';
        for (char *line = strtok_r(ign, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save))
            if (line[0] != '#')
                w.patterns[w.n_patterns++] = strdup(line);
        free(ign);
    }
    ref_files(&w, "");
    qsort(w.files, w.n, sizeof(*w.files), ref_cmp);
    for (size_t i = 0; i < w.n; i++) {
        char line[PATH_MAX + 128], fhex[65];
        size_t len;
        char *content = read_all(P(root, w.files[i].rel), &len);

        sha256_hex_of(content, len, fhex);
        free(content);
        len = (size_t)snprintf(line, sizeof(line), "%d %s %s\n",
                               w.files[i].mode, fhex, w.files[i].rel);
        text = realloc(text, text_len + len + 1);
        assert_non_null(text);
        memcpy(text + text_len, line, len + 1);
        text_len += len;
        free(w.files[i].rel);
    }
    sha256_hex_of(text, text_len, hex);
    snprintf(digest, WX_DIGEST_LEN + 1, "sha256:%s", hex);
    for (size_t i = 0; i < w.n_patterns; i++)
        free(w.patterns[i]);
    free(w.files);
    if (index)
        *index = text;
    else
        free(text);
}

/* wx_bundle_digest() of `dir` equals the reference, index included. */
static void assert_digest_matches_reference(const char *dir)
{
    char digest[WX_DIGEST_LEN + 1], expected[WX_DIGEST_LEN + 1];
    wx_buf index = WX_BUF_INIT(1u << 30);
    wx_error err = WX_ERROR_INIT;
    char *ref_index;

    assert_ok(wx_bundle_digest(dir, digest, &index, &err), &err);
    ref_digest(dir, expected, &ref_index);
    if (index.len != strlen(ref_index) ||
        (index.len && memcmp(index.data, ref_index, index.len) != 0))
        fail_msg("index of %s differs from the documented rule:\n"
                 "--- wx_bundle_digest:\n%s--- documented rule:\n%s",
                 dir, index.len ? index.data : "", ref_index);
    assert_string_equal(digest, expected);
    free(ref_index);
    wx_buf_release(&index);
}

/* The mode (644 or 755) of `rel` in an index text, -1 when absent. */
static int index_mode(const char *index, const char *rel)
{
    size_t rel_len = strlen(rel);

    for (const char *line = index; line && *line;) {
        const char *end = strchr(line, '\n');

        /* "<mode> <64 hex> <rel>\n" */
        if (end && (size_t)(end - line) == 4 + 65 + rel_len &&
            memcmp(line + 4 + 65, rel, rel_len) == 0)
            return atoi(line);
        line = end ? end + 1 : NULL;
    }
    return -1;
}

/* ==== 1. manifests ==================================================== */

static void load_ok(const char *dir, wx_manifest *m)
{
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx_manifest_load(dir, m, &err), &err);
}

static size_t count(char **v)
{
    size_t n = 0;

    assert_non_null(v);
    while (v[n])
        n++;
    return n;
}

static bool contains(char **v, const char *s)
{
    for (size_t i = 0; v && v[i]; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

static void test_manifest_native(void **state)
{
    fixture *fx = *state;
    wx_manifest m;

    manifest(fx->src,
             "{\"name\": \"sir\", \"runner\": \"native\", \"library\": "
             "\"lib/libsir.so\", \"env\": {\"OMP_NUM_THREADS\": \"1\", "
             "\"GREETING\": \"a b=c\", \"EMPTY\": \"\"},"
             " \"entrypoints\": [\"sir.model/baseline\", "
             "\"sir.model/high-r0\"],"
             " \"targets\": [\"targets.incidence:mse\", "
             "\"targets.incidence/poisson_nll\"],"
             " \"description\": \"an SIR model\", \"version\": \"1.2\"}");
    load_ok(fx->src, &m);
    assert_string_equal(m.name, "sir");
    assert_int_equal(m.runner, WX_RUNNER_NATIVE);
    assert_string_equal(m.library, "lib/libsir.so");
    assert_null(m.command);
    assert_false(m.modelops);
    assert_int_equal(count(m.env), 3);
    assert_true(contains(m.env, "OMP_NUM_THREADS=1"));
    assert_true(contains(m.env, "GREETING=a b=c"));
    assert_true(contains(m.env, "EMPTY="));
    assert_int_equal(count(m.entrypoints), 2);
    assert_string_equal(m.entrypoints[0], "sir.model/baseline");
    assert_string_equal(m.entrypoints[1], "sir.model/high-r0");
    assert_int_equal(count(m.targets), 2);
    assert_string_equal(m.targets[0], "targets.incidence:mse");
    assert_string_equal(m.targets[1], "targets.incidence/poisson_nll");
    wx_manifest_release(&m);
    assert_null(m.name);
    assert_null(m.env);
}

/* Without "runner" the runner is native; lists default to empty. */
static void test_manifest_defaults(void **state)
{
    fixture *fx = *state;
    wx_manifest m;

    manifest(fx->src, "{\"name\": \"x\", \"library\": \"libx.so\"}");
    load_ok(fx->src, &m);
    assert_int_equal(m.runner, WX_RUNNER_NATIVE);
    assert_string_equal(m.library, "libx.so");
    assert_int_equal(count(m.env), 0);
    assert_int_equal(count(m.entrypoints), 0);
    assert_int_equal(count(m.targets), 0);
    wx_manifest_release(&m);

    manifest(fx->src, "{\"library\": \"libx.so\", \"entrypoints\": [], "
                      "\"targets\": [], \"env\": {}}");
    load_ok(fx->src, &m);
    assert_int_equal(count(m.entrypoints), 0);
    assert_int_equal(count(m.targets), 0);
    assert_int_equal(count(m.env), 0);
    wx_manifest_release(&m);
}

/*
 * docs/bundles.md: "name: a name for people and listings (default: the
 * directory's name)".  The directory's name is "src", not its path.
 */
static void test_manifest_default_name_is_the_directory_name(void **state)
{
    fixture *fx = *state;
    wx_manifest m;

    manifest(fx->src, "{\"library\": \"libx.so\"}");
    load_ok(fx->src, &m);
    assert_string_equal(m.name, "src");
    wx_manifest_release(&m);
}

static void test_manifest_python(void **state)
{
    fixture *fx = *state;
    wx_manifest m;

    manifest(fx->src, "{\"name\": \"py\", \"runner\": \"python\", "
                      "\"wire\": \"model:simulate\", \"env\": "
                      "{\"PYTHONHASHSEED\": \"0\"}, \"entrypoints\": "
                      "[\"m.model/baseline\"]}");
    load_ok(fx->src, &m);
    assert_string_equal(m.name, "py");
    assert_int_equal(m.runner, WX_RUNNER_PYTHON);
    assert_null(m.library);
    assert_null(m.command);
    assert_false(m.modelops);
    assert_int_equal(count(m.env), 1);
    assert_string_equal(m.env[0], "PYTHONHASHSEED=0");
    assert_int_equal(count(m.entrypoints), 1);
    wx_manifest_release(&m);
}

static void test_manifest_command(void **state)
{
    fixture *fx = *state;
    wx_manifest m;

    manifest(fx->src,
             "{\"name\": \"cmd\", \"runner\": {\"command\": [\"/usr/bin/env\","
             " \"my-runner\", \"--bundle={bundle_path}\", \"\", "
             "\"{scratch}\"]}}");
    load_ok(fx->src, &m);
    assert_int_equal(m.runner, WX_RUNNER_COMMAND);
    assert_int_equal(count(m.command), 5);
    assert_string_equal(m.command[0], "/usr/bin/env");
    assert_string_equal(m.command[1], "my-runner");
    assert_string_equal(m.command[2], "--bundle={bundle_path}");
    assert_string_equal(m.command[3], "");
    assert_string_equal(m.command[4], "{scratch}");
    assert_null(m.library); /* not required: not native */
    wx_manifest_release(&m);
}

/* wx_manifest_load fails with `code` and a message containing `needle`. */
static void assert_manifest_fails(const fixture *fx, const char *json,
                                  int code, const char *needle)
{
    wx_error err = WX_ERROR_INIT;
    wx_manifest m;
    int rc;

    manifest(fx->src, json);
    rc = wx_manifest_load(fx->src, &m, &err);
    if (rc != code || !strstr(err.message, needle))
        fail_msg("manifest %s: expected %s with '%s', got %s: '%s'", json,
                 wx_err_name(code), needle, wx_err_name(rc), err.message);
    /* The message says which file. */
    if (!strstr(err.message, "warmexec.json"))
        fail_msg("manifest %s: message '%s' does not name warmexec.json",
                 json, err.message);
    /* The manifest is left empty: releasing it again is harmless. */
    assert_null(m.name);
    assert_null(m.env);
    wx_manifest_release(&m);
}

static void test_manifest_rejections(void **state)
{
    fixture *fx = *state;

    /* runner */
    assert_manifest_fails(fx, "{\"runner\": \"docker\"}", WX_EINVAL,
                          "runner: must be \"native\", \"python\" or");
    assert_manifest_fails(fx, "{\"runner\": null}", WX_EINVAL, "runner: ");
    assert_manifest_fails(fx, "{\"runner\": 7}", WX_EINVAL, "runner: ");
    assert_manifest_fails(fx, "{\"runner\": {\"command\": []}}", WX_EINVAL,
                          "runner: ");
    assert_manifest_fails(fx, "{\"runner\": {\"command\": \"run.sh\"}}",
                          WX_EINVAL, "runner: ");
    assert_manifest_fails(fx, "{\"runner\": {\"cmd\": [\"x\"]}}", WX_EINVAL,
                          "runner: ");
    assert_manifest_fails(fx,
                          "{\"runner\": {\"command\": [\"x\"], \"y\": 1}}",
                          WX_EINVAL, "runner: ");
    assert_manifest_fails(fx, "{\"runner\": {\"command\": [\"x\", 1]}}",
                          WX_EINVAL, "runner.command[1]: must be a string");
    /* library */
    assert_manifest_fails(fx, "{\"runner\": \"native\"}", WX_EINVAL,
                          "library: is required for the native runner");
    assert_manifest_fails(fx, "{\"name\": \"n\"}", WX_EINVAL,
                          "library: is required");
    assert_manifest_fails(fx, "{\"library\": \"/usr/lib/libm.so\"}",
                          WX_EINVAL,
                          "library: must be a relative path inside the "
                          "bundle, got '/usr/lib/libm.so'");
    assert_manifest_fails(fx, "{\"library\": \"../libm.so\"}", WX_EINVAL,
                          "library: must be a relative path inside the "
                          "bundle, got '../libm.so'");
    assert_manifest_fails(fx, "{\"library\": \"lib/../../libm.so\"}",
                          WX_EINVAL, "library: must be a relative path");
    assert_manifest_fails(fx, "{\"library\": \"lib/..\"}", WX_EINVAL,
                          "library: must be a relative path");
    assert_manifest_fails(fx, "{\"library\": \"\"}", WX_EINVAL,
                          "library: must be a relative path");
    assert_manifest_fails(fx, "{\"library\": 3}", WX_EINVAL, "library");
    /* env */
    assert_manifest_fails(fx, "{\"library\": \"l.so\", \"env\": {\"N\": 1}}",
                          WX_EINVAL, "env.N: must be a NAME");
    assert_manifest_fails(fx,
                          "{\"library\": \"l.so\", \"env\": {\"N\": null}}",
                          WX_EINVAL, "env.N: ");
    assert_manifest_fails(fx,
                          "{\"library\": \"l.so\", \"env\": {\"N\": [\"a\"]}}",
                          WX_EINVAL, "env.N: ");
    assert_manifest_fails(fx,
                          "{\"library\": \"l.so\", \"env\": {\"A=B\": \"x\"}}",
                          WX_EINVAL, "env.A=B: must be a NAME without '='");
    assert_manifest_fails(fx, "{\"library\": \"l.so\", \"env\": {\"\": \"x\"}}",
                          WX_EINVAL, "env.: must be a NAME");
    assert_manifest_fails(fx, "{\"library\": \"l.so\", \"env\": [\"A=1\"]}",
                          WX_EINVAL, "env");
    /* entrypoints and targets: the entrypoint grammar */
    assert_manifest_fails(fx,
                          "{\"library\": \"l.so\", \"entrypoints\": "
                          "[\"sir.model/baseline\", \"sir.model/Baseline\"]}",
                          WX_EINVAL,
                          "entrypoints[1]: Invalid scenario slug: Baseline");
    assert_manifest_fails(fx,
                          "{\"library\": \"l.so\", \"entrypoints\": "
                          "[\"nodots/baseline\"]}",
                          WX_EINVAL,
                          "entrypoints[0]: Invalid import_path format");
    assert_manifest_fails(fx,
                          "{\"library\": \"l.so\", \"entrypoints\": "
                          "[\"targets.incidence:mse\"]}",
                          WX_EINVAL, "entrypoints[0]: Invalid");
    assert_manifest_fails(fx,
                          "{\"library\": \"l.so\", \"entrypoints\": [42]}",
                          WX_EINVAL, "entrypoints[0]: must be a string");
    assert_manifest_fails(fx,
                          "{\"library\": \"l.so\", \"entrypoints\": "
                          "\"sir.model/baseline\"}",
                          WX_EINVAL, "entrypoints");
    assert_manifest_fails(fx,
                          "{\"library\": \"l.so\", \"targets\": "
                          "[\"targets.incidence:mse\", \"mse\"]}",
                          WX_EINVAL,
                          "targets[1]: Invalid entrypoint format");
    assert_manifest_fails(fx,
                          "{\"library\": \"l.so\", \"targets\": "
                          "[\"targets.incidence:__\"]}",
                          WX_EINVAL, "targets[0]: Invalid object name");
    /* other fields */
    assert_manifest_fails(fx, "{\"library\": \"l.so\", \"librar\": \"x\"}",
                          WX_EINVAL, "unknown field 'librar'");
    assert_manifest_fails(fx, "{\"library\": \"l.so\", \"name\": 1}",
                          WX_EINVAL, "name");
    assert_manifest_fails(fx, "{\"library\": \"l.so\", \"wire\": 1}",
                          WX_EINVAL, "wire");
    assert_manifest_fails(fx, "[\"library\", \"l.so\"]", WX_EINVAL,
                          "must be a JSON object");
    assert_manifest_fails(fx, "\"native\"", WX_EINVAL,
                          "must be a JSON object");
    assert_manifest_fails(fx, "{\"library\": \"l.so\",", WX_EINVAL, "JSON");
    assert_manifest_fails(fx, "", WX_EINVAL, "JSON");
}

/* A ModelOps bundle: no warmexec.json, but a wire. */
static void assert_modelops(const char *dir, const char *name)
{
    wx_manifest m;

    load_ok(dir, &m);
    assert_int_equal(m.runner, WX_RUNNER_PYTHON);
    assert_true(m.modelops);
    assert_string_equal(m.name, name);
    assert_null(m.library);
    assert_null(m.command);
    assert_int_equal(count(m.env), 0);
    assert_int_equal(count(m.entrypoints), 0);
    assert_int_equal(count(m.targets), 0);
    wx_manifest_release(&m);
}

static void test_manifest_modelops(void **state)
{
    fixture *fx = *state;
    wx_error err = WX_ERROR_INIT;
    wx_manifest m;

    write_text(P(fx->tmp, "wired/wire.py"),
               "def wire(e, p, s):\n  return {}\n");
    assert_modelops(P(fx->tmp, "wired"), "wired");
    write_text(P(fx->tmp, "mo/.modelops/manifest.json"),
               "{\"wire\": \"model:wire\"}");
    assert_modelops(P(fx->tmp, "mo"), "mo");
    write_text(P(fx->tmp, "toml/.modelops/modelops.toml"),
               "[modelops]\nwire = \"model:wire\"\n");
    assert_modelops(P(fx->tmp, "toml"), "toml");
    assert_modelops(WX_SIR_PYTHON_BUNDLE, "sir-python");

    /* warmexec.json wins over wire.py. */
    manifest(P(fx->tmp, "wired"), "{\"name\": \"w\", \"runner\": "
                                  "\"python\"}");
    load_ok(P(fx->tmp, "wired"), &m);
    assert_false(m.modelops);
    assert_string_equal(m.name, "w");
    wx_manifest_release(&m);

    /* Neither: not a bundle.  A wire.py that is a directory is no wire. */
    assert_fails(wx_manifest_load(fx->src, &m, &err), WX_ENOTFOUND, &err,
                 "is not a bundle");
    assert_non_null(strstr(err.message, fx->src));
    make_dirs(P(fx->src, "wire.py"));
    assert_fails(wx_manifest_load(fx->src, &m, &err), WX_ENOTFOUND, &err,
                 "is not a bundle");
    assert_fails(wx_manifest_load(P(fx->tmp, "nope"), &m, &err),
                 WX_ENOTFOUND, &err, "nope");
}

/* ==== 2. the digest =================================================== */

/* The documented rule on a tree whose index is written by hand. */
static void test_digest_matches_hand_written_index(void **state)
{
    static const struct {
        const char *rel, *content;
        mode_t mode;
    } files[] = {
        /* in the expected index order: by path bytes, not per directory */
        {"B", "5", 0644},
        {"a-b", "1", 0644},
        {"a.b", "2", 0600},
        {"a/b", "3", 0644},
        {"a/c/d/e.txt", "7\nseven\n", 0444},
        {"a0", "4", 0700},
        {"empty", "", 0644},
        {"x", "o+x only", 0641},
        {"\xc3\xa9t\xc3\xa9", "6", 0755},
    };
    static const int modes[] = {644, 644, 644, 644, 644, 755, 644, 755, 755};
    fixture *fx = *state;
    char digest[WX_DIGEST_LEN + 1], hex[65];
    wx_buf index = WX_BUF_INIT(1u << 20);
    wx_error err = WX_ERROR_INIT;
    char expected[4096] = "";
    size_t used = 0;

    /* created in another order than the index order */
    for (size_t i = ARRAY_LEN(files); i-- > 0;)
        write_bytes(P(fx->src, files[i].rel), files[i].content,
                    strlen(files[i].content), files[i].mode);
    for (size_t i = 0; i < ARRAY_LEN(files); i++) {
        char fhex[65];

        sha256_hex_of(files[i].content, strlen(files[i].content), fhex);
        used += (size_t)snprintf(expected + used, sizeof(expected) - used,
                                 "%d %s %s\n", modes[i], fhex, files[i].rel);
    }
    assert_ok(wx_bundle_digest(fx->src, digest, &index, &err), &err);
    assert_int_equal(index.len, used);
    assert_memory_equal(index.data, expected, used);
    sha256_hex_of(expected, used, hex);
    assert_memory_equal(digest, "sha256:", 7);
    assert_string_equal(digest + 7, hex);
    /* The index is appended to what the buffer already holds. */
    wx_buf_release(&index);
    assert_ok(wx_buf_append(&index, "head\n", 5, &err), &err);
    assert_ok(wx_bundle_digest(fx->src, digest, &index, &err), &err);
    assert_int_equal(index.len, 5 + used);
    assert_memory_equal(index.data + 5, expected, used);
    wx_buf_release(&index);
    assert_digest_matches_reference(fx->src);
}

/* The empty tree: the SHA-256 of an empty index. */
static void test_digest_empty_bundle(void **state)
{
    fixture *fx = *state;
    char digest[WX_DIGEST_LEN + 1];
    wx_buf index = WX_BUF_INIT(1u << 20);
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx_bundle_digest(fx->src, digest, &index, &err), &err);
    assert_string_equal(digest, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae"
                                "41e4649b934ca495991b7852b855");
    assert_int_equal(index.len, 0);
    wx_buf_release(&index);
    /* Empty directories are not files: still the empty index. */
    make_dirs(P(fx->src, "a/b/c"));
    digest_ok(fx->src, digest);
    assert_string_equal(digest + 7, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4"
                                    "649b934ca495991b7852b855");
}

/* The example bundles, against the reference walk. */
static void test_digest_of_example_bundles(void **state)
{
    char a[WX_DIGEST_LEN + 1], b[WX_DIGEST_LEN + 1];

    assert_digest_matches_reference(WX_SIR_BUNDLE);
    assert_digest_matches_reference(WX_SIR_PYTHON_BUNDLE);
    assert_digest_matches_reference(WX_NATIVE_BUNDLE);
    digest_ok(WX_SIR_BUNDLE, a);
    digest_ok(WX_SIR_PYTHON_BUNDLE, b);
    assert_string_not_equal(a, b);
}

/* Nested directories, several levels deep, with files at every level. */
static void test_digest_nested_directories(void **state)
{
    fixture *fx = *state;
    char path[PATH_MAX] = "", digest[WX_DIGEST_LEN + 1];
    wx_buf index = WX_BUF_INIT(1u << 20);
    wx_error err = WX_ERROR_INIT;

    for (int depth = 0; depth < 20; depth++) {
        char rel[PATH_MAX + 32];

        snprintf(rel, sizeof(rel), "%sf%d.txt", path, depth);
        write_text(P(fx->src, rel), rel);
        snprintf(path + strlen(path), sizeof(path) - strlen(path), "d%d/",
                 depth);
    }
    assert_ok(wx_bundle_digest(fx->src, digest, &index, &err), &err);
    assert_non_null(strstr(index.data, " d0/d1/d2/f3.txt\n"));
    assert_non_null(strstr(index.data, " d0/d1/d2/d3/d4/d5/d6/d7/d8/d9/d10/"
                                       "d11/d12/d13/d14/d15/d16/d17/d18/"
                                       "f19.txt\n"));
    wx_buf_release(&index);
    assert_digest_matches_reference(fx->src);
}

static void test_digest_changes_with_content_name_and_exec_bit(void **state)
{
    fixture *fx = *state;
    char d0[WX_DIGEST_LEN + 1], d[WX_DIGEST_LEN + 1];
    const char *file = P(fx->src, "data/obs.csv");
    struct timespec times[2] = {{1000000000, 0}, {1000000000, 0}};
    wx_buf index = WX_BUF_INIT(1u << 20);
    wx_error err = WX_ERROR_INIT;
    char renamed[PATH_MAX];

    write_text(P(fx->src, "model.c"), "int x;\n");
    write_text(file, "day,n\n0,1\n");
    digest_ok(fx->src, d0);

    /* mtime, atime and permission bits other than x: no change */
    assert_int_equal(utimensat(AT_FDCWD, file, times, 0), 0);
    assert_int_equal(chmod(file, 0600), 0);
    digest_ok(fx->src, d);
    assert_string_equal(d, d0);
    assert_int_equal(chmod(file, 0644), 0);

    /* one byte of content */
    write_text(file, "day,n\n0,2\n");
    digest_ok(fx->src, d);
    assert_string_not_equal(d, d0);
    write_text(file, "day,n\n0,1\n");
    digest_ok(fx->src, d);
    assert_string_equal(d, d0);

    /* a name */
    snprintf(renamed, sizeof(renamed), "%s", P(fx->src, "data/obs2.csv"));
    assert_int_equal(rename(file, renamed), 0);
    digest_ok(fx->src, d);
    assert_string_not_equal(d, d0);
    assert_int_equal(rename(renamed, file), 0);
    digest_ok(fx->src, d);
    assert_string_equal(d, d0);

    /* a directory's name */
    assert_int_equal(rename(P(fx->src, "data"), P(fx->src, "Data")), 0);
    digest_ok(fx->src, d);
    assert_string_not_equal(d, d0);
    assert_int_equal(rename(P(fx->src, "Data"), P(fx->src, "data")), 0);

    /* any execute bit: mode 755 in the index */
    assert_int_equal(chmod(file, 0654), 0);
    assert_ok(wx_bundle_digest(fx->src, d, &index, &err), &err);
    assert_string_not_equal(d, d0);
    assert_int_equal(index_mode(index.data, "data/obs.csv"), 755);
    assert_int_equal(index_mode(index.data, "model.c"), 644);
    wx_buf_release(&index);
    assert_int_equal(chmod(file, 0744), 0);
    digest_ok(fx->src, d0 /* reuse */);
    assert_string_equal(d0, d); /* 0654 and 0744 are both 755 */
    assert_digest_matches_reference(fx->src);
}

/* The directory's own name and location do not count. */
static void test_digest_ignores_directory_name(void **state)
{
    fixture *fx = *state;
    char a[WX_DIGEST_LEN + 1], b[WX_DIGEST_LEN + 1];

    write_text(P(fx->src, "f"), "same");
    write_text(P(fx->tmp, "elsewhere/deeper/f"), "same");
    digest_ok(fx->src, a);
    digest_ok(P(fx->tmp, "elsewhere/deeper"), b);
    assert_string_equal(a, b);
}

static void test_digest_skips_git_directories(void **state)
{
    fixture *fx = *state;
    char d0[WX_DIGEST_LEN + 1], d[WX_DIGEST_LEN + 1];

    write_text(P(fx->src, "model.py"), "x = 1\n");
    write_text(P(fx->src, "sub/data.csv"), "a\n");
    digest_ok(fx->src, d0);
    write_text(P(fx->src, ".git/HEAD"), "ref: refs/heads/main\n");
    write_text(P(fx->src, ".git/objects/ab/cdef"), "blob");
    write_text(P(fx->src, "sub/.git/config"), "[core]\n");
    /* a special file inside .git is not even looked at */
    assert_int_equal(mkfifo(P(fx->src, ".git/fifo"), 0600), 0);
    assert_int_equal(symlink("/etc/passwd", P(fx->src, "sub/.git/link")), 0);
    digest_ok(fx->src, d);
    assert_string_equal(d, d0);
    assert_int_equal(unlink(P(fx->src, ".git/fifo")), 0);
    assert_int_equal(unlink(P(fx->src, "sub/.git/link")), 0);
    assert_digest_matches_reference(fx->src);

    /* A *file* named .git (a submodule's gitfile) is part of the bundle. */
    write_text(P(fx->src, "sub/mod/.git"), "gitdir: ../../.git/modules/m\n");
    digest_ok(fx->src, d);
    assert_string_not_equal(d, d0);
    assert_digest_matches_reference(fx->src);
}

static void test_digest_warmexecignore(void **state)
{
    static const char *const kept[] = {
        "#keep.txt", ".warmexecignore", "gen/a.txt", "keep.c",
        "other/build", "sub/gen/b.tmp", "top.tmp", "x.o.txt", NULL};
    static const char *const skipped[] = {
        "x.o", "sub/deep/y.o", "build/out.bin", "sub/build/z.bin",
        "gen/a.tmp", "run.log", "cache/c/d", NULL};
    fixture *fx = *state;
    char d0[WX_DIGEST_LEN + 1], d[WX_DIGEST_LEN + 1];
    wx_buf index = WX_BUF_INIT(1u << 20);
    wx_error err = WX_ERROR_INIT;
    size_t lines = 0;

    write_text(P(fx->src, ".warmexecignore"),
               "# build droppings\n"
               "*.o\n"
               "\n"
               "build/\n"
               "gen/*.tmp\n"
               "#keep.txt\n"
               "*.log\r\n"
               "cache/\n");
    for (size_t i = 0; kept[i]; i++)
        if (strcmp(kept[i], ".warmexecignore") != 0)
            write_text(P(fx->src, kept[i]), kept[i]);
    digest_ok(fx->src, d0);
    for (size_t i = 0; skipped[i]; i++)
        write_text(P(fx->src, skipped[i]), skipped[i]);
    /* Ignored directories are not walked: what they hold does not matter. */
    assert_int_equal(mkfifo(P(fx->src, "build/fifo"), 0600), 0);
    assert_int_equal(symlink("..", P(fx->src, "cache/up")), 0);

    assert_ok(wx_bundle_digest(fx->src, d, &index, &err), &err);
    assert_string_equal(d, d0);
    for (size_t i = 0; kept[i]; i++) {
        char line_end[PATH_MAX];

        snprintf(line_end, sizeof(line_end), " %s\n", kept[i]);
        if (!strstr(index.data, line_end))
            fail_msg("%s missing from the index:\n%s", kept[i], index.data);
    }
    for (size_t i = 0; i < index.len; i++)
        lines += index.data[i] == '\n';
    assert_int_equal(lines, ARRAY_LEN(kept) - 1);
    wx_buf_release(&index);

    /* The ignore file itself is hashed: a new pattern changes the digest. */
    write_text(P(fx->src, ".warmexecignore"),
               "# build droppings\n*.o\n\nbuild/\ngen/*.tmp\n#keep.txt\n"
               "*.log\r\ncache/\n*.txt\n");
    digest_ok(fx->src, d);
    assert_string_not_equal(d, d0);
    assert_int_equal(unlink(P(fx->src, "build/fifo")), 0);
    assert_int_equal(unlink(P(fx->src, "cache/up")), 0);
    assert_digest_matches_reference(fx->src);
}

/* A trailing '/' matches directories only; without it, files too. */
static void test_digest_warmexecignore_directory_patterns(void **state)
{
    fixture *fx = *state;
    char d0[WX_DIGEST_LEN + 1], d[WX_DIGEST_LEN + 1];
    wx_buf index = WX_BUF_INIT(1u << 20);
    wx_error err = WX_ERROR_INIT;

    write_text(P(fx->src, ".warmexecignore"), "out/\nsub/tmp/\n");
    write_text(P(fx->src, "a/out"), "a file named out");
    write_text(P(fx->src, "tmp"), "top-level tmp file");
    digest_ok(fx->src, d0);
    write_text(P(fx->src, "out/x"), "1");
    write_text(P(fx->src, "a/b/out/y"), "2");
    write_text(P(fx->src, "sub/tmp/z"), "3");
    assert_ok(wx_bundle_digest(fx->src, d, &index, &err), &err);
    assert_string_equal(d, d0);
    assert_non_null(strstr(index.data, " a/out\n"));
    assert_non_null(strstr(index.data, " tmp\n"));
    wx_buf_release(&index);
    assert_digest_matches_reference(fx->src);

    /* sub/tmp/ matches the whole path only: x/sub/tmp stays */
    write_text(P(fx->src, "x/sub/tmp/w"), "4");
    digest_ok(fx->src, d);
    assert_string_not_equal(d, d0);
    assert_digest_matches_reference(fx->src);
}

/*
 * The documented Python rule matches a pattern with a '/' with
 * fnmatch.fnmatchcase, where a star also matches '/': the pattern
 * docs/STAR.html skips docs/api/index.html.  The reference here follows
 * that rule.
 */
static void test_digest_path_glob_star_crosses_slash_as_documented(
    void **state)
{
    fixture *fx = *state;

    write_text(P(fx->src, ".warmexecignore"), "docs/*.html\n");
    write_text(P(fx->src, "docs/index.html"), "top");
    write_text(P(fx->src, "docs/api/index.html"), "nested");
    write_text(P(fx->src, "docs/readme.md"), "kept");
    assert_digest_matches_reference(fx->src);
}

static void test_digest_refuses_symlinks(void **state)
{
    fixture *fx = *state;
    char digest[WX_DIGEST_LEN + 1];
    wx_error err = WX_ERROR_INIT;

    write_text(P(fx->src, "model.c"), "x");
    write_text(P(fx->src, ".warmexecignore"), "*.o\n");

    assert_int_equal(symlink("model.c", P(fx->src, "alias.c")), 0);
    assert_fails(wx_bundle_digest(fx->src, digest, NULL, &err), WX_EINVAL,
                 &err, "bundles may not contain symlinks: alias.c");
    assert_int_equal(unlink(P(fx->src, "alias.c")), 0);

    /* deep, dangling, to a directory, and even when a pattern matches */
    write_text(P(fx->src, "a/b/c/keep"), "k");
    assert_int_equal(symlink("/nonexistent", P(fx->src, "a/b/c/dangling")),
                     0);
    assert_fails(wx_bundle_digest(fx->src, digest, NULL, &err), WX_EINVAL,
                 &err, "symlinks: a/b/c/dangling");
    assert_int_equal(unlink(P(fx->src, "a/b/c/dangling")), 0);
    assert_int_equal(symlink("/etc", P(fx->src, "a/etc")), 0);
    assert_fails(wx_bundle_digest(fx->src, digest, NULL, &err), WX_EINVAL,
                 &err, "symlinks: a/etc");
    assert_int_equal(unlink(P(fx->src, "a/etc")), 0);
    assert_int_equal(symlink("model.c", P(fx->src, "a/model.o")), 0);
    assert_fails(wx_bundle_digest(fx->src, digest, NULL, &err), WX_EINVAL,
                 &err, "symlinks: a/model.o");
    assert_int_equal(unlink(P(fx->src, "a/model.o")), 0);
    digest_ok(fx->src, digest);
}

static void test_digest_refuses_special_files(void **state)
{
    fixture *fx = *state;
    char digest[WX_DIGEST_LEN + 1];
    wx_error err = WX_ERROR_INIT;

    write_text(P(fx->src, "model.c"), "x");
    make_dirs(P(fx->src, "data"));
    assert_int_equal(mkfifo(P(fx->src, "data/pipe"), 0600), 0);
    /* refused, not blocked on (opening a FIFO would hang) */
    assert_fails(wx_bundle_digest(fx->src, digest, NULL, &err), WX_EINVAL,
                 &err, "bundles may only contain regular files: data/pipe");
    assert_int_equal(unlink(P(fx->src, "data/pipe")), 0);
    digest_ok(fx->src, digest);
}

static void test_digest_refuses_newline_in_names(void **state)
{
    fixture *fx = *state;
    char digest[WX_DIGEST_LEN + 1];
    wx_error err = WX_ERROR_INIT;

    write_text(P(fx->src, "ok"), "x");
    write_text(P(fx->src, "two\nlines"), "forged index line?");
    assert_fails(wx_bundle_digest(fx->src, digest, NULL, &err), WX_EINVAL,
                 &err, "file name with a newline in the bundle: two\nlines");
    assert_int_equal(unlink(P(fx->src, "two\nlines")), 0);
    write_text(P(fx->src, "dir\n/f"), "x");
    assert_fails(wx_bundle_digest(fx->src, digest, NULL, &err), WX_EINVAL,
                 &err, "newline");
    tu_rmtree(P(fx->src, "dir\n"));
    digest_ok(fx->src, digest);
}

static void test_digest_missing_directory(void **state)
{
    fixture *fx = *state;
    char digest[WX_DIGEST_LEN + 1];
    wx_error err = WX_ERROR_INIT;

    assert_fails(wx_bundle_digest(P(fx->tmp, "nope"), digest, NULL, &err),
                 WX_ENOTFOUND, &err, "nope");
}

/* ==== 3. the store ==================================================== */

static wx_bundles *open_store(const fixture *fx)
{
    wx_error err = WX_ERROR_INIT;
    wx_bundles *b = NULL;

    assert_ok(wx_bundles_open(fx->home, &b, &err), &err);
    assert_non_null(b);
    return b;
}

static void add_ok(wx_bundles *b, const char *dir, char ref[WX_DIGEST_LEN + 1])
{
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx_bundles_add(b, dir, ref, &err), &err);
}

/* home/bundles/sha256/<hex> of a ref. */
static const char *stored_path(const fixture *fx, const char *ref)
{
    static char path[PATH_MAX];

    if ((size_t)snprintf(path, sizeof(path), "%s/bundles/sha256/%.64s",
                         fx->home, strchr(ref, ':') + 1) >= sizeof(path))
        fail_msg("path too long");
    return path;
}

static void assert_mode(const char *path, mode_t mode)
{
    struct stat st;

    assert_int_equal(lstat(path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    if ((st.st_mode & 07777) != mode)
        fail_msg("%s has mode %o, expected %o", path,
                 (unsigned)(st.st_mode & 07777), (unsigned)mode);
}

static void assert_same_file(const char *a, const char *b)
{
    size_t na, nb;
    char *x = read_all(a, &na), *y = read_all(b, &nb);

    assert_int_equal(na, nb);
    assert_memory_equal(x, y, na);
    free(x);
    free(y);
}

/* A small bundle with a command runner (not run here). */
static void small_bundle(const char *dir, const char *salt)
{
    char text[256];

    snprintf(text, sizeof(text),
             "{\"name\": \"small-%s\", \"runner\": {\"command\": "
             "[\"true\"]}}",
             salt);
    manifest(dir, text);
    write_bytes(P(dir, "run.sh"), "#!/bin/sh\n", 10, 0755);
    write_text(P(dir, "data/values.csv"), salt);
}

static void test_add_copies_read_only(void **state)
{
    fixture *fx = *state;
    wx_bundles *b = open_store(fx);
    char ref[WX_DIGEST_LEN + 1], digest[WX_DIGEST_LEN + 1];
    char stored[PATH_MAX];

    small_bundle(fx->src, "a");
    write_text(P(fx->src, ".warmexecignore"), "*.o\n");
    write_text(P(fx->src, "data/droppings.o"), "ignored");
    write_text(P(fx->src, ".git/HEAD"), "ignored");
    write_bytes(P(fx->src, "bin/tool"), "ELF", 3, 0700);
    digest_ok(fx->src, digest);
    add_ok(b, fx->src, ref);
    assert_string_equal(ref, digest);

    memcpy(stored, stored_path(fx, ref), strlen(stored_path(fx, ref)) + 1);
    /* warmexec.json, .warmexecignore, run.sh, data/, bin/ (no .git) */
    assert_int_equal(tu_count_in_dir(stored, false), 5);
    assert_mode(P(stored, "warmexec.json"), 0444);
    assert_mode(P(stored, ".warmexecignore"), 0444);
    assert_mode(P(stored, "data/values.csv"), 0444);
    assert_mode(P(stored, "run.sh"), 0555);
    assert_mode(P(stored, "bin/tool"), 0555);
    assert_same_file(P(stored, "data/values.csv"),
                     P(fx->src, "data/values.csv"));
    assert_same_file(P(stored, "bin/tool"), P(fx->src, "bin/tool"));
    assert_int_equal(access(P(stored, "data/droppings.o"), F_OK), -1);
    assert_int_equal(access(P(stored, ".git"), F_OK), -1);
    assert_int_equal(tu_count_in_dir(P(stored, "data"), false), 1);
    /* The copy hashes to its name, and nothing is left in tmp. */
    digest_ok(stored, digest);
    assert_string_equal(digest, ref);
    assert_int_equal(tu_count_in_dir(P(fx->home, "bundles/tmp"), false), 0);
    assert_int_equal(tu_count_in_dir(P(fx->home, "bundles/sha256"), false), 1);
    wx_bundles_close(b);
}

/* An empty directory has a digest but is not a bundle: nothing runs it. */
static void test_add_empty_bundle(void **state)
{
    fixture *fx = *state;
    wx_bundles *b = open_store(fx);
    char ref[WX_DIGEST_LEN + 1];
    wx_error err = WX_ERROR_INIT;

    assert_fails(wx_bundles_add(b, fx->src, ref, &err), WX_ENOTFOUND, &err,
                 "is not a bundle");
    assert_int_equal(
        tu_count_in_dir(tu_path(fx->home, "bundles/sha256"), false), 0);
    wx_bundles_close(b);
}

static void test_add_twice_is_a_no_op(void **state)
{
    fixture *fx = *state;
    wx_bundles *b = open_store(fx), *b2;
    char ref[WX_DIGEST_LEN + 1], ref2[WX_DIGEST_LEN + 1];
    struct stat st1, st2;

    small_bundle(fx->src, "twice");
    add_ok(b, fx->src, ref);
    assert_int_equal(stat(P(stored_path(fx, ref), "run.sh"), &st1), 0);
    add_ok(b, fx->src, ref2);
    assert_string_equal(ref, ref2);
    b2 = open_store(fx); /* another handle, same store */
    add_ok(b2, fx->src, ref2);
    assert_string_equal(ref, ref2);
    /* the stored file was not copied again */
    assert_int_equal(stat(P(stored_path(fx, ref), "run.sh"), &st2), 0);
    assert_int_equal(st1.st_ino, st2.st_ino);
    assert_int_equal(tu_count_in_dir(P(fx->home, "bundles/sha256"), false), 1);
    assert_int_equal(tu_count_in_dir(P(fx->home, "bundles/tmp"), false), 0);
    /* Another directory with the same files is the same bundle. */
    small_bundle(P(fx->tmp, "copy"), "twice");
    add_ok(b2, P(fx->tmp, "copy"), ref2);
    assert_string_equal(ref, ref2);
    assert_int_equal(tu_count_in_dir(P(fx->home, "bundles/sha256"), false), 1);
    wx_bundles_close(b2);
    wx_bundles_close(b);
}

static void test_add_refuses_what_digest_refuses(void **state)
{
    fixture *fx = *state;
    wx_bundles *b = open_store(fx);
    char ref[WX_DIGEST_LEN + 1];
    wx_error err = WX_ERROR_INIT;

    small_bundle(fx->src, "s");
    assert_int_equal(symlink("/etc/passwd", P(fx->src, "data/passwd")), 0);
    assert_fails(wx_bundles_add(b, fx->src, ref, &err), WX_EINVAL, &err,
                 "symlinks: data/passwd");
    assert_int_equal(tu_count_in_dir(P(fx->home, "bundles/sha256"), false), 0);
    assert_int_equal(tu_count_in_dir(P(fx->home, "bundles/tmp"), false), 0);
    assert_fails(wx_bundles_add(b, P(fx->tmp, "nope"), ref, &err),
                 WX_ENOTFOUND, &err, "nope");
    wx_bundles_close(b);
}

/* Add `dir` in `n` processes released at once; all must succeed. */
static void add_in_processes(const fixture *fx, const char *dir, int n)
{
    pid_t pids[16];
    int go[2];

    assert_true(n <= 16);
    assert_int_equal(pipe(go), 0);
    for (int i = 0; i < n; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            wx_error err = WX_ERROR_INIT;
            char ref[WX_DIGEST_LEN + 1], byte;
            wx_bundles *b = NULL;
            int rc;

            close(go[1]);
            rc = wx_bundles_open(fx->home, &b, &err);
            (void)!read(go[0], &byte, 1); /* EOF: everyone starts */
            if (!rc)
                rc = wx_bundles_add(b, dir, ref, &err);
            if (rc)
                fprintf(stderr, "child %d: %s\n", i, err.message);
            wx_bundles_close(b);
            _exit(rc ? 1 : 0);
        }
    }
    close(go[0]);
    close(go[1]);
    assert_int_equal(tu_wait_all(pids, n), 0);
}

static void test_add_from_concurrent_processes(void **state)
{
    fixture *fx = *state;
    wx_error err = WX_ERROR_INIT;
    wx_bundles *b;

    for (int round = 0; round < 3; round++) {
        char dir[PATH_MAX], name[64], ref[WX_DIGEST_LEN + 1];
        char *big = malloc(1 << 20);

        snprintf(name, sizeof(name), "race%d", round);
        snprintf(dir, sizeof(dir), "%s", P(fx->tmp, name));
        small_bundle(dir, name);
        for (int i = 0; i < 40; i++) {
            char rel[64];

            snprintf(rel, sizeof(rel), "files/f%02d", i);
            write_text(P(dir, rel), rel);
        }
        assert_non_null(big);
        memset(big, 'a' + round, 1 << 20);
        write_bytes(P(dir, "big.bin"), big, 1 << 20, 0644);
        free(big);

        add_in_processes(fx, dir, 6);
        assert_int_equal(tu_count_in_dir(P(fx->home, "bundles/sha256"), false),
                         (size_t)round + 1);
        assert_int_equal(tu_count_in_dir(P(fx->home, "bundles/tmp"), false), 0);
        b = open_store(fx);
        digest_ok(dir, ref);
        assert_ok(wx_bundles_verify(b, ref, &err), &err);
        assert_int_equal(tu_count_in_dir(P(stored_path(fx, ref), "files"),
                         false),
                         40);
        wx_bundles_close(b);
    }
}

static void test_ensure_local_accepts_refs(void **state)
{
    fixture *fx = *state;
    wx_bundles *b = open_store(fx);
    char ref[WX_DIGEST_LEN + 1], digest[WX_DIGEST_LEN + 1], full[512];
    char path[PATH_MAX];
    wx_error err = WX_ERROR_INIT;
    const char *const repos[] = {"", "repo@", "host:5000/team/repo@",
                                 "registry.example.com/a_b/c-d.e@", NULL};

    small_bundle(fx->src, "refs");
    add_ok(b, fx->src, ref);
    for (size_t i = 0; repos[i]; i++) {
        snprintf(full, sizeof(full), "%s%s", repos[i], ref);
        memset(digest, 'x', sizeof(digest));
        memset(path, 'x', sizeof(path));
        assert_ok(wx_bundles_ensure_local(b, full, digest, path, &err), &err);
        assert_string_equal(digest, ref);
        assert_string_equal(path, stored_path(fx, ref));
        assert_ok(wx_bundles_verify(b, full, &err), &err);
    }
    wx_bundles_close(b);
}

static void test_ensure_local_refuses_malformed_refs(void **state)
{
    fixture *fx = *state;
    wx_bundles *b = open_store(fx);
    char ref[WX_DIGEST_LEN + 1], digest[WX_DIGEST_LEN + 1];
    char path[PATH_MAX], hex[65], bad[16][256];
    wx_error err = WX_ERROR_INIT;
    size_t n = 0;

    small_bundle(fx->src, "bad");
    add_ok(b, fx->src, ref); /* so that a ref near a real one is refused */
    memcpy(hex, ref + 7, 65);
    snprintf(bad[n++], 256, "sha256:../../etc");
    snprintf(bad[n++], 256, "sha256:%.63s", hex);
    snprintf(bad[n++], 256, "sha256:%s0", hex);
    snprintf(bad[n++], 256, "sha256:%s", hex);
    for (char *c = bad[n - 1] + 7; *c; c++)
        *c = (char)(*c >= 'a' && *c <= 'f' ? *c - 'a' + 'A' : *c);
    snprintf(bad[n++], 256, "sha256:%s/x", hex);
    snprintf(bad[n++], 256, "sha256:%s/", hex);
    snprintf(bad[n++], 256, "../x@sha256:%s", hex);
    snprintf(bad[n++], 256, "/abs@sha256:%s", hex);
    snprintf(bad[n++], 256, "@sha256:%s", hex);
    snprintf(bad[n++], 256, "%s", "");
    snprintf(bad[n++], 256, "%s", hex);
    snprintf(bad[n++], 256, "sha512:%s", hex);
    snprintf(bad[n++], 256, "sha256:");
    snprintf(bad[n++], 256, "sha256:%.32s../%.29s", hex, hex);
    for (size_t i = 0; i < n; i++) {
        int rc = wx_bundles_ensure_local(b, bad[i], digest, path, &err);

        if (rc != WX_EINVAL)
            fail_msg("ref '%s': expected WX_EINVAL, got %s (%s)", bad[i],
                     wx_err_name(rc), err.message);
        assert_non_null(strstr(err.message, "bundle_ref"));
        rc = wx_bundles_verify(b, bad[i], &err);
        if (rc != WX_EINVAL)
            fail_msg("verify '%s': expected WX_EINVAL, got %s", bad[i],
                     wx_err_name(rc));
    }
    wx_bundles_close(b);
}

static void test_ensure_local_unknown_digest(void **state)
{
    fixture *fx = *state;
    wx_bundles *b = open_store(fx);
    char digest[WX_DIGEST_LEN + 1], path[PATH_MAX];
    wx_error err = WX_ERROR_INIT;

    assert_fails(wx_bundles_ensure_local(b, "sha256:" HEX0, digest, path,
                                         &err),
                 WX_ENOTFOUND, &err, "sha256:" HEX0 " is not in the store");
    assert_fails(wx_bundles_ensure_local(b, "repo@sha256:" HEX0, digest, path,
                                         &err),
                 WX_ENOTFOUND, &err, HEX0);
    assert_fails(wx_bundles_verify(b, "sha256:" HEX0, &err), WX_ENOTFOUND,
                 &err, HEX0);
    /* A plain file where the bundle should be is not a bundle. */
    write_text(P(fx->home, "bundles/sha256/" HEX0), "");
    assert_fails(wx_bundles_ensure_local(b, "sha256:" HEX0, digest, path,
                                         &err),
                 WX_ENOTFOUND, &err, HEX0);
    wx_bundles_close(b);
}

typedef void (*tamper_fn)(const char *stored);

static void tamper_byte(const char *stored)
{
    const char *file = P(stored, "data/values.csv");
    FILE *f;

    assert_int_equal(chmod(file, 0644), 0);
    f = fopen(file, "r+b");
    assert_non_null(f);
    assert_int_equal(fputc('Z', f), 'Z');
    fclose(f);
    assert_int_equal(chmod(file, 0444), 0); /* looks untouched */
}

static void tamper_extra_file(const char *stored)
{
    write_text(P(stored, "data/extra.csv"), "planted");
}

static void tamper_delete_file(const char *stored)
{
    assert_int_equal(unlink(P(stored, "data/values.csv")), 0);
}

static void tamper_exec_bit(const char *stored)
{
    assert_int_equal(chmod(P(stored, "warmexec.json"), 0555), 0);
}

static void tamper_symlink(const char *stored)
{
    assert_int_equal(unlink(P(stored, "data/values.csv")), 0);
    assert_int_equal(symlink("/etc/hostname", P(stored, "data/values.csv")),
                     0);
}

/*
 * Tamper with a stored bundle: wx_bundles_verify and a fresh handle's
 * ensure_local say WX_ECORRUPT; a handle that verified the bundle before
 * trusts it (it does not re-hash on every use).
 */
static void tamper_session(const fixture *fx, tamper_fn tamper)
{
    wx_bundles *warm = open_store(fx), *fresh;
    char ref[WX_DIGEST_LEN + 1], digest[WX_DIGEST_LEN + 1];
    char path[PATH_MAX], stored[PATH_MAX];
    wx_error err = WX_ERROR_INIT;

    small_bundle(fx->src, "tamper");
    add_ok(warm, fx->src, ref);
    assert_ok(wx_bundles_ensure_local(warm, ref, digest, path, &err), &err);
    snprintf(stored, sizeof(stored), "%s", path);
    tamper(stored);

    assert_fails(wx_bundles_verify(warm, ref, &err), WX_ECORRUPT, &err,
                 "is corrupt");
    assert_non_null(strstr(err.message, ref));
    fresh = open_store(fx);
    assert_fails(wx_bundles_ensure_local(fresh, ref, digest, path, &err),
                 WX_ECORRUPT, &err, "is corrupt");
    /* still refused on the next call: a failure is not remembered */
    {
        char repo_ref[128];

        snprintf(repo_ref, sizeof(repo_ref), "repo@%s", ref);
        assert_fails(wx_bundles_ensure_local(fresh, repo_ref, digest, path,
                                             &err),
                     WX_ECORRUPT, &err, "is corrupt");
    }
    wx_bundles_close(fresh);
    /* The warm handle hashed it already: it trusts its first check. */
    assert_ok(wx_bundles_ensure_local(warm, ref, digest, path, &err), &err);
    assert_string_equal(digest, ref);
    wx_bundles_close(warm);
}

static void
test_corrupt_byte_but_handle_that_verified_it_does_not_rehash(void **state)
{
    tamper_session(*state, tamper_byte);
}

static void
test_corrupt_extra_file_but_handle_that_verified_it_does_not_rehash(void **state)
{
    tamper_session(*state, tamper_extra_file);
}

static void
test_corrupt_deleted_file_but_handle_that_verified_it_does_not_rehash(void **state)
{
    tamper_session(*state, tamper_delete_file);
}

static void
test_corrupt_exec_bit_but_handle_that_verified_it_does_not_rehash(void **state)
{
    tamper_session(*state, tamper_exec_bit);
}

static void
test_corrupt_symlink_but_handle_that_verified_it_does_not_rehash(void **state)
{
    tamper_session(*state, tamper_symlink);
}

/* Adding a bundle does not count as verifying it: damage before the first
 * use of the handle is caught. */
static void test_add_does_not_count_as_a_verification(void **state)
{
    fixture *fx = *state;
    wx_bundles *b = open_store(fx);
    char ref[WX_DIGEST_LEN + 1], digest[WX_DIGEST_LEN + 1], path[PATH_MAX];
    wx_error err = WX_ERROR_INIT;

    small_bundle(fx->src, "once");
    add_ok(b, fx->src, ref);
    /* adding does not count as verifying: damage before the first use */
    tamper_byte(stored_path(fx, ref));
    assert_fails(wx_bundles_ensure_local(b, ref, digest, path, &err),
                 WX_ECORRUPT, &err, "is corrupt");
    wx_bundles_close(b);
}

typedef struct seen {
    char digests[8][WX_DIGEST_LEN + 1];
    char paths[8][PATH_MAX];
    int n;
    int stop_after;
} seen;

static int collect(void *user, const char *digest, const char *path)
{
    seen *s = user;

    assert_true(s->n < 8);
    snprintf(s->digests[s->n], sizeof(s->digests[0]), "%s", digest);
    snprintf(s->paths[s->n], sizeof(s->paths[0]), "%s", path);
    s->n++;
    return s->n == s->stop_after ? 42 : 0;
}

static void test_foreach_lists_every_bundle(void **state)
{
    fixture *fx = *state;
    wx_bundles *b = open_store(fx);
    char refs[3][WX_DIGEST_LEN + 1];
    wx_error err = WX_ERROR_INIT;
    seen s = {.stop_after = -1};

    assert_ok(wx_bundles_foreach(b, collect, &s, &err), &err);
    assert_int_equal(s.n, 0);
    for (int i = 0; i < 3; i++) {
        char name[16];

        snprintf(name, sizeof(name), "b%d", i);
        small_bundle(P(fx->tmp, name), name);
        add_ok(b, P(fx->tmp, name), refs[i]);
    }
    /* strays in the store are not bundles */
    make_dirs(P(fx->home, "bundles/sha256/not-a-digest"));
    make_dirs(P(fx->home, "bundles/tmp/0123456789ab-XXXXXX"));
    assert_ok(wx_bundles_foreach(b, collect, &s, &err), &err);
    assert_int_equal(s.n, 3);
    for (int i = 0; i < 3; i++) {
        int found = -1;

        for (int j = 0; j < s.n; j++)
            if (strcmp(s.digests[j], refs[i]) == 0)
                found = j;
        if (found < 0)
            fail_msg("foreach did not list %s", refs[i]);
        assert_string_equal(s.paths[found], stored_path(fx, refs[i]));
    }
    /* a non-zero return stops the walk and is returned */
    memset(&s, 0, sizeof(s));
    s.stop_after = 2;
    assert_int_equal(wx_bundles_foreach(b, collect, &s, &err), 42);
    assert_int_equal(s.n, 2);
    wx_bundles_close(b);
}

static void test_open_creates_layout(void **state)
{
    fixture *fx = *state;
    wx_bundles *b = open_store(fx);
    struct stat st;

    assert_int_equal(stat(P(fx->home, "bundles/sha256"), &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    assert_int_equal(stat(P(fx->home, "bundles/tmp"), &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    wx_bundles_close(b);
    wx_bundles_close(NULL);
}

/* A stored ModelOps bundle has no name: its directory is its digest. */
static void test_stored_modelops_bundle_has_no_name(void **state)
{
    fixture *fx = *state;
    wx_bundles *b = open_store(fx);
    char ref[WX_DIGEST_LEN + 1];
    wx_manifest m;

    write_text(P(fx->src, "wire.py"), "def wire(e, p, s):\n  return {}\n");
    add_ok(b, fx->src, ref);
    load_ok(stored_path(fx, ref), &m);
    assert_true(m.modelops);
    assert_string_equal(m.name, "-");
    wx_manifest_release(&m);
    wx_bundles_close(b);
}

/* ==== 4. runners ====================================================== */

static wx_config *runner_config(void)
{
    wx_error err = WX_ERROR_INIT;
    wx_config *cfg = NULL;

    assert_ok(wx_config_new(&cfg, &err), &err);
    assert_ok(wx_config_set(cfg, WX_CONF_NATIVE_RUNNER, "/opt/wx/native-run",
                            WX_CONF_FROM_FLAG, &err),
              &err);
    assert_ok(wx_config_set(cfg, WX_CONF_PYTHON, "/opt/py/bin/python3.11",
                            WX_CONF_FROM_FLAG, &err),
              &err);
    assert_ok(wx_config_set(cfg, WX_CONF_PYTHON_RUNNER, "/opt/wx/runner.py",
                            WX_CONF_FROM_FLAG, &err),
              &err);
    return cfg;
}

static void assert_argv(const char *const *argv, const char *const *expected)
{
    size_t i = 0;

    for (; expected[i]; i++) {
        if (!argv[i])
            fail_msg("argv ends at %zu, expected '%s'", i, expected[i]);
        assert_string_equal(argv[i], expected[i]);
    }
    assert_null(argv[i]);
}

#define DIGEST_A "sha256:" HEX0

static void test_runner_for_native(void **state)
{
    static const char *const expected[] = {
        "/opt/wx/native-run", "--bundle-path", "{bundle_path}",
        "--bundle-digest", "{bundle_digest}", NULL};
    fixture *fx = *state;
    wx_config *cfg = runner_config();
    wx_error err = WX_ERROR_INIT;
    char path[PATH_MAX];
    wx_manifest m;
    wx_runner r;

    manifest(fx->src, "{\"library\": \"libm.so\", \"env\": {\"A\": \"1\", "
                      "\"B\": \"two words\"}}");
    load_ok(fx->src, &m);
    snprintf(path, sizeof(path), "%s", fx->src);
    assert_ok(wx_runner_for(&m, DIGEST_A, path, cfg, &r, &err), &err);
    assert_argv((const char *const *)r.argv, expected);
    assert_ptr_equal(r.spec.argv, r.argv);
    assert_string_equal(r.spec.runner, "native");
    assert_string_equal(r.spec.bundle_digest, DIGEST_A);
    assert_string_equal(r.spec.bundle_path, fx->src);
    /* owned copies */
    assert_ptr_not_equal(r.spec.bundle_path, path);
    memset(path, 0, sizeof(path));
    assert_string_equal(r.spec.bundle_path, fx->src);
    assert_ptr_equal(r.spec.env, r.env);
    assert_int_equal(count(r.env), 2);
    assert_true(contains(r.env, "A=1"));
    assert_true(contains(r.env, "B=two words"));
    assert_ptr_not_equal(r.env, m.env);
    wx_manifest_release(&m); /* the runner does not borrow the manifest */
    assert_true(contains(r.env, "A=1"));
    wx_runner_release(&r);
    assert_null(r.argv);
    wx_runner_release(&r); /* twice is harmless */
    wx_config_free(cfg);
}

static void test_runner_for_native_default_setting(void **state)
{
    fixture *fx = *state;
    wx_error err = WX_ERROR_INIT;
    wx_config *cfg = NULL;
    wx_manifest m;
    wx_runner r;

    assert_ok(wx_config_new(&cfg, &err), &err);
    manifest(fx->src, "{\"library\": \"libm.so\"}");
    load_ok(fx->src, &m);
    assert_ok(wx_runner_for(&m, DIGEST_A, fx->src, cfg, &r, &err), &err);
    assert_string_equal(r.argv[0], wx_config_str(cfg, WX_CONF_NATIVE_RUNNER));
    assert_non_null(strstr(r.argv[0], "warmexec-runner"));
    assert_int_equal(count(r.env), 0);
    wx_runner_release(&r);
    wx_manifest_release(&m);
    wx_config_free(cfg);
}

static void test_runner_for_python(void **state)
{
    static const char *const expected[] = {
        "/opt/py/bin/python3.11", "/opt/wx/runner.py", "--bundle-path",
        "{bundle_path}", "--bundle-digest", "{bundle_digest}", NULL};
    fixture *fx = *state;
    wx_config *cfg = runner_config();
    wx_error err = WX_ERROR_INIT;
    wx_manifest m;
    wx_runner r;

    manifest(fx->src, "{\"runner\": \"python\", \"env\": {\"PYTHONHASHSEED\":"
                      " \"0\"}}");
    load_ok(fx->src, &m);
    assert_ok(wx_runner_for(&m, DIGEST_A, fx->src, cfg, &r, &err), &err);
    assert_argv((const char *const *)r.argv, expected);
    assert_string_equal(r.spec.runner, "python");
    /* No __pycache__ into the read-only store, then the manifest's env. */
    assert_int_equal(count(r.env), 2);
    assert_string_equal(r.env[0], "PYTHONDONTWRITEBYTECODE=1");
    assert_string_equal(r.env[1], "PYTHONHASHSEED=0");
    wx_runner_release(&r);
    wx_manifest_release(&m);

    /* a ModelOps bundle runs the same way */
    write_text(P(fx->tmp, "mo/wire.py"), "def wire(e, p, s):\n  return {}\n");
    load_ok(P(fx->tmp, "mo"), &m);
    assert_ok(wx_runner_for(&m, DIGEST_A, P(fx->tmp, "mo"), cfg, &r, &err),
              &err);
    assert_argv((const char *const *)r.argv, expected);
    assert_string_equal(r.spec.runner, "python");
    assert_int_equal(count(r.env), 1);
    wx_runner_release(&r);
    wx_manifest_release(&m);
    wx_config_free(cfg);
}

static void test_runner_for_command(void **state)
{
    static const char *const expected[] = {
        "/usr/bin/env", "my-runner", "--path={bundle_path}", "{scratch}",
        NULL};
    fixture *fx = *state;
    wx_config *cfg = runner_config();
    wx_error err = WX_ERROR_INIT;
    wx_manifest m;
    wx_runner r;

    manifest(fx->src, "{\"runner\": {\"command\": [\"/usr/bin/env\", "
                      "\"my-runner\", \"--path={bundle_path}\", "
                      "\"{scratch}\"]}, \"env\": {\"X\": \"y\"}}");
    load_ok(fx->src, &m);
    assert_ok(wx_runner_for(&m, DIGEST_A, fx->src, cfg, &r, &err), &err);
    assert_argv((const char *const *)r.argv, expected); /* no tail added */
    assert_ptr_not_equal(r.argv, m.command);
    assert_string_equal(r.spec.runner, "command");
    assert_string_equal(r.spec.bundle_digest, DIGEST_A);
    assert_int_equal(count(r.env), 1);
    assert_string_equal(r.env[0], "X=y");
    wx_runner_release(&r);
    wx_manifest_release(&m);
    wx_config_free(cfg);
}

/* ---- through the pool ---- */

/* The error type of the last failed run_bundle(). */
static const char *last_fault_type;

static wx_pool *new_pool(const fixture *fx)
{
    wx_pool_options o = WX_POOL_OPTIONS_INIT;
    wx_error err = WX_ERROR_INIT;
    wx_pool *p = NULL;

    o.home = fx->home;
    o.start_timeout = 30;
    o.task_timeout = 30;
    o.shutdown_grace = 2;
    assert_ok(wx_pool_new(&o, &p, &err), &err);
    return p;
}

/*
 * Add `dir` to the store, resolve it as the environment does (ensure_local,
 * manifest, runner) and run one task on the pool.
 */
static int run_bundle(const fixture *fx, const char *dir, const char *ep,
                      const char *params_json, int64_t seed, wx_blob **out,
                      size_t *n, wx_error *err)
{
    wx_bundles *b = open_store(fx);
    wx_config *cfg = NULL;
    char ref[WX_DIGEST_LEN + 1], digest[WX_DIGEST_LEN + 1], path[PATH_MAX];
    json_t *params = tu_json(params_json);
    wx_fault fault = {0};
    wx_manifest m;
    wx_runner r;
    wx_pool *pool;
    int rc;

    add_ok(b, dir, ref);
    assert_ok(wx_bundles_ensure_local(b, ref, digest, path, err), err);
    assert_string_equal(path, stored_path(fx, ref));
    assert_ok(wx_config_new(&cfg, err), err);
    assert_ok(wx_config_set(cfg, WX_CONF_NATIVE_RUNNER, WX_RUNNER_PATH,
                            WX_CONF_FROM_FLAG, err),
              err);
    assert_ok(wx_config_set(cfg, WX_CONF_PYTHON_RUNNER, WX_PYTHON_RUNNER,
                            WX_CONF_FROM_FLAG, err),
              err);
    load_ok(path, &m);
    assert_ok(wx_runner_for(&m, digest, path, cfg, &r, err), err);
    pool = new_pool(fx);
    rc = wx_pool_execute(pool, &r.spec, ep, params, seed, out, n, &fault, err);
    last_fault_type = rc ? fault.error_type : NULL;
    if (rc && rc != WX_EMODEL && fault.stderr_tail)
        print_message("worker log tail: %s\n", fault.stderr_tail);
    wx_fault_release(&fault);
    wx_pool_free(pool);
    wx_runner_release(&r);
    wx_manifest_release(&m);
    wx_config_free(cfg);
    json_decref(params);
    wx_bundles_close(b);
    return rc;
}

static const wx_blob *find_blob(const wx_blob *b, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(b[i].name, name) == 0)
            return &b[i];
    fail_msg("no output '%s'", name);
    return NULL;
}

/* fake_worker's "out": byte i is (uint8_t)(i * 31 + seed). */
static void assert_fake_output(const wx_blob *out, size_t n, int64_t seed)
{
    const wx_blob *b = find_blob(out, n, "out");

    assert_int_equal(b->len, 100);
    for (size_t i = 0; i < b->len; i++)
        assert_int_equal(b->data[i], (uint8_t)((int64_t)i * 31 + seed));
}

static void test_pool_runs_command_bundle(void **state)
{
    fixture *fx = *state;
    wx_error err = WX_ERROR_INIT;
    wx_blob *out = NULL;
    size_t n = 0;

    manifest(fx->src, "{\"name\": \"fake\", \"runner\": {\"command\": [\""
                      WX_FAKE_WORKER "\", \"--bundle-digest\", "
                      "\"{bundle_digest}\"]}}");
    assert_ok(run_bundle(fx, fx->src, "test.model/echo", "{\"bytes\": 100}",
                         9, &out, &n, &err),
              &err);
    assert_fake_output(out, n, 9);
    wx_blobs_free(out, n);
}

/* The worker starts in its scratch directory, which {scratch} names. */
static void test_pool_command_cwd_is_scratch(void **state)
{
    fixture *fx = *state;
    wx_error err = WX_ERROR_INIT;
    wx_blob *out = NULL;
    size_t n = 0;

    manifest(fx->src,
             "{\"runner\": {\"command\": [\"sh\", \"-c\", \"test \\\"$(pwd)"
             "\\\" = \\\"{scratch}\\\" && test -d '{bundle_path}' && "
             "test -f '{bundle_path}/warmexec.json' && exec " WX_FAKE_WORKER
             " --bundle-digest {bundle_digest}\"]}}");
    assert_ok(run_bundle(fx, fx->src, "test.model/echo", "{\"bytes\": 100}",
                         3, &out, &n, &err),
              &err);
    assert_fake_output(out, n, 3);
    wx_blobs_free(out, n);
}

/* The same, with a cwd that does not match: the worker does not start. */
static void test_pool_command_cwd_check_can_fail(void **state)
{
    fixture *fx = *state;
    wx_error err = WX_ERROR_INIT;
    wx_blob *out = NULL;
    size_t n = 0;

    manifest(fx->src,
             "{\"runner\": {\"command\": [\"sh\", \"-c\", \"test \\\"$(pwd)"
             "\\\" = \\\"{bundle_path}\\\" && exec " WX_FAKE_WORKER
             " --bundle-digest {bundle_digest}\"]}}");
    assert_fails(run_bundle(fx, fx->src, "test.model/echo", "{\"bytes\": 100}",
                            3, &out, &n, &err),
                 WX_ESTART, &err, "");
    assert_string_equal(last_fault_type, "WorkerStartFailed");
}

static void test_pool_bundle_env_reaches_worker(void **state)
{
    fixture *fx = *state;
    wx_error err = WX_ERROR_INIT;
    wx_blob *out = NULL;
    size_t n = 0;

    setenv("TZ", "Europe/Paris", 1);
    setenv("WX_TEST_BUNDLE_SECRET", "leak", 1);
    manifest(fx->src,
             "{\"runner\": {\"command\": [\"sh\", \"-c\", \"test \\\"$MY_VAR\\\""
             " = hello && test \\\"$SPACED\\\" = 'a b=c' && test \\\"$TZ\\\" = "
             "UTC && test -z \\\"$WX_TEST_BUNDLE_SECRET\\\" && exec "
             WX_FAKE_WORKER " --bundle-digest {bundle_digest}\"]}, "
             "\"env\": {\"MY_VAR\": \"hello\", \"SPACED\": \"a b=c\", "
             "\"TZ\": \"UTC\"}}");
    assert_ok(run_bundle(fx, fx->src, "test.model/echo", "{\"bytes\": 100}",
                         4, &out, &n, &err),
              &err);
    assert_fake_output(out, n, 4);
    wx_blobs_free(out, n);

    /* Without the env entry the same check fails to start. */
    manifest(fx->src,
             "{\"runner\": {\"command\": [\"sh\", \"-c\", \"test \\\"$MY_VAR\\\""
             " = hello && exec " WX_FAKE_WORKER
             " --bundle-digest {bundle_digest}\"]}}");
    assert_fails(run_bundle(fx, fx->src, "test.model/echo", "{\"bytes\": 100}",
                            4, &out, &n, &err),
                 WX_ESTART, &err, "");
    assert_string_equal(last_fault_type, "WorkerStartFailed");
    unsetenv("WX_TEST_BUNDLE_SECRET");
    unsetenv("TZ");
}

static const char WIRE_PY[] =
    "import os\n"
    "def wire(entrypoint, params, seed):\n"
    "    if params.get('fail'):\n"
    "        raise ValueError('asked to fail')\n"
    "    return {'echo': f'{entrypoint} {seed} {params[\"x\"]}',\n"
    "            'cwd': os.getcwd(), 'env': os.environ.get('MY_VAR', '-')}\n";

/* The Python runner configured as a foreign command, serving a wire.py. */
static void test_pool_python_runner_as_command(void **state)
{
    fixture *fx = *state;
    wx_error err = WX_ERROR_INIT;
    wx_blob *out = NULL;
    const wx_blob *b;
    size_t n = 0;

    write_text(P(fx->src, "wire.py"), WIRE_PY);
    /* as docs/bundles.md advises (see the test after the next) */
    write_text(P(fx->src, ".warmexecignore"), "__pycache__/\n");
    manifest(fx->src,
             "{\"runner\": {\"command\": [\"python3\", \"" WX_PYTHON_RUNNER
             "\", \"--bundle-path\", \"{bundle_path}\", \"--bundle-digest\","
             " \"{bundle_digest}\", \"--venv-path\", \"{scratch}\"]},"
             " \"env\": {\"MY_VAR\": \"from-manifest\"}}");
    assert_ok(run_bundle(fx, fx->src, "m.model/baseline", "{\"x\": 1.5}", 11,
                         &out, &n, &err),
              &err);
    b = find_blob(out, n, "echo");
    assert_int_equal(b->len, strlen("m.model/baseline 11 1.5"));
    assert_memory_equal(b->data, "m.model/baseline 11 1.5", b->len);
    b = find_blob(out, n, "env");
    assert_memory_equal(b->data, "from-manifest", b->len);
    b = find_blob(out, n, "cwd");
    assert_non_null(memmem(b->data, b->len, "/workers/", 9));
    wx_blobs_free(out, n);

    assert_fails(run_bundle(fx, fx->src, "m.model/baseline", "{\"fail\": 1}",
                            1, &out, &n, &err),
                 WX_EMODEL, &err, "asked to fail");
}

/* "wire" in warmexec.json names the function the Python runner calls. */
static void test_pool_python_manifest_wire(void **state)
{
    fixture *fx = *state;
    wx_error err = WX_ERROR_INIT;
    wx_blob *out = NULL;
    const wx_blob *b;
    size_t n = 0;

    write_text(P(fx->src, "wire.py"),
               "def wire(e, p, s):\n    raise ValueError('wrong wire')\n");
    write_text(P(fx->src, "model.py"),
               "def simulate(e, p, s):\n    return {'which': 'model.py'}\n");
    manifest(fx->src, "{\"runner\": \"python\", \"wire\": \"model:simulate\"}");
    assert_ok(run_bundle(fx, fx->src, "m.model/baseline", "{}", 1, &out, &n,
                         &err),
              &err);
    b = find_blob(out, n, "which");
    assert_int_equal(b->len, 8);
    assert_memory_equal(b->data, "model.py", 8);
    wx_blobs_free(out, n);
}

/* A ModelOps bundle (wire.py, no manifest) on the configured runner. */
static void test_pool_runs_modelops_bundle(void **state)
{
    fixture *fx = *state;
    wx_error err = WX_ERROR_INIT;
    wx_blob *out = NULL;
    const wx_blob *b;
    size_t n = 0;

    write_text(P(fx->src, "wire.py"), WIRE_PY);
    assert_ok(run_bundle(fx, fx->src, "m.model/baseline", "{\"x\": 2}", 5,
                         &out, &n, &err),
              &err);
    b = find_blob(out, n, "echo");
    assert_memory_equal(b->data, "m.model/baseline 5 2", b->len);
    b = find_blob(out, n, "env");
    assert_memory_equal(b->data, "-", b->len);
    wx_blobs_free(out, n);
}

/*
 * docs/bundles.md: "Running from a plain directory, Python writes
 * __pycache__/ into it; list it in .warmexecignore (a stored bundle is
 * read-only, so there it cannot)".  A ModelOps bundle has no
 * .warmexecignore: running it must leave its stored copy as it was, or
 * every later process refuses it as BundleCorrupt.
 */
static void test_python_worker_does_not_write_into_the_stored_bundle(
    void **state)
{
    fixture *fx = *state;
    char ref[WX_DIGEST_LEN + 1];
    wx_error err = WX_ERROR_INIT;
    wx_blob *out = NULL;
    wx_bundles *b;
    size_t n = 0;

    write_text(P(fx->src, "wire.py"), WIRE_PY);
    digest_ok(fx->src, ref);
    assert_ok(run_bundle(fx, fx->src, "m.model/baseline", "{\"x\": 2}", 5,
                         &out, &n, &err),
              &err);
    wx_blobs_free(out, n);
    b = open_store(fx); /* the next process */
    if (tu_count_in_dir(stored_path(fx, ref), false) != 1)
        print_message("stored bundle now holds %zu entries\n",
                      tu_count_in_dir(stored_path(fx, ref), false));
    assert_ok(wx_bundles_verify(b, ref, &err), &err);
    assert_int_equal(tu_count_in_dir(stored_path(fx, ref), false), 1);
    wx_bundles_close(b);
}

/* The directories of a stored bundle are read-only too (docs/bundles.md:
 * "a stored bundle is read-only"): nothing can be added to them. */
static void test_stored_bundle_directories_are_read_only(void **state)
{
    fixture *fx = *state;
    wx_bundles *b = open_store(fx);
    char ref[WX_DIGEST_LEN + 1];
    const char *dirs[3];
    struct stat st;

    small_bundle(fx->src, "ro");
    add_ok(b, fx->src, ref);
    dirs[0] = stored_path(fx, ref);
    dirs[1] = P(stored_path(fx, ref), "data");
    dirs[2] = NULL;
    for (size_t i = 0; dirs[i]; i++) {
        assert_int_equal(stat(dirs[i], &st), 0);
        if (st.st_mode & 0222)
            fail_msg("stored directory %s has mode %o: writable", dirs[i],
                     (unsigned)(st.st_mode & 07777));
    }
    wx_bundles_close(b);
}

/* The C test bundle through the native runner setting. */
static void test_pool_runs_native_bundle(void **state)
{
    fixture *fx = *state;
    wx_error err = WX_ERROR_INIT;
    wx_blob *out = NULL;
    size_t n = 0;

    assert_ok(run_bundle(fx, WX_NATIVE_BUNDLE, "test.model/echo",
                         "{\"bytes\": 100}", 7, &out, &n, &err),
              &err);
    assert_fake_output(out, n, 7); /* the test model writes the same */
    wx_blobs_free(out, n);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* manifests */
        T(test_manifest_native),
        T(test_manifest_defaults),
        T(test_manifest_default_name_is_the_directory_name),
        T(test_manifest_python),
        T(test_manifest_command),
        T(test_manifest_rejections),
        T(test_manifest_modelops),
        /* digest */
        T(test_digest_matches_hand_written_index),
        T(test_digest_of_example_bundles),
        T(test_digest_nested_directories),
        T(test_digest_changes_with_content_name_and_exec_bit),
        T(test_digest_ignores_directory_name),
        T(test_digest_skips_git_directories),
        T(test_digest_warmexecignore),
        T(test_digest_warmexecignore_directory_patterns),
        T(test_digest_path_glob_star_crosses_slash_as_documented),
        T(test_digest_refuses_symlinks),
        T(test_digest_refuses_special_files),
        T(test_digest_refuses_newline_in_names),
        T(test_digest_missing_directory),
        /* store */
        T(test_open_creates_layout),
        T(test_add_copies_read_only),
        T(test_add_twice_is_a_no_op),
        T(test_add_refuses_what_digest_refuses),
        T(test_add_from_concurrent_processes),
        T(test_ensure_local_accepts_refs),
        T(test_ensure_local_refuses_malformed_refs),
        T(test_ensure_local_unknown_digest),
        T(test_corrupt_byte_but_handle_that_verified_it_does_not_rehash),
        T(test_corrupt_extra_file_but_handle_that_verified_it_does_not_rehash),
        T(test_corrupt_deleted_file_but_handle_that_verified_it_does_not_rehash),
        T(test_corrupt_exec_bit_but_handle_that_verified_it_does_not_rehash),
        T(test_corrupt_symlink_but_handle_that_verified_it_does_not_rehash),
        T(test_add_does_not_count_as_a_verification),
        T(test_foreach_lists_every_bundle),
        T(test_stored_modelops_bundle_has_no_name),
        /* runners */
        T(test_runner_for_native),
        T(test_runner_for_native_default_setting),
        T(test_runner_for_python),
        T(test_runner_for_command),
        T(test_pool_runs_command_bundle),
        T(test_pool_command_cwd_is_scratch),
        T(test_pool_command_cwd_check_can_fail),
        T(test_pool_bundle_env_reaches_worker),
        T(test_pool_python_runner_as_command),
        T(test_pool_python_manifest_wire),
        T(test_pool_runs_modelops_bundle),
        T(test_pool_runs_native_bundle),
        T(test_python_worker_does_not_write_into_the_stored_bundle),
        T(test_stored_bundle_directories_are_read_only),
        /*
         * Last: an empty bundle makes build_index() call qsort(NULL, 0),
         * which UBSan (the sanitizer build) stops the program on.
         */
        T(test_digest_empty_bundle),
        T(test_add_empty_bundle),
    };

    /* WX_TEST_FILTER / WX_TEST_SKIP: run only / skip the matching tests
     * (cmocka patterns, '*' and '?'). */
    if (getenv("WX_TEST_FILTER"))
        cmocka_set_test_filter(getenv("WX_TEST_FILTER"));
    if (getenv("WX_TEST_SKIP"))
        cmocka_set_skip_filter(getenv("WX_TEST_SKIP"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
