/* Unit tests of strict standard base64. */
#include "testutil.h"

#include "b64.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Deterministic pseudo-random bytes (xorshift64). */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/*
 * Encode `n` bytes into an exactly sized heap buffer, so the sanitizers
 * catch a write past wx__b64_encoded_len(n) + 1.
 */
static char *encode(const uint8_t *in, size_t n)
{
    char *out = malloc(wx__b64_encoded_len(n) + 1);

    assert_non_null(out);
    wx__b64_encode(in, n, out);
    assert_int_equal(strlen(out), wx__b64_encoded_len(n));
    return out;
}

/* Decode into an exactly sized heap buffer; returns the rc. */
static int decode(const char *in, size_t n, uint8_t **out, size_t *out_len,
                  wx_error *err)
{
    size_t max = wx__b64_decoded_max(n);

    *out = malloc(max ? max : 1);
    assert_non_null(*out);
    return wx__b64_decode(in, n, *out, out_len, err);
}

static void assert_round_trip(const uint8_t *data, size_t n)
{
    wx_error err = WX_ERROR_INIT;
    char *text = encode(data, n);
    uint8_t *back;
    size_t len = 0;

    assert_ok(decode(text, strlen(text), &back, &len, &err), &err);
    assert_int_equal(len, n);
    if (n)
        assert_memory_equal(back, data, n);
    free(back);
    free(text);
}

static void assert_rejected(const char *text, size_t n, const char *needle)
{
    wx_error err = WX_ERROR_INIT;
    uint8_t *out;
    size_t len = 0;

    assert_fails(decode(text, n, &out, &len, &err), WX_EINVAL, &err, needle);
    free(out);
}

static void test_rfc4648_vectors(void **state)
{
    static const struct {
        const char *plain, *encoded;
    } vectors[] = {
        {"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
        {"foo", "Zm9v"},  {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
        {"foobar", "Zm9vYmFy"},
    };

    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        const char *plain = vectors[i].plain;
        wx_error err = WX_ERROR_INIT;
        char *text = encode((const uint8_t *)plain, strlen(plain));
        uint8_t *back;
        size_t len = 99;

        assert_string_equal(text, vectors[i].encoded);
        assert_ok(decode(text, strlen(text), &back, &len, &err), &err);
        assert_int_equal(len, strlen(plain));
        assert_memory_equal(back, plain, len);
        free(back);
        free(text);
    }
}

static void test_lengths(void **state)
{
    assert_int_equal(wx__b64_encoded_len(0), 0);
    assert_int_equal(wx__b64_encoded_len(1), 4);
    assert_int_equal(wx__b64_encoded_len(3), 4);
    assert_int_equal(wx__b64_encoded_len(4), 8);
    assert_int_equal(wx__b64_encoded_len(SIZE_MAX), 0);
    assert_int_equal(wx__b64_encoded_len(SIZE_MAX / 4 * 3), 0);
    assert_int_equal(wx__b64_decoded_max(0), 0);
    assert_int_equal(wx__b64_decoded_max(4), 3);
    assert_int_equal(wx__b64_decoded_max(8), 6);
}

static void test_round_trip_of_all_byte_values(void **state)
{
    uint8_t all[256];

    for (int i = 0; i < 256; i++) {
        all[i] = (uint8_t)i;
        assert_round_trip(&all[i], 1);
    }
    assert_round_trip(all, sizeof(all));
    for (size_t shift = 1; shift < 3; shift++)
        assert_round_trip(all + shift, sizeof(all) - shift);
}

static void test_round_trip_of_random_lengths(void **state)
{
    uint64_t seed = 0x9e3779b97f4a7c15u;
    uint8_t data[300] = {0};

    for (size_t n = 0; n <= sizeof(data); n++) {
        for (size_t i = 0; i < n; i++)
            data[i] = (uint8_t)next_random(&seed);
        assert_round_trip(data, n);
    }
}

static void test_encoding_uses_alphabet_and_final_padding(void **state)
{
    static const char *const padding[] = {"", "=", "=="};
    uint8_t data[64];

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(0xff - i);
    for (size_t n = 0; n <= sizeof(data); n++) {
        char *text = encode(data, n);
        size_t len = strlen(text), pad = (3 - n % 3) % 3;

        assert_int_equal(strspn(text, alphabet), len - pad);
        assert_string_equal(text + len - pad, padding[pad]);
        free(text);
    }
}

static void test_length_not_multiple_of_four_is_rejected(void **state)
{
    assert_rejected("Zg=", 3, "multiple of 4");
    assert_rejected("Zm9vY", 5, "multiple of 4");
    assert_rejected("Z", 1, "multiple of 4");
    assert_rejected("Zg", 2, "multiple of 4");
    assert_rejected("Zm9vYg", 6, "multiple of 4");
}

static void test_character_outside_alphabet_is_rejected(void **state)
{
    static const char valid[] = "Zm9vZm9v";

    for (int c = 0; c < 256; c++) {
        if (c != 0 && strchr(alphabet, c))
            continue;
        for (size_t pos = 0; pos < 8; pos++) {
            char text[sizeof(valid)];

            memcpy(text, valid, sizeof(valid));
            text[pos] = (char)c;
            assert_rejected(text, 8, "invalid base64");
        }
    }
}

static void test_misplaced_padding_is_rejected(void **state)
{
    assert_rejected("Zg==Zg==", 8, "invalid base64");
    assert_rejected("Zm9=Zm9v", 8, "invalid base64");
    assert_rejected("====", 4, "invalid base64");
    assert_rejected("Z===", 4, "invalid base64");
    assert_rejected("Zg=v", 4, "invalid base64");
    assert_rejected("=Zm9", 4, "invalid base64");
}

static void test_non_zero_trailing_bits_are_rejected(void **state)
{
    wx_error err = WX_ERROR_INIT;
    uint8_t *out;
    size_t len = 0;

    assert_rejected("Zh==", 4, "invalid base64");
    assert_rejected("Zm9=", 4, "invalid base64");
    assert_rejected("Zm9vZm9=", 8, "invalid base64");
    assert_ok(decode("Zg==", 4, &out, &len, &err), &err);
    assert_int_equal(len, 1);
    assert_int_equal(out[0], 'f');
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_round_trip_of_all_byte_values),
        cmocka_unit_test(test_round_trip_of_random_lengths),
        cmocka_unit_test(test_encoding_uses_alphabet_and_final_padding),
        cmocka_unit_test(test_length_not_multiple_of_four_is_rejected),
        cmocka_unit_test(test_character_outside_alphabet_is_rejected),
        cmocka_unit_test(test_misplaced_padding_is_rejected),
        cmocka_unit_test(test_non_zero_trailing_bits_are_rejected),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
