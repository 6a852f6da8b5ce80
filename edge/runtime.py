"""Run an exported keras-hpnet .tflite model with LiteRT only (no TensorFlow).

`EdgeModel` loads the model and its sidecar metadata (`model.json` beside
`model.tflite`, written by `export.tflite`), feeds raw RGB images (resized in
numpy to the model input, quantized from the input tensor's dtype and scale /
zero point when the model has integer inputs) and returns float32 embeddings
and attribute probabilities (dequantized from integer outputs).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from keras_hpnet.metadata import ModelMetadata
from edge import preprocess


class ModelError(ValueError):
    """A model or sidecar file that cannot be used (the message names it)."""


def _litert():
    """(Interpreter, load_delegate, OpResolverType) of ai_edge_litert, else tflite_runtime."""
    try:
        from ai_edge_litert import interpreter as mod
    except ImportError:
        try:
            from tflite_runtime import interpreter as mod
        except ImportError:
            raise ImportError(
                "the edge runtime needs LiteRT: pip install ai-edge-litert "
                "(or tflite-runtime where the board ships it)"
            ) from None
    return mod.Interpreter, mod.load_delegate, getattr(mod, "OpResolverType", None)


def sidecar_path(model_path: str) -> str:
    """The metadata JSON that export writes beside `model_path`."""
    root, _ = os.path.splitext(model_path)
    return root + ".json"


def make_interpreter(model_path: str, num_threads: int | None = None, delegate: str = "xnnpack"):
    """A LiteRT interpreter with tensors allocated.

    delegate: "xnnpack" (LiteRT's default CPU delegate), "none" (reference
    builtin kernels only) or the path of an external delegate library
    (e.g. a vendor NPU/GPU delegate `.so`), loaded with `load_delegate`.
    """
    Interpreter, load_delegate, OpResolverType = _litert()
    if not os.path.isfile(model_path):
        raise ModelError(f"model {model_path}: no such file")
    with open(model_path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise ModelError(f"model {model_path}: not a TFLite flatbuffer (missing the TFL3 identifier)")
    if num_threads is not None and int(num_threads) < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    kwargs = {"model_path": model_path}
    if num_threads is not None:
        kwargs["num_threads"] = int(num_threads)
    if delegate == "none":
        if OpResolverType is None:
            raise ModelError("this LiteRT build cannot disable the default delegate")
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    elif delegate not in ("xnnpack", None, ""):
        if not os.path.isfile(delegate):
            raise ModelError(f"delegate {delegate!r}: use 'xnnpack', 'none' or the path of a delegate library")
        try:
            kwargs["experimental_delegates"] = [load_delegate(delegate)]
        except (ValueError, OSError, RuntimeError) as e:
            raise ModelError(f"delegate {delegate}: cannot load ({e})") from None
    try:
        interpreter = Interpreter(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        msg = str(e).strip().splitlines()
        if delegate == "xnnpack" and "XNNPACK" in str(e) and OpResolverType is not None:
            # XNNPACK refuses some int8 graphs at prepare time (e.g. a tensor with a
            # degenerate quantization scale from an activation that was constant
            # during calibration). The builtin kernels still run them, slower.
            warnings.warn(f"model {model_path}: XNNPACK cannot run it ({msg[0] if msg else e}); "
                          "falling back to LiteRT's builtin kernels", RuntimeWarning, stacklevel=2)
            return make_interpreter(model_path, num_threads, "none")
        raise ModelError(
            f"model {model_path}: LiteRT cannot load it ({msg[0] if msg else type(e).__name__}); "
            "an export with Flex/custom ops cannot run on the edge runtime"
        ) from None
    return interpreter


def op_names(interpreter) -> list[str]:
    """Operator names of the loaded model in execution order."""
    return [d["op_name"] for d in interpreter._get_ops_details()]


def delegation(interpreter) -> dict:
    """Which ops of a loaded interpreter a delegate (XNNPACK) runs, and which stay on builtin kernels.

    Returns `ops` (the model's operators), `partitions` (delegate nodes: each is
    one contiguous piece of the graph handed to the delegate), `delegated`,
    and `builtin`: {op name: count} of the operators LiteRT runs itself. The
    builtin set is found from the graph: the producers of every input of a
    delegate node and of every model output, back to a delegate's outputs or
    the model inputs. Cheap (no invocation); LiteRT-only.
    """
    details = interpreter._get_ops_details()
    partitions = [d for d in details if d["op_name"] == "DELEGATE"]
    ops = [d for d in details if d["op_name"] != "DELEGATE"]
    producer = {int(t): d for d in ops for t in d["outputs"]}
    delegate_out = {int(t) for d in partitions for t in d["outputs"]}
    inputs = {int(d["index"]) for d in interpreter.get_input_details()}
    pending = [int(t) for d in partitions for t in d["inputs"]]
    pending += [int(d["index"]) for d in interpreter.get_output_details()]
    builtin = {}
    while pending:
        t = pending.pop()
        if t in delegate_out or t in inputs or t not in producer:
            continue
        d = producer[t]
        if d["index"] in builtin:
            continue
        builtin[d["index"]] = d["op_name"]
        pending.extend(int(x) for x in d["inputs"])
    if not partitions:  # nothing delegated: every op runs on builtin kernels
        builtin = {d["index"]: d["op_name"] for d in ops}
    counts = {}
    for name in builtin.values():
        counts[name] = counts.get(name, 0) + 1
    return {"ops": len(ops), "partitions": len(partitions), "delegated": len(ops) - len(builtin),
            "builtin": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))}


def delegation_summary(report: dict) -> str:
    """One line: `395 of 418 ops delegated in 4 partitions; builtin: GATHER 12, ...`."""
    rest = ", ".join(f"{k} {v}" for k, v in report["builtin"].items())
    return (f"{report['delegated']} of {report['ops']} ops delegated in {report['partitions']} partition(s)"
            + (f"; builtin kernels: {rest}" if rest else ""))


class EdgeModel:
    """An exported embedding/attribute model on LiteRT.

    Args:
      model_path: the `.tflite` file.
      metadata_path: its sidecar JSON; default `<model>.json` beside it.
      num_threads: interpreter threads (None: LiteRT's default).
      delegate: "xnnpack" (default), "none", or a delegate library path.
    """

    def __init__(self, model_path: str, metadata_path: str | None = None,
                 num_threads: int | None = None, delegate: str = "xnnpack"):
        self.model_path = model_path
        self.metadata_path = metadata_path or sidecar_path(model_path)
        if not os.path.isfile(self.metadata_path):
            raise ModelError(
                f"model {model_path}: sidecar metadata {self.metadata_path} not found "
                "(export.tflite writes it beside the .tflite; pass its path otherwise)"
            )
        self.metadata = ModelMetadata.load(self.metadata_path)  # ValueError names the file
        self.interpreter = make_interpreter(model_path, num_threads, delegate)
        self.num_threads = num_threads
        self.delegate = delegate
        self._bind()

    # -- tensors -----------------------------------------------------------
    def _bind(self):
        it = self.interpreter
        inputs = it.get_input_details()
        if len(inputs) != 1:
            raise ModelError(f"model {self.model_path}: expected 1 input tensor, found {len(inputs)}")
        self._in = inputs[0]
        shape = list(self._in["shape"])
        md = self.metadata
        if len(shape) != 4 or shape[3] != 3 or shape[1:3] != [md.input_height, md.input_width]:
            raise ModelError(
                f"sidecar {self.metadata_path}: input {md.input_height}x{md.input_width}x3 does not match "
                f"the model's input tensor shape {shape}"
            )
        outputs = {}
        signatures = it.get_signature_list()
        if signatures:
            key = "serving_default" if "serving_default" in signatures else next(iter(signatures))
            runner = it.get_signature_runner(key)
            for name, det in runner.get_output_details().items():
                outputs[name] = det
        else:  # export.tflite: outputs in the order the sidecar lists them
            details = it.get_output_details()
            names = list(md.extra.get("outputs") or ["embedding", "attributes"][:len(details)])
            if len(names) != len(details):
                raise ModelError(f"sidecar {self.metadata_path}: lists outputs {names} but the model has "
                                 f"{len(details)} output tensors")
            outputs = dict(zip(names, details))
        by_index = {d["index"]: d for d in it.get_output_details()}
        self._out = {}
        for name, det in outputs.items():
            full = by_index.get(det["index"], det)
            self._out[name] = full
        if "embedding" not in self._out:
            raise ModelError(f"model {self.model_path}: no 'embedding' output (outputs: {sorted(self._out)})")
        emb = int(self._out["embedding"]["shape"][-1])
        if emb != md.embedding_size:
            raise ModelError(
                f"sidecar {self.metadata_path}: embedding_size {md.embedding_size} does not match "
                f"the model's embedding output of size {emb}"
            )
        if md.attribute_names and "attributes" in self._out:
            na = int(self._out["attributes"]["shape"][-1])
            if na != len(md.attribute_names):
                raise ModelError(
                    f"sidecar {self.metadata_path}: {len(md.attribute_names)} attribute_names but the "
                    f"model outputs {na} attributes"
                )
        self.batch_size = int(shape[0]) if shape[0] > 0 else 1

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.metadata.input_height, self.metadata.input_width)

    @property
    def input_dtype(self):
        return self._in["dtype"]

    @property
    def embedding_dim(self) -> int:
        return self.metadata.embedding_size

    @property
    def attribute_names(self) -> list[str]:
        return list(self.metadata.attribute_names) if "attributes" in self._out else []

    def ops(self) -> list[str]:
        return op_names(self.interpreter)

    # -- inference ---------------------------------------------------------
    def _quantize_input(self, batch_uint8: np.ndarray) -> np.ndarray:
        dtype = self._in["dtype"]
        if dtype == np.float32:
            return batch_uint8.astype(np.float32)
        if dtype in (np.uint8, np.int8):
            scale, zero = self._in["quantization"]
            if scale == 0:  # unquantized integer input: raw pixels
                if dtype == np.int8:
                    raise ModelError(f"model {self.model_path}: int8 input without quantization parameters")
                return batch_uint8
            info = np.iinfo(dtype)
            q = np.rint(batch_uint8.astype(np.float32) / scale + zero)
            return np.clip(q, info.min, info.max).astype(dtype)
        raise ModelError(f"model {self.model_path}: unsupported input dtype {np.dtype(dtype).name}")

    @staticmethod
    def _dequantize(value: np.ndarray, det) -> np.ndarray:
        if value.dtype in (np.uint8, np.int8, np.int16):
            scale, zero = det["quantization"]
            return (value.astype(np.float32) - zero) * scale
        return value.astype(np.float32)

    def run(self, images: np.ndarray) -> dict:
        """Run a batch of prepared uint8 images [N, H, W, 3] -> dict of float32 arrays.

        `embedding` [N, D]; `attributes` [N, A] when the model has them.
        """
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        h, w = self.input_size
        if images.ndim != 4 or images.shape[1:] != (h, w, 3):
            raise ValueError(f"expected images [N, {h}, {w}, 3], got shape {images.shape}")
        it = self.interpreter
        results = {name: [] for name in self._out}
        b = self.batch_size
        for start in range(0, len(images), b):
            chunk = images[start:start + b]
            n = len(chunk)
            if n < b:  # fixed-batch model: pad the last chunk
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - n, axis=0)])
            it.set_tensor(self._in["index"], self._quantize_input(chunk))
            it.invoke()
            for name, det in self._out.items():
                results[name].append(self._dequantize(it.get_tensor(det["index"]), det)[:n])
        return {k: (np.concatenate(v) if v else np.zeros((0,) + tuple(self._out[k]["shape"][1:]), np.float32))
                for k, v in results.items()}

    def predict(self, image: np.ndarray) -> dict:
        """One raw RGB image [H, W, 3] of any size -> {'embedding': [D], 'attributes': [A]}."""
        prepared = preprocess.prepare(image, *self.input_size)
        out = self.run(prepared[None])
        return {k: v[0] for k, v in out.items()}

    def predict_paths(self, paths, on_error: str = "raise"):
        """Embed image files. on_error="skip" skips unreadable ones.

        Returns (outputs dict of [N, ...] arrays, kept paths, skipped [(path, reason)]).
        """
        h, w = self.input_size
        kept, skipped, batch = [], [], []
        for p in paths:
            try:
                batch.append(preprocess.prepare(preprocess.load_image(p), h, w))
                kept.append(p)
            except preprocess.ImageError as e:
                if on_error != "skip":
                    raise
                skipped.append((p, str(e)))
        if batch:
            out = self.run(np.stack(batch))
        else:
            out = self.run(np.zeros((0, h, w, 3), np.uint8))
        return out, kept, skipped
