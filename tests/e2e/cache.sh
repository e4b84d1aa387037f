#!/bin/sh
# End-to-end tests of `warmexec cache`: stats and clear on an empty home,
# on a database with entries, and on one of a newer schema version.
. "$(dirname "$0")/lib.sh"

no_input
DB="$WARMEXEC_HOME/cache.db"

run 0 "$WARMEXEC" cache stats
out_has "cache:        $DB"
out_has 'sims:         0'
out_has 'aggregations: 0'
out_has 'bytes:        0'
[ -f "$DB" ] || fail "cache stats did not create $DB"
run 0 "$WARMEXEC" cache stats --json
out_is "{\"aggregations\":0,\"bytes\":0,\"path\":\"$DB\",\"sims\":0}"
run 0 "$WARMEXEC" cache clear
out_is "removed 0 sims and 0 aggregations from $DB"

# Entries written by another SQLite client are counted and cleared.
python3 - "$DB" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO sims VALUES ('a' || hex(randomblob(31)), 't', '{}', 0)")
db.execute("INSERT INTO sims VALUES ('b' || hex(randomblob(31)), 't', '{\"x\":1}', 0)")
db.execute("INSERT INTO aggregations VALUES ('c', 'c', '[]', 0)")
db.commit()
PY
run 0 "$WARMEXEC" cache stats --json
out_is "{\"aggregations\":1,\"bytes\":11,\"path\":\"$DB\",\"sims\":2}"
run 0 "$WARMEXEC" cache clear
out_is "removed 2 sims and 1 aggregations from $DB"
run 0 "$WARMEXEC" cache stats --json
out_has '"sims":0'
out_has '"aggregations":0'

# A database of a newer schema version is refused, and left alone.
pragmas() { # the user_version and journal mode of $DB
    python3 - "$DB" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
print(db.execute("PRAGMA user_version").fetchone()[0],
      db.execute("PRAGMA journal_mode").fetchone()[0])
PY
}
rm -f "$DB" "$DB-wal" "$DB-shm"
python3 - "$DB" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE future(x)")
db.execute("PRAGMA user_version = 7")
PY
run 3 "$WARMEXEC" cache stats
err_has 'has schema version 7, but this warmexec knows version 1 only'
err_lines 1
run 3 "$WARMEXEC" cache clear
err_has 'newer warmexec'
[ "$(pragmas)" = "7 delete" ] || fail "the newer database was changed: $(pragmas)"

# Not a database at all: a system failure naming the file.
rm -f "$DB" "$DB-wal" "$DB-shm"
head -c 4096 /dev/zero | tr '\0' x >"$DB"
run 4 "$WARMEXEC" cache stats
err_has 'file is not a database'
err_has "$DB"

# --- usage ---------------------------------------------------------------
run 0 "$WARMEXEC" cache --help
out_has 'usage: warmexec cache stats [--json]'
run 0 "$WARMEXEC" cache stats --help
out_has 'warmexec cache clear'
run 2 "$WARMEXEC" cache
err_has 'missing subcommand'
run 2 "$WARMEXEC" cache drop
err_has "unknown subcommand 'drop'"
run 2 "$WARMEXEC" cache stats --yaml
run 2 "$WARMEXEC" cache clear now
WARMEXEC_HOME= HOME= XDG_CACHE_HOME= run 3 "$WARMEXEC" cache stats
err_has 'home is not set'

finish
