/* Unit tests of Python's float repr and strict number parsing. */
#include "testutil.h"

#include <float.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>

#include "alloc.h"
#include "num.h"

/* A decimal mantissa * 10^exp10 without trailing zeros in the mantissa. */
typedef struct decimal {
    uint64_t mantissa;
    int exp10;
    int digits;
} decimal;

/* Deterministic pseudo-random 64-bit values (xorshift64*). */
static uint64_t next_random(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1du;
}

static uint64_t bits_of(double v)
{
    uint64_t bits;

    memcpy(&bits, &v, sizeof(bits));
    return bits;
}

static double double_of(uint64_t bits)
{
    double v;

    memcpy(&v, &bits, sizeof(v));
    return v;
}

static bool same_bits(double a, double b)
{
    return bits_of(a) == bits_of(b);
}

/* A finite double from a random bit pattern. */
static double random_finite(uint64_t *seed)
{
    for (;;) {
        double v = double_of(next_random(seed));

        if (isfinite(v))
            return v;
    }
}

/* A random double in [2^-24, 2^60), where repr switches its layout. */
static double random_moderate(uint64_t *seed)
{
    uint64_t exponent = 1023 - 24 + next_random(seed) % 84;
    uint64_t fraction = next_random(seed) & 0xfffffffffffffu;

    return double_of(exponent << 52 | fraction);
}

/* wx__float_repr(v), checking that the length is the string's. */
static const char *repr(double v, char out[WX_FLOAT_REPR_MAX])
{
    size_t n = wx__float_repr(v, out);

    assert_in_range(n, 1, WX_FLOAT_REPR_MAX - 1);
    assert_int_equal(strlen(out), n);
    return out;
}

/* Split decimal text ("-0.00125", "1.5e+300", "12.0") into a decimal. */
static decimal parse_decimal(const char *text)
{
    decimal d = {0, 0, 0};
    bool fraction = false;
    const char *p = text + (*text == '-');

    for (; *p && *p != 'e'; p++) {
        if (*p == '.') {
            fraction = true;
            continue;
        }
        d.mantissa = d.mantissa * 10 + (uint64_t)(*p - '0');
        if (fraction)
            d.exp10--;
    }
    if (*p == 'e')
        d.exp10 += atoi(p + 1);
    while (d.mantissa && d.mantissa % 10 == 0) {
        d.mantissa /= 10;
        d.exp10++;
    }
    for (uint64_t m = d.mantissa; m; m /= 10)
        d.digits++;
    return d;
}

static bool reads_back(uint64_t mantissa, int exp10, double v)
{
    char text[48];

    snprintf(text, sizeof(text), "%" PRIu64 "e%d", mantissa, exp10);
    return same_bits(strtod(text, NULL), v);
}

/*
 * The repr of `v` (> 0) is shortest: no decimal with one digit less reads
 * back to `v`.  Checking the two around the repr suffices, because the
 * values that read back to `v` form an interval.  Among the decimals of
 * the repr's length it is the nearest one when that one reads back.
 */
static void assert_shortest(double v)
{
    char out[WX_FLOAT_REPR_MAX], nearest[48];
    decimal d = parse_decimal(repr(v, out));

    if (d.digits > 1 && (reads_back(d.mantissa / 10, d.exp10 + 1, v) ||
                         reads_back(d.mantissa / 10 + 1, d.exp10 + 1, v)))
        fail_msg("repr %s of %a is not the shortest", out, v);
    snprintf(nearest, sizeof(nearest), "%.*e", d.digits - 1, v);
    if (same_bits(strtod(nearest, NULL), v)) {
        decimal n = parse_decimal(nearest);

        if (n.mantissa != d.mantissa || n.exp10 != d.exp10)
            fail_msg("repr %s of %a is not the nearest (%s)", out, v,
                     nearest);
    }
}

/*
 * Fixed notation for decimal exponents in [-4, 16), else "de[+-]XX"; the
 * repr of -v is the one of v with the sign flipped.
 */
static void assert_python_layout(double v)
{
    char out[WX_FLOAT_REPR_MAX], neg[WX_FLOAT_REPR_MAX];
    decimal d = parse_decimal(repr(v, out));
    int exp10 = d.exp10 + d.digits - 1;
    const char *e = strchr(out, 'e');
    bool negative = out[0] == '-';

    if (exp10 >= -4 && exp10 < 16) {
        assert_null(e);
        assert_non_null(strchr(out, '.'));
        assert_true(out[strlen(out) - 1] != '.');
    } else {
        assert_non_null(e);
        assert_true(e[1] == '+' || e[1] == '-');
        assert_true(strlen(e + 2) >= 2);
    }
    repr(-v, neg);
    assert_int_equal(neg[0] == '-', !negative);
    assert_string_equal(neg + !negative, out + negative);
}

static void test_repr_known_values(void **state)
{
    static const struct {
        double v;
        const char *expected;
    } cases[] = {
        {0.0, "0.0"},
        {-0.0, "-0.0"},
        {1.0, "1.0"},
        {-1.5, "-1.5"},
        {0.1, "0.1"},
        {0.1 + 0.2, "0.30000000000000004"},
        {1.0 / 3, "0.3333333333333333"},
        {100.0, "100.0"},
        {123.456, "123.456"},
        {1e15, "1000000000000000.0"},
        {9999999999999998.0, "9999999999999998.0"},
        {1e16, "1e+16"},
        {1.2345678901234568e+17, "1.2345678901234568e+17"},
        {123456789012345680.0, "1.2345678901234568e+17"},
        {1e22, "1e+22"},
        {1e23, "1e+23"},
        {-1e100, "-1e+100"},
        {0.0001, "0.0001"},
        {9.999e-05, "9.999e-05"},
        {1e-05, "1e-05"},
        {1.5e-07, "1.5e-07"},
        {5e-324, "5e-324"},
        {DBL_MIN, "2.2250738585072014e-308"},
        {-DBL_MIN, "-2.2250738585072014e-308"},
        {DBL_MAX, "1.7976931348623157e+308"},
        {0x1p53, "9007199254740992.0"},
        /* Powers of two whose nearest 16-digit decimal does not read back. */
        {0x1p-24, "5.960464477539063e-08"},
        {0x1p-44, "5.684341886080802e-14"},
        {0x1p89, "6.189700196426902e+26"},
        {0x1p-1017, "7.120236347223045e-307"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[WX_FLOAT_REPR_MAX];

        assert_string_equal(repr(cases[i].v, out), cases[i].expected);
    }
}

static void test_repr_of_nan_and_infinity_is_empty(void **state)
{
    const double none[] = {NAN, -NAN, INFINITY, -INFINITY};

    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++) {
        char out[WX_FLOAT_REPR_MAX];

        memset(out, '#', sizeof(out));
        assert_int_equal(wx__float_repr(none[i], out), 0);
        assert_int_equal(out[0], '#');
    }
}

static void test_repr_round_trips_random_doubles(void **state)
{
    uint64_t seed = 0x853c49e6748fea9bu;

    for (int i = 0; i < 100000; i++) {
        char out[WX_FLOAT_REPR_MAX];
        double v = random_finite(&seed);

        if (!same_bits(strtod(repr(v, out), NULL), v))
            fail_msg("repr %s of %a does not read back", out, v);
    }
}

static void test_repr_of_integral_values(void **state)
{
    uint64_t seed = 0x9e3779b97f4a7c15u;

    /* Up to 2^53 every integer is a double: its repr is its digits. */
    for (int i = 0; i < 20000; i++) {
        char out[WX_FLOAT_REPR_MAX], expected[32];
        uint64_t u;

        seed = seed * 6364136223846793005u + 1442695040888963407u;
        u = (seed >> 11) >> (seed % 53); /* all magnitudes below 2^53 */
        snprintf(expected, sizeof(expected), "%" PRIu64 ".0", u);
        assert_string_equal(repr((double)u, out), expected);
    }
}

static void test_repr_is_shortest_and_nearest(void **state)
{
    uint64_t seed = 0xda3e39cb94b95bdbu;

    for (int i = 0; i < 2000; i++) {
        double v = random_finite(&seed);

        assert_shortest(v < 0 ? -v : v);
        assert_shortest(random_moderate(&seed));
    }
}

static void test_repr_layout_follows_python(void **state)
{
    uint64_t seed = 0x2545f4914f6cdd1du;

    for (int i = 0; i < 5000; i++) {
        assert_python_layout(random_finite(&seed));
        assert_python_layout(random_moderate(&seed));
    }
}

static void test_parse_int64_accepts_full_range(void **state)
{
    static const struct {
        const char *text;
        int64_t value;
    } cases[] = {
        {"0", 0},
        {"-0", 0},
        {"7", 7},
        {"-42", -42},
        {"007", 7},
        {"9223372036854775807", INT64_MAX},
        {"-9223372036854775808", INT64_MIN},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t v = 1;

        assert_true(wx__parse_int64(cases[i].text, strlen(cases[i].text),
                                    &v));
        assert_int_equal(v, cases[i].value);
    }
}

static void test_parse_int64_rejects_bad_text(void **state)
{
    static const char *const bad[] = {
        "9223372036854775808", "-9223372036854775809", "18446744073709551616",
        "99999999999999999999", "-", "", "+1", " 1", "1 ", "1a", "--1", "1-",
        "0x1", "1.0", "1e3",
    };

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t v;

        if (wx__parse_int64(bad[i], strlen(bad[i]), &v))
            fail_msg("'%s' was accepted", bad[i]);
    }
}

static void test_parse_int64_reads_only_len_bytes(void **state)
{
    int64_t v = 0;

    assert_true(wx__parse_int64("123", 2, &v));
    assert_int_equal(v, 12);
    assert_true(wx__parse_int64("-5x", 2, &v));
    assert_int_equal(v, -5);
    assert_false(wx__parse_int64("1\0", 2, &v));
}

static void test_parse_double_values(void **state)
{
    static const struct {
        const char *text;
        double value;
    } cases[] = {
        {"1.5", 1.5},       {"-0.0", -0.0},         {"0.1", 0.1},
        {"1e300", 1e300},   {"2.5E-3", 2.5e-3},     {"5e-324", 5e-324},
        {"1e400", INFINITY}, {"-1e400", -INFINITY},
        {"0.30000000000000004", 0.1 + 0.2},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        double v = 0;

        assert_int_equal(wx__parse_double(cases[i].text,
                                          strlen(cases[i].text), &v),
                         0);
        if (!same_bits(v, cases[i].value))
            fail_msg("'%s' parsed as %a", cases[i].text, v);
    }
}

static void test_parse_double_rejects_partial_text(void **state)
{
    static const char *const bad[] = {"", "1.5x", "abc", "1.5 ", "1,5", "."};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        double v;

        if (wx__parse_double(bad[i], strlen(bad[i]), &v) != WX_EINVAL)
            fail_msg("'%s' was accepted", bad[i]);
    }
}

static void test_parse_double_reads_only_len_bytes(void **state)
{
    double v = 0;

    assert_int_equal(wx__parse_double("1.25junk", 4, &v), 0);
    assert_true(same_bits(v, 1.25));
    assert_int_equal(wx__parse_double("1.5\0", 4, &v), WX_EINVAL);
}

static void test_parse_double_of_long_text(void **state)
{
    char text[201] = "0.1";
    double v = 0;

    memset(text + 3, '0', sizeof(text) - 4);
    assert_int_equal(wx__parse_double(text, strlen(text), &v), 0);
    assert_true(same_bits(v, 0.1));
    /* A long token needs a heap copy; its failure is not a syntax error. */
    wx__alloc_fail_after(0);
    assert_int_equal(wx__parse_double(text, strlen(text), &v), WX_ENOMEM);
    wx__alloc_fail_after(-1);
}

static void test_comma_locale_changes_nothing(void **state)
{
    char out[WX_FLOAT_REPR_MAX];
    bool comma, parsed_point, parsed_comma;
    double v = 0, ignored;

    if (!setlocale(LC_ALL, "de_DE.UTF-8"))
        skip();
    comma = strcmp(localeconv()->decimal_point, ",") == 0;
    parsed_point = wx__parse_double("1.5", 3, &v) == 0;
    parsed_comma = wx__parse_double("1,5", 3, &ignored) == 0;
    wx__float_repr(0.25, out);
    setlocale(LC_ALL, "C");
    assert_true(comma);
    assert_true(parsed_point);
    assert_true(same_bits(v, 1.5));
    assert_false(parsed_comma);
    assert_string_equal(out, "0.25");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repr_known_values),
        cmocka_unit_test(test_repr_of_nan_and_infinity_is_empty),
        cmocka_unit_test(test_repr_round_trips_random_doubles),
        cmocka_unit_test(test_repr_of_integral_values),
        cmocka_unit_test(test_repr_is_shortest_and_nearest),
        cmocka_unit_test(test_repr_layout_follows_python),
        cmocka_unit_test(test_parse_int64_accepts_full_range),
        cmocka_unit_test(test_parse_int64_rejects_bad_text),
        cmocka_unit_test(test_parse_int64_reads_only_len_bytes),
        cmocka_unit_test(test_parse_double_values),
        cmocka_unit_test(test_parse_double_rejects_partial_text),
        cmocka_unit_test(test_parse_double_reads_only_len_bytes),
        cmocka_unit_test(test_parse_double_of_long_text),
        cmocka_unit_test(test_comma_locale_changes_nothing),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
