/* Bundles: manifests, digests, the local store, runner commands. */
#include "internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <ftw.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <warmexec/bundle.h>
#include <warmexec/entrypoint.h>
#include <warmexec/json.h>
#include <warmexec/task.h>

#include "alloc.h"
#include "fs.h"
#include "hash.h"
#include "jfield.h"

/* Bounds on what a bundle may hold. */
#define MAX_FILES 100000
#define MAX_DEPTH 64
#define MAX_IGNORE_PATTERNS 256

/* ---- string lists ---- */

static void strs_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        wx_free(v[i]);
    wx_free(v);
}

static size_t strs_len(char *const *v)
{
    size_t n = 0;

    while (v && v[n])
        n++;
    return n;
}

/* Append a copy of `s` to the NULL-terminated list *v. */
static int strs_push(char ***v, const char *s, wx_error *err)
{
    size_t n = strs_len(*v);
    char **grown = wx__realloc(*v, (n + 2) * sizeof(**v));

    if (!grown)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    *v = grown;
    grown[n] = wx__strdup(s);
    grown[n + 1] = NULL;
    return grown[n] ? 0 : wx_error_set(err, WX_ENOMEM, "out of memory");
}

/* An empty NULL-terminated list. */
static int strs_empty(char ***v, wx_error *err)
{
    *v = wx__calloc(1, sizeof(**v));
    return *v ? 0 : wx_error_set(err, WX_ENOMEM, "out of memory");
}

/* ---- manifest ---- */

void wx_manifest_release(wx_manifest *m)
{
    wx_free(m->name);
    wx_free(m->library);
    strs_free(m->command);
    strs_free(m->env);
    strs_free(m->entrypoints);
    strs_free(m->targets);
    memset(m, 0, sizeof(*m));
}

static int read_runner(const json_t *v, wx_manifest *m, wx_error *err)
{
    const char *kind = json_string_value(v);
    json_t *cmd = json_object_get(v, "command");
    size_t i;
    json_t *arg;

    if (!v || (kind && strcmp(kind, "native") == 0)) {
        m->runner = WX_RUNNER_NATIVE;
        return 0;
    }
    if (kind && strcmp(kind, "python") == 0) {
        m->runner = WX_RUNNER_PYTHON;
        return 0;
    }
    if (!json_is_array(cmd) || json_array_size(cmd) == 0 ||
        json_object_size(v) != 1)
        return wx_error_set(err, WX_EINVAL,
                            "runner: must be \"native\", \"python\" or "
                            "{\"command\": [program, args...]}");
    m->runner = WX_RUNNER_COMMAND;
    json_array_foreach(cmd, i, arg)
    {
        int rc;

        if (!wx__json_is_text(arg))
            return wx_error_set(err, WX_EINVAL,
                                "runner.command[%zu]: must be a string", i);
        rc = strs_push(&m->command, json_string_value(arg), err);
        if (rc)
            return rc;
    }
    return 0;
}

/* "library": a relative path that stays inside the bundle. */
static int read_library(const json_t *obj, wx_manifest *m, wx_error *err)
{
    const char *lib = NULL;
    int rc = wx__jf_string(obj, "library", false, &lib, err);

    if (rc)
        return rc;
    if (m->runner != WX_RUNNER_NATIVE)
        return 0;
    if (!lib)
        return wx_error_set(err, WX_EINVAL,
                            "library: is required for the native runner");
    if (!lib[0] || lib[0] == '/' || strstr(lib, ".."))
        return wx_error_set(err, WX_EINVAL,
                            "library: must be a relative path inside the "
                            "bundle, got '%s'",
                            lib);
    m->library = wx__strdup(lib);
    return m->library ? 0 : wx_error_set(err, WX_ENOMEM, "out of memory");
}

static int read_env(const json_t *obj, wx_manifest *m, wx_error *err)
{
    json_t *env = NULL, *v;
    const char *name;
    int rc = wx__jf_object(obj, "env", false, &env, err);

    if (!rc)
        rc = strs_empty(&m->env, err);
    json_object_foreach(env, name, v)
    {
        char entry[4096];

        if (rc)
            break;
        if (!name[0] || strchr(name, '=') || !wx__json_is_text(v))
            return wx_error_set(err, WX_EINVAL,
                                "env.%s: must be a NAME without '=' with a "
                                "string value",
                                name);
        if ((size_t)snprintf(entry, sizeof(entry), "%s=%s", name,
                             json_string_value(v)) >= sizeof(entry))
            return wx_error_set(err, WX_EINVAL, "env.%s: value too long",
                                name);
        rc = strs_push(&m->env, entry, err);
    }
    return rc;
}

/* "entrypoints" / "targets": lists of valid entrypoints. */
static int read_entrypoints(const json_t *obj, const char *field,
                            wx_entrypoint_kind kind, char ***out,
                            wx_error *err)
{
    json_t *list = NULL, *v;
    size_t i;
    int rc = wx__jf_array(obj, field, false, &list, err);

    if (!rc)
        rc = strs_empty(out, err);
    json_array_foreach(list, i, v)
    {
        if (rc)
            break;
        if (!wx__json_is_text(v))
            return wx_error_set(err, WX_EINVAL, "%s[%zu]: must be a string",
                                field, i);
        rc = wx_entrypoint_parse(json_string_value(v), kind, NULL, err);
        if (rc)
            return wx_error_prefix(err, rc, "%s[%zu]", field, i);
        rc = strs_push(out, json_string_value(v), err);
    }
    return rc;
}

/* The last component of a directory path ("-" for a stored bundle, whose
   directory is its digest). */
static const char *dir_name(const char *dir)
{
    const char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : dir;

    return wx__is_hex256(base) ? "-" : base;
}

static const char *const manifest_keys[] = {
    "name",    "runner",      "library",     "env",     "entrypoints",
    "targets", "description", "version",     "wire",    NULL};

static int read_manifest(const json_t *obj, const char *dir, wx_manifest *m,
                         wx_error *err)
{
    const char *name = NULL;
    int rc;

    if (!json_is_object(obj))
        return wx_error_set(err, WX_EINVAL, "must be a JSON object");
    rc = wx__jf_known_keys(obj, "manifest", manifest_keys, err);
    if (!rc)
        rc = wx__jf_string(obj, "name", false, &name, err);
    /* "wire" (python runner: module:function) is read by the runner. */
    if (!rc)
        rc = wx__jf_string(obj, "wire", false, &(const char *){NULL}, err);
    if (!rc)
        rc = read_runner(json_object_get(obj, "runner"), m, err);
    if (!rc)
        rc = read_library(obj, m, err);
    if (!rc)
        rc = read_env(obj, m, err);
    if (!rc)
        rc = read_entrypoints(obj, "entrypoints", WX_EP_MODEL,
                              &m->entrypoints, err);
    if (!rc)
        rc = read_entrypoints(obj, "targets", WX_EP_TARGET, &m->targets, err);
    if (!rc && !(m->name = wx__strdup(name ? name : dir_name(dir))))
        rc = wx_error_set(err, WX_ENOMEM, "out of memory");
    return rc;
}

static bool is_file(const char *dir, const char *rel)
{
    char path[PATH_MAX];
    struct stat st;

    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* No warmexec.json: a ModelOps Python bundle, or not a bundle at all. */
static int modelops_manifest(const char *dir, wx_manifest *m, wx_error *err)
{
    int rc;

    if (!is_file(dir, ".modelops/manifest.json") &&
        !is_file(dir, ".modelops/modelops.toml") && !is_file(dir, "wire.py"))
        return wx_error_set(err, WX_ENOTFOUND,
                            "%s is not a bundle: no warmexec.json, "
                            ".modelops/manifest.json or wire.py",
                            dir);
    m->runner = WX_RUNNER_PYTHON;
    m->modelops = true;
    rc = strs_empty(&m->env, err);
    if (!rc)
        rc = strs_empty(&m->entrypoints, err);
    if (!rc)
        rc = strs_empty(&m->targets, err);
    if (!rc && !(m->name = wx__strdup(dir_name(dir))))
        rc = wx_error_set(err, WX_ENOMEM, "out of memory");
    return rc;
}

int wx_manifest_load(const char *dir, wx_manifest *out, wx_error *err)
{
    char path[PATH_MAX];
    wx_buf text = WX_BUF_INIT(WX_MANIFEST_MAX);
    json_t *obj = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    snprintf(path, sizeof(path), "%s/warmexec.json", dir);
    rc = wx_buf_read_file(&text, path, err);
    if (rc == WX_ENOTFOUND) {
        rc = modelops_manifest(dir, out, err);
    } else if (!rc) {
        rc = wx_json_parse(text.data, text.len, &obj, err);
        if (!rc)
            rc = read_manifest(obj, dir, out, err);
        if (rc)
            wx_error_prefix(err, rc, "%s", path);
    }
    json_decref(obj);
    wx_buf_release(&text);
    if (rc)
        wx_manifest_release(out);
    return rc;
}

/* ---- digest ---- */

typedef struct walk {
    const char *root;
    char **files; /* relative paths */
    size_t n, cap;
    char *patterns[MAX_IGNORE_PATTERNS];
    size_t n_patterns;
    wx_error *err;
} walk;

static void walk_release(walk *w)
{
    for (size_t i = 0; i < w->n; i++)
        wx_free(w->files[i]);
    wx_free(w->files);
    for (size_t i = 0; i < w->n_patterns; i++)
        wx_free(w->patterns[i]);
}

/* The patterns of <root>/.warmexecignore (one per line, # comments). */
static int load_ignore(walk *w)
{
    char path[PATH_MAX];
    wx_buf text = WX_BUF_INIT(1 << 20);
    char *line, *save = NULL;
    int rc;

    snprintf(path, sizeof(path), "%s/.warmexecignore", w->root);
    rc = wx_buf_read_file(&text, path, w->err);
    if (rc == WX_ENOTFOUND) {
        wx_buf_release(&text);
        return 0;
    }
    for (line = strtok_r(rc ? NULL : text.data, "\n", &save); line && !rc;
         line = strtok_r(NULL, "\n", &save)) {
        size_t len = strcspn(line, "\r");

        line[len] = '\0';
        if (!len || line[0] == '#')
            continue;
        if (w->n_patterns == MAX_IGNORE_PATTERNS)
            rc = wx_error_set(w->err, WX_EINVAL,
                              ".warmexecignore: more than %d patterns",
                              MAX_IGNORE_PATTERNS);
        else if (!(w->patterns[w->n_patterns++] = wx__strdup(line)))
            rc = wx_error_set(w->err, WX_ENOMEM, "out of memory");
    }
    wx_buf_release(&text);
    return rc;
}

/*
 * Skipped: .git directories and .warmexecignore patterns.  A pattern
 * with a '/' matches the whole relative path (where '*' also matches '/'),
 * else the last component; a trailing '/' matches directories only.
 */
static bool ignored(const walk *w, const char *rel, const char *base,
                    bool is_dir)
{
    if (is_dir && strcmp(base, ".git") == 0)
        return true;
    for (size_t i = 0; i < w->n_patterns; i++) {
        char pat[PATH_MAX];
        size_t len = strlen(w->patterns[i]);
        bool dir_only = len > 1 && w->patterns[i][len - 1] == '/';

        snprintf(pat, sizeof(pat), "%.*s", (int)(len - dir_only),
                 w->patterns[i]);
        if (dir_only && !is_dir)
            continue;
        if (strchr(pat, '/') ? fnmatch(pat, rel, 0) == 0
                             : fnmatch(pat, base, 0) == 0)
            return true;
    }
    return false;
}

static int add_file(walk *w, const char *rel)
{
    if (w->n == MAX_FILES)
        return wx_error_set(w->err, WX_EINVAL,
                            "bundle has more than %d files", MAX_FILES);
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        char **grown = wx__realloc(w->files, cap * sizeof(*grown));

        if (!grown)
            return wx_error_set(w->err, WX_ENOMEM, "out of memory");
        w->files = grown;
        w->cap = cap;
    }
    w->files[w->n] = wx__strdup(rel);
    return w->files[w->n++] ? 0
                            : wx_error_set(w->err, WX_ENOMEM, "out of memory");
}

static int walk_dir(walk *w, const char *rel, int depth);

/* One directory entry of `rel` (empty for the root). */
static int walk_entry(walk *w, const char *rel, const char *name, int depth)
{
    char child[PATH_MAX], full[PATH_MAX];
    struct stat st;

    if ((size_t)snprintf(child, sizeof(child), "%s%s%s", rel,
                         rel[0] ? "/" : "", name) >= sizeof(child) ||
        (size_t)snprintf(full, sizeof(full), "%s/%s", w->root, child) >=
            sizeof(full))
        return wx_error_set(w->err, WX_EINVAL, "path too long: %s", child);
    if (strchr(name, '\n'))
        return wx_error_set(w->err, WX_EINVAL,
                            "file name with a newline in the bundle: %s",
                            child);
    if (lstat(full, &st) != 0)
        return wx_error_set_sys(w->err, WX_EIO, errno, "stat %s", full);
    if (S_ISLNK(st.st_mode))
        return wx_error_set(w->err, WX_EINVAL,
                            "bundles may not contain symlinks: %s", child);
    if (S_ISDIR(st.st_mode))
        return ignored(w, child, name, true) ? 0
                                             : walk_dir(w, child, depth + 1);
    if (!S_ISREG(st.st_mode))
        return wx_error_set(w->err, WX_EINVAL,
                            "bundles may only contain regular files: %s",
                            child);
    return ignored(w, child, name, false) ? 0 : add_file(w, child);
}

static int walk_dir(walk *w, const char *rel, int depth)
{
    char path[PATH_MAX];
    struct dirent *e;
    DIR *d;
    int rc = 0;

    if (depth > MAX_DEPTH)
        return wx_error_set(w->err, WX_EINVAL,
                            "bundle nested deeper than %d levels", MAX_DEPTH);
    snprintf(path, sizeof(path), "%s%s%s", w->root, rel[0] ? "/" : "", rel);
    d = opendir(path);
    if (!d)
        return wx_error_set_sys(w->err, errno == ENOENT ? WX_ENOTFOUND
                                                        : WX_EIO,
                                errno, "open directory %s", path);
    while (!rc && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        rc = walk_entry(w, rel, e->d_name, depth);
    }
    closedir(d);
    return rc;
}

static int cmp_paths(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* SHA-256 of a file's content, streamed; its mode 755 or 644. */
static int hash_file(const char *path, char hex[65], int *mode,
                     wx_error *err)
{
    uint8_t buf[65536], digest[WX_SHA256_LEN];
    wx__sha256_ctx h = WX__SHA256_INIT;
    struct stat st;
    ssize_t n;
    int rc, fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return wx_error_set_sys(err, WX_EIO, errno, "open %s", path);
    rc = fstat(fd, &st) == 0 ? wx__sha256_begin(&h, err)
                             : wx_error_set_sys(err, WX_EIO, errno, "stat");
    while (!rc && (n = read(fd, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno != EINTR)
            rc = wx_error_set_sys(err, WX_EIO, errno, "read %s", path);
        else if (n > 0)
            rc = wx__sha256_update(&h, buf, (size_t)n, err);
    }
    close(fd);
    if (rc) {
        wx__sha256_abort(&h);
        return rc;
    }
    *mode = (st.st_mode & 0111) ? 755 : 644;
    rc = wx__sha256_finish(&h, digest, err);
    if (!rc)
        wx__hex(digest, sizeof(digest), hex);
    return rc;
}

/* The index text of the files found by `w`. */
static int build_index(walk *w, wx_buf *index, wx_error *err)
{
    int rc = 0;

    if (w->n)
        qsort(w->files, w->n, sizeof(*w->files), cmp_paths);
    for (size_t i = 0; !rc && i < w->n; i++) {
        char path[PATH_MAX], hex[65];
        int mode = 644;

        snprintf(path, sizeof(path), "%s/%s", w->root, w->files[i]);
        rc = hash_file(path, hex, &mode, err);
        if (!rc)
            rc = wx_buf_printf(index, err, "%d %s %s\n", mode, hex,
                               w->files[i]);
    }
    return rc;
}

/* Walk `dir` and fill `w` (caller releases). */
static int list_bundle(const char *dir, walk *w, wx_error *err)
{
    int rc;

    memset(w, 0, sizeof(*w));
    w->root = dir;
    w->err = err;
    rc = load_ignore(w);
    return rc ? rc : walk_dir(w, "", 0);
}

int wx_bundle_digest(const char *dir, char digest[WX_DIGEST_LEN + 1],
                     wx_buf *index, wx_error *err)
{
    wx_buf text = WX_BUF_INIT(SIZE_MAX - 1);
    walk w;
    char hex[65];
    int rc = list_bundle(dir, &w, err);

    if (!rc)
        rc = build_index(&w, &text, err);
    if (!rc)
        rc = wx__sha256_hex(text.data, text.len, hex, err);
    if (!rc)
        snprintf(digest, WX_DIGEST_LEN + 1, "sha256:%s", hex);
    if (!rc && index)
        rc = wx_buf_append(index, text.data, text.len, err);
    walk_release(&w);
    wx_buf_release(&text);
    return rc;
}

/* ---- the store ---- */

/* The mode set_dir_modes() gives, for its nftw callback. */
static mode_t dir_mode;

struct wx_bundles {
    char root[PATH_MAX - 128]; /* home/bundles; room left for names */
    pthread_mutex_t mu;
    char (*verified)[65]; /* digests re-hashed by this process */
    size_t n_verified, cap_verified;
};

int wx_bundles_open(const char *home, wx_bundles **out, wx_error *err)
{
    wx_bundles *b = wx__calloc(1, sizeof(*b));
    char dir[PATH_MAX];
    int rc;

    if (!b)
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    if ((size_t)snprintf(b->root, sizeof(b->root), "%s/bundles", home) >=
        sizeof(b->root)) {
        wx_free(b);
        return wx_error_set(err, WX_EINVAL, "home path too long: %s", home);
    }
    snprintf(dir, sizeof(dir), "%s/sha256", b->root);
    rc = wx__fs_mkdirs(dir, err);
    if (!rc) {
        snprintf(dir, sizeof(dir), "%s/tmp", b->root);
        rc = wx__fs_mkdirs(dir, err);
    }
    if (rc) {
        wx_free(b);
        return rc;
    }
    pthread_mutex_init(&b->mu, NULL);
    *out = b;
    return 0;
}

void wx_bundles_close(wx_bundles *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    wx_free(b->verified);
    wx_free(b);
}

/* Copy one file into the temp tree, keeping only the execute bit. */
static int copy_file(const char *from, const char *to, wx_error *err)
{
    char buf[65536];
    struct stat st;
    int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, rc = 0;
    ssize_t n;

    if (in < 0 || fstat(in, &st) != 0)
        rc = wx_error_set_sys(err, WX_EIO, errno, "open %s", from);
    if (!rc) {
        out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                   (st.st_mode & 0111) ? 0555 : 0444);
        if (out < 0)
            rc = wx_error_set_sys(err, WX_EIO, errno, "create %s", to);
    }
    while (!rc && (n = read(in, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno != EINTR)
            rc = wx_error_set_sys(err, WX_EIO, errno, "read %s", from);
        else if (n > 0)
            rc = wx__fs_write_all(out, buf, (size_t)n, err);
    }
    if (!rc && fsync(out) != 0)
        rc = wx_error_set_sys(err, WX_EIO, errno, "fsync %s", to);
    if (in >= 0)
        close(in);
    if (out >= 0)
        close(out);
    return rc;
}

/* Copy the listed files of `src` into `dst`, creating directories. */
static int copy_tree(const walk *w, const char *src, const char *dst,
                     wx_error *err)
{
    int rc = 0;

    for (size_t i = 0; !rc && i < w->n; i++) {
        char from[PATH_MAX], to[PATH_MAX];
        char *slash;

        rc = wx__path_join(from, sizeof(from), src, w->files[i], err);
        if (!rc)
            rc = wx__path_join(to, sizeof(to), dst, w->files[i], err);
        if (rc)
            break;
        slash = strrchr(to, '/');
        *slash = '\0';
        rc = wx__fs_mkdirs(to, err);
        *slash = '/';
        if (!rc)
            rc = copy_file(from, to, err);
    }
    return rc;
}

static void store_path(const wx_bundles *b, const char *hex, char *out)
{
    snprintf(out, PATH_MAX, "%s/sha256/%.64s", b->root, hex);
}

/*
 * Publish a complete copy by renaming it into place.  When another
 * process published the same digest first, its copy is as good as ours.
 */
static int publish(const char *tmp, const char *final, wx_error *err)
{
    if (rename(tmp, final) == 0)
        return wx__fs_sync_parent(final, err);
    if (errno == EEXIST || errno == ENOTEMPTY) {
        wx__fs_remove_tree(tmp);
        return 0;
    }
    return wx_error_set_sys(err, WX_EIO, errno, "rename to %s", final);
}

static int check_stored(const char *hex, const char *path, wx_error *err);

static int dir_mode_entry(const char *path, const struct stat *st, int flag,
                          struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_D || flag == FTW_DP)
        chmod(path, dir_mode);
    return 0;
}

/* chmod every directory of the tree at `path` (nftw has no user data). */
static void set_dir_modes(const char *path, mode_t mode)
{
    static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

    pthread_mutex_lock(&lock);
    dir_mode = mode;
    nftw(path, dir_mode_entry, 16, FTW_PHYS);
    pthread_mutex_unlock(&lock);
}

/*
 * A stored copy that no longer hashes to its name is moved aside and
 * removed, so that adding the bundle again repairs the store (as a CAS
 * put repairs a damaged object).
 */
static int drop_damaged(wx_bundles *b, const char *hex, const char *final,
                        wx_error *err)
{
    char aside[PATH_MAX];

    snprintf(aside, sizeof(aside), "%s/tmp/damaged-%.12s-XXXXXX", b->root,
             hex);
    if (!mkdtemp(aside) || rename(final, aside) != 0)
        return wx_error_set_sys(err, WX_EIO, errno,
                                "cannot move the damaged bundle %s aside",
                                final);
    set_dir_modes(aside, 0700);
    wx__fs_remove_tree(aside);
    return 0;
}

/* Copy `w`'s files into a temp tree and publish it as `final`. */
static int store_copy(wx_bundles *b, const walk *w, const char *dir,
                      const char *hex, const char *final, wx_error *err)
{
    char tmp[PATH_MAX];
    int rc;

    snprintf(tmp, sizeof(tmp), "%s/tmp/%.12s-XXXXXX", b->root, hex);
    if (!mkdtemp(tmp))
        return wx_error_set_sys(err, WX_EIO, errno, "mkdtemp %s", tmp);
    rc = copy_tree(w, dir, tmp, err);
    if (!rc)
        rc = publish(tmp, final, err);
    if (rc)
        wx__fs_remove_tree(tmp);
    else
        set_dir_modes(final, 0555); /* a stored bundle is read-only */
    return rc;
}

int wx_bundles_add(wx_bundles *b, const char *dir,
                   char ref[WX_DIGEST_LEN + 1], wx_error *err)
{
    wx_buf index = WX_BUF_INIT(SIZE_MAX - 1);
    char final[PATH_MAX], hex[65];
    wx_manifest m;
    struct stat st;
    walk w = {0};
    int rc = wx_manifest_load(dir, &m, err); /* refuse a bad manifest now */

    wx_manifest_release(&m);
    if (!rc)
        rc = list_bundle(dir, &w, err);
    if (!rc)
        rc = build_index(&w, &index, err);
    if (!rc)
        rc = wx__sha256_hex(index.data, index.len, hex, err);
    if (!rc) {
        snprintf(ref, WX_DIGEST_LEN + 1, "sha256:%s", hex);
        store_path(b, hex, final);
        if (stat(final, &st) == 0 && check_stored(hex, final, NULL) != 0)
            rc = drop_damaged(b, hex, final, err);
    }
    if (!rc && stat(final, &st) != 0)
        rc = store_copy(b, &w, dir, hex, final, err);
    walk_release(&w);
    wx_buf_release(&index);
    return rc;
}

/* The 64 hex of a bundle ref (with or without repository). */
static int ref_hex(const char *ref, char hex[65], wx_error *err)
{
    const char *at = strrchr(ref, '@');
    int rc = wx_bundle_ref_validate(ref, err);

    if (rc)
        return rc;
    memcpy(hex, (at ? at + 1 : ref) + strlen("sha256:"), 65);
    return 0;
}

static bool was_verified(wx_bundles *b, const char *hex)
{
    bool found = false;

    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; !found && i < b->n_verified; i++)
        found = strcmp(b->verified[i], hex) == 0;
    pthread_mutex_unlock(&b->mu);
    return found;
}

static void mark_verified(wx_bundles *b, const char *hex)
{
    pthread_mutex_lock(&b->mu);
    if (b->n_verified == b->cap_verified) {
        size_t cap = b->cap_verified ? b->cap_verified * 2 : 16;
        char(*grown)[65] = wx__realloc(b->verified, cap * sizeof(*grown));

        if (!grown) { /* not remembering only costs a re-hash */
            pthread_mutex_unlock(&b->mu);
            return;
        }
        b->verified = grown;
        b->cap_verified = cap;
    }
    memcpy(b->verified[b->n_verified++], hex, 65);
    pthread_mutex_unlock(&b->mu);
}

/* Re-hash the stored copy of `hex` at `path`. */
static int check_stored(const char *hex, const char *path, wx_error *err)
{
    char digest[WX_DIGEST_LEN + 1];
    int rc = wx_bundle_digest(path, digest, NULL, err);

    if (rc)
        return wx_error_prefix(err, WX_ECORRUPT,
                               "bundle sha256:%s is corrupt", hex);
    if (strcmp(digest + strlen("sha256:"), hex) != 0)
        return wx_error_set(err, WX_ECORRUPT,
                            "bundle sha256:%s is corrupt: its files now hash "
                            "to %s",
                            hex, digest);
    return 0;
}

static int find_stored(wx_bundles *b, const char *ref, char hex[65],
                       char *path, wx_error *err)
{
    struct stat st;
    int rc = ref_hex(ref, hex, err);

    if (rc)
        return rc;
    store_path(b, hex, path);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return wx_error_set(err, WX_ENOTFOUND,
                            "bundle sha256:%s is not in the store %s (add "
                            "it with 'warmexec bundle add DIR')",
                            hex, b->root);
    return 0;
}

int wx_bundles_ensure_local(wx_bundles *b, const char *ref,
                            char digest[WX_DIGEST_LEN + 1], char *path,
                            wx_error *err)
{
    char hex[65];
    int rc = find_stored(b, ref, hex, path, err);

    if (!rc && !was_verified(b, hex)) {
        rc = check_stored(hex, path, err);
        if (!rc)
            mark_verified(b, hex);
    }
    if (!rc)
        snprintf(digest, WX_DIGEST_LEN + 1, "sha256:%s", hex);
    return rc;
}

int wx_bundles_verify(wx_bundles *b, const char *ref, wx_error *err)
{
    char hex[65], path[PATH_MAX];
    int rc = find_stored(b, ref, hex, path, err);

    return rc ? rc : check_stored(hex, path, err);
}

int wx_bundles_foreach(wx_bundles *b,
                       int (*fn)(void *user, const char *digest,
                                 const char *path),
                       void *user, wx_error *err)
{
    char dir[PATH_MAX];
    struct dirent *e;
    DIR *d;
    int rc = 0;

    snprintf(dir, sizeof(dir), "%s/sha256", b->root);
    d = opendir(dir);
    if (!d)
        return wx_error_set_sys(err, WX_EIO, errno, "open %s", dir);
    while (!rc && (e = readdir(d)) != NULL) {
        char digest[WX_DIGEST_LEN + 1], path[PATH_MAX];

        if (!wx__is_hex256(e->d_name))
            continue;
        snprintf(digest, sizeof(digest), "sha256:%.64s", e->d_name);
        store_path(b, e->d_name, path);
        rc = fn(user, digest, path);
    }
    closedir(d);
    return rc;
}

/* ---- runner commands ---- */

void wx_runner_release(wx_runner *r)
{
    strs_free(r->argv);
    strs_free(r->env);
    wx_free(r->digest);
    wx_free(r->path);
    memset(r, 0, sizeof(*r));
}

static int runner_argv(const wx_manifest *m, const wx_config *cfg,
                       char ***argv, wx_error *err)
{
    static const char *const tail[] = {"--bundle-path", "{bundle_path}",
                                       "--bundle-digest", "{bundle_digest}",
                                       NULL};
    int rc = strs_empty(argv, err);

    if (!rc && m->runner == WX_RUNNER_COMMAND) {
        for (size_t i = 0; !rc && m->command[i]; i++)
            rc = strs_push(argv, m->command[i], err);
        return rc;
    }
    if (!rc && m->runner == WX_RUNNER_NATIVE)
        rc = strs_push(argv, wx_config_str(cfg, WX_CONF_NATIVE_RUNNER), err);
    if (!rc && m->runner == WX_RUNNER_PYTHON) {
        rc = strs_push(argv, wx_config_str(cfg, WX_CONF_PYTHON), err);
        if (!rc)
            rc = strs_push(argv, wx_config_str(cfg, WX_CONF_PYTHON_RUNNER),
                           err);
    }
    for (size_t i = 0; !rc && tail[i]; i++)
        rc = strs_push(argv, tail[i], err);
    return rc;
}

static const char *runner_label(wx_runner_kind kind)
{
    return kind == WX_RUNNER_NATIVE   ? "native"
           : kind == WX_RUNNER_PYTHON ? "python"
                                      : "command";
}

int wx_runner_for(const wx_manifest *m, const char *digest, const char *path,
                  const wx_config *cfg, wx_runner *out, wx_error *err)
{
    int rc;

    memset(out, 0, sizeof(*out));
    rc = runner_argv(m, cfg, &out->argv, err);
    if (!rc)
        rc = strs_empty(&out->env, err);
    /* Python must not write __pycache__ into the read-only bundle (the
       manifest's env may still say otherwise). */
    if (!rc && m->runner == WX_RUNNER_PYTHON)
        rc = strs_push(&out->env, "PYTHONDONTWRITEBYTECODE=1", err);
    for (size_t i = 0; !rc && m->env && m->env[i]; i++)
        rc = strs_push(&out->env, m->env[i], err);
    if (!rc && (!(out->digest = wx__strdup(digest)) ||
                !(out->path = wx__strdup(path))))
        rc = wx_error_set(err, WX_ENOMEM, "out of memory");
    if (rc) {
        wx_runner_release(out);
        return rc;
    }
    out->spec = (wx_worker_spec){out->digest, out->path,
                                 runner_label(m->runner),
                                 (const char *const *)out->argv,
                                 (const char *const *)out->env};
    return 0;
}
