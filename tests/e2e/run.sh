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

# The checks below evaluate Python expressions over JSON documents: `d` is
# the document checked, `e` the one it is compared with (or None), and
# same(a, b) tells whether two SimReturns carry identical artifacts.  A
# tuple prints as its items separated by spaces.  One python3 per call:
# it starts slowly.
PYCHECK='import json, math, sys
d = json.load(open(sys.argv[1]))
e = json.load(open(sys.argv[2])) if sys.argv[2] else None
def same(a, b):
    return (a["outputs"] == b["outputs"] and a["sim_root"] == b["sim_root"]
            and a["task_id"] == b["task_id"])
def show(r):
    return " ".join(map(str, r)) if isinstance(r, tuple) else str(r)
if sys.argv[3] == "get":
    print(show(eval(sys.argv[4])))
    sys.exit(0)
for x, want in zip(sys.argv[4::2], sys.argv[5::2]):
    try:
        got = show(eval(x))
    except Exception as exc:
        got = "error: %r" % exc
    if got != want:
        print("%s is %r, expected %r" % (x, got, want))'

# jget FILE EXPR: print EXPR over FILE.
jget() {
    python3 -c "$PYCHECK" "$1" "" get "$2"
}

# expect FILE [--vs OTHER] EXPR VALUE [EXPR VALUE...]: each EXPR over FILE
# (and OTHER as `e`) prints VALUE.
expect() {
    file=$1
    other=
    shift
    if [ "$1" = --vs ]; then
        other=$2
        shift 2
    fi
    checks=$((checks + $# / 2))
    msg=$(python3 -c "$PYCHECK" "$file" "$other" check "$@" 2>&1)
    [ -z "$msg" ] || fail "$(basename "$file"): $msg"
}

# object REF: the file of a CAS object.
object() {
    hex=${1#cas://}
    echo "$OBJECTS/$(echo "$hex" | cut -c1-2)/$(echo "$hex" | cut -c3-)"
}

# sha256 FILE: its lowercase hex SHA-256.
sha256() {
    sha256sum "$1" | cut -d' ' -f1
}

# --- task run: both bundles, then a cache hit ----------------------------
for kind in native python; do
    if [ "$kind" = native ]; then dir=$NATIVE; else dir=$PYTHON; fi
    task 1 "$GOOD"
    run 0 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    cp "$TMP/out" "$TMP/$kind-1.json"
    expect "$TMP/$kind-1.json" \
        'sorted(d["outputs"])' "['incidence', 'prevalence']" \
        'd["cached"], d["error"], d["metrics"]["attempts"]' 'False None 1' \
        'all("inline" in a for a in d["outputs"].values())' True \
        'd["outputs"]["incidence"]["inline"][:20]' 'ZGF5LGluY2lkZW5jZQow'
    # The same task again: from the cache, the same artifacts.
    run 0 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    expect "$TMP/out" --vs "$TMP/$kind-1.json" \
        'd["cached"], d["metrics"]["attempts"]' 'True 0' \
        'same(d, e)' True
    # The readable form says the same.
    run 0 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir"
    out_has '"cached": true'
    # --no-cache never reports a hit.
    run 0 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json --no-cache
    expect "$TMP/out" --vs "$TMP/$kind-1.json" \
        'd["cached"], d["metrics"]["attempts"]' 'False 1' \
        'same(d, e)' True
done
# The two models write the same bytes (other bundles: other sim_roots).
expect "$TMP/python-1.json" --vs "$TMP/native-1.json" \
    'd["outputs"] == e["outputs"]' True \
    'd["sim_root"] != e["sim_root"]' True

# --- a damaged or deleted CAS object is not served ------------------------
# With a 100-byte inline limit every output goes to the CAS, and the
# cached result refers to the objects.
for kind in native python; do
    if [ "$kind" = native ]; then dir=$NATIVE; else dir=$PYTHON; fi
    task 2 "$GOOD"
    run 0 env WARMEXEC_INLINE_ARTIFACT_MAX_BYTES=100 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    cp "$TMP/out" "$TMP/$kind-cas.json"
    expect "$TMP/$kind-cas.json" \
        'all(a["ref"] == "cas://" + a["checksum"] for a in d["outputs"].values())' True \
        'all("inline" not in a for a in d["outputs"].values())' True \
        'd["outputs"]["incidence"]["size"] > 100' True
    # shellcheck disable=SC2046 # two words: the ref and the size
    set -- $(jget "$TMP/$kind-cas.json" 'd["outputs"]["incidence"]["ref"], d["outputs"]["incidence"]["size"]')
    REF=$1
    OBJ=$(object "$REF")
    checks=$((checks + 1))
    if [ ! -f "$OBJ" ]; then
        fail "no object at $OBJ"
    elif [ "$(sha256 "$OBJ")" != "${REF#cas://}" ] || [ "$(stat -c %s "$OBJ")" != "$2" ]; then
        fail "$OBJ does not hash to its name or has not the artifact's size $2"
    fi
    run 0 env WARMEXEC_INLINE_ARTIFACT_MAX_BYTES=100 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    expect "$TMP/out" --vs "$TMP/$kind-cas.json" 'd["cached"]' True 'same(d, e)' True

    # Deleted: the task runs again and the object is back.
    rm -f "$OBJ"
    run 0 env WARMEXEC_INLINE_ARTIFACT_MAX_BYTES=100 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    expect "$TMP/out" --vs "$TMP/$kind-cas.json" \
        'd["cached"], d["metrics"]["attempts"]' 'False 1' 'same(d, e)' True
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
    expect "$TMP/out" --vs "$TMP/$kind-cas.json" \
        'd["cached"], d["metrics"]["attempts"]' 'False 1' 'same(d, e)' True
    run 0 "$WARMEXEC" cas verify
    out_has ', 0 damaged'
    checks=$((checks + 1))
    [ "$(sha256 "$OBJ")" = "${REF#cas://}" ] || fail "$OBJ was not repaired"
    run 0 env WARMEXEC_INLINE_ARTIFACT_MAX_BYTES=100 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    expect "$TMP/out" --vs "$TMP/$kind-cas.json" 'd["cached"]' True 'same(d, e)' True
done

# --- a model error ---------------------------------------------------------
for dir in "$NATIVE" "$PYTHON"; do
    task 1 "$BAD"
    run 1 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    expect "$TMP/out" \
        'd["error"]["error_type"], d["error"]["retryable"]' 'ModelError False' \
        '"gamma" in d["error"]["message"]' True \
        'd["outputs"], d["cached"], d["metrics"]["attempts"]' '{} False 1' \
        '"inline" in d["error_details"]' True
    err_has 'task failed (ModelError)'
    # Failures are not cached.
    run 1 "$WARMEXEC" task run "$TMP/task.json" --bundle "$dir" --json
    expect "$TMP/out" 'd["cached"], d["metrics"]["attempts"]' 'False 1'
done

# --- aggregate over replicates, some in the CAS ----------------------------
# replicates KIND DIR: an AggregationTask $TMP/KIND-agg.json over the
# SimReturns of seeds 1..10; seeds 1..5 keep their outputs in the CAS.
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
        "target_entrypoint": "targets.incidence:mse", "sim_returns": reps}
json.dump(task, open(sys.argv[2], "w"))' "$TMP/$1-reps.jsonl" "$TMP/$1-agg.json"
}
for kind in native python; do
    if [ "$kind" = native ]; then dir=$NATIVE; else dir=$PYTHON; fi
    replicates "$kind" "$dir"
    run 0 "$WARMEXEC" aggregate "$TMP/$kind-agg.json" --bundle "$dir" --json
    cp "$TMP/out" "$TMP/$kind-loss.json"
    expect "$TMP/$kind-agg.json" \
        'sum("ref" in a for r in d["sim_returns"] for a in r["outputs"].values())' 10 \
        'sum("inline" in a for r in d["sim_returns"] for a in r["outputs"].values())' 10
    expect "$TMP/$kind-loss.json" \
        'isinstance(d["loss"], float) and math.isfinite(d["loss"]) and d["loss"] > 0' True \
        'd["n_replicates"], len(d["aggregation_id"])' '10 16' \
        'd["diagnostics"]["target"], d["diagnostics"]["n_failed"]' 'incidence_mse 0'
    # Again: the same answer (from the cache), and without the cache.
    run 0 "$WARMEXEC" aggregate "$TMP/$kind-agg.json" --bundle "$dir" --json
    checks=$((checks + 1))
    cmp -s "$TMP/out" "$TMP/$kind-loss.json" || fail "a second aggregation printed another result"
    run 0 "$WARMEXEC" aggregate "$TMP/$kind-agg.json" --bundle "$dir" --json --no-cache
    expect "$TMP/out" --vs "$TMP/$kind-loss.json" 'd["loss"] == e["loss"]' True
done
# The same replicate seeds give the same loss in both bundles.
expect "$TMP/python-loss.json" --vs "$TMP/native-loss.json" \
    'd["loss"] == e["loss"]' True \
    'd["aggregation_id"] != e["aggregation_id"]' True

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
