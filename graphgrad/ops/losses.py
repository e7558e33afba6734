"""Losses, each one fused op with a C kernel forward and backward: mse, l1.

reduction="mean" (default, as in PyTorch) divides by the element count; "sum" does not."""
from __future__ import annotations

from ..graph import Tensor, as_tensor
from .elementwise import neg
from .registry import Lowered, OpDef, OpShapeError, make, numel, register

REDUCTIONS = ("mean", "sum")


def _loss_shape(shapes, attrs):
    p, y = shapes[0], shapes[1]
    if len(p) != len(y) or any(a is not None and b is not None and a != b for a, b in zip(p, y)):
        raise OpShapeError(f"prediction {p} and target {y} must have the same shape")
    return ()


def _backward_shape(shapes, attrs):
    return shapes[0]


def _loss_lower(in_shapes, out_shape, attrs) -> Lowered:
    n = numel(in_shapes[0])
    scale = 1.0 / n if attrs["reduction"] == "mean" and n else 1.0
    return Lowered(dims=[n], attrs=[scale])


def _backward_lower(in_shapes, out_shape, attrs) -> Lowered:
    return _loss_lower(in_shapes, (), attrs)


def _loss_grad(backward_op):
    def grad(node, g):
        p, y = node.inputs
        dp = make(backward_op, [p, y, g], dict(node.attrs))
        return [dp, neg(dp)]   # the loss depends on p - y only
    return grad


for _name, _doc in (("mse", "mean (or sum) of (p - y)^2"), ("l1", "mean (or sum) of |p - y|")):
    register(OpDef(_name, f"GG_OP_{_name.upper()}", _loss_shape, _loss_grad(f"{_name}_backward"), _loss_lower,
                   doc=_doc, flops=lambda ins, out, attrs: 3 * numel(ins[0])))
    # the backward kernels are not differentiated again (grad=None): second derivatives of losses
    # go through the elementwise ops when needed
    register(OpDef(f"{_name}_backward", f"GG_OP_{_name.upper()}_BACKWARD", _backward_shape, None,
                   _backward_lower, doc=f"gradient of {_name} with respect to the prediction",
                   flops=lambda ins, out, attrs: 3 * numel(out)))


def _loss(op, prediction, target, reduction, name) -> Tensor:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    prediction = as_tensor(prediction)
    target = as_tensor(target, like=prediction)
    return make(op, [prediction, target], {"reduction": reduction}, name=name)


def mse(prediction: Tensor, target, reduction: str = "mean", name: str | None = None) -> Tensor:
    """Mean squared error: mean((prediction - target)^2) over all elements. Shapes must match."""
    return _loss("mse", prediction, target, reduction, name)


def l1(prediction: Tensor, target, reduction: str = "mean", name: str | None = None) -> Tensor:
    """Mean absolute error: mean(|prediction - target|) over all elements. Shapes must match."""
    return _loss("l1", prediction, target, reduction, name)
