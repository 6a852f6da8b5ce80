"""Clients for a served keras-hpnet model (TF-Serving or `export.serve`).

Imported as ``export.client`` too (the CLI keeps that name).

Python::

    from export.client import GrpcClient, RestClient
    with GrpcClient("127.0.0.1:8500", "hacnn") as c:
        out = c.predict(images_uint8)            # [N, H, W, 3] -> serving_default
        out = c.predict(["a.jpg", "b.png"])      # files -> serve_image_bytes
        c.get_model_metadata()                   # signatures, input size, outputs
        c.model_info()                           # attribute names etc. (ModelMetadata)
    RestClient("http://127.0.0.1:8501", "hacnn").predict(...)

CLI::

    python -m export.client --server 127.0.0.1:8500 --model_name hacnn metadata
    python -m export.client --server 127.0.0.1:8500 --model_name hacnn predict a.jpg b.png
    python -m export.client --rest http://127.0.0.1:8501 --model_name hacnn predict a.jpg

gRPC goes through the official stubs of ``tensorflow-serving-api``; REST uses
urllib (TF-Serving's JSON API). Every failure is a :class:`ServingError` (or a
subclass) naming what went wrong: server unreachable, unknown model or
signature, invalid input, bad image.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import urllib.error
import urllib.request

import numpy as np

from export.serving.signatures import (
    BYTES_INPUT,
    BYTES_SIGNATURE,
    DEFAULT_SIGNATURE,
    EMBEDDING_OUTPUT,
    IMAGES_INPUT,
    METADATA_OUTPUT,
    METADATA_SIGNATURE,
    ServingError,
)

__all__ = ["BadImageError", "GrpcClient", "InvalidInputError", "NotFoundError", "RestClient",
           "ServerUnavailableError", "ServingError", "read_image_bytes"]

_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"RIFF")


class ServerUnavailableError(ServingError):
    """The server cannot be reached (or did not answer within the timeout)."""


class NotFoundError(ServingError):
    """Unknown model, version or signature."""


class InvalidInputError(ServingError):
    """The server (or the client, before sending) rejected the input."""


class BadImageError(InvalidInputError):
    """An image file that is missing, unreadable or not a JPEG/PNG/GIF/BMP/WebP."""


_BY_CODE = {
    "UNAVAILABLE": ServerUnavailableError,
    "DEADLINE_EXCEEDED": ServerUnavailableError,
    "NOT_FOUND": NotFoundError,
    "INVALID_ARGUMENT": InvalidInputError,
    "RESOURCE_EXHAUSTED": InvalidInputError,
    "FAILED_PRECONDITION": InvalidInputError,
}


def _error(code: str, message: str) -> ServingError:
    return _BY_CODE.get(code, ServingError)(code, message)


def read_image_bytes(image) -> bytes:
    """Encoded image bytes from a path or bytes, checked to look like an image."""
    if isinstance(image, (bytes, bytearray)):
        data, where = bytes(image), "image bytes"
    else:
        path = os.fspath(image)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise BadImageError("INVALID_ARGUMENT", f"{path}: cannot read image ({e.strerror})") from None
        where = path
    if not data:
        raise BadImageError("INVALID_ARGUMENT", f"{where}: empty")
    if not data.startswith(_IMAGE_MAGIC):
        raise BadImageError("INVALID_ARGUMENT", f"{where}: not a JPEG/PNG/GIF/BMP/WebP image")
    return data


def _as_batch(images):
    """Split user input into ("array", uint8 [N,H,W,3]) or ("bytes", [bytes])."""
    if isinstance(images, np.ndarray):
        arr = images
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise InvalidInputError("INVALID_ARGUMENT", f"images: expected [N, H, W, 3] (or [H, W, 3]), got shape {list(images.shape)}")
        if arr.dtype != np.uint8:
            if arr.size and (np.nanmin(arr) < 0 or np.nanmax(arr) > 255 or not np.all(np.mod(arr, 1) == 0)):
                raise InvalidInputError("INVALID_ARGUMENT", f"images: {arr.dtype} values must be integers in 0..255 to send as uint8")
            arr = arr.astype(np.uint8)
        return "array", arr
    if isinstance(images, (str, bytes, bytearray, os.PathLike)):
        images = [images]
    items = list(images)
    if items and all(isinstance(i, np.ndarray) for i in items):
        try:
            return _as_batch(np.stack(items))
        except ValueError:
            raise InvalidInputError("INVALID_ARGUMENT", "images: arrays of different shapes; pass files or bytes instead") from None
    return "bytes", [read_image_bytes(i) for i in items]


def _merge(chunks: list[dict]) -> dict:
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}


class _Client:
    model_name: str
    version: int | None
    batch_size: int

    def _predict_raw(self, signature: str, inputs: dict, output_filter) -> dict:
        raise NotImplementedError

    def predict(self, images, *, signature: str | None = None, batch_size: int | None = None, output_filter=()) -> dict:
        """Outputs (name -> numpy array, one row per image) for `images`.

        `images`: a uint8 array ``[N, H, W, 3]`` (or ``[H, W, 3]``, or a list of
        same-size arrays) -> ``serving_default``; file paths or encoded bytes ->
        ``serve_image_bytes`` (decoded and resized by the server). Sent in
        requests of at most `batch_size` images.
        """
        kind, batch = _as_batch(images)
        if signature is None:
            signature = DEFAULT_SIGNATURE if kind == "array" else BYTES_SIGNATURE
        key = IMAGES_INPUT if kind == "array" else BYTES_INPUT
        n = len(batch)
        if n == 0:
            raise InvalidInputError("INVALID_ARGUMENT", "no images given")
        bs = int(batch_size or self.batch_size)
        chunks = []
        for i in range(0, n, bs):
            part = batch[i : i + bs]
            if kind == "bytes":
                part = np.array(part, dtype=object)
            chunks.append(self._predict_raw(signature, {key: part}, output_filter))
        return _merge(chunks)

    def model_info(self):
        """The export's keras_hpnet ModelMetadata (attribute names, sizes, version)."""
        from keras_hpnet.metadata import ModelMetadata

        out = self._predict_raw(METADATA_SIGNATURE, {}, ())
        value = out[METADATA_OUTPUT]
        value = value.item() if isinstance(value, np.ndarray) else value
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        return ModelMetadata.from_json(value, source=f"model {self.model_name!r} metadata signature")


def _signature_summary(sig_defs) -> dict:
    """SignatureDef protos -> {name: {"inputs": {k: (dtype, shape)}, "outputs": {...}}}."""
    import tensorflow as tf

    def tensors(m):
        return {
            k: (tf.dtypes.as_dtype(v.dtype).name, [None if d.size < 0 else d.size for d in v.tensor_shape.dim])
            for k, v in m.items()
        }

    return {name: {"inputs": tensors(s.inputs), "outputs": tensors(s.outputs)} for name, s in sig_defs.items()}


class GrpcClient(_Client):
    """PredictionService client over gRPC (official tensorflow-serving-api stubs)."""

    def __init__(
        self,
        target: str = "127.0.0.1:8500",
        model_name: str = "",
        *,
        version: int | None = None,
        timeout_s: float = 30.0,
        batch_size: int = 32,
        max_message_bytes: int = 64 << 20,
    ):
        import grpc
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        if not model_name:
            raise ValueError("model_name is required")
        self.target, self.model_name, self.version = target, model_name, version
        self.timeout_s, self.batch_size = timeout_s, batch_size
        self.last_version: int | None = None  # version that answered the last Predict
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        self._predict_stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._model_stub = model_service_pb2_grpc.ModelServiceStub(self._channel)

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _spec(self, spec, signature: str | None = None):
        spec.name = self.model_name
        if self.version is not None:
            spec.version.value = self.version
        if signature is not None:
            spec.signature_name = signature

    def _call(self, method, request, what: str):
        import grpc

        try:
            return method(request, timeout=self.timeout_s)
        except grpc.RpcError as e:
            code = e.code().name if e.code() else "UNKNOWN"
            detail = e.details() or ""
            if code == "UNAVAILABLE":
                detail = f"cannot reach the model server at {self.target} ({detail})"
            elif code == "DEADLINE_EXCEEDED":
                detail = f"no answer from {self.target} within {self.timeout_s}s ({what})"
            raise _error(code, detail) from None

    def _predict_raw(self, signature, inputs, output_filter):
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        req = predict_pb2.PredictRequest()
        self._spec(req.model_spec, signature)
        for k, v in inputs.items():
            req.inputs[k].CopyFrom(tf.make_tensor_proto(v))
        req.output_filter.extend(output_filter)
        resp = self._call(self._predict_stub.Predict, req, f"Predict {signature}")
        self.last_version = resp.model_spec.version.value
        return {k: tf.make_ndarray(v) for k, v in resp.outputs.items()}

    def get_model_metadata(self) -> dict:
        """{"model_name", "version", "signatures": {name: {"inputs", "outputs"}}}.

        Each input/output is ``(dtype, shape)`` with None for a free dimension.
        """
        from tensorflow_serving.apis import get_model_metadata_pb2

        req = get_model_metadata_pb2.GetModelMetadataRequest()
        self._spec(req.model_spec)
        req.metadata_field.append("signature_def")
        resp = self._call(self._predict_stub.GetModelMetadata, req, "GetModelMetadata")
        defs = get_model_metadata_pb2.SignatureDefMap()
        if not resp.metadata["signature_def"].Unpack(defs):
            raise ServingError("INTERNAL", "GetModelMetadata answer has no SignatureDefMap")
        return {
            "model_name": resp.model_spec.name,
            "version": resp.model_spec.version.value,
            "signatures": _signature_summary(defs.signature_def),
        }

    def get_model_status(self) -> list[dict]:
        """[{"version", "state"}] from ModelService.GetModelStatus."""
        from tensorflow_serving.apis import get_model_status_pb2

        req = get_model_status_pb2.GetModelStatusRequest()
        self._spec(req.model_spec)
        resp = self._call(self._model_stub.GetModelStatus, req, "GetModelStatus")
        names = get_model_status_pb2.ModelVersionStatus.State
        return [{"version": s.version, "state": names.Name(s.state)} for s in resp.model_version_status]


_HTTP_CODES = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 408: "DEADLINE_EXCEEDED", 411: "INVALID_ARGUMENT",
               413: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE"}


class RestClient(_Client):
    """TF-Serving's REST API (``/v1/models/<name>:predict``) over urllib."""

    def __init__(self, base_url: str = "http://127.0.0.1:8501", model_name: str = "", *, version: int | None = None,
                 timeout_s: float = 30.0, batch_size: int = 32):
        if not model_name:
            raise ValueError("model_name is required")
        if "://" not in base_url:
            base_url = "http://" + base_url
        self.base_url, self.model_name, self.version = base_url.rstrip("/"), model_name, version
        self.timeout_s, self.batch_size = timeout_s, batch_size

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def _url(self, suffix: str) -> str:
        v = f"/versions/{self.version}" if self.version is not None else ""
        return f"{self.base_url}/v1/models/{self.model_name}{v}{suffix}"

    def _request(self, url: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            try:
                msg = json.loads(e.read()).get("error", "")
            except (ValueError, AttributeError):
                msg = ""
            raise _error(_HTTP_CODES.get(e.code, "UNKNOWN" if e.code < 500 else "INTERNAL"), msg or f"HTTP {e.code} from {url}") from None
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            if isinstance(reason, (socket.timeout, TimeoutError)):
                raise ServerUnavailableError("DEADLINE_EXCEEDED", f"no answer from {url} within {self.timeout_s}s") from None
            raise ServerUnavailableError("UNAVAILABLE", f"cannot reach the model server at {self.base_url} ({reason})") from None
        except json.JSONDecodeError:
            raise ServingError("INTERNAL", f"{url}: answer is not JSON") from None

    def _predict_raw(self, signature, inputs, output_filter):
        cols = {}
        for k, v in inputs.items():
            if v.dtype == object:
                cols[k] = [{"b64": base64.b64encode(b).decode("ascii")} for b in v.reshape(-1)]
            else:
                cols[k] = v.tolist()
        body = {"signature_name": signature, "inputs": cols}
        if output_filter:
            body["output_filter"] = list(output_filter)
        out = self._request(self._url(":predict"), body)["outputs"]
        if not isinstance(out, dict):  # a single output comes back unnamed
            out = {EMBEDDING_OUTPUT if signature != METADATA_SIGNATURE else METADATA_OUTPUT: out}
        return {k: (np.asarray(v, dtype=np.float32) if not isinstance(v, str) else np.asarray(v.encode("utf-8"), dtype=object))
                for k, v in out.items()}

    def get_model_metadata(self) -> dict:
        resp = self._request(self._url("/metadata"))
        defs = resp["metadata"]["signature_def"]["signature_def"]

        def tensors(m):
            out = {}
            for k, v in m.items():
                dims = v.get("tensor_shape", {}).get("dim", [])
                dtype = v.get("dtype", "DT_INVALID").removeprefix("DT_").lower()
                dtype = {"float": "float32", "double": "float64", "int32": "int32"}.get(dtype, dtype)
                out[k] = (dtype, [None if int(d["size"]) < 0 else int(d["size"]) for d in dims])
            return out

        sigs = {n: {"inputs": tensors(s.get("inputs", {})), "outputs": tensors(s.get("outputs", {}))} for n, s in defs.items()}
        return {"model_name": resp["model_spec"]["name"], "version": int(resp["model_spec"]["version"]), "signatures": sigs}

    def get_model_status(self) -> list[dict]:
        resp = self._request(self._url(""))
        return [{"version": int(s["version"]), "state": s["state"]} for s in resp["model_version_status"]]


# ----------------------------------------------------------------------------- CLI


def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    args = argv[1:]
    if not args or args[0] not in ("predict", "metadata", "status"):
        raise SystemExit("usage: python -m export.client [flags] {metadata | status | predict IMAGE...}")
    if FLAGS.rest:
        client = RestClient(FLAGS.rest, FLAGS.model_name, version=FLAGS.version, timeout_s=FLAGS.timeout, batch_size=FLAGS.batch_size)
    else:
        client = GrpcClient(FLAGS.server, FLAGS.model_name, version=FLAGS.version, timeout_s=FLAGS.timeout, batch_size=FLAGS.batch_size)
    try:
        with client:
            if args[0] == "metadata":
                md = client.get_model_metadata()
                try:
                    md["model_metadata"] = client.model_info().to_dict()
                except NotFoundError:
                    md["model_metadata"] = None  # an export without the metadata signature
                print(json.dumps(md, indent=2))
            elif args[0] == "status":
                print(json.dumps(client.get_model_status(), indent=2))
            else:
                files = args[1:]
                if not files:
                    raise SystemExit("predict: give one or more image files")
                out = client.predict(files, signature=FLAGS.signature)
                rows = [{"image": f, **{k: v[i].tolist() for k, v in out.items()}} for i, f in enumerate(files)]
                text = json.dumps(rows, indent=None if FLAGS.output else 1)
                if FLAGS.output:
                    from keras_hpnet.fileio import write_text_atomic

                    write_text_atomic(FLAGS.output, text + "\n")
                    print(f"wrote {len(rows)} results to {FLAGS.output}")
                else:
                    print(text)
    except ServingError as e:
        raise SystemExit(f"error: {e}") from None


def define_flags():
    from absl import flags

    flags.DEFINE_string("server", "127.0.0.1:8500", "gRPC host:port of the model server")
    flags.DEFINE_string("rest", None, "REST base URL (e.g. http://127.0.0.1:8501); uses REST instead of gRPC")
    flags.DEFINE_string("model_name", None, "served model name")
    flags.DEFINE_integer("version", None, "model version (default: the newest served)")
    flags.DEFINE_string("signature", None, "signature (default: serve_image_bytes for files)")
    flags.DEFINE_integer("batch_size", 32, "images per request")
    flags.DEFINE_float("timeout", 30.0, "seconds per request")
    flags.DEFINE_string("output", None, "write predictions as JSON here instead of stdout")
    flags.mark_flag_as_required("model_name")


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
