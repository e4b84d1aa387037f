#!/bin/sh
# End-to-end tests of `warmexec run`: studies on the native and the Python
# example bundles, results, failures, resume after SIGINT and SIGKILL, and
# bad input.
. "$(dirname "$0")/lib.sh"

SIR="$WX_BUILD_DIR/examples/bundles/sir"
SIR_PY="$WX_SOURCE_DIR/examples/bundles/sir-python"
DB="python3 $WX_SOURCE_DIR/tests/e2e/study_db.py"

# --- a study on each example bundle: results and summary -----------------
study "$TMP/small.json" 4 3
for bundle in "$SIR" "$SIR_PY"; do
    rm -f "$TMP/r.db"
    run 0 "$WARMEXEC" run "$TMP/small.json" --bundle "$bundle" \
        --out "$TMP/r.db" -j 2 --csv "$TMP/csv"
    out_has "12 ok, 0 failed"
    out_has "aggregations 4 ok, 0 failed"
    out_has "best by targets.incidence:mse"
    [ "$($DB get "$TMP/r.db" "SELECT count(*) FROM losses")" = 4 ] ||
        fail "losses view does not have 4 rows"
    [ "$($DB get "$TMP/r.db" "SELECT status FROM runs")" = complete ] ||
        fail "run not marked complete"
    [ -s "$TMP/csv/sims.csv" ] && [ -s "$TMP/csv/aggregations.csv" ] ||
        fail "CSV export missing"
    [ "$(wc -l <"$TMP/csv/sims.csv")" -eq 13 ] || fail "sims.csv rows"
    # The same command again: nothing runs, everything is already there.
    run 0 "$WARMEXEC" run "$TMP/small.json" --bundle "$bundle" \
        --out "$TMP/r.db" --json
    out_has '"resumed":12'
    out_has '"ok":12'
done

# Native and Python bundles record the same losses for the same study.
rm -f "$TMP/n.db" "$TMP/p.db"
run 0 "$WARMEXEC" run "$TMP/small.json" --bundle "$SIR" --out "$TMP/n.db"
run 0 "$WARMEXEC" run "$TMP/small.json" --bundle "$SIR_PY" --out "$TMP/p.db"
q="SELECT group_concat(printf('%.6f', loss)) FROM (SELECT loss FROM aggregations ORDER BY param_id)"
[ "$($DB get "$TMP/n.db" "$q")" = "$($DB get "$TMP/p.db" "$q")" ] ||
    fail "native and Python losses differ"

# --- a study whose model fails for some parameter sets -------------------
study "$TMP/failing.json" 3 2 '{"params": {"beta": -1, "gamma": 0.1}}'
for bundle in "$SIR" "$SIR_PY"; do
    rm -f "$TMP/f.db"
    run 1 "$WARMEXEC" run "$TMP/failing.json" --bundle "$bundle" \
        --out "$TMP/f.db"
    out_has "6 ok, 2 failed"
    out_has "ModelError"
    [ "$($DB get "$TMP/f.db" "SELECT count(*) FROM sims WHERE status = 'error' AND error_type = 'ModelError' AND error_message LIKE '%beta%'")" = 2 ] ||
        fail "failed tasks lack ModelError with the model's message ($bundle)"
    [ "$($DB get "$TMP/f.db" "SELECT count(*) FROM aggregations WHERE status = 'ok'")" = 3 ] ||
        fail "the other parameter sets lack results ($bundle)"
done

# --- bad input: clear message, exit code, no results file ----------------
check_bad() { # CODE NEEDLE ARGS...
    code=$1 needle=$2
    shift 2
    rm -f "$TMP/bad.db"
    run "$code" "$WARMEXEC" run "$@" --out "$TMP/bad.db"
    err_has "$needle"
    [ -e "$TMP/bad.db" ] && fail "a results file was written for bad input"
}
printf '{"scenario": "baseline", "parameter_sets": [{"beta": 1}]}' >"$TMP/nomodel.json"
check_bad 3 "model: is required" "$TMP/nomodel.json" --bundle "$SIR"
printf '{"model": "sir.model", "parameter_sets": []}' >"$TMP/empty.json"
check_bad 3 "parameter_sets: must not be empty" "$TMP/empty.json" --bundle "$SIR"
printf '{"model": "sir.model", "parameter_sets": [{"params": {"beta": [1]}}]}' >"$TMP/list.json"
check_bad 3 "parameter_sets[0]: params.beta" "$TMP/list.json" --bundle "$SIR"
check_bad 3 "unknown target 'targets.incidence:nope'" "$TMP/small.json" \
    --bundle "$SIR" --target targets.incidence:nope
check_bad 3 "not in the store" "$TMP/small.json" \
    --bundle "sha256:0000000000000000000000000000000000000000000000000000000000000000"
check_bad 3 "missing.json" "$TMP/missing.json" --bundle "$SIR"
rm -f "$TMP/bad.db"
run 3 "$WARMEXEC" run "$TMP/small.json" --bundle "$SIR" \
    --out "$TMP/no/such/dir/r.db"
err_has "cannot write the results database"
run 2 "$WARMEXEC" run
run 2 "$WARMEXEC" run "$TMP/small.json" --frobnicate

# --- resume after SIGKILL: the same database as an uninterrupted run -----
# kill_and_resume BUNDLE STUDY TOTAL NAME: runs STUDY whole, then again
# killed once some but not all results are recorded, resumes it, and
# compares the two databases.
kill_and_resume() {
    bundle=$1 file=$2 total=$3 name=$4
    "$WARMEXEC" run "$file" --bundle "$bundle" --out "$TMP/$name-whole.db" \
        -j 2 >/dev/null 2>&1 || fail "uninterrupted run failed ($name)"
    WARMEXEC_HOME="$TMP/home-$name" "$WARMEXEC" run "$file" \
        --bundle "$bundle" --out "$TMP/$name-killed.db" -j 2 >/dev/null 2>&1 &
    pid=$!
    wait_recorded "$TMP/$name-killed.db" 20
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    n=$($DB count "$TMP/$name-killed.db")
    [ "$n" -gt 0 ] && [ "$n" -lt "$total" ] ||
        fail "the kill did not land mid-study ($n of $total recorded, $name)"
    WARMEXEC_HOME="$TMP/home-$name" run 0 "$WARMEXEC" run "$file" \
        --bundle "$bundle" --out "$TMP/$name-killed.db" -j 2
    $DB dump "$TMP/$name-whole.db" >"$TMP/$name-whole.txt"
    $DB dump "$TMP/$name-killed.db" >"$TMP/$name-killed.txt"
    cmp -s "$TMP/$name-whole.txt" "$TMP/$name-killed.txt" ||
        fail "resumed database differs ($name): $(diff "$TMP/$name-whole.txt" "$TMP/$name-killed.txt" | head -5)"
}
# Big enough that the kill lands mid-study even on a fast or loaded machine.
study "$TMP/big.json" 100 10
kill_and_resume "$SIR_PY" "$TMP/big.json" 1000 python
# The native model is fast (4,000 tasks take under a second since tasks
# go to workers in batches): give it enough work for the kill to land.
study "$TMP/huge.json" 1500 10
kill_and_resume "$SIR" "$TMP/huge.json" 15000 native

# --- SIGINT: stops cleanly, everything done is recorded, exit 130 --------
rm -f "$TMP/int.db"
WARMEXEC_HOME="$TMP/home3" "$WARMEXEC" run "$TMP/big.json" --bundle "$SIR_PY" \
    --out "$TMP/int.db" -j 2 >"$TMP/int.out" 2>"$TMP/int.err" &
pid=$!
wait_recorded "$TMP/int.db" 20
kill -INT "$pid"
wait "$pid"
status=$?
checks=$((checks + 1))
[ "$status" -eq 130 ] || fail "SIGINT exit status $status, expected 130"
grep -q "run the same command again to resume" "$TMP/int.err" ||
    fail "no resume hint after SIGINT: $(cat "$TMP/int.err")"
[ "$($DB get "$TMP/int.db" "SELECT status FROM runs")" = interrupted ] ||
    fail "run not marked interrupted"
WARMEXEC_HOME="$TMP/home3" run 0 "$WARMEXEC" run "$TMP/big.json" \
    --bundle "$SIR_PY" --out "$TMP/int.db" -j 2
$DB dump "$TMP/int.db" >"$TMP/int.txt"
cmp -s "$TMP/python-whole.txt" "$TMP/int.txt" ||
    fail "database after SIGINT and resume differs"

finish
