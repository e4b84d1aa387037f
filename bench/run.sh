#!/bin/sh
# make bench: run each benchmark 5 times side by side with its reference and
# print the medians as a Markdown table for docs/performance.md.
set -eu
build=${1:-build}
here=$(dirname "$0")
runs=5

median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

b0_c=$(for i in $(seq $runs); do "$build/bin/bench_ids" 200000; done | median)
b0_py=$(for i in $(seq $runs); do python3 "$here/ids_reference.py" 50000; done | median)

echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo
echo "| benchmark | warmexec | reference | ratio |"
echo "|---|---|---|---|"
echo "| B0 ids of a task (parse, validate, param_id, sim_root, task_id), tasks/s, median of $runs | $b0_c | $b0_py (Python contracts algorithm) | $(awk "BEGIN {printf \"%.1fx\", $b0_c / $b0_py}") |"
