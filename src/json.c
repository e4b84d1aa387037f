/*
 * Strict JSON reader producing jansson values, with exact big integers.
 *
 * A big integer (outside int64) is stored as a jansson string whose first
 * byte is 0xFF followed by its decimal text.  0xFF never occurs in UTF-8,
 * so no parsed string can be mistaken for one; only this module makes or
 * reads the tag.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>

#include <warmexec/json.h>

#include "alloc.h"
#include "json.h"
#include "num.h"

#define BIGINT_TAG '\xff'

/* Where the reader is, for messages: a key or an index per level. */
typedef struct path_step {
    const char *key; /* NULL for an array index */
    size_t key_len;
    size_t index; /* NO_INDEX before the first element */
} path_step;

#define NO_INDEX SIZE_MAX

typedef struct parser {
    const char *start, *p, *end;
    int depth;
    path_step path[WX_JSON_MAX_DEPTH + 1];
    wx_buf scratch; /* decoded string being built */
    wx_error *err;
    int rc;
    unsigned flags;
} parser;

static json_t *parse_value(parser *ps);

/* Record the first error with the line and column of `at`. */
/* "in params.x" or "in sim_returns[2].outputs" (empty at top level). */
static void format_path(const parser *ps, char *out, size_t max)
{
    size_t used = 0;

    out[0] = '\0';
    for (int d = 1; d <= ps->depth && used + 1 < max; d++) {
        const path_step *st = &ps->path[d];
        int n;

        if (st->key)
            n = snprintf(out + used, max - used, "%s%.*s",
                         used ? "." : ", in ", (int)WX_MIN(st->key_len, 64),
                         st->key);
        else if (st->index != NO_INDEX)
            n = snprintf(out + used, max - used, "%s[%zu]",
                         used ? "" : ", in ", st->index);
        else
            break;
        if (n < 0)
            break;
        used = WX_MIN(used + (size_t)n, max - 1);
    }
}

static json_t *fail_at(parser *ps, const char *at, int code,
                       const char *what)
{
    size_t line = 1, col = 1;
    char path[256];

    if (ps->rc)
        return NULL;
    for (const char *q = ps->start; q < at; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    format_path(ps, path, sizeof(path));
    ps->rc = wx_error_set(ps->err, code,
                          "invalid JSON at line %zu column %zu%s: %s", line,
                          col, path, what);
    return NULL;
}

static json_t *fail(parser *ps, const char *what)
{
    return fail_at(ps, ps->p, WX_EINVAL, what);
}

static json_t *oom(parser *ps)
{
    return fail_at(ps, ps->p, WX_ENOMEM, "out of memory");
}

static void skip_ws(parser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' ||
                               *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static bool consume(parser *ps, const char *word)
{
    size_t n = strlen(word);

    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
        return false;
    ps->p += n;
    return true;
}

/* Length of the UTF-8 sequence at p (1..4), or 0 when it is invalid. */
static size_t utf8_seq_len(const unsigned char *p, const unsigned char *end)
{
    unsigned c = p[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;

    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        n = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4;
    else
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    /* Tighter bounds on the second byte exclude overlongs, surrogates
       and code points past U+10FFFF. */
    if (c == 0xE0)
        lo = 0xA0;
    else if (c == 0xED)
        hi = 0x9F;
    else if (c == 0xF0)
        lo = 0x90;
    else if (c == 0xF4)
        hi = 0x8F;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF)
            return 0;
    return n;
}

static int hex4(const char *p)
{
    int v = 0;

    for (int i = 0; i < 4; i++) {
        char c = p[i];

        v <<= 4;
        if (c >= '0' && c <= '9')
            v |= c - '0';
        else if (c >= 'a' && c <= 'f')
            v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v |= c - 'A' + 10;
        else
            return -1;
    }
    return v;
}

static int put_utf8(wx_buf *b, unsigned cp)
{
    char out[4];
    size_t n;

    if (cp < 0x80) {
        out[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        out[0] = (char)(0xF0 | cp >> 18);
        out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return wx_buf_append(b, out, n, NULL);
}

/* Decode "\uXXXX" (and a following low surrogate) at ps->p (past 'u'). */
static bool parse_unicode_escape(parser *ps)
{
    int hi, lo;

    if (ps->end - ps->p < 4 || (hi = hex4(ps->p)) < 0)
        return fail(ps, "invalid \\u escape"), false;
    ps->p += 4;
    if (hi >= 0xDC00 && hi <= 0xDFFF)
        return fail(ps, "lone surrogate in \\u escape"), false;
    if (hi >= 0xD800 && hi <= 0xDBFF) {
        if (ps->end - ps->p < 6 || ps->p[0] != '\\' || ps->p[1] != 'u' ||
            (lo = hex4(ps->p + 2)) < 0xDC00 || lo > 0xDFFF)
            return fail(ps, "lone surrogate in \\u escape"), false;
        ps->p += 6;
        hi = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
    }
    if (put_utf8(&ps->scratch, (unsigned)hi) != 0)
        return oom(ps), false;
    return true;
}

static bool parse_escape(parser *ps)
{
    static const char from[] = "\"\\/bfnrt";
    static const char to[] = "\"\\/\b\f\n\r\t";
    const char *hit;

    if (ps->p >= ps->end)
        return fail(ps, "unterminated string"), false;
    if (*ps->p == 'u') {
        ps->p++;
        return parse_unicode_escape(ps);
    }
    hit = memchr(from, *ps->p, sizeof(from) - 1);
    if (!hit || !*ps->p)
        return fail(ps, "invalid escape"), false;
    ps->p++;
    if (wx_buf_putc(&ps->scratch, to[hit - from], NULL) != 0)
        return oom(ps), false;
    return true;
}

/* Whether one of the 8 bytes of `v` is 0 (the classic SWAR test). */
static inline uint64_t has_zero_byte(uint64_t v)
{
    return (v - 0x0101010101010101ull) & ~v & 0x8080808080808080ull;
}

/*
 * The end of the run of plain characters (printable ASCII, 0x20 to 0x7e,
 * other than '"' and '\\') starting at p: eight bytes per step, then one
 * by one.
 */
const char *wx__json_plain_run_end(const char *p, const char *end)
{
    const uint64_t quotes = 0x2222222222222222ull;    /* '"' */
    const uint64_t slashes = 0x5c5c5c5c5c5c5c5cull;   /* '\\' */
    const uint64_t controls = 0x2020202020202020ull;  /* < 0x20 */
    const uint64_t dels = 0x7f7f7f7f7f7f7f7full;      /* DEL */

    while (end - p >= 8) {
        uint64_t v;

        memcpy(&v, p, 8);
        if (has_zero_byte(v ^ quotes) | has_zero_byte(v ^ slashes) |
            ((v - controls) & ~v & 0x8080808080808080ull) |
            has_zero_byte(v ^ dels) | (v & 0x8080808080808080ull))
            break;
        p += 8;
    }
    while (p < end && (unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f &&
           *p != '"' && *p != '\\')
        p++;
    return p;
}

/*
 * Decode the string starting after its opening quote into ps->scratch;
 * stops past the closing quote.
 */
static bool parse_string_body(parser *ps)
{
    wx_buf_reset(&ps->scratch);
    for (;;) {
        const char *run = ps->p;

        /* Copy a run of plain ASCII in one go. */
        ps->p = wx__json_plain_run_end(ps->p, ps->end);
        if (ps->p > run &&
            wx_buf_append(&ps->scratch, run, (size_t)(ps->p - run), NULL))
            return oom(ps), false;
        if (ps->p >= ps->end)
            return fail(ps, "unterminated string"), false;
        unsigned char c = (unsigned char)*ps->p;
        if (c == '"') {
            ps->p++;
            return true;
        }
        if (c == '\\') {
            ps->p++;
            if (!parse_escape(ps))
                return false;
            continue;
        }
        if (c < 0x20)
            return fail(ps, "control character in string"), false;
        size_t n = utf8_seq_len((const unsigned char *)ps->p,
                                (const unsigned char *)ps->end);
        if (n == 0)
            return fail(ps, "invalid UTF-8"), false;
        if (wx_buf_append(&ps->scratch, ps->p, n, NULL))
            return oom(ps), false;
        ps->p += n;
    }
}

static json_t *parse_string(parser *ps)
{
    const char *start = ++ps->p; /* past the opening quote */
    const char *run_end = wx__json_plain_run_end(start, ps->end);
    json_t *s;

    /* A string of plain characters (base64 artifacts, say) is taken
     * straight from the input, without a copy through the scratch. */
    if (run_end < ps->end && *run_end == '"') {
        ps->p = run_end + 1;
        s = json_stringn_nocheck(start, (size_t)(run_end - start));
        return s ? s : oom(ps);
    }
    if (!parse_string_body(ps))
        return NULL;
    s = json_stringn_nocheck(ps->scratch.data, ps->scratch.len);
    return s ? s : oom(ps);
}

static const char *scan_digits(const char *p, const char *end)
{
    while (p < end && *p >= '0' && *p <= '9')
        p++;
    return p;
}

static json_t *make_integer(parser *ps, const char *text, size_t len)
{
    int64_t i;
    json_t *v;

    if (wx__parse_int64(text, len, &i))
        v = json_integer(i);
    else if (len - (text[0] == '-') > WX_JSON_MAX_INT_DIGITS)
        return fail_at(ps, text, WX_EINVAL, "integer has too many digits");
    else
        v = wx_json_bigint(text, len);
    return v ? v : oom(ps);
}

/* NaN and Infinity: Python reads them, but they have no JSON form. */
static json_t *non_finite(parser *ps, const char *at, const char *which)
{
    char what[96];

    if (ps->flags & WX_JSON_NONFINITE_AS_NULL)
        return json_null();
    snprintf(what, sizeof(what),
             "Non-finite float not allowed: %s (not valid JSON)", which);
    return fail_at(ps, at, WX_EINVAL, what);
}

static json_t *parse_number(parser *ps)
{
    const char *start = ps->p, *p = ps->p;
    bool is_real = false;
    double d;
    int rc;
    json_t *v;

    if (p < ps->end && *p == '-')
        p++;
    if (p >= ps->end || *p < '0' || *p > '9')
        return fail_at(ps, start, WX_EINVAL, "invalid number");
    p = (*p == '0') ? p + 1 : scan_digits(p, ps->end);
    if (p < ps->end && *p == '.') {
        const char *frac = ++p;

        p = scan_digits(p, ps->end);
        if (p == frac)
            return fail_at(ps, start, WX_EINVAL, "invalid number");
        is_real = true;
    }
    if (p < ps->end && (*p == 'e' || *p == 'E')) {
        const char *exp;

        p++;
        if (p < ps->end && (*p == '+' || *p == '-'))
            p++;
        exp = p;
        p = scan_digits(p, ps->end);
        if (p == exp)
            return fail_at(ps, start, WX_EINVAL, "invalid number");
        is_real = true;
    }
    ps->p = p;
    if (!is_real)
        return make_integer(ps, start, (size_t)(p - start));
    rc = wx__parse_double(start, (size_t)(p - start), &d);
    if (rc == WX_ENOMEM)
        return oom(ps);
    if (rc)
        return fail_at(ps, start, WX_EINVAL, "invalid number");
    if (!isfinite(d))
        return non_finite(ps, start, d > 0 ? "inf" : "-inf");
    v = json_real(d);
    return v ? v : oom(ps);
}

static json_t *parse_array(parser *ps)
{
    json_t *arr = json_array();

    if (!arr)
        return oom(ps);
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return arr;
    }
    for (size_t i = 0;; i++) {
        json_t *item;

        ps->path[ps->depth] = (path_step){NULL, 0, i};
        item = parse_value(ps);
        if (!item || json_array_append_new(arr, item) != 0) {
            json_decref(arr);
            return item ? oom(ps) : NULL;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            return arr;
        }
        json_decref(arr);
        return fail(ps, "expected ',' or ']' in array");
    }
}

/* Parse `"key": value` into `obj`. */
static bool parse_member(parser *ps, json_t *obj)
{
    char stack_key[256];
    char *key = stack_key;
    size_t key_len;
    json_t *value;
    bool ok;

    if (ps->p >= ps->end || *ps->p != '"')
        return fail(ps, "expected a string key in object"), false;
    ps->p++;
    if (!parse_string_body(ps))
        return false;
    /* The scratch buffer is reused by the value: keep the key aside. */
    key_len = ps->scratch.len;
    if (key_len < sizeof(stack_key))
        memcpy(stack_key, ps->scratch.data, key_len);
    else if (!(key = wx_buf_detach(&ps->scratch, NULL)))
        return oom(ps), false;
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p != ':') {
        fail(ps, "expected ':' after object key");
        ok = false;
        goto out;
    }
    ps->p++;
    ps->path[ps->depth] = (path_step){key, key_len, 0};
    value = parse_value(ps);
    ok = value && json_object_setn_new_nocheck(obj, key, key_len, value) == 0;
    if (value && !ok)
        oom(ps);
out:
    /* The key dies with this frame: forget it before returning. */
    ps->path[ps->depth] = (path_step){NULL, 0, NO_INDEX};
    if (key != stack_key)
        wx_free(key);
    return ok;
}

static json_t *parse_object(parser *ps)
{
    json_t *obj = json_object();

    if (!obj)
        return oom(ps);
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return obj;
    }
    for (;;) {
        skip_ws(ps);
        if (!parse_member(ps, obj)) {
            json_decref(obj);
            return NULL;
        }
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            return obj;
        }
        json_decref(obj);
        return fail(ps, "expected ',' or '}' in object");
    }
}

static json_t *parse_literal(parser *ps)
{
    const char *start = ps->p;
    json_t *v = NULL;

    if (consume(ps, "true"))
        v = json_true();
    else if (consume(ps, "false"))
        v = json_false();
    else if (consume(ps, "null"))
        v = json_null();
    else if (consume(ps, "NaN"))
        return non_finite(ps, start, "nan");
    else if (consume(ps, "Infinity"))
        return non_finite(ps, start, "inf");
    else if (consume(ps, "-Infinity"))
        return non_finite(ps, start, "-inf");
    else
        return fail(ps, "expected a value");
    return v;
}

static json_t *parse_nested(parser *ps, json_t *(*fn)(parser *))
{
    json_t *v;

    if (ps->depth + 1 > WX_JSON_MAX_DEPTH)
        return fail(ps, "nesting too deep");
    ps->depth++;
    ps->path[ps->depth] = (path_step){NULL, 0, NO_INDEX};
    v = fn(ps);
    ps->depth--;
    return v;
}

static json_t *parse_value(parser *ps)
{
    skip_ws(ps);
    if (ps->p >= ps->end)
        return fail(ps, "expected a value, found the end of the input");
    switch (*ps->p) {
    case '{':
        return parse_nested(ps, parse_object);
    case '[':
        return parse_nested(ps, parse_array);
    case '"':
        return parse_string(ps);
    case '-':
        if (ps->end - ps->p > 1 && ps->p[1] == 'I')
            return parse_literal(ps);
        return parse_number(ps);
    default:
        if (*ps->p >= '0' && *ps->p <= '9')
            return parse_number(ps);
        return parse_literal(ps);
    }
}

int wx_json_parse(const char *text, size_t len, json_t **out, wx_error *err)
{
    return wx_json_parse_flags(text, len, 0, out, err);
}

int wx_json_parse_flags(const char *text, size_t len, unsigned flags,
                        json_t **out, wx_error *err)
{
    parser ps; /* not zeroed: path[] (12 KiB) is written as it deepens */
    json_t *v;

    ps.start = ps.p = text;
    ps.end = text + len;
    ps.depth = 0;
    wx_buf_init(&ps.scratch, SIZE_MAX - 1);
    ps.err = err;
    ps.rc = 0;
    ps.flags = flags;

    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        wx_error_set(err, WX_EINVAL,
                     "invalid JSON: starts with a UTF-8 byte order mark");
        return WX_EINVAL;
    }
    v = parse_value(&ps);
    if (v) {
        skip_ws(&ps);
        if (ps.p != ps.end) {
            json_decref(v);
            v = fail(&ps, "extra data after the JSON value");
        }
    }
    wx_buf_release(&ps.scratch);
    if (!v)
        return ps.rc;
    *out = v;
    return 0;
}

bool wx_json_is_bigint(const json_t *v)
{
    return json_is_string(v) && json_string_length(v) >= 2 &&
           json_string_value(v)[0] == BIGINT_TAG;
}

const char *wx_json_bigint_text(const json_t *v, size_t *len)
{
    if (!wx_json_is_bigint(v))
        return NULL;
    if (len)
        *len = json_string_length(v) - 1;
    return json_string_value(v) + 1;
}

json_t *wx_json_bigint(const char *text, size_t len)
{
    char tagged[WX_JSON_MAX_INT_DIGITS + 3];
    size_t neg = len > 0 && text[0] == '-';
    int64_t ignored;

    if (len <= neg || len > WX_JSON_MAX_INT_DIGITS + neg ||
        (text[neg] == '0') || wx__parse_int64(text, len, &ignored))
        return NULL;
    for (size_t i = neg; i < len; i++)
        if (text[i] < '0' || text[i] > '9')
            return NULL;
    tagged[0] = BIGINT_TAG;
    memcpy(tagged + 1, text, len);
    return json_stringn_nocheck(tagged, len + 1);
}

void wx__utf8_scrub(char *s)
{
    unsigned char *p = (unsigned char *)s;
    const unsigned char *end = p + strlen(s);

    while (p < end) {
        size_t n = utf8_seq_len(p, end);

        if (n == 0)
            *p++ = '?';
        else
            p += n;
    }
}

bool wx__utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;

    while (p < end) {
        uint64_t v;
        size_t n;

        /* Eight ASCII bytes at a time: most strings are all ASCII. */
        if (end - p >= 8) {
            memcpy(&v, p, 8);
            if (!(v & 0x8080808080808080ull)) {
                p += 8;
                continue;
            }
        }
        n = utf8_seq_len(p, end);

        if (n == 0)
            return false;
        p += n;
    }
    return true;
}

const char *wx_json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return wx_json_is_bigint(v) ? "integer" : "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "float";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}
