/* JSON writers with Python's formatting: canonical and wire JSON. */
#include "internal.h"

#include <inttypes.h>
#include <math.h>

#include <warmexec/canon.h>
#include <warmexec/json.h>

#include "alloc.h"
#include "b64.h"
#include "canon.h"
#include "json.h"
#include "num.h"

static int write_value(wx_buf *out, const json_t *v, unsigned flags,
                       wx_error *err);

static int put_u_escape(wx_buf *out, unsigned unit, wx_error *err)
{
    static const char hex[] = "0123456789abcdef";
    char esc[6] = {'\\', 'u', hex[(unit >> 12) & 15], hex[(unit >> 8) & 15],
                   hex[(unit >> 4) & 15], hex[unit & 15]};

    return wx_buf_append(out, esc, sizeof(esc), err);
}

/* The short escape of an ASCII byte, or "" for a \u00XX escape. */
static const char *ascii_escape(unsigned char c)
{
    switch (c) {
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    case '\n':
        return "\\n";
    case '\r':
        return "\\r";
    case '\t':
        return "\\t";
    case '\b':
        return "\\b";
    case '\f':
        return "\\f";
    }
    return "";
}

/* Decode one UTF-8 sequence of a validated string; returns its length. */
static size_t decode_utf8(const unsigned char *p, size_t left, unsigned *cp)
{
    if (p[0] < 0xE0 && left >= 2) {
        *cp = (unsigned)(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
        return 2;
    }
    if (p[0] < 0xF0 && left >= 3) {
        *cp = (unsigned)(p[0] & 0x0F) << 12 | (unsigned)(p[1] & 0x3F) << 6 |
              (p[2] & 0x3F);
        return 3;
    }
    if (left >= 4) {
        *cp = (unsigned)(p[0] & 0x07) << 18 | (unsigned)(p[1] & 0x3F) << 12 |
              (unsigned)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
        return 4;
    }
    return 0;
}

/* \uXXXX for a non-ASCII code point, as a surrogate pair past U+FFFF. */
static int put_non_ascii(wx_buf *out, unsigned cp, wx_error *err)
{
    int rc;

    if (cp < 0x10000)
        return put_u_escape(out, cp, err);
    cp -= 0x10000;
    rc = put_u_escape(out, 0xD800 + (cp >> 10), err);
    return rc ? rc : put_u_escape(out, 0xDC00 + (cp & 0x3FF), err);
}

/* A byte written as it is (no escape) in a JSON string. */
static bool is_plain(unsigned char c, bool ascii)
{
    return c >= 0x20 && c != '"' && c != '\\' && !(ascii && c >= 0x7f);
}

/* Write the escape of the byte or UTF-8 sequence at p; returns its length. */
static size_t write_escape(wx_buf *out, const unsigned char *p,
                           const unsigned char *end, wx_error *err, int *rc)
{
    const char *esc;
    unsigned cp;
    size_t n;

    if (*p < 0x80) {
        esc = ascii_escape(*p);
        *rc = *esc ? wx_buf_puts(out, esc, err) : put_u_escape(out, *p, err);
        return 1;
    }
    n = decode_utf8(p, (size_t)(end - p), &cp);
    if (n == 0) {
        *rc = wx_error_set(err, WX_EINVAL, "string is not valid UTF-8");
        return 1;
    }
    *rc = put_non_ascii(out, cp, err);
    return n;
}

int wx__canon_string(wx_buf *out, const char *s, size_t len, unsigned flags,
                     wx_error *err)
{
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *end = p + len;
    bool ascii = flags & WX_JSON_ENSURE_ASCII;
    int rc = wx_buf_reserve(out, len + 2, err);

    if (!rc)
        rc = wx_buf_putc(out, '"', err);
    while (!rc && p < end) {
        const unsigned char *run = p;

        p = (const unsigned char *)wx__json_plain_run_end((const char *)p,
                                                          (const char *)end);
        while (p < end && is_plain(*p, ascii)) /* non-ASCII, when allowed */
            p++;
        if (p > run)
            rc = wx_buf_append(out, run, (size_t)(p - run), err);
        if (!rc && p < end)
            p += write_escape(out, p, end, err, &rc);
    }
    return rc ? rc : wx_buf_putc(out, '"', err);
}

int wx__canon_int(wx_buf *out, int64_t v, wx_error *err)
{
    char text[24], *p = text + sizeof(text);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return wx_buf_append(out, p, (size_t)(text + sizeof(text) - p), err);
}

static int write_real(wx_buf *out, double d, wx_error *err)
{
    char text[WX_FLOAT_REPR_MAX];
    size_t n = wx__float_repr(d, text);

    if (n == 0)
        return wx_error_set(err, WX_EINVAL,
                            "Non-finite float not allowed: %s",
                            isnan(d) ? "nan" : d > 0 ? "inf" : "-inf");
    return wx_buf_append(out, text, n, err);
}

/*
 * With WX_JSON_PRETTY, the nesting depth travels in the flags' upper bits
 * so the recursive writers keep one signature.
 */
#define DEPTH_SHIFT 8
#define DEPTH(flags) ((flags) >> DEPTH_SHIFT)
#define DEEPER(flags) ((flags) + (1u << DEPTH_SHIFT))

/* Pretty output: a line break and the indentation of `depth`. */
static int line_break(wx_buf *out, unsigned flags, unsigned depth,
                      wx_error *err)
{
    int rc;

    if (!(flags & WX_JSON_PRETTY))
        return 0;
    rc = wx_buf_putc(out, '\n', err);
    for (unsigned i = 0; !rc && i < depth; i++)
        rc = wx_buf_append(out, "  ", 2, err);
    return rc;
}

/* Between two items: "," compact, ",\n<indent>" pretty. */
static int separator(wx_buf *out, unsigned flags, wx_error *err)
{
    int rc = wx_buf_putc(out, ',', err);

    return rc ? rc : line_break(out, flags, DEPTH(flags) + 1, err);
}

static int write_array(wx_buf *out, const json_t *v, unsigned flags,
                       wx_error *err)
{
    size_t n = json_array_size(v);
    int rc = wx_buf_putc(out, '[', err);

    if (!rc && n)
        rc = line_break(out, flags, DEPTH(flags) + 1, err);
    for (size_t i = 0; !rc && i < n; i++) {
        if (i)
            rc = separator(out, flags, err);
        if (!rc)
            rc = write_value(out, json_array_get(v, i), DEEPER(flags), err);
    }
    if (!rc && n)
        rc = line_break(out, flags, DEPTH(flags), err);
    return rc ? rc : wx_buf_putc(out, ']', err);
}

typedef struct member {
    const char *key;
    size_t len;
    json_t *value;
} member;

/* Code point order equals UTF-8 byte order; a prefix sorts first. */
static int member_cmp(const void *a, const void *b)
{
    const member *x = a, *y = b;
    int c = memcmp(x->key, y->key, WX_MIN(x->len, y->len));

    if (c)
        return c;
    return (x->len > y->len) - (x->len < y->len);
}

static int write_member(wx_buf *out, const member *m, bool first,
                        unsigned flags, wx_error *err)
{
    int rc = first ? 0 : separator(out, flags, err);

    if (!rc)
        rc = wx__canon_string(out, m->key, m->len, flags, err);
    if (!rc)
        rc = (flags & WX_JSON_PRETTY) ? wx_buf_append(out, ": ", 2, err)
                                      : wx_buf_putc(out, ':', err);
    return rc ? rc : write_value(out, m->value, DEEPER(flags), err);
}

static int write_object(wx_buf *out, const json_t *v, unsigned flags,
                        wx_error *err)
{
    size_t n = json_object_size(v), i = 0;
    member stack[16];
    member *members = stack;
    const char *key;
    size_t key_len;
    json_t *value;
    int rc;

    if (n > WX_ARRAY_LEN(stack) &&
        !(members = wx__calloc(n, sizeof(*members))))
        return wx_error_set(err, WX_ENOMEM, "out of memory");
    json_object_keylen_foreach((json_t *)v, key, key_len, value)
    {
        members[i++] = (member){key, key_len, value};
    }
    if (flags & WX_JSON_SORT_KEYS)
        qsort(members, n, sizeof(*members), member_cmp);
    rc = wx_buf_putc(out, '{', err);
    if (!rc && n)
        rc = line_break(out, flags, DEPTH(flags) + 1, err);
    for (i = 0; !rc && i < n; i++)
        rc = write_member(out, &members[i], i == 0, flags, err);
    if (!rc && n)
        rc = line_break(out, flags, DEPTH(flags), err);
    if (!rc)
        rc = wx_buf_putc(out, '}', err);
    if (members != stack)
        wx_free(members);
    return rc;
}

static int write_value(wx_buf *out, const json_t *v, unsigned flags,
                       wx_error *err)
{
    const char *big;
    size_t big_len;

    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return write_object(out, v, flags, err);
    case JSON_ARRAY:
        return write_array(out, v, flags, err);
    case JSON_STRING:
        big = wx_json_bigint_text(v, &big_len);
        if (big)
            return wx_buf_append(out, big, big_len, err);
        return wx__canon_string(out, json_string_value(v),
                                json_string_length(v), flags, err);
    case JSON_INTEGER:
        return wx__canon_int(out, json_integer_value(v), err);
    case JSON_REAL:
        return write_real(out, json_real_value(v), err);
    case JSON_TRUE:
        return wx_buf_append(out, "true", 4, err);
    case JSON_FALSE:
        return wx_buf_append(out, "false", 5, err);
    case JSON_NULL:
        return wx_buf_append(out, "null", 4, err);
    }
    return wx_error_set(err, WX_EINVAL, "unknown JSON value type");
}

int wx_json_write(wx_buf *out, const json_t *v, unsigned flags,
                  wx_error *err)
{
    size_t mark = out->len;
    int rc = write_value(out, v, flags & ((1u << DEPTH_SHIFT) - 1), err);

    if (rc)
        wx_buf_truncate(out, mark);
    return rc;
}

int wx_json_canonical(wx_buf *out, const json_t *v, wx_error *err)
{
    return wx_json_write(out, v, WX_JSON_SORT_KEYS, err);
}

/* ---- the fixed-shape writer ---- */

void wx__jw_raw(wx__jw *w, const char *s)
{
    if (!w->rc)
        w->rc = wx_buf_puts(w->b, s, w->err);
}

void wx__jw_str(wx__jw *w, const char *s)
{
    size_t len = s ? strlen(s) : 0;

    if (w->rc)
        return;
    /* Unlike a jansson string, `s` was never checked. */
    if (!wx__utf8_valid(s, len))
        w->rc = wx_error_set(w->err, WX_EINVAL, "string is not valid UTF-8");
    else
        w->rc = wx__canon_string(w->b, s ? s : "", len, w->flags, w->err);
}

void wx__jw_int(wx__jw *w, int64_t v)
{
    if (!w->rc)
        w->rc = wx__canon_int(w->b, v, w->err);
}

void wx__jw_base64(wx__jw *w, const uint8_t *data, size_t n)
{
    size_t len = wx__b64_encoded_len(n);

    if (!w->rc)
        w->rc = wx_buf_reserve(w->b, len + 3, w->err);
    if (w->rc)
        return;
    w->b->data[w->b->len++] = '"';
    wx__b64_encode(data, n, w->b->data + w->b->len);
    w->b->len += len;
    w->b->data[w->b->len++] = '"';
    w->b->data[w->b->len] = '\0';
}

void wx__jw_value(wx__jw *w, const json_t *v)
{
    if (!w->rc)
        w->rc = wx_json_write(w->b, v, w->flags, w->err);
}
