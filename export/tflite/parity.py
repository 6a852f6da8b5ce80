"""The parity report: every exported variant vs the Keras float model on the run's evaluation split.

A thin user of keras_hpnet.evaluation: the Keras model and each `.tflite`
file (through the edge runtime, what a device runs) are predictors evaluated
by the same protocol on the same images; the report adds the embedding cosine
and attribute probability differences to the float reference.
"""

from __future__ import annotations

import json
import os

import numpy as np

from export.tflite.convert import QUANTIZATIONS
from keras_hpnet.fileio import write_text_atomic

# The metrics of each variant in the report (keras_hpnet.evaluation keys).
REPORT_METRICS = ("rank1", "mAP", "mA")


def evaluation_dataset(config: dict, max_images: int | None = None, seed: int = 0):
    """The run's dataset with its evaluation split cut to `max_images` (keras_hpnet.evaluation.subsample)."""
    from export.tflite.calibration import run_dataset
    from keras_hpnet.evaluation import subsample

    return subsample(run_dataset(config), max_images, seed)


def describe(dataset, name: str | None = None) -> str:
    """What is evaluated, e.g. `synthetic query (20) + gallery (40)` (`name`: default the dataset's)."""
    splits, name = dataset.splits, name or dataset.name
    if splits.get("query") and splits.get("gallery"):
        return f"{name} query ({len(splits['query'])}) + gallery ({len(splits['gallery'])})"
    return f"{name} test ({len(splits.get('test') or [])})"


def tflite_predictor(model_path: str, num_threads: int | None = None):
    """The predictor of an exported file: the edge runtime's `EdgeModel.run`."""
    from edge.runtime import EdgeModel

    return EdgeModel(model_path, num_threads=num_threads).run


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two [N, D] arrays."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(den, 1e-12)


def compare(reference: dict, outputs: dict) -> dict:
    """Embedding cosine (mean, min) and attribute probability difference vs the float reference."""
    cos = cosine(reference["embedding"], outputs["embedding"])
    res = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}
    if "attributes" in reference and "attributes" in outputs:
        diff = np.abs(reference["attributes"] - outputs["attributes"])
        res["attributes_mean_abs_diff"] = float(diff.mean())
        res["attributes_max_abs_diff"] = float(diff.max())
        # Decisions that quantization changed (prediction = prob > 0.5, as keras_hpnet.metrics.attribute_metrics).
        res["attributes_flipped"] = float(np.mean((reference["attributes"] > 0.5) != (outputs["attributes"] > 0.5)))
    return res


PARITY_TARGET_POINTS = 1.0


def parity_table(report: dict) -> str:
    cols = [("variant", 10), ("size_MB", 9), ("cos_mean", 9), ("cos_min", 9), ("rank1", 7), ("mAP", 7), ("mA", 7),
            ("attr_flip%", 11)]
    lines = ["".join(f"{c:>{w}}" for c, w in cols)]
    for name, row in report["variants"].items():
        cells = [name,
                 f"{row['size_bytes'] / 1e6:.2f}" if row.get("size_bytes") else "-",
                 f"{row['cosine_mean']:.4f}" if "cosine_mean" in row else "-",
                 f"{row['cosine_min']:.4f}" if "cosine_min" in row else "-"]
        for k in ("rank1", "mAP", "mA"):
            cells.append(f"{100 * row[k]:.1f}" if k in row else "-")
        cells.append(f"{100 * row['attributes_flipped']:.2f}" if "attributes_flipped" in row else "-")
        lines.append("".join(f"{c:>{w}}" for c, (_, w) in zip(cells, cols)))
    t = report.get("target")
    if t:
        lines.append(f"target: int8 within {t['points']} point(s) of float on {', '.join(t['metrics']) or '-'}: "
                     + ("met" if t["met"] else "NOT met") + (f" ({t['detail']})" if t.get("detail") else ""))
    return "\n".join(lines)


def _target(report: dict) -> dict | None:
    rows = report["variants"]
    if "int8" not in rows or "keras" not in rows:
        return None
    ref, q = rows["keras"], rows["int8"]
    checked = [k for k in ("rank1", "mA") if k in ref and k in q]
    gaps = {k: 100 * (ref[k] - q[k]) for k in checked}
    return {"points": PARITY_TARGET_POINTS, "metrics": checked,
            "met": all(g <= PARITY_TARGET_POINTS for g in gaps.values()),
            "detail": ", ".join(f"{k} {-g:+.2f} points" for k, g in gaps.items())}


def write_parity(path: str, report: dict) -> dict:
    """Merge `report` into the parity report at `path` (JSON; table beside it as .txt); returns the merged report."""
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as f:
                old = json.load(f)
            if old.get("evaluation") == report.get("evaluation"):
                merged = dict(old.get("variants", {}))
                merged.update(report["variants"])
                report = dict(report, variants=merged)
        except (OSError, json.JSONDecodeError):
            pass  # unreadable old report: replaced
    order = ["keras"] + [q for q in QUANTIZATIONS]
    report["variants"] = dict(sorted(report["variants"].items(),
                                     key=lambda kv: order.index(kv[0]) if kv[0] in order else 99))
    report["target"] = _target(report)
    write_text_atomic(path, json.dumps(report, indent=2) + "\n")
    write_text_atomic(os.path.splitext(path)[0] + ".txt", parity_table(report) + "\n")
    return report


def parity_report(model, dataset, exported, *, attribute_names=None, num_threads=None, dataset_name=None,
                  info=None) -> dict:
    """The report (not yet written) of `exported` (`Exported` files) against `model` on `dataset`.

    `dataset_name`: how the report names the dataset (the run's config name);
    `info`: fields recorded first, as they are (run_dir, model name).
    """
    from keras_hpnet.evaluation import evaluate_model

    def evaluate(predict_fn=None):
        result = evaluate_model(model, dataset, predict_fn=predict_fn, attribute_names=attribute_names)
        return result, {k: result.metrics[k] for k in REPORT_METRICS if k in result.metrics}

    ref, row = evaluate()
    reference = ref.outputs()
    report = dict(info or {}, evaluation=describe(dataset, dataset_name), reference="keras float32 (model.keras)",
                  variants={"keras": row})
    for e in exported:
        result, metrics = evaluate(tflite_predictor(e.path, num_threads))
        row = {"path": os.path.basename(e.path), "size_bytes": e.size_bytes}
        row.update(compare(reference, result.outputs()))
        row.update(metrics)
        report["variants"][e.quantization] = row
    return report
