/*
 * The content-addressed store.  A front end checks refs and digests and
 * verifies what is read; two backends behind a table of operations keep
 * the bytes: the filesystem store and the memory store of tests.
 */
#include "internal.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <warmexec/cas.h>

#include "alloc.h"
#include "cas.h"
#include "fs.h"
#include "hash.h"

#define REF_PREFIX "cas://"
#define REF_PREFIX_LEN (sizeof(REF_PREFIX) - 1)
/* Bytes read at a time when hashing or comparing a stored object. */
#define CHUNK_BYTES 32768
/* Room left in PATH_MAX for "/sha256/<2>/<62>" and a temporary name. */
#define ROOT_MAX (PATH_MAX - 128)
/* BATCH: a put flushes by itself once this many objects are pending. */
#define PENDING_MAX 8192

/* Called by a backend's walk for each object, in ref order. */
typedef int (*visit_fn)(void *ctx, const char *hex, uint64_t size);

/*
 * What a backend does.  `hex` is always a validated 64-hex digest; the
 * front end builds refs, hashes and compares digests.
 */
typedef struct cas_ops {
    /* Store the bytes under `hex` (trusted); present and intact is ok. */
    int (*put)(wx_cas *cas, const char *hex, const void *data, size_t len,
               wx_error *err);
    /* Begin a stream (cas.h); NULL when the backend has none. */
    int (*open_stream)(wx_cas *cas, const uint8_t *data, size_t len,
                       wx__cas_stream **out, wx_error *err);
    /* Make every object stored so far durable. */
    int (*flush)(wx_cas *cas, wx_error *err);
    /* Read the stored bytes unverified; `*data` is NULL when empty. */
    int (*load)(wx_cas *cas, const char *hex, size_t max_len,
                uint8_t **data, size_t *len, wx_error *err);
    /* SHA-256 of the stored bytes. */
    int (*digest)(wx_cas *cas, const char *hex,
                  uint8_t out[WX_SHA256_LEN], wx_error *err);
    int (*exists)(wx_cas *cas, const char *hex, bool *exists,
                  wx_error *err);
    int (*remove)(wx_cas *cas, const char *hex, wx_error *err);
    int (*walk)(wx_cas *cas, visit_fn visit, void *ctx, wx_error *err);
    /* Where the object lives, for messages: a path, or "memory store". */
    void (*locate)(const wx_cas *cas, const char *hex, char *out,
                   size_t size);
    void (*close)(wx_cas *cas);
} cas_ops;

/* The first member of every backend's handle. */
struct wx_cas {
    const cas_ops *ops;
};

static int oom(wx_error *err)
{
    return wx_error_set(err, WX_ENOMEM, "out of memory");
}

static int not_found(const char *hex, wx_error *err)
{
    return wx_error_set(err, WX_ENOTFOUND, "CAS object cas://%s not found",
                        hex);
}

static int too_big(const char *hex, uint64_t size, size_t max_len,
                   wx_error *err)
{
    return wx_error_set(err, WX_ETOOBIG,
                        "CAS object cas://%s has %llu bytes, more than the "
                        "limit of %zu",
                        hex, (unsigned long long)size, max_len);
}

/* ---- front end ---- */

int wx_cas_parse_ref(const char *ref, char hex[65], wx_error *err)
{
    if (!ref || strncmp(ref, REF_PREFIX, REF_PREFIX_LEN) != 0 ||
        !wx__is_hex256(ref + REF_PREFIX_LEN))
        return wx_error_set(err, WX_EINVAL,
                            "invalid CAS ref '%.100s': must be "
                            "cas://<64 lowercase hex>",
                            ref ? ref : "(null)");
    if (hex)
        memcpy(hex, ref + REF_PREFIX_LEN, WX_HEX256_LEN + 1);
    return 0;
}

/* WX_ECORRUPT unless `actual` is the digest named by `hex`. */
static int check_digest(const wx_cas *cas, const char *hex,
                        const uint8_t actual[WX_SHA256_LEN], wx_error *err)
{
    char actual_hex[WX_HEX256_LEN + 1], where[PATH_MAX];

    wx__hex(actual, WX_SHA256_LEN, actual_hex);
    if (strcmp(actual_hex, hex) == 0)
        return 0;
    cas->ops->locate(cas, hex, where, sizeof(where));
    return wx_error_set(err, WX_ECORRUPT,
                        "CAS object cas://%s is corrupt: its content hashes "
                        "to %s (%s)",
                        hex, actual_hex, where);
}

int wx__cas_stream_open(wx_cas *cas, const uint8_t *data, size_t len,
                        wx__cas_stream **out, wx_error *err)
{
    *out = NULL;
    if (!cas->ops->open_stream)
        return wx_error_set(err, WX_EINVAL, "this store cannot stream");
    return cas->ops->open_stream(cas, data, len, out, err);
}

/*
 * A big object already in memory: written by this thread while the
 * stream's helper hashes it, so storing costs about the slower of the
 * two instead of their sum.
 */
static int put_streamed(wx_cas *cas, const void *data, size_t len,
                        char hex[WX_HEX256_LEN + 1], wx_error *err)
{
    wx__cas_stream *s;
    int rc = wx__cas_stream_open(cas, data, len, &s, err);

    if (rc)
        return rc;
    wx__cas_stream_arrived(s, len);
    return wx__cas_stream_finish(s, hex, err);
}

int wx_cas_put(wx_cas *cas, const void *data, size_t len,
               const char *sha256_hex, char ref[WX_CAS_REF_LEN + 1],
               wx_error *err)
{
    char hex[WX_HEX256_LEN + 1];
    int rc;

    if (!data && len)
        return wx_error_set(err, WX_EINVAL, "CAS put: no data");
    if (sha256_hex && !wx__is_hex256(sha256_hex))
        return wx_error_set(err, WX_EINVAL,
                            "CAS put: digest '%.100s' is not 64 lowercase "
                            "hex",
                            sha256_hex);
    if (sha256_hex) {
        memcpy(hex, sha256_hex, sizeof(hex));
        rc = cas->ops->put(cas, hex, data, len, err);
    } else if (len >= WX__CAS_STREAM_MIN && cas->ops->open_stream) {
        rc = put_streamed(cas, data, len, hex, err);
    } else {
        rc = wx__sha256_hex(data, len, hex, err);
        if (!rc)
            rc = cas->ops->put(cas, hex, data, len, err);
    }
    if (!rc)
        snprintf(ref, WX_CAS_REF_LEN + 1, REF_PREFIX "%s", hex);
    return rc;
}

int wx_cas_get(wx_cas *cas, const char *ref, size_t max_len, uint8_t **data,
               size_t *len, wx_error *err)
{
    char hex[WX_HEX256_LEN + 1];
    uint8_t digest[WX_SHA256_LEN], *bytes = NULL;
    size_t n = 0;
    int rc;

    *data = NULL;
    *len = 0;
    rc = wx_cas_parse_ref(ref, hex, err);
    if (!rc)
        rc = cas->ops->load(cas, hex, max_len, &bytes, &n, err);
    if (!rc)
        rc = wx__sha256(bytes, n, digest, err);
    if (!rc)
        rc = check_digest(cas, hex, digest, err);
    if (rc || n == 0) {
        wx_free(bytes);
        return rc;
    }
    *data = bytes;
    *len = n;
    return 0;
}

int wx_cas_exists(wx_cas *cas, const char *ref, bool *exists, wx_error *err)
{
    char hex[WX_HEX256_LEN + 1];
    int rc = wx_cas_parse_ref(ref, hex, err);

    *exists = false;
    return rc ? rc : cas->ops->exists(cas, hex, exists, err);
}

int wx_cas_verify(wx_cas *cas, const char *ref, wx_error *err)
{
    char hex[WX_HEX256_LEN + 1];
    uint8_t digest[WX_SHA256_LEN];
    int rc = wx_cas_parse_ref(ref, hex, err);

    if (!rc)
        rc = cas->ops->digest(cas, hex, digest, err);
    return rc ? rc : check_digest(cas, hex, digest, err);
}

int wx_cas_remove(wx_cas *cas, const char *ref, wx_error *err)
{
    char hex[WX_HEX256_LEN + 1];
    int rc = wx_cas_parse_ref(ref, hex, err);

    return rc ? rc : cas->ops->remove(cas, hex, err);
}

typedef struct foreach_ctx {
    int (*fn)(void *user, const char *ref, uint64_t size);
    void *user;
} foreach_ctx;

static int visit_ref(void *ctx, const char *hex, uint64_t size)
{
    const foreach_ctx *f = ctx;
    char ref[WX_CAS_REF_LEN + 1];

    snprintf(ref, sizeof(ref), REF_PREFIX "%s", hex);
    return f->fn(f->user, ref, size);
}

int wx_cas_foreach(wx_cas *cas,
                   int (*fn)(void *user, const char *ref, uint64_t size),
                   void *user, wx_error *err)
{
    foreach_ctx ctx = {fn, user};

    return cas->ops->walk(cas, visit_ref, &ctx, err);
}

int wx_cas_flush(wx_cas *cas, wx_error *err)
{
    return cas->ops->flush ? cas->ops->flush(cas, err) : 0;
}

void wx_cas_close(wx_cas *cas)
{
    if (cas)
        cas->ops->close(cas);
}

/* ---- filesystem backend ---- */

typedef struct fs_cas {
    wx_cas base;
    wx_cas_sync sync;
    char *objects; /* "<root>/sha256" */
    /* Shard directories known to exist (a mkdir per put costs). */
    atomic_bool shard_ready[256];
    /* BATCH: objects stored since the last flush, and their shards. */
    pthread_mutex_t mu;
    atomic_bool new_dirs; /* shard directories created since the flush */
    char (*pending)[WX_HEX256_LEN + 1];
    size_t n_pending, cap_pending;
} fs_cas;

static void object_path(const fs_cas *c, const char *hex, char *out,
                        size_t size)
{
    snprintf(out, size, "%s/%.2s/%s", c->objects, hex, hex + 2);
}

static void shard_dir(const fs_cas *c, const char *hex, char *out,
                      size_t size)
{
    snprintf(out, size, "%s/%.2s", c->objects, hex);
}

static void fs_locate(const wx_cas *cas, const char *hex, char *out,
                      size_t size)
{
    object_path((const fs_cas *)cas, hex, out, size);
}

/*
 * mkdir that accepts an existing directory.  Under FULL a directory it
 * creates is made durable at once (under BATCH at the next flush) (its parent is synced), since the objects
 * below it are only as durable as the path that leads to them.
 */
static int ensure_dir(fs_cas *c, const char *path, wx_error *err)
{
    struct stat st;

    if (mkdir(path, 0755) == 0) {
        if (c->sync == WX_CAS_SYNC_BATCH)
            atomic_store(&c->new_dirs, true);
        return c->sync == WX_CAS_SYNC_FULL ? wx__fs_sync_parent(path, err)
                                           : 0;
    }
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    if (errno == EEXIST)
        errno = ENOTDIR;
    return wx_error_set_sys(err, WX_EIO, errno, "mkdir %s", path);
}

/* mkdir -p with ensure_dir() at each level. */
static int ensure_dirs(fs_cas *c, const char *path, wx_error *err)
{
    char copy[PATH_MAX];
    int rc;

    snprintf(copy, sizeof(copy), "%s", path);
    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        rc = ensure_dir(c, copy, err);
        *p = '/';
        if (rc)
            return rc;
    }
    return ensure_dir(c, copy, err);
}

/* Whether the open file `fd` holds exactly data[0, len). */
static int same_content(int fd, const char *path, const void *data,
                        size_t len, bool *same, wx_error *err)
{
    uint8_t chunk[CHUNK_BYTES];
    const uint8_t *expected = data;
    size_t done = 0;
    struct stat st;

    *same = false;
    if (fstat(fd, &st) != 0)
        return wx_error_set_sys(err, WX_EIO, errno, "stat %s", path);
    if ((uint64_t)st.st_size != (uint64_t)len)
        return 0;
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return wx_error_set_sys(err, WX_EIO, errno, "read %s", path);
        if (n == 0)
            break;
        if ((size_t)n > len - done ||
            memcmp(chunk, expected + done, (size_t)n) != 0)
            return 0;
        done += (size_t)n;
    }
    *same = done == len;
    return 0;
}

/*
 * Whether the object at `path` is present with the right content.
 * Under FULL a present object is synced before it counts: its writer (a
 * process still between link and fsync, or one using SYNC_NONE) may not
 * have made it durable yet.  Both fsyncs are cheap when nothing is dirty.
 */
static int check_present(const fs_cas *c, const char *path, const void *data,
                         size_t len, bool *intact, wx_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc;

    *intact = false;
    if (fd < 0)
        return errno == ENOENT ? 0
                               : wx_error_set_sys(err, WX_EIO, errno,
                                                  "open %s", path);
    rc = same_content(fd, path, data, len, intact, err);
    if (!rc && *intact && c->sync == WX_CAS_SYNC_FULL) {
        if (fsync(fd) != 0)
            rc = wx_error_set_sys(err, WX_EIO, errno, "fsync %s", path);
        else
            rc = wx__fs_sync_parent(path, err);
    }
    close(fd);
    return rc;
}

/* File systems without hard links answer link() with one of these. */
static bool link_unsupported(int e)
{
    return e == EPERM || e == EOPNOTSUPP || e == ENOSYS;
}

/*
 * Give the temporary file `tmp` its name.  link() never replaces an
 * object, so a reader never sees the file under its name change; only
 * a damaged object (or a file system without hard links) is replaced,
 * atomically, by rename().  `*renamed` tells whether `tmp` is gone.
 */
static int link_into_place(const fs_cas *c, const char *tmp,
                           const char *path, const void *data, size_t len,
                           bool *renamed, wx_error *err)
{
    bool intact;
    int rc;

    *renamed = false;
    if (link(tmp, path) == 0)
        return 0;
    if (errno == EEXIST) {
        rc = check_present(c, path, data, len, &intact, err);
        if (rc || intact)
            return rc;
    } else if (!link_unsupported(errno)) {
        return wx_error_set_sys(err, WX_EIO, errno, "link %s to %s", tmp,
                                path);
    }
    if (rename(tmp, path) != 0)
        return wx_error_set_sys(err, WX_EIO, errno, "rename %s to %s", tmp,
                                path);
    *renamed = true;
    return 0;
}

/* ---- durability (docs/cas.md) ---- */

/* fsync the object `hex` and its directory. */
static int sync_object(const fs_cas *c, const char *hex, wx_error *err)
{
    char path[PATH_MAX];
    int rc;

    object_path(c, hex, path, sizeof(path));
    rc = wx__fs_sync_path(path, true, err); /* removed since is fine */
    return rc ? rc : wx__fs_sync_parent(path, err);
}

static int shard_index(const char *hex)
{
    int hi = hex[0] <= '9' ? hex[0] - '0' : hex[0] - 'a' + 10;
    int lo = hex[1] <= '9' ? hex[1] - '0' : hex[1] - 'a' + 10;

    return hi * 16 + lo;
}

/* BATCH: fsync every pending object, then each directory holding one. */
static int fs_flush(wx_cas *cas, wx_error *err)
{
    fs_cas *c = (fs_cas *)cas;
    char (*list)[WX_HEX256_LEN + 1];
    bool dirty[256] = {false};
    char path[PATH_MAX];
    size_t n;
    int rc = 0;

    pthread_mutex_lock(&c->mu);
    list = c->pending;
    n = c->n_pending;
    c->pending = NULL;
    c->n_pending = c->cap_pending = 0;
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < n && !rc; i++) {
        object_path(c, list[i], path, sizeof(path));
        rc = wx__fs_sync_path(path, true, err);
        dirty[shard_index(list[i])] = true;
    }
    for (int i = 0; i < 256 && !rc; i++) {
        if (!dirty[i])
            continue;
        snprintf(path, sizeof(path), "%s/%02x", c->objects, i);
        rc = wx__fs_sync_path(path, false, err);
    }
    if (!rc && atomic_exchange(&c->new_dirs, false))
        rc = wx__fs_sync_path(c->objects, false, err);
    wx_free(list);
    return rc;
}

/*
 * After storing (or finding) `hex`: under BATCH note it for the next
 * flush, which a put does itself once PENDING_MAX are waiting.  Without
 * memory for the note the object is synced now.
 */
static int remember(fs_cas *c, const char *hex, wx_error *err)
{
    bool full;

    if (c->sync != WX_CAS_SYNC_BATCH)
        return 0;
    pthread_mutex_lock(&c->mu);
    if (c->n_pending == c->cap_pending) {
        size_t cap = c->cap_pending ? 2 * c->cap_pending : 64;
        void *grown = wx__realloc(c->pending, cap * sizeof(*c->pending));

        if (!grown) {
            pthread_mutex_unlock(&c->mu);
            return sync_object(c, hex, err);
        }
        c->pending = grown;
        c->cap_pending = cap;
    }
    memcpy(c->pending[c->n_pending++], hex, WX_HEX256_LEN + 1);
    full = c->n_pending >= PENDING_MAX;
    pthread_mutex_unlock(&c->mu);
    return full ? fs_flush(&c->base, err) : 0;
}

/* ---- put ---- */

/* The shard directory of `hex`, created once and then remembered. */
static int ensure_shard(fs_cas *c, const char *hex, wx_error *err)
{
    char dir[PATH_MAX];
    int i = shard_index(hex), rc;

    if (atomic_load_explicit(&c->shard_ready[i], memory_order_relaxed))
        return 0;
    shard_dir(c, hex, dir, sizeof(dir));
    rc = ensure_dir(c, dir, err);
    if (!rc)
        atomic_store_explicit(&c->shard_ready[i], true,
                              memory_order_relaxed);
    return rc;
}

static bool shard_missing(const fs_cas *c, const char *hex)
{
    char dir[PATH_MAX];
    struct stat st;

    shard_dir(c, hex, dir, sizeof(dir));
    return stat(dir, &st) != 0 && errno == ENOENT;
}

/* Write `data` into a new temporary file in `dir` (synced under FULL). */
static int write_temp(const fs_cas *c, const char *dir, const void *data,
                      size_t len, char *tmp, size_t tmp_size, wx_error *err)
{
    int fd = wx__fs_open_temp(dir, "put", tmp, tmp_size, 0444, err), rc;

    if (fd < 0)
        return fd;
    rc = wx__fs_write_all(fd, data, len, err);
    if (!rc && c->sync == WX_CAS_SYNC_FULL && fsync(fd) != 0)
        rc = wx_error_set_sys(err, WX_EIO, errno, "fsync %s", tmp);
    if (close(fd) != 0 && !rc)
        rc = wx_error_set_sys(err, WX_EIO, errno, "close %s", tmp);
    if (rc)
        unlink(tmp);
    return rc;
}

/*
 * Give the temporary file `tmp` (holding `data`) the name of object
 * `hex`; then make the name durable (FULL) or note it (BATCH).  A shard
 * directory removed since it was seen is created again.
 */
static int publish_temp(fs_cas *c, const char *hex, const char *tmp,
                        const void *data, size_t len, wx_error *err)
{
    char path[PATH_MAX];
    bool renamed = false;
    int rc = ensure_shard(c, hex, err);

    object_path(c, hex, path, sizeof(path));
    if (!rc)
        rc = link_into_place(c, tmp, path, data, len, &renamed, err);
    if (rc && shard_missing(c, hex)) {
        atomic_store(&c->shard_ready[shard_index(hex)], false);
        rc = ensure_shard(c, hex, err);
        if (!rc)
            rc = link_into_place(c, tmp, path, data, len, &renamed, err);
    }
    if (!renamed)
        unlink(tmp);
    if (!rc && c->sync == WX_CAS_SYNC_FULL)
        rc = wx__fs_sync_parent(path, err);
    return rc ? rc : remember(c, hex, err);
}

static int fs_put(wx_cas *cas, const char *hex, const void *data, size_t len,
                  wx_error *err)
{
    fs_cas *c = (fs_cas *)cas;
    char path[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX];
    bool intact;
    int rc;

    object_path(c, hex, path, sizeof(path));
    rc = check_present(c, path, data, len, &intact, err);
    if (!rc && intact) {
        rc = remember(c, hex, err);
    } else if (!rc) {
        shard_dir(c, hex, dir, sizeof(dir));
        rc = ensure_shard(c, hex, err);
        if (!rc)
            rc = write_temp(c, dir, data, len, tmp, sizeof(tmp), err);
        if (!rc)
            rc = publish_temp(c, hex, tmp, data, len, err);
    }
    return rc ? wx_error_prefix(err, rc, "cannot store cas://%s", hex) : 0;
}

/* ---- streams (cas.h) ---- */

struct wx__cas_stream {
    fs_cas *c;
    const uint8_t *data;
    size_t len;
    /* The caller's side: the temporary file and what is written to it. */
    int fd;
    char tmp[PATH_MAX];
    size_t written;
    int write_rc;
    wx_error write_err;
    /* The hashing side: a helper thread, or the caller without one. */
    wx__sha256_ctx sha;
    bool threaded;
    pthread_t hasher;
    pthread_mutex_t mu;
    pthread_cond_t more;
    size_t arrived; /* under mu: bytes there to hash */
    bool cancel;    /* under mu: stop hashing */
    size_t hashed;  /* the hasher's own */
    int hash_rc;
    wx_error hash_err;
};

static void hash_range(wx__cas_stream *s, size_t upto)
{
    if (!s->hash_rc && upto > s->hashed)
        s->hash_rc = wx__sha256_update(&s->sha, s->data + s->hashed,
                                       upto - s->hashed, &s->hash_err);
    s->hashed = upto;
}

/* The helper: hash what has arrived until the last byte or a cancel. */
static void *hasher_main(void *arg)
{
    wx__cas_stream *s = arg;

    while (s->hashed < s->len) {
        size_t upto;

        pthread_mutex_lock(&s->mu);
        while (s->arrived == s->hashed && !s->cancel)
            pthread_cond_wait(&s->more, &s->mu);
        upto = s->cancel ? s->hashed : s->arrived;
        pthread_mutex_unlock(&s->mu);
        if (upto == s->hashed)
            break; /* cancelled */
        hash_range(s, upto);
    }
    return NULL;
}

static void stream_free(wx__cas_stream *s)
{
    wx__sha256_abort(&s->sha);
    pthread_cond_destroy(&s->more);
    pthread_mutex_destroy(&s->mu);
    wx_free(s);
}

static int fs_open_stream(wx_cas *cas, const uint8_t *data, size_t len,
                          wx__cas_stream **out, wx_error *err)
{
    fs_cas *c = (fs_cas *)cas;
    wx__cas_stream *s = wx__calloc(1, sizeof(*s));
    int rc;

    if (!s)
        return oom(err);
    *s = (wx__cas_stream){.c = c, .data = data, .len = len, .fd = -1,
                          .write_err = WX_ERROR_INIT,
                          .sha = WX__SHA256_INIT,
                          .hash_err = WX_ERROR_INIT};
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->more, NULL);
    rc = wx__sha256_begin(&s->sha, err);
    if (!rc) {
        s->fd = wx__fs_open_temp(c->objects, "put", s->tmp, sizeof(s->tmp),
                                 0444, err);
        rc = s->fd < 0 ? s->fd : 0;
    }
    if (rc) {
        stream_free(s);
        return rc;
    }
    /* Without a thread the caller hashes as bytes arrive. */
    s->threaded = pthread_create(&s->hasher, NULL, hasher_main, s) == 0;
    *out = s;
    return 0;
}

void wx__cas_stream_arrived(wx__cas_stream *s, size_t n)
{
    if (n > s->len || n <= s->written)
        return;
    if (!s->write_rc)
        s->write_rc = wx__fs_write_all(s->fd, s->data + s->written,
                                       n - s->written, &s->write_err);
    s->written = n;
    if (!s->threaded) {
        hash_range(s, n);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->arrived = n;
    pthread_cond_signal(&s->more);
    pthread_mutex_unlock(&s->mu);
}

/* Stop the helper (at once when `cancel`, else after the last byte). */
static void stop_hasher(wx__cas_stream *s, bool cancel)
{
    if (!s->threaded)
        return;
    pthread_mutex_lock(&s->mu);
    s->cancel = cancel;
    pthread_cond_signal(&s->more);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->hasher, NULL);
    s->threaded = false;
}

/* Close the temporary file, synced under FULL; the first failure wins. */
static int close_temp(wx__cas_stream *s, wx_error *err)
{
    int rc = 0;

    if (s->write_rc)
        rc = wx_error_set(err, s->write_rc, "%s", s->write_err.message);
    else if (s->c->sync == WX_CAS_SYNC_FULL && fsync(s->fd) != 0)
        rc = wx_error_set_sys(err, WX_EIO, errno, "fsync %s", s->tmp);
    if (close(s->fd) != 0 && !rc)
        rc = wx_error_set_sys(err, WX_EIO, errno, "close %s", s->tmp);
    s->fd = -1;
    return rc;
}

int wx__cas_stream_finish(wx__cas_stream *s, char hex[WX_HEX256_LEN + 1],
                          wx_error *err)
{
    uint8_t digest[WX_SHA256_LEN];
    int rc;

    if (s->written < s->len)
        WX_BUG("CAS stream finished before its last byte");
    stop_hasher(s, false);
    rc = close_temp(s, err);
    if (!rc && s->hash_rc)
        rc = wx_error_set(err, s->hash_rc, "%s", s->hash_err.message);
    if (!rc)
        rc = wx__sha256_finish(&s->sha, digest, err);
    if (rc) {
        unlink(s->tmp);
        rc = wx_error_prefix(err, rc, "cannot store an object of %zu bytes",
                             s->len);
    } else {
        wx__hex(digest, sizeof(digest), hex);
        rc = publish_temp(s->c, hex, s->tmp, s->data, s->len, err);
        if (rc)
            rc = wx_error_prefix(err, rc, "cannot store cas://%s", hex);
    }
    stream_free(s);
    return rc;
}

void wx__cas_stream_abort(wx__cas_stream *s)
{
    if (!s)
        return;
    stop_hasher(s, true);
    if (s->fd >= 0)
        close(s->fd);
    unlink(s->tmp);
    stream_free(s);
}

/* Open an object for reading: WX_ENOTFOUND when absent. */
static int open_object(const fs_cas *c, const char *hex, char *path,
                       size_t size, wx_error *err)
{
    int fd;

    object_path(c, hex, path, size);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        return fd;
    if (errno == ENOENT)
        return not_found(hex, err);
    return wx_error_set_sys(err, WX_EIO, errno,
                            "cannot read CAS object cas://%s: open %s", hex,
                            path);
}

/* Read `size` bytes (fewer if the file is shorter: the digest tells). */
static int read_object(int fd, const char *path, size_t size, uint8_t **out,
                       size_t *len, wx_error *err)
{
    uint8_t *data = size ? wx__malloc(size) : NULL;
    size_t done = 0;

    if (size && !data)
        return oom(err);
    while (done < size) {
        ssize_t n = read(fd, data + done, size - done);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            wx_free(data);
            return wx_error_set_sys(err, WX_EIO, errno, "read %s", path);
        }
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *out = data;
    *len = done;
    return 0;
}

static int fs_load(wx_cas *cas, const char *hex, size_t max_len,
                   uint8_t **data, size_t *len, wx_error *err)
{
    char path[PATH_MAX];
    struct stat st;
    int fd = open_object((const fs_cas *)cas, hex, path, sizeof(path), err);
    int rc;

    if (fd < 0)
        return fd;
    if (fstat(fd, &st) != 0)
        rc = wx_error_set_sys(err, WX_EIO, errno, "stat %s", path);
    else if ((uint64_t)st.st_size > (uint64_t)max_len)
        rc = too_big(hex, (uint64_t)st.st_size, max_len, err);
    else
        rc = read_object(fd, path, (size_t)st.st_size, data, len, err);
    close(fd);
    return rc;
}

static int fs_digest(wx_cas *cas, const char *hex,
                     uint8_t out[WX_SHA256_LEN], wx_error *err)
{
    char path[PATH_MAX];
    uint8_t chunk[CHUNK_BYTES];
    wx__sha256_ctx h = WX__SHA256_INIT;
    int fd = open_object((const fs_cas *)cas, hex, path, sizeof(path), err);
    int rc;

    if (fd < 0)
        return fd;
    rc = wx__sha256_begin(&h, err);
    while (!rc) {
        ssize_t n = read(fd, chunk, sizeof(chunk));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            rc = wx_error_set_sys(err, WX_EIO, errno, "read %s", path);
        else if (n == 0)
            break;
        else
            rc = wx__sha256_update(&h, chunk, (size_t)n, err);
    }
    close(fd);
    if (rc) {
        wx__sha256_abort(&h);
        return rc;
    }
    return wx__sha256_finish(&h, out, err);
}

static int fs_exists(wx_cas *cas, const char *hex, bool *exists,
                     wx_error *err)
{
    char path[PATH_MAX];
    struct stat st;

    object_path((const fs_cas *)cas, hex, path, sizeof(path));
    if (stat(path, &st) == 0) {
        *exists = true;
        return 0;
    }
    if (errno == ENOENT)
        return 0;
    return wx_error_set_sys(err, WX_EIO, errno, "stat %s", path);
}

static int fs_remove(wx_cas *cas, const char *hex, wx_error *err)
{
    char path[PATH_MAX];

    object_path((const fs_cas *)cas, hex, path, sizeof(path));
    if (unlink(path) == 0 || errno == ENOENT)
        return 0;
    return wx_error_set_sys(err, WX_EIO, errno, "remove %s", path);
}

/* scandir filters: shard directories and object files by their names. */
static int is_shard_name(const struct dirent *e)
{
    return strlen(e->d_name) == 2 && wx__is_lower_hex(e->d_name, 2);
}

static int is_object_name(const struct dirent *e)
{
    return strlen(e->d_name) == WX_HEX256_LEN - 2 &&
           wx__is_lower_hex(e->d_name, WX_HEX256_LEN - 2);
}

/* Byte order, whatever the locale (alphasort would use strcoll). */
static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static void free_names(struct dirent **names, int n)
{
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Visit the objects of one shard directory; temporary files are skipped. */
static int walk_shard(const fs_cas *c, const char *shard, visit_fn visit,
                      void *ctx, wx_error *err)
{
    struct dirent **names = NULL;
    char dir[PATH_MAX];
    int n, rc = 0;

    shard_dir(c, shard, dir, sizeof(dir));
    n = scandir(dir, &names, is_object_name, by_name);
    if (n < 0)
        return errno == ENOENT ? 0
                               : wx_error_set_sys(err, WX_EIO, errno,
                                                  "read directory %s", dir);
    for (int i = 0; i < n && !rc; i++) {
        char hex[WX_HEX256_LEN + 1], path[PATH_MAX];
        struct stat st;

        memcpy(hex, shard, 2);
        memcpy(hex + 2, names[i]->d_name, WX_HEX256_LEN - 2 + 1);
        object_path(c, hex, path, sizeof(path));
        if (stat(path, &st) != 0)
            rc = errno == ENOENT ? 0
                                 : wx_error_set_sys(err, WX_EIO, errno,
                                                    "stat %s", path);
        else if (S_ISREG(st.st_mode))
            rc = visit(ctx, hex, (uint64_t)st.st_size);
    }
    free_names(names, n);
    return rc;
}

static int fs_walk(wx_cas *cas, visit_fn visit, void *ctx, wx_error *err)
{
    const fs_cas *c = (const fs_cas *)cas;
    struct dirent **names = NULL;
    int n = scandir(c->objects, &names, is_shard_name, by_name), rc = 0;

    if (n < 0)
        return wx_error_set_sys(err, WX_EIO, errno, "read directory %s",
                                c->objects);
    for (int i = 0; i < n && !rc; i++)
        rc = walk_shard(c, names[i]->d_name, visit, ctx, err);
    free_names(names, n);
    return rc;
}

/* Closing flushes (BATCH); an error there has no one to go to. */
static void fs_close(wx_cas *cas)
{
    fs_cas *c = (fs_cas *)cas;

    if (c->n_pending)
        fs_flush(cas, NULL);
    pthread_mutex_destroy(&c->mu);
    wx_free(c->objects);
    wx_free(c);
}

static const cas_ops fs_ops = {fs_put,    fs_open_stream, fs_flush,
                               fs_load,   fs_digest,      fs_exists,
                               fs_remove, fs_walk,        fs_locate,
                               fs_close};

int wx_cas_open_fs(const char *root, wx_cas_sync sync, wx_cas **out,
                   wx_error *err)
{
    fs_cas *c;
    int rc;

    *out = NULL;
    if (!root[0] || strlen(root) > ROOT_MAX)
        return wx_error_set(err, WX_EINVAL,
                            "CAS root must be a path of 1 to %d bytes",
                            ROOT_MAX);
    c = wx__calloc(1, sizeof(*c));
    if (!c)
        return oom(err);
    c->base.ops = &fs_ops;
    c->sync = sync;
    pthread_mutex_init(&c->mu, NULL);
    c->objects = wx__malloc(strlen(root) + sizeof("/sha256"));
    if (!c->objects) {
        fs_close(&c->base);
        return oom(err);
    }
    sprintf(c->objects, "%s/sha256", root);
    rc = ensure_dirs(c, c->objects, err);
    if (rc) {
        fs_close(&c->base);
        return wx_error_prefix(err, rc, "cannot open the CAS at %s", root);
    }
    *out = &c->base;
    return 0;
}

/* ---- memory backend ---- */

typedef struct mem_object {
    struct mem_object *next;
    char hex[WX_HEX256_LEN + 1];
    size_t len;
    uint8_t data[];
} mem_object;

/* Objects hashed into 256 lists by their first digest byte. */
typedef struct mem_cas {
    wx_cas base;
    pthread_mutex_t mu;
    mem_object *buckets[256];
} mem_cas;

static unsigned hex_value(char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'a' + 10);
}

/* The link that points at the object `hex`, or at the NULL ending its list. */
static mem_object **find_link(mem_cas *m, const char *hex)
{
    mem_object **link = &m->buckets[hex_value(hex[0]) * 16 +
                                    hex_value(hex[1])];

    while (*link && strcmp((*link)->hex, hex) != 0)
        link = &(*link)->next;
    return link;
}

static int mem_put(wx_cas *cas, const char *hex, const void *data,
                   size_t len, wx_error *err)
{
    mem_cas *m = (mem_cas *)cas;
    mem_object *obj = wx__malloc(sizeof(*obj) + len), **link;

    if (!obj)
        return oom(err);
    memcpy(obj->hex, hex, sizeof(obj->hex));
    obj->len = len;
    if (len)
        memcpy(obj->data, data, len);
    pthread_mutex_lock(&m->mu);
    link = find_link(m, hex);
    /* Memory objects cannot be damaged after the fact: present is done. */
    if (!*link) {
        obj->next = NULL;
        *link = obj;
        obj = NULL;
    }
    pthread_mutex_unlock(&m->mu);
    wx_free(obj);
    return 0;
}

static int mem_load(wx_cas *cas, const char *hex, size_t max_len,
                    uint8_t **data, size_t *len, wx_error *err)
{
    mem_cas *m = (mem_cas *)cas;
    const mem_object *obj;
    int rc = 0;

    pthread_mutex_lock(&m->mu);
    obj = *find_link(m, hex);
    if (!obj)
        rc = not_found(hex, err);
    else if (obj->len > max_len)
        rc = too_big(hex, obj->len, max_len, err);
    else if (obj->len && !(*data = wx__malloc(obj->len)))
        rc = oom(err);
    else if (obj->len)
        memcpy(*data, obj->data, obj->len);
    if (!rc)
        *len = obj->len;
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_digest(wx_cas *cas, const char *hex,
                      uint8_t out[WX_SHA256_LEN], wx_error *err)
{
    mem_cas *m = (mem_cas *)cas;
    const mem_object *obj;
    int rc;

    pthread_mutex_lock(&m->mu);
    obj = *find_link(m, hex);
    rc = obj ? wx__sha256(obj->data, obj->len, out, err)
             : not_found(hex, err);
    pthread_mutex_unlock(&m->mu);
    return rc;
}

static int mem_exists(wx_cas *cas, const char *hex, bool *exists,
                      wx_error *err)
{
    mem_cas *m = (mem_cas *)cas;

    pthread_mutex_lock(&m->mu);
    *exists = *find_link(m, hex) != NULL;
    pthread_mutex_unlock(&m->mu);
    return 0;
}

static int mem_remove(wx_cas *cas, const char *hex, wx_error *err)
{
    mem_cas *m = (mem_cas *)cas;
    mem_object **link, *obj;

    pthread_mutex_lock(&m->mu);
    link = find_link(m, hex);
    obj = *link;
    if (obj)
        *link = obj->next;
    pthread_mutex_unlock(&m->mu);
    wx_free(obj);
    return 0;
}

typedef struct mem_entry {
    char hex[WX_HEX256_LEN + 1];
    uint64_t size;
} mem_entry;

static int compare_entries(const void *a, const void *b)
{
    return strcmp(((const mem_entry *)a)->hex, ((const mem_entry *)b)->hex);
}

/* Copy the names and sizes of all objects, sorted, into a new array. */
static int mem_snapshot(mem_cas *m, mem_entry **out, size_t *n_out,
                        wx_error *err)
{
    mem_entry *entries = NULL;
    size_t n = 0, i = 0;

    pthread_mutex_lock(&m->mu);
    for (size_t b = 0; b < WX_ARRAY_LEN(m->buckets); b++)
        for (const mem_object *o = m->buckets[b]; o; o = o->next)
            n++;
    entries = wx__calloc(n ? n : 1, sizeof(*entries));
    for (size_t b = 0; entries && b < WX_ARRAY_LEN(m->buckets); b++)
        for (const mem_object *o = m->buckets[b]; o; o = o->next, i++) {
            memcpy(entries[i].hex, o->hex, sizeof(o->hex));
            entries[i].size = o->len;
        }
    pthread_mutex_unlock(&m->mu);
    if (!entries)
        return oom(err);
    qsort(entries, n, sizeof(*entries), compare_entries);
    *out = entries;
    *n_out = n;
    return 0;
}

/* Visits a snapshot, so `visit` may call back into the store. */
static int mem_walk(wx_cas *cas, visit_fn visit, void *ctx, wx_error *err)
{
    mem_entry *entries = NULL;
    size_t n = 0;
    int rc = mem_snapshot((mem_cas *)cas, &entries, &n, err);

    for (size_t i = 0; !rc && i < n; i++)
        rc = visit(ctx, entries[i].hex, entries[i].size);
    wx_free(entries);
    return rc;
}

static void mem_locate(const wx_cas *cas, const char *hex, char *out,
                       size_t size)
{
    snprintf(out, size, "memory store");
}

static void mem_close(wx_cas *cas)
{
    mem_cas *m = (mem_cas *)cas;

    for (size_t b = 0; b < WX_ARRAY_LEN(m->buckets); b++) {
        mem_object *o = m->buckets[b];

        while (o) {
            mem_object *next = o->next;

            wx_free(o);
            o = next;
        }
    }
    pthread_mutex_destroy(&m->mu);
    wx_free(m);
}

static const cas_ops mem_ops = {mem_put,    NULL,       NULL,
                                mem_load,   mem_digest, mem_exists,
                                mem_remove, mem_walk,   mem_locate,
                                mem_close};

int wx_cas_open_memory(wx_cas **out, wx_error *err)
{
    mem_cas *m = wx__calloc(1, sizeof(*m));

    *out = NULL;
    if (!m)
        return oom(err);
    m->base.ops = &mem_ops;
    pthread_mutex_init(&m->mu, NULL);
    *out = &m->base;
    return 0;
}
