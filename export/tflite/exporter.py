"""The export of a model or a whole run: files, sidecars and the parity report."""

from __future__ import annotations

import dataclasses
import os
import time

from export.tflite.calibration import calibration_images
from export.tflite.convert import QUANTIZATIONS, convert, output_names
from export.tflite.errors import ExportError
from export.tflite.ops import OpInfo, inspect_ops, op_summary
from export.tflite.parity import evaluation_dataset, parity_report, parity_table, write_parity
from keras_hpnet.fileio import write_bytes_atomic
from keras_hpnet.metadata import ModelMetadata


@dataclasses.dataclass
class Exported:
    quantization: str
    path: str
    metadata_path: str
    size_bytes: int
    ops: list[OpInfo]
    constant_activations: list[str] = dataclasses.field(default_factory=list)  # int8: see widen_degenerate_ranges


def export_model(model, metadata: ModelMetadata, quantization: str, out_path: str, *, io_type: str = "float32",
                 representative_images=None, verbose: bool = True) -> Exported:
    """Convert, check ops, write `out_path` and its sidecar atomically."""
    t0 = time.time()
    notes: dict = {}
    flatbuffer = convert(model, quantization, io_type=io_type, representative_images=representative_images,
                         report=notes)
    ops = inspect_ops(flatbuffer)
    md = dataclasses.replace(metadata, quantization=quantization,
                             input_dtype=io_type if quantization == "int8" else "float32",
                             extra=dict(metadata.extra, outputs=output_names(model), io_type=io_type if quantization == "int8" else "float32",
                                        float_ops=sorted({o.name for o in ops if o.float_compute})
                                        if quantization == "int8" else []))
    write_bytes_atomic(out_path, flatbuffer)
    meta_path = os.path.splitext(out_path)[0] + ".json"
    md.save(meta_path)
    constant = list(notes.get("constant_activations") or [])
    if verbose:
        print(f"\n{quantization}: {out_path} ({len(flatbuffer) / 1e6:.2f} MB, {time.time() - t0:.1f} s)")
        print(op_summary(ops))
        if constant:
            print(f"{len(constant)} activation(s) were zero for every calibration image (dead ReLU or zero "
                  f"weights; quantized with the range [0, 1]): {', '.join(n.split(';')[0] for n in constant[:3])}"
                  + (", ..." if len(constant) > 3 else ""))
    return Exported(quantization, out_path, meta_path, len(flatbuffer), ops, constant)


def convert_run(run_dir: str, quantizations, *, io_type: str | None = None, out: str | None = None,
               num_calibration: int = 100, images_dir: str | None = None, parity: bool = True,
               max_eval_images: int | None = None, num_threads: int | None = None,
               verbose: bool = True) -> tuple[list[Exported], dict | None]:
    """Export `run_dir` in each of `quantizations`; write the parity report beside them."""
    from keras_hpnet.runs import load_run

    quantizations = list(quantizations)
    for q in quantizations:
        if q not in QUANTIZATIONS:
            raise ExportError(f"quantization {q!r}: choose one of {', '.join(QUANTIZATIONS)} or all")
    run = load_run(run_dir)
    name = run.metadata.model_name
    if out and out.endswith(".tflite"):
        if len(quantizations) != 1:
            raise ExportError("--out names one .tflite file: give one quantization, or a directory")
        paths = {quantizations[0]: out}
        out_dir = os.path.dirname(os.path.abspath(out))
    else:
        out_dir = out or os.path.join(run_dir, "tflite")
        paths = {q: os.path.join(out_dir, f"{name}_{q}.tflite") for q in quantizations}
    size = tuple(run.model.input_size)
    calib = None
    if "int8" in quantizations:
        calib = calibration_images(run.config, size, num_calibration, seed=int(run.config.get("seed") or 0),
                                   images_dir=images_dir)
    exported = []
    for q in quantizations:
        io = (io_type or "uint8") if q == "int8" else "float32"
        frame_model = getattr(run.model, "frame_model", run.model)  # a video model exports its per-frame model
        exported.append(export_model(frame_model, run.metadata, q, paths[q], io_type=io,
                                     representative_images=calib, verbose=verbose))
    report = None
    if parity:
        dataset = evaluation_dataset(run.config, max_eval_images)
        report = parity_report(run.model, dataset, exported, attribute_names=run.metadata.attribute_names or None,
                               num_threads=num_threads, dataset_name=run.config.get("dataset"),
                               info={"run_dir": os.path.abspath(run_dir), "model": name})
        report = write_parity(os.path.join(out_dir, "parity.json"), report)
        if verbose:
            print(f"\nparity on {report['evaluation']} ({os.path.join(out_dir, 'parity.json')}):")
            print(parity_table(report))
    return exported, report
