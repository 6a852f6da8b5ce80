"""TFLite export for edge devices: float32, float16, dynamic-range and full int8.

    python -m export.tflite --run_dir runs/hacnn --quantization int8
    python -m export.tflite --run_dir runs/hacnn --quantization all

Writes `<out_dir>/<model>_<quantization>.tflite`, its metadata sidecar
`<model>_<quantization>.json` (keras_hpnet.metadata.ModelMetadata, read by
`edge`), and a parity report `parity.json` + `parity.txt` beside the models:
float vs quantized embedding cosine and rank-1 / mAP / mA of every variant on
the run's evaluation split, each file written atomically (docs/edge.md).

Modules: `convert` (model -> flatbuffer, builtin ops only; in int8 the
sampler and the ops XNNPACK has no int8 kernel for stay float), `lowering`
(average pooling as depthwise convolution for int8 XNNPACK), `calibration`
(calibration images, repaired ranges, quantization), `ops` (what the
flatbuffer holds), `parity` (the report, through keras_hpnet.evaluation),
`exporter` (files of a model or a run), `__main__` (the command line).
"""

from export.tflite.calibration import (DEGENERATE_RANGE, calibration_images, load_images, run_dataset,
                                       widen_degenerate_ranges)
from export.tflite.convert import (FLOAT_OPS_IN_INT8, IO_TYPES, QUANTIZATIONS, convert, float_sampler_nodes,
                                   inference_function, output_names)
from export.tflite.errors import ExportError
from export.tflite.exporter import Exported, export_model, convert_run
from export.tflite.lowering import (average_pool_as_depthwise, lower_average_pools, sample_as_matrix_products,
                                    samplers_as_matrix_products)
from export.tflite.ops import OpInfo, check_builtin, inspect_ops, op_summary
from export.tflite.parity import (compare, cosine, evaluation_dataset, parity_report, parity_table,
                                  tflite_predictor, write_parity)

__all__ = [
    "DEGENERATE_RANGE", "FLOAT_OPS_IN_INT8", "IO_TYPES", "QUANTIZATIONS", "ExportError", "Exported", "OpInfo",
    "average_pool_as_depthwise", "calibration_images", "check_builtin", "compare", "convert", "cosine",
    "evaluation_dataset", "export_model", "convert_run", "float_sampler_nodes", "inference_function",
    "inspect_ops", "load_images", "lower_average_pools", "op_summary", "output_names", "parity_report",
    "parity_table", "run_dataset", "sample_as_matrix_products", "samplers_as_matrix_products", "tflite_predictor", "widen_degenerate_ranges", "write_parity",
]
