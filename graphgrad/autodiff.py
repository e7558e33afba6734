"""Reverse-mode automatic differentiation: gg.grad adds gradient nodes to the same graph.

Each op's gradient rule (OpDef.grad) builds the vector-Jacobian product from other graph
ops, so a gradient is an ordinary Tensor: it can be compiled, rendered, or differentiated
again. Contributions from several consumers of a node (fan-out) are summed; broadcasting is
undone inside the rules by summing (ops.unbroadcast).
"""
from __future__ import annotations

from typing import Sequence

from . import ops
from .errors import GradientError
from .graph import Graph, Tensor, ancestors, building, constant


def _accumulate(contributions: list[Tensor]) -> Tensor:
    total = contributions[0]
    for g in contributions[1:]:
        total = ops.add(total, g)
    return total


def grad(y: Tensor, xs, grad_ys: Tensor | None = None, unconnected: str = "raise"):
    """Gradients of y with respect to each x in xs, as new graph nodes.

    y must be a scalar unless `grad_ys` (same shape as y) is given: the result is then the
    vector-Jacobian product grad_ys · ∂y/∂x. Returns one Tensor per x (a single Tensor when
    xs is a single Tensor), each of x's shape. An x that y does not depend on raises
    GradientError naming it, or gets zeros with unconnected="zero".
    """
    if unconnected not in ("raise", "zero"):
        raise ValueError(f'unconnected must be "raise" or "zero", got {unconnected!r}')
    single = isinstance(xs, Tensor)
    xs = [xs] if single else list(xs)
    if not isinstance(y, Tensor) or not all(isinstance(x, Tensor) for x in xs):
        raise TypeError("gg.grad(y, xs) takes a Tensor y and a Tensor or a list of Tensors xs")
    if len({x.id for x in xs}) != len(xs):
        twice = next(x for k, x in enumerate(xs) if any(x is other for other in xs[:k]))
        raise GradientError(f'gg.grad: "{twice.name}" ({twice.op}, created at {twice.source}) is listed twice in xs')

    with building("backward"):
        if grad_ys is None:
            if any(d != 1 for d in y.shape):
                raise GradientError(
                    f'gg.grad: "{y.name}" has shape {y.shape}, not a scalar; pass grad_ys (same shape) to get '
                    "a vector-Jacobian product, or reduce it first (gg.sum / gg.mean)")
            grad_ys = constant(1.0, dtype=y.dtype, name=f"d{y.name}")
            if y.shape:
                grad_ys = ops.make("expand", [grad_ys, y], {"axes": tuple(range(y.ndim)), "keepdims": False,
                                                           "mean": False})
        elif grad_ys.shape != y.shape:
            raise GradientError(f'gg.grad: grad_ys has shape {grad_ys.shape} but "{y.name}" has {y.shape}')

        _check_creation_order(y)
        needed = _nodes_between(y, xs)
        pending: dict[int, list[Tensor]] = {y.id: [grad_ys]} if y.id in needed else {}
        results: dict[int, Tensor] = {}
        wanted = {x.id for x in xs}
        # ids grow with creation, so decreasing id is a reverse topological order (no recursion)
        for node in sorted((n for n in ancestors([y]) if n.id in needed), key=lambda n: n.id, reverse=True):
            contributions = pending.pop(node.id, None)
            if not contributions:
                continue
            g = _accumulate(contributions)
            if node.id in wanted:
                results[node.id] = g
            if not any(inp.id in needed for inp in node.inputs):
                continue
            opdef = ops.REGISTRY[node.op]
            if opdef.grad is None:
                raise GradientError(f'gg.grad: op {node.op} (node "{node.name}") has no gradient rule')
            for inp, g_in in zip(node.inputs, opdef.grad(node, g)):
                if g_in is not None and inp.id in needed:
                    pending.setdefault(inp.id, []).append(g_in)

        out = []
        for x in xs:
            if x.id in results:
                out.append(results[x.id])
            elif unconnected == "zero" or x.id in needed:
                # connected only through ops whose gradient is zero (sign, ...): the gradient is zero
                out.append(ops.zeros_like(x))
            else:
                raise GradientError(
                    f'gg.grad: "{y.name}" does not depend on "{x.name}" ({x.op}, created at {x.source}); '
                    'pass unconnected="zero" to get zeros instead')
    return out[0] if single else out


def _check_creation_order(y: Tensor) -> None:
    """The backward sweep relies on inputs being older than their readers, which holds unless
    a node's inputs were rewired after creation (which can also close a cycle)."""
    for node in ancestors([y]):
        late = next((inp for inp in node.inputs if inp.id >= node.id), None)
        if late is not None:
            Graph([y]).check_acyclic()
            raise GradientError(f'gg.grad: node "{node.name}" reads "{late.name}", which was created after it: '
                                "a Tensor's inputs must not be changed after it is made")


def _nodes_between(y: Tensor, xs: Sequence[Tensor]) -> set[int]:
    """Ids of nodes on some path from an x to y (the only ones gradients flow through)."""
    up = ancestors([y])
    consumers: dict[int, list[Tensor]] = {}
    for node in up:
        for inp in node.inputs:
            consumers.setdefault(inp.id, []).append(node)
    up_ids = {n.id for n in up}
    reached = set()
    stack = [x for x in xs if x.id in up_ids]
    while stack:
        node = stack.pop()
        if node.id in reached:
            continue
        reached.add(node.id)
        stack.extend(consumers.get(node.id, ()))
    return reached
