"""SavedModel export laid out for TF-Serving.

    python -m export.saved_model --run_dir runs/hacnn --export_dir models/

writes ``models/<model_name>/<version>/`` (a SavedModel; integer versions that
increase and never overwrite) and ``models/models.config`` (a text
ModelServerConfig listing every model under ``models/``). Signatures (names in
export.serving.signatures):

- ``serving_default``: ``images`` uint8 ``[N, H, W, 3]`` -> ``embedding``
  float32 ``[N, D]`` (+ ``attributes`` ``[N, A]`` for attribute models);
- ``serve_image_bytes``: ``image_bytes`` string ``[N]`` of encoded
  JPEG/PNG/GIF/BMP/WebP (any size up to ``max_image_pixels``, checked from the
  header before decoding) -> decoded to RGB, resized by the image rule to
  ``H x W`` in the graph (export.serving.images) -> the same outputs.

The metadata record (keras_hpnet.metadata.ModelMetadata; ``extra`` records
``max_image_pixels``) is the asset ``assets/metadata.json``
(:func:`read_export_metadata` reads it back) and the output ``metadata_json``
(a scalar string) of a third signature ``metadata`` that takes no inputs, so a
client can ask a model server for the attribute names.

The export runs under TF-Serving's TF1 session loader (docs/serving.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import glob
import os
import re
import shutil
import tempfile
import time

from export.serving.signatures import (
    ATTRIBUTES_OUTPUT,
    BYTES_INPUT,
    BYTES_SIGNATURE,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_SIGNATURE,
    EMBEDDING_OUTPUT,
    IMAGES_INPUT,
    METADATA_OUTPUT,
    METADATA_SIGNATURE,
)
from keras_hpnet.fileio import write_text_atomic
from keras_hpnet.metadata import ModelMetadata

METADATA_ASSET = "metadata.json"
MODELS_CONFIG = "models.config"
TMP_PREFIX = ".tmp-export-"
_OWNER_LOCK = ".owner.lock"  # flock held by the exporter writing a temp dir
_UNOWNED_GRACE_S = 60.0  # a temp dir without an owner lock is stale after this
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ExportError(ValueError):
    """An export that cannot be written (names the path and the problem)."""


@dataclasses.dataclass
class ExportResult:
    path: str  # models/<name>/<version>
    version: int
    model_name: str
    metadata: ModelMetadata
    models_config: str | None  # path of the written models.config


def list_versions(model_base_path: str) -> list[int]:
    """Integer version directories under `model_base_path`, ascending (none
    if it cannot be listed). The one rule for what a version is: exporter,
    models.config and the server's poller use it."""
    try:
        names = os.listdir(model_base_path)
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(model_base_path, n)))


def _captured_variables(functions) -> list:
    """The tf.Variables the traced signature graphs read, each once.

    TF-Serving restores variables through the SavedModel's saver (the TF1
    session loader), which restores exactly the variables tracked by the saved
    object graph. Keras 3 wraps each tf.Variable in a keras.Variable; tracking
    the model (or its ``model.variables``) saves the wrappers, and the
    handles the graphs capture are then never restored ("Could not find
    variable ..." at run time; tf.saved_model.load hides it). Tracking the
    captured tf.Variables themselves is what ``keras.export.ExportArchive``
    does; see docs/serving.md.
    """
    seen = {}
    for fn in functions:
        for v in fn.get_concrete_function().variables:
            seen.setdefault(id(v), v)
    return list(seen.values())


def _serving_module(model, metadata: ModelMetadata, metadata_file: str, max_image_pixels: int):
    """The object to save: the three signature functions, the metadata asset
    and the variables they capture (not the Keras model object).

    Not ``keras.export.ExportArchive`` itself: it has no public way to add the
    metadata asset, which must be a tracked ``tf.saved_model.Asset`` for the
    loader to find it in the version directory.
    """
    import tensorflow as tf

    from export.serving.images import decode_for_model

    h, w = metadata.input_height, metadata.input_width

    def _outputs(images):
        out = model(tf.cast(images, tf.float32), training=False)
        result = {EMBEDDING_OUTPUT: tf.cast(out["embedding"], tf.float32)}
        if metadata.attribute_names:
            result[ATTRIBUTES_OUTPUT] = tf.cast(out["attributes"], tf.float32)
        return result

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.uint8, name=IMAGES_INPUT)], autograph=False)
    def serving_default(images):
        return _outputs(images)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)], autograph=False)
    def serve_image_bytes(image_bytes):
        images = tf.map_fn(
            lambda data: decode_for_model(data, h, w, max_image_pixels),
            image_bytes,
            fn_output_signature=tf.TensorSpec((h, w, 3), tf.uint8),
        )
        return _outputs(images)

    module = tf.Module()
    module.metadata_file = tf.saved_model.Asset(metadata_file)

    @tf.function(input_signature=[], autograph=False)
    def metadata_signature():
        # Read the asset at run time: it holds the final version number.
        return {METADATA_OUTPUT: tf.io.read_file(module.metadata_file)}

    module.serving_default = serving_default
    module.serve_image_bytes = serve_image_bytes
    module.metadata_signature = metadata_signature
    module.captured_variables = _captured_variables([serving_default, serve_image_bytes])
    signatures = {
        DEFAULT_SIGNATURE: serving_default,
        BYTES_SIGNATURE: serve_image_bytes,
        METADATA_SIGNATURE: metadata_signature,
    }
    return module, signatures


@contextlib.contextmanager
def _locked(base: str):
    """An exclusive lock on `base/.export.lock` (serialises version numbering)."""
    fd = os.open(os.path.join(base, ".export.lock"), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@contextlib.contextmanager
def _owned_temp_dir(base: str):
    """A new ``.tmp-export-*`` directory under `base`, holding an flock on
    its ``.owner.lock`` while the export runs; removed at the end.

    The kernel drops the flock when the exporter dies (even by SIGKILL), which
    is how :func:`remove_stale_temp_dirs` tells a dead export from a live one.
    """
    tmp = tempfile.mkdtemp(dir=base, prefix=TMP_PREFIX)
    fd = os.open(os.path.join(tmp, _OWNER_LOCK), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        os.close(fd)


def remove_stale_temp_dirs(base: str) -> list[str]:
    """Remove the ``.tmp-export-*`` directories of exports that died (issue
    12 §3): those whose owner lock nobody holds, and those without an owner
    lock (older exporters; created more than a minute ago). Returns them."""
    removed = []
    for tmp in glob.glob(os.path.join(glob.escape(base), TMP_PREFIX + "*")):
        try:
            fd = os.open(os.path.join(tmp, _OWNER_LOCK), os.O_RDWR)
        except FileNotFoundError:
            try:
                stale = time.time() - os.path.getmtime(tmp) > _UNOWNED_GRACE_S
            except OSError:
                continue  # removed meanwhile
            if stale:
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass  # a live exporter holds it
        else:
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
        finally:
            os.close(fd)
    return removed


def export_saved_model(
    model,
    export_dir: str,
    metadata: ModelMetadata,
    *,
    model_name: str | None = None,
    write_models_config: bool = True,
    config_base_path: str = "/models",
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> ExportResult:
    """Export `model` as the next version of `export_dir/<model_name>/`.

    The SavedModel is written into a hidden temporary directory beside the
    versions and renamed into place under a file lock, so a model server never
    sees a half-written version and concurrent exporters get distinct numbers.
    Temporary directories left by killed exports are removed first.
    `max_image_pixels` bounds the images ``serve_image_bytes`` decodes.
    """
    import tensorflow as tf

    model_name = model_name or metadata.model_name
    if not _NAME_RE.match(model_name):
        raise ExportError(f"--model_name {model_name!r}: use letters, digits, '_', '-', '.'")
    if int(max_image_pixels) < 1:
        raise ExportError(f"--max_image_pixels {max_image_pixels}: must be a positive number of pixels")
    base = os.path.join(export_dir, model_name)
    os.makedirs(base, exist_ok=True)
    remove_stale_temp_dirs(base)
    metadata = dataclasses.replace(metadata, extra={**metadata.extra, "max_image_pixels": int(max_image_pixels)})
    with _owned_temp_dir(base) as tmp:
        staging_md = os.path.join(tmp, "_staging", METADATA_ASSET)
        os.makedirs(os.path.dirname(staging_md))
        metadata.save(staging_md)
        saved = os.path.join(tmp, "saved_model")
        module, signatures = _serving_module(model, metadata, staging_md, int(max_image_pixels))
        tf.saved_model.save(module, saved, signatures=signatures)
        asset = os.path.join(saved, "assets", METADATA_ASSET)
        with _locked(base):
            version = max(list_versions(base), default=0) + 1
            while True:
                md = dataclasses.replace(metadata, model_name=model_name, version=version)
                md.save(asset)  # the asset carries the final version number
                target = os.path.join(base, str(version))
                try:
                    os.rename(saved, target)  # fails on an existing non-empty dir
                    break
                except OSError as e:
                    if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    version += 1
    config_path = None
    if write_models_config:
        config_path = write_models_config_file(export_dir, config_base_path=config_base_path)
    return ExportResult(path=target, version=version, model_name=model_name, metadata=md, models_config=config_path)


def models_config_text(names: list[str], config_base_path: str = "/models") -> str:
    """A text-format ModelServerConfig serving the latest version of each model."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    for name in names:
        c = config.model_config_list.config.add()
        c.name = name
        c.base_path = config_base_path.rstrip("/") + "/" + name
        c.model_platform = "tensorflow"
        c.model_version_policy.latest.num_versions = 1
    return text_format.MessageToString(config)


def write_models_config_file(export_dir: str, config_base_path: str = "/models") -> str:
    """(Re)write `export_dir/models.config` listing every exported model.

    `config_base_path` is where `export_dir` is seen by the model server
    (``/models`` when mounted into the tensorflow/serving Docker image).
    """
    names = sorted(n for n in os.listdir(export_dir) if _NAME_RE.match(n) and list_versions(os.path.join(export_dir, n)))
    path = os.path.join(export_dir, MODELS_CONFIG)
    write_text_atomic(path, models_config_text(names, config_base_path))
    return path


def read_export_metadata(version_dir: str) -> ModelMetadata:
    """The ModelMetadata stored in a SavedModel version directory."""
    return ModelMetadata.load(os.path.join(version_dir, "assets", METADATA_ASSET))


def save_run(run_dir: str, export_dir: str, *, model_name: str | None = None, config_base_path: str = "/models",
               max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> ExportResult:
    """Load a training run directory and export it (see :func:`export_saved_model`)."""
    from keras_hpnet.runs import load_run

    run = load_run(run_dir)
    return export_saved_model(
        run.model, export_dir, run.metadata, model_name=model_name, config_base_path=config_base_path,
        max_image_pixels=max_image_pixels,
    )


def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS.run_dir:
        raise SystemExit("--run_dir is required")
    from keras_hpnet.runs import RunError

    try:
        res = save_run(FLAGS.run_dir, FLAGS.export_dir, model_name=FLAGS.model_name,
                         config_base_path=FLAGS.config_base_path, max_image_pixels=FLAGS.max_image_pixels)
    except (RunError, ExportError) as e:
        raise SystemExit(f"error: {e}") from None
    md = res.metadata
    print(f"exported {res.model_name} version {res.version} -> {res.path}")
    print(f"  input {md.input_height}x{md.input_width}x3 uint8, embedding {md.embedding_size}, "
          f"{len(md.attribute_names)} attributes; signatures {DEFAULT_SIGNATURE}, {BYTES_SIGNATURE}")
    print(f"  model server config: {res.models_config}")


def _define_flags():
    from absl import flags

    flags.DEFINE_string("run_dir", None, "training run directory (config.json + model.keras)")
    flags.DEFINE_string("export_dir", "models", "where models/<model_name>/<version>/ go")
    flags.DEFINE_string("model_name", None, "served model name (default: the run's model name)")
    flags.DEFINE_string("config_base_path", "/models", "export_dir as the model server sees it (models.config base_path)")
    flags.DEFINE_integer("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS,
                         "largest image (height*width) serve_image_bytes decodes; larger -> INVALID_ARGUMENT")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(main)
