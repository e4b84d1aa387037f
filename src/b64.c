/* Standard padded base64. */
#include "internal.h"

#include "b64.h"

static const char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* 0..63 for alphabet characters, 64 for '=', 255 for anything else. */
static const uint8_t decode_table[256] = {
#define R4(x) x, x, x, x
#define R16(x) R4(x), R4(x), R4(x), R4(x)
    R16(255), R16(255),
    /* 0x20 */ 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 62,
    255, 255, 255, 63,
    /* 0x30 */ 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 255, 255, 255, 64,
    255, 255,
    /* 0x40 */ 255, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
    /* 0x50 */ 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 255, 255, 255,
    255, 255,
    /* 0x60 */ 255, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39,
    40,
    /* 0x70 */ 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 255, 255, 255,
    255, 255,
    R16(255), R16(255), R16(255), R16(255), R16(255), R16(255), R16(255),
    R16(255),
#undef R16
#undef R4
};

size_t wx__b64_encoded_len(size_t n)
{
    if (n > (SIZE_MAX - 1) / 4 * 3 - 2)
        return 0;
    return (n + 2) / 3 * 4;
}

void wx__b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
                     in[i + 2];

        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = alphabet[(v >> 6) & 63];
        *out++ = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;

        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = alphabet[(v >> 6) & 63];
        *out++ = '=';
    }
    *out = '\0';
}

size_t wx__b64_decoded_max(size_t n)
{
    return n / 4 * 3;
}

/* Decode the final quantum, which may carry one or two '='. */
static int decode_last(const uint8_t *q, uint8_t *out, size_t *written)
{
    uint8_t a = decode_table[q[0]], b = decode_table[q[1]];
    uint8_t c = decode_table[q[2]], d = decode_table[q[3]];

    if (a > 63 || b > 63)
        return -1;
    if (c == 64) {
        if (d != 64 || (b & 15))
            return -1;
        out[0] = (uint8_t)(a << 2 | b >> 4);
        *written = 1;
        return 0;
    }
    if (c > 63)
        return -1;
    if (d == 64) {
        if (c & 3)
            return -1;
        out[0] = (uint8_t)(a << 2 | b >> 4);
        out[1] = (uint8_t)(b << 4 | c >> 2);
        *written = 2;
        return 0;
    }
    if (d > 63)
        return -1;
    out[0] = (uint8_t)(a << 2 | b >> 4);
    out[1] = (uint8_t)(b << 4 | c >> 2);
    out[2] = (uint8_t)(c << 6 | d);
    *written = 3;
    return 0;
}

int wx__b64_decode(const char *in, size_t n, uint8_t *out, size_t *out_len,
                   wx_error *err)
{
    const uint8_t *p = (const uint8_t *)in;
    size_t i, o = 0, last = 0;

    if (n % 4)
        return wx_error_set(err, WX_EINVAL,
                            "invalid base64: length %zu is not a multiple "
                            "of 4",
                            n);
    if (n == 0) {
        *out_len = 0;
        return 0;
    }
    for (i = 0; i + 4 < n; i += 4) {
        uint8_t a = decode_table[p[i]], b = decode_table[p[i + 1]];
        uint8_t c = decode_table[p[i + 2]], d = decode_table[p[i + 3]];

        if ((a | b | c | d) > 63)
            return wx_error_set(err, WX_EINVAL,
                                "invalid base64 character near offset %zu",
                                i);
        out[o++] = (uint8_t)(a << 2 | b >> 4);
        out[o++] = (uint8_t)(b << 4 | c >> 2);
        out[o++] = (uint8_t)(c << 6 | d);
    }
    if (decode_last(p + i, out + o, &last) != 0)
        return wx_error_set(err, WX_EINVAL,
                            "invalid base64 near offset %zu", i);
    *out_len = o + last;
    return 0;
}
