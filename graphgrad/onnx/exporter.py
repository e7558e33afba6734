"""gg.onnx.export: a gg.nn model or a graph (its output tensors) as an ONNX model, opset 17.

Placeholders become graph inputs (a None axis becomes the symbolic dimension "batch"),
variables become initializers, constants become Constant nodes (so that an import makes the
variables trainable again and leaves the constants fixed), and every op becomes the ONNX
operator(s) with the same semantics. An op without an ONNX counterpart here (gradients,
optimizer updates, losses, dropout's training mask) raises UnsupportedOpError naming the op and
the node: export the inference graph (a model is traced outside gg.nn.training()).
"""
from __future__ import annotations

import math
import os
import re
from typing import Callable, Sequence

import numpy as np

from ..errors import describe_node
from ..files import atomic_write
from ..graph import Tensor, ancestors, placeholder
from .common import EXPORT_OPSET, ONNX_TYPE, OnnxError, OnnxOpsetError, UnsupportedOpError, require_onnx

INT64_MAX = 2**63 - 1
INT64_MIN = -2**63


class _Writer:
    """The ONNX graph under construction: nodes, initializers, and a unique name per value."""

    def __init__(self, onnx):
        self.onnx = onnx
        self.helper = onnx.helper
        self.nodes: list = []
        self.initializers: list = []
        self.names: dict[int, str] = {}        # Tensor id -> ONNX value name
        self.taken: set[str] = set()

    def fresh(self, hint: str) -> str:
        base = re.sub(r"[^A-Za-z0-9_./:-]", "_", hint) or "v"
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def name_of(self, t: Tensor) -> str:
        return self.names[t.id]

    def node(self, op_type: str, inputs: Sequence[str], output: str | None = None, hint: str = "", **attrs) -> str:
        output = output or self.fresh(hint or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [output], name=self.fresh(f"{op_type}_{output}"),
                                                **attrs))
        return output

    def const(self, value, dtype, hint: str = "const") -> str:
        """A Constant node holding `value` (cast to dtype)."""
        arr = np.asarray(value, dtype=dtype)
        name = self.fresh(hint)
        tensor = self.onnx.numpy_helper.from_array(arr, name=name)
        self.nodes.append(self.helper.make_node("Constant", [], [name], name=self.fresh(f"Constant_{name}"),
                                                value=tensor))
        return name


# ---- one function per graphgrad op: (writer, node, input names, output name) ------------------

def _same_name(onnx_op: str) -> Callable:
    return lambda w, node, ins, out: w.node(onnx_op, ins, out)


def _scalar(w, node, value, hint):
    return w.const(value, node.dtype, hint=f"{w.name_of(node)}/{hint}")


def _pow_scalar(w, node, ins, out):
    w.node("Pow", [ins[0], _scalar(w, node, node.attrs["exponent"], "exponent")], out)


def _clip(w, node, ins, out):
    lo, hi = node.attrs["min"], node.attrs["max"]
    w.node("Clip", [ins[0], _scalar(w, node, lo, "min"), _scalar(w, node, hi, "max")], out)


def _alpha(onnx_op):
    return lambda w, node, ins, out: w.node(onnx_op, ins, out, alpha=float(node.attrs["alpha"]))


def _gelu(w, node, ins, out):
    # opset 17 has no Gelu: 0.5 x (1 + erf(x / sqrt 2)), or the tanh form
    x = ins[0]
    if node.attrs["approximate"] == "tanh":
        cube = w.node("Mul", [x, w.node("Mul", [x, x])])
        inner = w.node("Add", [x, w.node("Mul", [cube, _scalar(w, node, 0.044715, "c")])])
        shape = w.node("Tanh", [w.node("Mul", [inner, _scalar(w, node, math.sqrt(2 / math.pi), "k")])])
    else:
        shape = w.node("Erf", [w.node("Mul", [x, _scalar(w, node, 1 / math.sqrt(2), "k")])])
    half_x = w.node("Mul", [x, _scalar(w, node, 0.5, "half")])
    w.node("Mul", [half_x, w.node("Add", [shape, _scalar(w, node, 1.0, "one")])], out)


def _matmul(w, node, ins, out):
    ta, tb = node.attrs["trans_a"], node.attrs["trans_b"]
    if not ta and not tb:
        w.node("MatMul", ins, out)
    else:
        w.node("Gemm", ins, out, transA=int(ta), transB=int(tb))


def _axis(onnx_op):
    return lambda w, node, ins, out: w.node(onnx_op, ins, out, axis=int(node.attrs["axis"]))


def _sum(w, node, ins, out):
    axes, keepdims = list(node.attrs["axes"]), int(node.attrs["keepdims"])
    if not axes:                                 # a reduction over no axes is the identity
        w.node("Identity", ins, out)
    elif node.attrs["mean"]:
        w.node("ReduceMean", ins, out, axes=axes, keepdims=keepdims)      # opset 17: axes is an attribute
    else:
        w.node("ReduceSum", [ins[0], w.const(axes, np.int64, "axes")], out, keepdims=keepdims)


def _max(w, node, ins, out):
    axes = list(node.attrs["axes"])
    if not axes:
        w.node("Identity", ins, out)
    else:
        w.node("ReduceMax", ins, out, axes=axes, keepdims=int(node.attrs["keepdims"]))


def _reshape(w, node, ins, out):
    if len(ins) == 2:                            # reshape(g, like): to like's shape
        w.node("Reshape", [ins[0], w.node("Shape", [ins[1]])], out)
        return
    spec = [-1 if s is None else int(s) for s in node.attrs["shape"]]
    extra = {"allowzero": 1} if 0 in spec else {}   # ONNX reads 0 as "copy the input's size" otherwise
    w.node("Reshape", [ins[0], w.const(spec, np.int64, f"{w.name_of(node)}/shape")], out, **extra)


def _transpose(w, node, ins, out):
    w.node("Transpose", ins, out, perm=[int(p) for p in node.attrs["perm"]])


def _broadcast_to(w, node, ins, out):
    # Expand broadcasts both ways, so a None (keep the input's size) is written as 1
    shape = [1 if s is None else int(s) for s in node.attrs["shape"]]
    w.node("Expand", [ins[0], w.const(shape, np.int64, f"{w.name_of(node)}/shape")], out)


def _slice(w, node, ins, out):
    starts, ends, axes, steps, squeeze = [], [], [], [], []
    for d, item in enumerate(node.attrs["items"]):
        axes.append(d)
        if item[0] == "i":
            k = item[1]
            starts.append(k)
            ends.append(INT64_MAX if k == -1 else k + 1)
            steps.append(1)
            squeeze.append(d)
        else:
            start, stop, step = item[1], item[2], 1 if item[3] is None else item[3]
            starts.append(start if start is not None else (0 if step > 0 else INT64_MAX))
            ends.append(stop if stop is not None else (INT64_MAX if step > 0 else INT64_MIN))
            steps.append(step)
    name = w.name_of(node)
    args = [ins[0]] + [w.const(v, np.int64, f"{name}/{k}") for k, v in
                       (("starts", starts), ("ends", ends), ("axes", axes), ("steps", steps))]
    if not squeeze:
        w.node("Slice", args, out)
    else:
        w.node("Squeeze", [w.node("Slice", args), w.const(squeeze, np.int64, f"{name}/squeeze")], out)


# ---- convolution, pooling, batch normalisation ----------------------------------------------

def _pairs(value) -> list[int]:
    return [int(value), int(value)] if isinstance(value, int) else [int(v) for v in value]


def _conv2d(w, node, ins, out):
    from ..ops.conv import _conv_params
    kernel = tuple(node.inputs[1].shape[2:])
    stride, (ph, pw), dilation = _conv_params(node.attrs, kernel)   # "same"/"valid" resolved for this kernel
    act = int(node.attrs.get("act", 0))
    if act not in (0, 1):
        raise UnsupportedOpError(f"{describe_node(node)}: a fused activation code {act} has no ONNX export")
    attrs = dict(kernel_shape=list(kernel), strides=list(stride), pads=[ph, pw, ph, pw], dilations=list(dilation))
    if act:                                      # a ReLU the simplify pass folded into the convolution
        w.node("Relu", [w.node("Conv", ins, **attrs)], out)
    else:
        w.node("Conv", ins, out, **attrs)


def _pool(onnx_op, **extra):
    def emit(w, node, ins, out):
        kernel = _pairs(node.attrs["kernel_size"])
        stride = kernel if node.attrs["stride"] is None else _pairs(node.attrs["stride"])
        ph, pw = _pairs(node.attrs["padding"])
        w.node(onnx_op, ins, out, kernel_shape=kernel, strides=stride, pads=[ph, pw, ph, pw], **extra)
    return emit


def _batch_norm_eval(w, node, ins, out):
    # inputs x, gamma, beta, running mean, running var: ONNX's order (X, scale, B, mean, var)
    w.node("BatchNormalization", ins, out, epsilon=float(node.attrs["eps"]))


def _mean_or_sum(w, node, ins, out):
    # global_avg_pool2d is the mean over (H, W) of NCHW: GlobalAveragePool, then (N, C, 1, 1) -> (N, C)
    if node.attrs["mean"] and tuple(node.attrs["axes"]) == (2, 3) and not node.attrs["keepdims"] \
            and node.inputs[0].ndim == 4:
        w.node("Flatten", [w.node("GlobalAveragePool", ins)], out, axis=1)
    else:
        _sum(w, node, ins, out)


EXPORTERS: dict[str, Callable] = {
    "add": _same_name("Add"), "sub": _same_name("Sub"), "mul": _same_name("Mul"), "div": _same_name("Div"),
    "pow": _same_name("Pow"), "maximum": _same_name("Max"), "minimum": _same_name("Min"),
    "neg": _same_name("Neg"), "abs": _same_name("Abs"), "sign": _same_name("Sign"), "copy": _same_name("Identity"),
    "exp": _same_name("Exp"), "log": _same_name("Log"), "sqrt": _same_name("Sqrt"),
    "pow_scalar": _pow_scalar, "clip": _clip,
    "relu": _same_name("Relu"), "sigmoid": _same_name("Sigmoid"), "tanh": _same_name("Tanh"),
    "softplus": _same_name("Softplus"), "leaky_relu": _alpha("LeakyRelu"), "elu": _alpha("Elu"), "gelu": _gelu,
    "matmul": _matmul, "softmax": _axis("Softmax"), "log_softmax": _axis("LogSoftmax"),
    "sum": _mean_or_sum, "max": _max,
    "reshape": _reshape, "transpose": _transpose, "broadcast_to": _broadcast_to, "slice": _slice,
    "concat": _axis("Concat"),
    "conv2d": _conv2d, "max_pool2d": _pool("MaxPool"),
    # graphgrad divides every window by kh·kw, padding included
    "avg_pool2d": _pool("AveragePool", count_include_pad=1),
    "batch_norm_eval": _batch_norm_eval,
}


def _value_info(helper, name: str, t: Tensor):
    dims = ["batch" if d is None and axis == 0 else d for axis, d in enumerate(t.shape)]
    return helper.make_tensor_value_info(name, ONNX_TYPE[t.dtype.name], dims)


def _model_input_shape(model) -> tuple:
    from ..nn import Dense, Sequential
    from .importer import ImportedModel
    if isinstance(model, ImportedModel) and len(model.inputs) == 1:
        (x,) = model.inputs.values()
        if x.ndim and x.shape[0] is None and None not in x.shape[1:]:
            return tuple(x.shape[1:])
    first = model
    while isinstance(first, Sequential) and len(first):
        first = first[0]
    if isinstance(first, Dense):
        return (first.in_features,)
    raise OnnxError(f"cannot tell the input shape of {type(model).__name__}: pass input_shape=(...) (one "
                    "sample's shape, without the batch axis), e.g. input_shape=(1, 28, 28)")


def _outputs_by_name(model_or_outputs, input_shape, input_name: str, output_names) -> dict[str, Tensor]:
    from ..nn import Module, training
    if isinstance(model_or_outputs, Module):
        shape = tuple(input_shape) if input_shape is not None else _model_input_shape(model_or_outputs)
        x = placeholder((None,) + shape, name=input_name, dtype=model_or_outputs.dtype)
        with training(False):                   # the inference graph: Dropout is the identity
            y = model_or_outputs(x)
        outputs = [y]
    elif isinstance(model_or_outputs, Tensor):
        outputs = [model_or_outputs]
    elif isinstance(model_or_outputs, dict):
        if not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in model_or_outputs.items()):
            raise TypeError("export takes a dict {output name: Tensor}")
        return dict(model_or_outputs)
    else:
        outputs = list(model_or_outputs)
        if not outputs or not all(isinstance(t, Tensor) for t in outputs):
            raise TypeError("export takes a gg.nn model, a Tensor, a list of Tensors or a dict {name: Tensor}")
    if output_names is None:
        output_names = ["output"] if isinstance(model_or_outputs, Module) else [t.name for t in outputs]
    output_names = list(output_names)
    if len(output_names) != len(outputs) or len(set(output_names)) != len(output_names):
        raise ValueError(f"output_names {output_names} must name the {len(outputs)} outputs once each")
    return dict(zip(output_names, outputs))


def to_model(model_or_outputs, *, input_shape: Sequence[int] | None = None, input_name: str = "input",
             output_names: Sequence[str] | None = None, opset: int = EXPORT_OPSET, graph_name: str = "graphgrad"):
    """The ModelProto for a model or outputs (see export)."""
    onnx = require_onnx()
    helper = onnx.helper
    if opset != EXPORT_OPSET:
        raise OnnxOpsetError(f"graphgrad exports opset {EXPORT_OPSET} only (asked for opset {opset})")
    outputs = _outputs_by_name(model_or_outputs, input_shape, input_name, output_names)
    w = _Writer(onnx)
    nodes = ancestors(outputs.values())
    inputs, initializers = [], []
    # graph inputs and initializers keep their graphgrad names: they are what users feed and load
    for t in nodes:
        if t.op == "placeholder":
            if t.name in w.taken:
                raise OnnxError(f'two placeholders are named "{t.name}": ONNX inputs need unique names')
            if t.dtype.name not in ONNX_TYPE:
                raise UnsupportedOpError(f'placeholder "{t.name}" has dtype {t.dtype.name}')
            w.taken.add(t.name)
            w.names[t.id] = t.name
            inputs.append(_value_info(helper, t.name, t))
    for out_name in outputs:
        if out_name in w.taken:
            raise OnnxError(f'output name "{out_name}" is also an input\'s name; pick another (output_names=...)')
    w.taken.update(outputs)
    # an output computed by an op is named by its output name directly; others get an Identity
    direct = {}
    for out_name, t in outputs.items():
        if t.op not in ("placeholder", "variable", "constant"):
            direct.setdefault(t.id, out_name)
    for t in nodes:
        if t.op == "placeholder":
            continue
        name = direct.get(t.id) or w.fresh(t.name)
        w.names[t.id] = name
        if t.op == "variable":
            initializers.append(onnx.numpy_helper.from_array(np.asarray(t.data), name=name))
        elif t.op == "constant":
            tensor = onnx.numpy_helper.from_array(np.asarray(t.data), name=name)
            w.nodes.append(helper.make_node("Constant", [], [name], name=w.fresh(f"Constant_{name}"), value=tensor))
        else:
            emit = EXPORTERS.get(t.op)
            if emit is None:
                raise UnsupportedOpError(
                    f"{describe_node(t)} has no ONNX equivalent in graphgrad's exporter (opset {EXPORT_OPSET}); "
                    "export the inference graph (gradients, optimizer updates, losses and training-mode dropout "
                    f"do not export). Exported ops: {', '.join(sorted(EXPORTERS))}")
            emit(w, t, [w.name_of(i) for i in t.inputs], name)
    graph_outputs = []
    for out_name, t in outputs.items():
        if out_name != w.name_of(t):
            w.nodes.append(helper.make_node("Identity", [w.name_of(t)], [out_name],
                                            name=w.fresh(f"Identity_{out_name}")))
        graph_outputs.append(_value_info(helper, out_name, t))
    graph = helper.make_graph(w.nodes, graph_name, inputs, graph_outputs, initializer=initializers)
    model = helper.make_model(graph, producer_name="graphgrad", producer_version=_version(),
                              opset_imports=[helper.make_opsetid("", EXPORT_OPSET)])
    model.ir_version = 8                        # the IR of opset 17 (onnx 1.12): every reader of opset 17 takes it
    return model


def _version() -> str:
    from .. import __version__
    return __version__


def export(model_or_outputs, path: str | os.PathLike | None = None, *, input_shape: Sequence[int] | None = None,
           input_name: str = "input", output_names: Sequence[str] | None = None, opset: int = EXPORT_OPSET,
           check: bool = True):
    """Export a gg.nn model, or a graph given by its output Tensor(s), as an ONNX model (opset 17).

    model_or_outputs: a gg.nn model (traced in inference mode on a placeholder named `input_name`
    of shape (None,) + input_shape; input_shape defaults to (in_features,) of a first Dense
    layer; its output is named "output"), a Tensor, a list of Tensors (named by their names or
    `output_names`), or a dict {output name: Tensor}. The graph's placeholders become the inputs
    (None axes become the symbolic dimension "batch"), variables become initializers.
    path: where to write the .onnx file (written to a temporary file, then renamed: a failed
    export never leaves a half-written file). Returns the onnx.ModelProto.
    check: run onnx.checker.check_model(full_check=True) before writing.
    """
    onnx = require_onnx()
    model = to_model(model_or_outputs, input_shape=input_shape, input_name=input_name,
                     output_names=output_names, opset=opset)
    if check:
        onnx.checker.check_model(model, full_check=True)
    if path is not None:
        with atomic_write(os.fspath(path)) as f:
            f.write(model.SerializeToString())
    return model
