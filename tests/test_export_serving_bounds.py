"""Serving with bounds (issue 12 §1, §3, §4): the development server loads
versions as TF-Serving does, refuses oversized images and batches before any
work, its REST front end survives slow, idle and malformed clients, and a
killed export's temporary directory is cleaned by the next export."""

import glob
import json
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from support import make_tiny_model
from export.saved_model import export_saved_model, read_export_metadata, remove_stale_temp_dirs
from export.serving.client import GrpcClient, InvalidInputError
from export.serving.rest import BoundedHTTPServer
from export.serving.server import ModelServer
from export.serving.signatures import DEFAULT_MAX_BATCH_SIZE
from keras_hpnet.metadata import ModelMetadata

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 32, 16
READ_TIMEOUT_S = 2.0


def _metadata():
    return ModelMetadata(model_name="tiny", input_height=H, input_width=W, embedding_size=8,
                         attribute_names=["a0", "a1", "a2"])


def _png(h, w, seed=0):
    rng = np.random.default_rng(seed)
    return tf.io.encode_png(rng.integers(0, 256, (h, w, 3)).astype(np.uint8)).numpy()


def _png_header(h, w):
    """A PNG of a few dozen bytes whose header claims h x w (its data is one row)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * (3 * w + 1))) + chunk(b"IEND", b""))


def _jpeg_header(h, w):
    """A real small JPEG with its SOF0 frame size patched to h x w."""
    data = bytearray(tf.io.encode_jpeg(np.zeros((8, 8, 3), np.uint8)).numpy())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
    return bytes(data)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("bounds")
    model = make_tiny_model()
    res = export_saved_model(model, str(root / "models"), _metadata(), max_image_pixels=1000)
    return model, res


@pytest.fixture(scope="module")
def server(exported):
    _, res = exported
    # The server's own pixel limit (5000) is above the export's (1000), so
    # both checks can be seen; defaults elsewhere (batch cap 64).
    srv = ModelServer(os.path.dirname(res.path), port=0, rest_port=0, poll_interval_s=60,
                      max_image_pixels=5000, rest_read_timeout_s=READ_TIMEOUT_S).start()
    try:
        yield srv
    finally:
        srv.stop(grace_s=1)


def _tf1_session(version_dir):
    sess = tf.compat.v1.Session(graph=tf.Graph())
    meta = tf.compat.v1.saved_model.load(sess, ["serve"], version_dir)
    sd = meta.signature_def["serve_image_bytes"]
    return sess, sd.inputs["image_bytes"].name, {k: v.name for k, v in sd.outputs.items()}


# ----------------------------------------------------------------------------- §1 the loader


def _old_style_export(model, path):
    """What export.saved_model wrote on main: a tf.Module holding the Keras model."""
    module = tf.Module()
    module.model = model
    module.model_variables = list(model.variables)
    sig = tf.function(lambda images: model(tf.cast(images, tf.float32), training=False),
                      input_signature=[tf.TensorSpec([None, H, W, 3], tf.uint8, name="images")])
    module.serve = sig
    tf.saved_model.save(module, path, signatures={"serving_default": sig})


def test_server_refuses_a_version_only_tf_saved_model_load_can_run(tmp_path, caplog):
    model = make_tiny_model()
    good = export_saved_model(model, str(tmp_path), _metadata())  # version 1
    bad = str(tmp_path / "tiny" / "2")
    _old_style_export(model, bad)
    x = np.zeros((1, H, W, 3), np.uint8)
    assert tf.saved_model.load(bad).signatures["serving_default"](images=tf.constant(x))  # hides it
    with caplog.at_level(logging.ERROR, logger="export.serve"):
        with ModelServer(os.path.dirname(good.path), port=0, poll_interval_s=60) as srv:
            assert srv.store.current.version == 1  # version 2 refused, version 1 served
            with GrpcClient(f"127.0.0.1:{srv.port}", "tiny", timeout_s=30) as c:
                out = c.predict(x)
                assert c.last_version == 1
            np.testing.assert_allclose(out["embedding"], model(x.astype(np.float32))["embedding"], atol=1e-5)
    assert "version 2" in caplog.text and "Could not find variable" in caplog.text


# ----------------------------------------------------------------------------- §4 pixel limit


def test_export_records_and_enforces_the_pixel_limit(exported):
    model, res = exported
    assert read_export_metadata(res.path).extra["max_image_pixels"] == 1000
    at_limit, over = _png(20, 50), [_png(40, 26), _png_header(16000, 16000), _jpeg_header(16000, 16000)]
    sess, feed, fetch = _tf1_session(res.path)  # encode first: the session's graph becomes the default
    with sess:
        ok = sess.run(fetch, {feed: np.array([at_limit], object)})  # 1000 pixels: at the limit
        assert ok["embedding"].shape == (1, 8)
        for blob in over:
            t = time.perf_counter()
            with pytest.raises(tf.errors.InvalidArgumentError, match="over the limit of 1000 pixels"):
                sess.run(fetch, {feed: np.array([blob], object)})
            assert time.perf_counter() - t < 5  # refused from the header, nothing decoded
        with pytest.raises(tf.errors.InvalidArgumentError, match="16000x16000 image"):
            sess.run(fetch, {feed: np.array([over[1]], object)})
        with pytest.raises(tf.errors.InvalidArgumentError, match="not a JPEG/PNG/GIF/BMP/WebP image"):
            sess.run(fetch, {feed: np.array([b"GIF? no, plain text"], object)})


def test_server_checks_the_pixel_limit_before_running(server):
    with GrpcClient(f"127.0.0.1:{server.port}", "tiny", timeout_s=30) as c:
        for blob in (_png(100, 60), _png_header(16000, 16000), _jpeg_header(16000, 16000)):
            with pytest.raises(InvalidInputError, match=r"over the limit of 5000 pixels \(--max_image_pixels\)"):
                c.predict([blob])
        # Under the server's limit, over the export's: the graph refuses it.
        with pytest.raises(InvalidInputError, match="rejected the input: .*over the limit of 1000 pixels"):
            c.predict([_png(50, 50)])
        assert c.predict([_png(20, 40)])["embedding"].shape == (1, 8)


# ----------------------------------------------------------------------------- §4 batch cap


def _proto_request(proto, name="tiny"):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    req.inputs["images"].CopyFrom(proto)
    return req


def test_batch_cap_from_the_declared_shape(server):
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

    def claiming(n):  # ~30 bytes claiming n images: one value, TensorProto would repeat it
        shape = tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=s) for s in (n, H, W, 3)])
        return tensor_pb2.TensorProto(dtype=types_pb2.DT_UINT8, tensor_shape=shape, int_val=[7])

    assert DEFAULT_MAX_BATCH_SIZE == 64
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        for n, match in ((256, "batch of 256 exceeds the maximum 64"), (8, "holds 1 values for shape")):
            req = _proto_request(claiming(n))
            assert req.ByteSize() < 60
            t = time.perf_counter()
            with pytest.raises(grpc.RpcError) as e:
                stub.Predict(req, timeout=30)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and match in e.value.details()
            assert time.perf_counter() - t < 2
        full = _proto_request(tf.make_tensor_proto(np.zeros((64, H, W, 3), np.uint8)))
        assert stub.Predict(full, timeout=60).outputs["embedding"].tensor_shape.dim[0].size == 64


# ----------------------------------------------------------------------------- §4 REST


def _raw_http(port, data: bytes, *, close_write=False, timeout=10.0):
    """Send raw bytes; -> (status, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if close_write:
            s.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _post(path, body: bytes, length=None, extra=b""):
    length = len(body) if length is None else length
    cl = b"" if length == "none" else b"Content-Length: %s\r\n" % str(length).encode()
    return b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" + cl + extra + b"\r\n" + body


PREDICT = "/v1/models/tiny:predict"


def _instances(value=0, **extra):
    """A well-shaped :predict body of one image whose first value is `value`."""
    image = np.zeros((1, H, W, 3), np.int64).tolist()
    image[0][0][0][0] = value
    return json.dumps({"instances": image, **extra}).encode()


@pytest.mark.parametrize("request_bytes, status", [
    (_post(PREDICT, b"", length=-1), 400),  # was: the thread blocked forever
    (_post(PREDICT, b"{}", length="none"), 411),
    (_post(PREDICT, b"{}", length="12abc"), 400),
    (_post(PREDICT, b"", length=1 << 40), 413),
    (_post(PREDICT, b"5\r\n{}\r\n0\r\n\r\n", length="none", extra=b"Transfer-Encoding: chunked\r\n"), 411),
    (_post(PREDICT, b"[" * 100_000 + b"]" * 100_000), 400),  # was 500 (RecursionError)
    (_post(PREDICT, b'{"instances": [' + b"9" * 5000 + b"]}"), 400),  # was 500 (int digit limit)
    (_post(PREDICT, _instances(10**30)), 400),  # an integer beyond 64 bits
    (_post(PREDICT, _instances(256)), 400),  # outside uint8
    (_post(PREDICT, b'{"instances": ' + b"[" * 900 + b"]" * 900 + b"}"), 400),
    (_post(PREDICT, b'{"signature_name": "serve_image_bytes", "instances": ' + b"[" * 900 + b"]" * 900 + b"}"), 400),
    (_post(PREDICT, _instances(output_filter="embedding")), 400),
    (_post(PREDICT, _instances(signature_name=7)), 400),
])
def test_rest_malformed_requests_get_4xx(server, request_bytes, status):
    got, body = _raw_http(server.rest_port, request_bytes)
    assert got == status, body[:300]
    assert "error" in json.loads(body)


def test_rest_short_body_times_out(server):
    t = time.perf_counter()
    got, body = _raw_http(server.rest_port, _post(PREDICT, b'{"inst', length=100))  # never completes
    assert got == 408 and READ_TIMEOUT_S - 0.5 < time.perf_counter() - t < READ_TIMEOUT_S + 3
    # A body cut short by the client closing its side: 400, at once.
    got, _ = _raw_http(server.rest_port, _post(PREDICT, b'{"inst', length=100), close_write=True)
    assert got == 400


def test_rest_idle_connections_hold_no_threads(server, exported):
    model, _ = exported
    x = np.random.default_rng(1).integers(0, 256, (1, H, W, 3)).astype(np.uint8)
    body = json.dumps({"instances": x.tolist()}).encode()
    assert _raw_http(server.rest_port, _post(PREDICT, body))[0] == 200
    threads = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.rest_port)) for _ in range(200)]
    try:
        time.sleep(0.3)
        assert threading.active_count() <= threads + server.workers  # was: one thread per socket
        t = time.perf_counter()
        status, answer = _raw_http(server.rest_port, _post(PREDICT, body))
        assert status == 200 and time.perf_counter() - t < 5
        want = model(x.astype(np.float32))["embedding"].numpy()
        np.testing.assert_allclose(json.loads(answer)["predictions"][0]["embedding"], want[0], atol=1e-5)
        # Idle connections are closed after the read timeout.
        deadline = time.monotonic() + READ_TIMEOUT_S + 5
        while server._http.open_connections and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server._http.open_connections == 0
    finally:
        for s in idle:
            s.close()


def test_rest_backlog_and_connection_cap(exported):
    """Nothing accepts yet: the kernel still completes >= 128 handshakes
    (ThreadingHTTPServer's backlog of 5 completed 6). Over the connection cap
    a client gets 503 at once."""
    _, res = exported
    srv = BoundedHTTPServer(("127.0.0.1", 0), None, workers=2, max_connections=3, read_timeout_s=5)
    socks = []
    try:
        port = srv.server_address[1]
        for _ in range(200):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            socks.append(s)
        time.sleep(1.0)
        connected = sum(1 for s in socks if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 and _is_connected(s))
        assert connected >= 128, connected
    finally:
        for s in socks:
            s.close()
        srv.server_close()

    with ModelServer(os.path.dirname(res.path), port=0, rest_port=0, poll_interval_s=60, max_pending=3,
                     rest_read_timeout_s=5) as small:
        held = [socket.create_connection(("127.0.0.1", small.rest_port)) for _ in range(3)]
        try:
            time.sleep(0.3)
            status, body = _raw_http(small.rest_port, b"GET /v1/models/tiny HTTP/1.1\r\n\r\n")
            assert status == 503
        finally:
            for s in held:
                s.close()
        time.sleep(0.5)
        assert _raw_http(small.rest_port, b"GET /v1/models/tiny HTTP/1.1\r\n\r\n")[0] == 200


def _is_connected(s):
    try:
        s.getpeername()
        return True
    except OSError:
        return False


def test_versions_swap_under_load_without_errors(tmp_path):
    """A replaced version's session closes only after its requests finished."""
    meta = _metadata()
    res = export_saved_model(make_tiny_model(seed=0), str(tmp_path), meta)
    x = np.zeros((2, H, W, 3), np.uint8)
    errors, versions = [], set()
    stop = threading.Event()
    with ModelServer(os.path.dirname(res.path), port=0, poll_interval_s=0.05) as srv:
        def hammer():
            with GrpcClient(f"127.0.0.1:{srv.port}", "tiny", timeout_s=30) as c:
                while not stop.is_set():
                    try:
                        c.predict(x)
                        versions.add(c.last_version)
                    except Exception as e:  # noqa: BLE001 - any failure counts
                        errors.append(e)

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for t in threads:
            t.start()
        for seed in (1, 2):
            export_saved_model(make_tiny_model(seed=seed), str(tmp_path), meta)
        assert srv.wait_for_version(3, timeout_s=60)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:3]
    assert 3 in versions


# ----------------------------------------------------------------------------- §3 stale temp dirs


_KILLED_EXPORT = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[2])
import tensorflow as tf
from support import make_tiny_model
from keras_hpnet.metadata import ModelMetadata
from export.saved_model import export_saved_model
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
tf.saved_model.save = die
md = ModelMetadata(model_name="tiny", input_height=32, input_width=16, embedding_size=8, attribute_names=["a0", "a1", "a2"])
export_saved_model(make_tiny_model(), sys.argv[1], md)
"""


def test_next_export_removes_stale_temp_dirs(tmp_path):
    from export.saved_model import _owned_temp_dir

    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", _KILLED_EXPORT, str(tmp_path), os.path.join(REPO, "tests")],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr[-2000:]
    base = tmp_path / "tiny"
    dead = glob.glob(str(base / ".tmp-export-*"))
    assert len(dead) == 1  # what a killed export leaves
    old = base / ".tmp-export-from-an-old-exporter"  # no owner lock, an hour old
    old.mkdir()
    os.utime(old, (time.time() - 3600,) * 2)
    fresh = base / ".tmp-export-just-created"  # no owner lock yet, just created
    fresh.mkdir()
    with _owned_temp_dir(str(base)) as live:  # a live exporter's
        res = export_saved_model(make_tiny_model(), str(tmp_path), _metadata())
        left = sorted(glob.glob(str(base / ".tmp-export-*")))
        assert left == sorted([live, str(fresh)])
        assert res.version == 1
    assert remove_stale_temp_dirs(str(base)) == []  # the fresh one stays within its grace
    assert sorted(glob.glob(str(base / ".tmp-export-*"))) == [str(fresh)]
