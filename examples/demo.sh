#!/bin/sh
# make demo: run the example study -- 25 parameter sets x 10 replicates of
# the native SIR model, scored by two calibration targets -- in warm
# workers, and print the summary.  A second run is served from the result
# cache and the results database.
set -eu
warmexec=${1:-build/bin/warmexec}
build=$(dirname "$(dirname "$warmexec")")
here=$(dirname "$0")
out=${WARMEXEC_DEMO_OUT:-$build/demo-results.db}

rm -f "$out"
echo "== warmexec run $here/studies/sir-grid.json --bundle $build/examples/bundles/sir"
"$warmexec" run "$here/studies/sir-grid.json" \
    --bundle "$build/examples/bundles/sir" --out "$out"
echo
echo "== the same command again: resumed, nothing to run"
"$warmexec" run "$here/studies/sir-grid.json" \
    --bundle "$build/examples/bundles/sir" --out "$out" | head -3
