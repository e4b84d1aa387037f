#!/bin/sh
# `make install`-style installation into a temporary prefix, then a program
# built against it with pkg-config: the public headers stand alone and the
# shared library exports what they declare.
. "$(dirname "$0")/lib.sh"

prefix="$TMP/prefix"
run 0 cmake --install "$WX_BUILD_DIR" --prefix "$prefix"
for f in bin/warmexec include/warmexec/warmexec.h lib/libwarmexec.a \
    lib/libwarmexec.so lib/pkgconfig/libwarmexec.pc; do
    [ -e "$prefix/$f" ] || fail "$f not installed"
done

cat >"$TMP/use.c" <<'C'
#include <stdio.h>
#include <string.h>
#include <warmexec/warmexec.h>

int main(void)
{
    wx_error err = WX_ERROR_INIT;
    json_t *params = NULL;
    char id[WX_ID_LEN + 1];
    const char *text = "{\"alpha\": 1.0, \"beta\": 2.0}";

    if (wx_json_parse(text, strlen(text), &params, &err) != 0 ||
        wx_param_id(params, id, &err) != 0) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    printf("%s %s\n", wx_version(), id);
    json_decref(params);
    return 0;
}
C
flags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs libwarmexec)
# A sanitizer build of the library needs the sanitizer runtime in the program.
[ "${WX_SANITIZE:-OFF}" = ON ] && flags="$flags -fsanitize=address,undefined"
run 0 cc -std=c11 -Wall -Werror -o "$TMP/use" "$TMP/use.c" $flags
LD_LIBRARY_PATH="$prefix/lib" run 0 "$TMP/use"
out_has '8d1aa96348b4f859c80472726974e538bd45b9bc68c866bd3e0e17d5af4e3e8e'
# Only public symbols are exported by the shared library.
nm -D --defined-only "$prefix/lib/libwarmexec.so" | awk '$2 == "T" {print $3}' \
    >"$TMP/symbols"
if grep -v '^wx_' "$TMP/symbols" >/dev/null; then
    fail "non-public symbols exported: $(grep -v '^wx_' "$TMP/symbols" | head -5)"
fi
grep -q '^wx_task_from_json$' "$TMP/symbols" || fail "wx_task_from_json not exported"
finish
