"""TF-Serving's gRPC API over a :class:`~export.serving.core.PredictionCore`:
PredictionService ``Predict`` / ``GetModelMetadata`` and ModelService
``GetModelStatus``, so the official ``tensorflow-serving-api`` stubs work.

A TensorProto is checked from its declared dtype and shape (batch cap
included) and its value count before it is turned into an array: a
30-byte proto cannot make the server build and run a large batch.
"""

from __future__ import annotations

import logging

import numpy as np

from export.serving.core import PredictionCore
from export.serving.signatures import DEFAULT_SIGNATURE, ServingError

log = logging.getLogger("export.serve")

# The repeated value fields of a TensorProto (tensor_content aside).
_VALUE_FIELDS = ("half_val", "float_val", "double_val", "int_val", "string_val", "scomplex_val", "int64_val",
                 "bool_val", "dcomplex_val", "uint32_val", "uint64_val")


def _value_count(proto, dtype) -> int:
    if proto.tensor_content:
        return len(proto.tensor_content) // np.dtype(dtype.as_numpy_dtype).itemsize
    return max(len(getattr(proto, f)) for f in _VALUE_FIELDS)


def tensor_to_array(core: PredictionCore, name: str, proto, spec) -> np.ndarray:
    """A request TensorProto -> numpy, validated before it is materialised."""
    import tensorflow as tf

    try:
        dtype = tf.dtypes.as_dtype(proto.dtype)
    except TypeError:
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: unsupported dtype enum {proto.dtype}") from None
    core.check_dtype(name, spec, dtype.name)
    if proto.tensor_shape.unknown_rank:
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: tensor shape is missing")
    shape = tuple(d.size for d in proto.tensor_shape.dim)
    if any(s < 0 for s in shape):
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: negative dimension in shape {list(shape)}")
    core.check_shape(name, spec, shape)
    n = int(np.prod(shape))
    count = _value_count(proto, dtype)
    if count != n:  # TensorProto would repeat the last value to fill the shape
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: the TensorProto holds {count} values for shape {list(shape)} ({n} expected)")
    try:
        arr = tf.make_ndarray(proto)
    except Exception as e:
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: malformed TensorProto ({e})") from None
    if arr.shape != shape:
        raise ServingError("INVALID_ARGUMENT", f"input {name!r}: content does not match shape {list(shape)}")
    return arr


def signature_def_map(served):
    """The served version's SignatureDefs as a SignatureDefMap proto."""
    from tensorflow_serving.apis import get_model_metadata_pb2

    defs = get_model_metadata_pb2.SignatureDefMap()
    for k, v in served.signature_defs.items():
        defs.signature_def[k].CopyFrom(v)
    return defs


def servicers(core: PredictionCore):
    """(PredictionServicer, ModelServicer, their pb2_grpc modules)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import (
        get_model_metadata_pb2,
        get_model_status_pb2,
        model_service_pb2_grpc,
        predict_pb2,
        prediction_service_pb2_grpc,
    )

    def guarded(method):
        def wrapper(self, request, context):
            try:
                return method(self, request, context)
            except ServingError as e:
                context.abort(getattr(grpc.StatusCode, e.code), e.message)
            except Exception as e:  # keep serving; report, don't crash
                log.exception("internal error")
                context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

        return wrapper

    def spec_of(request):
        ms = request.model_spec
        version = ms.version.value if ms.HasField("version") else None
        return ms.name, version, ms.version_label

    class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        @guarded
        def Predict(self, request, context):
            with core.store.lease(*spec_of(request)) as served:
                sig_name = request.model_spec.signature_name or DEFAULT_SIGNATURE
                sig = core.signature(served, sig_name)
                core.check_names(sig, request.inputs.keys())
                arrays = {name: tensor_to_array(core, name, proto, sig.inputs[name]) for name, proto in request.inputs.items()}
                outputs = core.run(served, sig, arrays, list(request.output_filter))
            resp = predict_pb2.PredictResponse()
            resp.model_spec.name = core.store.name
            resp.model_spec.version.value = served.version
            resp.model_spec.signature_name = sig_name
            for k, v in outputs.items():
                resp.outputs[k].CopyFrom(tf.make_tensor_proto(v))
            return resp

        @guarded
        def GetModelMetadata(self, request, context):
            fields = list(request.metadata_field)
            if not fields:
                raise ServingError("INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one metadata_field")
            bad = [f for f in fields if f != "signature_def"]
            if bad:
                raise ServingError("INVALID_ARGUMENT", f"Metadata field {bad[0]} is not supported")
            served = core.store.resolve(*spec_of(request))
            resp = get_model_metadata_pb2.GetModelMetadataResponse()
            resp.model_spec.name = core.store.name
            resp.model_spec.version.value = served.version
            resp.metadata["signature_def"].Pack(signature_def_map(served))
            return resp

    class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
        @guarded
        def GetModelStatus(self, request, context):
            served = core.store.resolve(*spec_of(request))
            resp = get_model_status_pb2.GetModelStatusResponse()
            st = resp.model_version_status.add()
            st.version = served.version
            st.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
            return resp

    return PredictionServicer(), ModelServicer(), prediction_service_pb2_grpc, model_service_pb2_grpc
