#!/bin/sh
# End-to-end tests of the foundation commands: canon, task ids, config,
# help and version, with their documented errors and exit codes.
. "$(dirname "$0")/lib.sh"

REF=sha256:abababababababababababababababababababababababababababababababab
task() { # task SEED PARAMS [ENTRYPOINT [BUNDLE_REF]]
    printf '{"bundle_ref":"%s","entrypoint":"%s","params":%s,"seed":%s}' \
        "${4:-$REF}" "${3:-simulations.test/baseline}" "$2" "$1"
}

# --- canon ---------------------------------------------------------------
input '{"b": 2, "a": [1, 1.0, 1e16, 1e15, 1e-5, -0.0, 18446744073709551615]}'
run 0 "$WARMEXEC" canon
out_is '{"a":[1,1.0,1e+16,1000000000000000.0,1e-05,-0.0,18446744073709551615],"b":2}'

input '{"t":"caf\u00e9 \ud83d\ude00 \u2028 \u0001"}'
run 0 "$WARMEXEC" canon -
out_is "$(printf '{"t":"caf\303\251 \360\237\230\200 \342\200\250 \\u0001"}')"

printf '[0.1, 5e-324]' >"$TMP/doc.json"
no_input
run 0 "$WARMEXEC" canon "$TMP/doc.json"
out_is '[0.1,5e-324]'

input '{"x": NaN}'
run 3 "$WARMEXEC" canon
err_has 'Non-finite float not allowed: nan'
err_lines 1
input '[Infinity]'
run 3 "$WARMEXEC" canon
err_has 'Non-finite float not allowed: inf'
input '[1e999]'
run 3 "$WARMEXEC" canon
err_has 'Non-finite float not allowed: inf'
input '{"a": 1,}'
run 3 "$WARMEXEC" canon
err_has 'line 1 column 9'
no_input
run 3 "$WARMEXEC" canon "$TMP/missing.json"
err_has 'missing.json'
run 2 "$WARMEXEC" canon a b
run 2 "$WARMEXEC" canon --bogus
err_has "unknown option '--bogus'"

# --- task ids ------------------------------------------------------------
input "$(task 42 '{"alpha": 1.0, "beta": 2.0}')"
run 0 "$WARMEXEC" task ids
out_is '{"param_id":"8d1aa96348b4f859c80472726974e538bd45b9bc68c866bd3e0e17d5af4e3e8e","sim_root":"a2ff36e934ff268b0ac9540443865f96556dbd5e7c704c48464ab8c46902c225","task_id":"b6b273d9ab4a66f99faa442f8a88c7cdf4cc6a08a80fdd0b946089b08e18584b"}'

# Requested outputs are part of task_id; key order does not matter.
input '{"seed":42,"outputs":["table","metadata"],"params":{"beta":2.0,"alpha":1.0},"entrypoint":"simulations.test/baseline","bundle_ref":"'$REF'"}'
run 0 "$WARMEXEC" task ids
out_has '"task_id":"40dd022e15b726acb6ec635b5e7a4deee64aab95d8bc80a7077f36dc9937bf4b"'

# Each documented refusal: exit 3, one line naming the field and the rule.
check_bad_task() { # CONTENT NEEDLE
    input "$1"
    run 3 "$WARMEXEC" task ids
    err_has "$2"
    err_lines 1
    [ -s "$TMP/out" ] && fail "stdout not empty for a refused task"
}
check_bad_task "$(task 1 '{"x": NaN}')" 'in params.x: Non-finite float not allowed: nan'
check_bad_task "$(task 1 '{"x": Infinity}')" 'Non-finite float not allowed: inf'
check_bad_task "$(task -1 '{}')" 'seed: must be an integer in [0, 9223372036854775807], got -1'
check_bad_task "$(task 18446744073709551616 '{}')" 'seed: must be an integer in [0, 9223372036854775807], got 18446744073709551616'
check_bad_task "$(task 1 '{}' 'simulations.test/Baseline')" 'entrypoint: Invalid scenario slug: Baseline'
check_bad_task "$(task 1 '{}' 'simulations')" 'entrypoint: Invalid entrypoint format: simulations'
check_bad_task "$(task 1 '{}' simulations.test/baseline local://test_bundle)" 'bundle_ref: must be sha256:<64 lowercase hex>'
check_bad_task "$(task 1 '{}' simulations.test/baseline sha256:abc)" 'bundle_ref: must be'
check_bad_task "$(task 1 '{"x": [1, 2]}')" 'params.x: must be a boolean, integer, float or string, got array'
check_bad_task "$(task 1 '{"n": 1180591620717411303424}')" 'params.n: integer 1180591620717411303424 is outside the int64 range'
check_bad_task '{"bundle_ref":"'$REF'"}' 'entrypoint: is required'
check_bad_task '[1]' 'task must be a JSON object'

run 2 "$WARMEXEC" task
err_has 'missing subcommand'
run 2 "$WARMEXEC" task frob
err_has "unknown subcommand 'frob'"

# Input size limit.
input "$(task 42 '{"alpha": 1.0}')"
WARMEXEC_MAX_INPUT_BYTES=16 run 3 "$WARMEXEC" task ids
err_has 'max_input_bytes'

# --- config --------------------------------------------------------------
no_input
WARMEXEC_HOME=/srv/wx run 0 "$WARMEXEC" config
out_has 'home'
out_has '/srv/wx'
out_has 'environment'
WARMEXEC_LOG_LEVEL=debug run 0 "$WARMEXEC" config --json
out_has '{"doc":'
out_has '"name":"log_level","source":"environment","value":"debug"}'
WARMEXEC_MAX_INPUT_BYTES=lots run 3 "$WARMEXEC" config
err_has 'WARMEXEC_MAX_INPUT_BYTES'

# --- help, version, usage ------------------------------------------------
run 0 "$WARMEXEC" --help
out_has 'Commands:'
out_has 'canon'
for cmd in task canon config version; do
    run 0 "$WARMEXEC" "$cmd" --help
    out_has "usage: warmexec $cmd"
    run 0 "$WARMEXEC" help "$cmd"
    out_has "usage: warmexec $cmd"
done
run 0 "$WARMEXEC" task ids --help
out_has 'task_id'
run 0 "$WARMEXEC" version
out_has 'warmexec 0.'
run 0 "$WARMEXEC" --version
out_has 'warmexec 0.'
run 2 "$WARMEXEC"
run 2 "$WARMEXEC" frobnicate
err_has "unknown command 'frobnicate'"

finish
