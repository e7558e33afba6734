"""One test case per op in the registry: how to build it from graph tensors, its NumPy
reference, the input shapes to use, and input transforms that keep it away from kinks
(|x| near 0, division by ~0). Shared by test_ops (forward, gradcheck) and the registry test."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import graphgrad as gg
from graphgrad.ops import make


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _away_from_zero(x):
    return np.where(np.abs(x) < 0.2, np.sign(x + 1e-12) * 0.2 + x, x)


@dataclass
class OpCase:
    build: Callable                  # tensors -> Tensor
    reference: Callable              # arrays -> array
    shapes: list
    prepare: list = field(default_factory=list)   # per-input transforms of the random data
    differentiable: bool = True


def _sum_case(axes, keepdims, mean=False):
    fn = gg.mean if mean else gg.sum
    ref = np.mean if mean else np.sum
    return OpCase(lambda x: fn(x, axis=axes, keepdims=keepdims), lambda x: ref(x, axis=axes, keepdims=keepdims),
                  [(3, 4, 5)])


def _expand(g, like, axes, keepdims, mean):
    return make("expand", [g, like], {"axes": axes, "keepdims": keepdims, "mean": mean})


def _expand_ref(g, like, axes, keepdims, mean):
    if not keepdims:
        g = np.expand_dims(g, axes)
    count = np.prod([like.shape[a] for a in axes]) if mean else 1
    return np.broadcast_to(g, like.shape) / count


def _mm(ta, tb):
    def build(a, b):
        return gg.matmul(a, b, trans_a=ta, trans_b=tb)

    def ref(a, b):
        return (a.T if ta else a) @ (b.T if tb else b)
    return OpCase(build, ref, [(4, 3) if ta else (3, 4), (5, 4) if tb else (4, 5)])


#: op name -> list of cases (several where attributes change the kernel's path)
OP_CASES: dict[str, list[OpCase]] = {
    "add": [OpCase(lambda a, b: a + b, np.add, [(3, 4), (4,)]), OpCase(lambda a, b: a + b, np.add, [(2, 1, 3), (4, 1)])],
    "sub": [OpCase(lambda a, b: a - b, np.subtract, [(3, 1), (1, 4)])],
    "mul": [OpCase(lambda a, b: a * b, np.multiply, [(3, 4), (3, 4)]), OpCase(lambda a, b: a * b, np.multiply, [(), (2, 3)])],
    "div": [OpCase(lambda a, b: a / b, np.divide, [(3, 4), (4,)], prepare=[None, _away_from_zero])],
    "neg": [OpCase(lambda x: -x, np.negative, [(3, 4)])],
    "abs": [OpCase(lambda x: abs(x), np.abs, [(3, 4)], prepare=[_away_from_zero])],
    "sign": [OpCase(gg.ops.sign, np.sign, [(3, 4)], prepare=[_away_from_zero])],
    "copy": [OpCase(lambda x: make("copy", [x]), np.copy, [(2, 3)])],
    "relu": [OpCase(gg.relu, lambda x: np.maximum(x, 0), [(3, 4)], prepare=[_away_from_zero])],
    "relu_backward": [OpCase(lambda x, dy: make("relu_backward", [x, dy]), lambda x, dy: np.where(x > 0, dy, 0),
                             [(3, 4), (3, 4)], prepare=[_away_from_zero, None])],
    "sigmoid": [OpCase(gg.sigmoid, _sigmoid, [(3, 4)])],
    "sigmoid_backward": [OpCase(lambda y, dy: make("sigmoid_backward", [y, dy]), lambda y, dy: dy * y * (1 - y),
                                [(3, 4), (3, 4)])],
    "sum": [_sum_case(None, False), _sum_case(0, False), _sum_case((0, 2), True), _sum_case(-1, False),
            _sum_case(1, True)],
    "mean": [],  # mean is the sum op with mean=True: covered below
    "expand": [OpCase(lambda g, like: _expand(g, like, (0,), False, False),
                      lambda g, like: _expand_ref(g, like, (0,), False, False), [(4,), (3, 4)]),
               OpCase(lambda g, like: _expand(g, like, (1,), True, True),
                      lambda g, like: _expand_ref(g, like, (1,), True, True), [(3, 1), (3, 4)])],
    "matmul": [_mm(False, False), _mm(False, True), _mm(True, False), _mm(True, True)],
    "mse": [OpCase(gg.mse, lambda p, y: np.mean((p - y) ** 2), [(3, 4), (3, 4)]),
            OpCase(lambda p, y: gg.mse(p, y, reduction="sum"), lambda p, y: np.sum((p - y) ** 2), [(5,), (5,)])],
    "l1": [OpCase(gg.l1, lambda p, y: np.mean(np.abs(p - y)), [(3, 4), (3, 4)], prepare=[_away_from_zero, lambda y: 0 * y]),
           OpCase(lambda p, y: gg.l1(p, y, reduction="sum"), lambda p, y: np.sum(np.abs(p - y)), [(5,), (5,)],
                  prepare=[_away_from_zero, lambda y: 0 * y])],
    "mse_backward": [OpCase(lambda p, y, g: make("mse_backward", [p, y, g], {"reduction": "mean"}),
                            lambda p, y, g: g * 2 * (p - y) / p.size, [(3, 4), (3, 4), ()], differentiable=False)],
    "l1_backward": [OpCase(lambda p, y, g: make("l1_backward", [p, y, g], {"reduction": "sum"}),
                           lambda p, y, g: g * np.sign(p - y), [(3, 4), (3, 4), ()], differentiable=False)],
}
OP_CASES["sum"] += [_sum_case((0, 1), False, mean=True), _sum_case(None, True, mean=True)]
del OP_CASES["mean"]



def needs_case(opdef) -> bool:
    """Every op needs a case here except leaves (no instruction) and update ops, which are
    checked step by step against their published rules (test_optim, test_runtime)."""
    return opdef.opcode is not None and not opdef.writes


# gradient clipping (ops/updates.py): grad_sumsq's float64 output is observed through clip_by_norm
def _clip_norm_ref(max_norm, *gs):
    return gs[0] * min(1.0, max_norm / (np.sqrt(sum(np.sum(g * g) for g in gs)) + 1e-6))


_upd = gg.ops.updates
OP_CASES.update({
    "grad_sumsq": [OpCase(lambda a, b: _upd.clip_by_norm(a, _upd.grad_sumsq(b, _upd.grad_sumsq(a)), 1.0),
                          lambda a, b: _clip_norm_ref(1.0, a, b), [(3, 4), (5,)], differentiable=False)],
    "clip_by_norm": [OpCase(lambda g: _upd.clip_by_norm(g, _upd.grad_sumsq(g), 100.0),
                            lambda g: _clip_norm_ref(100.0, g), [(3, 4)], differentiable=False),
                     OpCase(lambda g: _upd.clip_by_norm(g, _upd.grad_sumsq(g), 0.5),
                            lambda g: _clip_norm_ref(0.5, g), [(2, 3)], differentiable=False)],
    "clip_by_value": [OpCase(lambda g: _upd.clip_by_value(g, 0.5), lambda g: np.clip(g, -0.5, 0.5), [(3, 4)],
                             differentiable=False)],
})
