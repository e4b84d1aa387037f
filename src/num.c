/* Python-compatible float repr and locale-independent number parsing. */
#include "internal.h"

#include <float.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>

#include "alloc.h"
#include "num.h"

static locale_t c_locale;
static pthread_once_t c_locale_once = PTHREAD_ONCE_INIT;

static void make_c_locale(void)
{
    c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
}

/* The "C" locale, so a host's LC_NUMERIC never changes number text. */
static locale_t get_c_locale(void)
{
    pthread_once(&c_locale_once, make_c_locale);
    if (!c_locale)
        WX_BUG("cannot create the C locale");
    return c_locale;
}

/*
 * Format `v` (> 0) with `prec` significant digits as "d.ddde[+-]X" in the
 * C locale.
 */
static void format_e(double v, int prec, char *buf, size_t max)
{
    locale_t old = uselocale(get_c_locale());

    snprintf(buf, max, "%.*e", prec - 1, v);
    uselocale(old);
}

static bool reads_back(const char *text, double v)
{
    return strtod_l(text, NULL, get_c_locale()) == v;
}

/*
 * Split "d.ddde-X" into its digits (no point) and decimal exponent.
 * Returns the number of digits.
 */
static int split_e(const char *buf, char *digits, int *exp10)
{
    int n = 0;
    const char *p = buf;

    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[n++] = *p;
    digits[n] = '\0';
    *exp10 = atoi(p + 1);
    return n;
}

/*
 * Add `delta` (+1 or -1) to the last digit of the `n`-digit decimal
 * `digits` x 10^exp10 and rebuild its e-notation text in `buf`.  Returns
 * false when the change leaves `n` digits (a carry or a borrow past the
 * first digit), which never yields a shorter candidate.
 */
static bool neighbour(const char *digits, int n, int exp10, int delta,
                      char *buf, size_t max)
{
    char d[24];
    int i;

    memcpy(d, digits, (size_t)n + 1);
    for (i = n - 1; i >= 0; i--) {
        int c = d[i] - '0' + delta;

        if (c >= 0 && c <= 9) {
            d[i] = (char)('0' + c);
            break;
        }
        d[i] = delta > 0 ? '0' : '9';
    }
    if (i < 0 || d[0] == '0')
        return false;
    snprintf(buf, max, "%c%s%se%d", d[0], n > 1 ? "." : "", d + 1, exp10);
    return true;
}

/* Drop trailing zeros of a digit string; returns the new length. */
static int strip_zeros(char *digits, int n)
{
    while (n > 1 && digits[n - 1] == '0')
        digits[--n] = '\0';
    return n;
}

/*
 * Find the shortest decimal digits that read back to `v` (> 0, finite),
 * the closest to `v` among those (Python's repr, David Gay's shortest
 * mode).
 *
 * At most one decimal of 15 or fewer significant digits reads back to a
 * given double (DBL_DIG = 15: such decimals survive a round trip through
 * double, so two of them cannot share one).  So when the 15-digit rounding
 * of `v` reads back, it is that decimal and, without its trailing zeros,
 * the shortest.  Otherwise 16 digits are tried, then 17, which always
 * read back.  (Subnormals are searched from one digit up.)  Near a power
 * of two the rounding interval is lopsided and
 * the correctly rounded candidate can miss while its neighbour in the
 * last digit reads back; then the neighbour is the answer.
 */
static int shortest_digits(double v, char digits[24], int *exp10)
{
    char buf[48];
    int n;

    /* Below 2^53 an integral value is exact, and so are its neighbours:
       its own digits are the shortest (counts, sizes, losses of 1.0). */
    if (v < 0x1p53 && v == floor(v)) {
        uint64_t u = (uint64_t)v;
        int k = 0;

        do {
            buf[k++] = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        for (n = 0; n < k; n++)
            digits[n] = buf[k - 1 - n];
        digits[n] = '\0';
        *exp10 = n - 1;
        return strip_zeros(digits, n);
    }
    if (v >= DBL_MIN) {
        format_e(v, 15, buf, sizeof(buf));
        n = split_e(buf, digits, exp10);
        if (reads_back(buf, v))
            return strip_zeros(digits, n);
    }
    /* Subnormals have fewer bits: the 15-digit argument does not hold. */
    for (int prec = v >= DBL_MIN ? 16 : 1; prec <= 17; prec++) {
        format_e(v, prec, buf, sizeof(buf));
        n = split_e(buf, digits, exp10);
        if (reads_back(buf, v))
            return n;
        for (int delta = -1; delta <= 1; delta += 2) {
            if (neighbour(digits, n, *exp10, delta, buf, sizeof(buf)) &&
                reads_back(buf, v))
                return split_e(buf, digits, exp10);
        }
    }
    WX_BUG("no 17-digit representation reads back");
}

/* Lay out `n` digits with decimal exponent `e` the way Python repr does. */
static size_t layout(const char *digits, int n, int e, char *out)
{
    char *p = out;

    if (e >= -4 && e < 16) {
        if (e < 0) {
            *p++ = '0';
            *p++ = '.';
            for (int i = 0; i < -e - 1; i++)
                *p++ = '0';
            memcpy(p, digits, (size_t)n);
            p += n;
        } else {
            for (int i = 0; i <= e; i++)
                *p++ = i < n ? digits[i] : '0';
            *p++ = '.';
            if (n > e + 1) {
                memcpy(p, digits + e + 1, (size_t)(n - e - 1));
                p += n - e - 1;
            } else {
                *p++ = '0';
            }
        }
        *p = '\0';
        return (size_t)(p - out);
    }
    *p++ = digits[0];
    if (n > 1) {
        *p++ = '.';
        memcpy(p, digits + 1, (size_t)(n - 1));
        p += n - 1;
    }
    p += sprintf(p, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    return (size_t)(p - out);
}

size_t wx__float_repr(double v, char out[WX_FLOAT_REPR_MAX])
{
    char digits[24];
    int n, e;
    size_t sign = 0;

    if (!isfinite(v))
        return 0;
    if (signbit(v)) {
        out[sign++] = '-';
        v = -v;
    }
    if (v == 0) {
        memcpy(out + sign, "0.0", 4);
        return sign + 3;
    }
    n = shortest_digits(v, digits, &e);
    return sign + layout(digits, n, e, out + sign);
}

int wx__parse_double(const char *text, size_t len, double *out)
{
    char stack[64];
    char *copy = stack;
    char *end;
    bool ok;

    /* strtod needs a NUL-terminated copy: the token may end the input. */
    if (len >= sizeof(stack)) {
        copy = wx__malloc(len + 1);
        if (!copy)
            return WX_ENOMEM;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    *out = strtod_l(copy, &end, get_c_locale());
    ok = end == copy + len && len > 0;
    if (copy != stack)
        wx_free(copy);
    return ok ? 0 : WX_EINVAL;
}

bool wx__parse_int64(const char *text, size_t len, int64_t *out)
{
    bool neg = len > 0 && text[0] == '-';
    size_t i = neg ? 1 : 0;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t v = 0;

    if (i == len)
        return false;
    for (; i < len; i++) {
        unsigned d = (unsigned)(text[i] - '0');

        if (d > 9 || v > (limit - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}
