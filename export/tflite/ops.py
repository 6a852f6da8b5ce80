"""Operators of a TFLite flatbuffer (LiteRT's schema module, no TensorFlow): which run in float, which are not builtin."""

from __future__ import annotations

import dataclasses

from export.tflite.errors import ExportError

# Ops that only convert between float and integer tensors.
_BOUNDARY_OPS = {"QUANTIZE", "DEQUANTIZE"}


@dataclasses.dataclass
class OpInfo:
    index: int
    name: str  # builtin name (CONV_2D) or the custom code (FlexConv2D)
    builtin: bool
    float_compute: bool  # reads or writes float32 activations (not QUANTIZE/DEQUANTIZE)
    input_types: list[str]
    output_types: list[str]
    output_names: list[str] = dataclasses.field(default_factory=list)  # tensor names (the converter's op locations)


def inspect_ops(flatbuffer: bytes) -> list[OpInfo]:
    """Operators of the main subgraph with their tensor types."""
    from ai_edge_litert import schema_py_generated as schema

    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if isinstance(v, int)}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if isinstance(v, int)}
    model = schema.Model.GetRootAs(flatbuffer, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        if code == schema.BuiltinOperator.CUSTOM:
            custom = oc.CustomCode()
            codes.append((custom.decode() if custom else "CUSTOM", False))
        else:
            codes.append((op_names.get(code, f"BUILTIN_{code}"), True))
    graph = model.Subgraphs(0)

    def is_const(t):
        buf = model.Buffers(graph.Tensors(t).Buffer())
        return buf is not None and (buf.DataLength() > 0 or buf.Size() > 0)

    def kind(t):
        return type_names.get(graph.Tensors(t).Type(), "?")

    out = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        name, builtin = codes[op.OpcodeIndex()]
        ins = [t for t in op.InputsAsNumpy().tolist() if t >= 0] if op.InputsLength() else []
        outs = [t for t in op.OutputsAsNumpy().tolist() if t >= 0] if op.OutputsLength() else []
        in_types = [kind(t) for t in ins]
        out_types = [kind(t) for t in outs]
        act = [kind(t) for t in ins if not is_const(t)] + out_types
        is_float = name not in _BOUNDARY_OPS and "FLOAT32" in act
        names = [graph.Tensors(t).Name().decode() for t in outs]
        out.append(OpInfo(i, name, builtin, is_float, in_types, out_types, names))
    return out


def check_builtin(ops: list[OpInfo]) -> None:
    """ExportError naming any Flex/custom op."""
    bad = sorted({o.name for o in ops if not o.builtin})
    if bad:
        flex = [b for b in bad if b.startswith("Flex")]
        kind = "Flex (SELECT_TF_OPS)" if flex else "custom"
        raise ExportError(f"the converted model has {kind} ops that edge runtimes cannot run: {', '.join(bad)}")


def op_summary(ops: list[OpInfo]) -> str:
    """A printable table: op name, count, how many stay float."""
    counts: dict[str, list[int]] = {}
    for o in ops:
        c = counts.setdefault(o.name, [0, 0])
        c[0] += 1
        c[1] += int(o.float_compute)
    lines = [f"{'op':<26}{'count':>6}{'float':>7}"]
    for name in sorted(counts):
        lines.append(f"{name:<26}{counts[name][0]:>6}{counts[name][1]:>7}")
    n_float = sum(o.float_compute for o in ops)
    lines.append(f"{len(ops)} ops, {n_float} compute in float" + (
        ": " + ", ".join(sorted({o.name for o in ops if o.float_compute})) if 0 < n_float < len(ops) else ""))
    return "\n".join(lines)

