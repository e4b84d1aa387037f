#!/bin/sh
# make demo: what warmexec can do so far -- the identifiers of an example
# SimTask, byte-identical to modelops-contracts, and its canonical form.
set -eu
warmexec=${1:-build/bin/warmexec}
here=$(dirname "$0")

echo "== warmexec $("$warmexec" version | cut -d' ' -f2): identifiers of $here/tasks/sir-baseline.json"
"$warmexec" task ids "$here/tasks/sir-baseline.json"
echo "== canonical JSON of the task (what the identifiers hash)"
"$warmexec" canon "$here/tasks/sir-baseline.json"
echo "== an invalid task is refused with the field and the rule (exit 3)"
if printf '{"bundle_ref":"sha256:%s","entrypoint":"sir.model/baseline","params":{"beta":0.3},"seed":-1}' \
    "$(printf '%064d' 0)" | "$warmexec" task ids; then
    echo "demo: expected a refusal" >&2
    exit 1
fi
echo "== done"
