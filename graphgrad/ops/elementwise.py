"""Elementwise ops: add, sub, mul, div, pow, maximum, minimum with NumPy broadcasting (and the
masks their gradients use: maximum_mask, equal); neg, abs, sign, copy, exp, log, sqrt,
pow_scalar, clip.

Gradients of broadcast inputs are summed back to the input's shape (`unbroadcast`). Every
gradient rule is built from graph ops, so gradients of gradients work."""
from __future__ import annotations

from ..graph import Tensor, as_tensor
from .registry import (ANY, Lowered, OpDef, broadcast_shapes, broadcast_strides, collapse_dims, export, make,
                       matching_shape, numel, register)
from .reduce import unbroadcast


def _binary_shape(shapes, attrs):
    return broadcast_shapes(shapes[0], shapes[1])


def _binary_lower(in_shapes, out_shape, attrs) -> Lowered:
    shape, (sa, sb) = collapse_dims(out_shape, broadcast_strides(out_shape, in_shapes[0]),
                                    broadcast_strides(out_shape, in_shapes[1]))
    return Lowered(dims=[len(shape), *shape, *sa, *sb])


def _unary_shape(shapes, attrs):
    return shapes[0]


def _unary_lower(in_shapes, out_shape, attrs) -> Lowered:
    return Lowered(dims=[numel(out_shape)])


def _grad_add(node, g):
    a, b = node.inputs
    return [unbroadcast(g, a), unbroadcast(g, b)]


def _grad_sub(node, g):
    a, b = node.inputs
    return [unbroadcast(g, a), unbroadcast(neg(g), b)]


def _grad_mul(node, g):
    a, b = node.inputs
    return [unbroadcast(mul(g, b), a), unbroadcast(mul(g, a), b)]


def _grad_div(node, g):
    a, b = node.inputs
    # d(a/b)/db = -a/b^2 = -(a/b)/b, reusing the node's own output
    return [unbroadcast(div(g, b), a), unbroadcast(neg(div(mul(g, node), b)), b)]


def _binary(name, opcode, grad, doc, flops_per=1):
    register(OpDef(name=name, opcode=opcode, shape=_binary_shape, grad=grad, lower=_binary_lower,
                   inplace=True, broadcasts=True, doc=doc, elementwise=True, fusion=(ANY, ANY),
                   flops=lambda ins, out, attrs: flops_per * numel(out)))


def _grad_pow(node, g):
    a, b = node.inputs
    # d(a^b)/da = b a^(b-1); d(a^b)/db = a^b log(a) (NaN for a < 0, as in PyTorch)
    return [unbroadcast(mul(g, mul(b, pow(a, sub(b, 1.0)))), a), unbroadcast(mul(g, mul(node, log(a))), b)]


def _grad_maximum(node, g):
    # the gradient goes to the larger input; ties split it evenly (PyTorch's rule)
    a, b = node.inputs
    return [unbroadcast(mul(g, maximum_mask(a, b)), a), unbroadcast(mul(g, maximum_mask(b, a)), b)]


def _grad_minimum(node, g):
    a, b = node.inputs
    return [unbroadcast(mul(g, maximum_mask(b, a)), a), unbroadcast(mul(g, maximum_mask(a, b)), b)]


_binary("add", "GG_OP_ADD", _grad_add, "a + b, broadcasting")
_binary("sub", "GG_OP_SUB", _grad_sub, "a - b, broadcasting")
_binary("mul", "GG_OP_MUL", _grad_mul, "a * b, broadcasting")
_binary("div", "GG_OP_DIV", _grad_div, "a / b, broadcasting")
_binary("pow", "GG_OP_POW", _grad_pow, "a ** b, broadcasting", flops_per=10)
_binary("maximum", "GG_OP_MAXIMUM", _grad_maximum, "elementwise larger of a and b (NaN propagates), broadcasting")
_binary("minimum", "GG_OP_MINIMUM", _grad_minimum, "elementwise smaller of a and b (NaN propagates), broadcasting")
# piecewise-constant masks: their gradient is zero everywhere it exists
_binary("maximum_mask", "GG_OP_MAXIMUM_MASK", lambda node, g: [None, None],
        "1 where a > b, 0.5 where a == b, 0 elsewhere (maximum's gradient share)")
_binary("equal", "GG_OP_EQUAL", lambda node, g: [None, None], "1 where a == b, else 0")


def _unary(name, opcode, grad, doc):
    register(OpDef(name=name, opcode=opcode, shape=_unary_shape, grad=grad, lower=_unary_lower,
                   inplace=True, doc=doc, elementwise=True, fusion=(ANY,)))


_unary("neg", "GG_OP_NEG", lambda node, g: [neg(g)], "-x")
_unary("abs", "GG_OP_ABS", lambda node, g: [mul(g, sign(node.inputs[0]))], "|x| (gradient sign(x), 0 at 0)")
_unary("sign", "GG_OP_SIGN", lambda node, g: [None], "sign(x) in {-1, 0, 1}; its gradient is zero")
_unary("copy", "GG_OP_COPY", lambda node, g: [g], "a copy of x")
_unary("exp", "GG_OP_EXP", lambda node, g: [mul(g, node)], "e ** x")
_unary("log", "GG_OP_LOG", lambda node, g: [div(g, node.inputs[0])], "natural logarithm")
_unary("sqrt", "GG_OP_SQRT", lambda node, g: [div(g, mul(node, 2.0))], "square root")


def _grad_pow_scalar(node, g):
    p = node.attrs["exponent"]
    if p == 0:
        return [mul(g, 0.0)]
    return [mul(g, mul(pow(node.inputs[0], p - 1), p))]


def _p_lower(*names):
    return lambda in_shapes, out_shape, attrs: Lowered(dims=[numel(out_shape)], attrs=[attrs[n] for n in names])


register(OpDef("pow_scalar", "GG_OP_POW_SCALAR", _unary_shape, _grad_pow_scalar, _p_lower("exponent"),
               inplace=True, elementwise=True,
               doc="x ** p for a fixed real p (p = 2, 3, 0.5, -1 take exact fast paths)"))
register(OpDef("clip", "GG_OP_CLIP", _unary_shape,
               lambda node, g: [make("clip_backward", [node.inputs[0], g], dict(node.attrs))],
               _p_lower("min", "max"), inplace=True, elementwise=True, doc="x limited to [min, max] (NaN stays NaN)"))


register(OpDef("clip_backward", "GG_OP_CLIP_BACKWARD", lambda shapes, attrs: matching_shape(*shapes),
               # linear in dy, piecewise constant in x
               lambda node, g: [None, make("clip_backward", [node.inputs[0], g], dict(node.attrs))],
               _p_lower("min", "max"), elementwise=True,
               doc="dx = dy where min <= x <= max (bounds included, as PyTorch's clamp), else 0"))


def _binary_operands(a, b) -> tuple[Tensor, Tensor]:
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError("at least one operand must be a graphgrad Tensor")
    a = as_tensor(a, like=b if isinstance(b, Tensor) else None)
    b = as_tensor(b, like=a)
    return a, b


@export
def add(a, b, name: str | None = None) -> Tensor:
    """a + b with NumPy broadcasting. Shapes: broadcast(a.shape, b.shape)."""
    return make("add", _binary_operands(a, b), name=name)


@export
def sub(a, b, name: str | None = None) -> Tensor:
    """a - b with NumPy broadcasting."""
    return make("sub", _binary_operands(a, b), name=name)


@export
def mul(a, b, name: str | None = None) -> Tensor:
    """a * b (elementwise) with NumPy broadcasting."""
    return make("mul", _binary_operands(a, b), name=name)


@export
def div(a, b, name: str | None = None) -> Tensor:
    """a / b (elementwise) with NumPy broadcasting."""
    return make("div", _binary_operands(a, b), name=name)


@export
def neg(x: Tensor, name: str | None = None) -> Tensor:
    """-x"""
    return make("neg", [x], name=name)


@export
def abs(x: Tensor, name: str | None = None) -> Tensor:  # noqa: A001 - the public name is gg.abs
    """|x|"""
    return make("abs", [x], name=name)


@export(top_level=False)
def sign(x: Tensor, name: str | None = None) -> Tensor:
    """sign(x): -1, 0 or 1."""
    return make("sign", [x], name=name)


@export
def pow(a, b, name: str | None = None) -> Tensor:  # noqa: A001 - the public name is gg.pow
    """a ** b. A real-number exponent b gives one pow_scalar node (x*x for b = 2); a Tensor
    exponent broadcasts as in NumPy."""
    if isinstance(a, Tensor) and not isinstance(b, Tensor):
        return make("pow_scalar", [a], {"exponent": float(b)}, name=name)
    return make("pow", _binary_operands(a, b), name=name)


@export
def maximum(a, b, name: str | None = None) -> Tensor:
    """The elementwise larger of a and b, broadcasting; NaN propagates (np.maximum). At ties the
    gradient is split evenly between a and b (torch.maximum)."""
    return make("maximum", _binary_operands(a, b), name=name)


@export
def minimum(a, b, name: str | None = None) -> Tensor:
    """The elementwise smaller of a and b, broadcasting; NaN propagates (np.minimum)."""
    return make("minimum", _binary_operands(a, b), name=name)


@export(top_level=False)
def maximum_mask(a, b, name: str | None = None) -> Tensor:
    """1 where a > b, 0.5 where a == b, 0 elsewhere (maximum's gradient share), broadcasting."""
    return make("maximum_mask", _binary_operands(a, b), name=name)


@export(top_level=False)
def equal(a, b, name: str | None = None) -> Tensor:
    """1.0 where a == b, else 0.0, broadcasting (a float mask)."""
    return make("equal", _binary_operands(a, b), name=name)


@export
def exp(x: Tensor, name: str | None = None) -> Tensor:
    """e ** x, elementwise."""
    return make("exp", [x], name=name)


@export
def log(x: Tensor, name: str | None = None) -> Tensor:
    """Natural logarithm, elementwise (-inf at 0, NaN below)."""
    return make("log", [x], name=name)


@export
def sqrt(x: Tensor, name: str | None = None) -> Tensor:
    """Square root, elementwise."""
    return make("sqrt", [x], name=name)


@export
def clip(x: Tensor, min: float | None = None, max: float | None = None,  # noqa: A002 - PyTorch's names
         name: str | None = None) -> Tensor:
    """x limited to [min, max] (either bound may be None). The gradient passes where
    min <= x <= max, bounds included, as in torch.clamp."""
    lo = float("-inf") if min is None else float(min)
    hi = float("inf") if max is None else float(max)
    if lo > hi:
        raise ValueError(f"clip: min ({lo}) is larger than max ({hi})")
    return make("clip", [x], {"min": lo, "max": hi}, name=name)
