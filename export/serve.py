"""A development model server speaking TF-Serving's PredictionService.

    python -m export.serve --model_base_path models/hacnn [--port 8500] [--rest_port 8501]

Serves the newest integer version under ``--model_base_path`` (the directory
layout TF-Serving watches, written by ``export.saved_model``), and switches to
a newer version as soon as one appears (polling; no restart). gRPC:
PredictionService ``Predict`` and ``GetModelMetadata`` and ModelService
``GetModelStatus``, so the official ``tensorflow-serving-api`` stubs work
unchanged; optionally TF-Serving's REST API (``:predict``, status, metadata).

Requests are validated before they reach TensorFlow: wrong dtype, rank or
size, an empty or oversized batch, undecodable image bytes -> INVALID_ARGUMENT;
an unknown model, version or signature -> NOT_FOUND. Binds 127.0.0.1 unless
told otherwise; stops gracefully on SIGTERM/SIGINT. For production use the
real TF-Serving (docs/serving.md).
"""

from __future__ import annotations

import base64
import concurrent.futures
import dataclasses
import http.server
import json
import logging
import os
import re
import signal
import threading
import time

import numpy as np

log = logging.getLogger("export.serve")

DEFAULT_SIGNATURE = "serving_default"
INIT_OP_SIGNATURE = "__saved_model_init_op"
HTTP_STATUS = {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "RESOURCE_EXHAUSTED": 413, "UNAVAILABLE": 503, "INTERNAL": 500}


class ServingError(Exception):
    """A request the server refuses; `code` is a grpc.StatusCode name."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclasses.dataclass
class _Signature:
    fn: object  # concrete function
    inputs: dict  # name -> tf.TensorSpec
    outputs: list  # output names


@dataclasses.dataclass
class ServedVersion:
    version: int
    path: str
    loaded: object  # tf.saved_model.load result (kept alive)
    signatures: dict  # name -> _Signature
    signature_defs: dict  # name -> meta_graph_pb2.SignatureDef


def _load_version(path: str, version: int) -> ServedVersion:
    import tensorflow as tf
    from tensorflow.core.protobuf import saved_model_pb2

    loaded = tf.saved_model.load(path)
    pb = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        pb.ParseFromString(f.read())
    defs = {k: v for k, v in pb.meta_graphs[0].signature_def.items() if k != INIT_OP_SIGNATURE}
    sigs = {}
    for name, fn in loaded.signatures.items():
        _, kwargs = fn.structured_input_signature
        sigs[name] = _Signature(fn=fn, inputs=dict(kwargs), outputs=sorted(fn.structured_outputs))
    return ServedVersion(version=version, path=path, loaded=loaded, signatures=sigs, signature_defs=defs)


def _versions(base: str) -> list[int]:
    try:
        names = os.listdir(base)
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(base, n)))


class ModelStore:
    """The servable: newest loadable version under `model_base_path`, polled."""

    def __init__(self, model_base_path: str, model_name: str, poll_interval_s: float = 1.0):
        self.base = model_base_path
        self.name = model_name
        self.poll_interval_s = poll_interval_s
        self._current: ServedVersion | None = None
        self._failed: dict[int, float] = {}  # version -> saved_model.pb mtime that failed
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> ServedVersion | None:
        return self._current

    def refresh(self) -> None:
        """Load the newest version if it is not the one served (errors are logged)."""
        with self._lock:
            for v in reversed(_versions(self.base)):
                cur = self._current
                if cur is not None and cur.version == v:
                    return
                path = os.path.join(self.base, str(v))
                try:
                    mtime = os.path.getmtime(os.path.join(path, "saved_model.pb"))
                except OSError:
                    continue  # not a SavedModel (yet)
                if self._failed.get(v) == mtime:
                    continue
                try:
                    t0 = time.perf_counter()
                    served = _load_version(path, v)
                except Exception as e:  # a broken version must not stop the server
                    self._failed[v] = mtime
                    log.error("model %s version %d at %s failed to load: %s", self.name, v, path, e)
                    continue
                self._current = served
                log.info("serving model %s version %d (loaded in %.2fs)", self.name, v, time.perf_counter() - t0)
                return

    def start_polling(self) -> None:
        def loop():
            while not self._stop.wait(self.poll_interval_s):
                try:
                    self.refresh()
                except Exception:  # never let the poller die
                    log.exception("polling %s failed", self.base)

        self._thread = threading.Thread(target=loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def resolve(self, name: str, version: int | None = None, label: str = "") -> ServedVersion:
        if name != self.name:
            raise ServingError("NOT_FOUND", f"Servable not found for request: model {name!r} (this server serves {self.name!r})")
        cur = self._current
        if cur is None:
            raise ServingError("NOT_FOUND", f"Servable not found for request: model {name!r} has no loaded version under {self.base}")
        if label:
            raise ServingError("NOT_FOUND", f"Unknown version label {label!r} for model {name!r} (labels are not configured)")
        if version is not None and version != cur.version:
            raise ServingError("NOT_FOUND", f"Servable not found for request: model {name!r} version {version} (serving version {cur.version})")
        return cur


def _dtype_name(dtype) -> str:
    return "string" if dtype == object or getattr(dtype, "kind", "") in "SO" else str(np.dtype(dtype))


class PredictionCore:
    """Validation and execution shared by the gRPC and REST front ends."""

    def __init__(self, store: ModelStore, max_batch_size: int = 256, max_image_bytes: int = 16 << 20):
        self.store = store
        self.max_batch_size = max_batch_size
        self.max_image_bytes = max_image_bytes

    def signature(self, served: ServedVersion, signature_name: str) -> _Signature:
        sig = served.signatures.get(signature_name or DEFAULT_SIGNATURE)
        if sig is None:
            raise ServingError(
                "NOT_FOUND",
                f"Serving signature name: {signature_name!r} not found in signature def "
                f"(available: {', '.join(sorted(served.signatures))})",
            )
        return sig

    def check_names(self, sig: _Signature, names) -> None:
        missing = sorted(set(sig.inputs) - set(names))
        extra = sorted(set(names) - set(sig.inputs))
        if missing or extra:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"inputs must be exactly {sorted(sig.inputs)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unknown {extra}" if extra else ""),
            )

    def check_shape(self, name: str, spec, shape: tuple) -> None:
        """Rank, fixed dims and batch size of input `name` against its spec."""
        want = spec.shape.as_list()
        if len(shape) != len(want):
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: expected rank {len(want)} {want}, got shape {list(shape)}")
        for i, (got, exp) in enumerate(zip(shape, want)):
            if exp is not None and got != exp:
                raise ServingError("INVALID_ARGUMENT", f"input {name!r}: dimension {i} must be {exp}, got shape {list(shape)}")
        if want and want[0] is None:
            if shape[0] == 0:
                raise ServingError("INVALID_ARGUMENT", f"input {name!r}: empty batch")
            if shape[0] > self.max_batch_size:
                raise ServingError(
                    "INVALID_ARGUMENT", f"input {name!r}: batch of {shape[0]} exceeds the maximum {self.max_batch_size}"
                )

    def check_dtype(self, name: str, spec, dtype_name: str) -> None:
        want = spec.dtype.name
        if dtype_name != want:
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: expects {want} but {dtype_name} was provided")

    def run(self, served: ServedVersion, sig: _Signature, arrays: dict, output_filter=()) -> dict:
        """Check `arrays` (name -> numpy) against `sig` and run it -> name -> numpy."""
        import tensorflow as tf

        self.check_names(sig, arrays)
        batch = set()
        feeds = {}
        for name, arr in arrays.items():
            spec = sig.inputs[name]
            self.check_dtype(name, spec, _dtype_name(arr.dtype))
            self.check_shape(name, spec, arr.shape)
            if spec.shape.rank:
                batch.add(arr.shape[0])
            if spec.dtype == tf.string:
                for i, b in enumerate(arr.reshape(-1)):
                    if not isinstance(b, bytes) or not b:
                        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: element {i} is empty or not bytes")
                    if len(b) > self.max_image_bytes:
                        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: element {i} is {len(b)} bytes (max {self.max_image_bytes})")
            feeds[name] = tf.constant(arr, dtype=spec.dtype)
        if len(batch) > 1:
            raise ServingError("INVALID_ARGUMENT", f"inputs disagree on the batch size: {sorted(batch)}")
        unknown = sorted(set(output_filter) - set(sig.outputs))
        if unknown:
            raise ServingError("INVALID_ARGUMENT", f"output_filter: unknown output(s) {unknown} (have {sig.outputs})")
        try:
            out = sig.fn(**feeds)
        except tf.errors.InvalidArgumentError as e:
            msg = (e.message or str(e)).strip().splitlines()[0]
            raise ServingError("INVALID_ARGUMENT", f"the model rejected the input: {msg}") from None
        except tf.errors.OpError as e:
            raise ServingError("INTERNAL", f"model execution failed: {e.message.splitlines()[0]}") from None
        keep = set(output_filter) or set(out)
        return {k: v.numpy() for k, v in out.items() if k in keep}


# ----------------------------------------------------------------------------- gRPC


def _grpc_servicers(core: PredictionCore):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    def guarded(method):
        def wrapper(self, request, context):
            try:
                return method(self, request, context)
            except ServingError as e:
                context.abort(getattr(grpc.StatusCode, e.code), e.message)
            except Exception as e:  # keep serving; report, don't crash
                log.exception("internal error")
                context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

        return wrapper

    def spec_of(request):
        ms = request.model_spec
        version = ms.version.value if ms.HasField("version") else None
        return core.store.resolve(ms.name, version, ms.version_label)

    def to_array(name, proto, spec):
        # Validate dtype and shape from the proto BEFORE materialising it (a
        # tiny proto can claim a huge shape).
        try:
            dtype_name = tf.dtypes.as_dtype(proto.dtype).name
        except TypeError:
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: unsupported dtype enum {proto.dtype}") from None
        core.check_dtype(name, spec, dtype_name)
        if proto.tensor_shape.unknown_rank:
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: tensor shape is missing")
        shape = tuple(d.size for d in proto.tensor_shape.dim)
        if any(s < 0 for s in shape):
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: negative dimension in shape {list(shape)}")
        core.check_shape(name, spec, shape)
        try:
            arr = tf.make_ndarray(proto)
        except Exception as e:
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: malformed TensorProto ({e})") from None
        if arr.shape != shape:
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: content does not match shape {list(shape)}")
        return arr

    class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        @guarded
        def Predict(self, request, context):
            served = spec_of(request)
            sig_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
            sig = core.signature(served, sig_name)
            core.check_names(sig, request.inputs.keys())
            arrays = {name: to_array(name, proto, sig.inputs[name]) for name, proto in request.inputs.items()}
            outputs = core.run(served, sig, arrays, list(request.output_filter))
            resp = predict_pb2.PredictResponse()
            resp.model_spec.name = core.store.name
            resp.model_spec.version.value = served.version
            resp.model_spec.signature_name = sig_name
            for k, v in outputs.items():
                resp.outputs[k].CopyFrom(tf.make_tensor_proto(v))
            return resp

        @guarded
        def GetModelMetadata(self, request, context):
            fields = list(request.metadata_field)
            if not fields:
                raise ServingError("INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one metadata_field")
            bad = [f for f in fields if f != "signature_def"]
            if bad:
                raise ServingError("INVALID_ARGUMENT", f"Metadata field {bad[0]} is not supported")
            served = spec_of(request)
            resp = get_model_metadata_pb2.GetModelMetadataResponse()
            resp.model_spec.name = core.store.name
            resp.model_spec.version.value = served.version
            defs = get_model_metadata_pb2.SignatureDefMap()
            for k, v in served.signature_defs.items():
                defs.signature_def[k].CopyFrom(v)
            resp.metadata["signature_def"].Pack(defs)
            return resp

    class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
        @guarded
        def GetModelStatus(self, request, context):
            served = spec_of(request)
            resp = get_model_status_pb2.GetModelStatusResponse()
            st = resp.model_version_status.add()
            st.version = served.version
            st.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            return resp

    return PredictionServicer(), ModelServicer(), prediction_service_pb2_grpc, model_service_pb2_grpc


# ----------------------------------------------------------------------------- REST

_REST_PATH = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?(?P<rest>/metadata|:predict)?$")


def _from_json_value(value, spec, name):
    """A JSON (nested list / {"b64": ...}) value -> numpy array of spec's dtype."""
    import tensorflow as tf

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

        values = conv(value)
        arr = np.empty(_shape_of(values, name), dtype=object)
        arr[...] = values
        return arr
    try:
        arr = np.asarray(value)
    except ValueError:
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: ragged nested lists") from None
    if arr.dtype == object or arr.dtype.kind not in "iufb":
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: expects {spec.dtype.name} numbers, got non-numeric JSON")
    want = np.dtype(spec.dtype.as_numpy_dtype)
    if want.kind in "iu":
        if arr.dtype.kind == "f" and not np.all(np.mod(arr, 1) == 0):
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: expects {want} integers, got fractional values")
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise ServingError("INVALID_ARGUMENT", f"input {name!r}: values outside the {want} range {info.min}..{info.max}")
    return arr.astype(want)


def _shape_of(values, name):
    shape = []
    v = values
    while isinstance(v, list):
        shape.append(len(v))
        v = v[0] if v else None
    try:
        np.empty(shape, dtype=object)[...] = values
    except ValueError:
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: ragged nested lists") from None
    return tuple(shape)


def _to_json(value):
    """numpy output -> JSON; strings as text (TF-Serving's REST does the same)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    arr = np.asarray(value)
    if arr.dtype == object:
        return [_to_json(a) for a in arr] if arr.ndim else _to_json(arr.item())
    return arr.tolist()


def _make_rest_handler(core: PredictionCore, max_body_bytes: int):
    from google.protobuf import json_format
    from tensorflow_serving.apis import get_model_metadata_pb2

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "keras-hpnet-serve"

        def log_message(self, fmt, *args):
            log.debug("rest %s " + fmt, self.address_string(), *args)

        def _send(self, status: int, body: dict):
            data = json.dumps(body).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self):
            m = _REST_PATH.match(self.path.split("?")[0])
            if not m:
                raise ServingError("NOT_FOUND", f"Malformed request: {self.command} {self.path}")
            version = int(m["version"]) if m["version"] else None
            return m, core.store.resolve(m["name"], version, m["label"] or "")

        def _handle(self, fn):
            try:
                self._send(200, fn())
            except ServingError as e:
                self._send(HTTP_STATUS.get(e.code, 500), {"error": e.message})
            except Exception as e:
                log.exception("internal error")
                self._send(500, {"error": f"{type(e).__name__}: {e}"})

        def do_GET(self):
            def get():
                m, served = self._route()
                if m["rest"] == ":predict":
                    raise ServingError("INVALID_ARGUMENT", ":predict needs POST")
                if m["rest"] == "/metadata":
                    defs = get_model_metadata_pb2.SignatureDefMap()
                    for k, v in served.signature_defs.items():
                        defs.signature_def[k].CopyFrom(v)
                    return {
                        "model_spec": {"name": core.store.name, "signature_name": "", "version": str(served.version)},
                        "metadata": {"signature_def": json_format.MessageToDict(defs, preserving_proto_field_name=True)},
                    }
                return {
                    "model_version_status": [
                        {"version": str(served.version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
                    ]
                }

            self._handle(get)

        def do_POST(self):
            def post():
                try:
                    length = int(self.headers.get("Content-Length", ""))
                except ValueError:
                    raise ServingError("INVALID_ARGUMENT", "Content-Length header required") from None
                if length > max_body_bytes:
                    self.close_connection = True
                    raise ServingError("RESOURCE_EXHAUSTED", f"request body of {length} bytes exceeds {max_body_bytes}")
                body = self.rfile.read(length)
                m, served = self._route()
                if m["rest"] != ":predict":
                    raise ServingError("NOT_FOUND", f"Malformed request: POST {self.path}")
                try:
                    req = json.loads(body)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    raise ServingError("INVALID_ARGUMENT", f"JSON parse error: {e}") from None
                if not isinstance(req, dict):
                    raise ServingError("INVALID_ARGUMENT", "request body must be a JSON object")
                return self._predict(served, req)

            self._handle(post)

        def _predict(self, served, req):
            sig_name = req.get("signature_name") or DEFAULT_SIGNATURE
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
                arrays[k] = _from_json_value(v, sig.inputs[k], k)
            outputs = core.run(served, sig, arrays, req.get("output_filter") or ())
            if not row:
                if len(outputs) == 1:
                    return {"outputs": _to_json(next(iter(outputs.values())))}
                return {"outputs": {k: _to_json(v) for k, v in outputs.items()}}
            if len(outputs) == 1:
                return {"predictions": _to_json(next(iter(outputs.values())))}
            n = len(next(iter(outputs.values())))
            return {"predictions": [{k: _to_json(v[i]) for k, v in outputs.items()} for i in range(n)]}

    return Handler


# ----------------------------------------------------------------------------- server


class ModelServer:
    """gRPC (and optional REST) server over one model base path.

    Port 0 picks a free port; read `port` / `rest_port` after :meth:`start`.
    """

    def __init__(
        self,
        model_base_path: str,
        model_name: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 8500,
        rest_port: int | None = None,
        poll_interval_s: float = 1.0,
        max_batch_size: int = 256,
        max_message_bytes: int = 64 << 20,
        workers: int = 8,
    ):
        if not os.path.isdir(model_base_path):
            raise FileNotFoundError(f"--model_base_path {model_base_path}: no such directory")
        name = model_name or os.path.basename(os.path.normpath(model_base_path))
        self.store = ModelStore(model_base_path, name, poll_interval_s)
        self.core = PredictionCore(self.store, max_batch_size=max_batch_size)
        self.host, self.port, self.rest_port = host, port, rest_port
        self.max_message_bytes = max_message_bytes
        self.workers = workers
        self._grpc = None
        self._http = None
        self._http_thread = None

    @property
    def model_name(self) -> str:
        return self.store.name

    def start(self) -> "ModelServer":
        import grpc

        self.store.refresh()
        if self.store.current is None:
            log.warning("no loadable version under %s yet; waiting for one", self.store.base)
        pred, model_svc, pred_grpc, model_grpc = _grpc_servicers(self.core)
        self._grpc = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", self.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
        )
        pred_grpc.add_PredictionServiceServicer_to_server(pred, self._grpc)
        model_grpc.add_ModelServiceServicer_to_server(model_svc, self._grpc)
        bound = self._grpc.add_insecure_port(f"{self.host}:{self.port}")
        if not bound:
            raise OSError(f"cannot bind gRPC to {self.host}:{self.port}")
        self.port = bound
        self._grpc.start()
        if self.rest_port is not None:
            handler = _make_rest_handler(self.core, self.max_message_bytes)
            self._http = http.server.ThreadingHTTPServer((self.host, self.rest_port), handler)
            self._http.daemon_threads = True
            self.rest_port = self._http.server_address[1]
            self._http_thread = threading.Thread(target=self._http.serve_forever, name="rest", daemon=True)
            self._http_thread.start()
        self.store.start_polling()
        log.info(
            "serving %s from %s on grpc %s:%d%s", self.model_name, self.store.base, self.host, self.port,
            f", rest {self.host}:{self.rest_port}" if self._http else "",
        )
        return self

    def stop(self, grace_s: float = 5.0) -> None:
        """Refuse new requests, finish in-flight ones (up to `grace_s`), stop."""
        self.store.stop()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(grace_s).wait()
            self._grpc = None

    def wait_for_version(self, version: int, timeout_s: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            cur = self.store.current
            if cur is not None and cur.version >= version:
                return True
            time.sleep(0.05)
        return False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        server = ModelServer(
            FLAGS.model_base_path,
            FLAGS.model_name,
            host=FLAGS.host,
            port=FLAGS.port,
            rest_port=FLAGS.rest_port,
            poll_interval_s=FLAGS.poll_interval,
            max_batch_size=FLAGS.max_batch_size,
            max_message_bytes=FLAGS.max_message_mb << 20,
        ).start()
    except (FileNotFoundError, OSError) as e:
        raise SystemExit(f"error: {e}") from None
    done = threading.Event()

    def on_signal(signum, frame):
        log.info("signal %d: shutting down", signum)
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # The line tests and scripts wait for; ports are the bound ones.
    print(f"READY grpc={server.host}:{server.port}" + (f" rest={server.host}:{server.rest_port}" if server.rest_port else ""), flush=True)
    done.wait()
    server.stop(grace_s=FLAGS.grace_period)
    log.info("stopped")


def _define_flags():
    from absl import flags

    flags.DEFINE_string("model_base_path", None, "directory of integer version subdirectories (models/<model_name>)")
    flags.DEFINE_string("model_name", None, "served model name (default: basename of --model_base_path)")
    flags.DEFINE_string("host", "127.0.0.1", "interface to bind (0.0.0.0 to expose; there is no authentication)")
    flags.DEFINE_integer("port", 8500, "gRPC port (0: any free port)")
    flags.DEFINE_integer("rest_port", None, "REST port (TF-Serving uses 8501; unset: no REST)")
    flags.DEFINE_float("poll_interval", 1.0, "seconds between scans for a new version")
    flags.DEFINE_integer("max_batch_size", 256, "largest accepted batch")
    flags.DEFINE_integer("max_message_mb", 64, "largest accepted request, MiB")
    flags.DEFINE_float("grace_period", 5.0, "seconds to finish in-flight requests on SIGTERM")
    flags.mark_flag_as_required("model_base_path")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
