"""Shape ops: reshape, transpose (any axis order), broadcast_to, slicing (basic indexing: ints and
slices, any steps, on the leading axes — the batch axis included) and concat along any axis.

All but reshape and concat lower to one strided copy: the output is contiguous and the input is
read at offset + Σ index·stride, so a transpose, a broadcast and a slice are the same kernel with
different strides. Sizes that depend on the batch dimension (None) are resolved when a Program is
specialised to its feed shapes: the shape rules run again with concrete shapes, and the lowering
computes offsets and strides from them.
"""
from __future__ import annotations

from typing import Sequence

from ..graph import Tensor
from .registry import export, Lowered, OpDef, OpShapeError, collapse_dims, make, numel, register


def contiguous_strides(shape: Sequence[int]) -> list[int]:
    strides, step = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        strides[d] = step
        step *= shape[d]
    return strides


def _strided_lower(offset: int, shape: Sequence[int], strides: Sequence[int], inputs=None) -> Lowered:
    dims, (st,) = collapse_dims(list(shape), list(strides))
    return Lowered(dims=[offset, len(dims), *dims, *st], inputs=inputs)


# ---- reshape ------------------------------------------------------------------------------------

def _reshape_shape(shapes, attrs):
    src = tuple(shapes[0])
    if len(shapes) == 2:                       # reshape(g, like): the gradient's way back
        target = tuple(shapes[1])
        if None not in src and None not in target and numel(src) != numel(target):
            raise OpShapeError(f"cannot reshape {src} ({numel(src)} elements) to {target} ({numel(target)})")
        return target
    spec = attrs["shape"]
    inferred = [d for d, s in enumerate(spec) if s is None or s == -1]
    known = numel([s for s in spec if s is not None and s != -1])
    if None in src:                            # sizes checked again once the batch size is known
        return tuple(None if d in inferred else s for d, s in enumerate(spec))
    total = numel(src)
    if inferred:
        if known == 0 or total % known:
            raise OpShapeError(f"cannot reshape {src} ({total} elements) to {spec}: {total} is not a multiple "
                               f"of {known}")
        return tuple(total // known if d in inferred else s for d, s in enumerate(spec))
    if known != total:
        raise OpShapeError(f"cannot reshape {src} ({total} elements) to {spec} ({known} elements)")
    return tuple(spec)


def _reshape_grad(node, g):
    if len(node.inputs) == 2:
        return [make("reshape", [g, node.inputs[0]]), None]
    return [make("reshape", [g, node.inputs[0]])]


register(OpDef("reshape", "GG_OP_RESHAPE", _reshape_shape, _reshape_grad,
               lambda ins, out, attrs: Lowered(dims=[numel(out)], inputs=[0]), inplace=True,
               flops=lambda ins, out, attrs: 0,
               doc="the same elements in a new shape (one of its sizes may be -1 or None: inferred)"))


@export
def reshape(x: Tensor, shape, name: str | None = None) -> Tensor:
    """x's elements (C order) in `shape`. One entry may be -1 (inferred, as in NumPy) or None
    (the batch dimension: inferred too, from the fed shape): reshape(x, (None, 784))."""
    if isinstance(shape, int):
        shape = (shape,)
    spec = tuple(None if s is None else int(s) for s in shape)
    if sum(1 for s in spec if s is None or s == -1) > 1:
        raise ValueError(f"reshape: at most one size may be -1 or None, got {spec}")
    if any(s is not None and s < -1 for s in spec):
        raise ValueError(f"reshape: sizes must be non-negative (or -1 / None), got {spec}")
    return make("reshape", [x], {"shape": spec}, name=name)


# ---- transpose ----------------------------------------------------------------------------------

def _transpose_shape(shapes, attrs):
    shape, perm = shapes[0], attrs["perm"]
    if len(perm) != len(shape):
        raise OpShapeError(f"axes {perm} do not match a tensor of rank {len(shape)}")
    return tuple(shape[p] for p in perm)


def _transpose_lower(in_shapes, out_shape, attrs) -> Lowered:
    strides = contiguous_strides(in_shapes[0])
    return _strided_lower(0, out_shape, [strides[p] for p in attrs["perm"]])


def _transpose_grad(node, g):
    perm = node.attrs["perm"]
    inverse = tuple(sorted(range(len(perm)), key=lambda d: perm[d]))
    return [make("transpose", [g], {"perm": inverse})]


register(OpDef("transpose", "GG_OP_TRANSPOSE", _transpose_shape, _transpose_grad, _transpose_lower,
               flops=lambda ins, out, attrs: 0, doc="axes permuted (a strided copy); default: reversed"))


@export
def transpose(x: Tensor, axes: Sequence[int] | None = None, name: str | None = None) -> Tensor:
    """x with its axes permuted: output axis i is input axis axes[i] (np.transpose); the default
    reverses them (x.T for a matrix)."""
    rank = x.ndim
    perm = tuple(range(rank - 1, -1, -1)) if axes is None else tuple(int(a) % rank if rank else int(a) for a in axes)
    if sorted(perm) != list(range(rank)):
        from ..errors import ShapeError
        raise ShapeError(f'transpose of "{x.name}" {x.shape}: axes {tuple(axes)} are not a permutation of '
                         f"0..{rank - 1}")
    return make("transpose", [x], {"perm": perm}, name=name)


# ---- broadcast_to -------------------------------------------------------------------------------

def _broadcast_to_shape(shapes, attrs):
    src, target = tuple(shapes[0]), attrs["shape"]
    if len(src) > len(target):
        raise OpShapeError(f"cannot broadcast {src} to the lower-rank shape {target}")
    padded = (1,) * (len(target) - len(src)) + src
    out = []
    for d, (s, t) in enumerate(zip(padded, target)):
        if t is None:                 # keep the input's size (the batch dimension)
            if d < len(target) - len(src):
                raise OpShapeError(f"None in {target} at axis {d} has no input axis to take its size from")
            out.append(s)
        elif s == t or s == 1 or s is None:
            out.append(t)
        else:
            raise OpShapeError(f"cannot broadcast {src} to {target}: axis {d} has size {s}, not 1 or {t}")
    return tuple(out)


def _broadcast_to_lower(in_shapes, out_shape, attrs) -> Lowered:
    src = tuple(in_shapes[0])
    if any(s not in (1, t) for s, t in zip(src, out_shape[len(out_shape) - len(src):])):
        raise OpShapeError(f"cannot broadcast {src} to {tuple(out_shape)}")
    padded = (1,) * (len(out_shape) - len(src)) + src
    strides = contiguous_strides(padded)
    return _strided_lower(0, out_shape, [0 if p == 1 and o != 1 else s for p, o, s in zip(padded, out_shape, strides)])


def _broadcast_to_grad(node, g):
    from .reduce import unbroadcast
    return [unbroadcast(g, node.inputs[0])]


register(OpDef("broadcast_to", "GG_OP_BROADCAST_TO", _broadcast_to_shape, _broadcast_to_grad, _broadcast_to_lower,
               flops=lambda ins, out, attrs: 0, doc="x repeated along its size-1 (or missing leading) axes"))


@export
def broadcast_to(x: Tensor, shape, name: str | None = None) -> Tensor:
    """x broadcast to `shape` by NumPy's rules (np.broadcast_to), materialised. A None entry keeps
    x's size on that axis (e.g. the batch dimension)."""
    if isinstance(shape, int):
        shape = (shape,)
    return make("broadcast_to", [x], {"shape": tuple(None if s is None else int(s) for s in shape)}, name=name)


# ---- slicing (basic indexing) -------------------------------------------------------------------

def _resolve_index(items, shape):
    """(offset, out shape, out strides) of the view `items` takes of a C-contiguous `shape`.
    items: one per leading axis, ("i", k) for an int or ("s", start, stop, step) for a slice."""
    strides = contiguous_strides(shape)
    offset, out_shape, out_strides = 0, [], []
    for d, item in enumerate(items):
        if item[0] == "i":
            k = item[1] + shape[d] if item[1] < 0 else item[1]
            if not 0 <= k < shape[d]:
                raise OpShapeError(f"index {item[1]} is out of bounds for axis {d} with size {shape[d]}")
            offset += k * strides[d]
        else:
            start, stop, step = slice(*item[1:]).indices(shape[d])
            out_shape.append(len(range(start, stop, step)))
            out_strides.append(strides[d] * step)
            if out_shape[-1]:
                offset += start * strides[d]
    out_shape += shape[len(items):]
    out_strides += strides[len(items):]
    return offset, out_shape, out_strides


def _static_index_shape(items, shape):
    out = []
    for d, item in enumerate(items):
        size = shape[d]
        if item[0] == "i":
            if size is not None and not -size <= item[1] < size:
                raise OpShapeError(f"index {item[1]} is out of bounds for axis {d} with size {size}")
        else:
            out.append(None if size is None else len(range(*slice(*item[1:]).indices(size))))
    return tuple(out) + tuple(shape[len(items):])


def _slice_shape(shapes, attrs):
    items, shape = attrs["items"], tuple(shapes[0])
    if len(items) > len(shape):
        raise OpShapeError(f"too many indices ({len(items)}) for a tensor of rank {len(shape)}")
    return _static_index_shape(items, shape)


def _slice_lower(in_shapes, out_shape, attrs) -> Lowered:
    offset, shape, strides = _resolve_index(attrs["items"], list(in_shapes[0]))
    return _strided_lower(offset, shape, strides)


register(OpDef("slice", "GG_OP_SLICE", _slice_shape,
               lambda node, g: [make("slice_backward", [g, node.inputs[0]], dict(node.attrs))], _slice_lower,
               flops=lambda ins, out, attrs: 0, doc="x[index] for ints and slices on the leading axes"))


def _slice_backward_shape(shapes, attrs):
    g, like = tuple(shapes[0]), tuple(shapes[1])
    want = _static_index_shape(attrs["items"], like)
    if len(want) != len(g) or any(a is not None and b is not None and a != b for a, b in zip(want, g)):
        raise OpShapeError(f"gradient {g} does not match the slice's shape {want}")
    return like


def _slice_backward_lower(in_shapes, out_shape, attrs) -> Lowered:
    offset, shape, strides = _resolve_index(attrs["items"], list(out_shape))
    return _strided_lower(offset, shape, strides, inputs=[0])


register(OpDef("slice_backward", "GG_OP_SLICE_BACKWARD", _slice_backward_shape,
               lambda node, g: [make("slice", [g], dict(node.attrs)), None], _slice_backward_lower,
               flops=lambda ins, out, attrs: 0,
               doc="zeros of like's shape with g written where the slice read (the slice's gradient)"))


def _index_items(key, rank: int):
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        at = key.index(Ellipsis)
        fill = rank - (len(key) - 1)
        key = key[:at] + (slice(None),) * max(fill, 0) + key[at + 1:]
    items = []
    for k in key:
        if isinstance(k, slice):
            if k.step == 0:
                raise ValueError("slice step cannot be zero")
            items.append(("s", *(None if v is None else int(v) for v in (k.start, k.stop, k.step))))
        elif isinstance(k, int) or hasattr(k, "__index__"):
            items.append(("i", int(k)))
        else:
            raise TypeError(f"graphgrad indexing takes ints, slices and ..., not {type(k).__name__} "
                            "(no fancy or boolean indexing)")
    return tuple(items)


@export(top_level=False)
def getitem(x: Tensor, key, name: str | None = None) -> Tensor:
    """x[key] for basic indexing: ints (drop the axis), slices with any step, and one `...`.
    x[a:b] slices the batch axis; sizes that depend on the batch dimension are resolved from the
    fed shapes."""
    return make("slice", [x], {"items": _index_items(key, x.ndim)}, name=name)


# ---- concat -------------------------------------------------------------------------------------

MAX_CONCAT_INPUTS = 6   # gg_instr holds six input buffers; longer lists nest


def _concat_shape(shapes, attrs):
    axis = attrs["axis"]
    first = tuple(shapes[0])
    total = 0
    for k, s in enumerate(shapes):
        s = tuple(s)
        if len(s) != len(first):
            raise OpShapeError(f"input {k} has rank {len(s)}, input 0 has rank {len(first)}")
        for d, (a, b) in enumerate(zip(first, s)):
            if d != axis and a is not None and b is not None and a != b:
                raise OpShapeError(f"input {k} has shape {s}: all but axis {axis} must match {first}")
        total = None if total is None or s[axis] is None else total + s[axis]
    return tuple(total if d == axis else next((s[d] for s in shapes if s[d] is not None), None)
                 for d in range(len(first)))


def _concat_lower(in_shapes, out_shape, attrs) -> Lowered:
    axis = attrs["axis"]
    return Lowered(dims=[numel(out_shape[:axis]), *(numel(s[axis:]) for s in in_shapes)])


def _concat_grad(node, g):
    k_inputs = list(node.inputs)
    return [make("concat_part", [g, *k_inputs], {"axis": node.attrs["axis"], "index": k})
            for k in range(len(k_inputs))]


register(OpDef("concat", "GG_OP_CONCAT", _concat_shape, _concat_grad, _concat_lower,
               flops=lambda ins, out, attrs: 0, doc="inputs joined along axis (up to 6 per node)"))


def _concat_part_shape(shapes, attrs):
    return tuple(shapes[1 + attrs["index"]])


def _concat_part_lower(in_shapes, out_shape, attrs) -> Lowered:
    axis, index = attrs["axis"], attrs["index"]
    g_shape = list(in_shapes[0])
    strides = contiguous_strides(g_shape)
    start = sum(s[axis] for s in in_shapes[1:1 + index])
    return _strided_lower(start * strides[axis], out_shape, strides, inputs=[0])


def _concat_part_grad(node, g):
    from .reduce import zeros_like
    parts = node.inputs[1:]
    index = node.attrs["index"]
    pieces = [g if k == index else zeros_like(p) for k, p in enumerate(parts)]
    return [make("concat", pieces, {"axis": node.attrs["axis"]})] + [None] * len(parts)


register(OpDef("concat_part", "GG_OP_CONCAT_PART", _concat_part_shape, _concat_part_grad, _concat_part_lower,
               flops=lambda ins, out, attrs: 0,
               doc="the block of g that input `index` of a concat filled (the concat's gradient)"))


@export
def concat(tensors: Sequence[Tensor], axis: int = 0, name: str | None = None) -> Tensor:
    """The tensors joined along `axis` (np.concatenate); all other sizes must match. Default
    axis 0: joining batches."""
    tensors = list(tensors)
    if not tensors or not all(isinstance(t, Tensor) for t in tensors):
        raise TypeError("concat takes a non-empty list of Tensors")
    rank = tensors[0].ndim
    if not -rank <= axis < rank:
        from ..errors import ShapeError
        raise ShapeError(f"concat: axis {axis} is out of range for tensors of rank {rank}")
    axis %= rank
    while len(tensors) > MAX_CONCAT_INPUTS:
        tensors = [make("concat", tensors[i:i + MAX_CONCAT_INPUTS], {"axis": axis})
                   if len(tensors[i:i + MAX_CONCAT_INPUTS]) > 1 else tensors[i]
                   for i in range(0, len(tensors), MAX_CONCAT_INPUTS)]
    return make("concat", tensors, {"axis": axis}, name=name)
