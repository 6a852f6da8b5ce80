"""python -m export.tflite: the command line of the TFLite export (flags in `_define_flags`)."""

from __future__ import annotations

import sys

from export.tflite.convert import IO_TYPES, QUANTIZATIONS
from export.tflite.exporter import convert_run


def main(argv):
    from absl import flags

    FLAGS = flags.FLAGS
    del argv
    quants = QUANTIZATIONS if FLAGS.quantization == "all" else [q.strip() for q in FLAGS.quantization.split(",")]
    try:
        convert_run(FLAGS.run_dir, quants, io_type=FLAGS.io_type, out=FLAGS.out,
                   num_calibration=FLAGS.num_calibration, images_dir=FLAGS.images,
                   parity=FLAGS.parity, max_eval_images=FLAGS.max_eval_images, num_threads=FLAGS.num_threads)
    except ValueError as e:  # ExportError, RunError, metadata/image errors
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def _define_flags():
    from absl import flags

    flags.DEFINE_string("run_dir", None, "Training run directory (config.json + model.keras).", required=True)
    flags.DEFINE_string("quantization", "int8", "float32, float16, dynamic, int8, a comma list, or all.")
    flags.DEFINE_enum("io_type", None, list(IO_TYPES), "int8 model input/output tensor type (default uint8).")
    flags.DEFINE_string("out", None, "Output .tflite path (one quantization) or directory (default RUN_DIR/tflite).")
    flags.DEFINE_integer("num_calibration", 100, "Training images used to calibrate int8.")
    flags.DEFINE_string("images", None, "Folder of crops to calibrate on instead of the run's training split.")
    flags.DEFINE_boolean("parity", True, "Evaluate every variant and write parity.json / parity.txt.")
    flags.DEFINE_integer("max_eval_images", None, "Evaluate on a random subset of this many images.")
    flags.DEFINE_integer("num_threads", None, "LiteRT threads for the parity run.")


if __name__ == "__main__":
    from absl import app

    _define_flags()
    app.run(lambda argv: sys.exit(main(argv)))
