#!/bin/sh
# End-to-end tests of `warmexec task run` and `warmexec aggregate` on the
# example bundles (native C and Python): results, the result cache (hits,
# a deleted or damaged CAS object makes the task run again and repairs the
# store), model errors, and aggregation over replicates whose outputs are
# partly in the CAS (the original failed there), with the same loss from
# both bundles.
. "$(dirname "$0")/lib.sh"

: "${WX_SOURCE_DIR:?set WX_SOURCE_DIR to the source tree}"
: "${WX_BUILD_DIR:?set WX_BUILD_DIR to the build tree}"
NATIVE="$WX_BUILD_DIR/examples/bundles/sir"
PYTHON="$WX_SOURCE_DIR/examples/bundles/sir-python"
OBJECTS="$WARMEXEC_HOME/cas/sha256"
GOOD='{"beta": 0.3, "gamma": 0.1}'
BAD='{"beta": 0.3, "gamma": 1.5}'
no_input

# task SEED PARAMS: write the SimTask $TMP/task.json (the bundle comes
# from --bundle).
task() {
    printf '{"entrypoint": "sir.model/baseline", "params": %s, "seed": %s}\n' \
        "$2" "$1" >"$TMP/task.json"
}

# jget FILE EXPR: print the Python expression EXPR over the JSON document
# `d` read from FILE (a tuple: its items separated by spaces).
jget() {
    python3 -c 'import json, math, sys
d = json.load(open(sys.argv[1]))
r = eval(sys.argv[2])
print(" ".join(map(str, r)) if isinstance(r, tuple) else r)' "$1" "$2"
}

# expect FILE EXPR VALUE: jget FILE EXPR prints VALUE.
expect() {
    checks=$((checks + 1))
    got=$(jget "$1" "$2" 2>&1)
    [ "$got" = "$3" ] || fail "$(basename "$1"): $2 is '$got', expected '$3'"
}

# same_outputs A B: two SimReturns carry identical artifacts.
same_outputs() {
    checks=$((checks + 1))
    python3 -c 'import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
sys.exit(0 if a["outputs"] == b["outputs"] and a["sim_root"] == b["sim_root"]
         and a["task_id"] == b["task_id"] else 1)' "$1" "$2" ||
        fail "$(basename "$1") and $(basename "$2") differ in their outputs"
}

# object REF: the file of a CAS object.
object() {
    hex=${1#cas://}
    echo "$OBJECTS/$(echo "$hex" | cut -c1-2)/$(echo "$hex" | cut -c3-)"
}

# --- task run: both bundles, then a cache hit ----------------------------
for kind in native python; do
    if [ "$kind" = native ]; then dir=$NATIVE; else dir=$PYTHON; fi
    task 1 "$GOOD"
    run 0 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    cp "$TMP/out" "$TMP/$kind-1.json"
    expect "$TMP/$kind-1.json" 'sorted(d["outputs"])' "['incidence', 'prevalence']"
    expect "$TMP/$kind-1.json" 'd["cached"], d["error"], d["metrics"]["attempts"]' 'False None 1'
    expect "$TMP/$kind-1.json" 'all("inline" in a for a in d["outputs"].values())' True
    expect "$TMP/$kind-1.json" 'd["outputs"]["incidence"]["inline"][:20]' 'ZGF5LGluY2lkZW5jZQow'
    # The same task again: from the cache, the same artifacts.
    run 0 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    cp "$TMP/out" "$TMP/$kind-2.json"
    expect "$TMP/$kind-2.json" 'd["cached"], d["metrics"]["attempts"]' 'True 0'
    same_outputs "$TMP/$kind-1.json" "$TMP/$kind-2.json"
    # The readable form says the same.
    run 0 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir"
    out_has '"cached": true'
    # --no-cache never reports a hit.
    run 0 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json --no-cache
    expect "$TMP/out" 'd["cached"], d["metrics"]["attempts"]' 'False 1'
    same_outputs "$TMP/$kind-1.json" "$TMP/out"
done
# The two models write the same bytes.
checks=$((checks + 1))
[ "$(jget "$TMP/native-1.json" 'd["outputs"]')" = "$(jget "$TMP/python-1.json" 'd["outputs"]')" ] ||
    fail "the native and Python bundles wrote different outputs"

# --- a damaged or deleted CAS object is not served ------------------------
# Every output goes to the CAS; the cached result then refers to it.
for kind in native python; do
    if [ "$kind" = native ]; then dir=$NATIVE; else dir=$PYTHON; fi
    task 2 "$GOOD"
    run 0 env WARMEXEC_INLINE_ARTIFACT_MAX_BYTES=100 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    cp "$TMP/out" "$TMP/$kind-cas.json"
    expect "$TMP/$kind-cas.json" 'all(a["ref"] == "cas://" + a["checksum"] for a in d["outputs"].values())' True
    expect "$TMP/$kind-cas.json" 'd["outputs"]["incidence"]["size"] > 100' True
    REF=$(jget "$TMP/$kind-cas.json" 'd["outputs"]["incidence"]["ref"]')
    OBJ=$(object "$REF")
    [ -f "$OBJ" ] || fail "no object at $OBJ"
    checks=$((checks + 1))
    [ "$(sha256sum "$OBJ" | cut -d' ' -f1)" = "${REF#cas://}" ] || fail "$OBJ does not hash to its name"
    [ "$(stat -c %s "$OBJ")" = "$(jget "$TMP/$kind-cas.json" 'd["outputs"]["incidence"]["size"]')" ] ||
        fail "the artifact's size is not the object's"
    run 0 env WARMEXEC_INLINE_ARTIFACT_MAX_BYTES=100 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    expect "$TMP/out" 'd["cached"]' True
    same_outputs "$TMP/$kind-cas.json" "$TMP/out"

    # Deleted: the task runs again and the object is back.
    rm -f "$OBJ"
    run 0 env WARMEXEC_INLINE_ARTIFACT_MAX_BYTES=100 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    expect "$TMP/out" 'd["cached"], d["metrics"]["attempts"]' 'False 1'
    same_outputs "$TMP/$kind-cas.json" "$TMP/out"
    [ -f "$OBJ" ] || fail "the deleted object $OBJ was not re-created"
    run 0 "$WARMEXEC" cas verify "$REF"
    out_is '1 objects, 0 damaged'

    # Damaged: the same, and the store is clean afterwards.
    chmod 644 "$OBJ"
    python3 -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(20); b = f.read(1); f.seek(20); f.write(bytes([b[0] ^ 0x5a]))' "$OBJ"
    run 3 "$WARMEXEC" cas verify
    out_has '1 damaged'
    run 0 env WARMEXEC_INLINE_ARTIFACT_MAX_BYTES=100 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    expect "$TMP/out" 'd["cached"], d["metrics"]["attempts"]' 'False 1'
    same_outputs "$TMP/$kind-cas.json" "$TMP/out"
    run 0 "$WARMEXEC" cas verify
    out_has ', 0 damaged'
    checks=$((checks + 1))
    [ "$(sha256sum "$OBJ" | cut -d' ' -f1)" = "${REF#cas://}" ] || fail "$OBJ was not repaired"
    run 0 env WARMEXEC_INLINE_ARTIFACT_MAX_BYTES=100 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    expect "$TMP/out" 'd["cached"]' True
done

# --- a model error ---------------------------------------------------------
for dir in "$NATIVE" "$PYTHON"; do
    task 1 "$BAD"
    run 1 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    expect "$TMP/out" 'd["error"]["error_type"], d["error"]["retryable"]' 'ModelError False'
    expect "$TMP/out" '"gamma" in d["error"]["message"]' True
    expect "$TMP/out" 'd["outputs"], d["cached"], d["metrics"]["attempts"]' '{} False 1'
    expect "$TMP/out" '"inline" in d["error_details"]' True
    err_has 'task failed (ModelError)'
    # Failures are not cached.
    run 1 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    expect "$TMP/out" 'd["cached"], d["metrics"]["attempts"]' 'False 1'
done

# --- aggregate over replicates, some in the CAS ----------------------------
# replicates KIND DIR: SimReturns of seeds 1..10 as a JSON list in
# $TMP/KIND-reps.json; seeds 1..5 keep their outputs in the CAS.
replicates() {
    : >"$TMP/$1-reps.jsonl"
    for seed in 1 2 3 4 5 6 7 8 9 10; do
        task "$seed" "$GOOD"
        if [ "$seed" -le 5 ]; then limit=100; else limit=64000; fi
        run 0 env WARMEXEC_INLINE_ARTIFACT_MAX_BYTES=$limit "$WARMEXEC" \
            task run "$TMP/task.json" --bundle "$2" --json --no-cache
        cat "$TMP/out" >>"$TMP/$1-reps.jsonl"
    done
    python3 -c 'import json, sys
reps = [json.loads(line) for line in open(sys.argv[1])]
task = {"bundle_ref": "sha256:" + "0" * 64,
        "target_entrypoint": sys.argv[3], "sim_returns": reps}
json.dump(task, open(sys.argv[2], "w"))' "$TMP/$1-reps.jsonl" "$TMP/$1-agg.json" \
        targets.incidence:mse
    expect "$TMP/$1-agg.json" 'sum("ref" in a for r in d["sim_returns"] for a in r["outputs"].values())' 10
    expect "$TMP/$1-agg.json" 'sum("inline" in a for r in d["sim_returns"] for a in r["outputs"].values())' 10
}
for kind in native python; do
    if [ "$kind" = native ]; then dir=$NATIVE; else dir=$PYTHON; fi
    replicates "$kind" "$dir"
    run 0 "$WARMEXEC" aggregate "$TMP/$kind-agg.json" --bundle "$dir" --json
    cp "$TMP/out" "$TMP/$kind-loss.json"
    expect "$TMP/$kind-loss.json" 'isinstance(d["loss"], float) and math.isfinite(d["loss"]) and d["loss"] > 0' True
    expect "$TMP/$kind-loss.json" 'd["n_replicates"], len(d["aggregation_id"])' '10 16'
    expect "$TMP/$kind-loss.json" 'd["diagnostics"]["target"], d["diagnostics"]["n_failed"]' 'incidence_mse 0'
    # Again: the same answer (from the cache).
    run 0 "$WARMEXEC" aggregate "$TMP/$kind-agg.json" --bundle "$dir" --json
    checks=$((checks + 1))
    cmp -s "$TMP/out" "$TMP/$kind-loss.json" || fail "a second aggregation printed another result"
    run 0 "$WARMEXEC" aggregate "$TMP/$kind-agg.json" --bundle "$dir" --json --no-cache
    expect "$TMP/out" 'd["loss"]' "$(jget "$TMP/$kind-loss.json" 'd["loss"]')"
done
# The same replicate seeds give the same loss in both bundles.
expect "$TMP/python-loss.json" 'd["loss"]' "$(jget "$TMP/native-loss.json" 'd["loss"]')"

# A replicate's stored output is gone: the aggregation fails, naming it.
REF=$(jget "$TMP/native-agg.json" 'd["sim_returns"][0]["outputs"]["incidence"]["ref"]')
rm -f "$(object "$REF")"
run 1 "$WARMEXEC" aggregate "$TMP/native-agg.json" --bundle "$NATIVE" --json --no-cache
err_has 'aggregation failed (StorageError)'
err_has "${REF#cas://}"

# A target that fails is a model error (over the inline replicates).
python3 -c 'import json, sys
t = json.load(open(sys.argv[1])); t["target_entrypoint"] = "targets.incidence:nope"
t["sim_returns"] = t["sim_returns"][5:]
json.dump(t, open(sys.argv[2], "w"))' "$TMP/native-agg.json" "$TMP/nope.json"
run 1 "$WARMEXEC" aggregate "$TMP/nope.json" --bundle "$NATIVE" --json
err_has 'aggregation failed (ModelError)'

finish
