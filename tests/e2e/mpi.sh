#!/bin/sh
# End-to-end tests of distributed mode: `warmexec run` under mpirun gives
# the results database of a local run, for the native and the Python
# bundles, with one or more worker ranks, more ranks than tasks, failing
# tasks, timeouts, big artifacts, bad input and a rank that dies.
. "$(dirname "$0")/lib.sh"

SIR="$WX_BUILD_DIR/examples/bundles/sir"
SIR_PY="$WX_SOURCE_DIR/examples/bundles/sir-python"
NOOP="$WX_BUILD_DIR/examples/bundles/noop"
DB="python3 $WX_SOURCE_DIR/tests/e2e/study_db.py"
MPIRUN="mpirun --oversubscribe --allow-run-as-root"
# Open MPI keeps memory until exit: LeakSanitizer skips what it allocates in
# MPI_Init, MPI_Finalize and its progress thread.  Its plugins have no frame
# pointers, so stacks need the slow unwinder to reach those functions.
if [ "${WX_SANITIZE:-}" = ON ]; then
    export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}fast_unwind_on_malloc=0"
    export LSAN_OPTIONS="suppressions=$WX_SOURCE_DIR/tests/e2e/lsan-openmpi.supp:print_suppressions=0"
fi

# same_as_local NAME EXIT RANKS STUDY BUNDLE [ARGS...]: the study run
# locally and under mpirun with RANKS ranks, each with its own home (no
# shared cache), exits EXIT and records the same database.
same_as_local() {
    name=$1 code=$2 ranks=$3 file=$4 bundle=$5
    shift 5
    rm -f "$TMP/$name-local.db" "$TMP/$name-mpi.db"
    WARMEXEC_HOME="$TMP/home-$name-local" run "$code" "$WARMEXEC" run \
        "$file" --bundle "$bundle" --out "$TMP/$name-local.db" "$@"
    cp "$TMP/out" "$TMP/$name-local.out"
    WARMEXEC_HOME="$TMP/home-$name-mpi" run "$code" $MPIRUN -n "$ranks" \
        "$WARMEXEC" run "$file" --bundle "$bundle" \
        --out "$TMP/$name-mpi.db" "$@"
    same_db "$name"
}

# same_db NAME: $TMP/NAME-local.db and $TMP/NAME-mpi.db hold the same
# results (which worker process ran a task is not part of a result).
same_db() {
    for side in local mpi; do
        $DB dump "$TMP/$1-$side.db" | sed 's/worker w[0-9]*/worker W/' \
            >"$TMP/$1-$side.txt"
    done
    cmp -s "$TMP/$1-local.txt" "$TMP/$1-mpi.txt" ||
        fail "$1: the MPI run's database differs from the local one: $(diff "$TMP/$1-local.txt" "$TMP/$1-mpi.txt" | head -6)"
}

# --- -n 3 equals a local run, native and Python --------------------------
study "$TMP/small.json" 6 4
same_as_local native 0 3 "$TMP/small.json" "$SIR" -j 2
out_has "24 ok, 0 failed"
err_has "3 MPI ranks: rank 0 records results, ranks 1-2 run tasks"
out_has "aggregations 6 ok, 0 failed"
same_as_local python 0 3 "$TMP/small.json" "$SIR_PY" -j 1
out_has "24 ok, 0 failed"
# The same command again resumes: nothing runs.
WARMEXEC_HOME="$TMP/home-python-mpi" run 0 $MPIRUN -n 3 "$WARMEXEC" run \
    "$TMP/small.json" --bundle "$SIR_PY" --out "$TMP/python-mpi.db" --json
out_has '"resumed":24'

# --- one worker rank; more ranks than tasks; one rank (local mode) -------
same_as_local one-worker 0 2 "$TMP/small.json" "$SIR" -j 2
err_has "2 MPI ranks: rank 0 records results, rank 1 runs tasks"
study "$TMP/tiny.json" 1 1
same_as_local more-ranks 0 4 "$TMP/tiny.json" "$SIR" -j 1
out_has "1 ok, 0 failed"
same_as_local one-rank 0 1 "$TMP/tiny.json" "$SIR"
grep -q "MPI ranks" "$TMP/err" && fail "one rank announced MPI ranks"

# --- failing tasks: the model's errors, recorded as in local mode --------
study "$TMP/failing.json" 3 2 '{"params": {"beta": -1, "gamma": 0.1}}'
same_as_local failing 1 3 "$TMP/failing.json" "$SIR" -j 1
out_has "6 ok, 2 failed"
out_has "ModelError"
same_as_local failing-py 1 3 "$TMP/failing.json" "$SIR_PY" -j 1
[ "$($DB get "$TMP/failing-py-mpi.db" "SELECT count(*) FROM sims WHERE status = 'error' AND error_type = 'ModelError' AND error_message LIKE '%beta%'")" = 2 ] ||
    fail "failed Python tasks lack ModelError with the model's message"
# Error details over inline_max: stored in the CAS, left there when the
# failed replicates go to their aggregation.
WARMEXEC_INLINE_ARTIFACT_MAX_BYTES=100 \
    same_as_local failing-cas 1 3 "$TMP/failing.json" "$SIR" -j 1
out_has "6 ok, 2 failed"

# --- timeouts in a worker rank: killed, retried, recorded as Timeout -----
# The settings are rank 0's alone: the worker ranks receive them from it.
cat >"$TMP/slow.json" <<'EOF'
{"model": "noop.model", "scenario": "baseline",
 "parameter_sets": [{"params": {"sleep_ms": 5000}}, {"params": {"bytes": 3}}],
 "n_replicates": 2, "targets": ["noop.targets:size"]}
EOF
settings="WARMEXEC_TASK_TIMEOUT=0.3 WARMEXEC_MAX_RETRIES=1"
rm -f "$TMP/timeout-local.db" "$TMP/timeout-mpi.db"
WARMEXEC_HOME="$TMP/home-timeout-local" run 1 env $settings "$WARMEXEC" \
    run "$TMP/slow.json" --bundle "$NOOP" --out "$TMP/timeout-local.db" -j 1
WARMEXEC_HOME="$TMP/home-timeout-mpi" run 1 $MPIRUN \
    -n 1 env $settings "$WARMEXEC" run "$TMP/slow.json" --bundle "$NOOP" \
    --out "$TMP/timeout-mpi.db" -j 1 : \
    -n 2 "$WARMEXEC" run "$TMP/slow.json" --bundle "$NOOP" \
    --out "$TMP/timeout-mpi.db" -j 1
out_has "2 ok, 2 failed"
out_has "Timeout"
same_db timeout

# --- artifacts over inline_max travel to rank 0's CAS --------------------
cat >"$TMP/big.json" <<'EOF'
{"model": "noop.model", "scenario": "baseline",
 "parameter_sets": [{"params": {"bytes": 300000}}, {"params": {"bytes": 2000000}},
                    {"params": {"bytes": 10}}],
 "n_replicates": 3, "targets": ["noop.targets:size"]}
EOF
same_as_local big 0 3 "$TMP/big.json" "$NOOP" -j 2
out_has "9 ok, 0 failed"
out_has "aggregations 3 ok, 0 failed"
[ "$(find "$TMP/home-big-mpi/cas" -type f | wc -l)" -eq \
  "$(find "$TMP/home-big-local/cas" -type f | wc -l)" ] ||
    fail "rank 0's CAS does not hold the same objects as a local run's"
WARMEXEC_HOME="$TMP/home-big-mpi" run 0 "$WARMEXEC" cas verify

# --- bad input: rank 0's message, its exit code, no hang -----------------
rm -f "$TMP/bad.db"
run 3 $MPIRUN -n 3 "$WARMEXEC" run "$TMP/small.json" --out "$TMP/bad.db" \
    --bundle "sha256:0000000000000000000000000000000000000000000000000000000000000000"
err_has "not in the store"
printf '{"model": "sir.model", "parameter_sets": []}' >"$TMP/empty.json"
run 3 $MPIRUN -n 2 "$WARMEXEC" run "$TMP/empty.json" --bundle "$SIR" \
    --out "$TMP/bad.db"
err_has "parameter_sets: must not be empty"

# A worker rank that cannot start (here: its bundle directory is missing)
# is named by rank 0, before any task runs.
rm -f "$TMP/bad.db"
run 4 $MPIRUN -n 1 "$WARMEXEC" run "$TMP/small.json" --bundle "$SIR" \
    --out "$TMP/bad.db" : -n 2 "$WARMEXEC" run "$TMP/small.json" \
    --bundle "$TMP/no-such-bundle" --out "$TMP/bad.db"
err_has "MPI rank 1 could not start"
err_has "no-such-bundle"
[ "$($DB count "$TMP/bad.db")" = 0 ] || fail "tasks ran without all ranks"

# --- a worker rank that dies ends the run; the same command resumes ------
study "$TMP/huge.json" 100 10
WARMEXEC_HOME="$TMP/home-whole" "$WARMEXEC" run "$TMP/huge.json" \
    --bundle "$SIR_PY" --out "$TMP/whole.db" -j 2 >/dev/null 2>&1 ||
    fail "uninterrupted run failed"
WARMEXEC_HOME="$TMP/home-dies" $MPIRUN -n 3 "$WARMEXEC" run "$TMP/huge.json" \
    --bundle "$SIR_PY" --out "$TMP/dies.db" -j 1 >"$TMP/dies.out" \
    2>"$TMP/dies.err" &
pid=$!
wait_recorded "$TMP/dies.db" 20
# Rank 2: the warmexec process whose environment says so.
for p in $(pgrep -f "warmexec run $TMP/huge.json"); do
    if tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null |
        grep -qx "OMPI_COMM_WORLD_RANK=2"; then
        kill -9 "$p"
    fi
done
wait "$pid"
status=$?
checks=$((checks + 1))
[ "$status" -ne 0 ] || fail "the run went on after a rank died"
n=$($DB count "$TMP/dies.db")
[ "$n" -gt 0 ] && [ "$n" -lt 1000 ] ||
    fail "the rank did not die mid-study ($n of 1000 recorded)"
grep -q "rank 2" "$TMP/dies.err" ||
    fail "no message names the dead rank: $(cat "$TMP/dies.err")"
# The hint rank 0 gives at the start: what it writes as the launcher kills
# it may not reach the job's output.
grep -q "run the same command again to resume" "$TMP/dies.err" ||
    fail "no resume hint after a rank died: $(cat "$TMP/dies.err")"
WARMEXEC_HOME="$TMP/home-dies" run 0 $MPIRUN -n 3 "$WARMEXEC" run \
    "$TMP/huge.json" --bundle "$SIR_PY" --out "$TMP/dies.db" -j 1
$DB dump "$TMP/whole.db" >"$TMP/whole.txt"
$DB dump "$TMP/dies.db" >"$TMP/dies.txt"
cmp -s "$TMP/whole.txt" "$TMP/dies.txt" ||
    fail "resumed database differs: $(diff "$TMP/whole.txt" "$TMP/dies.txt" | head -5)"

finish
