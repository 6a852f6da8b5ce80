"""Up-front image checks with Pillow (no TensorFlow): bad files are found once,
named and counted, so the in-graph decoder only ever sees readable images.

A file is rejected when it is missing, empty, not an image, truncated or
otherwise fails a full decode (Pillow's `load()`; truncated JPEGs raise there,
they are NOT accepted as partially decoded). Results are cached per
(path, size, mtime), so re-checking a split every epoch costs a `stat` per file.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import threading
import warnings

# Formats and modes tf.io.decode_image reads exactly like Pillow's convert("RGB")
# (grayscale and alpha become RGB; alpha is dropped). Anything else that Pillow
# reads (CMYK JPEG, palette BMP, TIFF, WebP, ...) is decoded with Pillow.
_TF_NATIVE = {
    "JPEG": {"L", "RGB"},
    "PNG": {"1", "L", "LA", "P", "RGB", "RGBA", "I;16", "I"},
    "BMP": {"RGB", "RGBA"},
}

_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()
_WARNED: set = set()


@dataclasses.dataclass(frozen=True)
class ImageCheck:
    ok: bool
    reason: str = ""  # why it is unreadable
    tf_native: bool = True  # False: decode with Pillow


@dataclasses.dataclass
class PipelineReport:
    """What the pipeline will read: `good` record indices (in record order),
    `skipped` list of (index, path, reason), `pillow_decoded` record indices
    whose format TF does not decode natively."""

    num_records: int
    good: list
    skipped: list
    pillow_decoded: list

    @property
    def num_good(self) -> int:
        return len(self.good)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def summary(self, limit: int = 10) -> str:
        text = f"{self.num_good} of {self.num_records} images readable, {self.num_skipped} skipped"
        if self.skipped:
            names = "; ".join(f"{path} ({reason})" for _, path, reason in self.skipped[:limit])
            more = f"; and {self.num_skipped - limit} more" if self.num_skipped > limit else ""
            text += f": {names}{more}"
        return text


def check_image(path: str) -> ImageCheck:
    """Fully decode one file with Pillow; never raises for a bad file."""
    from PIL import Image

    try:
        st = os.stat(path)
    except OSError as e:
        return ImageCheck(False, f"cannot read: {e.strerror or e}")
    key = (path, st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    if st.st_size == 0:
        result = ImageCheck(False, "empty file")
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as im:
                    fmt, mode = im.format, im.mode
                    im.load()
                    width, height = im.size
            if width < 1 or height < 1:
                result = ImageCheck(False, f"empty image {width}x{height}")
            else:
                result = ImageCheck(True, tf_native=mode in _TF_NATIVE.get(fmt, ()))
        except Exception as e:  # noqa: BLE001 - any decoder failure means "unreadable"
            kind = "not an image" if type(e).__name__ == "UnidentifiedImageError" else "corrupt or truncated"
            result = ImageCheck(False, f"{kind} ({type(e).__name__}: {e})")
    with _CACHE_LOCK:
        _CACHE[key] = result
    return result


def check_images(records, num_workers: int | None = None, warn: bool = True) -> PipelineReport:
    """Check every record's `path` (thread pool); returns a PipelineReport.

    With `warn`, each newly found bad file is reported once per process in a
    `UserWarning` that names it and says why.
    """
    paths = [_path_of(r, i) for i, r in enumerate(records)]
    workers = num_workers or min(8, (os.cpu_count() or 2) * 2)
    if len(paths) < 64 or workers == 1:
        checks = [check_image(p) for p in paths]
    else:
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            checks = list(pool.map(check_image, paths, chunksize=64))
    good, skipped, pillow = [], [], []
    for i, (path, c) in enumerate(zip(paths, checks)):
        if c.ok:
            good.append(i)
            if not c.tf_native:
                pillow.append(i)
        else:
            skipped.append((i, path, c.reason))
    report = PipelineReport(len(paths), good, skipped, pillow)
    if warn:
        new = [s for s in skipped if s[1] not in _WARNED]
        if new:
            _WARNED.update(s[1] for s in new)
            fresh = PipelineReport(len(paths), good, new, pillow)
            warnings.warn(f"keras_hpnet.data: skipping unreadable images: {fresh.summary(limit=20)}", stacklevel=3)
    return report


def _path_of(record, index):
    path = getattr(record, "path", None)
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"records[{index}]: expected an object with a str `path`, got {type(record).__name__}")
    return os.fspath(path)


def clear_check_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()
    _WARNED.clear()
