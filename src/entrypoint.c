/* Entrypoint grammar of modelops-contracts (see entrypoint.h). */
#include "internal.h"

#include <locale.h>
#include <pthread.h>
#include <wctype.h>

#include <warmexec/entrypoint.h>

static locale_t utf8_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void make_utf8_locale(void)
{
    utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
}

static bool is_ascii_word_start(unsigned c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

/*
 * Python's \w for str patterns: ASCII letters, digits and '_', plus any
 * code point the C library's C.UTF-8 locale classifies as alphanumeric
 * (Python uses str.isalnum(); the two agree on letters and digits of
 * living scripts).
 */
static bool is_word(unsigned cp)
{
    if (cp < 0x80)
        return is_ascii_word_start(cp) || (cp >= '0' && cp <= '9');
    pthread_once(&utf8_once, make_utf8_locale);
    return utf8_locale && iswalnum_l((wint_t)cp, utf8_locale);
}

/* Decode one UTF-8 code point; 0 length for invalid UTF-8. */
static size_t next_cp(const unsigned char *p, const unsigned char *end,
                      unsigned *cp)
{
    unsigned c = p[0];
    size_t n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    unsigned v;

    if (c >= 0x80 && (c < 0xC2 || c > 0xF4))
        return 0;
    if ((size_t)(end - p) < n)
        return 0;
    v = n == 1 ? c : n == 2 ? c & 0x1F : n == 3 ? c & 0x0F : c & 0x07;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3F);
    }
    /* Overlongs, surrogates and values past U+10FFFF. */
    if ((n == 3 && v < 0x800) || (n == 4 && (v < 0x10000 || v > 0x10FFFF)) ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return n;
}

/* True when s[0, len) is a sequence of \w characters (and '.' if dots). */
static bool all_word(const char *s, size_t len, bool dots)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;

    while (p < end) {
        unsigned cp;
        size_t n = next_cp(p, end, &cp);

        if (n == 0 || !(is_word(cp) || (dots && cp == '.')))
            return false;
        p += n;
    }
    return true;
}

static bool valid_import_path(const char *s, size_t len)
{
    const char *last_dot = NULL;

    for (size_t i = 0; i < len; i++)
        if (s[i] == '.')
            last_dot = s + i;
    if (len == 0 || !is_ascii_word_start((unsigned char)s[0]) || !last_dot)
        return false;
    if (last_dot + 1 == s + len ||
        !is_ascii_word_start((unsigned char)last_dot[1]))
        return false;
    return all_word(s, len, true);
}

static bool is_slug_end(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool valid_scenario(const char *s, size_t len)
{
    if (len == 0 || len > WX_SCENARIO_MAX || !is_slug_end(s[0]) ||
        !is_slug_end(s[len - 1]))
        return false;
    for (size_t i = 1; i + 1 < len; i++)
        if (!is_slug_end(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
            return false;
    return true;
}

/* \w+ and not only underscores (Python: name.replace("_","").isalnum()). */
static bool valid_object_name(const char *s, size_t len)
{
    size_t underscores = 0;

    for (size_t i = 0; i < len; i++)
        underscores += s[i] == '_';
    return len > underscores && all_word(s, len, false);
}

/*
 * Model: a scenario slug.  Target "import.path:name": an object name;
 * the older "import.path/name": either.
 */
static bool valid_name(const char *s, size_t len, wx_entrypoint_kind kind,
                       char sep)
{
    if (kind == WX_EP_MODEL)
        return valid_scenario(s, len);
    if (sep == ':')
        return valid_object_name(s, len);
    return valid_object_name(s, len) || valid_scenario(s, len);
}

static const char *name_rule(wx_entrypoint_kind kind, char sep)
{
    if (kind == WX_EP_MODEL)
        return "scenario slug";
    return sep == ':' ? "object name" : "target name";
}

static int invalid(wx_error *err, const char *what, const char *s,
                   size_t len)
{
    return wx_error_set(err, WX_EINVAL, "Invalid %s: %.*s", what, (int)len,
                        s);
}

int wx_entrypoint_parse(const char *s, wx_entrypoint_kind kind,
                        wx_entrypoint *out, wx_error *err)
{
    size_t len = strlen(s);
    const char *slash = strrchr(s, '/');
    const char *colon = strchr(s, ':');
    wx_entrypoint ep;

    if (len > WX_ENTRYPOINT_MAX)
        return wx_error_set(err, WX_EINVAL,
                            "Invalid entrypoint format: longer than %d "
                            "bytes",
                            WX_ENTRYPOINT_MAX);
    if (kind == WX_EP_MODEL)
        colon = NULL;
    if ((!slash && !colon) || (slash && colon))
        return invalid(err, "entrypoint format", s, len);
    ep.sep = slash ? '/' : ':';
    ep.import_len = (size_t)((slash ? slash : colon) - s);
    ep.name_off = ep.import_len + 1;
    ep.name_len = len - ep.name_off;
    if (!valid_import_path(s, ep.import_len))
        return invalid(err, "import_path format", s, ep.import_len);
    if (!valid_name(s + ep.name_off, ep.name_len, kind, ep.sep))
        return invalid(err, name_rule(kind, ep.sep), s + ep.name_off,
                       ep.name_len);
    if (out)
        *out = ep;
    return 0;
}

int wx_entrypoint_format(const char *import_path, const char *scenario,
                         wx_buf *out, wx_error *err)
{
    size_t ip_len = strlen(import_path), sc_len = strlen(scenario);

    if (ip_len > WX_ENTRYPOINT_MAX || !valid_import_path(import_path, ip_len))
        return invalid(err, "import_path format", import_path, ip_len);
    if (!valid_scenario(scenario, sc_len))
        return invalid(err, "scenario slug", scenario, sc_len);
    return wx_buf_printf(out, err, "%s/%s", import_path, scenario);
}

void wx_entrypoint_scenario(const char *s, char out[WX_SCENARIO_MAX + 1])
{
    wx_entrypoint ep;

    if (wx_entrypoint_parse(s, WX_EP_MODEL, &ep, NULL) != 0) {
        memcpy(out, "baseline", sizeof("baseline"));
        return;
    }
    memcpy(out, s + ep.name_off, ep.name_len);
    out[ep.name_len] = '\0';
}
