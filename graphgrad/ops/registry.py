"""OpDef — the one place an op is declared — and the registry of all of them.

An OpDef says, for one op: its C opcode, its shape rule (static shapes, None allowed for the
batch dimension, and again with concrete shapes when a Program is specialised), its dtype rule,
its gradient rule (built from other graph ops, so gradients are graphs too), how it lowers to
an instruction's integer dims and real attrs, whether it may run in place, which inputs it
overwrites (optimizer updates), whether it is elementwise and whether and how the fused loop may
run it, and a FLOPs estimate. The public function that makes the op is marked @export where it is
defined: gg.ops and graphgrad export what is marked, and gg.nn takes the activations by name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..errors import ShapeError
from ..graph import Tensor, user_source


class OpShapeError(ValueError):
    """Raised by shape rules; make() turns it into a ShapeError that names the node and line."""


@dataclass(frozen=True)
class Lowered:
    """What an op contributes to its gg_instr: integer dims, real attrs, and which of the node's
    inputs become the instruction's input buffers (an index into node.inputs, or -1 for absent)."""
    dims: Sequence[int] = ()
    attrs: Sequence[float] = ()
    inputs: Sequence[int] | None = None  # None: every input, in order


def _same_float_dtype(op: str, dtypes: Sequence[np.dtype], attrs: dict) -> np.dtype:
    if any(d.kind != "f" for d in dtypes):
        raise OpShapeError(f"inputs have dtypes {[d.name for d in dtypes]}; {op} computes in float32 or float64 "
                           "(int64 tensors are class labels for softmax_cross_entropy)")
    if len(set(dtypes)) > 1:
        raise OpShapeError(f"inputs have different dtypes {[d.name for d in dtypes]}; cast one of them")
    return dtypes[0]


def _elementwise_flops(in_shapes, out_shape, attrs) -> int:
    return numel(out_shape)


# How the fused elementwise loop (csrc/fused.c) may read one input of a fusable op: ANY means in full,
# as a scalar broadcast, or as a (cols,) row broadcast over the rows; FULL and SCALAR only that way.
ANY, FULL, SCALAR = "any", "full", "scalar"


@dataclass(frozen=True)
class OpDef:
    name: str
    opcode: str | None                      # enum name in csrc/graphgrad.h; None for leaves
    shape: Callable                         # (input shapes, attrs) -> output shape
    grad: Callable | None                   # (node, grad of output) -> [grad of each input or None]
    lower: Callable | None                  # (concrete input shapes, output shape, attrs) -> Lowered
    dtype: Callable = _same_float_dtype     # (op, input dtypes, attrs) -> output dtype
    inplace: bool = False                   # the output may reuse input 0's memory when it dies here
    broadcasts: bool = False                # NumPy broadcasting of the inputs to the output's shape
    writes: tuple = ()                      # inputs the instruction overwrites (its output aliases writes[0])
    flops: Callable = _elementwise_flops    # (input shapes, output shape, attrs) -> FLOPs
    elementwise: bool = False               # output element i reads element i of each input (after
                                            # broadcasting): the op runs at any shape
    fusion: tuple[str, ...] | None = None   # fusable: how the fused loop reads each input (ANY, FULL,
                                            # SCALAR); its opcode is then a fusable row of csrc/ops.def
    label: Callable | None = None           # (attrs) -> the name pictures and tables show, when it is
                                            # not `name` (a sum with mean=True shows as "mean")
    scratch: Callable | None = None         # (input shapes, output shape, attrs, dtype) -> elements of arena
                                            # scratch the kernel uses (its last input; the count ends dims)
    doc: str = ""


REGISTRY: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    if opdef.name in REGISTRY:
        raise ValueError(f"op {opdef.name!r} is declared twice")
    if opdef.fusion is not None and (not opdef.elementwise or not set(opdef.fusion) <= {ANY, FULL, SCALAR}):
        raise ValueError(f"op {opdef.name!r}: only an elementwise op fuses, reading its inputs as {ANY}, {FULL} "
                         f"or {SCALAR}")
    REGISTRY[opdef.name] = opdef
    return opdef


#: the public op functions by name (gg.ops.<name>), filled by @export where each is defined
EXPORTS: dict[str, Callable] = {}
#: the names also exported as graphgrad.<name>
TOP_LEVEL: list[str] = []
#: the names gg.nn accepts as an activation ("relu", ...), each the function it names
ACTIVATIONS: dict[str, Callable] = {}


def export(fn: Callable | None = None, *, name: str | None = None, top_level: bool = True,
           activation: bool = False):
    """Mark a public op function: gg.ops.<name> (and graphgrad.<name> unless top_level=False), and with
    activation=True an activation name gg.nn layers accept. Use as @export, @export(...), or
    export(fn, name="alias") for a second name. Returns the function unchanged."""
    def mark(f: Callable) -> Callable:
        public = name or f.__name__
        if public in EXPORTS and EXPORTS[public] is not f:
            raise ValueError(f"two op functions are exported as {public!r}")
        EXPORTS[public] = f
        if top_level and public not in TOP_LEVEL:
            TOP_LEVEL.append(public)
        if activation:
            ACTIVATIONS[public] = f
        return f
    return mark(fn) if fn is not None else mark


def _fmt_shape(shape) -> str:
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({inner}{',' if len(shape) == 1 else ''})"


def make(op: str, inputs: Sequence[Tensor], attrs: dict | None = None, name: str | None = None) -> Tensor:
    """Create a node of `op`: runs the shape and dtype rules now, so errors name the user's line."""
    opdef = REGISTRY[op]
    attrs = attrs or {}
    source = user_source()
    try:
        dtype = opdef.dtype(op, [t.dtype for t in inputs], attrs)
        shape = tuple(opdef.shape([t.shape for t in inputs], attrs))
        check_size(shape, dtype)
    except OpShapeError as err:
        shapes = ", ".join(f'"{t.name}" {_fmt_shape(t.shape)} {t.dtype.name}' for t in inputs)
        where = f"\n  at {source}" if source else ""
        label = f' "{name}"' if name else ""
        raise ShapeError(f"{op}{label}: {err}\n  inputs: {shapes}{where}") from None
    node = Tensor(op, inputs, attrs, shape, dtype, name=name, source=source)
    if name is None and opdef.label is not None:
        node.name = f"{op_label(node)}_{node.id}"    # gg.mean's node is "mean_12", not "sum_12"
    return node


def op_label(node: Tensor) -> str:
    """What a node's op is called in pictures and tables: its OpDef's label, else the op's name."""
    opdef = REGISTRY.get(node.op)
    return opdef.label(node.attrs) if opdef is not None and opdef.label is not None else node.op


def concrete_shape(node: Tensor, input_shapes: Sequence[tuple]) -> tuple:
    """The output shape of `node` for concrete input shapes (used when a Program is specialised)."""
    opdef = REGISTRY[node.op]
    try:
        shape = tuple(opdef.shape(list(input_shapes), node.attrs))
        check_size(shape, node.dtype)
        if opdef.broadcasts:
            _check_batch_not_broadcast(node, input_shapes, shape)
        return shape
    except OpShapeError as err:
        shapes = ", ".join(f'"{t.name}" {_fmt_shape(s)}' for t, s in zip(node.inputs, input_shapes))
        where = f"\n  at {node.source}" if node.source else ""
        raise ShapeError(f'{node.op} "{node.name}": {err}\n  inputs (as fed): {shapes}{where}') from None


def _check_batch_not_broadcast(node: Tensor, input_shapes, out_shape) -> None:
    """A dimension declared None is never stretched by broadcasting: gradients are built from the
    static shapes, where None is assumed to match, so a None fed as 1 against a larger size would
    get a gradient of the wrong shape."""
    for inp, concrete in zip(node.inputs, input_shapes):
        lead = len(out_shape) - len(concrete)
        for d, (declared, size) in enumerate(zip(inp.shape, concrete)):
            if declared is None and size != out_shape[lead + d]:
                raise OpShapeError(f'"{inp.name}" declares axis {d} as None and is fed {size} there, which would '
                                   f"broadcast to {out_shape[lead + d]}; a None (batch) dimension is never "
                                   "broadcast: feed matching sizes or declare the axis as 1")


# ---- shape helpers shared by the op families ----------------------------------------------

def matching_shape(a: tuple, b: tuple) -> tuple:
    """The shape of a backward op that reads a saved tensor (a) and its gradient (b): the two must
    agree, a batch axis (None) in one matching any size in the other (the known size wins; the
    concrete shapes are checked again when the program is specialised)."""
    a, b = tuple(a), tuple(b)
    if len(a) != len(b) or any(x is not None and y is not None and x != y for x, y in zip(a, b)):
        raise OpShapeError(f"saved tensor {a} and gradient {b} differ in shape")
    return tuple(y if x is None else x for x, y in zip(a, b))


def broadcast_dim(a, b):
    """One axis of NumPy broadcasting; None (the batch dimension) is unknown until run time."""
    if a == b:
        return a
    if a == 1:
        return b
    if b == 1:
        return a
    if a is None:
        return b
    if b is None:
        return a
    raise OpShapeError("shapes cannot be broadcast together")


def broadcast_shapes(a: tuple, b: tuple) -> tuple:
    rank = max(len(a), len(b))
    a = (1,) * (rank - len(a)) + tuple(a)
    b = (1,) * (rank - len(b)) + tuple(b)
    try:
        return tuple(broadcast_dim(x, y) for x, y in zip(a, b))
    except OpShapeError:
        raise OpShapeError(f"shapes {_fmt_shape(a)} and {_fmt_shape(b)} cannot be broadcast together "
                           "(NumPy rules: trailing axes must match or be 1)") from None


def broadcast_strides(out_shape: tuple, in_shape: tuple) -> list[int]:
    """Element strides for reading a C-contiguous `in_shape` array as `out_shape` (0 where broadcast)."""
    rank = len(out_shape)
    padded = (1,) * (rank - len(in_shape)) + tuple(in_shape)
    strides, step = [0] * rank, 1
    for d in range(rank - 1, -1, -1):
        strides[d] = 0 if padded[d] == 1 and out_shape[d] != 1 else step
        step *= padded[d]
    return strides


def collapse_dims(shape: Sequence[int], *stride_lists: Sequence[int]) -> tuple[list[int], list[list[int]]]:
    """Drop size-1 axes and merge neighbours that every stride list walks contiguously, so kernels
    see the fewest axes (a (B, N) + (N,) add stays 2-D; a same-shape add becomes 1-D)."""
    axes = [d for d in range(len(shape)) if shape[d] != 1]
    out_shape: list[int] = []
    out_strides: list[list[int]] = [[] for _ in stride_lists]
    for d in axes:
        if out_shape and all(s[-1] == st[d] * shape[d] for s, st in zip(out_strides, stride_lists)):
            out_shape[-1] *= shape[d]
            for s, st in zip(out_strides, stride_lists):
                s[-1] = st[d]
        else:
            out_shape.append(shape[d])
            for s, st in zip(out_strides, stride_lists):
                s.append(st[d])
    return out_shape, out_strides


def numel(shape) -> int:
    """Element count, exact (Python ints: np.prod would wrap around silently on absurd shapes)."""
    return math.prod(int(d) for d in shape)


#: the largest buffer graphgrad will plan: its byte size must fit the C core's int64 sizes
MAX_BUFFER_BYTES = 2**63 - 1


def check_size(shape, dtype) -> None:
    """OpShapeError when a tensor of `shape` (None counted as 1) would not fit in int64 bytes."""
    nbytes = numel(1 if d is None else d for d in shape) * np.dtype(dtype).itemsize
    if nbytes > MAX_BUFFER_BYTES:
        raise OpShapeError(f"the result {_fmt_shape(shape)} {np.dtype(dtype).name} would take {nbytes:.3g} bytes, "
                           "more than any buffer can hold (2**63 - 1)")


def normalize_axes(axes, rank: int) -> tuple[int, ...]:
    """axes (None = all, int or sequence, negatives allowed) -> sorted tuple of non-negative axes."""
    if axes is None:
        return tuple(range(rank))
    if isinstance(axes, (int, np.integer)):
        axes = (int(axes),)
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise OpShapeError(f"axis {a} is out of range for a tensor of rank {rank}")
        out.append(a % rank)
    if len(set(out)) != len(out):
        raise OpShapeError(f"repeated axis in {tuple(axes)}")
    return tuple(sorted(out))
