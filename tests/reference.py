"""A plain NumPy evaluator for graphgrad graphs, used as the oracle of the differential fuzzer
(tests/test_fuzz.py). It shares nothing with graphgrad but the Tensor objects it reads: every
op's forward value and its vector-Jacobian product are written here again from their
definitions, in float64, and gradients come from this module's own reverse sweep — never from
graphgrad's gradient rules.

    values = evaluate(outputs, feeds)                  # node id -> np.ndarray
    grads = vjp(y, xs, feeds, grad_y)                  # one array per x (zeros when unconnected)
    losses, final = sgd_steps(loss, variables, feeds, steps=2, lr=..., momentum=...)

FORWARD[op](inputs, attrs) -> value and VJP[op](inputs, out, g, attrs) -> [gradient per input,
None where it has none]. Ops missing here raise KeyError, so the fuzzer only builds ops the
oracle knows.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def _sigmoid(x):
    # two branches so neither exp overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum g down to `shape` (undo NumPy broadcasting)."""
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    stretched = tuple(d for d, n in enumerate(shape) if n == 1 and g.shape[d] != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    return g.reshape(shape)


def _reduce_scale(shape, axes, mean) -> float:
    count = int(np.prod([shape[a] for a in axes]))
    return 1.0 / count if mean else 1.0


def _restore_axes(g, full_shape, axes, keepdims):
    """A reduced array broadcast back to full_shape."""
    if not keepdims:
        g = np.expand_dims(g, tuple(axes))
    return np.broadcast_to(g, full_shape)


def _op_t(x, transposed):
    return x.T if transposed else x


def _loss_scale(p, attrs) -> float:
    return 1.0 / p.size if attrs["reduction"] == "mean" and p.size else 1.0


def _logsumexp(x, axis):
    m = np.max(x, axis=axis, keepdims=True)
    return m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def _softmax(x, axis):
    return np.exp(x - _logsumexp(x, axis))


def _erf(x):
    from math import erf
    return np.vectorize(erf, otypes=[np.float64])(x)


_GELU_K = np.sqrt(2 / np.pi)


def _gelu(x, approximate):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(_GELU_K * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + _erf(x / np.sqrt(2)))


def _gelu_grad(x, approximate):
    if approximate == "tanh":
        t = np.tanh(_GELU_K * (x + 0.044715 * x ** 3))
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _GELU_K * (1 + 3 * 0.044715 * x * x)
    return 0.5 * (1 + _erf(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / np.sqrt(2 * np.pi)


def _huber(p, y, delta):
    d = np.abs(p - y)
    return np.where(d <= delta, 0.5 * d * d, delta * (d - 0.5 * delta))


def _bce(x, y):
    return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))


def _share(a, b):
    """maximum's gradient share for a: 1 where a > b, 1/2 on ties (PyTorch's rule), else 0."""
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))


# ---- forward: op name -> (inputs, attrs) -> value ------------------------------------------------
FORWARD: dict[str, Callable] = {
    "add": lambda v, a: v[0] + v[1],
    "sub": lambda v, a: v[0] - v[1],
    "mul": lambda v, a: v[0] * v[1],
    "div": lambda v, a: v[0] / v[1],
    "neg": lambda v, a: -v[0],
    "abs": lambda v, a: np.abs(v[0]),
    "sign": lambda v, a: np.sign(v[0]),
    "copy": lambda v, a: v[0].copy(),
    "relu": lambda v, a: np.maximum(v[0], 0.0),
    "relu_backward": lambda v, a: np.where(v[0] > 0, v[1], 0.0),
    "sigmoid": lambda v, a: _sigmoid(v[0]),
    "sigmoid_backward": lambda v, a: v[1] * v[0] * (1 - v[0]),
    "sum": lambda v, a: (np.mean if a["mean"] else np.sum)(v[0], axis=a["axes"], keepdims=a["keepdims"]),
    "expand": lambda v, a: (_restore_axes(v[0], v[1].shape, a["axes"], a["keepdims"])
                            * _reduce_scale(v[1].shape, a["axes"], a["mean"])),
    "matmul": lambda v, a: _op_t(v[0], a["trans_a"]) @ _op_t(v[1], a["trans_b"]),
    "mse": lambda v, a: np.sum((v[0] - v[1]) ** 2) * _loss_scale(v[0], a),
    "l1": lambda v, a: np.sum(np.abs(v[0] - v[1])) * _loss_scale(v[0], a),
    "exp": lambda v, a: np.exp(v[0]),
    "log": lambda v, a: np.log(v[0]),
    "sqrt": lambda v, a: np.sqrt(v[0]),
    "tanh": lambda v, a: np.tanh(v[0]),
    "softplus": lambda v, a: np.logaddexp(0.0, v[0]),
    "elu": lambda v, a: np.where(v[0] > 0, v[0], a["alpha"] * np.expm1(np.minimum(v[0], 0.0))),
    "leaky_relu": lambda v, a: np.where(v[0] > 0, v[0], a["alpha"] * v[0]),
    "silu": lambda v, a: v[0] * _sigmoid(v[0]),
    "hardtanh": lambda v, a: np.clip(v[0], -1.0, 1.0),
    "pow": lambda v, a: v[0] ** v[1],
    "maximum": lambda v, a: np.maximum(v[0], v[1]),
    "minimum": lambda v, a: np.minimum(v[0], v[1]),
    "transpose": lambda v, a: np.transpose(v[0], a["perm"]),
    "softmax": lambda v, a: _softmax(v[0], a["axis"]),
    "log_softmax": lambda v, a: v[0] - _logsumexp(v[0], a["axis"]),
    "gelu": lambda v, a: _gelu(v[0], a["approximate"]),
    "pow_scalar": lambda v, a: v[0] ** a["exponent"],
    "clip": lambda v, a: np.clip(v[0], a["min"], a["max"]),
    "huber": lambda v, a: np.sum(_huber(v[0], v[1], a["delta"])) * _loss_scale(v[0], a),
    "binary_cross_entropy": lambda v, a: np.sum(_bce(v[0], v[1])) * _loss_scale(v[0], a),
    "mse_backward": lambda v, a: v[2] * 2 * _loss_scale(v[0], a) * (v[0] - v[1]),
    "l1_backward": lambda v, a: v[2] * _loss_scale(v[0], a) * np.sign(v[0] - v[1]),
}


# ---- vector-Jacobian products: op name -> (inputs, out, g, attrs) -> [grad per input] -----------
def _vjp_matmul(v, out, g, a):
    A, B = _op_t(v[0], a["trans_a"]), _op_t(v[1], a["trans_b"])
    dA, dB = g @ B.T, A.T @ g
    return [_op_t(dA, a["trans_a"]), _op_t(dB, a["trans_b"])]


def _vjp_sum(v, out, g, a):
    x = v[0]
    return [_restore_axes(g, x.shape, a["axes"], a["keepdims"]) * _reduce_scale(x.shape, a["axes"], a["mean"])]


def _vjp_expand(v, out, g, a):
    like = v[1]
    reduced = np.sum(g, axis=a["axes"], keepdims=a["keepdims"]) * _reduce_scale(like.shape, a["axes"], a["mean"])
    return [reduced, None]


def _vjp_loss_backward(sign_or_diff):
    def vjp(v, out, g, a):
        p, y, dout = v
        s = _loss_scale(p, a)
        if sign_or_diff == "mse":
            return [g * 2 * s * dout, -g * 2 * s * dout, np.sum(g * 2 * s * (p - y))]
        return [np.zeros_like(p), np.zeros_like(y), np.sum(g * s * np.sign(p - y))]
    return vjp


VJP: dict[str, Callable] = {
    "add": lambda v, out, g, a: [_unbroadcast(g, v[0].shape), _unbroadcast(g, v[1].shape)],
    "sub": lambda v, out, g, a: [_unbroadcast(g, v[0].shape), _unbroadcast(-g, v[1].shape)],
    "mul": lambda v, out, g, a: [_unbroadcast(g * v[1], v[0].shape), _unbroadcast(g * v[0], v[1].shape)],
    "div": lambda v, out, g, a: [_unbroadcast(g / v[1], v[0].shape),
                                 _unbroadcast(-g * v[0] / v[1] ** 2, v[1].shape)],
    "neg": lambda v, out, g, a: [-g],
    "abs": lambda v, out, g, a: [g * np.sign(v[0])],
    "sign": lambda v, out, g, a: [np.zeros_like(v[0])],
    "copy": lambda v, out, g, a: [g],
    "relu": lambda v, out, g, a: [np.where(v[0] > 0, g, 0.0)],
    "relu_backward": lambda v, out, g, a: [np.zeros_like(v[0]), np.where(v[0] > 0, g, 0.0)],
    "sigmoid": lambda v, out, g, a: [g * out * (1 - out)],
    "sigmoid_backward": lambda v, out, g, a: [g * v[1] * (1 - 2 * v[0]), g * v[0] * (1 - v[0])],
    "sum": _vjp_sum,
    "expand": _vjp_expand,
    "matmul": _vjp_matmul,
    "mse": lambda v, out, g, a: [g * 2 * _loss_scale(v[0], a) * (v[0] - v[1]),
                                 -g * 2 * _loss_scale(v[0], a) * (v[0] - v[1])],
    "l1": lambda v, out, g, a: [g * _loss_scale(v[0], a) * np.sign(v[0] - v[1]),
                                -g * _loss_scale(v[0], a) * np.sign(v[0] - v[1])],
    "exp": lambda v, out, g, a: [g * out],
    "log": lambda v, out, g, a: [g / v[0]],
    "sqrt": lambda v, out, g, a: [g * 0.5 / out],
    "tanh": lambda v, out, g, a: [g * (1 - out ** 2)],
    "softplus": lambda v, out, g, a: [g * _sigmoid(v[0])],
    "elu": lambda v, out, g, a: [np.where(v[0] > 0, g, g * a["alpha"] * np.exp(np.minimum(v[0], 0.0)))],
    "leaky_relu": lambda v, out, g, a: [np.where(v[0] > 0, g, g * a["alpha"])],
    "silu": lambda v, out, g, a: [g * _sigmoid(v[0]) * (1 + v[0] * (1 - _sigmoid(v[0])))],
    "hardtanh": lambda v, out, g, a: [np.where((v[0] <= -1) | (v[0] >= 1), 0.0, g)],
    "pow": lambda v, out, g, a: [_unbroadcast(g * v[1] * v[0] ** (v[1] - 1), v[0].shape),
                                 _unbroadcast(g * out * np.log(v[0]), v[1].shape)],
    "maximum": lambda v, out, g, a: [_unbroadcast(g * _share(v[0], v[1]), v[0].shape),
                                     _unbroadcast(g * _share(v[1], v[0]), v[1].shape)],
    "minimum": lambda v, out, g, a: [_unbroadcast(g * _share(v[1], v[0]), v[0].shape),
                                     _unbroadcast(g * _share(v[0], v[1]), v[1].shape)],
    "transpose": lambda v, out, g, a: [np.transpose(g, np.argsort(a["perm"]))],
    "softmax": lambda v, out, g, a: [out * (g - np.sum(g * out, axis=a["axis"], keepdims=True))],
    "log_softmax": lambda v, out, g, a: [g - np.exp(out) * np.sum(g, axis=a["axis"], keepdims=True)],
    "gelu": lambda v, out, g, a: [g * _gelu_grad(v[0], a["approximate"])],
    "pow_scalar": lambda v, out, g, a: [g * a["exponent"] * v[0] ** (a["exponent"] - 1)],
    # PyTorch's clamp: the gradient passes where min <= x <= max, the bounds included
    "clip": lambda v, out, g, a: [np.where((v[0] >= a["min"]) & (v[0] <= a["max"]), g, 0.0)],
    "huber": lambda v, out, g, a: [g * _loss_scale(v[0], a) * np.clip(v[0] - v[1], -a["delta"], a["delta"]),
                                   -g * _loss_scale(v[0], a) * np.clip(v[0] - v[1], -a["delta"], a["delta"])],
    "binary_cross_entropy": lambda v, out, g, a: [g * _loss_scale(v[0], a) * (_sigmoid(v[0]) - v[1]),
                                                  -g * _loss_scale(v[0], a) * v[0]],
    "mse_backward": _vjp_loss_backward("mse"),
    "l1_backward": _vjp_loss_backward("l1"),
}


# ---- whole graphs --------------------------------------------------------------------------

def _ancestors(outputs) -> list:
    """Every node the outputs need, inputs before readers (ids grow with creation)."""
    seen, stack = {}, list(outputs)
    while stack:
        node = stack.pop()
        if node.id not in seen:
            seen[node.id] = node
            stack.extend(node.inputs)
    return [seen[i] for i in sorted(seen)]


def evaluate(outputs, feeds: dict) -> dict[int, np.ndarray]:
    """Forward values (float64) of every node the outputs need. feeds: {placeholder Tensor: array},
    and optionally {variable Tensor: array} to evaluate with other values than the stored ones."""
    by_id = {p.id: np.asarray(v, dtype=np.float64) for p, v in feeds.items()}
    values: dict[int, np.ndarray] = {}
    for node in _ancestors(outputs):
        if node.id in by_id:
            values[node.id] = by_id[node.id]
        elif node.op == "placeholder":
            raise KeyError(f'no feed for placeholder "{node.name}"')
        elif node.op in ("variable", "constant"):
            values[node.id] = np.asarray(node.data, dtype=np.float64)
        else:
            values[node.id] = np.asarray(FORWARD[node.op]([values[i.id] for i in node.inputs], node.attrs),
                                         dtype=np.float64)
    return values


def vjp(y, xs, feeds: dict, grad_y: np.ndarray | None = None) -> list[np.ndarray]:
    """grad_y · ∂y/∂x for each x (grad_y defaults to 1 for a scalar y), by reverse sweep."""
    nodes = _ancestors([y])
    values = evaluate([y], feeds)
    grads: dict[int, np.ndarray] = {y.id: np.ones(values[y.id].shape) if grad_y is None
                                    else np.asarray(grad_y, dtype=np.float64)}
    for node in reversed(nodes):
        g = grads.get(node.id)
        if g is None or not node.inputs:
            continue
        ins = [values[i.id] for i in node.inputs]
        for inp, gi in zip(node.inputs, VJP[node.op](ins, values[node.id], g, node.attrs)):
            if gi is None:
                continue
            gi = np.broadcast_to(gi, values[inp.id].shape)
            grads[inp.id] = grads[inp.id] + gi if inp.id in grads else np.array(gi, dtype=np.float64)
    return [grads.get(x.id, np.zeros(np.shape(values.get(x.id, _leaf_value(x, feeds))))) for x in xs]


def _leaf_value(x, feeds):
    for p, v in feeds.items():
        if p is x:
            return np.asarray(v)
    return np.asarray(x.data)


def sgd_steps(loss, variables, feeds: dict, steps: int, lr: float, momentum: float = 0.0,
              weight_decay: float = 0.0) -> tuple[list[float], list[np.ndarray]]:
    """torch.optim.SGD run for `steps` steps on `loss` with the same feeds, from the variables'
    stored values: the loss before each step, and the variables' final values."""
    values = {v: np.asarray(v.data, dtype=np.float64) for v in variables}
    buffers: list = [None] * len(variables)
    losses = []
    for _ in range(steps):
        current = {**feeds, **values}
        losses.append(float(evaluate([loss], current)[loss.id]))
        grads = vjp(loss, variables, current)
        for k, (v, g) in enumerate(zip(variables, grads)):
            g = g + weight_decay * values[v]
            if momentum:
                buffers[k] = g if buffers[k] is None else momentum * buffers[k] + g
                g = buffers[k]
            values[v] = values[v] - lr * g
    return losses, [values[v] for v in variables]
