#!/bin/sh
# End-to-end tests of `warmexec cas`: put/get round trips, the object
# layout, damaged objects, refused refs and `cas verify`.
. "$(dirname "$0")/lib.sh"

no_input
OBJECTS="$WARMEXEC_HOME/cas/sha256"

# sha256 FILE: the lowercase hex SHA-256 of FILE.
sha256() {
    sha256sum "$1" | cut -d' ' -f1
}

# --- put and get ---------------------------------------------------------
head -c 1048576 /dev/urandom >"$TMP/big.bin"
HEX=$(sha256 "$TMP/big.bin")
run 0 "$WARMEXEC" cas put "$TMP/big.bin"
out_is "cas://$HEX"
REF="cas://$HEX"
OBJECT="$OBJECTS/$(echo "$HEX" | cut -c1-2)/$(echo "$HEX" | cut -c3-)"
[ -f "$OBJECT" ] || fail "object not at $OBJECT"
[ "$(stat -c %a "$OBJECT")" = 444 ] || fail "object mode $(stat -c %a "$OBJECT"), expected 444"
run 0 "$WARMEXEC" cas get "$REF"
cmp -s "$TMP/out" "$TMP/big.bin" || fail "cas get to stdout changed the bytes"
run 0 "$WARMEXEC" cas get "$REF" -o "$TMP/copy.bin"
cmp -s "$TMP/copy.bin" "$TMP/big.bin" || fail "cas get -o changed the bytes"
[ -s "$TMP/out" ] && fail "cas get -o also wrote to stdout"

# Putting it again is the same object; standard input works too.
input hello
run 0 "$WARMEXEC" cas put -
out_is 'cas://2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'
run 0 "$WARMEXEC" cas put -
out_is 'cas://2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824'
no_input
run 0 "$WARMEXEC" cas put "$TMP/big.bin"
out_is "$REF"
[ "$(find "$OBJECTS" -type f | wc -l)" -eq 2 ] || fail "expected 2 object files: $(find "$OBJECTS" -type f)"

run 0 "$WARMEXEC" cas verify
out_is '2 objects, 0 damaged'
run 0 "$WARMEXEC" cas verify "$REF"
out_is '1 objects, 0 damaged'

# --- refused refs --------------------------------------------------------
check_bad_ref() { # REF
    run 3 "$WARMEXEC" cas get "$1"
    err_has 'must be cas://<64 lowercase hex>'
    err_lines 1
    [ -s "$TMP/out" ] && fail "stdout not empty for bad ref '$1'"
}
check_bad_ref "cas://../../../../etc/passwd"
check_bad_ref "cas://$(echo "$HEX" | tr a-f A-F)"
check_bad_ref "cas://$(echo "$HEX" | cut -c1-63)"
check_bad_ref "cas://${HEX}0"
check_bad_ref "cas://$(echo "$HEX" | cut -c1-62).."
check_bad_ref "cas://$(echo "$HEX" | cut -c1-2)/$(echo "$HEX" | cut -c4-)"
check_bad_ref "sha256:$HEX"
check_bad_ref "$HEX"
run 3 "$WARMEXEC" cas verify "$REF" "cas://nope"
err_has "invalid CAS ref 'cas://nope'"

MISSING=cas://0000000000000000000000000000000000000000000000000000000000000000
run 3 "$WARMEXEC" cas get "$MISSING"
err_has "$MISSING not found"
run 3 "$WARMEXEC" cas verify "$MISSING" "$REF"
out_has "missing: CAS object $MISSING not found"
out_has '2 objects, 1 damaged'

# --- damaged objects -----------------------------------------------------
chmod u+w "$OBJECT"
printf 'X' | dd of="$OBJECT" bs=1 seek=1000 conv=notrunc 2>/dev/null
cmp -s "$OBJECT" "$TMP/big.bin" && fail "the object was not damaged"
run 3 "$WARMEXEC" cas get "$REF" -o "$TMP/bad.bin"
err_has "$REF is corrupt"
err_lines 1
[ -e "$TMP/bad.bin" ] && fail "cas get wrote a damaged object"
run 3 "$WARMEXEC" cas verify
out_has "damaged: CAS object $REF is corrupt"
out_has '2 objects, 1 damaged'
err_has '1 of 2 objects damaged'
# Putting the bytes again repairs the object.
run 0 "$WARMEXEC" cas put "$TMP/big.bin"
run 0 "$WARMEXEC" cas verify
out_is '2 objects, 0 damaged'
[ "$(stat -c %a "$OBJECT")" = 444 ] || fail "repaired object is not read-only"

# --- usage ---------------------------------------------------------------
run 0 "$WARMEXEC" cas --help
out_has 'usage: warmexec cas put FILE|-'
run 0 "$WARMEXEC" cas get --help
out_has 'cas verify [REF...]'
run 2 "$WARMEXEC" cas
err_has 'missing subcommand'
run 2 "$WARMEXEC" cas frob
err_has "unknown subcommand 'frob'"
run 2 "$WARMEXEC" cas put
run 2 "$WARMEXEC" cas put a b
run 2 "$WARMEXEC" cas get
run 2 "$WARMEXEC" cas get "$REF" -o
run 2 "$WARMEXEC" cas get "$REF" --bogus
run 3 "$WARMEXEC" cas put "$TMP/does-not-exist"
err_has 'does-not-exist'
WARMEXEC_MAX_INPUT_BYTES=1000 run 3 "$WARMEXEC" cas put "$TMP/big.bin"
err_has 'max_input_bytes'
WARMEXEC_MAX_INPUT_BYTES=1000 run 3 "$WARMEXEC" cas get "$REF"
err_has 'more than the limit of 1000'

finish
