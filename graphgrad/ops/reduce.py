"""Reductions: sum, mean and max over any axes (keepdims as in NumPy), and expand, the sum's
adjoint, which broadcasts a reduced tensor back to the shape it came from; softmax and
log_softmax along one axis. `unbroadcast` undoes NumPy broadcasting in gradients by summing."""
from __future__ import annotations

from ..graph import Tensor
from .registry import (export, Lowered, OpDef, OpShapeError, collapse_dims, make, matching_shape, normalize_axes, numel,
                       register)


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
               label=lambda attrs: "mean" if attrs.get("mean") else "sum",
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


@export
def sum(x: Tensor, axis=None, keepdims: bool = False, name: str | None = None) -> Tensor:  # noqa: A001
    """Sum over `axis` (None: all axes; int or tuple; negatives count from the end)."""
    return _reduce(x, axis, keepdims, False, name)


@export
def mean(x: Tensor, axis=None, keepdims: bool = False, name: str | None = None) -> Tensor:
    """Mean over `axis` (None: all axes)."""
    return _reduce(x, axis, keepdims, True, name)


@export(top_level=False)
def zeros_like(x: Tensor) -> Tensor:
    """Zeros of x's shape and dtype (the batch dimension resolved at run time)."""
    from ..graph import constant
    return make("expand", [constant(0.0, dtype=x.dtype), x],
                {"axes": tuple(range(x.ndim)), "keepdims": False, "mean": False})


@export(top_level=False)
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


# ---- max ----------------------------------------------------------------------------------------

def _max_shape(shapes, attrs):
    shape, axes = shapes[0], attrs["axes"]
    sizes = [shape[d] for d in axes]
    if 0 in sizes:
        raise OpShapeError(f"max over axes {axes} of a tensor of shape {tuple(shape)}: a zero-size "
                           "reduction has no identity (as in NumPy)")
    return _reduced_shape(shape, axes, attrs["keepdims"])


def _max_lower(in_shapes, out_shape, attrs) -> Lowered:
    shape = in_shapes[0]
    dims, (ostride,) = collapse_dims(shape, _keepdims_strides(shape, attrs["axes"]))
    return Lowered(dims=[len(dims), *dims, *ostride])


def _max_grad(node, g):
    """The gradient goes to the elements equal to the max; ties share it evenly (torch.amax's
    rule), so the result does not depend on the order elements are visited in."""
    from .elementwise import div, equal, mul
    x = node.inputs[0]
    spread = dict(node.attrs, mean=False)
    mask = equal(x, make("expand", [node, x], spread))
    count = make("sum", [mask], spread)
    return [mul(mask, make("expand", [div(g, count), x], spread))]


register(OpDef("max", "GG_OP_MAX", _max_shape, _max_grad, _max_lower,
               doc="maximum over axes, keepdims as in NumPy; NaN propagates; the gradient is shared by ties"))


@export
def max(x: Tensor, axis=None, keepdims: bool = False, name: str | None = None) -> Tensor:  # noqa: A001
    """Maximum over `axis` (None: all axes). NaN propagates as in NumPy; a zero-size reduction
    is an error. The gradient is split evenly among the elements equal to the maximum (as
    torch.amax does)."""
    try:
        axes = normalize_axes(axis, x.ndim)
    except OpShapeError as err:
        from ..errors import ShapeError
        raise ShapeError(f'max of "{x.name}" {x.shape}: {err}') from None
    return make("max", [x], {"axes": axes, "keepdims": bool(keepdims)}, name=name)


# ---- softmax and log_softmax along one axis -------------------------------------------------------

def _axis_shape(shapes, attrs):
    return matching_shape(*shapes) if len(shapes) == 2 else shapes[0]


def _axis_lower(in_shapes, out_shape, attrs) -> Lowered:
    axis = attrs["axis"]
    outer = numel(out_shape[:axis])
    inner = numel(out_shape[axis + 1:])
    return Lowered(dims=[outer, out_shape[axis], inner])


def _keepsum(x, axis):
    return make("sum", [x], {"axes": (axis,), "keepdims": True, "mean": False})


def _softmax_backward_grad(node, g):
    from .elementwise import mul, sub
    y, dy = node.inputs
    axis = node.attrs["axis"]
    # dx = y (dy - s), s = sum(dy y): d/dy = g (dy - s) - dy sum(g y); d/ddy = y (g - sum(g y))
    s = _keepsum(mul(dy, y), axis)
    return [sub(mul(g, sub(dy, s)), mul(dy, _keepsum(mul(g, y), axis))),
            make("softmax_backward", [y, g], dict(node.attrs))]


def _log_softmax_backward_grad(node, g):
    from .elementwise import exp, mul, neg, sub
    y, dy = node.inputs
    axis = node.attrs["axis"]
    # dx = dy - exp(y) S, S = sum(dy): d/dy = -g exp(y) S; d/ddy = g - sum(g exp(y))
    p = exp(y)
    return [neg(mul(mul(g, p), _keepsum(dy, axis))), sub(g, _keepsum(mul(g, p), axis))]


register(OpDef("softmax", "GG_OP_SOFTMAX", _axis_shape,
               lambda node, g: [make("softmax_backward", [node, g], dict(node.attrs))], _axis_lower,
               doc="exp(x - max) / sum(exp(x - max)) along axis", flops=lambda ins, out, attrs: 5 * numel(out)))
register(OpDef("softmax_backward", "GG_OP_SOFTMAX_BACKWARD", _axis_shape, _softmax_backward_grad, _axis_lower,
               doc="dx = y * (dy - sum(dy * y)) along axis, from softmax's output y",
               flops=lambda ins, out, attrs: 4 * numel(out)))
register(OpDef("log_softmax", "GG_OP_LOG_SOFTMAX", _axis_shape,
               lambda node, g: [make("log_softmax_backward", [node, g], dict(node.attrs))], _axis_lower,
               doc="x - max - log(sum(exp(x - max))) along axis", flops=lambda ins, out, attrs: 5 * numel(out)))
register(OpDef("log_softmax_backward", "GG_OP_LOG_SOFTMAX_BACKWARD", _axis_shape, _log_softmax_backward_grad,
               _axis_lower, doc="dx = dy - exp(y) * sum(dy) along axis, from log_softmax's output y",
               flops=lambda ins, out, attrs: 4 * numel(out)))


def _along(op, x: Tensor, axis: int, name):
    try:
        (axis,) = normalize_axes(int(axis), x.ndim)
    except OpShapeError as err:
        from ..errors import ShapeError
        raise ShapeError(f'{op} of "{x.name}" {x.shape}: {err}') from None
    return make(op, [x], {"axis": axis}, name=name)


@export(activation=True)
def softmax(x: Tensor, axis: int = -1, name: str | None = None) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis` (default the last), computed with the max subtracted so
    any finite logits give a finite result."""
    return _along("softmax", x, axis, name)


@export(activation=True)
def log_softmax(x: Tensor, axis: int = -1, name: str | None = None) -> Tensor:
    """log(softmax(x)) along `axis`, computed as x - max - log(sum(exp(x - max)))."""
    return _along("log_softmax", x, axis, name)
