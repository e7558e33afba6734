"""Activations and their backward ops: relu, sigmoid.

Backward ops are ops too (relu_backward(x, dy), sigmoid_backward(y, dy)), each with its own
gradient rule, so gradients of gradients can be built."""
from __future__ import annotations

from ..graph import Tensor
from .elementwise import mul, sub
from .registry import Lowered, OpDef, OpShapeError, make, numel, register


def _same_shape(shapes, attrs):
    if len(shapes) == 2 and shapes[0] != shapes[1]:
        raise OpShapeError(f"saved tensor {shapes[0]} and gradient {shapes[1]} differ in shape")
    return shapes[0]


def _lower_n(in_shapes, out_shape, attrs) -> Lowered:
    return Lowered(dims=[numel(out_shape)])


register(OpDef("relu", "GG_OP_RELU", _same_shape,
               grad=lambda node, g: [make("relu_backward", [node.inputs[0], g])],
               lower=_lower_n, inplace=True, doc="max(x, 0)"))
register(OpDef("relu_backward", "GG_OP_RELU_BACKWARD", _same_shape,
               # linear in dy; the derivative in x is zero almost everywhere
               grad=lambda node, g: [None, make("relu_backward", [node.inputs[0], g])],
               lower=_lower_n, doc="dx = dy where x > 0, else 0"))


def _sigmoid_backward_grad(node, g):
    y, dy = node.inputs
    # dx = dy * y * (1 - y): d/dy_in = g * y * (1 - y); d/dy(saved output) = g * dy * (1 - 2y)
    return [mul(mul(g, dy), sub(1.0, mul(2.0, y))), make("sigmoid_backward", [y, g])]


register(OpDef("sigmoid", "GG_OP_SIGMOID", _same_shape,
               grad=lambda node, g: [make("sigmoid_backward", [node, g])],
               lower=_lower_n, inplace=True, doc="1 / (1 + exp(-x)), computed stably",
               flops=lambda ins, out, attrs: 4 * numel(out)))
register(OpDef("sigmoid_backward", "GG_OP_SIGMOID_BACKWARD", _same_shape, grad=_sigmoid_backward_grad,
               lower=_lower_n, doc="dx = dy * y * (1 - y), from sigmoid's output y",
               flops=lambda ins, out, attrs: 3 * numel(out)))


def relu(x: Tensor, name: str | None = None) -> Tensor:
    """max(x, 0), elementwise."""
    return make("relu", [x], name=name)


def sigmoid(x: Tensor, name: str | None = None) -> Tensor:
    """The logistic function 1 / (1 + exp(-x)), elementwise; stable for large |x|."""
    return make("sigmoid", [x], name=name)
