"""What reading a dataset skipped, in one place: `dataset.report` (docs/datasets.md).

The readers count what they skip (`SkipCounter`: odd file names, trimmed
annotation entries, duplicated manifest rows, files that are not images); the
image check of the input pipeline (`keras_hpnet.data.validate`) adds, per
split, the unreadable images it skips and the images it decodes with Pillow.
`write_report(dataset, path)` writes both as JSON (a run's `data_report.json`).
No TensorFlow.
"""

from __future__ import annotations

import collections
import json
import warnings

from keras_hpnet.data import validate  # the pipeline's image check; no TensorFlow

REPORT_FORMAT = 1
EXAMPLES = 3  # file names kept per reason


class DatasetWarning(UserWarning):
    """Something was skipped while reading a dataset (counted, named)."""


class SkipCounter:
    """Counts skipped items of one reader by reason (a few examples each); one warning per reason."""

    def __init__(self, where: str):
        self.where = where
        self.counts = collections.Counter()
        self.examples: dict = {}

    def add(self, reason: str, example: str):
        self.counts[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < EXAMPLES:
            kept.append(validate.display_path(example))

    def warn(self):
        for reason, n in self.counts.items():
            where = validate.display_path(self.where)
            warnings.warn(f"{where}: skipped {n} item(s): {reason} (e.g. {self.examples[reason][0]})",
                          DatasetWarning, stacklevel=3)
        return dict(self.counts)

    def to_dict(self) -> dict:
        return {reason: {"count": n, "examples": list(self.examples[reason])} for reason, n in self.counts.items()}


class DataReport:
    """Skips of a dataset: `readers` {where: {reason: {count, examples}}} and
    `images` {split: {num_records, num_readable, skipped, decoded_with_pillow}}
    (the pipeline's `PipelineReport.counts()` of that split)."""

    def __init__(self, counters=()):
        self.readers: dict = {}
        self.images: dict = {}
        for counter in counters:
            self.add_reader(counter)

    def add_reader(self, counter: SkipCounter) -> None:
        if counter.counts:
            merged = self.readers.setdefault(validate.display_path(counter.where), {})
            for reason, entry in counter.to_dict().items():
                old = merged.setdefault(reason, {"count": 0, "examples": []})
                old["count"] += entry["count"]
                old["examples"] = (old["examples"] + entry["examples"])[:EXAMPLES]

    def add_images(self, split: str, pipeline_report) -> None:
        """Merge the pipeline's image check of `split` (a keras_hpnet.data.PipelineReport)."""
        self.images[split] = {"num_records": pipeline_report.num_records,
                              "num_readable": pipeline_report.num_good, **pipeline_report.counts(EXAMPLES)}

    def check_images(self, dataset) -> None:
        """Run the pipeline's image check on every split of `dataset` (cached per
        file: after training or evaluation this costs a `stat` per image).
        A video split is checked frame by frame (`base.frame_records`)."""
        from keras_hpnet.datasets.base import frame_records  # base imports this module

        for split, records in dataset.splits.items():
            if records and getattr(dataset, "kind", "") == "video":
                records = frame_records(records)
            if records:
                self.add_images(split, validate.check_images(records, warn=False))

    def totals(self) -> dict:
        """{"skipped": n, "decoded_with_pillow": n} over readers and splits."""
        skipped = sum(e["count"] for reasons in self.readers.values() for e in reasons.values())
        skipped += sum(e["count"] for s in self.images.values() for e in s["skipped"].values())
        pillow = sum(e["count"] for s in self.images.values() for e in s["decoded_with_pillow"].values())
        return {"skipped": skipped, "decoded_with_pillow": pillow}

    def to_dict(self) -> dict:
        return {"format": REPORT_FORMAT, "totals": self.totals(), "readers": self.readers, "images": self.images}


def write_report(dataset, path: str, *, check_images: bool = True) -> dict:
    """Write `dataset.report` as JSON to `path` (atomically), after the image
    check of every split unless `check_images=False`; returns the dict written."""
    from keras_hpnet.fileio import write_text_atomic

    report = dataset.report
    if check_images:
        report.check_images(dataset)
    data = {"dataset": dataset.name, "root": validate.display_path(dataset.root or ""), **report.to_dict()}
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
    return data
