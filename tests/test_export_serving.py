"""SavedModel export -> export.serve on 127.0.0.1 -> export.client (gRPC and REST)."""

import concurrent.futures
import os
import signal
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from support import make_tiny_model, write_tiny_run
from keras_hpnet.data.resize import resize_uint8
from export.serving.client import (
    BadImageError,
    GrpcClient,
    InvalidInputError,
    NotFoundError,
    RestClient,
    ServerUnavailableError,
)
from keras_hpnet.runs import load_run
from export.saved_model import (
    save_run,
    export_saved_model,
    list_versions,
    read_export_metadata,
)
from export.serving.server import ModelServer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
H, W = 32, 16
MAX_MSG = 1 << 20


def _keras(model, x):
    out = model(np.asarray(x, np.float32), training=False)
    return {k: np.asarray(v) for k, v in out.items()}


def _images(n, seed=0, h=H, w=W):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3)).astype(np.uint8)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    run = load_run(write_tiny_run(str(root / "run")))
    res = save_run(str(root / "run"), str(root / "models"))
    server = ModelServer(
        res.path.rsplit(os.sep, 1)[0], port=0, rest_port=0, poll_interval_s=0.2,
        max_batch_size=64, max_message_bytes=MAX_MSG,
    ).start()
    try:
        yield run, res, server
    finally:
        server.stop(grace_s=1)


def test_export_layout_metadata_and_parity(served):
    run, res, _ = served
    base = os.path.dirname(res.path)
    assert res.version == 1 and list_versions(base) == [1]
    assert sorted(os.listdir(res.path)) == ["assets", "fingerprint.pb", "saved_model.pb", "variables"]
    assert not [n for n in os.listdir(base) if n.startswith(".tmp")]
    md = read_export_metadata(res.path)
    assert (md.model_name, md.version, md.input_height, md.input_width, md.embedding_size) == ("tiny", 1, H, W, 8)
    assert md.attribute_names == ["attr0", "attr1", "attr2"]
    config = open(os.path.join(os.path.dirname(base), "models.config")).read()
    assert 'name: "tiny"' in config and 'base_path: "/models/tiny"' in config and "latest" in config

    loaded = tf.saved_model.load(res.path)
    assert set(loaded.signatures) == {"serving_default", "serve_image_bytes", "metadata"}
    x = _images(4)
    want = _keras(run.model, x)
    got = loaded.signatures["serving_default"](images=tf.constant(x))
    assert set(got) == {"embedding", "attributes"}
    for k in want:
        np.testing.assert_allclose(got[k].numpy(), want[k], atol=1e-5)
    # The BatchNorm trap: a training-mode BN in the export would give these.
    # (On a copy: a training-mode call updates the moving statistics.)
    trained = np.asarray(make_tiny_model()(x.astype(np.float32), training=True)["embedding"])
    assert np.abs(trained - want["embedding"]).max() > 1e-2
    pngs = tf.constant([tf.io.encode_png(i).numpy() for i in x])
    got = loaded.signatures["serve_image_bytes"](image_bytes=pngs)
    for k in want:
        np.testing.assert_allclose(got[k].numpy(), want[k], atol=1e-5)


def test_grpc_predict_both_signatures(served):
    run, _, server = served
    x = _images(5, seed=1)
    with GrpcClient(f"127.0.0.1:{server.port}", "tiny", timeout_s=20, batch_size=2) as c:
        out = c.predict(x)  # 3 requests of <= 2
        want = _keras(run.model, x)
        assert set(out) == {"embedding", "attributes"} and out["embedding"].shape == (5, 8)
        for k in want:
            np.testing.assert_allclose(out[k], want[k], atol=1e-5)
        assert c.last_version == 1
        # Encoded images of another size: decoded and resized in the graph.
        big = _images(3, seed=2, h=70, w=41)
        blobs = [tf.io.encode_png(big[0]).numpy(), tf.io.encode_jpeg(big[1]).numpy(), tf.io.encode_png(big[2]).numpy()]
        out = c.predict(blobs)
        decoded = np.stack([tf.io.decode_image(b, channels=3).numpy() for b in blobs])
        resized = resize_uint8(decoded, H, W).numpy()  # the image rule (keras_hpnet.data.resize)
        want = _keras(run.model, resized)
        for k in want:
            np.testing.assert_allclose(out[k], want[k], atol=1e-5)
        only = c.predict(x[:1], output_filter=["embedding"])
        assert set(only) == {"embedding"}


def test_grpc_metadata_status_and_model_info(served):
    _, _, server = served
    with GrpcClient(f"127.0.0.1:{server.port}", "tiny") as c:
        md = c.get_model_metadata()
        assert md["model_name"] == "tiny" and md["version"] == 1
        sd = md["signatures"]["serving_default"]
        assert sd["inputs"] == {"images": ("uint8", [None, H, W, 3])}
        assert sd["outputs"] == {"embedding": ("float32", [None, 8]), "attributes": ("float32", [None, 3])}
        assert md["signatures"]["serve_image_bytes"]["inputs"] == {"image_bytes": ("string", [None])}
        assert c.get_model_status() == [{"version": 1, "state": "AVAILABLE"}]
        info = c.model_info()
        assert info.attribute_names == ["attr0", "attr1", "attr2"] and info.version == 1


def test_rest_predict_metadata_and_errors(served, tmp_path):
    run, _, server = served
    c = RestClient(f"http://127.0.0.1:{server.rest_port}", "tiny", timeout_s=20)
    x = _images(3, seed=3)
    out = c.predict(x)
    want = _keras(run.model, x)
    for k in want:
        np.testing.assert_allclose(out[k], want[k], atol=1e-5)
    png = tmp_path / "a.png"
    png.write_bytes(tf.io.encode_png(x[0]).numpy())
    out = c.predict([str(png)])
    np.testing.assert_allclose(out["embedding"], want["embedding"][:1], atol=1e-5)
    assert c.get_model_metadata()["signatures"]["serving_default"]["inputs"]["images"] == ("uint8", [None, H, W, 3])
    assert c.get_model_status() == [{"version": 1, "state": "AVAILABLE"}]
    assert c.model_info().embedding_size == 8
    with pytest.raises(NotFoundError):
        RestClient(f"127.0.0.1:{server.rest_port}", "nope").predict(x)
    with pytest.raises(NotFoundError, match="signature"):
        c.predict(x, signature="nope")
    with pytest.raises(InvalidInputError, match="dimension 1 must be 32"):
        c.predict(_images(1, h=20))
    with pytest.raises(InvalidInputError, match="rejected the input"):
        c.predict([b"\x89PNG\r\n\x1a\n garbage"])


def _request(name="tiny", signature="", **inputs):
    req = predict_pb2.PredictRequest()
    req.model_spec.name = name
    if signature:
        req.model_spec.signature_name = signature
    for k, v in inputs.items():
        req.inputs[k].CopyFrom(v if isinstance(v, tensor_pb2.TensorProto) else tf.make_tensor_proto(v))
    return req


def test_malformed_request_barrage_then_good_request(served):
    run, _, server = served
    ok = _images(2, seed=4)
    huge_shape = tf.make_tensor_proto(np.zeros((1, H, W, 3), np.uint8))
    huge_shape.tensor_shape.dim[0].size = 10**9
    short = tf.make_tensor_proto(ok)
    short.tensor_content = short.tensor_content[:-7]
    versioned = _request(images=ok)
    versioned.model_spec.version.value = 7
    labelled = _request(images=ok)
    labelled.model_spec.version_label = "stable"
    cases = [
        (_request(images=ok.astype(np.float32)), "INVALID_ARGUMENT"),  # dtype
        (_request(images=ok[0]), "INVALID_ARGUMENT"),  # rank
        (_request(images=_images(2, h=H + 1)), "INVALID_ARGUMENT"),  # size
        (_request(images=np.zeros((0, H, W, 3), np.uint8)), "INVALID_ARGUMENT"),  # empty batch
        (_request(images=np.zeros((65, H, W, 3), np.uint8)), "INVALID_ARGUMENT"),  # batch > max
        (_request(images=huge_shape), "INVALID_ARGUMENT"),  # claims 10^9 images
        (_request(images=short), "INVALID_ARGUMENT"),  # truncated content
        (_request(pixels=ok), "INVALID_ARGUMENT"),  # wrong input name
        (_request(), "INVALID_ARGUMENT"),  # no inputs
        (_request(signature="serve_image_bytes", image_bytes=np.array([b"not an image"], object)), "INVALID_ARGUMENT"),
        (_request(signature="serve_image_bytes", image_bytes=np.array([b""], object)), "INVALID_ARGUMENT"),
        (_request(signature="serve_image_bytes", image_bytes=ok), "INVALID_ARGUMENT"),
        (_request(images=np.zeros((2, H, W, 3), np.uint8), signature="serve_image_bytes"), "INVALID_ARGUMENT"),
        (_request(images=np.zeros((40, 100, 100, 3), np.uint8)), "RESOURCE_EXHAUSTED"),  # > 1 MiB message
        (_request(name="other", images=ok), "NOT_FOUND"),
        (versioned, "NOT_FOUND"),
        (labelled, "NOT_FOUND"),
        (_request(signature="nope", images=ok), "NOT_FOUND"),
    ]
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
        for req, code in cases:
            with pytest.raises(grpc.RpcError) as e:
                stub.Predict(req, timeout=20)
            assert e.value.code().name == code, (code, e.value.details())
        md = get_model_metadata_pb2.GetModelMetadataRequest()
        md.model_spec.name = "tiny"
        with pytest.raises(grpc.RpcError) as e:
            stub.GetModelMetadata(md, timeout=20)  # no metadata_field
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        md.metadata_field.append("signature_def")
        md.model_spec.name = "other"
        with pytest.raises(grpc.RpcError) as e:
            stub.GetModelMetadata(md, timeout=20)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        # Still serving, and correctly.
        resp = stub.Predict(_request(images=ok), timeout=20)
        np.testing.assert_allclose(tf.make_ndarray(resp.outputs["embedding"]), _keras(run.model, ok)["embedding"], atol=1e-5)
        assert resp.model_spec.version.value == 1 and resp.model_spec.signature_name == "serving_default"


def test_client_errors(served, tmp_path):
    _, _, server = served
    with socket_free_port() as port:
        with GrpcClient(f"127.0.0.1:{port}", "tiny", timeout_s=3) as c:
            with pytest.raises(ServerUnavailableError, match="cannot reach|no answer"):
                c.predict(_images(1))
    with pytest.raises(ServerUnavailableError, match="cannot reach"):
        RestClient(f"http://127.0.0.1:{port}", "tiny", timeout_s=3).predict(_images(1))
    with GrpcClient(f"127.0.0.1:{server.port}", "nope", timeout_s=20) as c:
        with pytest.raises(NotFoundError, match="nope"):
            c.predict(_images(1))
    with GrpcClient(f"127.0.0.1:{server.port}", "tiny", timeout_s=20) as c:
        with pytest.raises(NotFoundError, match="signature"):
            c.predict(_images(1), signature="nope")
        bad = tmp_path / "bad.jpg"
        bad.write_text("hello")
        with pytest.raises(BadImageError, match="bad.jpg: not a JPEG"):
            c.predict([str(bad)])
        with pytest.raises(BadImageError, match="missing.png: cannot read"):
            c.predict([str(tmp_path / "missing.png")])
        corrupt = tmp_path / "corrupt.png"
        corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
        with pytest.raises(InvalidInputError, match="rejected the input"):
            c.predict([str(corrupt)])
        with pytest.raises(InvalidInputError, match="0..255"):
            c.predict(_images(1).astype(np.float32) + 0.5)


class socket_free_port:
    """A port nothing listens on (bound, then released at exit of the block)."""

    def __enter__(self):
        import socket

        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        return self.s.getsockname()[1]

    def __exit__(self, *exc):
        self.s.close()


def test_concurrent_clients(served):
    run, _, server = served
    xs = [_images(3, seed=10 + i) for i in range(8)]
    want = [_keras(run.model, x)["embedding"] for x in xs]

    def work(i):
        with GrpcClient(f"127.0.0.1:{server.port}", "tiny", timeout_s=60) as c:
            return [c.predict(xs[i])["embedding"] for _ in range(3)]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    for i, outs in enumerate(results):
        for o in outs:
            np.testing.assert_allclose(o, want[i], atol=1e-5)


def test_new_version_picked_up_live_and_versions_never_overwrite(tmp_path):
    m1 = make_tiny_model(seed=0)
    run = load_run(write_tiny_run(str(tmp_path / "run"), m1))
    base = tmp_path / "models" / "tiny"
    export_saved_model(run.model, str(tmp_path / "models"), run.metadata)
    x = _images(2, seed=5)
    with ModelServer(str(base), port=0, poll_interval_s=0.1) as server:
        with GrpcClient(f"127.0.0.1:{server.port}", "tiny", timeout_s=20) as c:
            np.testing.assert_allclose(c.predict(x)["embedding"], _keras(m1, x)["embedding"], atol=1e-5)
            m2 = make_tiny_model(seed=1)
            # Two exporters at once: distinct versions, nothing overwritten.
            v1_pb = open(base / "1" / "saved_model.pb", "rb").read()
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                results = list(pool.map(lambda m: export_saved_model(m, str(tmp_path / "models"), run.metadata), [m2, m2]))
            assert sorted(r.version for r in results) == [2, 3]
            assert list_versions(str(base)) == [1, 2, 3]
            assert open(base / "1" / "saved_model.pb", "rb").read() == v1_pb
            assert read_export_metadata(str(base / "3")).version == 3
            assert server.wait_for_version(3, timeout_s=30)
            out = c.predict(x)
            assert c.last_version == 3
            np.testing.assert_allclose(out["embedding"], _keras(m2, x)["embedding"], atol=1e-5)
            assert np.abs(_keras(m1, x)["embedding"] - _keras(m2, x)["embedding"]).max() > 1e-3
            # A broken newer version is skipped; the server keeps serving v3.
            os.makedirs(base / "4")
            (base / "4" / "saved_model.pb").write_bytes(b"garbage")
            server.store.refresh()
            assert server.store.current.version == 3
            assert c.predict(x)["embedding"].shape == (2, 8)


def _env():
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def test_cli_export_serve_query_and_sigterm(tmp_path):
    """The three commands of docs/serving.md, as subprocesses."""
    write_tiny_run(str(tmp_path / "run"))
    models = tmp_path / "models"
    r = subprocess.run(
        [sys.executable, "-m", "export.saved_model", "--run_dir", str(tmp_path / "run"), "--export_dir", str(models), "--model_name", "ped"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "exported ped version 1" in r.stdout
    assert read_export_metadata(str(models / "ped" / "1")).model_name == "ped"

    proc = subprocess.Popen(
        [sys.executable, "-m", "export.serve", "--model_base_path", str(models / "ped"), "--port", "0", "--grace_period", "2"],
        cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ready = {}

        def read_ready():
            for line in proc.stdout:
                if line.startswith("READY"):
                    ready["line"] = line
                    return

        t = threading.Thread(target=read_ready, daemon=True)
        t.start()
        t.join(timeout=120)
        assert "line" in ready, proc.stderr.read() if proc.poll() is not None else "server did not start"
        port = int(ready["line"].split("grpc=")[1].split()[0].rsplit(":", 1)[1])
        img = tmp_path / "p.png"
        img.write_bytes(tf.io.encode_png(_images(1)[0]).numpy())
        q = subprocess.run(
            [sys.executable, "-m", "export.client", "--server", f"127.0.0.1:{port}", "--model_name", "ped", "--output", str(tmp_path / "out.json"), "predict", str(img)],
            cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120,
        )
        assert q.returncode == 0, q.stderr[-2000:]
        import json

        rows = json.loads((tmp_path / "out.json").read_text())
        assert rows[0]["image"] == str(img) and len(rows[0]["embedding"]) == 8 and len(rows[0]["attributes"]) == 3
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_real_model_export_serve_parity(tmp_path):
    """A paper network (M-net, small input) through export -> serve -> client."""
    import keras_hpnet
    from keras_hpnet.runs import metadata_from

    model = keras_hpnet.build_model("mnet", num_classes=3, num_attributes=4, input_shape=(64, 32))
    cfg = {"model": "mnet", "input_height": 64, "input_width": 32, "attribute_names": list("abcd")}
    res = export_saved_model(model, str(tmp_path / "models"), metadata_from(model, cfg))
    x = _images(2, seed=7, h=64, w=32)
    want = _keras(model, x)
    assert want["embedding"].shape == (2, model.embedding_dim) and want["attributes"].shape == (2, 4)
    with ModelServer(os.path.dirname(res.path), port=0, poll_interval_s=5) as server:
        with GrpcClient(f"127.0.0.1:{server.port}", "mnet", timeout_s=60) as c:
            out = c.predict(x)
            for k in want:
                np.testing.assert_allclose(out[k], want[k], atol=1e-5)
            out = c.predict([tf.io.encode_png(i).numpy() for i in x])
            for k in want:
                np.testing.assert_allclose(out[k], want[k], atol=1e-5)
            assert c.model_info().attribute_names == list("abcd")
    # Exported == inference mode, not training mode (the BatchNorm trap).
    trained = np.asarray(model(x.astype(np.float32), training=True)["embedding"])
    assert np.abs(trained - want["embedding"]).max() > 1e-3


def test_evaluation_through_the_grpc_client_equals_keras(served, tmp_path):
    """One evaluation protocol for every predictor (keras_hpnet.evaluation): a
    served model queried through the official gRPC stubs scores exactly as the
    Keras model it was exported from."""
    from PIL import Image

    from keras_hpnet.datasets.base import PedestrianDataset, Record
    from keras_hpnet.evaluation import callable_predictor, evaluate, evaluate_model

    run, _, server = served
    rng = np.random.default_rng(7)
    records = {"query": [], "gallery": []}
    for i in range(12):
        split = "query" if i % 3 == 0 else "gallery"
        path = str(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (H + 7, W + 3, 3), dtype=np.uint8)).save(path)
        records[split].append(Record(path, i % 4, i // 6, rng.integers(0, 2, 3).astype(np.uint8)))
    names = run.metadata.attribute_names  # the run's: attr0..attr2
    ds = PedestrianDataset("served", {"train": records["gallery"], **records}, kind="reid", attribute_names=names)
    want = evaluate_model(run.model, ds, attribute_names=names, batch_size=5).metrics
    with GrpcClient(f"127.0.0.1:{server.port}", "tiny", timeout_s=20, batch_size=4) as c:
        got = evaluate(callable_predictor(c.predict), ds, input_size=(H, W), num_attributes=3,
                       attribute_names=names, batch_size=5).metrics
    assert set(got) == set(want) and {"rank1", "mAP", "mA"} <= set(got)
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-6), k
