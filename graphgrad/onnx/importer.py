"""gg.onnx.load: an ONNX model as a graphgrad graph (an ImportedModel, a gg.nn module).

Graph inputs become placeholders (a symbolic first dimension becomes None, the batch axis),
float initializers become trainable variables (constants with trainable=False), Constant nodes
become constants, and each ONNX node becomes graphgrad ops. Values known at import time —
Constant nodes, integer initializers, a tensor's static shape — stay NumPy arrays, and the
shape-glue operators exporters emit around reshapes (Shape, Gather, Unsqueeze, Squeeze, Slice,
Concat, Cast of such values) are evaluated on them at import, so a Reshape gets a fixed shape.
An unknown batch size inside such a value is the marker BATCH; a Reshape can use it in one
place (graphgrad's None), and arithmetic on it is an OnnxShapeError.

Each supported operator is one function in IMPORTERS, written for the operator versions named
beside it (ONNX's `since_version`); a node whose version is not among them is an
UnsupportedOpError, as is an attribute value or dtype graphgrad has no equivalent for.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from .. import ops as _ops
from ..errors import ShapeError
from ..graph import Tensor, constant, placeholder, variable
from ..nn import Module
from ..ops.shape import MAX_CONCAT_INPUTS
from .common import (FLOAT_TYPES, MAX_IMPORT_OPSET, MIN_IMPORT_OPSET, OnnxError, OnnxFormatError, OnnxOpsetError,
                     OnnxShapeError, StaticValueRequired, UnsupportedOpError, require_onnx)


def _tensor_array(onnx, tensor, what: str) -> np.ndarray:
    """A TensorProto's values as a NumPy array; onnx's own complaints about a malformed tensor (data
    that does not fill its dims, a segment, an undefined element type) become OnnxFormatError."""
    try:
        return onnx.numpy_helper.to_array(tensor)
    except (ValueError, TypeError) as err:
        raise OnnxFormatError(f'{what} "{tensor.name}" cannot be read: {err}') from err


class _Batch:
    """The batch size inside a shape value known at import time (Shape of a (None, ...) tensor)."""

    def __repr__(self) -> str:
        return "BATCH"


BATCH = _Batch()


@dataclass(frozen=True)
class Importer:
    fn: Callable          # (node) -> list of output values (Tensors, or arrays known at import time)
    versions: tuple       # the since_versions this function implements


IMPORTERS: dict[str, Importer] = {}


def importer(op_type: str, versions: Iterable[int]):
    """Register fn as the importer of op_type's `versions`. The shape-glue importers also
    evaluate a node in NumPy when its inputs are values known at import time."""
    def register(fn):
        IMPORTERS[op_type] = Importer(fn, tuple(versions))
        return fn
    return register


def supported_operators() -> list[str]:
    """The ONNX operators gg.onnx.load reads."""
    return sorted(IMPORTERS)


# ---- the state of one build: values by name --------------------------------------------------

class _Node:
    """One ONNX node being imported: its inputs as values, its attributes, where it is."""

    def __init__(self, ctx, proto, index: int, version: int):
        self.ctx, self.proto, self.index, self.version = ctx, proto, index, version
        self.op = proto.op_type
        self.label = f'{proto.op_type} node "{proto.name}" (node {index})' if proto.name else \
            f"{proto.op_type} node {index}"
        onnx = ctx.onnx
        self.attrs = {a.name: onnx.helper.get_attribute_value(a) for a in proto.attribute}
        self.input_names = list(proto.input)

    def __len__(self) -> int:
        return len(self.input_names)

    def has(self, k: int) -> bool:
        return k < len(self.input_names) and self.input_names[k] != ""

    def value(self, k: int):
        return self.ctx.values[self.input_names[k]]

    def is_static(self, k: int) -> bool:
        return isinstance(self.value(k), np.ndarray)

    def tensor(self, k: int) -> Tensor:
        return self.ctx.tensor(self.input_names[k], self)

    def static(self, k: int, what: str) -> np.ndarray:
        v = self.value(k)
        if not isinstance(v, np.ndarray):
            raise StaticValueRequired(f"{self.label}: its {what} (input {k}, \"{self.input_names[k]}\") is "
                                      "computed by the graph; graphgrad needs it known at import time (a constant, "
                                      "an initializer, or an input bound with static_inputs=)", self.input_names[k])
        return v

    def ints(self, k: int, what: str) -> list[int]:
        arr = self.static(k, what)
        if any(v is BATCH for v in arr.reshape(-1).tolist()):
            raise OnnxShapeError(f"{self.label}: its {what} depends on the batch size")
        return [int(v) for v in arr.reshape(-1).tolist()]

    def attr(self, name: str, default=None):
        return self.attrs.get(name, default)

    def unsupported(self, what: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.label}: {what} is not supported by graphgrad's importer")

    def check_attrs(self, allowed: Iterable[str]) -> None:
        extra = sorted(set(self.attrs) - set(allowed))
        if extra:
            raise self.unsupported(f"attribute {extra[0]!r}")


class _Context:
    def __init__(self, onnx, owner: "ImportedModel"):
        self.onnx = onnx
        self.owner = owner
        self.values: dict[str, object] = {}

    def tensor(self, name: str, node: _Node | None = None) -> Tensor:
        """The value `name` as a graph Tensor: initializers become (cached) variables, other
        static values constants."""
        v = self.values[name]
        if isinstance(v, Tensor):
            return v
        where = f"{node.label}: " if node is not None else ""
        if v.dtype == object:
            raise OnnxShapeError(f'{where}"{name}" holds the batch size, which graphgrad knows only at run time; '
                                 "it can only shape a Reshape")
        if v.dtype.kind != "f" or v.dtype.name not in ("float32", "float64"):
            raise UnsupportedOpError(f'{where}"{name}" has dtype {v.dtype.name}; graphgrad computes in float32 '
                                     "and float64 (integer values are only read as shapes, axes and indices)")
        t = self.owner._leaf(name, v)
        self.values[name] = t
        return t


# ---- elementwise ------------------------------------------------------------------------------

_BINARY = {"Add": _ops.add, "Sub": _ops.sub, "Mul": _ops.mul, "Div": _ops.div}
for _op, _fn in _BINARY.items():
    importer(_op, (7, 13, 14))(lambda n, fn=_fn: [fn(n.tensor(0), n.tensor(1))])

_UNARY = {"Relu": (_ops.relu, (6, 13, 14)), "Sigmoid": (_ops.sigmoid, (6, 13)), "Tanh": (_ops.tanh, (6, 13)),
          "Exp": (_ops.exp, (6, 13)), "Log": (_ops.log, (6, 13)), "Sqrt": (_ops.sqrt, (6, 13)),
          "Abs": (_ops.abs, (6, 13)), "Neg": (_ops.neg, (6, 13)), "Softplus": (_ops.softplus, (1, 22))}
for _op, (_fn, _versions) in _UNARY.items():
    importer(_op, _versions)(lambda n, fn=_fn: [fn(n.tensor(0))])


@importer("LeakyRelu", (6, 16))
def _leaky_relu(n):
    return [_ops.leaky_relu(n.tensor(0), alpha=float(n.attr("alpha", 0.01)))]


@importer("Elu", (6, 22))
def _elu(n):
    return [_ops.elu(n.tensor(0), alpha=float(n.attr("alpha", 1.0)))]


@importer("Gelu", (20,))
def _gelu(n):
    approximate = n.attr("approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    if approximate not in ("none", "tanh"):
        raise n.unsupported(f"approximate={approximate!r}")
    return [_ops.gelu(n.tensor(0), approximate=approximate)]


@importer("Pow", (7, 12, 13, 15))
def _pow(n):
    x = n.tensor(0)
    if n.is_static(1):
        e = n.static(1, "exponent")
        # a single exponent that does not change the result's shape: one pow_scalar node
        if e.size == 1 and e.ndim <= x.ndim and e.dtype != object:
            return [_ops.pow(x, float(e.reshape(-1)[0]))]
        if e.dtype.kind in "iu":
            return [_ops.pow(x, constant(e.astype(x.dtype), dtype=x.dtype))]
    return [_ops.pow(x, n.tensor(1))]


@importer("Max", (6, 8, 12, 13))
def _max(n):
    return [_fold(n, _ops.maximum)]


@importer("Min", (6, 8, 12, 13))
def _min(n):
    return [_fold(n, _ops.minimum)]


def _fold(n, fn):
    result = n.tensor(0)
    for k in range(1, len(n)):
        result = fn(result, n.tensor(k))
    return result


@importer("Clip", (6, 11, 12, 13))
def _clip(n):
    if n.version < 11:
        lo, hi = n.attr("min", -math.inf), n.attr("max", math.inf)
    else:
        lo = float(n.static(1, "min").reshape(-1)[0]) if n.has(1) else -math.inf
        hi = float(n.static(2, "max").reshape(-1)[0]) if n.has(2) else math.inf
    if lo > hi:                         # ONNX: every value becomes max
        lo = hi
    return [_ops.clip(n.tensor(0), lo, hi)]


# ---- products ---------------------------------------------------------------------------------

@importer("Gemm", (7, 9, 11, 13))
def _gemm(n):
    n.check_attrs(("alpha", "beta", "transA", "transB"))
    a, b = n.tensor(0), n.tensor(1)
    y = _ops.matmul(a, b, trans_a=bool(n.attr("transA", 0)), trans_b=bool(n.attr("transB", 0)))
    alpha, beta = float(n.attr("alpha", 1.0)), float(n.attr("beta", 1.0))
    if alpha != 1.0:
        y = y * alpha
    if n.has(2) and beta != 0.0:
        c = n.tensor(2)
        y = y + (c if beta == 1.0 else c * beta)
    return [y]


@importer("MatMul", (1, 9, 13))
def _matmul(n):
    a, b = n.tensor(0), n.tensor(1)
    if b.ndim > 2:
        raise n.unsupported(f"a batched MatMul (right operand of rank {b.ndim})")
    if a.ndim == 0 or b.ndim == 0:
        raise OnnxShapeError(f"{n.label}: MatMul takes operands of rank >= 1")
    a2 = _ops.reshape(a, (1, a.shape[0])) if a.ndim == 1 else a
    if a.ndim > 2:                              # (..., K) @ (K, N): one product over all the rows
        if a.shape.count(None) > 1:
            raise OnnxShapeError(f"{n.label}: left operand {a.shape} has more than one unknown size")
        a2 = _ops.reshape(a, (None if None in a.shape[:-1] else -1, a.shape[-1]))
    b2 = _ops.reshape(b, (b.shape[0], 1)) if b.ndim == 1 else b
    y = _ops.matmul(a2, b2)
    out_shape = tuple(a.shape[:-1]) + (tuple(b.shape[1:]) if b.ndim == 2 else ())
    if tuple(y.shape) != out_shape:
        y = _ops.reshape(y, out_shape)
    return [y]


# ---- softmax along an axis ---------------------------------------------------------------------

def _softmax_like(fn):
    def convert(n):
        x = n.tensor(0)
        if n.version >= 13:
            return [fn(x, axis=int(n.attr("axis", -1)))]
        # before opset 13: the input is read as 2-D, (prod(shape[:axis]), prod(shape[axis:]))
        axis = int(n.attr("axis", 1)) % max(x.ndim, 1)
        if axis == x.ndim - 1:
            return [fn(x, axis=-1)]
        if None in x.shape[axis:]:
            raise OnnxShapeError(f"{n.label}: axis {axis} of a {x.shape} input would flatten the batch axis")
        flat = _ops.reshape(x, (None if None in x.shape else -1, math.prod(x.shape[axis:])))
        return [_ops.reshape(fn(flat, axis=1), x.shape)]
    return convert


importer("Softmax", (1, 11, 13))(_softmax_like(_ops.softmax))
importer("LogSoftmax", (1, 11, 13))(_softmax_like(_ops.log_softmax))


# ---- reductions ---------------------------------------------------------------------------------

def _reduce(fn, axes_input_from: int):
    def convert(n):
        x = n.tensor(0)
        keepdims = bool(n.attr("keepdims", 1))
        if n.version >= axes_input_from:
            axes = n.ints(1, "axes") if n.has(1) else []
            if not axes and n.attr("noop_with_empty_axes", 0):
                return [x]
        else:
            axes = list(n.attr("axes", []))
        return [fn(x, axis=tuple(axes) if axes else None, keepdims=keepdims)]
    return convert


importer("ReduceSum", (1, 11, 13))(_reduce(_ops.sum, 13))
importer("ReduceMean", (1, 11, 13, 18))(_reduce(_ops.mean, 18))
importer("ReduceMax", (1, 11, 12, 13, 18, 20))(_reduce(_ops.max, 18))


# ---- shapes -------------------------------------------------------------------------------------

def _static_shape_value(shape) -> np.ndarray:
    """A shape as a value known at import time: int64, or object with BATCH for None."""
    if any(d is None for d in shape):
        return np.array([BATCH if d is None else int(d) for d in shape], dtype=object)
    return np.array(shape, dtype=np.int64)


@importer("Shape", (1, 13, 15, 19, 21, 23, 24, 25))
def _shape(n):
    shape = tuple(n.value(0).shape)
    rank = len(shape)
    start, end = int(n.attr("start", 0)), n.attr("end", None)
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = rank if end is None else min(max(int(end) + rank if int(end) < 0 else int(end), 0), rank)
    return [_static_shape_value(shape[start:end] if start < end else ())]


def _reshape_spec(n, x: Tensor, spec: list, allowzero: bool) -> tuple:
    """ONNX's Reshape shape (0 = copy, -1 = infer, BATCH = the batch size) as graphgrad's spec."""
    out = []
    for d, s in enumerate(spec):
        if s is BATCH:
            out.append(None)
        elif s == 0 and not allowzero:
            if d >= x.ndim:
                raise OnnxShapeError(f"{n.label}: shape {spec} copies axis {d} of a rank-{x.ndim} input")
            out.append(x.shape[d])
        else:
            out.append(int(s))
    inferred = [d for d, s in enumerate(out) if s is None or s == -1]
    if len(inferred) > 1:
        # (batch, -1) of a (None, static...) input: the -1 follows from the static sizes
        known = [s for s in out if s is not None and s != -1]
        if out.count(None) == 1 and out.count(-1) == 1 and x.shape.count(None) == 1:
            rest = math.prod(d for d in x.shape if d is not None)
            if math.prod(known) and rest % math.prod(known) == 0:
                return tuple(rest // math.prod(known) if s == -1 else s for s in out)
        raise OnnxShapeError(f"{n.label}: shape {spec} for an input of shape {x.shape} leaves more than one "
                             "size unknown until run time")
    return tuple(out)


@importer("Reshape", (5, 13, 14, 19, 21, 23, 24, 25))
def _reshape(n):
    spec = list(n.static(1, "shape").reshape(-1))
    allowzero = bool(n.attr("allowzero", 0))
    if n.is_static(0):
        data = n.value(0)
        if allowzero or 0 not in spec:
            return [data.reshape([int(s) for s in spec])]
        return [data.reshape([data.shape[d] if s == 0 else int(s) for d, s in enumerate(spec)])]
    x = n.tensor(0)
    return [_ops.reshape(x, _reshape_spec(n, x, spec, allowzero))]


@importer("Flatten", (1, 9, 11, 13, 21, 23, 24, 25))
def _flatten(n):
    x = n.tensor(0)
    axis = int(n.attr("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    head, tail = x.shape[:axis], x.shape[axis:]
    if None in tail and None in head or tail.count(None) + head.count(None) > 1:
        raise OnnxShapeError(f"{n.label}: flattening {x.shape} at axis {axis}")
    rows = None if None in head else math.prod(head)
    cols = None if None in tail else math.prod(tail)
    return [_ops.reshape(x, (rows, cols))]


@importer("Transpose", (1, 13, 21, 23, 24, 25))
def _transpose(n):
    perm = n.attr("perm", None)
    if n.is_static(0):
        return [np.transpose(n.value(0), perm)]
    x = n.tensor(0)
    return [_ops.transpose(x, None if perm is None else list(perm))]


def _axes(n, k: int, attr_before: int) -> list[int] | None:
    if n.version < attr_before:
        axes = n.attr("axes", None)
        return None if axes is None else list(axes)
    return n.ints(k, "axes") if n.has(k) else None


@importer("Unsqueeze", (1, 11, 13, 21, 23, 24, 25))
def _unsqueeze(n):
    axes = _axes(n, 1, 13)
    if axes is None:
        raise OnnxFormatError(f"{n.label}: Unsqueeze needs axes")
    v = n.value(0)
    rank = len(v.shape) + len(axes)
    axes = sorted(a + rank if a < 0 else a for a in axes)
    shape = list(v.shape)
    for a in axes:
        shape.insert(a, 1)
    if isinstance(v, np.ndarray):
        return [v.reshape(shape)]
    return [_ops.reshape(v, tuple(shape))]


@importer("Squeeze", (1, 11, 13, 21, 23, 24, 25))
def _squeeze(n):
    v = n.value(0)
    axes = _axes(n, 1, 13)
    rank = len(v.shape)
    if axes is None:
        axes = [d for d, s in enumerate(v.shape) if s == 1]
    axes = {a + rank if a < 0 else a for a in axes}
    for a in axes:
        if v.shape[a] not in (1, None):
            raise OnnxShapeError(f"{n.label}: axis {a} of shape {v.shape} has size {v.shape[a]}, not 1")
    shape = [s for d, s in enumerate(v.shape) if d not in axes]
    if isinstance(v, np.ndarray):
        return [v.reshape(shape)]
    return [_ops.reshape(v, tuple(shape))]


@importer("Concat", (4, 11, 13))
def _concat(n):
    axis = int(n.attr("axis"))
    if all(n.is_static(k) for k in range(len(n))):
        return [np.concatenate([n.value(k) for k in range(len(n))], axis=axis)]
    parts = [n.tensor(k) for k in range(len(n)) if not (n.is_static(k) and n.value(k).size == 0)]
    return [parts[0] if len(parts) == 1 else _ops.concat(parts, axis=axis)]


@importer("Gather", (1, 11, 13))
def _gather(n):
    indices = n.static(1, "indices")
    if indices.dtype.kind not in "iu":
        raise n.unsupported(f"indices of dtype {indices.dtype}")
    axis = int(n.attr("axis", 0))
    if n.is_static(0):
        data = n.value(0)
        return [np.array(np.take(data, indices.astype(np.int64), axis=axis), dtype=data.dtype)]
    x = n.tensor(0)
    axis = axis + x.ndim if axis < 0 else axis
    size = x.shape[axis]
    if size is None:
        raise OnnxShapeError(f"{n.label}: gathering along the batch axis of {x.shape}")
    flat = [int(k) + size if k < 0 else int(k) for k in indices.reshape(-1).tolist()]
    for k in flat:
        if not 0 <= k < size:
            raise OnnxShapeError(f"{n.label}: index {k} is out of range for axis {axis} of size {size}")
    lead = (slice(None),) * axis
    if indices.ndim == 0:
        return [x[lead + (flat[0],)]]
    pieces = [x[lead + (slice(k, k + 1),)] for k in flat]
    while len(pieces) > 1:       # concat takes a few inputs at a time
        pieces = [_ops.concat(pieces[i:i + MAX_CONCAT_INPUTS], axis=axis) if len(pieces[i:i + MAX_CONCAT_INPUTS]) > 1
                  else pieces[i] for i in range(0, len(pieces), MAX_CONCAT_INPUTS)]
    y = pieces[0]
    if indices.ndim != 1:
        y = _ops.reshape(y, tuple(x.shape[:axis]) + tuple(indices.shape) + tuple(x.shape[axis + 1:]))
    return [y]


@importer("Slice", (10, 11, 13))
def _slice(n):
    v = n.value(0)
    rank = len(v.shape)
    starts, ends = n.ints(1, "starts"), n.ints(2, "ends")
    axes = n.ints(3, "axes") if n.has(3) else list(range(len(starts)))
    steps = n.ints(4, "steps") if n.has(4) else [1] * len(starts)
    key = [slice(None)] * rank
    for a, start, end, step in zip(axes, starts, ends, steps):
        a = a + rank if a < 0 else a
        if step == 0:
            raise OnnxFormatError(f"{n.label}: a step of 0")
        # ONNX counts negative bounds from the end and clamps the rest, as Python slices do
        key[a] = slice(start, end, step)
    return [v[tuple(key)]]


@importer("Cast", (6, 9, 13, 19, 21, 23, 24, 25, 28))
def _cast(n):
    to = int(n.attr("to"))
    v = n.value(0)
    if isinstance(v, np.ndarray):
        if v.dtype == object:
            if to != 7:
                raise OnnxShapeError(f"{n.label}: casting a shape that holds the batch size")
            return [v]
        onnx = n.ctx.onnx
        return [v.astype(onnx.helper.tensor_dtype_to_np_dtype(to))]
    if FLOAT_TYPES.get(to) == v.dtype:
        return [v]
    raise n.unsupported(f"a cast of a {v.dtype.name} tensor to ONNX type {to}")


@importer("Identity", (1, 13, 14, 16, 19, 21, 23, 24, 25))
def _identity(n):
    return [n.value(0)]


@importer("Dropout", (7, 10, 12, 13, 22))
def _dropout(n):
    # inference: the identity. In training mode only a zero ratio is deterministic.
    if n.version >= 12 and n.has(2) and bool(n.static(2, "training_mode").reshape(-1)[0]):
        ratio = float(n.static(1, "ratio").reshape(-1)[0]) if n.has(1) else 0.5
        if ratio != 0.0:
            raise n.unsupported("training-mode Dropout (random masks)")
    x = n.value(0)
    if len(n.proto.output) > 1 and n.proto.output[1]:
        # the mask keeps everything; it is a value known at import time when the shape is
        if None in x.shape:
            raise n.unsupported("Dropout's mask output for an input with a batch axis")
        return [x, np.ones(x.shape, dtype=bool)]
    return [x]


@importer("Constant", (1, 9, 11, 12, 13, 19, 21, 23, 24, 25))
def _constant(n):
    onnx = n.ctx.onnx
    (key, value), = n.attrs.items()
    if key == "value":
        return [_tensor_array(onnx, value, f"{n.label}: its value")]
    if key in ("value_float", "value_floats"):
        return [np.array(value, dtype=np.float32)]
    if key in ("value_int", "value_ints"):
        return [np.array(value, dtype=np.int64)]
    raise n.unsupported(f"a Constant with {key}")


# ---- convolution, pooling, batch normalisation (2-D, NCHW) ------------------------------------------

def _spatial_input(n, what: str) -> Tensor:
    x = n.tensor(0)
    if x.ndim != 4:
        raise n.unsupported(f"a {x.ndim - 2}-D {what} (graphgrad has 2-D {what}s of NCHW input)")
    if None in x.shape[2:]:
        raise OnnxShapeError(f"{n.label}: the image size of input {x.shape} is unknown until run time")
    return x


def _window_pads(n, sizes, kernel, strides, dilations) -> tuple[int, int]:
    """The symmetric (top, left) padding that auto_pad / pads ask for, or an error where the two
    sides differ (graphgrad pads both sides of an axis alike)."""
    auto_pad = n.attr("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad == "NOTSET":
        pads = list(n.attr("pads", [0, 0, 0, 0]))
    elif auto_pad == "VALID":
        pads = [0, 0, 0, 0]
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        # output size ceil(size / stride); the extra row goes after (UPPER) or before (LOWER)
        total = [max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
                 for size, k, s, d in zip(sizes, kernel, strides, dilations)]
        small = [t // 2 for t in total]
        big = [t - t // 2 for t in total]
        pads = small + big if auto_pad == "SAME_UPPER" else big + small
    else:
        raise n.unsupported(f"auto_pad={auto_pad!r}")
    if len(pads) != 4 or pads[:2] != pads[2:]:
        raise n.unsupported(f"padding {pads} (begin and end sides differ; graphgrad pads both sides alike)")
    return int(pads[0]), int(pads[1])


def _window(n, x: Tensor, kernel) -> tuple:
    """(strides, (ph, pw), dilations) of a Conv or pooling node on x."""
    strides = [int(v) for v in n.attr("strides", [1, 1])]
    dilations = [int(v) for v in n.attr("dilations", [1, 1])]
    if len(strides) != 2 or len(dilations) != 2:
        raise OnnxShapeError(f"{n.label}: strides {strides} and dilations {dilations} must have two entries")
    return strides, _window_pads(n, x.shape[2:], kernel, strides, dilations), dilations


@importer("Conv", (1, 11, 22))         # 22: bfloat16 added (no change for float)
def _conv(n):
    n.check_attrs(("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"))
    x = _spatial_input(n, "convolution")
    w = n.tensor(1)
    if int(n.attr("group", 1)) != 1:
        raise n.unsupported(f"group={n.attr('group')} (grouped and depthwise convolutions)")
    if w.ndim != 4:
        raise OnnxShapeError(f"{n.label}: weights {w.shape} must be (out, in, kh, kw)")
    kernel = [int(v) for v in n.attr("kernel_shape", w.shape[2:])]
    if tuple(kernel) != tuple(w.shape[2:]):
        raise OnnxShapeError(f"{n.label}: kernel_shape {kernel} does not match the weights {w.shape}")
    strides, pads, dilations = _window(n, x, kernel)
    bias = n.tensor(2) if n.has(2) else None
    return [_ops.conv2d(x, w, bias, stride=tuple(strides), padding=pads, dilation=tuple(dilations))]


def _pooled_sizes(n, x, kernel, strides, pads, dilations=(1, 1)) -> None:
    """ceil_mode=1 is read only where it gives the floor sizes (graphgrad pools in floor mode)."""
    if not n.attr("ceil_mode", 0):
        return
    for size, k, s, p, d in zip(x.shape[2:], kernel, strides, pads, dilations):
        span = size + 2 * p - d * (k - 1) - 1
        if span % s:
            raise n.unsupported("ceil_mode=1 where it adds a partial window (graphgrad pools in floor mode)")


def _pool_window(n, x):
    kernel = [int(v) for v in n.attr("kernel_shape", [])]
    if len(kernel) != 2:
        raise n.unsupported(f"kernel_shape {kernel} (graphgrad pools 2-D)")
    strides, pads, dilations = _window(n, x, kernel)
    if dilations != [1, 1]:
        raise n.unsupported(f"dilations={dilations} in pooling")
    _pooled_sizes(n, x, kernel, strides, pads)
    return kernel, strides, pads


@importer("MaxPool", (1, 8, 10, 11, 12, 22))
def _max_pool(n):
    n.check_attrs(("auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"))
    if len(n.proto.output) > 1 and n.proto.output[1]:
        raise n.unsupported("MaxPool's Indices output")
    x = _spatial_input(n, "pooling")
    kernel, strides, pads = _pool_window(n, x)
    return [_ops.max_pool2d(x, tuple(kernel), tuple(strides), pads)]


@importer("AveragePool", (1, 7, 10, 11, 19, 22))
def _avg_pool(n):
    n.check_attrs(("auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"))
    x = _spatial_input(n, "pooling")
    kernel, strides, pads = _pool_window(n, x)
    y = _ops.avg_pool2d(x, tuple(kernel), tuple(strides), pads)
    if pads != (0, 0) and not n.attr("count_include_pad", 0):
        # graphgrad divides by kh·kw; ONNX's default divides by the window's unpadded count: rescale
        # by kh·kw / count, a constant (OH, OW) grid known at import time
        counts = []
        for size, k, s, p, out in zip(x.shape[2:], kernel, strides, pads, y.shape[2:]):
            starts = np.arange(out) * s - p
            counts.append(np.minimum(starts + k, size) - np.maximum(starts, 0))
        scale = (kernel[0] * kernel[1]) / np.outer(counts[0], counts[1])
        y = y * constant(scale.astype(x.dtype), dtype=x.dtype.name)
    return [y]


@importer("GlobalAveragePool", (1, 22))
def _global_avg_pool(n):
    x = _spatial_input(n, "pooling")
    return [_ops.mean(x, axis=(2, 3), keepdims=True)]


@importer("BatchNormalization", (7, 9, 14, 15))
def _batch_norm(n):
    n.check_attrs(("epsilon", "momentum", "training_mode", "spatial"))
    if n.attr("training_mode", 0) or len([o for o in n.proto.output if o]) > 1:
        raise n.unsupported("training-mode BatchNormalization (its running-statistics outputs)")
    if not n.attr("spatial", 1):
        raise n.unsupported("spatial=0")
    x, gamma, beta = n.tensor(0), n.tensor(1), n.tensor(2)
    # the running statistics are buffers, never trained: initializers become non-trainable variables
    mean, var = (n.ctx.owner._leaf(n.input_names[k], n.value(k), trainable=False) if n.is_static(k)
                 else n.tensor(k) for k in (3, 4))
    return [_ops.batch_norm(x, gamma, beta, mean, var, training=False, eps=float(n.attr("epsilon", 1e-5)))]


# ---- the imported model --------------------------------------------------------------------------

def _read_model(onnx, source):
    if isinstance(source, onnx.ModelProto):
        return source, "the given ModelProto"
    where = "the given bytes" if isinstance(source, (bytes, bytearray)) else os.fspath(source)
    try:
        if isinstance(source, (bytes, bytearray)):
            model = onnx.load_model_from_string(bytes(source))
        else:
            model = onnx.load(where)
    except (OSError, FileNotFoundError):
        raise
    except Exception as err:           # protobuf decode errors and friends: not an ONNX file
        raise OnnxFormatError(f"{where} is not a readable ONNX model (truncated or another format): "
                              f"{type(err).__name__}: {err}") from None
    return model, where


def _default_opset(model) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not versions:
        raise OnnxOpsetError("the model imports no default-domain (ai.onnx) opset")
    return int(versions[0])


class ImportedModel(Module):
    """An ONNX model as a graphgrad graph, and a gg.nn module.

    inputs: {name: placeholder}; outputs: {name: Tensor}, built on those placeholders (compile,
    render, gg.grad them like any graph); variables: {initializer name: variable} — trainable
    unless loaded with trainable=False; parameters() lists the trainable ones in the file's
    order, so gg.compile(loss, optimizer=...) and gg.fit(model, X, Y, ...) fine-tune them.
    Calling the model on a Tensor, model(x), builds the graph again on x (one graph input) with
    the same variables; it returns the first output (or the one named by `output`).
    """

    def __init__(self, model_proto, *, input_shapes: dict | None = None, static_inputs: dict | None = None,
                 trainable=True, output: str | None = None, where: str = "the model"):
        self.onnx = require_onnx()
        self.proto = model_proto
        self.where = where
        self.opset = _default_opset(model_proto)
        if not MIN_IMPORT_OPSET <= self.opset <= MAX_IMPORT_OPSET:
            raise OnnxOpsetError(f"{where} uses opset {self.opset}; graphgrad reads opsets {MIN_IMPORT_OPSET} to "
                                 f"{MAX_IMPORT_OPSET}")
        graph = model_proto.graph
        self.name = graph.name or "onnx"
        self._initializers = {t.name: t for t in graph.initializer}
        if any(t.data_location == self.onnx.TensorProto.EXTERNAL for t in graph.initializer):
            raise OnnxFormatError(f"{where} keeps initializers in external files; load it from its path")
        self._trainable = trainable
        self._static_inputs = {k: np.asarray(v) for k, v in (static_inputs or {}).items()}
        self.variables: dict[str, Tensor] = {}
        self._versions = self._check_nodes(graph)
        self.input_names = [i.name for i in graph.input if i.name not in self._initializers
                            and i.name not in self._static_inputs]
        self.output_names = [o.name for o in graph.output]
        self._default_output = output if output is not None else self.output_names[0]
        if self._default_output not in self.output_names:
            raise OnnxError(f'{where} has no output "{self._default_output}"; it has {self.output_names}')
        self.inputs: dict[str, Tensor] = {}
        shapes = dict(input_shapes or {})
        for info in graph.input:
            if info.name in self.input_names:
                self.inputs[info.name] = self._placeholder(info, shapes.pop(info.name, None))
        if shapes:
            raise OnnxError(f"input_shapes names {sorted(shapes)}, which are not inputs of {where}; its inputs "
                            f"are {self.input_names}")
        self.values = self.build(self.inputs, _all=True)
        self.outputs: dict[str, Tensor] = {k: self._as_tensor(k, self.values[k]) for k in self.output_names}

    # ---- reading the graph ----
    def _check_nodes(self, graph) -> list[int]:
        """Every node's operator version, checked against the importers before anything is built."""
        versions = []
        for index, node in enumerate(graph.node):
            label = f'{node.op_type} node "{node.name}" (node {index})' if node.name else f"{node.op_type} node {index}"
            if node.domain not in ("", "ai.onnx"):
                raise UnsupportedOpError(f"{label} is from domain {node.domain!r}; graphgrad reads the default "
                                         "(ai.onnx) operators only")
            imp = IMPORTERS.get(node.op_type)
            if imp is None:
                raise UnsupportedOpError(f"{label}: operator {node.op_type} is not supported by graphgrad's importer "
                                         f"(supported: {', '.join(supported_operators())})")
            try:
                version = self.onnx.defs.get_schema(node.op_type, self.opset, "").since_version
            except Exception:
                raise UnsupportedOpError(f"{label}: ONNX has no {node.op_type} in opset {self.opset}") from None
            if version not in imp.versions:
                raise UnsupportedOpError(f"{label}: {node.op_type} version {version} (opset {self.opset}) is not "
                                         f"supported; graphgrad reads versions {list(imp.versions)}")
            versions.append(version)
        return versions

    def _placeholder(self, info, override) -> Tensor:
        t = info.type.tensor_type
        if not info.type.HasField("tensor_type"):
            raise UnsupportedOpError(f'input "{info.name}" of {self.where} is not a tensor')
        dtype = FLOAT_TYPES.get(t.elem_type)
        if dtype is None:
            np_name = self.onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "undefined"
            raise UnsupportedOpError(f'input "{info.name}" of {self.where} has dtype {np_name}; graphgrad computes '
                                     "in float32 and float64 (bind integer inputs with static_inputs={name: array})")
        if override is not None:
            shape = tuple(None if d is None else int(d) for d in override)
        elif not t.HasField("shape"):
            raise OnnxShapeError(f'input "{info.name}" of {self.where} has no shape; pass input_shapes='
                                 f'{{"{info.name}": (None, ...)}}')
        else:
            shape = []
            for axis, dim in enumerate(t.shape.dim):
                if dim.HasField("dim_value"):
                    shape.append(int(dim.dim_value))
                elif axis == 0:
                    shape.append(None)           # the batch dimension
                else:
                    what = dim.dim_param or "unknown"
                    raise OnnxShapeError(f'input "{info.name}" of {self.where}: axis {axis} has the symbolic size '
                                         f'"{what}"; graphgrad leaves only the first (batch) axis unknown. Pass '
                                         f'input_shapes={{"{info.name}": (...)}} with a size for it')
            shape = tuple(shape)
        return placeholder(shape, name=info.name, dtype=dtype.name)

    def _leaf(self, name: str, array: np.ndarray, trainable: bool = True) -> Tensor:
        """The variable (or constant) for a float initializer, made once per model. trainable=False:
        a variable that is never trained (BatchNormalization's running statistics)."""
        if name in self.variables:
            return self.variables[name]
        if name in self._initializers:
            if not trainable and self._trainable is not False:
                v = variable(array, name=name, dtype=array.dtype.name, trainable=False)
                self.variables[name] = v
                return v
            trainable = (self._trainable is True or
                         (not isinstance(self._trainable, bool) and name in set(self._trainable)))
            if trainable:
                v = variable(array, name=name, dtype=array.dtype.name)
                self.variables[name] = v
                return v
        return constant(array, dtype=array.dtype.name, name=name)

    def build(self, feeds: dict[str, Tensor], _all: bool = False) -> dict[str, object]:
        """Every value of the graph, built on `feeds` ({input name: Tensor}); static values stay
        NumPy arrays."""
        ctx = _Context(self.onnx, self)
        for name, t in self._initializers.items():
            ctx.values[name] = _tensor_array(self.onnx, t, f"{self.where}: initializer")
        ctx.values.update(self._static_inputs)
        missing = [k for k in self.input_names if k not in feeds]
        if missing:
            raise OnnxError(f"{self.where}: no Tensor for input(s) {missing}")
        ctx.values.update(feeds)
        for index, (proto, version) in enumerate(zip(self.proto.graph.node, self._versions)):
            node = _Node(ctx, proto, index, version)
            for name in node.input_names:
                if name and name not in ctx.values:
                    raise OnnxFormatError(f'{node.label} reads "{name}", which no earlier node, input or '
                                          "initializer defines")
            try:
                results = IMPORTERS[proto.op_type].fn(node)
            except OnnxError:
                raise
            except ShapeError as err:          # graphgrad's own shape rule, on what this node built
                raise OnnxShapeError(f"{node.label}: {err}") from None
            except (TypeError, ValueError, KeyError, IndexError) as err:
                raise OnnxError(f"{node.label}: {type(err).__name__}: {err}") from err
            outputs = [o for o in proto.output]
            for name, value in zip(outputs, results):
                if name:
                    ctx.values[name] = value
        for name in self.output_names:
            if name not in ctx.values:
                raise OnnxFormatError(f'{self.where}: output "{name}" is not computed by any node')
        return ctx.values if _all else {k: ctx.values[k] for k in self.output_names}

    def _as_tensor(self, name: str, value) -> Tensor:
        if isinstance(value, Tensor):
            return value
        if value.dtype == object:
            raise OnnxShapeError(f'output "{name}" of {self.where} is a shape holding the batch size')
        dtype = value.dtype.name if value.dtype.name in ("float32", "float64") else "int64"
        return constant(value.astype(dtype), dtype=dtype, name=name)

    # ---- the gg.nn module interface ----
    def forward(self, x: Tensor) -> Tensor:
        if len(self.input_names) != 1:
            raise OnnxError(f"{self.where} has {len(self.input_names)} inputs {self.input_names}; model(x) needs "
                            "one (use model.build({name: Tensor, ...}))")
        return self._as_tensor(self._default_output, self.build({self.input_names[0]: x})[self._default_output])

    def parameters(self) -> list[Tensor]:
        return [v for v in self.variables.values() if v.trainable]

    @property
    def dtype(self):
        first = self.inputs[self.input_names[0]] if self.input_names else None
        return first.dtype if first is not None else super().dtype

    def __repr__(self) -> str:
        return (f"ImportedModel({self.name!r}, opset {self.opset}, inputs {list(self.inputs)}, outputs "
                f"{self.output_names}, {len(self.parameters())} trainable variables)")


def load(source, *, input_shapes: dict | None = None, static_inputs: dict | None = None, trainable=True,
         output: str | None = None, check: bool = True) -> ImportedModel:
    """Import an ONNX model (a path, bytes, or an onnx.ModelProto) as a graphgrad graph.

    input_shapes: {input name: shape} to replace a declared shape (None for the batch axis), e.g.
    for an input with a symbolic size on another axis. static_inputs: {input name: array} to bind
    graph inputs to fixed values (integer inputs that feed shapes). trainable: True (float
    initializers become trainable variables), False (constants), or the initializer names to
    train. output: which output model(x) returns (default the first). check: run
    onnx.checker.check_model first. Raises OnnxFormatError, OnnxOpsetError, UnsupportedOpError
    or OnnxShapeError naming what and where.
    """
    onnx = require_onnx()
    model, where = _read_model(onnx, source)
    if not model.HasField("graph") or model.ir_version == 0:
        raise OnnxFormatError(f"{where} is not an ONNX model (it has no graph or IR version)")
    _check_opset(model, where)
    if check:
        try:
            onnx.checker.check_model(model)
        except (onnx.checker.ValidationError, ValueError) as err:   # (invalid UTF-8 in a name is a ValueError)
            raise OnnxFormatError(f"{where} fails the ONNX checker: {type(err).__name__}: "
                                  f"{(str(err).splitlines() or [''])[0]}") from None
    return ImportedModel(model, input_shapes=input_shapes, static_inputs=static_inputs, trainable=trainable,
                         output=output, where=where)


def _check_opset(model, where: str) -> None:
    opset = _default_opset(model)
    if opset > MAX_IMPORT_OPSET:
        raise OnnxOpsetError(f"{where} uses opset {opset}, newer than graphgrad reads ({MIN_IMPORT_OPSET} to "
                             f"{MAX_IMPORT_OPSET})")
    if opset < MIN_IMPORT_OPSET:
        raise OnnxOpsetError(f"{where} uses opset {opset}, older than graphgrad reads ({MIN_IMPORT_OPSET} to "
                             f"{MAX_IMPORT_OPSET}): upgrade it with onnx.version_converter")
