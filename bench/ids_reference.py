#!/usr/bin/env python3
"""B0 reference: the same work as bench_ids.c with the modelops-contracts
algorithms (json.loads, canonical json.dumps, hashlib.blake2b), the way the
Python platform computes ids.  Prints tasks per second."""
import hashlib
import json
import sys
import time


def digest(data):
    return hashlib.blake2b(data, digest_size=32).hexdigest()


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def root(leaves):
    leaves = sorted(leaves, key=lambda x: (x["kind"], x["name"]))
    return digest(canon({"version": 1, "leaves": leaves}))


def ids(task):
    params = task["params"]
    param_id = digest(b"contracts:param:v1|" + canon(params))
    scenario = task["entrypoint"].rsplit("/", 1)[1]
    leaves = [
        {"kind": "code", "name": "bundle",
         "digest": digest(canon({"ref": task["bundle_ref"]}))},
        {"kind": "params", "name": "parameters", "digest": digest(canon(params))},
        {"kind": "seed", "name": "seed", "digest": digest(canon(task["seed"]))},
        {"kind": "scenario", "name": "name", "digest": digest(canon(scenario))},
    ]
    sim_root = root(leaves)
    task_id = digest(canon({"sim_root": sim_root,
                            "entrypoint": task["entrypoint"], "outputs": "*"}))
    return param_id, sim_root, task_id


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200000
    start = time.monotonic()
    for i in range(n):
        text = ('{"bundle_ref":"sha256:%064d","entrypoint":"sir.model/baseline",'
                '"params":{"beta":%.6f,"gamma":0.1,"population":10000},'
                '"seed":%d}' % (0, 0.1 + i / n, i))
        ids(json.loads(text))
    print("%.0f" % (n / (time.monotonic() - start)))


main()
