#!/usr/bin/env python3
"""Differential test: `warmexec canon` against Python's json.dumps.

Generates random JSON documents (floats from random bit patterns, integers
up to +-2^70, strings with random code points, nested objects), feeds each
batch to `warmexec canon`, and compares the bytes with what the contracts'
canonical_json writes: json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False).  Fixed seed, so a failure is reproducible.
"""
import json
import os
import random
import struct
import subprocess
import sys

WARMEXEC = os.environ["WARMEXEC"]
rng = random.Random(20261129)


def rand_float():
    while True:
        bits = rng.getrandbits(64)
        value = struct.unpack("<d", struct.pack("<Q", bits))[0]
        if value == value and value not in (float("inf"), float("-inf")):
            return value


def rand_string():
    chars = []
    for _ in range(rng.randint(0, 12)):
        kind = rng.random()
        if kind < 0.5:
            chars.append(chr(rng.randint(0, 0x7F)))
        elif kind < 0.8:
            chars.append(chr(rng.randint(0x80, 0xD7FF)))
        elif kind < 0.9:
            chars.append(chr(rng.randint(0xE000, 0xFFFF)))
        else:
            chars.append(chr(rng.randint(0x10000, 0x10FFFF)))
    return "".join(chars)


def rand_value(depth=0):
    kind = rng.random()
    if depth < 3 and kind < 0.15:
        return {rand_string(): rand_value(depth + 1)
                for _ in range(rng.randint(0, 6))}
    if depth < 3 and kind < 0.25:
        return [rand_value(depth + 1) for _ in range(rng.randint(0, 6))]
    if kind < 0.5:
        return rand_float()
    if kind < 0.6:
        return rng.choice([0.0, -0.0, 1e16, 1e15, 1e-5, 1e-4, 0.1, 5e-324])
    if kind < 0.8:
        return rng.randint(-(2 ** 70), 2 ** 70)
    if kind < 0.95:
        return rand_string()
    return rng.choice([True, False, None])


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def main():
    failures = 0
    for batch in range(40):
        doc = {str(i): rand_value() for i in range(200)}
        # Feed an ASCII-escaped, spaced form so the reader is exercised too.
        text = json.dumps(doc, ensure_ascii=rng.random() < 0.5, indent=1)
        got = subprocess.run([WARMEXEC, "canon"], input=text.encode("utf-8"),
                             capture_output=True, check=False)
        want = canonical(doc) + b"\n"
        if got.returncode != 0 or got.stdout != want:
            failures += 1
            print(f"batch {batch}: exit {got.returncode} "
                  f"{got.stderr.decode(errors='replace')}", file=sys.stderr)
            for i, (a, b) in enumerate(zip(got.stdout, want)):
                if a != b:
                    print(f"  first difference at byte {i}: "
                          f"{got.stdout[i-40:i+40]!r} vs {want[i-40:i+40]!r}",
                          file=sys.stderr)
                    break
    if failures:
        sys.exit(f"{failures} of 40 batches differ")
    print("40 batches of 200 random values: identical to Python")


main()
