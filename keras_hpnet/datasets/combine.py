"""Several datasets as one (docs/datasets.md "Multi-dataset training").

`combine(parts, test=NAME)` joins loaded datasets: the training splits are
concatenated with disjoint identity labels (each part's train ids shifted by
the ids of the parts before it) and disjoint cameras (shifted the same way);
attributes are joined by name (the union, in order of first appearance), an
attribute a part lacks is `UNKNOWN_ATTRIBUTE` on its images (all of them for a
part without attribute labels), so the attribute loss ignores it. The
evaluation splits are those of one part (`test`, default the first), in the
union's attribute order. `load("market1501+dukemtmc", "A,B")` reads the parts
and combines them (`load_combined`). Numpy only.
"""

from __future__ import annotations

import copy

import numpy as np

from keras_hpnet.datasets.base import UNKNOWN_ATTRIBUTE, DataReport, PedestrianDataset

SEPARATOR = "+"  # in dataset names: "market1501+dukemtmc"
ROOT_SEPARATOR = ","  # in roots: "A,B", one per part ("" for a generated part)
TEST_OPTION = "test_dataset"  # the load option naming the part evaluated on


def is_combined(name) -> bool:
    return bool(name) and SEPARATOR in str(name)


def dataset_names(name: str) -> list:
    """The parts of a dataset name ("a+b" -> ["a", "b"]; "a" -> ["a"])."""
    parts = [p.strip() for p in str(name).split(SEPARATOR)]
    if not all(parts):
        raise ValueError(f"dataset {name!r}: empty name between {SEPARATOR!r}s (expected e.g. market1501+dukemtmc)")
    if len(set(parts)) != len(parts):
        raise ValueError(f"dataset {name!r}: a dataset is named twice")
    return parts


def split_roots(name: str, root) -> list:
    """(part, root or None) of each part of `name`; `root` is "A,B" (or a list),
    one per part, "" / None for a part that needs none (generated data)."""
    parts = dataset_names(name)
    if len(parts) == 1:
        return [(parts[0], root or None)]  # one dataset: its root as given
    if root is None or root == "":
        roots = [None] * len(parts)
    else:
        roots = list(root) if isinstance(root, (list, tuple)) else str(root).split(ROOT_SEPARATOR)
    if len(roots) != len(parts):
        raise ValueError(f"dataset {name!r}: {len(parts)} datasets but {len(roots)} data dirs {root!r} "
                         f"(give one per dataset, separated by {ROOT_SEPARATOR!r}; empty for generated data)")
    return [(p, (r.strip() if isinstance(r, str) else r) or None) for p, r in zip(parts, roots)]


def route_options(name: str, options: dict, known_options) -> dict:
    """Reader options of each part: `{part: {key: value}}`.

    A key `part.key` goes to that part only; a plain `key` to every part whose
    reader has that option (`known_options(part)` -> its option names).
    ValueError naming the key when no part takes it.
    """
    parts = dataset_names(name)
    out = {p: {} for p in parts}
    for key, value in options.items():
        target, dot, option = str(key).rpartition(".")
        if dot:
            if target not in out:
                raise ValueError(f"option {key}: {target!r} is not one of the datasets {', '.join(parts)}")
            if option not in known_options(target):
                raise ValueError(f"option {key}: the {target} reader has no option {option!r} "
                                 f"(options: {', '.join(sorted(known_options(target))) or 'none'})")
            out[target][option] = value
            continue
        takers = [p for p in parts if key in known_options(p)]
        if not takers:
            raise ValueError(f"option {key}: no reader of {', '.join(parts)} has it "
                             f"(options: {'; '.join(f'{p}: ' + (', '.join(sorted(known_options(p))) or 'none') for p in parts)})")
        for p in takers:
            out[p][key] = value
    return out


def _remap(vector, positions, width):
    """A part's attribute vector (or None) in the union's columns; UNKNOWN_ATTRIBUTE where it has none."""
    out = np.full(width, UNKNOWN_ATTRIBUTE, np.uint8)
    if vector is not None:
        out[positions] = vector
    return out


def combine(parts, *, test=None, name=None) -> PedestrianDataset:
    """One dataset of the loaded `parts` (see the module docstring).

    Args:
      parts: PedestrianDatasets with distinct names.
      test: name of the part whose evaluation splits (all but `train`) the
        result holds; default the first part.
      name: the result's name (default the parts' names joined by "+").

    `info["parts"]` records, per part, its `name`, `root`, `pid_offset`,
    `num_train_pids`, `camera_offset`, `num_cameras`, `num_train` and
    `attribute_names`; `info["test_dataset"]` the test part. `report` holds
    every part's reader skips.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("combine: no datasets")
    names = [p.name for p in parts]
    if len(set(names)) != len(names):
        raise ValueError(f"combine: datasets named twice ({', '.join(names)})")
    test = test or names[0]
    if test not in names:
        raise ValueError(f"combine: test dataset {test!r} is not one of {', '.join(names)}")
    union = []
    for p in parts:
        union += [a for a in p.attribute_names if a not in union]
    column = {a: j for j, a in enumerate(union)}
    train, info, report = [], [], DataReport()
    pid_offset = camera_offset = 0
    evaluation = {}
    for p in parts:
        positions = np.array([column[a] for a in p.attribute_names], np.int64)

        def moved(r, pid_shift, fill):
            attributes = r.attributes
            if union and (attributes is not None or fill):
                attributes = _remap(attributes, positions, len(union))
            return r._replace(pid=r.pid + pid_shift if r.pid >= 0 else r.pid,
                              camid=r.camid + camera_offset if r.camid >= 0 else r.camid, attributes=attributes)

        # train: every image gets a vector (the pipeline takes all or none); evaluation
        # splits keep their unlabelled rows (distractors) unlabelled, and their identities.
        train += [moved(r, pid_offset, True) for r in p.splits.get("train", [])]
        if p.name == test:
            evaluation = {s: [moved(r, 0, False) for r in recs] for s, recs in p.splits.items() if s != "train"}
        info.append({"name": p.name, "root": p.root, "pid_offset": pid_offset, "num_train_pids": p.num_train_pids,
                     "camera_offset": camera_offset, "num_cameras": p.num_cameras,
                     "num_train": len(p.splits.get("train", [])), "attribute_names": list(p.attribute_names)})
        report.readers.update(copy.deepcopy(p.report.readers))
        pid_offset += p.num_train_pids
        camera_offset += p.num_cameras
    kind = "reid" if any(p.kind == "reid" for p in parts) else "attribute"
    root = ROOT_SEPARATOR.join(str(p.root or "") for p in parts)
    return PedestrianDataset(name or SEPARATOR.join(names), {"train": train, **evaluation}, kind=kind,
                             attribute_names=union, num_cameras=camera_offset, root=root,
                             info={"parts": info, "test_dataset": test}, report=report)


def load_combined(name: str, root=None, **options) -> PedestrianDataset:
    """Load each part of `name` ("a+b") from its root in `root` ("A,B") and
    `combine` them. `options`: `{part: {reader options}}` and
    `test_dataset=PART` (default the first)."""
    from keras_hpnet.datasets import load

    test = options.pop(TEST_OPTION, None)
    pairs = split_roots(name, root)
    parts = [p for p, _ in pairs]
    unknown = [k for k in options if k not in parts]
    if unknown:
        raise ValueError(f"dataset {name!r}: options {unknown} are not per-dataset option groups "
                         f"(expected {{dataset: {{option: value}}}} for {', '.join(parts)})")
    if test is not None and test not in parts:
        raise ValueError(f"dataset {name!r}: {TEST_OPTION}={test!r} is not one of {', '.join(parts)}")
    loaded = [load(p, r, **dict(options.get(p) or {})) for p, r in pairs]
    by_part = {p: d.name for p, d in zip(parts, loaded)}
    return combine(loaded, test=by_part[test] if test else None, name=name)
