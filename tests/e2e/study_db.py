#!/usr/bin/env python3
"""Helpers for tests/e2e/study.sh: read a results database.

    study_db.py dump DB        the result content, without timings
    study_db.py count DB       the number of recorded simulations
    study_db.py get DB SQL     the first column of the first row
"""
import sqlite3
import sys

# Columns that say how a result was obtained, not what it is.
TIMINGS = {"duration", "cached", "started", "finished"}


def dump(path):
    db = sqlite3.connect(path)
    for table in ("runs", "sims", "aggregations"):
        cols = [r[1] for r in db.execute(f"PRAGMA table_info({table})")
                if r[1] not in TIMINGS]
        rows = db.execute(f"SELECT {', '.join(cols)} FROM {table} "
                          f"ORDER BY {', '.join(cols[:2])}").fetchall()
        print(table, len(rows))
        for row in rows:
            print(row)


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "dump":
        dump(path)
    elif cmd == "count":
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            print(db.execute("SELECT count(*) FROM sims").fetchone()[0])
        except sqlite3.Error:
            print(0)
    elif cmd == "get":
        db = sqlite3.connect(path)
        print(db.execute(sys.argv[3]).fetchone()[0])


main()
