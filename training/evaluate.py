"""Evaluate a training run: ``python -m training.evaluate --run_dir DIR``.

Loads `DIR/config.json` and `DIR/model.keras` (docs/design.md, "A training
run directory"), recomputes the metrics on the run's dataset or on another
(`--dataset`, `--data_dir`, `--dataset_option`: cross-domain, with
`--attribute_map` for attribute names that differ), optionally with k-reciprocal re-ranking
(`--rerank`), prints a table and writes, atomically, to `--out`
(default `DIR/eval`):

    metrics.json        flat metrics (the keys of training.fit's metrics.json)
    evaluation.json     metrics, per-attribute table, notes, what was evaluated
    per_attribute.csv   one row per attribute (models with attributes)
    ranked_lists_NN.png queries and their top-10 gallery (green: same identity);
                        ranked_lists_rerank_NN.png with --rerank
    attention_NN.png    attention overlays (HA-CNN soft maps + hard regions,
                        HP-Net MDA maps)
    attributes.png      per-attribute mA term and positive ratio

See docs/evaluation.md.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys

from absl import app, flags

from keras_hpnet import runs

FLAGS = flags.FLAGS


def define_flags():
    """The CLI's flags, defined when it runs (not on import): the library
    functions here (`run`, ...) are imported next to `training.fit`, whose
    flags share names (--dataset, --data_dir, --batch_size)."""
    flags.DEFINE_string("run_dir", None, "Training run directory (holds config.json and model.keras).")
    flags.DEFINE_string("dataset", None, "Evaluate on this dataset instead of the run's.")
    flags.DEFINE_string("data_dir", None,
                        "Root of --dataset (default: the run's data_dir when the dataset is the run's).")
    flags.DEFINE_string("attribute_map", None, "Cross-domain: a file mapping the run's attribute names to "
                        "--dataset's (JSON object or two-column text; docs/evaluation.md).")
    flags.DEFINE_multi_string("dataset_option", None, "Reader option key=value of --dataset, repeatable (as "
                              "training.fit's; e.g. synthetic sizes num_train_ids=8), over the run's own options.")
    flags.DEFINE_boolean("rerank", False, "Also report k-reciprocal re-ranked re-id metrics (*_rerank).")
    flags.DEFINE_string("out", None, "Output directory (default: RUN_DIR/eval).")
    flags.DEFINE_integer("batch_size", 64, "Inference batch size.")
    flags.DEFINE_boolean("pictures", True, "Write the pictures (ranked lists, attention, attribute chart).")
    flags.DEFINE_integer("num_queries", 8, "Queries shown in ranked-list pictures.")
    flags.DEFINE_integer("queries_per_picture", 4, "Queries per ranked-list picture.")
    flags.DEFINE_integer("top_k", 10, "Gallery images shown per query.")
    flags.DEFINE_integer("num_attention", 3, "Images with attention overlays.")


REQUIRED_CONFIG_KEYS = ("model", "dataset")  # besides keras_hpnet.runs.REQUIRED_CONFIG_KEYS
# The pictures this command writes (earlier ones in --out are replaced, nothing else is touched).
PICTURE_NAME = re.compile(r"^(ranked_lists(_rerank)?|attention)_\d{2}\.png$|^attributes\.png$")


class EvaluateError(ValueError):
    """Bad input to training.evaluate (message names the file or flag)."""


# -- the run directory (read and checked by keras_hpnet.runs) ------------------------------

def read_run_config(run_dir: str) -> dict:
    """`run_dir/config.json` as a dict, checked, and model.keras present; EvaluateError naming the problem."""
    if not run_dir:
        raise EvaluateError("--run_dir is required")
    try:
        return runs.read_run_config(run_dir, required=REQUIRED_CONFIG_KEYS)
    except runs.RunError as e:
        raise EvaluateError(str(e)) from None


def resolve_dataset(config: dict, dataset: str | None, data_dir: str | None):
    """(name, root, load options) of the dataset to evaluate on (keras_hpnet.runs.run_dataset_args)."""
    from keras_hpnet.datasets.combine import split_roots

    try:
        name, root, options = runs.run_dataset_args(config, dataset, data_dir)
        parts = split_roots(name, root)
    except ValueError as e:
        raise EvaluateError(str(e)) from None
    for part, part_root in parts:
        if part_root and not os.path.isdir(part_root) and not part.startswith(runs.GENERATED_PREFIX):
            raise EvaluateError(f"--data_dir={part_root}: no such directory")
    return name, root, options


def load_run_model(run_dir: str):
    try:
        return runs.load_run_model(run_dir)
    except runs.RunError as e:
        raise EvaluateError(str(e)) from None


# -- output -----------------------------------------------------------------------------

def format_table(metrics: dict) -> str:
    """The metrics as an aligned two-column table (percentages)."""
    if not metrics:
        return "(no metrics)"
    width = max(len(k) for k in metrics)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{k:<{width}}  {100 * v:6.2f}%" for k, v in metrics.items()]
    return "\n".join(lines)


def per_attribute_csv(rows: list) -> str:
    buf = io.StringIO()
    fields = ["name", "mA", "pos_acc", "neg_acc", "pos_ratio", "num_pos", "num_neg"]
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{r[k]:.6f}" if isinstance(r.get(k), float) else r.get(k)) for k in fields})
    return buf.getvalue()


# -- the command ------------------------------------------------------------------------

def run(run_dir: str, *, dataset: str | None = None, data_dir: str | None = None, rerank: bool = False,
        out: str | None = None, batch_size: int = 64, pictures: bool = True, num_queries: int = 8,
        queries_per_picture: int = 4, top_k: int = 10, num_attention: int = 3, verbose: bool = True,
        attribute_map: str | None = None, dataset_option=()) -> dict:
    """Evaluate the run in `run_dir`; returns the flat metrics (also written to `out`).
    `attribute_map`: file of run attribute names -> the dataset's (keras_hpnet.evaluation.AttributeMap);
    `dataset_option`: "key=value" reader options of the dataset (training.fit's syntax)."""
    from keras_hpnet import datasets, viz
    from keras_hpnet.evaluation import AttributeMap, evaluate_model
    from keras_hpnet.fileio import write_text_atomic

    if batch_size < 1:
        raise EvaluateError(f"--batch_size={batch_size}: must be >= 1")
    if top_k < 1:
        raise EvaluateError(f"--top_k={top_k}: must be >= 1")
    config = read_run_config(run_dir)  # fail fast: files and names before any model
    name, root, options = resolve_dataset(config, dataset, data_dir)
    from training.config import ConfigError, TrainConfig

    try:
        options.update(TrainConfig(dataset_option=tuple(dataset_option or ())).reader_options)
    except ConfigError as e:
        raise EvaluateError(str(e)) from None
    try:
        mapping = AttributeMap.read(attribute_map) if attribute_map else None
    except ValueError as e:
        raise EvaluateError(f"--attribute_map: {e}") from None
    out = out or os.path.join(run_dir, "eval")
    if os.path.exists(out) and not os.path.isdir(out):
        raise EvaluateError(f"--out={out}: exists and is not a directory")
    try:
        ds = datasets.load(name, root, **options)
    except (ValueError, TypeError) as e:  # unknown name or option, missing root, unreadable files (DatasetError)
        source = "--dataset" if dataset else "config.json field 'dataset'"
        raise EvaluateError(f"{source}={name!r}" + (f" (data_dir {root})" if root else "") + f": {e}") from None
    model = load_run_model(run_dir)
    try:
        names = runs.run_attribute_names(runs.RunPlan.from_dict(config), model) or None  # None: by position
    except runs.RunError as e:
        raise EvaluateError(str(e)) from None
    try:
        result = evaluate_model(model, ds, batch_size=batch_size, rerank=rerank, attribute_names=names,
                                attribute_map=mapping)
    except ValueError as e:
        raise EvaluateError(str(e)) from None

    os.makedirs(out, exist_ok=True)
    written = []

    def save(picture, filename):
        if picture is not None:
            written.append(viz.save_png(picture, os.path.join(out, filename)))

    if pictures:
        input_size = tuple(int(s) for s in model.input_size)
        shown = ds
        if ds.kind == "video":  # a tracklet is shown by its middle frame (datasets.base.key_frame_records)
            from keras_hpnet.datasets.base import key_frame_records

            shown = datasets.PedestrianDataset(ds.name, {k: key_frame_records(v) for k, v in ds.splits.items()},
                                               kind="reid", root=ds.root)
        for reranked, stem in ((False, "ranked_lists"), (True, "ranked_lists_rerank")):
            for k, pic in enumerate(viz.ranked_list_pictures(result, shown, input_size=input_size,
                                                             num_queries=num_queries, per_picture=queries_per_picture,
                                                             top_k=top_k, reranked=reranked), start=1):
                save(pic, f"{stem}_{k:02d}.png")
        if hasattr(model, "attention_maps"):
            source = shown.splits.get("query") or shown.splits.get("test") or []
            for k, pic in enumerate(viz.attention_pictures(model.attention_maps, source, input_size=input_size,
                                                           count=num_attention, title=f"{config['model']} attention"),
                                    start=1):
                save(pic, f"attention_{k:02d}.png")
        save(viz.attribute_picture(result, ds.name), "attributes.png")

    details = {
        "run_dir": os.path.abspath(run_dir),
        "model": config["model"],
        "dataset": ds.name,
        "data_dir": root,
        "rerank": bool(rerank),
        "attribute_map": attribute_map,
        "metrics": result.metrics,
        "num_query": 0 if result.query is None else int(len(result.query["pids"])),
        "num_gallery": 0 if result.gallery is None else int(len(result.gallery["pids"])),
        "num_test": 0 if result.test is None else int(len(result.test["pids"])),
        "attribute_split": result.attribute_split,
        "per_attribute": result.per_attribute,
        "notes": result.notes,
        "pictures": [os.path.basename(p) for p in written],
    }
    for stale in os.listdir(out):  # pictures of an earlier evaluation into the same --out
        path = os.path.join(out, stale)
        if PICTURE_NAME.match(stale) and path not in written:
            os.remove(path)
    write_text_atomic(os.path.join(out, "metrics.json"), json.dumps(result.metrics, indent=2) + "\n")
    write_text_atomic(os.path.join(out, "evaluation.json"), json.dumps(details, indent=2) + "\n")
    if result.per_attribute:
        write_text_atomic(os.path.join(out, "per_attribute.csv"), per_attribute_csv(result.per_attribute))
    if verbose:
        print(f"{config['model']} on {ds.name}" + (" (re-ranked too)" if rerank else ""), flush=True)
        print(format_table(result.metrics), flush=True)
        for note in result.notes:
            print(f"note: {note}", flush=True)
        print(f"wrote {os.path.join(out, 'metrics.json')} and {len(written)} picture(s) in {out}", flush=True)
    return result.metrics


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from keras_hpnet.cpu import prefer_onednn

    prefer_onednn()  # before TensorFlow loads (docs/models.md, "oneDNN on AVX2")
    from keras_hpnet.datasets import DatasetError

    try:
        run(FLAGS.run_dir, dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, rerank=FLAGS.rerank, out=FLAGS.out,
            batch_size=FLAGS.batch_size, pictures=FLAGS.pictures, num_queries=FLAGS.num_queries,
            queries_per_picture=FLAGS.queries_per_picture, top_k=FLAGS.top_k, num_attention=FLAGS.num_attention,
            attribute_map=FLAGS.attribute_map, dataset_option=FLAGS.dataset_option)
    except (EvaluateError, DatasetError, FileNotFoundError) as e:
        print(f"training.evaluate: error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    define_flags()
    app.run(main)
