"""Reductions: sum and mean over any axes (keepdims as in NumPy), and expand, their adjoint,
which broadcasts a reduced tensor back to the shape it came from. `unbroadcast` undoes NumPy
broadcasting in gradients by summing."""
from __future__ import annotations

from ..graph import Tensor
from .registry import Lowered, OpDef, OpShapeError, collapse_dims, make, normalize_axes, numel, register


def _reduced_shape(shape, axes, keepdims):
    if keepdims:
        return tuple(1 if d in axes else s for d, s in enumerate(shape))
    return tuple(s for d, s in enumerate(shape) if d not in axes)


def _keepdims_strides(shape, axes) -> list[int]:
    """Strides of the reduced tensor, indexed by the full tensor's axes: 0 on reduced axes."""
    strides, step = [0] * len(shape), 1
    for d in range(len(shape) - 1, -1, -1):
        if d not in axes:
            strides[d] = step
            step *= shape[d]
    return strides


def _scale(shape, axes, mean) -> float:
    count = numel([shape[d] for d in axes])
    if not mean:
        return 1.0
    return 1.0 / count if count else float("nan")   # NumPy: the mean of nothing is NaN


# sum_reduce(x; axes, keepdims, mean): shape (..) -> reduced
def _sum_shape(shapes, attrs):
    return _reduced_shape(shapes[0], attrs["axes"], attrs["keepdims"])


def _sum_lower(in_shapes, out_shape, attrs) -> Lowered:
    shape = in_shapes[0]
    dims, (ostride,) = collapse_dims(shape, _keepdims_strides(shape, attrs["axes"]))
    return Lowered(dims=[len(dims), *dims, *ostride], attrs=[_scale(shape, attrs["axes"], attrs["mean"])])


def _sum_grad(node, g):
    x = node.inputs[0]
    return [make("expand", [g, x], dict(node.attrs))]


register(OpDef("sum", "GG_OP_SUM", _sum_shape, _sum_grad, _sum_lower,
               doc="sum (or mean, attr mean=True) over axes, keepdims as in NumPy"))


# expand(g, like; axes, keepdims, mean): g has the reduced shape, the output has like's shape
def _expand_shape(shapes, attrs):
    g_shape, like_shape = shapes
    expected = _reduced_shape(like_shape, attrs["axes"], attrs["keepdims"])
    if len(expected) != len(g_shape) or any(a is not None and b is not None and a != b
                                            for a, b in zip(expected, g_shape)):
        raise OpShapeError(f"cannot expand {g_shape} to {like_shape} over axes {attrs['axes']}")
    return like_shape


def _expand_lower(in_shapes, out_shape, attrs) -> Lowered:
    dims, (gstride,) = collapse_dims(out_shape, _keepdims_strides(out_shape, attrs["axes"]))
    return Lowered(dims=[len(dims), *dims, *gstride], attrs=[_scale(out_shape, attrs["axes"], attrs["mean"])],
                   inputs=[0])


def _expand_grad(node, g):
    return [make("sum", [g], dict(node.attrs)), None]


register(OpDef("expand", "GG_OP_EXPAND", _expand_shape, _expand_grad, _expand_lower,
               doc="broadcast a reduced tensor back to the shape of `like` (scaled by 1/count for a mean)"))


def _reduce(x: Tensor, axis, keepdims: bool, mean: bool, name) -> Tensor:
    try:
        axes = normalize_axes(axis, x.ndim)
    except OpShapeError as err:
        from ..errors import ShapeError
        raise ShapeError(f'{"mean" if mean else "sum"} of "{x.name}" {x.shape}: {err}') from None
    return make("sum", [x], {"axes": axes, "keepdims": bool(keepdims), "mean": mean}, name=name)


def sum(x: Tensor, axis=None, keepdims: bool = False, name: str | None = None) -> Tensor:  # noqa: A001
    """Sum over `axis` (None: all axes; int or tuple; negatives count from the end)."""
    return _reduce(x, axis, keepdims, False, name)


def mean(x: Tensor, axis=None, keepdims: bool = False, name: str | None = None) -> Tensor:
    """Mean over `axis` (None: all axes)."""
    return _reduce(x, axis, keepdims, True, name)


def zeros_like(x: Tensor) -> Tensor:
    """Zeros of x's shape and dtype (the batch dimension resolved at run time)."""
    from ..graph import constant
    return make("expand", [constant(0.0, dtype=x.dtype), x],
                {"axes": tuple(range(x.ndim)), "keepdims": False, "mean": False})


def unbroadcast(g: Tensor, target: Tensor) -> Tensor:
    """Sum g over the axes NumPy broadcasting added or stretched, giving target's shape."""
    if g.shape == target.shape:
        return g
    lead = g.ndim - target.ndim
    if lead:
        g = make("sum", [g], {"axes": tuple(range(lead)), "keepdims": False, "mean": False})
    stretched = tuple(d for d, (gs, ts) in enumerate(zip(g.shape, target.shape)) if ts == 1 and gs != 1)
    if stretched:
        g = make("sum", [g], {"axes": stretched, "keepdims": True, "mean": False})
    return g
