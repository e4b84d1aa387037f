# Helpers for the end-to-end tests (POSIX sh).  Each test script sources
# this file; $WARMEXEC is the binary under test.
set -u

: "${WARMEXEC:?set WARMEXEC to the warmexec binary}"
TMP=$(mktemp -d /tmp/wx-e2e-XXXXXX)
export WARMEXEC_HOME="$TMP/home"
trap 'rm -rf "$TMP"' EXIT
failures=0
checks=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# run EXPECTED_EXIT CMD...: run CMD with stdin from $TMP/in (if any),
# capture $TMP/out and $TMP/err, check the exit code.
run() {
    expected=$1
    shift
    checks=$((checks + 1))
    if [ -f "$TMP/in" ]; then
        "$@" <"$TMP/in" >"$TMP/out" 2>"$TMP/err"
    else
        "$@" </dev/null >"$TMP/out" 2>"$TMP/err"
    fi
    status=$?
    if [ "$status" -ne "$expected" ]; then
        fail "$* exited $status, expected $expected (stderr: $(cat "$TMP/err"))"
    fi
}

# input TEXT: what the next run reads on stdin.
input() {
    printf '%s' "$1" >"$TMP/in"
}

no_input() {
    rm -f "$TMP/in"
}

# out_is TEXT: stdout equals TEXT followed by one newline.
out_is() {
    printf '%s\n' "$1" >"$TMP/expected"
    if ! cmp -s "$TMP/out" "$TMP/expected"; then
        fail "stdout was '$(cat "$TMP/out")', expected '$1'"
    fi
}

# err_has TEXT: stderr contains TEXT.
err_has() {
    if ! grep -qF -- "$1" "$TMP/err"; then
        fail "stderr '$(cat "$TMP/err")' lacks '$1'"
    fi
}

# out_has TEXT: stdout contains TEXT.
out_has() {
    if ! grep -qF -- "$1" "$TMP/out"; then
        fail "stdout lacks '$1'"
    fi
}

# err_lines N: stderr has exactly N lines.
err_lines() {
    n=$(wc -l <"$TMP/err")
    if [ "$n" -ne "$1" ]; then
        fail "stderr has $n lines, expected $1: $(cat "$TMP/err")"
    fi
}

# study FILE SETS REPLICATES [EXTRA_SET_JSON]: a grid study of the SIR model.
study() {
    python3 - "$@" <<'PY'
import json, sys
path, n_sets, n_rep = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sets = [{"params": {"beta": 0.1 + 0.4 * i / max(1, n_sets - 1),
                    "gamma": 0.1}} for i in range(n_sets)]
if len(sys.argv) > 4:
    sets.append(json.loads(sys.argv[4]))
json.dump({"model": "sir.model", "scenario": "baseline",
           "parameter_sets": sets, "n_replicates": n_rep,
           "targets": ["targets.incidence:mse"]}, open(path, "w"))
PY
}

# wait_recorded DB N: wait (at most about 30 s) until the results database DB
# holds N simulations.
wait_recorded() {
    i=0
    while [ "$(python3 "$WX_SOURCE_DIR/tests/e2e/study_db.py" count "$1")" \
        -lt "$2" ] && [ $i -lt 600 ]; do
        sleep 0.02
        i=$((i + 1))
    done
}

finish() {
    if [ "$failures" -ne 0 ]; then
        echo "$failures of $checks checks failed" >&2
        exit 1
    fi
    echo "all $checks checks passed"
    exit 0
}
