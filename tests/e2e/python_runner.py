#!/usr/bin/env python3
"""End-to-end test of runners/python/warmexec_runner.py, run as a subprocess.

1. replays the session recorded with the original modelops runner
   (tests/data/contracts.json "jsonrpc_runner_session") byte for byte;
2. warmexec/1: attachments both ways, model and aggregation errors;
3. stdout protection against print, os.write(1) and child processes;
4. wire discovery through .modelops/manifest.json, and no wire at all;
5. framing: an over-long header line, a 70,000-character parameter.

Needs WX_SOURCE_DIR (the source tree).  Exits 0 when every test passes.
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

SOURCE = Path(os.environ["WX_SOURCE_DIR"])
RUNNER = SOURCE / "runners" / "python" / "warmexec_runner.py"
CONTRACTS = SOURCE / "tests" / "data" / "contracts.json"
W1_READY = {"protocol": "warmexec/1", "attachments": True}

MID = (bytes(range(256)) * 274)[:70000]   # 70,000 bytes
BIG = bytes(range(255, -1, -1)) * 12288   # 3 MiB

W1_WIRE = """\
import os
def wire(entrypoint, params, seed):
    mode = params.get("mode")
    if mode == "raise":
        raise ValueError("bad alpha")
    if mode == "oom":
        raise MemoryError("no room")
    if mode == "echo":
        return {"echo": params["text"]}
    if mode == "many":
        return {"o%d" % i: b"%d" % i for i in range(1030)}
    return {"empty": b"",
            "mid": (bytes(range(256)) * 274)[:70000],
            "big": bytes(range(255, -1, -1)) * 12288}
"""

W1_TARGETS = """\
import base64, hashlib
def check(sim_returns, target_data):
    seen = {}
    for name, out in sim_returns[0]["outputs"].items():
        data = out["data"]
        seen[name] = {"len": len(data),
                      "sha": hashlib.sha256(data).hexdigest(),
                      "b64": base64.b64decode(out["inline"]) == data}
    return {"loss": 2.5, "diagnostics": {"seen": seen, "td": target_data},
            "per_replicate_losses": [1, 4.0]}
def boom(sim_returns, target_data):
    raise KeyError("no such column")
"""


class Failure(Exception):
    """A failed expectation."""


def expect(condition, what):
    """Raise Failure(what) unless condition holds."""
    if not condition:
        raise Failure(what)


def make_bundle(root, files):
    """Write {relative path: text} under a new directory of root."""
    bundle = Path(tempfile.mkdtemp(dir=root))
    for name, text in files.items():
        path = bundle / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return bundle


def frame(message, attachments=()):
    """A request frame: compact ASCII JSON (or raw bytes) plus attachments."""
    body = message if isinstance(message, bytes) else json.dumps(
        message, separators=(",", ":")).encode()
    header = b"Content-Length: %d\r\n" % len(body)
    if attachments:
        header += b"Attachments: " + b",".join(
            b"%d" % len(a) for a in attachments) + b"\r\n"
    return header + b"\r\n" + body + b"".join(attachments)


def request(req_id, method, params=None):
    """A JSON-RPC request object."""
    return {"jsonrpc": "2.0", "id": req_id, "method": method,
            "params": params or {}}


def run_runner(bundle, stdin, digest="test123"):
    """Run the runner on all of stdin: (exit status, stdout, stderr)."""
    proc = subprocess.run(
        [sys.executable, str(RUNNER), "--bundle-path", str(bundle),
         "--bundle-digest", digest, "--venv-path", "/nonexistent/venv"],
        input=stdin, capture_output=True, timeout=30)
    return proc.returncode, proc.stdout, proc.stderr


def parse_frames(data):
    """Split runner output into (header, body, attachments) frames, checking
    the header limits; anything else on stdout is a failure."""
    frames, pos = [], 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        expect(end >= 0, f"bytes outside a frame at {pos}: {data[pos:pos + 40]!r}")
        header = data[pos:end]
        lines = header.split(b"\r\n")
        expect(lines[0].startswith(b"Content-Length: "), f"bad header {header[:60]!r}")
        expect(len(lines) < 16, "more than 16 header lines")
        expect(all(len(line) + 2 <= 1024 for line in lines), "header line over 1024 bytes")
        sizes = []
        for line in lines[1:]:
            expect(line.startswith(b"Attachments: "), f"unexpected header {line[:60]!r}")
            sizes += [int(n) for n in line[len(b"Attachments: "):].split(b",")]
        pos = end + 4 + int(lines[0][len(b"Content-Length: "):])
        body = data[end + 4:pos]
        attachments = []
        for size in sizes:
            attachments.append(data[pos:pos + size])
            pos += size
        expect(pos <= len(data), "truncated frame")
        frames.append((header, body, attachments))
    return frames


def replies(stdout):
    """The reply objects on stdout, each with its attachments."""
    return [(json.loads(body), atts) for _, body, atts in parse_frames(stdout)]


def test_replay(root):
    """The recorded session with the original runner, byte for byte."""
    session = json.loads(CONTRACTS.read_text())["jsonrpc_runner_session"]
    bundle = make_bundle(root, session["bundle_files"])
    stdin = b"".join(r["bytes_utf8"].encode() for r in session["requests"])
    status, stdout, stderr = run_runner(bundle, stdin)
    expect(status == session["exit_code"], f"exit status {status}: {stderr[-500:]!r}")
    got = parse_frames(stdout)
    want = session["responses_in_order"]
    expect(len(got) == len(want), f"{len(got)} replies, expected {len(want)}")
    for (header, body, _), w in zip(got, want):
        expected = json.loads(w["body"])
        if "ready" in (expected.get("result") or {}):
            reply = json.loads(body)
            for key in ("ready", "bundle_digest"):
                expect(reply["result"][key] == expected["result"][key],
                       f"ready reply {body!r}")
            expect(reply["id"] == expected["id"], f"ready reply id {body!r}")
        else:
            expect(header == w["header"].encode(), f"header {header!r} != {w['header']!r}")
            expect(body == w["body"].encode(), f"body {body!r} != {w['body']!r}")


def test_warmexec1(root):
    """Attachments in execute replies and aggregate requests; model errors."""
    bundle = make_bundle(root, {"wire.py": W1_WIRE, "targets.py": W1_TARGETS})
    small = b"hello"
    sim_return = {"task_id": "t", "sim_root": "r", "outputs": {
        "a": {"size": 5, "checksum": "", "inline": {"$att": 1}, "cas_ref": None},
        "b": {"size": 70000, "checksum": "", "inline": {"$att": 0}, "cas_ref": None},
        "c": {"size": 2, "checksum": "", "inline": base64.b64encode(b"xy").decode(),
              "cas_ref": None}}, "error": None}
    agg = {"sim_returns": [sim_return], "target_data": {"obs": [1]}}
    stdin = b"".join([
        frame(request(1, "ready", W1_READY)),
        frame(request(2, "execute", {"entrypoint": "m.x/base", "params": {}, "seed": 1})),
        frame(request(3, "aggregate", {"target_entrypoint": "targets:check", **agg}),
              [MID, small]),
        frame(request(4, "aggregate", {"target_entrypoint": "targets.check/check", **agg}),
              [MID, small]),
        frame(request(5, "execute", {"entrypoint": "m.x/base", "params": {"mode": "raise"},
                                     "seed": 1})),
        frame(request(6, "aggregate", {"target_entrypoint": "targets.boom/boom",
                                       "sim_returns": []})),
        frame(request(7, "execute", {"entrypoint": "m.x/base", "params": {"mode": "oom"},
                                     "seed": 1})),
        frame(request(8, "execute", {"entrypoint": "m.x/base", "params": {"mode": "many"},
                                     "seed": 1})),
        frame(request(9, "shutdown")),
    ])
    status, stdout, stderr = run_runner(bundle, stdin)
    expect(status == 0, f"exit status {status}: {stderr[-500:]!r}")
    got = replies(stdout)
    expect([r["id"] for r, _ in got] == list(range(1, 10)), f"reply ids {[r['id'] for r, _ in got]}")

    ready = got[0][0]["result"]
    expect(ready["protocol"] == "warmexec/1" and ready["attachments"] is True
           and ready["bundle_digest"] == "test123" and ready["venv"] == "/nonexistent/venv",
           f"ready {ready}")

    result, atts = got[1][0]["result"], got[1][1]
    expect(result == {"empty": {"$att": 0}, "mid": {"$att": 1}, "big": {"$att": 2}},
           f"execute result {result}")
    expect(atts == [b"", MID, BIG], f"attachment sizes {[len(a) for a in atts]}")

    for reply, _ in got[2:4]:
        result = reply["result"]
        seen = {name: {"len": len(data), "sha": hashlib.sha256(data).hexdigest(), "b64": True}
                for name, data in (("a", small), ("b", MID), ("c", b"xy"))}
        expect(result == {"loss": 2.5, "diagnostics": {"seen": seen, "td": {"obs": [1]}},
                          "n_replicates": 1, "outputs": {}, "per_replicate_losses": [1.0, 4.0]},
               f"aggregate result {result}")

    for reply, code, kind, message in ((got[4][0], -32000, "ValueError", "bad alpha"),
                                       (got[5][0], -32001, "KeyError", "'no such column'"),
                                       (got[6][0], -32000, "MemoryError", "no room")):
        error = reply.get("error", {})
        data = error.get("data", {})
        expect(error.get("code") == code and error.get("message") == message
               and data.get("type") == kind and data.get("message") == message
               and data.get("traceback", "").startswith("Traceback"),
               f"model error {reply}")

    result, atts = got[7][0]["result"], got[7][1]
    expect(len(atts) == 1024 and atts[1023] == b"1023"
           and result["o0"] == {"$att": 0} and result["o1023"] == {"$att": 1023}
           and result["o1029"] == base64.b64encode(b"1029").decode(),
           "1030 artifacts: 1024 attachments then base64")


def test_stdout_protection(root):
    """Prints, fd 1 writes and child processes end up on stderr."""
    wire = """\
import os, subprocess
print("import-time noise")
def wire(entrypoint, params, seed):
    print("print noise")
    os.write(1, b"fd1 noise\\n")
    subprocess.run(["echo", "hi from child"], check=True)
    return {"ok": b"yes"}
"""
    bundle = make_bundle(root, {"wire.py": wire})
    stdin = frame(request(1, "ready")) + frame(request(
        2, "execute", {"entrypoint": "m.x/base", "params": {}, "seed": 3})) \
        + frame(request(3, "shutdown"))
    status, stdout, stderr = run_runner(bundle, stdin)
    expect(status == 0, f"exit status {status}: {stderr[-500:]!r}")
    got = replies(stdout)
    expect(len(got) == 3 and got[1][0]["result"] == {"ok": "eWVz"}, f"replies {got}")
    for text in (b"import-time noise", b"print noise", b"fd1 noise", b"hi from child"):
        expect(text in stderr, f"{text!r} not on stderr")


def test_discovery(root):
    """The manifest's wire wins over wire.py; no wire at all exits 1."""
    bundle = make_bundle(root, {
        ".modelops/manifest.json": '{"wire": "mypkg.entry:run"}',
        "mypkg/__init__.py": "",
        "mypkg/entry.py": "def run(entrypoint, params, seed):\n    return {'via': 'manifest'}\n",
        "wire.py": "def wire(entrypoint, params, seed):\n    return {'via': 'convention'}\n",
    })
    stdin = frame(request(1, "execute", {"entrypoint": "m.x/base", "params": {}, "seed": 1}))
    status, stdout, stderr = run_runner(bundle, stdin)
    expect(status == 0, f"exit status {status}: {stderr[-500:]!r}")
    got = replies(stdout)
    expect(got[0][0]["result"] == {"via": base64.b64encode(b"manifest").decode()},
           f"manifest wire: {got}")

    empty = make_bundle(root, {"README": "no wire here\n"})
    status, stdout, stderr = run_runner(empty, frame(request(1, "ready")))
    expect(status == 1 and stdout == b"", f"no wire: exit {status}, stdout {stdout!r}")
    expect(b"No wire specified" in stderr, f"no wire: stderr {stderr[-300:]!r}")


def test_framing(root):
    """A header line over 1024 bytes is fatal; a 70,000-char param round-trips."""
    bundle = make_bundle(root, {"wire.py": W1_WIRE})
    text = "\u00e9x" * 35000
    stdin = frame(request(1, "execute", {"entrypoint": "m.x/base",
                                         "params": {"mode": "echo", "text": text},
                                         "seed": 1}))
    stdin += b"Content-Length: 2\r\nX-Pad: " + b"a" * 1100 + b"\r\n\r\n{}"
    stdin += frame(request(2, "ready"))
    status, stdout, stderr = run_runner(bundle, stdin)
    expect(status == 1, f"over-long header line: exit {status}")
    expect(b"header line longer than 1024" in stderr, f"stderr {stderr[-300:]!r}")
    got = replies(stdout)
    expect(len(got) == 1, f"{len(got)} replies before the framing error")
    echo = base64.b64decode(got[0][0]["result"]["echo"]).decode()
    expect(echo == text, "70,000-char param did not round-trip")


def main():
    """Run every test; print a one-line summary."""
    tests = [test_replay, test_warmexec1, test_stdout_protection, test_discovery,
             test_framing]
    failures = []
    with tempfile.TemporaryDirectory(prefix="wx_pyrunner_") as root:
        for test in tests:
            try:
                test(root)
            except Failure as e:
                failures.append(f"{test.__name__}: {e}")
            except Exception:
                failures.append(f"{test.__name__}: {traceback.format_exc()}")
    for failure in failures:
        print("FAIL", failure)
    print(f"python_runner: {len(tests) - len(failures)}/{len(tests)} tests passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
