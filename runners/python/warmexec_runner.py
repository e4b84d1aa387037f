#!/usr/bin/env python3
"""warmexec worker runner for Python bundles (docs/protocol.md).

Serves JSON-RPC 2.0 over stdin/stdout exactly as the modelops
`subprocess_runner.py` does, so a ModelOps bundle runs unchanged, plus the
negotiated `warmexec/1` extension (artifacts as raw attachments, model
errors as JSON-RPC errors).  Standard library only.

    warmexec_runner.py --bundle-path DIR --bundle-digest D [--venv-path V]

The bundle's code runs with the interpreter that runs this file; nothing
is installed.  Before any bundle code is imported, the protocol moves to
private file descriptors: fd 1 then points at stderr and fd 0 at
/dev/null, so nothing the model prints or reads (from Python, C code or
child processes) can touch the protocol stream.
"""
import argparse
import base64
import importlib
import importlib.util
import json
import logging
import math
import numbers
import os
import sys
import tomllib
import traceback

MAX_LINE = 1024               # bytes in a header line, its newline included
MAX_HEADER_LINES = 16         # lines in a header block, the blank one included
MAX_FRAME = 1 << 30           # body plus attachments
MAX_ATTACHMENTS = 1024        # attachments in one frame
IOV_MAX = 1024                # buffers in one writev() call (Linux)
PROTOCOL = "warmexec/1"
MODEL_ERROR = -32000
AGGREGATION_ERROR = -32001

log = logging.getLogger("runner")


class FramingError(Exception):
    """A malformed header block: the stream cannot be resynchronised."""


class RpcError(Exception):
    """A JSON-RPC error reply."""

    def __init__(self, code, message, data=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


# ---------------------------------------------------------------- frames


def read_frame(stream):
    """Read one frame: (body, [attachment bytes, ...]).

    Returns None at end of input before a frame.  Raises FramingError for
    a malformed header block and EOFError for end of input inside a frame.
    """
    length, sizes = None, []
    for n in range(MAX_HEADER_LINES):
        line = stream.readline(MAX_LINE)
        if not line.endswith(b"\n"):
            if len(line) == MAX_LINE:
                raise FramingError(f"header line longer than {MAX_LINE} bytes")
            if not line and n == 0:
                return None
            raise EOFError("stdin closed inside a frame header")
        line = line[:-1].rstrip(b"\r")
        if not line:
            break
        name, colon, value = line.partition(b":")
        if not colon:
            raise FramingError(f"invalid header line {line[:40]!r}")
        name, value = name.strip(b" \t").lower(), value.strip(b" \t")
        if name == b"content-length":
            if not value.isdigit():
                raise FramingError(f"invalid Content-Length {value[:40]!r}")
            if length not in (None, int(value)):
                raise FramingError("conflicting Content-Length headers")
            length = int(value)
        elif name == b"attachments":
            items = [item.strip(b" \t") for item in value.split(b",")]
            if not all(item.isdigit() for item in items):
                raise FramingError(f"invalid Attachments header {value[:40]!r}")
            sizes += [int(item) for item in items]
    else:
        raise FramingError(f"header block longer than {MAX_HEADER_LINES} lines")
    if length is None:
        raise FramingError("missing Content-Length header")
    if len(sizes) > MAX_ATTACHMENTS:
        raise FramingError(f"more than {MAX_ATTACHMENTS} attachments")
    if length + sum(sizes) > MAX_FRAME:
        raise FramingError(f"frame larger than {MAX_FRAME} bytes")
    parts = [stream.read(size) for size in [length] + sizes]
    if any(len(part) != size for part, size in zip(parts, [length] + sizes)):
        raise EOFError("stdin closed inside a frame body")
    return parts[0], parts[1:]


def write_frame(fd, body, attachments=()):
    """Write `body` and its attachments as one frame to fd."""
    lines, line = [b"Content-Length: %d\r\n" % len(body)], b""
    for data in attachments:
        item = b"%d" % len(data)
        if line and len(line) + len(item) + 3 > MAX_LINE:
            lines.append(line + b"\r\n")
            line = b""
        line = line + b"," + item if line else b"Attachments: " + item
    if line:
        lines.append(line + b"\r\n")
    lines.append(b"\r\n")
    write_all(fd, [b"".join(lines), body, *attachments])


def write_all(fd, chunks):
    """writev() every chunk, retrying short writes."""
    pending = [memoryview(chunk) for chunk in chunks if len(chunk)]
    while pending:
        done = os.writev(fd, pending[:IOV_MAX])
        while pending and done >= len(pending[0]):
            done -= len(pending.pop(0))
        if done:
            pending[0] = pending[0][done:]


# ----------------------------------------------------------- wire loading


def discover_wire(bundle):
    """Find and load the bundle's wire function (first match wins).

    warmexec.json "wire", .modelops/manifest.json "wire",
    .modelops/modelops.toml [modelops] wire, then wire.py:wire.
    """
    sources = [
        ("warmexec.json", lambda text: json.loads(text).get("wire")),
        (".modelops/manifest.json", lambda text: json.loads(text).get("wire")),
        (".modelops/modelops.toml",
         lambda text: tomllib.loads(text)["modelops"]["wire"]),
    ]
    for name, read_spec in sources:
        path = os.path.join(bundle, name)
        if not os.path.exists(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                spec = read_spec(f.read())
        except Exception as e:
            log.warning("Ignoring unreadable %s: %s", path, e)
            continue
        if spec:
            log.info("Wire %s (from %s)", spec, name)
            return load_wire_spec(bundle, spec)
    if os.path.exists(os.path.join(bundle, "wire.py")):
        return load_wire_file(os.path.join(bundle, "wire.py"), "wire")
    raise RuntimeError("No wire specified: install an entry point, provide "
                       ".modelops manifest, or add wire.py")


def load_wire_spec(bundle, spec):
    """Load `module:func` or `path.py:func` (a path relative to the bundle)."""
    if ":" not in spec:
        raise RuntimeError(
            f"Invalid wire spec '{spec}', expected 'module.or/path.py:func'")
    module_name, func = spec.split(":", 1)
    if module_name.endswith(".py") or "/" in module_name:
        return load_wire_file(os.path.join(bundle, module_name), func)
    wire = getattr(importlib.import_module(module_name), func, None)
    if not callable(wire):
        raise RuntimeError(f"{spec} is not callable")
    return wire


def load_wire_file(path, func):
    """Load function `func` of the Python file at path (module bundle_wire)."""
    if not os.path.exists(path):
        raise RuntimeError(f"Wire file not found: {path}")
    spec = importlib.util.spec_from_file_location("bundle_wire", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bundle_wire"] = module
    spec.loader.exec_module(module)
    wire = getattr(module, func, None)
    if not callable(wire):
        raise RuntimeError(f"{path}:{func} is not callable")
    return wire


def resolve_evaluator(target_entrypoint):
    """The evaluator named by `import.path/name` (the original's rules) or
    `import.path:name` (attribute `name` of module `import.path`)."""
    if ":" in target_entrypoint and "/" not in target_entrypoint:
        module_name, name = target_entrypoint.split(":", 1)
        return getattr(importlib.import_module(module_name), name)
    import_path, name = target_entrypoint.rsplit("/", 1)
    parts = import_path.split(".")
    if parts[0] == "dummy" and len(parts) > 1:
        parts = parts[1:]
    if len(parts) == 1:
        return getattr(__import__(parts[0]), name)
    if len(parts) == 2:
        obj = getattr(__import__(parts[0], fromlist=[parts[1]]), parts[1])
        if hasattr(obj, "evaluate"):
            return obj.evaluate
        return obj if callable(obj) else getattr(obj, name)
    module = importlib.import_module(".".join(parts))
    if hasattr(module, name):
        return getattr(module, name)
    parent = importlib.import_module(".".join(parts[:-1]))
    return getattr(getattr(parent, parts[-1]), name)


# ------------------------------------------------------------- the model


def to_bytes(value):
    """An artifact's bytes: bytes kept, str as UTF-8, anything else as JSON."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return json.dumps(value).encode("utf-8")


def error_data(e):
    """The `data` of a warmexec/1 model error."""
    return {"type": type(e).__name__, "message": str(e),
            "traceback": traceback.format_exc()}


def attachment(attachments, ref):
    """The bytes that {"$att": i} stands for."""
    i = ref.get("$att")
    if not isinstance(i, int) or isinstance(i, bool) \
            or not 0 <= i < len(attachments):
        raise ValueError(f"invalid attachment reference {ref!r} "
                         f"({len(attachments)} attachments)")
    return attachments[i]


def with_data(sim_return, attachments):
    """A serialised SimReturn whose outputs carry "inline" as base64 (as the
    original) and "data" as the raw bytes (None when inline is null)."""
    outputs = {}
    for name, output in (sim_return.get("outputs") or {}).items():
        inline = output.get("inline")
        if isinstance(inline, dict):
            data = attachment(attachments, inline)
            inline = base64.b64encode(data).decode("ascii")
        else:
            data = None if inline is None else base64.b64decode(inline, validate=True)
        outputs[name] = {**output, "inline": inline, "data": data}
    return {**sim_return, "outputs": outputs}


def replicate_losses(values):
    """Check an evaluator's per_replicate_losses: a list of finite numbers,
    or None for a replicate without a loss (one that failed)."""
    if not isinstance(values, (list, tuple)) or not all(
            v is None or (isinstance(v, numbers.Real)
                          and not isinstance(v, bool) and math.isfinite(v))
            for v in values):
        raise ValueError("per_replicate_losses must be a list of finite "
                         "numbers or None")
    return [None if v is None else float(v) for v in values]


class SubprocessRunner:
    """The bundle behind the protocol.  Class and method names are the
    original's, so Python's TypeError for bad keyword arguments reads the
    same ("SubprocessRunner.execute() got an unexpected keyword ...")."""

    def __init__(self, bundle_path, bundle_digest, venv_path, wire):
        self.bundle_path = bundle_path
        self.bundle_digest = bundle_digest
        self.venv_path = venv_path
        self.wire = wire
        self.attachments_mode = False   # warmexec/1 negotiated
        self.request_attachments = []   # of the request being served

    def ready(self, params):
        """The handshake; warmexec/1 params switch attachment mode on."""
        if isinstance(params, dict) and params.get("protocol") == PROTOCOL \
                and params.get("attachments") is True:
            self.attachments_mode = True
        result = {
            "ready": True,
            "bundle_digest": self.bundle_digest,
            "python": sys.executable,
            "version": f"{sys.version_info.major}.{sys.version_info.minor}",
            "pid": os.getpid(),
            "venv": self.venv_path,
        }
        if self.attachments_mode:
            result.update(protocol=PROTOCOL, attachments=True)
        return result

    def _check_digest(self, bundle_digest):
        if bundle_digest and bundle_digest != self.bundle_digest:
            raise ValueError(f"Bundle digest mismatch: expected "
                             f"{self.bundle_digest}, got {bundle_digest}")

    def execute(self, entrypoint, params, seed, bundle_digest=None):
        """Run the wire: {name: bytes}.  A failure is the original's in-band
        {"error": JSON bytes}, or in warmexec/1 mode an RpcError -32000."""
        self._check_digest(bundle_digest)
        log.info("Executing %s (seed=%s)", entrypoint, seed)
        try:
            result = self.wire(entrypoint, params, seed)
            return {name: to_bytes(value) for name, value in result.items()}
        except Exception as e:
            log.exception("Execution failed")
            if self.attachments_mode:
                raise RpcError(MODEL_ERROR, str(e), error_data(e)) from e
            info = {"error": str(e), "type": type(e).__name__,
                    "entrypoint": entrypoint}
            return {"error": json.dumps(info).encode("utf-8")}

    def aggregate(self, target_entrypoint, sim_returns, target_data=None,
                  bundle_digest=None):
        """Run a target evaluator over replicate outputs.  A failure is the
        original's in-band error result, or in warmexec/1 mode an RpcError
        -32001."""
        self._check_digest(bundle_digest)
        log.info("Executing aggregation %s with %d results",
                 target_entrypoint, len(sim_returns))
        try:
            if sys.path[:1] != [self.bundle_path]:
                sys.path.insert(0, self.bundle_path)
            evaluator = resolve_evaluator(target_entrypoint)
            returns = [with_data(r, self.request_attachments)
                       for r in sim_returns]
            result = evaluator(returns, target_data)
            if not isinstance(result, dict):
                raise ValueError(
                    f"Target evaluator must return dict, got {type(result)}")
            if "loss" not in result:
                raise ValueError(
                    "Target evaluator must return 'loss' in result dict")
            loss = float(result["loss"])
            if not math.isfinite(loss):
                raise ValueError(f"Loss must be finite, got {loss}")
            log.info("Evaluator loss: %s", loss)
            reply = {"loss": loss,
                     "diagnostics": result.get("diagnostics", {}),
                     "n_replicates": len(sim_returns), "outputs": {}}
            if "per_replicate_losses" in result:
                reply["per_replicate_losses"] = replicate_losses(
                    result["per_replicate_losses"])
            return reply
        except Exception as e:
            log.exception("Aggregation failed")
            if self.attachments_mode:
                raise RpcError(AGGREGATION_ERROR, str(e), error_data(e)) from e
            return {"error": str(e), "type": type(e).__name__,
                    "target_entrypoint": target_entrypoint}

    def encode_artifacts(self, artifacts):
        """Artifacts as a reply carries them, with the reply's attachments:
        base64 strings, or in warmexec/1 mode {"$att": i} (base64 again
        beyond MAX_ATTACHMENTS)."""
        result, attachments = {}, []
        for name, data in artifacts.items():
            if self.attachments_mode and len(attachments) < MAX_ATTACHMENTS:
                result[name] = {"$att": len(attachments)}
                attachments.append(data)
            else:
                result[name] = base64.b64encode(data).decode("ascii")
        return result, attachments


# ------------------------------------------------------------ the server


def send(fd, req_id, member, attachments=()):
    """Reply to request `req_id` with {"result": ...} or {"error": ...};
    notifications (no id) get nothing."""
    if req_id is None:
        if "error" in member:
            log.error("JSON-RPC error (notification): %s", member["error"])
        return
    message = {"jsonrpc": "2.0", "id": req_id, **member}
    write_frame(fd, json.dumps(message, separators=(",", ":")).encode("utf-8"),
                attachments)


def send_error(fd, req_id, code, message, data=None):
    """Reply with a JSON-RPC error (`data` omitted when None)."""
    error = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    send(fd, req_id, {"error": error})


def handle(runner, msg, attachments, fd):
    """Serve one request; True when the runner should stop (shutdown)."""
    method = msg.get("method")
    params = msg.get("params", {}) or {}
    req_id = msg.get("id")
    try:
        reply_attachments = []
        if method == "ready":
            result = runner.ready(params)
        elif method in ("execute", "aggregate"):
            if not isinstance(params, dict):
                raise RpcError(-32602, "Invalid params (expected object)")
            if method == "execute":
                result, reply_attachments = runner.encode_artifacts(
                    runner.execute(**params))
            else:
                runner.request_attachments = attachments
                result = runner.aggregate(**params)
        elif method == "shutdown":
            result = {"ok": True}
            log.info("Shutdown requested")
        else:
            raise RpcError(-32601, f"Method not found: {method}")
        send(fd, req_id, {"result": result}, reply_attachments)
    except RpcError as e:
        send_error(fd, req_id, e.code, e.message, e.data)
    except Exception as e:
        log.exception("Unhandled error in server loop")
        send_error(fd, req_id, -32603, "Internal error", str(e))
    return method == "shutdown"


def serve(runner, stream, fd):
    """Answer requests from stream until end of input or shutdown."""
    log.info("JSON-RPC server started")
    while True:
        try:
            frame = read_frame(stream)
        except EOFError as e:
            log.warning("%s; exiting", e)
            return
        if frame is None:
            log.info("stdin closed; exiting")
            return
        body, attachments = frame
        try:
            msg = json.loads(body.decode("utf-8"))
        except ValueError as e:
            log.error("Invalid JSON (no reply): %s", e)
            continue
        if not isinstance(msg, dict):
            log.error("Message must be an object (no reply)")
            continue
        if handle(runner, msg, attachments, fd):
            return


def protect_stdio():
    """Move the protocol to private descriptors; returns (in_fd, out_fd).

    Afterwards fd 1 is a copy of fd 2 and fd 0 reads /dev/null, so prints,
    os.write(1, ...), C code and child processes cannot corrupt frames."""
    sys.stdout.flush()
    in_fd, out_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return in_fd, out_fd


def main():
    # Bundle code is imported from the read-only bundle store: no
    # __pycache__ may be written into it (it would change the bundle).
    sys.dont_write_bytecode = True
    """Start up (exit 1 if the wire cannot be loaded), then serve."""
    in_fd, out_fd = protect_stdio()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s - %(levelname)s - %(message)s")
    parser = argparse.ArgumentParser(description="warmexec Python runner")
    parser.add_argument("--bundle-path", required=True)
    parser.add_argument("--bundle-digest", required=True)
    parser.add_argument("--venv-path", help="reported in `ready` only")
    args = parser.parse_args()
    bundle = os.path.abspath(args.bundle_path)
    log.info("Setting up bundle %s", args.bundle_digest[:12])
    log.info("Interpreter: %s", sys.executable)
    try:
        sys.path.insert(0, bundle)
        wire = discover_wire(bundle)
    except Exception:
        log.exception("Failed to initialize runner")
        return 1
    runner = SubprocessRunner(bundle, args.bundle_digest, args.venv_path, wire)
    try:
        with open(in_fd, "rb") as stream:
            serve(runner, stream, out_fd)
    except FramingError as e:
        log.error("Framing error, cannot resynchronise: %s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
