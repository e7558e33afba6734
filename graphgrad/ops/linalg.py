"""matmul: the 2-D matrix product with transpose flags, so backward never copies a transpose."""
from __future__ import annotations

from ..graph import Tensor, as_tensor
from .registry import export, Lowered, OpDef, OpShapeError, make, register


def _operand_dims(shape, transposed, which):
    if len(shape) != 2:
        raise OpShapeError(f"matmul takes 2-D operands; {which} has shape {shape}")
    return (shape[1], shape[0]) if transposed else tuple(shape)


def _matmul_shape(shapes, attrs):
    m, ka = _operand_dims(shapes[0], attrs["trans_a"], "a")
    kb, n = _operand_dims(shapes[1], attrs["trans_b"], "b")
    if ka is not None and kb is not None and ka != kb:
        raise OpShapeError(f"inner dimensions differ: a{'ᵀ' if attrs['trans_a'] else ''} is (.., {ka}) and "
                           f"b{'ᵀ' if attrs['trans_b'] else ''} is ({kb}, ..)")
    return (m, n)


def _matmul_lower(in_shapes, out_shape, attrs) -> Lowered:
    m, k = _operand_dims(in_shapes[0], attrs["trans_a"], "a")
    n = out_shape[1]
    return Lowered(dims=[m, n, k, int(attrs["trans_a"]), int(attrs["trans_b"])], attrs=[1.0, 0.0])


def _matmul_flops(in_shapes, out_shape, attrs):
    k = _operand_dims(in_shapes[0], attrs["trans_a"], "a")[1]
    return 2 * out_shape[0] * out_shape[1] * k


def _mm(a, b, ta, tb):
    return make("matmul", [a, b], {"trans_a": ta, "trans_b": tb})


def _matmul_grad(node, g):
    """C = op(A)·op(B). Each case writes dA and dB as one product of the operands as stored."""
    a, b = node.inputs
    ta, tb = node.attrs["trans_a"], node.attrs["trans_b"]
    if not ta and not tb:
        return [_mm(g, b, False, True), _mm(a, g, True, False)]
    if not ta and tb:
        return [_mm(g, b, False, False), _mm(g, a, True, False)]
    if ta and not tb:
        return [_mm(b, g, False, True), _mm(a, g, False, False)]
    return [_mm(b, g, True, True), _mm(g, a, True, True)]


register(OpDef("matmul", "GG_OP_MATMUL", _matmul_shape, _matmul_grad, _matmul_lower, flops=_matmul_flops,
               doc="op(a) @ op(b) for 2-D a, b; op transposes when trans_a / trans_b"))


@export
def matmul(a, b, trans_a: bool = False, trans_b: bool = False, name: str | None = None) -> Tensor:
    """Matrix product: a (M, K) @ b (K, N) -> (M, N); trans_a / trans_b use aᵀ / bᵀ without copying."""
    a = as_tensor(a, like=b if isinstance(b, Tensor) else None)
    b = as_tensor(b, like=a)
    return make("matmul", [a, b], {"trans_a": bool(trans_a), "trans_b": bool(trans_b)}, name=name)
