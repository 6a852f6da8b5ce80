"""Model versions loaded the way ``tensorflow_model_server`` loads them.

Each served version is a ``tf.compat.v1.Session`` in its own graph, filled by
the TF1 session loader (``tf.compat.v1.saved_model.load``: the graph, then
the variables restored by the SavedModel's saver), and run with
``Session.run`` on the SignatureDef's tensor names. A SavedModel that only
``tf.saved_model.load`` can run (issue 12 §1) fails here as it would in
TF-Serving: every signature is run once on a warm-up input when the version
loads, and a version that fails is logged and not served.

:class:`ModelStore` serves the newest loadable version under a model base
path (the layout of export.saved_model, versions by
:func:`export.saved_model.list_versions`), polls for newer ones, and leases
the served version to each request, so a replaced version's session closes
only after its last request finished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time

import numpy as np

from export.saved_model import list_versions
from export.serving.signatures import ServingError

log = logging.getLogger("export.serve")

INIT_OP_SIGNATURE = "__saved_model_init_op"


@dataclasses.dataclass
class Signature:
    """One SignatureDef, ready to feed: input specs and tensor names."""

    inputs: dict  # name -> tf.TensorSpec
    input_tensors: dict  # name -> graph tensor name
    output_tensors: dict  # name -> graph tensor name

    @property
    def outputs(self) -> list[str]:
        return sorted(self.output_tensors)

    @classmethod
    def from_def(cls, signature_def) -> "Signature":
        import tensorflow as tf

        specs = {
            k: tf.TensorSpec(tf.TensorShape(v.tensor_shape), tf.dtypes.as_dtype(v.dtype))
            for k, v in signature_def.inputs.items()
        }
        return cls(
            inputs=specs,
            input_tensors={k: v.name for k, v in signature_def.inputs.items()},
            output_tensors={k: v.name for k, v in signature_def.outputs.items()},
        )


class ServedVersion:
    """One loaded version: its session, signatures and SignatureDef protos."""

    def __init__(self, version: int, path: str, session, signatures: dict, signature_defs: dict):
        self.version = version
        self.path = path
        self.session = session
        self.signatures = signatures  # name -> Signature
        self.signature_defs = signature_defs  # name -> meta_graph_pb2.SignatureDef
        self._lock = threading.Lock()
        self._users = 0
        self._retired = False

    def run(self, signature: Signature, feeds: dict, outputs) -> dict:
        """Session.run of `signature` on `feeds` (input name -> numpy)."""
        return self.session.run(
            {k: signature.output_tensors[k] for k in outputs},
            {signature.input_tensors[k]: v for k, v in feeds.items()},
        )

    def _acquire(self) -> None:
        with self._lock:
            self._users += 1

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            close = self._retired and self._users == 0
        if close:
            self.session.close()

    def retire(self) -> None:
        """Close the session now, or when the last leased request ends."""
        with self._lock:
            self._retired = True
            close = self._users == 0
        if close:
            self.session.close()


def _warm_up_feeds(signature: Signature) -> dict | None:
    """A batch of one for each input (zeros; a 1x1 PNG for strings), or None
    when an input has a free dimension besides the batch."""
    import tensorflow as tf

    feeds = {}
    for name, spec in signature.inputs.items():
        dims = spec.shape.as_list() if spec.shape.rank is not None else None
        if dims is None or any(d is None for d in dims[1:]):
            return None
        shape = [1 if d is None else d for d in dims]
        if spec.dtype == tf.string:
            png = tf.io.encode_png(tf.zeros((1, 1, 3), tf.uint8)).numpy()
            feeds[name] = np.full(shape, png, dtype=object)
        else:
            feeds[name] = np.zeros(shape, spec.dtype.as_numpy_dtype)
    return feeds


def load_version(path: str, version: int) -> ServedVersion:
    """Load `path` with the TF1 session loader and run every signature once."""
    import tensorflow as tf

    session = tf.compat.v1.Session(graph=tf.Graph())
    try:
        meta = tf.compat.v1.saved_model.load(session, [tf.saved_model.SERVING], path)
        defs = {k: v for k, v in meta.signature_def.items() if k != INIT_OP_SIGNATURE}
        served = ServedVersion(version, path, session, {k: Signature.from_def(v) for k, v in defs.items()}, defs)
        for name, sig in served.signatures.items():
            feeds = _warm_up_feeds(sig)
            if feeds is None:
                continue
            try:
                served.run(sig, feeds, sig.outputs)
            except tf.errors.OpError as e:
                raise RuntimeError(f"signature {name!r} fails on a warm-up input: {first_line(e)}") from None
        return served
    except BaseException:
        session.close()
        raise


def first_line(error) -> str:
    """The informative first line of a TensorFlow error message."""
    text = getattr(error, "message", None) or str(error)
    for line in text.strip().splitlines():
        line = line.strip()
        if line.startswith("{{function_node"):
            line = line.split("}}", 1)[-1].strip()
        if line and not line.startswith(("Graph execution error", "Detected at node")):
            return line
    return text.strip()


class ModelStore:
    """The servable: newest loadable version under `model_base_path`, polled."""

    def __init__(self, model_base_path: str, model_name: str, poll_interval_s: float = 1.0):
        self.base = model_base_path
        self.name = model_name
        self.poll_interval_s = poll_interval_s
        self._current: ServedVersion | None = None
        self._failed: dict[int, float] = {}  # version -> saved_model.pb mtime that failed
        self._refresh_lock = threading.Lock()  # one load at a time
        self._swap_lock = threading.Lock()  # current version vs leases
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> ServedVersion | None:
        return self._current

    def refresh(self) -> None:
        """Load the newest version if it is not the one served (errors are logged)."""
        with self._refresh_lock:
            for v in reversed(list_versions(self.base)):
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
                    served = load_version(path, v)
                except Exception as e:  # a broken version must not stop the server
                    self._failed[v] = mtime
                    log.error("model %s version %d at %s failed to load: %s", self.name, v, path, first_line(e))
                    continue
                with self._swap_lock:
                    old, self._current = self._current, served
                if old is not None:
                    old.retire()
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
        """Stop polling and close the served version (after its requests)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._swap_lock:
            old, self._current = self._current, None
        if old is not None:
            old.retire()

    def resolve(self, name: str, version: int | None = None, label: str = "") -> ServedVersion:
        """The served version a request names, or NOT_FOUND."""
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

    @contextlib.contextmanager
    def lease(self, name: str, version: int | None = None, label: str = ""):
        """:meth:`resolve`, holding the version open until the block ends."""
        with self._swap_lock:
            served = self.resolve(name, version, label)
            served._acquire()
        try:
            yield served
        finally:
            served._release()
