#!/bin/sh
# End-to-end tests of `warmexec bundle` (add, ls, show, verify) and of
# `warmexec task run --bundle DIR|REF`: the digest, the stored copy,
# tampering, refused refs and bundles, missing bundles.
. "$(dirname "$0")/lib.sh"

no_input
: "${WX_BUILD_DIR:?set WX_BUILD_DIR to the build directory}"
SIR="$WX_BUILD_DIR/examples/bundles/sir"
STORE="$WARMEXEC_HOME/bundles/sha256"
MISSING=sha256:0000000000000000000000000000000000000000000000000000000000000000

# index DIR: the index of docs/bundles.md, computed here with sha256sum:
# "<644|755> <sha256> <path>\n" for every regular file, sorted by path
# bytes.  Only for trees without .git/ and with no .warmexecignore
# pattern other than *.o.
index() {
    (cd "$1" && find . -type f ! -name '*.o' | sed 's|^\./||' |
        LC_ALL=C sort | while IFS= read -r f; do
            case $(stat -c %a "$f") in
            *[1357]*) mode=755 ;;
            *) mode=644 ;;
            esac
            printf '%s %s %s\n' "$mode" "$(sha256sum <"$f" | cut -d' ' -f1)" "$f"
        done)
}

# digest DIR: "sha256:" + the SHA-256 of the index.
digest() {
    echo "sha256:$(index "$1" | sha256sum | cut -d' ' -f1)"
}

# n_stored: the number of bundles in the store.
n_stored() {
    find "$STORE" -mindepth 1 -maxdepth 1 | wc -l
}

# sir_task SEED: a task of the SIR example (its bundle_ref is replaced by
# --bundle, or set by the caller).
sir_task() { # SEED [REF]
    cat >"$TMP/task.json" <<EOF
{"bundle_ref": "${2:-$MISSING}", "entrypoint": "sir.model/baseline",
 "params": {"beta": 0.3, "gamma": 0.1, "population": 1000,
            "initial_infected": 10, "days": 20},
 "seed": $1, "outputs": ["incidence", "prevalence"]}
EOF
}

# error_type_is TYPE: the SimReturn on stdout failed with TYPE.
error_type_is() {
    out_has "\"error_type\":\"$1\""
    out_has '"outputs":{}'
}

# --- add -----------------------------------------------------------------
[ -f "$SIR/libsir.so" ] || fail "no built example bundle at $SIR"
EXPECTED=$(digest "$SIR")
run 0 "$WARMEXEC" bundle add "$SIR"
out_is "$EXPECTED"
REF=$(cat "$TMP/out")
echo "$REF" | grep -qxE 'sha256:[0-9a-f]{64}' || fail "bad ref '$REF'"
HEX=${REF#sha256:}
STORED="$STORE/$HEX"
[ -d "$STORED" ] || fail "bundle not stored at $STORED"
[ "$(stat -c %a "$STORED/warmexec.json")" = 444 ] ||
    fail "warmexec.json mode $(stat -c %a "$STORED/warmexec.json"), expected 444"
[ "$(stat -c %a "$STORED/data/observed_incidence.csv")" = 444 ] ||
    fail "data file is not read-only"
[ "$(stat -c %a "$STORED/libsir.so")" = 555 ] ||
    fail "libsir.so mode $(stat -c %a "$STORED/libsir.so"), expected 555"
cmp -s "$STORED/libsir.so" "$SIR/libsir.so" || fail "libsir.so copied wrong"
[ "$(index "$STORED")" = "$(index "$SIR")" ] || fail "the copy differs"
# Idempotent: the same ref, still one bundle, nothing left in tmp.
run 0 "$WARMEXEC" bundle add "$SIR"
out_is "$REF"
[ "$(n_stored)" -eq 1 ] || fail "expected 1 stored bundle, got $(n_stored)"
[ -z "$(ls -A "$WARMEXEC_HOME/bundles/tmp")" ] || fail "leftovers in bundles/tmp"
# Timestamps and the directory's name do not count.
cp -R "$SIR" "$TMP/sir-copy"
touch -d '2001-01-01' "$TMP/sir-copy/model.c"
run 0 "$WARMEXEC" bundle add "$TMP/sir-copy"
out_is "$REF"
# One byte more in the copy is another bundle.
echo >>"$TMP/sir-copy/README.md"
run 0 "$WARMEXEC" bundle add "$TMP/sir-copy"
REF2=$(cat "$TMP/out")
[ "$REF2" != "$REF" ] || fail "an edited bundle kept its digest"
out_is "$(digest "$TMP/sir-copy")"
[ "$(n_stored)" -eq 2 ] || fail "expected 2 stored bundles, got $(n_stored)"

# --- ls, show, verify ----------------------------------------------------
run 0 "$WARMEXEC" bundle ls
grep -qE "^$REF +sir +native\$" "$TMP/out" || fail "bundle ls: no line for $REF: $(cat "$TMP/out")"
grep -qE "^$REF2 +sir +native\$" "$TMP/out" || fail "bundle ls: no line for $REF2"
[ "$(wc -l <"$TMP/out")" -eq 2 ] || fail "bundle ls: expected 2 lines"

run 0 "$WARMEXEC" bundle show "$REF"
{
    printf '%-12s%s\n' ref "$REF" name sir path "$STORED" runner native \
        library libsir.so env ''
    printf '%-12s%s\n' entrypoints sir.model/baseline \
        targets 'targets.incidence:mse, targets.incidence:poisson_nll'
    echo 'files:'
    index "$SIR"
} >"$TMP/show.expected"
cmp -s "$TMP/out" "$TMP/show.expected" ||
    fail "bundle show: $(diff "$TMP/show.expected" "$TMP/out")"
grep -qE '^755 [0-9a-f]{64} libsir\.so$' "$TMP/out" || fail "bundle show: libsir.so not 755"
# A ref with a repository names the same bundle.
run 0 "$WARMEXEC" bundle show "registry.example.com:5000/team/sir@$REF"
out_has "ref         $REF"

run 0 "$WARMEXEC" bundle verify "$REF"
out_is "$REF: ok"
run 0 "$WARMEXEC" bundle verify "team/sir@$REF"
out_is "team/sir@$REF: ok"

# --- task run with a directory and with a ref ----------------------------
sir_task 7
run 0 "$WARMEXEC" task run "$TMP/task.json" --bundle "$SIR" --json --no-cache
out_has '"error":null'
out_has '"incidence":{'
cp "$TMP/out" "$TMP/by-dir.json"
run 0 "$WARMEXEC" task run "$TMP/task.json" --bundle "$REF" --json --no-cache
out_has '"error":null'
# The same result but for the durations.
sed 's/"metrics":{[^}]*}//' "$TMP/out" >"$TMP/a"
sed 's/"metrics":{[^}]*}//' "$TMP/by-dir.json" >"$TMP/b"
cmp -s "$TMP/a" "$TMP/b" || fail "task run by dir and by ref differ"
sir_task 8 "repo/sir@$REF"
run 0 "$WARMEXEC" task run "$TMP/task.json" --json --no-cache
out_has '"error":null'

# --- tampering with the stored copy --------------------------------------
chmod u+w "$STORED/model.c"
printf 'X' | dd of="$STORED/model.c" bs=1 seek=100 conv=notrunc 2>/dev/null
cmp -s "$STORED/model.c" "$SIR/model.c" && fail "model.c was not changed"
run 3 "$WARMEXEC" bundle verify "$REF"
err_has "bundle $REF is corrupt"
err_lines 1
[ -s "$TMP/out" ] && fail "bundle verify printed on stdout: $(cat "$TMP/out")"
run 3 "$WARMEXEC" bundle show "$REF"
err_has 'is corrupt'
sir_task 9 "$REF"
run 1 "$WARMEXEC" task run "$TMP/task.json" --json --no-cache
error_type_is BundleCorrupt
err_has 'task failed (BundleCorrupt)'
run 1 "$WARMEXEC" task run "$TMP/task.json" --bundle "$REF" --json --no-cache
error_type_is BundleCorrupt
# The other bundle is untouched.
run 0 "$WARMEXEC" bundle verify "$REF2"
# An extra file, a deleted file: corrupt too.
run 0 "$WARMEXEC" bundle add "$TMP/sir-copy"
STORED2="$STORE/${REF2#sha256:}"
echo planted >"$STORED2/data/extra.csv"
run 3 "$WARMEXEC" bundle verify "$REF2"
err_has 'is corrupt'
rm -f "$STORED2/data/extra.csv" "$STORED2/Makefile"
run 3 "$WARMEXEC" bundle verify "$REF2"
err_has 'is corrupt'

# --- refused refs --------------------------------------------------------
check_bad_ref() { # REF
    run 3 "$WARMEXEC" bundle show "$1"
    err_has 'bundle_ref: must be sha256:<64 lowercase hex>'
    err_lines 1
    run 3 "$WARMEXEC" bundle verify "$1"
    err_has 'bundle_ref: must be'
    sir_task 1
    run 3 "$WARMEXEC" task run "$TMP/task.json" --bundle "$1" --json
    err_has 'bundle_ref: must be'
    [ -s "$TMP/out" ] && fail "task run printed for bad ref '$1'"
    sir_task 1 "$1"
    run 3 "$WARMEXEC" task run "$TMP/task.json" --json
    err_has 'bundle_ref: must be'
}
check_bad_ref "sha256:../../etc"
check_bad_ref "sha256:../../../../$HEX"
check_bad_ref "sha256:$HEX/x"
check_bad_ref "sha256:$HEX/../$HEX"
check_bad_ref "../x@sha256:$HEX"
check_bad_ref "/abs@sha256:$HEX"
check_bad_ref "sha256:$(echo "$HEX" | tr a-f A-F)"
check_bad_ref "sha256:$(echo "$HEX" | cut -c1-63)"
check_bad_ref "sha256:$(echo "$HEX" | cut -c1-63)g"
check_bad_ref "sha256:${HEX}0"
check_bad_ref "$HEX"
check_bad_ref "sha256:"

# --- unknown digest ------------------------------------------------------
sir_task 1
run 1 "$WARMEXEC" task run "$TMP/task.json" --bundle "$MISSING" --json --no-cache
error_type_is BundleNotFound
err_has 'task failed (BundleNotFound)'
run 3 "$WARMEXEC" bundle show "$MISSING"
err_has "bundle $MISSING is not in the store"
err_lines 1
run 3 "$WARMEXEC" bundle verify "repo@$MISSING"
err_has 'is not in the store'

# --- refused bundles -----------------------------------------------------
mkdir -p "$TMP/linked/data"
cp "$SIR/warmexec.json" "$SIR/libsir.so" "$TMP/linked/"
ln -s /etc/passwd "$TMP/linked/data/passwd"
before=$(n_stored)
run 3 "$WARMEXEC" bundle add "$TMP/linked"
err_has 'symlinks: data/passwd'
err_lines 1
[ -s "$TMP/out" ] && fail "bundle add printed a ref for a bundle with a symlink"
sir_task 1
run 3 "$WARMEXEC" task run "$TMP/task.json" --bundle "$TMP/linked" --json
err_has 'symlinks: data/passwd'
rm "$TMP/linked/data/passwd"
mkfifo "$TMP/linked/data/pipe"
run 3 "$WARMEXEC" bundle add "$TMP/linked"
err_has 'regular files: data/pipe'
rm "$TMP/linked/data/pipe"
[ "$(n_stored)" -eq "$before" ] || fail "a refused bundle was stored"
[ -z "$(ls -A "$WARMEXEC_HOME/bundles/tmp")" ] || fail "leftovers in bundles/tmp"
run 3 "$WARMEXEC" bundle add "$TMP/does-not-exist"
err_has 'does-not-exist'
# An empty directory has no manifest and no wire: it is not a bundle.
mkdir "$TMP/empty"
run 3 "$WARMEXEC" bundle add "$TMP/empty"
err_has "is not a bundle"

# --- Python bundles ------------------------------------------------------
# A ModelOps bundle: wire.py and nothing else.
mkdir "$TMP/tiny"
cat >"$TMP/tiny/wire.py" <<'EOF'
def wire(entrypoint, params, seed):
    return {"echo": f"{entrypoint} {seed} {params['x']}"}
EOF
run 0 "$WARMEXEC" bundle add "$TMP/tiny"
out_is "$(digest "$TMP/tiny")"
TINY=$(cat "$TMP/out")
run 0 "$WARMEXEC" bundle ls
grep -qE "^$TINY +- +python \(modelops\)\$" "$TMP/out" ||
    fail "bundle ls: no modelops line for $TINY: $(cat "$TMP/out")"
run 0 "$WARMEXEC" bundle show "$TINY"
out_has "runner      python (modelops)"
grep -qE "^644 [0-9a-f]{64} wire\.py\$" "$TMP/out" || fail "bundle show: no wire.py"

tiny_task() { # SEED
    printf '{"bundle_ref": "%s", "entrypoint": "tiny.model/baseline", "params": {"x": 2}, "seed": %s}' \
        "$TINY" "$1" >"$TMP/task.json"
}
tiny_task 3
run 0 "$WARMEXEC" task run "$TMP/task.json" --json --no-cache
out_has '"error":null'
out_has "\"inline\":\"$(printf 'tiny.model/baseline 3 2' | base64)\""
# Another process using the same stored bundle: running it must not
# have changed it (Python's __pycache__ in a bundle without a
# .warmexecignore).
tiny_task 4
run 0 "$WARMEXEC" task run "$TMP/task.json" --json --no-cache
out_has '"error":null'
run 0 "$WARMEXEC" bundle verify "$TINY"
out_is "$TINY: ok"

# A python bundle with a manifest, given as a directory to task run.
mkdir "$TMP/py"
cp "$TMP/tiny/wire.py" "$TMP/py/"
printf '__pycache__/\n' >"$TMP/py/.warmexecignore"
printf '{"name": "py-tiny", "runner": "python", "entrypoints": ["tiny.model/baseline"]}\n' \
    >"$TMP/py/warmexec.json"
for seed in 5 6; do
    tiny_task "$seed"
    run 0 "$WARMEXEC" task run "$TMP/task.json" --bundle "$TMP/py" --json --no-cache
    out_has "\"inline\":\"$(printf "tiny.model/baseline $seed 2" | base64)\""
done
PY=$(digest "$TMP/py")
run 0 "$WARMEXEC" bundle verify "$PY"
run 0 "$WARMEXEC" bundle ls
grep -qE "^$PY +py-tiny +python\$" "$TMP/out" || fail "bundle ls: no line for py-tiny"

# --- usage ---------------------------------------------------------------
run 0 "$WARMEXEC" bundle --help
out_has 'usage: warmexec bundle add DIR'
run 2 "$WARMEXEC" bundle
err_has 'missing subcommand'
run 2 "$WARMEXEC" bundle frob x
err_has "unknown subcommand 'frob'"
run 2 "$WARMEXEC" bundle add
run 2 "$WARMEXEC" bundle add "$SIR" "$SIR"
run 2 "$WARMEXEC" bundle show
run 2 "$WARMEXEC" bundle verify
run 2 "$WARMEXEC" bundle ls extra

finish
