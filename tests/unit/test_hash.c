/* Unit tests of SHA-256, BLAKE2b-256 and the hex helpers. */
#include "testutil.h"

#include "hash.h"

#define SHA256_EMPTY                                                          \
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA256_ABC                                                            \
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
/* FIPS 180-2 two-block message and one million 'a'. */
#define TWO_BLOCKS "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
#define SHA256_TWO_BLOCKS                                                     \
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
#define SHA256_MILLION_A                                                      \
    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
#define BLAKE2B256_EMPTY                                                      \
    "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
#define BLAKE2B256_HELLO_WORLD                                                \
    "256c83b297114d201b30179f3f0ef0cace9783622da5974326b436178aeef610"

static void assert_sha256_hex(const char *text, const char *expected)
{
    wx_error err = WX_ERROR_INIT;
    char hex[WX_HEX256_LEN + 1];

    assert_ok(wx__sha256_hex(text, strlen(text), hex, &err), &err);
    assert_string_equal(hex, expected);
}

/* SHA-256 of `data` fed in pieces of `chunk` bytes, as hex. */
static void sha256_streamed(const uint8_t *data, size_t n, size_t chunk,
                            char hex[WX_HEX256_LEN + 1])
{
    wx_error err = WX_ERROR_INIT;
    wx__sha256_ctx h = WX__SHA256_INIT;
    uint8_t digest[WX_SHA256_LEN];

    assert_ok(wx__sha256_begin(&h, &err), &err);
    for (size_t off = 0; off < n; off += chunk) {
        size_t len = n - off < chunk ? n - off : chunk;

        assert_ok(wx__sha256_update(&h, data + off, len, &err), &err);
        assert_ok(wx__sha256_update(&h, data + off, 0, &err), &err);
    }
    assert_ok(wx__sha256_finish(&h, digest, &err), &err);
    assert_null(h.evp);
    wx__hex(digest, sizeof(digest), hex);
}

static void test_sha256_known_digests(void **state)
{
    assert_sha256_hex("", SHA256_EMPTY);
    assert_sha256_hex("abc", SHA256_ABC);
    assert_sha256_hex(TWO_BLOCKS, SHA256_TWO_BLOCKS);
}

static void test_sha256_binary_matches_hex(void **state)
{
    wx_error err = WX_ERROR_INIT;
    uint8_t digest[WX_SHA256_LEN];
    char hex[WX_HEX256_LEN + 1];

    assert_ok(wx__sha256("abc", 3, digest, &err), &err);
    wx__hex(digest, sizeof(digest), hex);
    assert_string_equal(hex, SHA256_ABC);
}

static void test_sha256_streaming_equals_one_shot(void **state)
{
    enum { SIZE = 10007 };
    static const size_t chunks[] = {1, 3, 63, 64, 65, 1000, SIZE};
    wx_error err = WX_ERROR_INIT;
    uint8_t *data = malloc(SIZE);
    char one_shot[WX_HEX256_LEN + 1], streamed[WX_HEX256_LEN + 1];

    assert_non_null(data);
    for (size_t i = 0; i < SIZE; i++)
        data[i] = (uint8_t)(i * 31 + 7);
    assert_ok(wx__sha256_hex(data, SIZE, one_shot, &err), &err);
    for (size_t i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        sha256_streamed(data, SIZE, chunks[i], streamed);
        assert_string_equal(streamed, one_shot);
    }
    free(data);
}

static void test_sha256_streaming_million_a(void **state)
{
    uint8_t *data = malloc(1000000);
    char hex[WX_HEX256_LEN + 1];

    assert_non_null(data);
    memset(data, 'a', 1000000);
    sha256_streamed(data, 1000000, 1000, hex);
    assert_string_equal(hex, SHA256_MILLION_A);
    free(data);
}

static void test_sha256_streaming_of_nothing(void **state)
{
    char hex[WX_HEX256_LEN + 1];

    sha256_streamed((const uint8_t *)"", 0, 1, hex);
    assert_string_equal(hex, SHA256_EMPTY);
}

static void test_sha256_abort_frees_context(void **state)
{
    wx_error err = WX_ERROR_INIT;
    wx__sha256_ctx unused = WX__SHA256_INIT;
    wx__sha256_ctx h = WX__SHA256_INIT;

    wx__sha256_abort(&unused);
    assert_null(unused.evp);
    assert_ok(wx__sha256_begin(&h, &err), &err);
    assert_ok(wx__sha256_update(&h, "abc", 3, &err), &err);
    wx__sha256_abort(&h);
    assert_null(h.evp);
}

static void test_blake2b256_known_digests(void **state)
{
    char hex[WX_HEX256_LEN + 1];

    wx__blake2b256_hex("", 0, hex);
    assert_string_equal(hex, BLAKE2B256_EMPTY);
    wx__blake2b256_hex("hello world", 11, hex);
    assert_string_equal(hex, BLAKE2B256_HELLO_WORLD);
}

static void test_blake2b256_binary_matches_hex(void **state)
{
    uint8_t digest[WX_BLAKE2B256_LEN];
    char hex[WX_HEX256_LEN + 1];

    wx__blake2b256("hello world", 11, digest);
    wx__hex(digest, sizeof(digest), hex);
    assert_string_equal(hex, BLAKE2B256_HELLO_WORLD);
}

static void test_hex_writes_lowercase_and_nul(void **state)
{
    static const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
    char out[2 * sizeof(bytes) + 2];

    memset(out, '#', sizeof(out));
    wx__hex(bytes, sizeof(bytes), out);
    assert_string_equal(out, "00017f80abff");
    assert_int_equal(out[sizeof(out) - 1], '#');
}

static void test_hex_of_nothing_is_empty_string(void **state)
{
    char out[2] = {'#', '#'};

    wx__hex(NULL, 0, out);
    assert_int_equal(out[0], '\0');
    assert_int_equal(out[1], '#');
}

static void test_is_lower_hex(void **state)
{
    assert_true(wx__is_lower_hex("0123456789abcdef", 16));
    assert_true(wx__is_lower_hex("", 0));
    assert_true(wx__is_lower_hex("abZ", 2));
    assert_false(wx__is_lower_hex("abZ", 3));
    assert_false(wx__is_lower_hex("ABCDEF", 6));
    assert_false(wx__is_lower_hex("0g", 2));
    assert_false(wx__is_lower_hex(" a", 2));
    assert_false(wx__is_lower_hex("a\0", 2));
}

static void test_is_hex256(void **state)
{
    char upper[] = SHA256_ABC;

    for (char *c = upper; *c; c++)
        if (*c >= 'a' && *c <= 'f')
            *c = (char)(*c - 'a' + 'A');
    assert_true(wx__is_hex256(SHA256_EMPTY));
    assert_true(wx__is_hex256(BLAKE2B256_EMPTY));
    assert_false(wx__is_hex256(upper));
    assert_false(wx__is_hex256(SHA256_ABC "0"));
    assert_false(wx__is_hex256(SHA256_ABC + 1));
    assert_false(wx__is_hex256(""));
    assert_false(wx__is_hex256(
        "g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_known_digests),
        cmocka_unit_test(test_sha256_binary_matches_hex),
        cmocka_unit_test(test_sha256_streaming_equals_one_shot),
        cmocka_unit_test(test_sha256_streaming_million_a),
        cmocka_unit_test(test_sha256_streaming_of_nothing),
        cmocka_unit_test(test_sha256_abort_frees_context),
        cmocka_unit_test(test_blake2b256_known_digests),
        cmocka_unit_test(test_blake2b256_binary_matches_hex),
        cmocka_unit_test(test_hex_writes_lowercase_and_nul),
        cmocka_unit_test(test_hex_of_nothing_is_empty_string),
        cmocka_unit_test(test_is_lower_hex),
        cmocka_unit_test(test_is_hex256),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
