/* Field readers with messages that name the field and the rule. */
#include "internal.h"

#include <inttypes.h>
#include <math.h>

#include <warmexec/json.h>

#include "hash.h"
#include "jfield.h"
#include "num.h"

bool wx__json_is_text(const json_t *v)
{
    return json_is_string(v) && !wx_json_is_bigint(v) &&
           strlen(json_string_value(v)) == json_string_length(v);
}

/*
 * Look `field` up.  Returns 1 when present (and not a null that an
 * optional field may carry), 0 when absent and optional, or an error.
 */
static int lookup(const json_t *obj, const char *field, bool required,
                  bool null_is_absent, json_t **v, wx_error *err)
{
    *v = json_object_get(obj, field);
    if (*v && !(null_is_absent && json_is_null(*v) && !required))
        return 1;
    if (required)
        return wx_error_set(err, WX_EINVAL, "%s: is required", field);
    return 0;
}

static int wrong_type(const char *field, const char *rule, const json_t *v,
                      wx_error *err)
{
    return wx_error_set(err, WX_EINVAL, "%s: must be %s, got %s", field,
                        rule, wx_json_type_name(v));
}

int wx__jf_string(const json_t *obj, const char *field, bool required,
                  const char **out, wx_error *err)
{
    json_t *v;
    int rc = lookup(obj, field, required, false, &v, err);

    if (rc <= 0)
        return rc;
    if (!json_is_string(v) || wx_json_is_bigint(v))
        return wrong_type(field, "a string", v, err);
    if (!wx__json_is_text(v))
        return wx_error_set(err, WX_EINVAL,
                            "%s: must not contain NUL characters", field);
    *out = json_string_value(v);
    return 0;
}

int wx__jf_int(const json_t *obj, const char *field, bool required,
               int64_t min, int64_t max, int64_t *out, wx_error *err)
{
    json_t *v;
    int rc = lookup(obj, field, required, false, &v, err);
    const char *big;

    if (rc <= 0)
        return rc;
    big = wx_json_bigint_text(v, NULL);
    if (!json_is_integer(v) && !big)
        return wrong_type(field, "an integer", v, err);
    if (big || json_integer_value(v) < min || json_integer_value(v) > max) {
        if (big)
            return wx_error_set(err, WX_EINVAL,
                                "%s: must be an integer in [%" PRId64
                                ", %" PRId64 "], got %s",
                                field, min, max, big);
        return wx_error_set(err, WX_EINVAL,
                            "%s: must be an integer in [%" PRId64
                            ", %" PRId64 "], got %" JSON_INTEGER_FORMAT,
                            field, min, max, json_integer_value(v));
    }
    *out = json_integer_value(v);
    return 0;
}

int wx__jf_bool(const json_t *obj, const char *field, bool required,
                bool *out, wx_error *err)
{
    json_t *v;
    int rc = lookup(obj, field, required, false, &v, err);

    if (rc <= 0)
        return rc;
    if (!json_is_boolean(v))
        return wrong_type(field, "true or false", v, err);
    *out = json_is_true(v);
    return 0;
}

int wx__jf_number(const json_t *obj, const char *field, bool required,
                  double *out, wx_error *err)
{
    json_t *v;
    int rc = lookup(obj, field, required, false, &v, err);

    const char *big;
    size_t big_len;

    if (rc <= 0)
        return rc;
    big = wx_json_bigint_text(v, &big_len);
    if (big && wx__parse_double(big, big_len, out) == 0 && isfinite(*out))
        return 0;
    if (!json_is_number(v))
        return wrong_type(field, "a number", v, err);
    *out = json_number_value(v);
    return 0;
}

int wx__jf_object(const json_t *obj, const char *field, bool required,
                  json_t **out, wx_error *err)
{
    json_t *v;
    int rc = lookup(obj, field, required, true, &v, err);

    if (rc <= 0)
        return rc;
    if (!json_is_object(v))
        return wrong_type(field, "an object", v, err);
    *out = v;
    return 0;
}

int wx__jf_array(const json_t *obj, const char *field, bool required,
                 json_t **out, wx_error *err)
{
    json_t *v;
    int rc = lookup(obj, field, required, true, &v, err);

    if (rc <= 0)
        return rc;
    if (!json_is_array(v))
        return wrong_type(field, "a list", v, err);
    *out = v;
    return 0;
}

int wx__jf_hex64(const json_t *obj, const char *field, bool required,
                 char out[65], wx_error *err)
{
    const char *s = NULL;
    int rc = wx__jf_string(obj, field, required, &s, err);

    if (rc || !s)
        return rc;
    if (!wx__is_hex256(s))
        return wx_error_set(err, WX_EINVAL,
                            "%s: must be 64 lowercase hex characters, got "
                            "'%.80s'",
                            field, s);
    memcpy(out, s, 65);
    return 0;
}

int wx__jf_known_keys(const json_t *obj, const char *what,
                      const char *const *known, wx_error *err)
{
    const char *key;
    json_t *v;

    json_object_foreach((json_t *)obj, key, v)
    {
        size_t i = 0;

        while (known[i] && strcmp(known[i], key) != 0)
            i++;
        if (!known[i])
            return wx_error_set(err, WX_EINVAL, "%s: unknown field '%s'",
                                what, key);
    }
    return 0;
}
