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
# the loss backward ops have gradients too (second derivatives): checked here
OP_CASES["mse_backward"].append(OpCase(lambda p, y, g: make("mse_backward", [p, y, g], {"reduction": "mean"}),
                                       lambda p, y, g: g * 2 * (p - y) / p.size, [(3, 4), (3, 4), ()]))
OP_CASES["l1_backward"].append(OpCase(lambda p, y, g: make("l1_backward", [p, y, g], {"reduction": "mean"}),
                                      lambda p, y, g: g * np.sign(p - y) / p.size, [(3, 4), (3, 4), ()],
                                      prepare=[_away_from_zero, lambda y: 0 * y]))


# ---- the full op set (issue 3) ---------------------------------------------------------------------

def _positive(x):
    return np.abs(x) + 0.5


def _away_from_half(x):
    # keep x away from the clip bounds ±0.5, where the gradient jumps
    return np.where(np.abs(np.abs(x) - 0.5) < 0.1, x + 0.2, x)


def _away_from_one(x):
    # keep x away from hardtanh's bounds ±1, where the gradient jumps, with some values beyond them
    return 2 * _away_from_half(x / 2)


def _probabilities(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _erf(x):
    from math import erf
    return np.vectorize(erf, otypes=[np.float64])(x)


def _gelu(x):
    return 0.5 * x * (1 + _erf(x / np.sqrt(2)))


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def _gelu_grad(x):
    return 0.5 * (1 + _erf(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)


def _gelu_tanh_grad(x):
    k = np.sqrt(2 / np.pi)
    t = np.tanh(k * (x + 0.044715 * x ** 3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)


def _softplus(x):
    return np.logaddexp(0, x)


def _away_from_delta(p):
    # |p| (the target is 0) away from the Huber kink at 0.7
    return np.where(np.abs(np.abs(p) - 0.7) < 0.1, p * 1.3, p)


def _huber(p, y, delta):
    d = np.abs(p - y)
    return np.where(d <= delta, 0.5 * d * d, delta * (d - 0.5 * delta))


def _bce(x, y):
    return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))


LABELS = np.array([[2, 0, 4], [1, 3, 3]], dtype=np.int64)   # for logits of shape (2, 3, 5)


def _onehot(labels, classes):
    return np.eye(classes)[labels]


def _ce_labels_ref(x, reduction="mean"):
    per_row = -np.take_along_axis(_log_softmax(x), LABELS[..., None], axis=-1)[..., 0]
    return per_row.mean() if reduction == "mean" else per_row.sum()


def _idx(*items):
    from graphgrad.ops.shape import _index_items
    return {"items": _index_items(items if len(items) != 1 else items[0], 3)}


def _case(build, ref, shapes, prepare=(), differentiable=True):
    return OpCase(build, ref, list(shapes), list(prepare), differentiable)


OP_CASES.update({
    # elementwise, binary (broadcasting)
    "pow": [_case(lambda a, b: a ** b, np.power, [(3, 4), (4,)], [_positive]),
            _case(lambda a: 2.0 ** a, lambda a: 2.0 ** a, [(2, 3)])],
    "maximum": [_case(gg.maximum, np.maximum, [(3, 4), (4,)]), _case(gg.maximum, np.maximum, [(2, 1, 3), (4, 1)])],
    "minimum": [_case(gg.minimum, np.minimum, [(3, 4), (3, 1)])],
    "maximum_mask": [_case(gg.ops.maximum_mask, lambda a, b: _mask_ref(a, b),
                           [(3, 4), (4,)]),
                     _case(lambda a: gg.ops.maximum_mask(a, gg.clip(a, -0.5, 0.5)),
                           lambda a: _mask_ref(a, np.clip(a, -0.5, 0.5)), [(3, 4)], [_away_from_half])],
    "equal": [_case(lambda a: gg.ops.equal(a, gg.clip(a, -0.5, 0.5)), lambda a: 1.0 * (a == np.clip(a, -0.5, 0.5)),
                    [(3, 4)], [_away_from_half])],
    # elementwise, unary
    "exp": [_case(gg.exp, np.exp, [(3, 4)])],
    "log": [_case(gg.log, np.log, [(3, 4)], [_positive])],
    "sqrt": [_case(gg.sqrt, np.sqrt, [(3, 4)], [_positive])],
    "pow_scalar": [_case(lambda x: x ** 2, np.square, [(3, 4)]), _case(lambda x: x ** 3, lambda x: x ** 3, [(5,)]),
                   _case(lambda x: x ** 0.5, np.sqrt, [(5,)], [_positive]),
                   _case(lambda x: x ** -1, np.reciprocal, [(5,)], [_away_from_zero]),
                   _case(lambda x: x ** 1.7, lambda x: x ** 1.7, [(2, 3)], [_positive]),
                   _case(lambda x: x ** 1, lambda x: x, [(4,)]),
                   _case(lambda x: gg.pow(x, 0), np.ones_like, [(4,)])],
    "clip": [_case(lambda x: gg.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), [(3, 4)], [_away_from_half]),
             _case(lambda x: gg.clip(x, min=0.5), lambda x: np.maximum(x, 0.5), [(3, 4)], [_away_from_half])],
    "clip_backward": [_case(lambda x, dy: make("clip_backward", [x, dy], {"min": -0.5, "max": 0.5}),
                            lambda x, dy: np.where(np.abs(x) <= 0.5, dy, 0), [(3, 4), (3, 4)], [_away_from_half])],
    # activations
    "leaky_relu": [_case(gg.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x), [(3, 4)], [_away_from_zero]),
                   _case(lambda x: gg.leaky_relu(x, 0.2), lambda x: np.where(x > 0, x, 0.2 * x), [(5,)],
                         [_away_from_zero])],
    "leaky_relu_backward": [_case(lambda x, dy: make("leaky_relu_backward", [x, dy], {"alpha": 0.1}),
                                  lambda x, dy: np.where(x > 0, dy, 0.1 * dy), [(3, 4), (3, 4)], [_away_from_zero])],
    "elu": [_case(gg.elu, lambda x: np.where(x > 0, x, np.expm1(x)), [(3, 4)], [_away_from_zero]),
            _case(lambda x: gg.elu(x, 0.5), lambda x: np.where(x > 0, x, 0.5 * np.expm1(x)), [(5,)], [_away_from_zero])],
    "elu_backward": [_case(lambda x, dy: make("elu_backward", [x, dy], {"alpha": 0.7}),
                           lambda x, dy: np.where(x > 0, dy, 0.7 * dy * np.exp(x)), [(3, 4), (3, 4)],
                           [_away_from_zero])],
    "gelu": [_case(gg.gelu, _gelu, [(3, 4)]), _case(lambda x: gg.gelu(x, approximate="tanh"), _gelu_tanh, [(3, 4)])],
    "gelu_backward": [_case(lambda x, dy: make("gelu_backward", [x, dy], {"approximate": "none"}),
                            lambda x, dy: dy * _gelu_grad(x), [(3, 4), (3, 4)], differentiable=False),
                      _case(lambda x, dy: make("gelu_backward", [x, dy], {"approximate": "tanh"}),
                            lambda x, dy: dy * _gelu_tanh_grad(x), [(3, 4), (3, 4)], differentiable=False)],
    "tanh": [_case(gg.tanh, np.tanh, [(3, 4)])],
    "tanh_backward": [_case(lambda y, dy: make("tanh_backward", [y, dy]), lambda y, dy: dy * (1 - y * y),
                            [(3, 4), (3, 4)])],
    "softplus": [_case(gg.softplus, _softplus, [(3, 4)])],
    "softplus_backward": [_case(lambda x, dy: make("softplus_backward", [x, dy]), lambda x, dy: dy * _sigmoid(x),
                                [(3, 4), (3, 4)])],
    "silu": [_case(gg.silu, lambda x: x * _sigmoid(x), [(3, 4)]), _case(gg.swish, lambda x: x * _sigmoid(x), [(5,)])],
    "silu_backward": [_case(lambda x, dy: make("silu_backward", [x, dy]),
                            lambda x, dy: dy * _sigmoid(x) * (1 + x * (1 - _sigmoid(x))), [(3, 4), (3, 4)])],
    "hardtanh": [_case(gg.hardtanh, lambda x: np.clip(x, -1, 1), [(3, 4)], [_away_from_one])],
    "hardtanh_backward": [_case(lambda x, dy: make("hardtanh_backward", [x, dy]),
                                lambda x, dy: np.where((x <= -1) | (x >= 1), 0, dy), [(3, 4), (3, 4)],
                                [_away_from_one])],
    "softmax": [_case(gg.softmax, _softmax, [(3, 5)]),
                _case(lambda x: gg.softmax(x, axis=1), lambda x: _softmax(x, 1), [(2, 3, 4)])],
    "softmax_backward": [_case(lambda y, dy: make("softmax_backward", [y, dy], {"axis": 1}),
                               lambda y, dy: y * (dy - (dy * y).sum(axis=1, keepdims=True)), [(2, 3, 4), (2, 3, 4)])],
    "log_softmax": [_case(gg.log_softmax, _log_softmax, [(3, 5)]),
                    _case(lambda x: gg.log_softmax(x, axis=0), lambda x: _log_softmax(x, 0), [(4, 3)])],
    "log_softmax_backward": [_case(lambda y, dy: make("log_softmax_backward", [y, dy], {"axis": 2}),
                                   lambda y, dy: dy - np.exp(y) * dy.sum(axis=2, keepdims=True),
                                   [(2, 3, 4), (2, 3, 4)])],
    # reductions
    "max": [_case(lambda x: gg.max(x), np.max, [(3, 4, 5)]),
            _case(lambda x: gg.max(x, axis=1), lambda x: np.max(x, axis=1), [(3, 4, 5)]),
            _case(lambda x: gg.max(x, axis=(0, 2), keepdims=True), lambda x: np.max(x, axis=(0, 2), keepdims=True),
                  [(3, 4, 5)]),
            _case(lambda x: gg.max(x, axis=-1, keepdims=True), lambda x: np.max(x, axis=-1, keepdims=True), [(3, 4)])],
    # shape ops
    "reshape": [_case(lambda x: gg.reshape(x, (2, -1, 2)), lambda x: x.reshape(2, -1, 2), [(3, 4)]),
                _case(lambda x: gg.reshape(x, (-1,)), lambda x: x.reshape(-1), [(2, 3, 2)]),
                _case(lambda g, like: make("reshape", [g, like]), lambda g, like: g.reshape(like.shape),
                      [(6, 2), (3, 4)])],
    "transpose": [_case(gg.transpose, np.transpose, [(3, 4)]),
                  _case(lambda x: gg.transpose(x, (2, 0, 1)), lambda x: np.transpose(x, (2, 0, 1)), [(2, 3, 4)]),
                  _case(lambda x: gg.transpose(x, (0, 2, 1)), lambda x: np.transpose(x, (0, 2, 1)), [(2, 3, 4)])],
    "broadcast_to": [_case(lambda x: gg.broadcast_to(x, (2, 3, 4)), lambda x: np.broadcast_to(x, (2, 3, 4)),
                           [(3, 1)]),
                     _case(lambda x: gg.broadcast_to(x, (3, 4)), lambda x: np.broadcast_to(x, (3, 4)), [(4,)])],
    "slice": [_case(lambda x: x[1:3], lambda x: x[1:3], [(4, 3)]),
              _case(lambda x: x[::-2], lambda x: x[::-2], [(5, 3)]),
              _case(lambda x: x[1], lambda x: x[1], [(3, 4)]),
              _case(lambda x: x[:, ::2, -1], lambda x: x[:, ::2, -1], [(2, 5, 3)]),
              _case(lambda x: x[..., 1:], lambda x: x[..., 1:], [(2, 3, 4)]),
              _case(lambda x: x[5:], lambda x: x[5:], [(3, 2)])],
    "slice_backward": [_case(lambda g, like: make("slice_backward", [g, like], _idx(slice(1, None, 2))),
                             lambda g, like: _scatter(g, like.shape, np.s_[1::2]), [(2, 4), (5, 4)]),
                       _case(lambda g, like: make("slice_backward", [g, like], _idx(slice(None), 2)),
                             lambda g, like: _scatter(g, like.shape, np.s_[:, 2]), [(3, 2), (3, 4, 2)])],
    "concat": [_case(lambda a, b: gg.concat([a, b]), lambda a, b: np.concatenate([a, b]), [(2, 3), (4, 3)]),
               _case(lambda a, b, c: gg.concat([a, b, c], axis=1), lambda a, b, c: np.concatenate([a, b, c], 1),
                     [(2, 1, 3), (2, 2, 3), (2, 3, 3)]),
               _case(lambda *xs: gg.concat(list(xs), axis=-1), lambda *xs: np.concatenate(xs, -1), [(2, 1)] * 8)],
    "concat_part": [_case(lambda g, a, b: make("concat_part", [g, a, b], {"axis": 1, "index": 1}),
                          lambda g, a, b: g[:, 2:], [(2, 5), (2, 2), (2, 3)])],
    # losses
    "huber": [_case(gg.huber, lambda p, y: np.mean(_huber(p, y, 1.0)), [(3, 4), (3, 4)]),
              _case(lambda p, y: gg.huber(p, y, delta=0.5, reduction="sum"), lambda p, y: np.sum(_huber(p, y, 0.5)),
                    [(6,), (6,)])],
    "huber_backward": [
        _case(lambda p, y, g: make("huber_backward", [p, y, g], {"reduction": "sum", "delta": 0.7}),
              lambda p, y, g: g * np.clip(p - y, -0.7, 0.7), [(3, 4), (3, 4), ()], [_away_from_delta, lambda y: 0 * y]),
        _case(lambda p, y, g: make("huber_backward", [p, y, g], {"reduction": "mean", "delta": 0.5}),
                             lambda p, y, g: g * np.clip(p - y, -0.5, 0.5) / p.size, [(3, 4), (3, 4), ()],
                             differentiable=False)],
    "binary_cross_entropy": [
        _case(gg.binary_cross_entropy, lambda x, y: np.mean(_bce(x, y)), [(3, 4), (3, 4)], [None, _sigmoid]),
        _case(lambda x, y: gg.binary_cross_entropy(x, y, reduction="sum"), lambda x, y: np.sum(_bce(x, y)),
              [(5,), (5,)], [None, _sigmoid])],
    "binary_cross_entropy_backward": [
        _case(lambda x, y, g: make("binary_cross_entropy_backward", [x, y, g], {"reduction": "mean", "wrt": 0}),
              lambda x, y, g: g * (_sigmoid(x) - y) / x.size, [(3, 4), (3, 4), ()], differentiable=False),
        _case(lambda x, y, g: make("binary_cross_entropy_backward", [x, y, g], {"reduction": "sum", "wrt": 1}),
              lambda x, y, g: -g * x, [(3, 4), (3, 4), ()], differentiable=False),
        _case(lambda x, y, g: make("binary_cross_entropy_backward", [x, y, g], {"reduction": "mean", "wrt": 0}),
              lambda x, y, g: g * (_sigmoid(x) - y) / x.size, [(3, 4), (3, 4), ()]),
        _case(lambda x, y, g: make("binary_cross_entropy_backward", [x, y, g], {"reduction": "mean", "wrt": 1}),
              lambda x, y, g: -g * x / x.size, [(3, 4), (3, 4), ()])],
    "softmax_cross_entropy": [
        _case(gg.softmax_cross_entropy, lambda x, t: -np.sum(t * _log_softmax(x)) / 3, [(3, 5), (3, 5)],
              [None, _probabilities]),
        _case(lambda x, t: gg.softmax_cross_entropy(x, t, reduction="sum"), lambda x, t: -np.sum(t * _log_softmax(x)),
              [(2, 3, 4), (2, 3, 4)], [None, np.abs])],   # unnormalised targets: sum_c t need not be 1
    "softmax_cross_entropy_backward": [
        _case(lambda x, t, g: make("softmax_cross_entropy_backward", [x, t, g], {"reduction": "mean", "wrt": 0}),
              lambda x, t, g: g * (_softmax(x) * t.sum(-1, keepdims=True) - t) / 3, [(3, 5), (3, 5), ()],
              [None, np.abs], differentiable=False),
        _case(lambda x, t, g: make("softmax_cross_entropy_backward", [x, t, g], {"reduction": "sum", "wrt": 1}),
              lambda x, t, g: -g * _log_softmax(x), [(3, 5), (3, 5), ()], differentiable=False),
        _case(lambda x, t, g: make("softmax_cross_entropy_backward", [x, t, g], {"reduction": "mean", "wrt": 0}),
              lambda x, t, g: g * (_softmax(x) * t.sum(-1, keepdims=True) - t) / 6, [(2, 3, 4), (2, 3, 4), ()],
              [None, np.abs]),
        _case(lambda x, t, g: make("softmax_cross_entropy_backward", [x, t, g], {"reduction": "mean", "wrt": 1}),
              lambda x, t, g: -g * _log_softmax(x) / 3, [(3, 5), (3, 5), ()])],
    "softmax_cross_entropy_labels": [
        _case(lambda x: gg.softmax_cross_entropy(x, LABELS), _ce_labels_ref, [(2, 3, 5)]),
        _case(lambda x: gg.softmax_cross_entropy(x, LABELS, reduction="sum"),
              lambda x: _ce_labels_ref(x, "sum"), [(2, 3, 5)]),
        _case(lambda x: gg.softmax_cross_entropy(x, _onehot(LABELS, 5)),   # one-hot rows: the same loss
              _ce_labels_ref, [(2, 3, 5)])],
    "softmax_cross_entropy_labels_backward": [
        _case(lambda x, g: make("softmax_cross_entropy_labels_backward", [x, gg.constant(LABELS, dtype="int64"), g],
                                {"reduction": "mean"}),
              lambda x, g: g * (_softmax(x) - _onehot(LABELS, 5)) / 6, [(2, 3, 5), ()]),
        _case(lambda x, g: make("softmax_cross_entropy_labels_backward", [x, gg.constant(LABELS, dtype="int64"), g],
                                {"reduction": "sum"}),
              lambda x, g: g * (_softmax(x) - _onehot(LABELS, 5)), [(2, 3, 5), ()])],
})


def _mask_ref(a, b):
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))


def _scatter(g, shape, index):
    out = np.zeros(shape)
    out[index] = g
    return out



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


# dropout_mask (ops/random.py): the C kernel's SplitMix64 draws, transcribed in NumPy uint64 arithmetic
def _mix64(z):
    with np.errstate(over="ignore"):
        z = np.asarray(z, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def dropout_mask_reference(shape, seed, counter, rate):
    key = _mix64(np.uint64(seed) ^ _mix64(np.uint64(counter)))
    with np.errstate(over="ignore"):
        draws = _mix64(key + np.arange(int(np.prod(shape)), dtype=np.uint64))
    u = (draws >> np.uint64(11)).astype(np.float64) * 2.0 ** -53
    return np.where(u < rate, 0.0, 1.0 / (1.0 - rate)).reshape(shape)


def _dropout_case(seed, counter, rate, shape):
    def build(x):
        return x * gg.ops.dropout_mask(x, gg.constant(float(counter), dtype="float64"), rate, seed)
    return OpCase(build, lambda x: x * dropout_mask_reference(x.shape, seed, counter, rate), [shape])


OP_CASES["dropout_mask"] = [_dropout_case(7, 3, 0.5, (4, 5)), _dropout_case(2 ** 40 + 5, 12345, 0.2, (3, 7, 2)),
                            _dropout_case(1, 0, 0.9, (50,))]


# convolutional ops (ops/conv.py), against the loop/einsum references of tests/conv_reference.py
import conv_reference as cref  # noqa: E402


def _conv_case(x_shape, w_shape, stride=1, padding=0, dilation=1, bias=True):
    shapes = [x_shape, w_shape] + ([(w_shape[0],)] if bias else [])

    def build(x, w, *b):
        return gg.conv2d(x, w, *b, stride=stride, padding=padding, dilation=dilation)

    ref_padding = (w_shape[2] // 2, w_shape[3] // 2) if padding == "same" else padding   # odd kernels, dilation 1

    def ref(x, w, *b):
        return cref.conv2d(x, w, b[0] if b else None, stride, ref_padding, dilation)
    return OpCase(build, ref, shapes)


def _conv_attrs(stride, padding, dilation):
    pair = lambda v: tuple(v) if isinstance(v, tuple) else (v, v)  # noqa: E731
    return {"stride": pair(stride), "padding": pair(padding), "dilation": pair(dilation)}


def _input_grad_case(x_shape, w_shape, stride=1, padding=0, dilation=1):
    y = cref.conv2d(np.zeros(x_shape), np.zeros(w_shape), None, stride, padding, dilation)
    attrs = {**_conv_attrs(stride, padding, dilation), "input_hw": x_shape[2:]}
    return OpCase(lambda dy, w: make("conv2d_input_grad", [dy, w], attrs),
                  lambda dy, w: cref.conv2d_input_grad(dy, w, x_shape[2:], stride, padding, dilation),
                  [y.shape, w_shape])


def _weight_grad_case(x_shape, w_shape, stride=1, padding=0, dilation=1):
    y = cref.conv2d(np.zeros(x_shape), np.zeros(w_shape), None, stride, padding, dilation)
    attrs = {**_conv_attrs(stride, padding, dilation), "kernel": w_shape[2:]}
    return OpCase(lambda x, dy: make("conv2d_weight_grad", [x, dy], attrs),
                  lambda x, dy: cref.conv2d_weight_grad(x, dy, w_shape[2:], stride, padding, dilation),
                  [x_shape, y.shape])


def _pool_attrs(kernel, stride, padding):
    return {"kernel_size": kernel, "stride": stride, "padding": padding}


def _distinct(x):
    """Values far apart, so a small finite-difference step never changes a window's maximum."""
    order = np.argsort(np.argsort(x, axis=None)).reshape(x.shape)
    return order * 0.1 + 0.01 * np.tanh(x)


def _pool_case(op, x_shape, kernel, stride=None, padding=0):
    fn, ref = getattr(gg, op), getattr(cref, op)
    return OpCase(lambda x: fn(x, kernel, stride, padding), lambda x: ref(x, kernel, stride, padding), [x_shape],
                  prepare=[_distinct] if op == "max_pool2d" else [])


def _pooled_shape(x_shape, kernel, stride, padding):
    return cref.max_pool2d(np.zeros(x_shape), kernel, stride, padding).shape


def _centred_distinct(x):
    """Distinct values on both sides of 0 (for the positive flag)."""
    return _distinct(x) - _distinct(x).mean()


def _max_backward_case(x_shape, kernel, stride=None, padding=0, positive=False):
    attrs = {**_pool_attrs(kernel, stride, padding), "positive": positive}
    return OpCase(lambda x, dy: make("max_pool2d_backward", [x, dy], attrs),
                  lambda x, dy: cref.max_pool2d_backward(x, dy, kernel, stride, padding, positive),
                  [x_shape, _pooled_shape(x_shape, kernel, stride, padding)],
                  prepare=[_centred_distinct if positive else _distinct])


def _gather_case(x_shape, kernel, stride=None, padding=0, positive=False):
    attrs = {**_pool_attrs(kernel, stride, padding), "positive": positive}
    return OpCase(lambda x, g: make("max_pool2d_gather", [x, g], attrs),
                  lambda x, g: cref.max_pool2d_gather(x, g, kernel, stride, padding, positive), [x_shape, x_shape],
                  prepare=[_centred_distinct if positive else _distinct])


def _pooled_weight_grad_case(x_shape, kernel_hw, o, pool, pool_stride=None, pool_padding=0, stride=1, padding=0,
                             dilation=1):
    """conv2d_pooled_weight_grad(x, r, g) against the weight gradient of the scattered pool gradient."""
    r_shape = cref.conv2d(np.zeros(x_shape), np.zeros((o, x_shape[1], *kernel_hw)), None, stride, padding, dilation).shape
    attrs = {**_conv_attrs(stride, padding, dilation), "kernel": kernel_hw,
             "pool": _pool_attrs(pool, pool_stride, pool_padding)}
    return OpCase(lambda x, r, g: make("conv2d_pooled_weight_grad", [x, r, g], attrs),
                  lambda x, r, g: cref.conv2d_weight_grad(
                      x, cref.max_pool2d_backward(r, g, pool, pool_stride, pool_padding, positive=True), kernel_hw,
                      stride, padding, dilation),
                  [x_shape, r_shape, _pooled_shape(r_shape, pool, pool_stride, pool_padding)],
                  prepare=[None, _centred_distinct, None], differentiable=False)


def _avg_backward_case(x_shape, kernel, stride=None, padding=0):
    attrs = {**_pool_attrs(kernel, stride, padding), "input_hw": x_shape[2:]}
    return OpCase(lambda dy: make("avg_pool2d_backward", [dy], attrs),
                  lambda dy: cref.avg_pool2d_backward(dy, x_shape[2:], kernel, stride, padding),
                  [_pooled_shape(x_shape, kernel, stride, padding)])


def _bn_train_build(x, gamma, beta):
    c = x.shape[1]
    mean = gg.variable(np.zeros(c), dtype=x.dtype.name, trainable=False)
    var = gg.variable(np.ones(c), dtype=x.dtype.name, trainable=False)
    return gg.batch_norm(x, gamma, beta, mean, var, training=True)


def _bn_train_case(x_shape):
    c = x_shape[1]
    return OpCase(_bn_train_build, cref.batch_norm_train, [x_shape, (c,), (c,)])


def _bn_eval_case(x_shape):
    c = x_shape[1]
    return OpCase(lambda x, g, b, m, v: gg.batch_norm(x, g, b, m, v, training=False), cref.batch_norm,
                  [x_shape, (c,), (c,), (c,), (c,)], prepare=[None, None, None, None, _positive])


def _stats(x):
    return make("batch_norm_stats", [x])


OP_CASES.update({
    "conv2d": [_conv_case((2, 3, 7, 6), (4, 3, 3, 3)),
               _conv_case((1, 1, 5, 5), (1, 1, 2, 2), bias=False),
               _conv_case((2, 2, 8, 7), (3, 2, 3, 2), stride=2, padding=1),
               _conv_case((2, 3, 9, 8), (2, 3, 3, 3), stride=(2, 1), padding=(2, 0), dilation=2),
               _conv_case((3, 4, 5, 5), (6, 4, 1, 1)),                      # pointwise: no column buffer
               _conv_case((2, 3, 6, 6), (4, 3, 3, 3), padding="same"),
               _conv_case((1, 2, 6, 5), (2, 2, 3, 3), stride=2, padding=2, dilation=(1, 2))],
    "conv2d_input_grad": [_input_grad_case((2, 3, 7, 6), (4, 3, 3, 3)),
                          _input_grad_case((2, 2, 8, 7), (3, 2, 3, 2), stride=2, padding=1),
                          _input_grad_case((1, 3, 9, 8), (2, 3, 3, 3), stride=(2, 1), padding=(2, 0), dilation=2),
                          _input_grad_case((2, 4, 5, 5), (3, 4, 1, 1))],
    "conv2d_weight_grad": [_weight_grad_case((2, 3, 7, 6), (4, 3, 3, 3)),
                           _weight_grad_case((2, 2, 8, 7), (3, 2, 3, 2), stride=2, padding=1),
                           _weight_grad_case((3, 3, 9, 8), (2, 3, 3, 3), stride=(2, 1), padding=(2, 0), dilation=2),
                           _weight_grad_case((2, 4, 5, 5), (3, 4, 1, 1))],
    "conv2d_pooled_weight_grad": [
        _pooled_weight_grad_case((2, 1, 12, 14), (3, 3), 3, 2),          # the AVX-512 float32 kernel
        _pooled_weight_grad_case((2, 1, 28, 30), (3, 3), 2, 2),          # 13 × 14 windows
        _pooled_weight_grad_case((2, 1, 9, 10), (3, 3), 3, 2),           # an odd row and column in no window
        _pooled_weight_grad_case((1, 1, 9, 8), (3, 3), 2, 3, 2, 1),      # the portable loops: padded windows
        _pooled_weight_grad_case((2, 1, 7, 7), (3, 3), 2, 2, 1),         # overlapping windows add up
        _pooled_weight_grad_case((1, 2, 9, 9), (2, 2), 3, 2, stride=2, padding=1),
        _pooled_weight_grad_case((1, 1, 11, 10), (1, 3), 2, 2, dilation=2)],
    "max_pool2d": [_pool_case("max_pool2d", (2, 3, 6, 6), 2),
                   _pool_case("max_pool2d", (1, 2, 7, 5), 3, stride=2, padding=1),
                   _pool_case("max_pool2d", (2, 1, 5, 6), (2, 3), stride=(1, 2))],
    "max_pool2d_backward": [_max_backward_case((2, 3, 6, 6), 2), _max_backward_case((1, 2, 7, 5), 3, 2, 1),
                            _max_backward_case((2, 2, 5, 5), 3, 1),   # overlapping windows add up
                            _max_backward_case((2, 3, 7, 6), 2, positive=True),
                            _max_backward_case((1, 2, 7, 5), 3, 2, 1, positive=True)],
    "max_pool2d_gather": [_gather_case((2, 3, 6, 6), 2), _gather_case((1, 2, 7, 5), 3, 2, 1),
                          _gather_case((2, 2, 6, 5), 2, positive=True)],
    "avg_pool2d": [_pool_case("avg_pool2d", (2, 3, 6, 6), 2),
                   _pool_case("avg_pool2d", (1, 2, 7, 5), 3, stride=2, padding=1),
                   _pool_case("avg_pool2d", (2, 1, 5, 6), (2, 3), stride=(1, 2))],
    "avg_pool2d_backward": [_avg_backward_case((2, 3, 6, 6), 2), _avg_backward_case((1, 2, 7, 5), 3, 2, 1)],
    "batch_norm_stats": [OpCase(_stats, cref.batch_stats, [(4, 3, 2, 5)], differentiable=False),
                         OpCase(_stats, cref.batch_stats, [(6, 4)], differentiable=False)],
    "batch_norm_train": [_bn_train_case((4, 3, 2, 5)), _bn_train_case((6, 4)), _bn_train_case((1, 2, 3, 3))],
    "batch_norm_eval": [_bn_eval_case((4, 3, 2, 5)), _bn_eval_case((5, 3))],
    "batch_norm_backward": [
        OpCase(lambda x, g, dy: make("batch_norm_backward", [x, g, _stats(x), dy], {"eps": 1e-5}),
               lambda x, g, dy: cref.batch_norm_backward(x, g, dy), [(4, 3, 2, 5), (3,), (4, 3, 2, 5)],
               differentiable=False),
        OpCase(lambda x, g, dy: make("batch_norm_backward", [x, g, _stats(x), dy], {"eps": 1e-5}),
               lambda x, g, dy: cref.batch_norm_backward(x, g, dy), [(6, 4), (4,), (6, 4)], differentiable=False)],
    "batch_norm_param_grad": [
        OpCase(lambda x, dy: make("batch_norm_param_grad", [x, _stats(x), dy], {"eps": 1e-5}),
               lambda x, dy: cref.batch_norm_param_grad(x, dy), [(4, 3, 2, 5), (4, 3, 2, 5)], differentiable=False)],
})
