"""TF-Serving's REST API (``/v1/models/<name>[...]:predict``, status,
metadata) with bounds (issue 12 §4; docs/serving.md "Bounds"):

- a fixed pool of worker threads; idle connections wait in a selector, not
  in a thread, and are closed after ``read_timeout_s``; over
  ``max_connections`` open connections a new one gets 503 at once;
- a listen backlog of :data:`LISTEN_BACKLOG`;
- the whole request (line, headers, body) must arrive within
  ``read_timeout_s`` (else 408); one request per connection;
- ``Content-Length`` required (411), a valid non-negative integer (400), at
  most ``max_body_bytes`` (413); JSON that does not parse (deep nesting, huge
  integer literals included) -> 400; shapes and the batch size are checked
  from the JSON structure before any array is built.
"""

from __future__ import annotations

import base64
import concurrent.futures
import http.server
import io
import json
import logging
import re
import selectors
import socket
import threading
import time

import numpy as np

from export.serving.core import PredictionCore
from export.serving.grpc_service import signature_def_map
from export.serving.signatures import DEFAULT_SIGNATURE, ServingError

log = logging.getLogger("export.serve")

LISTEN_BACKLOG = 1024
_BUSY = b'{"error": "too many open connections (--max_pending); retry later"}'
_LINGER_S, _LINGER_BYTES = 1.0, 1 << 20  # drain after answering, so the answer is not reset
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 413, "UNAVAILABLE": 503, "INTERNAL": 500}
_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?(?P<rest>/metadata|:predict)?$")


class HttpError(Exception):
    """An HTTP-level refusal (status other than a gRPC code's)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# ----------------------------------------------------------------------------- JSON <-> numpy


def json_shape(value) -> tuple:
    """The shape a nested JSON list claims (walking first elements only)."""
    shape = []
    while isinstance(value, list):
        shape.append(len(value))
        value = value[0] if value else None
    return tuple(shape)


def from_json_value(value, spec, name):
    """A JSON (nested list / {"b64": ...}) value -> numpy array of spec's dtype."""
    import tensorflow as tf

    shape = json_shape(value)
    if spec.dtype == tf.string:

        def conv(v):
            if isinstance(v, dict):
                if set(v) != {"b64"} or not isinstance(v["b64"], str):
                    raise ServingError("INVALID_ARGUMENT", f"input {name!r}: binary values must be {{\"b64\": \"...\"}}")
                try:
                    return base64.b64decode(v["b64"], validate=True)
                except ValueError:
                    raise ServingError("INVALID_ARGUMENT", f"input {name!r}: invalid base64") from None
            if isinstance(v, str):
                return v.encode("utf-8")
            if isinstance(v, list):
                return [conv(x) for x in v]
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: expected strings, got {type(v).__name__}")

        arr = np.empty(shape, dtype=object)
        try:
            arr[...] = conv(value)
        except ValueError:
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: ragged nested lists") from None
        return arr
    try:
        arr = np.asarray(value)
    except ValueError:
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: ragged nested lists") from None
    if arr.shape != shape:
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: ragged nested lists")
    if arr.dtype == object or arr.dtype.kind not in "iufb":
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: expects {spec.dtype.name} numbers, got non-numeric JSON (or integers beyond 64 bits)")
    want = np.dtype(spec.dtype.as_numpy_dtype)
    if want.kind in "iu":
        if arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: expects {want} integers, got fractional values")
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: values outside the {want} range {info.min}..{info.max}")
    return arr.astype(want)


def to_json(value):
    """numpy output -> JSON; strings as text (TF-Serving's REST does the same)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    arr = np.asarray(value)
    if arr.dtype == object:
        return [to_json(a) for a in arr] if arr.ndim else to_json(arr.item())
    return arr.tolist()


def parse_json_body(body: bytes):
    try:
        req = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # ValueError: JSON errors, int digit limit
        raise ServingError("INVALID_ARGUMENT", f"JSON parse error: {str(e)[:200]}") from None
    if not isinstance(req, dict):
        raise ServingError("INVALID_ARGUMENT", "request body must be a JSON object")
    return req


def predict(core: PredictionCore, served, req: dict) -> dict:
    """A parsed ``:predict`` body (row "instances" or columnar "inputs") -> response."""
    sig_name = req.get("signature_name") or DEFAULT_SIGNATURE
    if not isinstance(sig_name, str):
        raise ServingError("INVALID_ARGUMENT", "'signature_name' must be a string")
    sig = core.signature(served, sig_name)
    if ("instances" in req) == ("inputs" in req):
        raise ServingError("INVALID_ARGUMENT", "request must contain exactly one of 'instances' or 'inputs'")
    names = sorted(sig.inputs)
    if "instances" in req:
        inst = req["instances"]
        if not isinstance(inst, list):
            raise ServingError("INVALID_ARGUMENT", "'instances' must be a list")
        if len(names) == 1 and not (inst and isinstance(inst[0], dict) and set(inst[0]) == set(names)):
            raw = {names[0]: inst}
        else:
            if not all(isinstance(i, dict) for i in inst):
                raise ServingError("INVALID_ARGUMENT", f"each instance must be an object with keys {names}")
            raw = {k: [i.get(k) for i in inst] for k in {k for i in inst for k in i}}
        row = True
    else:
        raw = req["inputs"]
        if not isinstance(raw, dict):
            if len(names) != 1:
                raise ServingError("INVALID_ARGUMENT", f"'inputs' must be an object with keys {names}")
            raw = {names[0]: raw}
        row = False
    arrays = {}
    for k, v in raw.items():
        if k not in sig.inputs:
            raise ServingError("INVALID_ARGUMENT", f"unknown input {k!r} (signature {sig_name!r} takes {names})")
        core.check_shape(k, sig.inputs[k], json_shape(v))  # before building any array
        arrays[k] = from_json_value(v, sig.inputs[k], k)
    output_filter = req.get("output_filter") or []
    if not isinstance(output_filter, list) or not all(isinstance(o, str) for o in output_filter):
        raise ServingError("INVALID_ARGUMENT", "'output_filter' must be a list of output names")
    outputs = core.run(served, sig, arrays, output_filter)
    if not row:
        if len(outputs) == 1:
            return {"outputs": to_json(next(iter(outputs.values())))}
        return {"outputs": {k: to_json(v) for k, v in outputs.items()}}
    if len(outputs) == 1:
        return {"predictions": to_json(next(iter(outputs.values())))}
    n = len(next(iter(outputs.values())))
    return {"predictions": [{k: to_json(v[i]) for k, v in outputs.items()} for i in range(n)]}


# ----------------------------------------------------------------------------- HTTP


class _DeadlineReader(io.RawIOBase):
    """A socket reader that fails with TimeoutError once `deadline` passed."""

    def __init__(self, sock: socket.socket, deadline: float):
        self.sock, self.deadline = sock, deadline

    def readable(self):
        return True

    def readinto(self, buf):
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request not received within the read timeout")
        self.sock.settimeout(remaining)
        return self.sock.recv_into(buf)


def make_handler(core: PredictionCore, max_body_bytes: int, read_timeout_s: float):
    """The request handler class: one request per connection."""
    from google.protobuf import json_format

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "keras-hpnet-serve"
        disable_nagle_algorithm = True  # headers and body are two writes

        def setup(self):
            super().setup()
            self.rfile.close()  # the socket stays open; read through the deadline instead
            self.rfile = io.BufferedReader(_DeadlineReader(self.connection, time.monotonic() + read_timeout_s))

        def log_message(self, fmt, *args):
            log.debug("rest %s " + fmt, self.address_string(), *args)

        def _send(self, status: int, body: dict):
            data = json.dumps(body).encode("utf-8")
            self.connection.settimeout(read_timeout_s)  # the reader left the remaining read time
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")  # also sets close_connection
            self.end_headers()
            self.wfile.write(data)

        def _route(self):
            m = _PATH.match(self.path.split("?")[0])
            if not m:
                raise ServingError("NOT_FOUND", f"Malformed request: {self.command} {self.path}")
            version = int(m["version"]) if m["version"] else None
            return m, (m["name"], version, m["label"] or "")

        def _handle(self, fn):
            try:
                self._send(200, fn())
            except HttpError as e:
                self._send(e.status, {"error": e.message})
            except ServingError as e:
                self._send(HTTP_STATUS.get(e.code, 500), {"error": e.message})
            except TimeoutError:
                self._send(408, {"error": f"request not received within {read_timeout_s:g}s"})
            except RecursionError:
                self._send(400, {"error": "request nested too deeply"})
            except Exception as e:
                log.exception("internal error")
                self._send(500, {"error": f"{type(e).__name__}: {e}"})

        def do_GET(self):
            def get():
                m, spec = self._route()
                served = core.store.resolve(*spec)
                if m["rest"] == ":predict":
                    raise ServingError("INVALID_ARGUMENT", ":predict needs POST")
                if m["rest"] == "/metadata":
                    return {
                        "model_spec": {"name": core.store.name, "signature_name": "", "version": str(served.version)},
                        "metadata": {"signature_def": json_format.MessageToDict(signature_def_map(served), preserving_proto_field_name=True)},
                    }
                return {
                    "model_version_status": [
                        {"version": str(served.version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                    ]
                }

            self._handle(get)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding"):
                raise HttpError(411, "chunked request bodies are not supported: send Content-Length")
            value = self.headers.get("Content-Length")
            if value is None:
                raise HttpError(411, "Content-Length header required")
            if not value.strip().isdigit():
                raise HttpError(400, f"Content-Length {value!r}: not a non-negative integer")
            length = int(value)
            if length > max_body_bytes:
                raise HttpError(413, f"request body of {length} bytes exceeds {max_body_bytes} (--rest_max_body_mb)")
            body = self.rfile.read(length)
            if len(body) != length:
                raise HttpError(400, f"request body ended after {len(body)} of {length} bytes")
            return body

        def do_POST(self):
            def post():
                body = self._read_body()
                m, spec = self._route()
                if m["rest"] != ":predict":
                    raise ServingError("NOT_FOUND", f"Malformed request: POST {self.path}")
                req = parse_json_body(body)
                with core.store.lease(*spec) as served:
                    return predict(core, served, req)

            self._handle(post)

    return Handler


def _linger(conn) -> None:
    """Half-close, then read what the client still sends (a body refused
    unread) until it closes: closing with unread data would reset the
    connection and could destroy the answer before the client reads it."""
    try:
        conn.shutdown(socket.SHUT_WR)
        deadline, drained = time.monotonic() + _LINGER_S, 0
        while drained < _LINGER_BYTES and (remaining := deadline - time.monotonic()) > 0:
            conn.settimeout(remaining)
            chunk = conn.recv(65536)
            if not chunk:
                return
            drained += len(chunk)
    except OSError:
        pass


class BoundedHTTPServer:
    """An HTTP server with a fixed worker pool (see the module docstring).

    A selector thread accepts connections and waits until a request starts
    to arrive; only then does a worker take the connection.
    """

    def __init__(self, address, handler_class, *, workers: int = 8, max_connections: int = 256,
                 read_timeout_s: float = 30.0, backlog: int = LISTEN_BACKLOG):
        self.handler_class = handler_class
        self.max_connections = max_connections
        self.read_timeout_s = read_timeout_s
        self.socket = socket.create_server(address, backlog=backlog)
        self.socket.setblocking(False)
        self.server_address = self.socket.getsockname()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.socket, selectors.EVENT_READ)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rest")
        self._idle: dict = {}  # socket -> (address, accepted at), waiting for a request
        self._refused: dict = {}  # the same, over max_connections: to answer 503
        self._open = 0  # accepted and not yet closed
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stopped = threading.Event()

    def serve_forever(self) -> None:
        try:
            while not self._stop.is_set():
                for key, _ in self._selector.select(timeout=0.5):
                    if key.fileobj is self.socket:
                        self._accept()
                    elif key.fileobj is self._wake_r:
                        self._wake_r.recv(64)
                    elif key.fileobj in self._refused:
                        self._selector.unregister(key.fileobj)
                        del self._refused[key.fileobj]
                        self._refuse(key.fileobj)
                    else:
                        self._selector.unregister(key.fileobj)
                        address, _ = self._idle.pop(key.fileobj)
                        self._pool.submit(self._serve_connection, key.fileobj, address)
                self._close_idle(time.monotonic() - self.read_timeout_s)
        finally:
            self._stopped.set()

    def _accept(self) -> None:
        while True:
            try:
                conn, address = self.socket.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. EMFILE: leave it in the backlog
                log.warning("rest: accept failed: %s", e)
                return
            with self._lock:
                full = self._open >= self.max_connections
                if not full:
                    self._open += 1
            conn.setblocking(False)
            if full and len(self._refused) >= self.max_connections:
                conn.close()  # far over the cap: drop
                continue
            # Over the cap: answered 503 once its request arrived (closing
            # with the request unread would reset the connection).
            (self._refused if full else self._idle)[conn] = (address, time.monotonic())
            self._selector.register(conn, selectors.EVENT_READ)

    def _refuse(self, conn) -> None:
        try:
            conn.recv(65536)
            conn.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                      b"Connection: close\r\n\r\n%s" % (len(_BUSY), _BUSY))
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        conn.close()

    def _close_idle(self, before: float) -> None:
        for conn in [c for c, (_, t) in self._idle.items() if t < before]:
            self._selector.unregister(conn)
            del self._idle[conn]
            self._close(conn)
        for conn in [c for c, (_, t) in self._refused.items() if t < before]:
            self._selector.unregister(conn)
            del self._refused[conn]
            conn.close()

    def _close(self, conn) -> None:
        try:
            conn.close()
        finally:
            with self._lock:
                self._open -= 1

    def _serve_connection(self, conn, address) -> None:
        try:
            conn.setblocking(True)
            conn.settimeout(self.read_timeout_s)
            self.handler_class(conn, address, self)
        except Exception:
            log.exception("rest: connection from %s failed", address)
        finally:
            _linger(conn)
            self._close(conn)

    @property
    def open_connections(self) -> int:
        return self._open

    def shutdown(self) -> None:
        """Stop accepting; finish the requests being served."""
        self._stop.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._stopped.wait(timeout=10)
        self._pool.shutdown(wait=True)

    def server_close(self) -> None:
        for conn in list(self._idle):
            self._close(conn)
        for conn in list(self._refused):
            conn.close()
        self._idle.clear()
        self._refused.clear()
        self._selector.close()
        self.socket.close()
        self._wake_r.close()
        self._wake_w.close()
