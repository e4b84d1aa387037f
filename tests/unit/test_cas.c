/*
 * Unit tests of the content-addressed store.  The shared tests run
 * against both backends (filesystem and memory); the rest are specific
 * to the filesystem store: layout, modes, processes, damage and repair.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <warmexec/cas.h>

#include "alloc.h"
#include "cas.h"
#include "hash.h"

/* SHA-256 of "hello" and of nothing. */
#define HELLO_HEX                                                             \
    "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
#define EMPTY_HEX                                                             \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* EMPTY_HEX without its last two characters. */
#define EMPTY_62                                                              \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b8"
#define HELLO_REF "cas://" HELLO_HEX

typedef struct fixture {
    char *dir; /* temporary directory of the filesystem store, or NULL */
    wx_cas *cas;
} fixture;

static int setup_fs(void **state)
{
    wx_error err = WX_ERROR_INIT;
    fixture *f = calloc(1, sizeof(*f));

    f->dir = tu_tempdir();
    assert_ok(wx_cas_open_fs(tu_path(f->dir, "cas"), WX_CAS_SYNC_FULL,
                             &f->cas, &err),
              &err);
    *state = f;
    return 0;
}

static int setup_memory(void **state)
{
    wx_error err = WX_ERROR_INIT;
    fixture *f = calloc(1, sizeof(*f));

    assert_ok(wx_cas_open_memory(&f->cas, &err), &err);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;

    wx_cas_close(f->cas);
    if (f->dir) {
        tu_rmtree(f->dir);
        free(f->dir);
    }
    free(f);
    return 0;
}

/* "<dir>/cas/sha256/<2>/<62>" of the object `hex`. */
static const char *object_path(const fixture *f, const char *hex)
{
    static char path[4096];

    snprintf(path, sizeof(path), "%s/cas/sha256/%.2s/%s", f->dir, hex,
             hex + 2);
    return path;
}

static void put_ok(wx_cas *cas, const void *data, size_t len, char *ref)
{
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx_cas_put(cas, data, len, NULL, ref, &err), &err);
}

/* Get `ref` and check it holds exactly data[0, len). */
static void assert_object(wx_cas *cas, const char *ref, const void *data,
                          size_t len)
{
    wx_error err = WX_ERROR_INIT;
    uint8_t *got = NULL;
    size_t got_len = 0;

    assert_ok(wx_cas_get(cas, ref, SIZE_MAX, &got, &got_len, &err), &err);
    assert_int_equal(got_len, len);
    if (len)
        assert_memory_equal(got, data, len);
    else
        assert_null(got);
    wx_free(got);
    assert_ok(wx_cas_verify(cas, ref, &err), &err);
}

/* A buffer of `n` bytes that differs for each `seed` (when n >= 4). */
static uint8_t *pattern(size_t n, unsigned seed)
{
    uint8_t *p = malloc(n ? n : 1);

    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + seed * 7 + (i >> 8));
    if (n >= sizeof(seed))
        memcpy(p, &seed, sizeof(seed));
    return p;
}

/* ---- shared by both backends ---- */

static void test_put_get_round_trip(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char ref[WX_CAS_REF_LEN + 1];
    uint8_t *big = pattern(1 << 20, 1);
    char big_ref[WX_CAS_REF_LEN + 1];
    bool exists = false;

    put_ok(f->cas, "hello", 5, ref);
    assert_string_equal(ref, HELLO_REF);
    assert_object(f->cas, ref, "hello", 5);
    assert_ok(wx_cas_exists(f->cas, ref, &exists, &err), &err);
    assert_true(exists);
    put_ok(f->cas, big, 1 << 20, big_ref);
    assert_object(f->cas, big_ref, big, 1 << 20);
    free(big);
}

static void test_empty_object(void **state)
{
    fixture *f = *state;
    char ref[WX_CAS_REF_LEN + 1];

    put_ok(f->cas, NULL, 0, ref);
    assert_string_equal(ref, "cas://" EMPTY_HEX);
    assert_object(f->cas, ref, "", 0);
}

static int count_object(void *user, const char *ref, uint64_t size)
{
    (*(size_t *)user)++;
    return 0;
}

static size_t count_objects(wx_cas *cas)
{
    wx_error err = WX_ERROR_INIT;
    size_t n = 0;

    assert_ok(wx_cas_foreach(cas, count_object, &n, &err), &err);
    return n;
}

static void test_put_twice_is_one_object(void **state)
{
    fixture *f = *state;
    char ref1[WX_CAS_REF_LEN + 1], ref2[WX_CAS_REF_LEN + 1];

    put_ok(f->cas, "hello", 5, ref1);
    put_ok(f->cas, "hello", 5, ref2);
    assert_string_equal(ref1, ref2);
    assert_int_equal(count_objects(f->cas), 1);
    assert_object(f->cas, ref1, "hello", 5);
}

static void test_missing_object(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    uint8_t *data = (uint8_t *)"sentinel";
    size_t len = 99;
    bool exists = true;

    assert_fails(wx_cas_get(f->cas, HELLO_REF, SIZE_MAX, &data, &len, &err),
                 WX_ENOTFOUND, &err, HELLO_REF " not found");
    assert_null(data);
    assert_int_equal(len, 0);
    assert_fails(wx_cas_verify(f->cas, HELLO_REF, &err), WX_ENOTFOUND, &err,
                 HELLO_REF);
    assert_ok(wx_cas_exists(f->cas, HELLO_REF, &exists, &err), &err);
    assert_false(exists);
}

static void test_bad_refs_are_refused(void **state)
{
    static const char *const bad[] = {
        "",
        "cas://",
        "cas://" EMPTY_HEX "0",
        "cas://" EMPTY_62 "5",
        "cas://E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B78"
        "52B855",
        "cas://" EMPTY_62 "..",
        "cas://../../../../../../../../../../../../../../../../../etc/passwd",
        "cas://e3/0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b78"
        "52b855",
        "cas://" EMPTY_62 "5/",
        "sha256:" EMPTY_HEX,
        "CAS://" EMPTY_HEX,
        " cas://" EMPTY_HEX,
        "cas://" EMPTY_HEX " ",
        EMPTY_HEX,
    };
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char hex[65];
    uint8_t *data = NULL;
    size_t len = 0;
    bool exists;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_fails(wx_cas_parse_ref(bad[i], hex, &err), WX_EINVAL, &err,
                     "must be cas://<64 lowercase hex>");
        assert_fails(wx_cas_get(f->cas, bad[i], SIZE_MAX, &data, &len, &err),
                     WX_EINVAL, &err, "invalid CAS ref");
        assert_fails(wx_cas_exists(f->cas, bad[i], &exists, &err), WX_EINVAL,
                     &err, "invalid CAS ref");
        assert_fails(wx_cas_verify(f->cas, bad[i], &err), WX_EINVAL, &err,
                     "invalid CAS ref");
        assert_fails(wx_cas_remove(f->cas, bad[i], &err), WX_EINVAL, &err,
                     "invalid CAS ref");
    }
    assert_fails(wx_cas_parse_ref(NULL, hex, &err), WX_EINVAL, &err,
                 "invalid CAS ref");
    assert_ok(wx_cas_parse_ref("cas://" EMPTY_HEX, hex, &err), &err);
    assert_string_equal(hex, EMPTY_HEX);
    assert_ok(wx_cas_parse_ref("cas://" EMPTY_HEX, NULL, &err), &err);
}

static void test_given_digest_is_trusted(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char ref[WX_CAS_REF_LEN + 1];
    uint8_t *data = NULL;
    size_t len = 0;

    assert_ok(wx_cas_put(f->cas, "hello", 5, HELLO_HEX, ref, &err), &err);
    assert_string_equal(ref, HELLO_REF);
    assert_object(f->cas, ref, "hello", 5);
    assert_fails(wx_cas_put(f->cas, "hello", 5, "2CF24DBA", ref, &err),
                 WX_EINVAL, &err, "not 64 lowercase hex");
    /* A wrong digest is not checked on put, but every read catches it. */
    assert_ok(wx_cas_put(f->cas, "bye", 3, EMPTY_HEX, ref, &err), &err);
    assert_fails(wx_cas_get(f->cas, ref, SIZE_MAX, &data, &len, &err),
                 WX_ECORRUPT, &err, "is corrupt: its content hashes to");
    assert_null(data);
    assert_fails(wx_cas_verify(f->cas, ref, &err), WX_ECORRUPT, &err,
                 "cas://" EMPTY_HEX " is corrupt");
}

static void test_get_respects_max_len(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char ref[WX_CAS_REF_LEN + 1];
    uint8_t *data = NULL;
    size_t len = 0;

    put_ok(f->cas, "hello", 5, ref);
    assert_fails(wx_cas_get(f->cas, ref, 4, &data, &len, &err), WX_ETOOBIG,
                 &err, "more than the limit of 4");
    assert_null(data);
    assert_ok(wx_cas_get(f->cas, ref, 5, &data, &len, &err), &err);
    assert_int_equal(len, 5);
    wx_free(data);
}

static void test_remove(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char ref[WX_CAS_REF_LEN + 1];
    bool exists = true;

    put_ok(f->cas, "hello", 5, ref);
    assert_ok(wx_cas_remove(f->cas, ref, &err), &err);
    assert_ok(wx_cas_exists(f->cas, ref, &exists, &err), &err);
    assert_false(exists);
    assert_ok(wx_cas_remove(f->cas, ref, &err), &err);
    assert_int_equal(count_objects(f->cas), 0);
    put_ok(f->cas, "hello", 5, ref);
    assert_object(f->cas, ref, "hello", 5);
}

typedef struct collected {
    char refs[64][WX_CAS_REF_LEN + 1];
    uint64_t sizes[64];
    size_t n;
    wx_cas *cas;
} collected;

static int collect(void *user, const char *ref, uint64_t size)
{
    collected *c = user;
    wx_error err = WX_ERROR_INIT;

    assert_true(c->n < 64);
    snprintf(c->refs[c->n], sizeof(c->refs[0]), "%s", ref);
    c->sizes[c->n++] = size;
    /* The walk must allow calls back into the store. */
    assert_ok(wx_cas_verify(c->cas, ref, &err), &err);
    return 0;
}

static int stop_at_first(void *user, const char *ref, uint64_t size)
{
    (*(int *)user)++;
    return 7;
}

static void test_foreach_visits_every_object_in_order(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    collected *c = calloc(1, sizeof(*c));
    char ref[WX_CAS_REF_LEN + 1];
    int calls = 0;

    c->cas = f->cas;
    for (unsigned i = 0; i < 40; i++) {
        uint8_t *p = pattern(i, i);

        put_ok(f->cas, p, i, ref);
        free(p);
    }
    assert_ok(wx_cas_foreach(f->cas, collect, c, &err), &err);
    assert_int_equal(c->n, 40);
    for (size_t i = 1; i < c->n; i++)
        assert_true(strcmp(c->refs[i - 1], c->refs[i]) < 0);
    for (unsigned i = 0; i < 40; i++) {
        uint8_t *p = pattern(i, i);
        size_t k = 0;

        put_ok(f->cas, p, i, ref);
        while (k < c->n && strcmp(c->refs[k], ref) != 0)
            k++;
        assert_true(k < c->n);
        assert_int_equal(c->sizes[k], i);
        free(p);
    }
    assert_int_equal(wx_cas_foreach(f->cas, stop_at_first, &calls, &err), 7);
    assert_int_equal(calls, 1);
    free(c);
}

typedef struct thread_job {
    wx_cas *cas;
    unsigned id;
    int failures;
} thread_job;

/*
 * Put a shared object and 100 objects of its own, alternately, reading
 * each back: the threads race on the same object and on insertions.
 */
static void *put_many(void *arg)
{
    thread_job *job = arg;
    uint8_t *shared = pattern(100000, 99);
    char ref[WX_CAS_REF_LEN + 1];

    for (unsigned i = 0; i < 200; i++) {
        wx_error err = WX_ERROR_INIT;
        uint8_t *data = NULL;
        size_t len = 0;
        uint8_t *own = pattern(1000, 1000 * (job->id + 1) + i);
        const uint8_t *expected = i % 2 ? shared : own;
        size_t expected_len = i % 2 ? 100000 : 1000;

        if (wx_cas_put(job->cas, expected, expected_len, NULL, ref, &err) ||
            wx_cas_get(job->cas, ref, SIZE_MAX, &data, &len, &err) ||
            len != expected_len || memcmp(data, expected, len) != 0)
            job->failures++;
        wx_free(data);
        free(own);
    }
    free(shared);
    return NULL;
}

static void test_concurrent_puts_from_threads(void **state)
{
    fixture *f = *state;
    pthread_t threads[4];
    thread_job jobs[4];

    for (unsigned i = 0; i < 4; i++) {
        jobs[i] = (thread_job){f->cas, i, 0};
        assert_int_equal(
            pthread_create(&threads[i], NULL, put_many, &jobs[i]), 0);
    }
    for (unsigned i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(jobs[i].failures, 0);
    }
    assert_int_equal(count_objects(f->cas), 4 * 100 + 1);
}

/* Run put, get and foreach with the n-th allocation failing. */
static int put_get_walk(wx_cas *cas, long n, wx_error *err)
{
    char ref[WX_CAS_REF_LEN + 1];
    uint8_t *data = NULL;
    size_t len = 0, count = 0;
    int rc;

    wx__alloc_fail_after(n);
    rc = wx_cas_put(cas, "hello", 5, NULL, ref, err);
    if (!rc) {
        rc = wx_cas_get(cas, HELLO_REF, SIZE_MAX, &data, &len, err);
        if (rc)
            assert_null(data);
    }
    if (!rc)
        rc = wx_cas_foreach(cas, count_object, &count, err);
    wx__alloc_fail_after(-1);
    wx_free(data);
    return rc;
}

static void test_out_of_memory(void **state)
{
    fixture *f = *state;
    long n;

    for (n = 0; n < 20; n++) {
        wx_error err = WX_ERROR_INIT;
        int rc = put_get_walk(f->cas, n, &err);

        if (rc == 0)
            break;
        assert_fails(rc, WX_ENOMEM, &err, "out of memory");
    }
    assert_true(n > 0 && n < 20);
    assert_object(f->cas, HELLO_REF, "hello", 5);
}

static void test_open_out_of_memory(void **state)
{
    fixture *f = *state;
    long n;

    for (n = 0; n < 20; n++) {
        wx_error err = WX_ERROR_INIT;
        wx_cas *cas = (wx_cas *)&err; /* not NULL: must be reset */
        int rc;

        wx__alloc_fail_after(n);
        rc = f->dir ? wx_cas_open_fs(tu_path(f->dir, "other"),
                                     WX_CAS_SYNC_FULL, &cas, &err)
                    : wx_cas_open_memory(&cas, &err);
        wx__alloc_fail_after(-1);
        if (rc == 0) {
            wx_cas_close(cas);
            break;
        }
        assert_fails(rc, WX_ENOMEM, &err, "out of memory");
        assert_null(cas);
    }
    assert_true(n > 0 && n < 20);
}

/* ---- filesystem store only ---- */

static mode_t mode_of(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 07777;
}

static void test_fs_layout_and_modes(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char ref[WX_CAS_REF_LEN + 1], shard[4096];
    mode_t old_mask = umask(022);
    wx_cas *cas = NULL;
    FILE *file;
    char content[16] = {0};

    assert_ok(wx_cas_open_fs(tu_path(f->dir, "fresh/cas"), WX_CAS_SYNC_FULL,
                             &cas, &err),
              &err);
    put_ok(cas, "hello", 5, ref);
    wx_cas_close(cas);
    umask(old_mask);
    snprintf(shard, sizeof(shard), "%s/fresh/cas/sha256/2c", f->dir);
    assert_int_equal(mode_of(shard), 0755);
    /* No temporary file left. */
    assert_int_equal(tu_count_in_dir(shard, false), 1);
    snprintf(shard, sizeof(shard), "%s/fresh/cas/sha256/2c/%s", f->dir,
             HELLO_HEX + 2);
    assert_int_equal(mode_of(shard), 0444);
    file = fopen(shard, "rb");
    assert_non_null(file);
    assert_int_equal(fread(content, 1, sizeof(content), file), 5);
    fclose(file);
    assert_memory_equal(content, "hello", 5);
}

/* A child process: put a shared and an own object 20 times each. */
static int child_puts(const char *root, unsigned id)
{
    uint8_t *shared = pattern(1 << 20, 5), *own = pattern(4096, 100 + id);
    char ref[WX_CAS_REF_LEN + 1];
    wx_error err = WX_ERROR_INIT;
    wx_cas *cas = NULL;
    int rc = wx_cas_open_fs(root, WX_CAS_SYNC_FULL, &cas, &err);

    for (int i = 0; !rc && i < 20; i++) {
        rc = wx_cas_put(cas, shared, 1 << 20, NULL, ref, &err);
        if (!rc)
            rc = wx_cas_put(cas, own, 4096, NULL, ref, &err);
    }
    if (rc)
        fprintf(stderr, "child %u: %s\n", id, err.message);
    wx_cas_close(cas);
    free(shared);
    free(own);
    return rc ? 1 : 0;
}

static void test_fs_concurrent_puts_from_processes(void **state)
{
    fixture *f = *state;
    char root[4096];
    uint8_t *shared = pattern(1 << 20, 5);
    char ref[WX_CAS_REF_LEN + 1];
    pid_t pids[2];

    snprintf(root, sizeof(root), "%s/cas", f->dir);
    for (unsigned i = 0; i < 2; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0)
            _exit(child_puts(root, i));
    }
    assert_int_equal(tu_wait_all(pids, 2), 0);
    assert_int_equal(count_objects(f->cas), 3);
    put_ok(f->cas, shared, 1 << 20, ref);
    assert_object(f->cas, ref, shared, 1 << 20);
    /* No temporary file left behind in the shared object's directory. */
    snprintf(root, sizeof(root), "%s/cas/sha256/%.2s", f->dir, ref + 6);
    assert_int_equal(tu_count_in_dir(root, false), 1);
    free(shared);
}

/* Make the object writable and flip its byte at `offset`. */
static void flip_byte(const char *path, off_t offset)
{
    unsigned char c;
    int fd;

    assert_int_equal(chmod(path, 0644), 0);
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, offset), 1);
    c ^= 0xff;
    assert_int_equal(pwrite(fd, &c, 1, offset), 1);
    close(fd);
}

static void test_fs_damage_is_detected_and_repaired(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char ref[WX_CAS_REF_LEN + 1], path[4096];
    uint8_t *data = NULL;
    size_t len = 0;
    bool exists = false;

    put_ok(f->cas, "hello", 5, ref);
    snprintf(path, sizeof(path), "%s", object_path(f, HELLO_HEX));
    flip_byte(path, 2);
    assert_fails(wx_cas_get(f->cas, ref, SIZE_MAX, &data, &len, &err),
                 WX_ECORRUPT, &err, HELLO_REF " is corrupt");
    assert_non_null(strstr(err.message, path));
    assert_null(data);
    assert_fails(wx_cas_verify(f->cas, ref, &err), WX_ECORRUPT, &err,
                 "is corrupt");
    assert_ok(wx_cas_exists(f->cas, ref, &exists, &err), &err);
    assert_true(exists);
    put_ok(f->cas, "hello", 5, ref);
    assert_object(f->cas, ref, "hello", 5);
    assert_int_equal(mode_of(path), 0444);
    /* A truncated object is damage too. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(truncate(path, 0), 0);
    assert_fails(wx_cas_verify(f->cas, ref, &err), WX_ECORRUPT, &err,
                 "hashes to " EMPTY_HEX);
    put_ok(f->cas, "hello", 5, ref);
    assert_object(f->cas, ref, "hello", 5);
    assert_int_equal(
        tu_count_in_dir(tu_path(f->dir, "cas/sha256/2c"), false), 1);
}

static void test_fs_foreach_skips_strays(void **state)
{
    fixture *f = *state;
    char ref[WX_CAS_REF_LEN + 1], path[4096];
    FILE *file;

    put_ok(f->cas, "hello", 5, ref);
    /* A temporary file left by a crash, and other names that are no objects. */
    snprintf(path, sizeof(path), "%s/cas/sha256/2c/.put.abc123.tmp", f->dir);
    file = fopen(path, "w");
    assert_non_null(file);
    fputs("partial", file);
    fclose(file);
    snprintf(path, sizeof(path), "%s/cas/sha256/README", f->dir);
    assert_non_null(file = fopen(path, "w"));
    fclose(file);
    snprintf(path, sizeof(path), "%s/cas/sha256/2c/%s", f->dir,
             EMPTY_HEX + 2);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof(path), "%s/cas/sha256/2c/%s0", f->dir,
             EMPTY_HEX + 2);
    assert_non_null(file = fopen(path, "w"));
    fclose(file);
    snprintf(path, sizeof(path), "%s/cas/sha256/ZZ", f->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    assert_int_equal(count_objects(f->cas), 1);
}

static void test_fs_sync_none(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char ref[WX_CAS_REF_LEN + 1];
    wx_cas *cas = NULL;

    assert_ok(wx_cas_open_fs(tu_path(f->dir, "cas"), WX_CAS_SYNC_NONE, &cas,
                             &err),
              &err);
    put_ok(cas, "hello", 5, ref);
    assert_object(cas, ref, "hello", 5);
    wx_cas_close(cas);
    assert_object(f->cas, ref, "hello", 5);
}

/* The SHA-256 of `data` as a ref, computed apart from the store. */
static void expected_ref(const void *data, size_t len,
                         char ref[WX_CAS_REF_LEN + 1])
{
    char hex[65];
    wx_error err = WX_ERROR_INIT;

    assert_ok(wx__sha256_hex(data, len, hex, &err), &err);
    snprintf(ref, WX_CAS_REF_LEN + 1, "cas://%s", hex);
}

/*
 * BATCH: puts work as under FULL (objects readable at once, by any
 * handle), flush succeeds with and without pending objects, and more
 * than the pending limit (8192) flushes by itself on the way.
 */
static void test_fs_sync_batch_and_flush(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    char ref[WX_CAS_REF_LEN + 1], text[32];
    wx_cas *cas = NULL;

    assert_ok(wx_cas_open_fs(tu_path(f->dir, "cas"), WX_CAS_SYNC_BATCH, &cas,
                             &err),
              &err);
    assert_ok(wx_cas_flush(cas, &err), &err); /* nothing pending */
    put_ok(cas, "hello", 5, ref);
    assert_object(f->cas, ref, "hello", 5);
    put_ok(cas, "hello", 5, ref); /* present: noted again, fine */
    assert_ok(wx_cas_flush(cas, &err), &err);
    for (int i = 0; i < 9000; i++) {
        int n = snprintf(text, sizeof(text), "object %d", i);

        put_ok(cas, text, (size_t)n, ref);
    }
    assert_object(cas, ref, "object 8999", 11);
    assert_ok(wx_cas_flush(cas, &err), &err);
    assert_int_equal(count_objects(f->cas), 9001);
    /* The memory store has nothing to flush. */
    wx_cas_close(cas);
    assert_ok(wx_cas_open_memory(&cas, &err), &err);
    assert_ok(wx_cas_flush(cas, &err), &err);
    wx_cas_close(cas);
}

/*
 * Objects from 1 MiB on are hashed while another thread writes them: the
 * ref is still the SHA-256 of the bytes, a second put of the same bytes
 * is the same object, and a shard directory removed behind the store's
 * back is made again.
 */
static void test_fs_big_objects(void **state)
{
    fixture *f = *state;
    size_t len = (3u << 20) + 5;
    uint8_t *big = malloc(len);
    char ref[WX_CAS_REF_LEN + 1], want[WX_CAS_REF_LEN + 1];
    char dir[4096];

    for (size_t i = 0; i < len; i++)
        big[i] = (uint8_t)(i * 7 + i / 4096);
    expected_ref(big, len, want);
    put_ok(f->cas, big, len, ref);
    assert_string_equal(ref, want);
    assert_object(f->cas, ref, big, len);
    put_ok(f->cas, big, len, ref);
    assert_string_equal(ref, want);
    assert_int_equal(count_objects(f->cas), 1);
    /* Remove the object and its shard directory; put again. */
    assert_int_equal(unlink(object_path(f, want + 6)), 0);
    snprintf(dir, sizeof(dir), "%s/cas/sha256/%.2s", f->dir, want + 6);
    assert_int_equal(rmdir(dir), 0);
    put_ok(f->cas, big, len, ref);
    assert_object(f->cas, ref, big, len);
    /* No temporary file is left behind. */
    assert_int_equal(
        tu_count_in_dir(tu_path(f->dir, "cas/sha256"), true), 0);
    free(big);
}

/* Bytes that arrive in uneven pieces (some counts repeated) are stored. */
static void stream_in_pieces(wx_cas *cas, const uint8_t *data, size_t len,
                             char hex[WX_HEX256_LEN + 1])
{
    static const size_t pieces[] = {0, 1, 100, 100, 65536, 1u << 20, 50};
    wx_error err = WX_ERROR_INIT;
    wx__cas_stream *s;
    size_t n = 0;

    assert_ok(wx__cas_stream_open(cas, data, len, &s, &err), &err);
    for (size_t i = 0; n < len; i++) {
        size_t piece = pieces[i % (sizeof(pieces) / sizeof(pieces[0]))];

        n = n + piece < len ? n + piece : len;
        wx__cas_stream_arrived(s, n);
    }
    assert_ok(wx__cas_stream_finish(s, hex, &err), &err);
}

/*
 * A stream stores bytes as they arrive: its object is the SHA-256 of the
 * bytes, the same as a put's; streaming present bytes again is the same
 * object; an aborted stream leaves nothing.  No temporary file remains.
 */
static void test_fs_stream(void **state)
{
    fixture *f = *state;
    size_t len = (3u << 20) + 5;
    uint8_t *big = pattern(len, 3);
    char hex[WX_HEX256_LEN + 1], want[WX_CAS_REF_LEN + 1];
    wx_error err = WX_ERROR_INIT;
    wx__cas_stream *s;

    expected_ref(big, len, want);
    stream_in_pieces(f->cas, big, len, hex);
    assert_string_equal(hex, want + 6);
    assert_object(f->cas, want, big, len);
    stream_in_pieces(f->cas, big, len, hex);
    assert_string_equal(hex, want + 6);
    assert_int_equal(count_objects(f->cas), 1);
    /* Aborted half-way, and before any byte. */
    big[0] ^= 1;
    assert_ok(wx__cas_stream_open(f->cas, big, len, &s, &err), &err);
    wx__cas_stream_arrived(s, len / 2);
    wx__cas_stream_abort(s);
    assert_ok(wx__cas_stream_open(f->cas, big, len, &s, &err), &err);
    wx__cas_stream_abort(s);
    wx__cas_stream_abort(NULL);
    assert_int_equal(count_objects(f->cas), 1);
    assert_int_equal(
        tu_count_in_dir(tu_path(f->dir, "cas/sha256"), true), 0);
    free(big);
}

/*
 * A write that fails (here: past the file size limit, EFBIG) fails the
 * stream's finish with the system's reason, and nothing is stored.
 */
static void test_fs_stream_write_failure(void **state)
{
    fixture *f = *state;
    size_t len = 2u << 20;
    uint8_t *big = pattern(len, 4);
    char hex[WX_HEX256_LEN + 1];
    wx_error err = WX_ERROR_INIT;
    struct rlimit old, small;
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    wx__cas_stream *s;

    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = (struct rlimit){1u << 20, old.rlim_max};
    assert_ok(wx__cas_stream_open(f->cas, big, len, &s, &err), &err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    wx__cas_stream_arrived(s, len / 2 + 1);
    wx__cas_stream_arrived(s, len);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, old_handler);
    assert_fails(wx__cas_stream_finish(s, hex, &err), WX_EIO, &err,
                 "cannot store an object of 2097152 bytes");
    assert_non_null(strstr(err.message, strerror(EFBIG)));
    assert_int_equal(count_objects(f->cas), 0);
    assert_int_equal(
        tu_count_in_dir(tu_path(f->dir, "cas/sha256"), true), 0);
    free(big);
}

/* The memory store has no streams: its callers put. */
static void test_memory_store_cannot_stream(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    wx__cas_stream *s = (wx__cas_stream *)&err;

    assert_fails(wx__cas_stream_open(f->cas, (const uint8_t *)"x", 1, &s,
                                     &err),
                 WX_EINVAL, &err, "cannot stream");
    assert_null(s);
}

static void test_fs_open_errors(void **state)
{
    fixture *f = *state;
    wx_error err = WX_ERROR_INIT;
    wx_cas *cas = (wx_cas *)&err; /* not NULL: must be reset */
    FILE *file = fopen(tu_path(f->dir, "plain"), "w");

    assert_non_null(file);
    fclose(file);
    assert_fails(wx_cas_open_fs(tu_path(f->dir, "plain/cas"),
                                WX_CAS_SYNC_FULL, &cas, &err),
                 WX_EIO, &err, "plain");
    assert_null(cas);
    assert_fails(wx_cas_open_fs("", WX_CAS_SYNC_FULL, &cas, &err), WX_EINVAL,
                 &err, "CAS root");
}

/* A shared test, once per backend. */
#define BOTH(f)                                                               \
    {"fs: " #f, f, setup_fs, teardown, NULL},                                 \
        {"memory: " #f, f, setup_memory, teardown, NULL}
#define FS(f) cmocka_unit_test_setup_teardown(f, setup_fs, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_put_get_round_trip),
        BOTH(test_empty_object),
        BOTH(test_put_twice_is_one_object),
        BOTH(test_missing_object),
        BOTH(test_bad_refs_are_refused),
        BOTH(test_given_digest_is_trusted),
        BOTH(test_get_respects_max_len),
        BOTH(test_remove),
        BOTH(test_foreach_visits_every_object_in_order),
        BOTH(test_concurrent_puts_from_threads),
        BOTH(test_out_of_memory),
        BOTH(test_open_out_of_memory),
        FS(test_fs_layout_and_modes),
        FS(test_fs_concurrent_puts_from_processes),
        FS(test_fs_damage_is_detected_and_repaired),
        FS(test_fs_foreach_skips_strays),
        FS(test_fs_sync_none),
        FS(test_fs_sync_batch_and_flush),
        FS(test_fs_big_objects),
        FS(test_fs_open_errors),
        FS(test_fs_stream),
        FS(test_fs_stream_write_failure),
        cmocka_unit_test_setup_teardown(test_memory_store_cannot_stream,
                                        setup_memory, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
