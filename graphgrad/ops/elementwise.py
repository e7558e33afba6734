"""Elementwise ops: add, sub, mul, div with NumPy broadcasting; neg, abs, sign, copy.

Gradients of broadcast inputs are summed back to the input's shape (`unbroadcast`)."""
from __future__ import annotations

from ..graph import Tensor, as_tensor
from .registry import (Lowered, OpDef, OpShapeError, broadcast_shapes, broadcast_strides, collapse_dims, make,
                       numel, register)
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
                   inplace=True, doc=doc,
                   flops=lambda ins, out, attrs: flops_per * numel(out)))


_binary("add", "GG_OP_ADD", _grad_add, "a + b, broadcasting")
_binary("sub", "GG_OP_SUB", _grad_sub, "a - b, broadcasting")
_binary("mul", "GG_OP_MUL", _grad_mul, "a * b, broadcasting")
_binary("div", "GG_OP_DIV", _grad_div, "a / b, broadcasting")


def _unary(name, opcode, grad, doc):
    register(OpDef(name=name, opcode=opcode, shape=_unary_shape, grad=grad, lower=_unary_lower,
                   inplace=True, doc=doc))


_unary("neg", "GG_OP_NEG", lambda node, g: [neg(g)], "-x")
_unary("abs", "GG_OP_ABS", lambda node, g: [mul(g, sign(node.inputs[0]))], "|x| (gradient sign(x), 0 at 0)")
_unary("sign", "GG_OP_SIGN", lambda node, g: [None], "sign(x) in {-1, 0, 1}; its gradient is zero")
_unary("copy", "GG_OP_COPY", lambda node, g: [g], "a copy of x")


def _binary_operands(a, b) -> tuple[Tensor, Tensor]:
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError("at least one operand must be a graphgrad Tensor")
    a = as_tensor(a, like=b if isinstance(b, Tensor) else None)
    b = as_tensor(b, like=a)
    return a, b


def add(a, b, name: str | None = None) -> Tensor:
    """a + b with NumPy broadcasting. Shapes: broadcast(a.shape, b.shape)."""
    return make("add", _binary_operands(a, b), name=name)


def sub(a, b, name: str | None = None) -> Tensor:
    """a - b with NumPy broadcasting."""
    return make("sub", _binary_operands(a, b), name=name)


def mul(a, b, name: str | None = None) -> Tensor:
    """a * b (elementwise) with NumPy broadcasting."""
    return make("mul", _binary_operands(a, b), name=name)


def div(a, b, name: str | None = None) -> Tensor:
    """a / b (elementwise) with NumPy broadcasting."""
    return make("div", _binary_operands(a, b), name=name)


def neg(x: Tensor, name: str | None = None) -> Tensor:
    """-x"""
    return make("neg", [x], name=name)


def abs(x: Tensor, name: str | None = None) -> Tensor:  # noqa: A001 - the public name is gg.abs
    """|x|"""
    return make("abs", [x], name=name)


def sign(x: Tensor, name: str | None = None) -> Tensor:
    """sign(x): -1, 0 or 1."""
    return make("sign", [x], name=name)
