"""A development model server speaking TF-Serving's PredictionService.

    python -m export.serve --model_base_path models/hacnn [--port 8500] [--rest_port 8501]

Serves the newest integer version under ``--model_base_path`` (the directory
layout TF-Serving watches, written by ``export.saved_model``), loaded the way
TF-Serving loads it (the TF1 session loader, export.serving.store), and
switches to a newer version as soon as one appears (polling; no restart).
gRPC: PredictionService ``Predict`` and ``GetModelMetadata`` and ModelService
``GetModelStatus``, so the official ``tensorflow-serving-api`` stubs work
unchanged; optionally TF-Serving's REST API (``:predict``, status, metadata).

Requests are validated before they reach TensorFlow (export.serving.core):
wrong dtype, rank or size, an empty or oversized batch, an image over the
pixel limit, undecodable image bytes -> INVALID_ARGUMENT; an unknown model,
version or signature -> NOT_FOUND. Both front ends have fixed worker pools
and bounded queues. Binds 127.0.0.1 unless told otherwise; stops gracefully
on SIGTERM/SIGINT. For production use the real TF-Serving (docs/serving.md).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import signal
import threading
import time

from export.serving.core import PredictionCore
from export.serving.signatures import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_IMAGE_PIXELS
from export.serving.store import ModelStore

log = logging.getLogger("export.serve")


class ModelServer:
    """gRPC (and optional REST) server over one model base path.

    Port 0 picks a free port; read `port` / `rest_port` after :meth:`start`.
    `workers` threads serve each front end; at most `max_pending` requests
    (gRPC) / connections (REST) are in flight or waiting, more are refused
    (RESOURCE_EXHAUSTED / HTTP 503).
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
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        max_message_bytes: int = 64 << 20,
        rest_max_body_bytes: int = 16 << 20,
        rest_read_timeout_s: float = 30.0,
        workers: int = 8,
        max_pending: int = 256,
    ):
        if not os.path.isdir(model_base_path):
            raise FileNotFoundError(f"--model_base_path {model_base_path}: no such directory")
        name = model_name or os.path.basename(os.path.normpath(model_base_path))
        self.store = ModelStore(model_base_path, name, poll_interval_s)
        self.core = PredictionCore(self.store, max_batch_size=max_batch_size, max_image_bytes=max_image_bytes,
                                   max_image_pixels=max_image_pixels)
        self.host, self.port, self.rest_port = host, port, rest_port
        self.max_message_bytes = max_message_bytes
        self.rest_max_body_bytes = rest_max_body_bytes
        self.rest_read_timeout_s = rest_read_timeout_s
        self.workers = workers
        self.max_pending = max_pending
        self._grpc = None
        self._http = None
        self._http_thread = None

    @property
    def model_name(self) -> str:
        return self.store.name

    def start(self) -> "ModelServer":
        import grpc

        from export.serving.grpc_service import servicers
        from export.serving.rest import BoundedHTTPServer, make_handler

        self.store.refresh()
        if self.store.current is None:
            log.warning("no loadable version under %s yet; waiting for one", self.store.base)
        pred, model_svc, pred_grpc, model_grpc = servicers(self.core)
        self._grpc = grpc.server(
            concurrent.futures.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="grpc"),
            options=[
                ("grpc.max_receive_message_length", self.max_message_bytes),
                ("grpc.max_send_message_length", self.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=self.max_pending,
        )
        pred_grpc.add_PredictionServiceServicer_to_server(pred, self._grpc)
        model_grpc.add_ModelServiceServicer_to_server(model_svc, self._grpc)
        bound = self._grpc.add_insecure_port(f"{self.host}:{self.port}")
        if not bound:
            raise OSError(f"cannot bind gRPC to {self.host}:{self.port}")
        self.port = bound
        self._grpc.start()
        if self.rest_port is not None:
            handler = make_handler(self.core, self.rest_max_body_bytes, self.rest_read_timeout_s)
            self._http = BoundedHTTPServer((self.host, self.rest_port), handler, workers=self.workers,
                                           max_connections=self.max_pending, read_timeout_s=self.rest_read_timeout_s)
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
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._grpc is not None:
            self._grpc.stop(grace_s).wait()
            self._grpc = None
        self.store.stop()

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
            max_image_pixels=FLAGS.max_image_pixels,
            max_message_bytes=FLAGS.max_message_mb << 20,
            rest_max_body_bytes=FLAGS.rest_max_body_mb << 20,
            rest_read_timeout_s=FLAGS.rest_read_timeout,
            workers=FLAGS.workers,
            max_pending=FLAGS.max_pending,
        ).start()
    except (FileNotFoundError, OSError, ValueError) as e:
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


def define_flags():
    from absl import flags

    flags.DEFINE_string("model_base_path", None, "directory of integer version subdirectories (models/<model_name>)")
    flags.DEFINE_string("model_name", None, "served model name (default: basename of --model_base_path)")
    flags.DEFINE_string("host", "127.0.0.1", "interface to bind (0.0.0.0 to expose; there is no authentication)")
    flags.DEFINE_integer("port", 8500, "gRPC port (0: any free port)")
    flags.DEFINE_integer("rest_port", None, "REST port (TF-Serving uses 8501; unset: no REST)")
    flags.DEFINE_float("poll_interval", 1.0, "seconds between scans for a new version")
    flags.DEFINE_integer("max_batch_size", DEFAULT_MAX_BATCH_SIZE, "largest accepted batch (checked from the declared shape)")
    flags.DEFINE_integer("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS, "largest image (height*width) accepted by serve_image_bytes")
    flags.DEFINE_integer("max_message_mb", 64, "largest accepted gRPC message, MiB")
    flags.DEFINE_integer("rest_max_body_mb", 16, "largest accepted REST request body, MiB")
    flags.DEFINE_float("rest_read_timeout", 30.0, "seconds a REST client has to send its whole request")
    flags.DEFINE_integer("workers", 8, "worker threads of each front end (gRPC, REST)")
    flags.DEFINE_integer("max_pending", 256, "requests (gRPC) / connections (REST) in flight or waiting; more are refused")
    flags.DEFINE_float("grace_period", 5.0, "seconds to finish in-flight requests on SIGTERM")
    flags.mark_flag_as_required("model_base_path")


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
