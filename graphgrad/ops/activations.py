"""Activations and their backward ops: relu, leaky_relu, elu, gelu (erf and tanh forms),
sigmoid, tanh, softplus, silu (swish), hardtanh. softmax and log_softmax live with the reductions (reduce.py).

Backward ops are ops too (relu_backward(x, dy), sigmoid_backward(y, dy), ...), each with its
own gradient rule, so gradients of gradients can be built — except gelu_backward, whose
second derivative is not provided (grad of grad through gelu raises GradientError)."""
from __future__ import annotations

from ..graph import Tensor
from .elementwise import add, mul, sub
from .registry import ANY, Lowered, OpDef, export, make, matching_shape, numel, register


def _same_shape(shapes, attrs):
    return matching_shape(*shapes) if len(shapes) == 2 else shapes[0]


def _lower_n(in_shapes, out_shape, attrs) -> Lowered:
    return Lowered(dims=[numel(out_shape)])


register(OpDef("relu", "GG_OP_RELU", _same_shape,
               grad=lambda node, g: [make("relu_backward", [node.inputs[0], g])],
               lower=_lower_n, inplace=True, doc="max(x, 0)", elementwise=True, fusion=(ANY,)))
register(OpDef("relu_backward", "GG_OP_RELU_BACKWARD", _same_shape,
               # linear in dy; the derivative in x is zero almost everywhere
               grad=lambda node, g: [None, make("relu_backward", [node.inputs[0], g])],
               lower=_lower_n, doc="dx = dy where x > 0, else 0", elementwise=True, fusion=(ANY, ANY)))


def _sigmoid_backward_grad(node, g):
    y, dy = node.inputs
    # dx = dy * y * (1 - y): d/dy_in = g * y * (1 - y); d/dy(saved output) = g * dy * (1 - 2y)
    return [mul(mul(g, dy), sub(1.0, mul(2.0, y))), make("sigmoid_backward", [y, g])]


register(OpDef("sigmoid", "GG_OP_SIGMOID", _same_shape,
               grad=lambda node, g: [make("sigmoid_backward", [node, g])],
               lower=_lower_n, inplace=True, doc="1 / (1 + exp(-x)), computed stably",
               flops=lambda ins, out, attrs: 4 * numel(out), elementwise=True, fusion=(ANY,)))
register(OpDef("sigmoid_backward", "GG_OP_SIGMOID_BACKWARD", _same_shape, grad=_sigmoid_backward_grad,
               lower=_lower_n, doc="dx = dy * y * (1 - y), from sigmoid's output y",
               flops=lambda ins, out, attrs: 3 * numel(out), elementwise=True, fusion=(ANY, ANY)))


def _tanh_backward_grad(node, g):
    y, dy = node.inputs
    # dx = dy (1 - y^2): d/dy(saved output) = g dy (-2 y); d/ddy = g (1 - y^2)
    return [mul(mul(g, dy), mul(y, -2.0)), make("tanh_backward", [y, g])]


register(OpDef("tanh", "GG_OP_TANH", _same_shape, grad=lambda node, g: [make("tanh_backward", [node, g])],
               lower=_lower_n, inplace=True, doc="hyperbolic tangent", flops=lambda ins, out, attrs: 4 * numel(out),
               elementwise=True, fusion=(ANY,)))
register(OpDef("tanh_backward", "GG_OP_TANH_BACKWARD", _same_shape, grad=_tanh_backward_grad,
               lower=_lower_n, doc="dx = dy * (1 - y^2), from tanh's output y",
               flops=lambda ins, out, attrs: 3 * numel(out), elementwise=True, fusion=(ANY, ANY)))


def _softplus_backward_grad(node, g):
    x, dy = node.inputs
    # dx = dy sigmoid(x): d/dx = g dy sigmoid'(x); d/ddy = g sigmoid(x)
    return [make("sigmoid_backward", [make("sigmoid", [x]), mul(g, dy)]), make("softplus_backward", [x, g])]


register(OpDef("softplus", "GG_OP_SOFTPLUS", _same_shape,
               grad=lambda node, g: [make("softplus_backward", [node.inputs[0], g])],
               lower=_lower_n, inplace=True, doc="log(1 + exp(x)), computed stably",
               flops=lambda ins, out, attrs: 5 * numel(out), elementwise=True, fusion=(ANY,)))
register(OpDef("softplus_backward", "GG_OP_SOFTPLUS_BACKWARD", _same_shape, grad=_softplus_backward_grad,
               lower=_lower_n, doc="dx = dy * sigmoid(x), from softplus's input x",
               flops=lambda ins, out, attrs: 5 * numel(out), elementwise=True, fusion=(ANY, ANY)))


def _silu_backward_grad(node, g):
    x, dy = node.inputs
    # dx = dy silu'(x): d/dx = g dy silu''(x), silu'' = s (1 - s) (2 + x (1 - 2 s)) with s = sigmoid(x);
    # d/ddy = g silu'(x)
    s = make("sigmoid", [x])
    second = mul(mul(s, sub(1.0, s)), add(2.0, mul(x, sub(1.0, mul(2.0, s)))))
    return [mul(mul(g, dy), second), make("silu_backward", [x, g])]


register(OpDef("silu", "GG_OP_SILU", _same_shape,
               grad=lambda node, g: [make("silu_backward", [node.inputs[0], g])],
               lower=_lower_n, inplace=True, doc="x * sigmoid(x) (swish), computed stably",
               flops=lambda ins, out, attrs: 5 * numel(out), elementwise=True, fusion=(ANY,)))
register(OpDef("silu_backward", "GG_OP_SILU_BACKWARD", _same_shape, grad=_silu_backward_grad,
               lower=_lower_n, doc="dx = dy * sigmoid(x) * (1 + x * (1 - sigmoid(x))), from silu's input x",
               flops=lambda ins, out, attrs: 8 * numel(out), elementwise=True, fusion=(ANY, ANY)))


register(OpDef("hardtanh", "GG_OP_HARDTANH", _same_shape,
               grad=lambda node, g: [make("hardtanh_backward", [node.inputs[0], g])],
               lower=_lower_n, inplace=True, doc="x limited to [-1, 1] (NaN stays NaN)",
               elementwise=True, fusion=(ANY,)))
register(OpDef("hardtanh_backward", "GG_OP_HARDTANH_BACKWARD", _same_shape,
               # linear in dy, piecewise constant in x
               grad=lambda node, g: [None, make("hardtanh_backward", [node.inputs[0], g])],
               lower=_lower_n, doc="dx = dy where -1 < x < 1, else 0 (PyTorch's hardtanh_backward)",
               elementwise=True, fusion=(ANY, ANY)))


def _lower_alpha(in_shapes, out_shape, attrs) -> Lowered:
    return Lowered(dims=[numel(out_shape)], attrs=[attrs["alpha"]])


register(OpDef("leaky_relu", "GG_OP_LEAKY_RELU", _same_shape,
               grad=lambda node, g: [make("leaky_relu_backward", [node.inputs[0], g], dict(node.attrs))],
               lower=_lower_alpha, inplace=True, doc="x where x > 0, else alpha * x", elementwise=True, fusion=(ANY,)))
register(OpDef("leaky_relu_backward", "GG_OP_LEAKY_RELU_BACKWARD", _same_shape,
               grad=lambda node, g: [None, make("leaky_relu_backward", [node.inputs[0], g], dict(node.attrs))],
               lower=_lower_alpha, doc="dx = dy where x > 0, else alpha * dy", elementwise=True, fusion=(ANY, ANY)))


def _elu_backward_grad(node, g):
    x, dy = node.inputs
    # dx = dy (x > 0 ? 1 : alpha e^x): d/dx = g dy (x > 0 ? 0 : alpha e^x)
    #    = elu_backward(x, g dy) - relu_backward(x, g dy)
    gdy = mul(g, dy)
    return [sub(make("elu_backward", [x, gdy], dict(node.attrs)), make("relu_backward", [x, gdy])),
            make("elu_backward", [x, g], dict(node.attrs))]


register(OpDef("elu", "GG_OP_ELU", _same_shape,
               grad=lambda node, g: [make("elu_backward", [node.inputs[0], g], dict(node.attrs))],
               lower=_lower_alpha, inplace=True, doc="x where x > 0, else alpha * (exp(x) - 1)",
               flops=lambda ins, out, attrs: 3 * numel(out), elementwise=True, fusion=(ANY,)))
register(OpDef("elu_backward", "GG_OP_ELU_BACKWARD", _same_shape, grad=_elu_backward_grad,
               lower=_lower_alpha, doc="dx = dy where x > 0, else dy * alpha * exp(x), from elu's input x",
               flops=lambda ins, out, attrs: 3 * numel(out), elementwise=True, fusion=(ANY, ANY)))

GELU_FORMS = ("none", "tanh")


def _lower_gelu(in_shapes, out_shape, attrs) -> Lowered:
    return Lowered(dims=[numel(out_shape), int(attrs["approximate"] == "tanh")])


register(OpDef("gelu", "GG_OP_GELU", _same_shape,
               grad=lambda node, g: [make("gelu_backward", [node.inputs[0], g], dict(node.attrs))],
               lower=_lower_gelu, inplace=True,
               doc="x * Phi(x) (approximate='none', erf) or its tanh approximation (approximate='tanh')",
               flops=lambda ins, out, attrs: 8 * numel(out), elementwise=True))
register(OpDef("gelu_backward", "GG_OP_GELU_BACKWARD", _same_shape, grad=None, lower=_lower_gelu,
               doc="dx = dy * gelu'(x), from gelu's input x (no second derivative)",
               flops=lambda ins, out, attrs: 10 * numel(out), elementwise=True))


@export(activation=True)
def relu(x: Tensor, name: str | None = None) -> Tensor:
    """max(x, 0), elementwise."""
    return make("relu", [x], name=name)


@export(activation=True)
def sigmoid(x: Tensor, name: str | None = None) -> Tensor:
    """The logistic function 1 / (1 + exp(-x)), elementwise; stable for large |x|."""
    return make("sigmoid", [x], name=name)


@export(activation=True)
def leaky_relu(x: Tensor, alpha: float = 0.01, name: str | None = None) -> Tensor:
    """x where x > 0, else alpha * x (PyTorch's negative_slope, default 0.01)."""
    return make("leaky_relu", [x], {"alpha": float(alpha)}, name=name)


@export(activation=True)
def elu(x: Tensor, alpha: float = 1.0, name: str | None = None) -> Tensor:
    """x where x > 0, else alpha * (exp(x) - 1)."""
    return make("elu", [x], {"alpha": float(alpha)}, name=name)


@export(activation=True)
def gelu(x: Tensor, approximate: str = "none", name: str | None = None) -> Tensor:
    """Gaussian error linear unit x * Phi(x). approximate="tanh" uses
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as torch.nn.functional.gelu does."""
    if approximate not in GELU_FORMS:
        raise ValueError(f"gelu: approximate must be one of {GELU_FORMS}, got {approximate!r}")
    return make("gelu", [x], {"approximate": approximate}, name=name)


@export(activation=True)
def tanh(x: Tensor, name: str | None = None) -> Tensor:
    """Hyperbolic tangent, elementwise."""
    return make("tanh", [x], name=name)


@export(activation=True)
def softplus(x: Tensor, name: str | None = None) -> Tensor:
    """log(1 + exp(x)), elementwise; computed as max(x, 0) + log1p(exp(-|x|)), so finite for any x."""
    return make("softplus", [x], name=name)


@export(activation=True)
def silu(x: Tensor, name: str | None = None) -> Tensor:
    """x * sigmoid(x), elementwise (the sigmoid linear unit, also called swish; gg.swish is the same
    function); stable for large |x|."""
    return make("silu", [x], name=name)


swish = export(silu, name="swish", activation=True)


@export(activation=True)
def hardtanh(x: Tensor, name: str | None = None) -> Tensor:
    """x limited to [-1, 1], elementwise; NaN stays NaN. The gradient passes strictly inside (-1, 1)
    and is 0 at the bounds, as in torch.nn.functional.hardtanh."""
    return make("hardtanh", [x], name=name)
