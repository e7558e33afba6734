"""Losses, each one fused op with a C kernel forward and backward: mse, l1, huber,
binary_cross_entropy (from logits), softmax_cross_entropy (probability / one-hot targets, or
int64 class labels).

reduction="mean" (default, as in PyTorch) divides by the element count — by the number of rows
for the softmax cross-entropy, as torch.nn.functional.cross_entropy does; "sum" does not."""
from __future__ import annotations

import numpy as np

from ..graph import Tensor, as_tensor, constant
from .elementwise import neg
from .registry import FULL, SCALAR, export, Lowered, OpDef, OpShapeError, make, numel, register

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
    extra = [attrs["delta"]] if "delta" in attrs else []
    return Lowered(dims=[n, attrs.get("wrt", 0)], attrs=[scale, *extra])


def _backward_lower(in_shapes, out_shape, attrs) -> Lowered:
    return _loss_lower(in_shapes, (), attrs)


def _loss_grad(backward_op):
    def grad(node, g):
        p, y = node.inputs
        dp = make(backward_op, [p, y, g], dict(node.attrs))
        return [dp, neg(dp)]   # the loss depends on p - y only
    return grad


# ---- second derivatives: the backward ops' own gradient rules, built from graph ops ----------------
# A backward op computes c·f(p, y) with c = dout·scale; scale (1/n for "mean") is only known once
# shapes are concrete, so it enters as a tensor: expand(1, like=p, mean over the counted axes).

def _scale_tensor(x: Tensor, attrs, rows: bool = False):
    """None for reduction="sum"; else 1/n broadcast to x's shape (n: elements, or rows of the
    class axis when rows=True)."""
    if attrs["reduction"] == "sum":
        return None
    if rows:
        classes = x.shape[-1]
        if classes is None:
            from ..errors import GradientError
            raise GradientError("second derivatives of softmax_cross_entropy need a known class count")
        return make("expand", [constant(np.ones(classes), dtype=x.dtype), x],
                    {"axes": tuple(range(x.ndim - 1)), "keepdims": False, "mean": True})
    return make("expand", [constant(1.0, dtype=x.dtype), x], {"axes": tuple(range(x.ndim)), "keepdims": False,
                                                             "mean": True})


def _scaled(t: Tensor, dout: Tensor, scale):
    """t · dout · scale (scale None: 1)"""
    from .elementwise import mul
    t = mul(t, dout)
    return t if scale is None else mul(t, scale)


def _dout_grad(node, g):
    """The backward op is linear in dout: d/ddout = sum(g · op(..., dout=1))."""
    from .elementwise import mul
    from .reduce import sum as reduce_sum
    ins = list(node.inputs)
    ins[-1] = constant(1.0, dtype=ins[-1].dtype)
    return reduce_sum(mul(g, make(node.op, ins, dict(node.attrs))))


def _mse_backward_grad(node, g):
    from .elementwise import mul
    p, y, dout = node.inputs
    dp = mul(_scaled(g, dout, _scale_tensor(p, node.attrs)), 2.0)      # dp = 2 c (p - y)
    return [dp, neg(dp), _dout_grad(node, g)]


def _l1_backward_grad(node, g):
    # dp = c sign(p - y): piecewise constant in p and y
    return [None, None, _dout_grad(node, g)]


def _huber_backward_grad(node, g):
    from .elementwise import sub
    p, y, dout = node.inputs
    delta = node.attrs["delta"]
    inside = make("clip_backward", [sub(p, y), g], {"min": -delta, "max": delta})   # g where |p - y| <= delta
    dp = _scaled(inside, dout, _scale_tensor(p, node.attrs))
    return [dp, neg(dp), _dout_grad(node, g)]


def _bce_backward_grad(node, g):
    from .activations import sigmoid
    x, y, dout = node.inputs
    scale = _scale_tensor(x, node.attrs)
    if node.attrs["wrt"] == 1:                                          # d = -c x
        return [neg(_scaled(g, dout, scale)), None, _dout_grad(node, g)]
    # d = c (sigmoid(x) - y)
    dx = _scaled(make("sigmoid_backward", [sigmoid(x), g]), dout, scale)
    return [dx, neg(_scaled(g, dout, scale)), _dout_grad(node, g)]


def _ce_backward_grad(node, g):
    from .elementwise import mul, sub
    from .reduce import softmax, sum as reduce_sum
    x, t, dout = node.inputs
    scale = _scale_tensor(x, node.attrs, rows=True)
    s = softmax(x)
    g_dot_s = reduce_sum(mul(g, s), axis=-1, keepdims=True)
    if node.attrs["wrt"] == 1:                                          # d = c (lse - x)
        return [_scaled(sub(mul(s, reduce_sum(g, axis=-1, keepdims=True)), g), dout, scale), None,
                _dout_grad(node, g)]
    # d = c (softmax(x) T - t), T = sum_c t
    total = reduce_sum(t, axis=-1, keepdims=True)
    dx = _scaled(mul(make("softmax_backward", [s, g], {"axis": x.ndim - 1}), total), dout, scale)
    dt = _scaled(sub(g_dot_s, g), dout, scale)
    return [dx, dt, _dout_grad(node, g)]


def _ce_labels_backward_grad(node, g):
    from .reduce import softmax
    x, labels, dout = node.inputs
    dx = _scaled(make("softmax_backward", [softmax(x), g], {"axis": x.ndim - 1}), dout,
                 _scale_tensor(x, node.attrs, rows=True))
    return [dx, None, _dout_grad(node, g)]


_SECOND_ORDER = {"mse": _mse_backward_grad, "l1": _l1_backward_grad, "huber": _huber_backward_grad}

for _name, _doc in (("mse", "mean (or sum) of (p - y)^2"), ("l1", "mean (or sum) of |p - y|"),
                    ("huber", "mean (or sum) of 0.5 (p - y)^2 within delta, delta (|p - y| - 0.5 delta) beyond")):
    register(OpDef(_name, f"GG_OP_{_name.upper()}", _loss_shape, _loss_grad(f"{_name}_backward"), _loss_lower,
                   doc=_doc, flops=lambda ins, out, attrs: 3 * numel(ins[0])))
    # mse's and l1's gradients are maps over (p, y) scaled by the scalar dout: the fused loop runs them
    register(OpDef(f"{_name}_backward", f"GG_OP_{_name.upper()}_BACKWARD", _backward_shape, _SECOND_ORDER[_name],
                   _backward_lower, doc=f"gradient of {_name} with respect to the prediction",
                   flops=lambda ins, out, attrs: 3 * numel(out), elementwise=_name != "huber",
                   fusion=(FULL, FULL, SCALAR) if _name != "huber" else None))


def _loss(op, prediction, target, reduction, name) -> Tensor:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    prediction = as_tensor(prediction)
    target = as_tensor(target, like=prediction)
    return make(op, [prediction, target], {"reduction": reduction}, name=name)


@export
def mse(prediction: Tensor, target, reduction: str = "mean", name: str | None = None) -> Tensor:
    """Mean squared error: mean((prediction - target)^2) over all elements. Shapes must match."""
    return _loss("mse", prediction, target, reduction, name)


@export
def l1(prediction: Tensor, target, reduction: str = "mean", name: str | None = None) -> Tensor:
    """Mean absolute error: mean(|prediction - target|) over all elements. Shapes must match."""
    return _loss("l1", prediction, target, reduction, name)


@export
def huber(prediction: Tensor, target, delta: float = 1.0, reduction: str = "mean", name: str | None = None) -> Tensor:
    """Huber loss (torch.nn.HuberLoss): 0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta),
    d = prediction - target; mean or sum over all elements."""
    if not delta > 0:
        raise ValueError(f"huber: delta must be positive, got {delta}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    prediction = as_tensor(prediction)
    target = as_tensor(target, like=prediction)
    return make("huber", [prediction, target], {"reduction": reduction, "delta": float(delta)}, name=name)


# ---- binary cross-entropy from logits -------------------------------------------------------------

def _grad_both(backward_op):
    """The backward kernel computes either input's gradient (attr wrt: 0 logits, 1 target)."""
    def grad(node, g):
        x, t = node.inputs
        return [make(backward_op, [x, t, g], dict(node.attrs, wrt=0)),
                make(backward_op, [x, t, g], dict(node.attrs, wrt=1))]
    return grad


register(OpDef("binary_cross_entropy", "GG_OP_BCE", _loss_shape, _grad_both("binary_cross_entropy_backward"),
               _loss_lower, flops=lambda ins, out, attrs: 6 * numel(ins[0]),
               doc="mean (or sum) of max(x, 0) - x y + log(1 + exp(-|x|)): BCE on logits x, stable"))
register(OpDef("binary_cross_entropy_backward", "GG_OP_BCE_BACKWARD", _backward_shape, _bce_backward_grad,
               _backward_lower,
               flops=lambda ins, out, attrs: 5 * numel(out),
               doc="d/dx = scale (sigmoid(x) - y) (wrt=0) or d/dy = -scale x (wrt=1)"))


@export
def binary_cross_entropy(logits: Tensor, target, reduction: str = "mean", name: str | None = None) -> Tensor:
    """Binary cross-entropy on logits (torch.nn.functional.binary_cross_entropy_with_logits):
    -[y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], computed as max(x, 0) - x y +
    log1p(exp(-|x|)) so any finite logit gives a finite loss and gradient. Targets y in [0, 1],
    same shape as the logits."""
    return _loss("binary_cross_entropy", logits, target, reduction, name)


# ---- softmax cross-entropy over the last axis -------------------------------------------------------

def _ce_scale(rows, attrs) -> float:
    return 1.0 / rows if attrs["reduction"] == "mean" and rows else 1.0


def _ce_lower(in_shapes, out_shape, attrs) -> Lowered:
    x = in_shapes[0]
    rows, classes = numel(x[:-1]), x[-1]
    return Lowered(dims=[rows, classes, attrs.get("wrt", 0)], attrs=[_ce_scale(rows, attrs)])


def _ce_shape(shapes, attrs):
    x, t = tuple(shapes[0]), tuple(shapes[1])
    if len(x) < 1:
        raise OpShapeError("logits need a class axis (the last one)")
    if len(x) != len(t) or any(a is not None and b is not None and a != b for a, b in zip(x, t)):
        raise OpShapeError(f"logits {x} and target probabilities {t} must have the same shape "
                           "(int64 class labels have the logits' shape without the last axis)")
    return ()


register(OpDef("softmax_cross_entropy", "GG_OP_SOFTMAX_CE", _ce_shape, _grad_both("softmax_cross_entropy_backward"),
               _ce_lower, flops=lambda ins, out, attrs: 6 * numel(ins[0]),
               doc="sum_c t (logsumexp(x) - x) over the last axis, mean (over rows) or sum"))
register(OpDef("softmax_cross_entropy_backward", "GG_OP_SOFTMAX_CE_BACKWARD", _backward_shape, _ce_backward_grad,
               _ce_lower,
               flops=lambda ins, out, attrs: 6 * numel(out),
               doc="d/dx = scale (softmax(x) sum_c t - t) (wrt=0) or d/dt = scale (logsumexp(x) - x) (wrt=1)"))


def _labels_shape(shapes, attrs):
    x, labels = tuple(shapes[0]), tuple(shapes[1])
    if len(x) < 1:
        raise OpShapeError("logits need a class axis (the last one)")
    if len(labels) != len(x) - 1 or any(a is not None and b is not None and a != b for a, b in zip(x, labels)):
        raise OpShapeError(f"int64 labels {labels} must have the logits' shape {x} without the last (class) axis")
    return ()


def _labels_dtype(op, dtypes, attrs):
    if dtypes[1] != np.int64:
        raise OpShapeError(f"class labels must be int64, got {dtypes[1]}")
    if dtypes[0].kind != "f" or any(d != dtypes[0] for d in dtypes[2:]):
        raise OpShapeError(f"logits must be float32 or float64 (and the gradient the same), got "
                           f"{[d.name for d in dtypes]}")
    return dtypes[0]


def _labels_lower(in_shapes, out_shape, attrs) -> Lowered:
    x = in_shapes[0]
    rows = numel(x[:-1])
    return Lowered(dims=[rows, x[-1]], attrs=[_ce_scale(rows, attrs)])


register(OpDef("softmax_cross_entropy_labels", "GG_OP_SOFTMAX_CE_LABELS", _labels_shape,
               lambda node, g: [make("softmax_cross_entropy_labels_backward", [*node.inputs, g], dict(node.attrs)),
                                None],
               _labels_lower, dtype=_labels_dtype, flops=lambda ins, out, attrs: 5 * numel(ins[0]),
               doc="logsumexp(x) - x[label] per row, mean (over rows) or sum; int64 labels"))
register(OpDef("softmax_cross_entropy_labels_backward", "GG_OP_SOFTMAX_CE_LABELS_BACKWARD",
               lambda shapes, attrs: shapes[0], _ce_labels_backward_grad, _labels_lower, dtype=_labels_dtype,
               flops=lambda ins, out, attrs: 5 * numel(out),
               doc="d/dx = scale (softmax(x) - onehot(label))"))


@export
def softmax_cross_entropy(logits: Tensor, target, reduction: str = "mean", name: str | None = None) -> Tensor:
    """Cross-entropy of softmax(logits) over the last axis (torch.nn.functional.cross_entropy),
    fused and stable: log-sum-exp with the max subtracted, so logits of ±1000 give a finite loss
    and gradient.

    target: int64 class labels of the logits' shape without the last axis (an int64 placeholder,
    or integers), or probabilities / one-hot rows of the logits' shape. reduction="mean" divides
    by the number of rows. A label outside [0, classes) raises FeedError when the program runs.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    logits = as_tensor(logits)
    if not isinstance(target, Tensor):
        arr = np.asarray(target)
        target = constant(arr, dtype="int64") if arr.dtype.kind in "iu" else as_tensor(arr, like=logits)
    if target.dtype == np.int64:
        return make("softmax_cross_entropy_labels", [logits, target], {"reduction": reduction}, name=name)
    return make("softmax_cross_entropy", [logits, target], {"reduction": reduction}, name=name)
