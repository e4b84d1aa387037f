#!/bin/sh
# make bench: every benchmark of docs/performance.md, each figure the median
# of RUNS repetitions, each next to the reference it is compared with,
# measured in the same run.  Prints the Markdown for docs/performance.md.
#
#   sh bench/run.sh [BUILD_DIR]        (RUNS=5 and B6_TASKS=1000000 by
#                                        default; smaller for a quick look)
set -eu
build=${1:-build}
here=$(dirname "$0")
runs=${RUNS:-5}
b6_tasks=${B6_TASKS:-1000000}
bin="$build/bin"
noop="$build/examples/bundles/noop"
sir_python="$here/../examples/bundles/sir-python"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

median() { sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
# repeat N CMD...: run CMD N times, one output line each.
repeat() {
    n=$1
    shift
    for _ in $(seq "$n"); do
        rm -rf "$work/home"
        "$@"
    done
}
# Benchmarks and their references run in rounds (each once per round) so
# that both see the machine in the same state: its speed drifts.
rounds() { seq "$runs"; }
col() { awk -v c="$1" '{print $c}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
now() { date +%s.%N; }
log() { echo "bench: $*" >&2; }

# A study of noop tasks: SETS parameter sets x REPS replicates, no target.
study() { # FILE SETS REPS
    python3 - "$@" <<'PY'
import json, sys
path, sets, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "w") as f:
    json.dump({"model": "noop.model", "scenario": "baseline",
               "parameter_sets": [{"params": {"i": i}} for i in range(sets)],
               "n_replicates": reps, "targets": ["noop.targets:size"]}, f)
PY
}

# tasks/s of `warmexec run` on STUDY with TASKS tasks; extra env in $@.
run_rate() { # STUDY TASKS JOBS [VAR=value...]
    s=$1 tasks=$2 jobs=$3
    shift 3
    rm -rf "$work/home" "$work/r.db"
    t0=$(now)
    env WARMEXEC_HOME="$work/home" "$@" "$bin/warmexec" run "$s" \
        --bundle "$noop" --out "$work/r.db" -j "$jobs" --json >/dev/null 2>&1
    t1=$(now)
    awk -v n="$tasks" -v a="$t0" -v b="$t1" 'BEGIN {printf "%.0f\n", n / (b - a)}'
}

# ---- B0 ----
log "B0 ids"
for _ in $(rounds); do
    "$bin/bench_ids" 200000 >>"$work/b0c"
    python3 "$here/ids_reference.py" 50000 >>"$work/b0py"
done
b0_c=$(median <"$work/b0c")
b0_py=$(median <"$work/b0py")

# ---- B1 ----
log "B1 warm trivial task"
for _ in $(rounds); do
    "$bin/bench_exec" pipe 20000 >>"$work/pipe"
    repeat 1 "$bin/bench_exec" run "$work/home" "$noop" 20000 nocache \
        >>"$work/b1"
    repeat 1 "$bin/bench_exec" run "$work/home" "$noop" 20000 cache \
        >>"$work/b1c"
done
pipe50=$(col 1 <"$work/pipe" | median)
pipe99=$(col 2 <"$work/pipe" | median)
b1_50=$(col 1 <"$work/b1" | median)
b1_99=$(col 2 <"$work/b1" | median)
b1c_50=$(col 1 <"$work/b1c" | median)
b1c_99=$(col 2 <"$work/b1c" | median)

# ---- B2 ----
log "B2 warmexec run throughput"
study "$work/s20k.json" 2000 10
study "$work/s1k.json" 100 10
for _ in $(rounds); do
    run_rate "$work/s20k.json" 20000 1 >>"$work/b2j1"
    run_rate "$work/s20k.json" 20000 2 >>"$work/b2j2"
    run_rate "$work/s1k.json" 1000 2 WARMEXEC_MAX_TASKS_PER_WORKER=1 \
        >>"$work/b2cold"
done
b2_j1=$(median <"$work/b2j1")
b2_j2=$(median <"$work/b2j2")
b2_cold=$(median <"$work/b2cold")

# ---- B3 ----
log "B3 artifacts"
b3_specs="1KB:1024:5000 64KB:65536:2000 1MB:1048576:200 16MB:16777216:20"
for _ in $(rounds); do
    "$bin/bench_exec" sha 16777216 20 >>"$work/b3sha"
    for spec in $b3_specs; do
        name=${spec%%:*} rest=${spec#*:}
        size=${rest%%:*} n=${rest#*:}
        for mode in wx1 compat; do
            [ "$mode" = compat ] && n=$(( n / 4 > 5 ? n / 4 : 5 ))
            repeat 1 "$bin/bench_exec" artifact "$work/home" "$noop" "$size" \
                "$n" "$mode" batch >>"$work/b3-$name-$mode"
        done
    done
    repeat 1 "$bin/bench_exec" artifact "$work/home" "$noop" 16777216 20 \
        wx1 full >>"$work/b3full"
done
b3_sha=$(median <"$work/b3sha")
b3_rows=""
for spec in $b3_specs; do
    name=${spec%%:*}
    for mode in wx1 compat; do
        eng=$(col 1 <"$work/b3-$name-$mode" | median)
        dur=$(col 2 <"$work/b3-$name-$mode" | median)
        b3_rows="$b3_rows$name $mode $eng $dur
"
    done
done
b3_full=$(col 1 <"$work/b3full" | median)
# B3 leaves gigabytes of dirty pages that the kernel writes back over the
# next seconds, taking CPU from whatever runs then: not the next ones'.
sync

# ---- B4 ----
log "B4 aggregation"
b4=$(repeat "$runs" "$bin/bench_exec" aggregate "$work/home" "$noop" 100 10240 200 | median)

# ---- B5 ----
log "B5 cold start"
for _ in $(rounds); do
    repeat 1 "$bin/bench_exec" start "$work/home" "$noop" 100 >>"$work/b5n"
    "$bin/bench_exec" forkexec "$bin/bench_trivial" 200 >>"$work/b5f"
done
b5_native=$(median <"$work/b5n")
b5_fork=$(median <"$work/b5f")
# Apart: Python interpreters exiting would overlap the next round.
b5_python=$(repeat "$runs" "$bin/bench_exec" start "$work/home" \
    "$sir_python" 5 | median)

# ---- B6 ----
log "B6 memory"
repeat "$runs" "$bin/bench_exec" workers "$work/home" "$noop" 32 >"$work/b6"
b6_heap=$(col 1 <"$work/b6" | median)
b6_rss=$(col 2 <"$work/b6" | median)
study "$work/s1m.json" $((b6_tasks / 10)) 10
b6_peak=$(for _ in $(seq "$runs"); do
    rm -rf "$work/home" "$work/r.db"
    /usr/bin/time -f "%M" -o "$work/time" env WARMEXEC_HOME="$work/home" \
        "$bin/warmexec" run "$work/s1m.json" --bundle "$noop" \
        --out "$work/r.db" --json >/dev/null 2>&1
    cat "$work/time"
done | median)

# ---- the table ----
kib() { awk -v b="$1" 'BEGIN {printf "%.1f KiB", b / 1024}'; }
echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); $(df -T "$work" | awk 'NR == 2 {print $2}') file system. Median of $runs rounds."
echo
echo "| benchmark | warmexec | reference | ratio | target |"
echo "|---|---|---|---|---|"
echo "| B0 ids of a task, tasks/s | $b0_c | $b0_py (Python contracts algorithm) | $(ratio "$b0_c" "$b0_py")x | - |"
echo "| B1 warm trivial task, wx_env_run without cache, p50 / p99 us | $b1_50 / $b1_99 | $pipe50 / $pipe99 (pipe round trip) | $(ratio "$b1_50" "$pipe50") | <= 1.5 |"
echo "| B1' the same with the result cache, p50 / p99 us | $b1c_50 / $b1c_99 | $pipe50 / $pipe99 | $(ratio "$b1c_50" "$pipe50") | - |"
echo "| B2 warmexec run, 20,000 noop tasks, -j 1, tasks/s | $b2_j1 | $b2_cold (cold: a new worker per task, -j 2) | $(ratio "$b2_j1" "$b2_cold")x | - |"
echo "| B2 the same, -j 2, tasks/s | $b2_j2 | $b2_cold (cold) | $(ratio "$b2_j2" "$b2_cold")x | >= 15,000 and >= 20x |"
echo "$b3_rows" | while read -r size mode eng dur; do
    [ -n "$size" ] || continue
    echo "| B3 $size artifacts, $mode, MB/s (with a final sync) | $eng ($dur) | $b3_sha (SHA-256) | $(ratio "$eng" "$b3_sha") | $( [ "$size $mode" = "16MB wx1" ] && echo ">= 0.5" || { [ "$size $mode" = "16MB compat" ] && echo ">= 100 MB/s" || echo "-"; }) |"
done
echo "| B3 16MB, wx1, cas_sync=full, MB/s | $b3_full | $b3_sha (SHA-256) | $(ratio "$b3_full" "$b3_sha") | - |"
echo "| B4 aggregation, 100 replicates x 10 KB, p50 ms | $b4 | - | - | <= 1 ms |"
echo "| B5 start, spawn to ready, native runner, ms | $b5_native | $b5_fork (fork+exec of a trivial program) | $(ratio "$b5_native" "$b5_fork") | <= 2 |"
echo "| B5 the same, Python runner (sir-python), ms | $b5_python | $b5_fork | $(ratio "$b5_python" "$b5_fork") | - |"
echo "| B6 manager memory per warm worker (heap / RSS) | $(kib "$b6_heap") / $(kib "$b6_rss") | - | - | <= 64 KiB |"
echo "| B6 peak RSS of a $b6_tasks-task study | $(awk -v k="$b6_peak" 'BEGIN {printf "%.0f MiB", k / 1024}') | - | - | < 256 MiB |"
