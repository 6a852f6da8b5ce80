"""Calibrate a run's open-set match threshold: ``python -m training.calibrate --run_dir RUN``.

Embeds the run's query and gallery splits (or `--dataset`/`--data_dir`'s),
computes genuine / impostor pair distances, the ROC, AUC, EER, TPR at FPR
1e-2/1e-3/1e-4 and the threshold for `--target_fpr` (and for
`--target_precision` at rank 1), and writes, atomically:

    RUN/calibration.json   the figures (keras_hpnet.retrieval.calibration.calibrate)
    RUN/calibration.png    genuine/impostor histograms with the threshold, and the ROC

Exporters copy the threshold into the model metadata with
`keras_hpnet.retrieval.calibration.apply_calibration`. See docs/retrieval.md.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

from keras_hpnet import runs

FLAGS = flags.FLAGS


def define_flags():
    """Flags, defined when the CLI runs (not on import; see training.evaluate)."""
    flags.DEFINE_string("run_dir", None, "Training run directory (config.json + model.keras).")
    flags.DEFINE_string("dataset", None, "Calibrate on this re-id dataset instead of the run's.")
    flags.DEFINE_string("data_dir", None, "Root of --dataset (default: the run's data_dir for the run's dataset).")
    flags.DEFINE_float("target_fpr", 1e-3, "False positive rate the threshold is chosen for.")
    flags.DEFINE_float("target_precision", None, "Also report the threshold for this rank-1 precision.")
    flags.DEFINE_enum("distance", "euclidean", ["euclidean", "cosine"], "Distance between embeddings.")
    flags.DEFINE_integer("max_impostor_pairs", 2_000_000, "Impostor pairs (sampled with --seed above this).")
    flags.DEFINE_integer("max_genuine_pairs", 2_000_000, "Genuine pairs (sampled with --seed above this).")
    flags.DEFINE_integer("seed", 0, "Seed of the pair sampling.")
    flags.DEFINE_integer("batch_size", 64, "Inference batch size.")


def run(run_dir: str, *, dataset=None, data_dir=None, target_fpr=1e-3, target_precision=None,
        distance="euclidean", max_impostor_pairs=2_000_000, max_genuine_pairs=2_000_000, seed=0,
        batch_size=64, verbose=True) -> dict:
    """Calibrate `run_dir`; returns the report written to RUN/calibration.json."""
    from keras_hpnet.retrieval import calibration as cal
    from keras_hpnet.viz import save_png
    from keras_hpnet.evaluation import extract, keras_predictor

    if not 0 < target_fpr < 1:
        raise ValueError(f"--target_fpr={target_fpr}: must be in (0, 1)")
    if target_precision is not None and not 0 < target_precision <= 1:
        raise ValueError(f"--target_precision={target_precision}: must be in (0, 1]")
    config = runs.read_run_config(run_dir, required=("dataset",))
    ds = runs.load_run_dataset(config, dataset, data_dir)
    if not (ds.splits.get("query") and ds.splits.get("gallery")):
        raise ValueError(f"dataset {ds.name}: calibration needs 'query' and 'gallery' splits (a re-id dataset)")
    model = runs.load_run_model(run_dir)
    size = tuple(int(s) for s in model.input_size)
    predict = keras_predictor(model)
    q = extract(predict, ds.splits["query"], input_size=size, batch_size=batch_size)
    g = extract(predict, ds.splits["gallery"], input_size=size, batch_size=batch_size)
    report, genuine, impostor = cal.calibrate(
        q["embedding"], q["pids"], q["camids"], g["embedding"], g["pids"], g["camids"], distance=distance,
        target_fpr=target_fpr, target_precision=target_precision, max_impostor_pairs=max_impostor_pairs,
        max_genuine_pairs=max_genuine_pairs, seed=seed)
    report.update({"dataset": ds.name, "model": config["model"],
                   "num_skipped_images": int(q["num_skipped"] + g["num_skipped"])})
    fpr, tpr, _ = cal.roc_curve(genuine, impostor)
    title = (f"{config['model']} on {ds.name}: AUC {report['auc']:.4f}, EER {report['eer']:.4f}, "
             f"threshold {report['threshold']:.4g} @ FPR {target_fpr:g}")
    save_png(cal.calibration_picture(genuine, impostor, fpr, tpr, report["threshold"], title=title),
             os.path.join(run_dir, cal.CALIBRATION_PICTURE))
    path = cal.write_calibration(run_dir, report)
    if verbose:
        print(title, flush=True)
        print(json.dumps({k: report[k] for k in ("tpr_at_fpr", "num_genuine_pairs", "num_impostor_pairs")}),
              flush=True)
        for note in report["notes"]:
            print(f"note: {note}", flush=True)
        print(f"wrote {path} and {os.path.join(run_dir, cal.CALIBRATION_PICTURE)}", flush=True)
    return report


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.run_dir:
        print("training.calibrate: error: --run_dir is required", file=sys.stderr)
        sys.exit(2)
    try:
        run(FLAGS.run_dir, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, target_fpr=FLAGS.target_fpr,
            target_precision=FLAGS.target_precision, distance=FLAGS.distance,
            max_impostor_pairs=FLAGS.max_impostor_pairs, max_genuine_pairs=FLAGS.max_genuine_pairs,
            seed=FLAGS.seed, batch_size=FLAGS.batch_size)
    except (ValueError, FileNotFoundError) as e:  # RunError, DatasetError are ValueErrors
        print(f"training.calibrate: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    define_flags()
    app.run(main)
