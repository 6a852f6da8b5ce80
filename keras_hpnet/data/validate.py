"""Up-front image checks with Pillow (no TensorFlow): bad files are found once,
named and counted, so the in-graph decoder only ever sees readable images.

A file is rejected when it is missing, empty, not an image, truncated or
otherwise fails a full decode (Pillow's `load()`; truncated JPEGs raise there,
they are NOT accepted as partially decoded). Every readable file also gets its
decoder: TensorFlow's, or Pillow's for what TF does not read the same way or
rejects (other formats and modes; BMPs that are not plain 24/32-bit or whose
header disagrees with the file size, as in the PETA/VIPeR releases). Results
are cached per (path, size, mtime), so re-checking a split every epoch costs a
`stat` per file. The pipeline writes back what TF's decoder rejected after all
(`mark_pillow`, `mark_unreadable`), so every later check agrees with it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import threading
import warnings

# Formats and modes tf.io.decode_image reads exactly like Pillow's convert("RGB")
# (grayscale and alpha become RGB; alpha is dropped). Anything else that Pillow
# reads (CMYK JPEG, palette BMP, 16-bit PNG, TIFF, WebP, GIF, ...) is decoded
# with Pillow.
_TF_NATIVE = {
    "JPEG": {"L", "RGB"},
    "PNG": {"1", "L", "LA", "P", "RGB", "RGBA"},
    "BMP": {"RGB", "RGBA"},
}

_CACHE: dict = {}
_CACHE_LOCK = threading.Lock()
_WARNED: set = set()


@dataclasses.dataclass(frozen=True)
class ImageCheck:
    ok: bool
    reason: str = ""  # why it is unreadable (ok=False) or why Pillow decodes it (tf_native=False)
    tf_native: bool = True  # False: decode with Pillow
    kind: str = ""  # the reason's category: the key of the report's counts


def display_path(path) -> str:
    """A printable file name: bytes that are not UTF-8 shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclasses.dataclass
class PipelineReport:
    """What the pipeline will read: `good` record indices (in record order),
    `skipped` list of (index, path, reason), `pillow` list of (index, path,
    reason) of the good records decoded with Pillow, `kinds` {index: category
    of its reason}."""

    num_records: int
    good: list
    skipped: list
    pillow: list = dataclasses.field(default_factory=list)
    kinds: dict = dataclasses.field(default_factory=dict)

    @property
    def pillow_decoded(self) -> list:
        """Record indices decoded with Pillow."""
        return [i for i, _, _ in self.pillow]

    @property
    def num_good(self) -> int:
        return len(self.good)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def counts(self, examples: int = 3) -> dict:
        """{"skipped": {kind: {"count", "examples"}}, "decoded_with_pillow": {...}}, JSON-ready."""
        out = {"skipped": {}, "decoded_with_pillow": {}}
        for section, rows in (("skipped", self.skipped), ("decoded_with_pillow", self.pillow)):
            for index, path, reason in rows:
                entry = out[section].setdefault(self.kinds.get(index) or reason, {"count": 0, "examples": []})
                entry["count"] += 1
                if len(entry["examples"]) < examples:
                    entry["examples"].append(f"{display_path(path)}: {reason}")
        return out

    def summary(self, limit: int = 10) -> str:
        text = f"{self.num_good} of {self.num_records} images readable, {self.num_skipped} skipped"
        if self.skipped:
            names = "; ".join(f"{display_path(path)} ({reason})" for _, path, reason in self.skipped[:limit])
            more = f"; and {self.num_skipped - limit} more" if self.num_skipped > limit else ""
            text += f": {names}{more}"
        return text


def _bmp_tf_problem(path: str, size: int) -> str:
    """Why TF's BMP decoder would reject (or misread) a BMP Pillow reads; "" when it reads it.

    TF reads uncompressed 24/32-bit BMPs with a BITMAPINFOHEADER (or later) and
    requires the file to be exactly pixel offset + row size x |height| bytes.
    """
    with open(path, "rb") as f:
        head = f.read(34)
    if len(head) < 34:
        return "BMP header too short for TF's decoder"

    def field(start, length, signed=False):
        return int.from_bytes(head[start:start + length], "little", signed=signed)

    offset, header_size = field(10, 4), field(14, 4)
    width, height = field(18, 4, signed=True), field(22, 4, signed=True)
    bits, compression = field(28, 2), field(30, 4)
    if header_size < 40:
        return f"BMP with a {header_size}-byte header (TF reads 40 and up)"
    if bits not in (24, 32) or compression != 0:
        return f"{bits}-bit BMP with compression {compression} (TF reads uncompressed 24/32-bit)"
    expected = offset + (bits * width + 31) // 32 * 4 * abs(height)
    if size != expected:
        return f"BMP of {size} bytes, its header says {expected} (TF rejects the mismatch)"
    return ""


def _decoder_of(path: str, size: int, fmt: str, mode: str) -> ImageCheck:
    if mode not in _TF_NATIVE.get(fmt, ()):
        return ImageCheck(True, f"{fmt} {mode}", tf_native=False, kind=f"{fmt} {mode}: not read the same by TF")
    if fmt == "BMP":
        problem = _bmp_tf_problem(path, size)
        if problem:
            return ImageCheck(True, problem, tf_native=False, kind="BMP that TF's decoder rejects")
    return ImageCheck(True)


def check_image(path: str) -> ImageCheck:
    """Fully decode one file with Pillow; never raises for a bad file."""
    from PIL import Image

    try:
        st = os.stat(path)
    except OSError as e:
        return ImageCheck(False, f"cannot read: {e.strerror or e}", kind="cannot read")
    key = (path, st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
    if hit is not None:
        return hit
    if st.st_size == 0:
        result = ImageCheck(False, "empty file", kind="empty file")
    else:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(path) as im:
                    fmt, mode = im.format, im.mode
                    im.load()
                    width, height = im.size
            if width < 1 or height < 1:
                result = ImageCheck(False, f"empty image {width}x{height}", kind="empty image")
            else:
                result = _decoder_of(path, st.st_size, fmt, mode)
        except Exception as e:  # noqa: BLE001 - any decoder failure means "unreadable"
            kind = "not an image" if type(e).__name__ == "UnidentifiedImageError" else "corrupt or truncated"
            result = ImageCheck(False, f"{kind} ({type(e).__name__}: {e})", kind=kind)
    with _CACHE_LOCK:
        _CACHE[key] = result
    return result


def _remember(path: str, result: ImageCheck) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    with _CACHE_LOCK:
        _CACHE[(path, st.st_size, st.st_mtime_ns)] = result


def mark_pillow(path: str, reason: str) -> None:
    """Record that TF's decoder rejected `path` and Pillow read it: decode it with Pillow from now on."""
    _remember(path, ImageCheck(True, reason, tf_native=False, kind="rejected by TF's decoder"))


def mark_unreadable(path: str, reason: str) -> None:
    """Record that neither decoder reads `path`: skip it from now on."""
    _remember(path, ImageCheck(False, reason, kind="corrupt or truncated"))


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
    good, skipped, pillow, kinds = [], [], [], {}
    for i, (path, c) in enumerate(zip(paths, checks)):
        if c.kind:
            kinds[i] = c.kind
        if c.ok:
            good.append(i)
            if not c.tf_native:
                pillow.append((i, path, c.reason))
        else:
            skipped.append((i, path, c.reason))
    report = PipelineReport(len(paths), good, skipped, pillow, kinds)
    if warn:
        new = [s for s in skipped if s[1] not in _WARNED]
        if new:
            _WARNED.update(s[1] for s in new)
            fresh = PipelineReport(len(paths), good, new)
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
