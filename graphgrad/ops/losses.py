"""Losses, each one fused op with a C kernel forward and backward: mse, l1, huber,
binary_cross_entropy (from logits), softmax_cross_entropy (probability / one-hot targets, or
int64 class labels).

reduction="mean" (default, as in PyTorch) divides by the element count — by the number of rows
for the softmax cross-entropy, as torch.nn.functional.cross_entropy does; "sum" does not."""
from __future__ import annotations

import numpy as np

from ..graph import Tensor, as_tensor, constant
from .elementwise import neg
from .registry import Lowered, OpDef, OpShapeError, make, numel, register

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


for _name, _doc in (("mse", "mean (or sum) of (p - y)^2"), ("l1", "mean (or sum) of |p - y|"),
                    ("huber", "mean (or sum) of 0.5 (p - y)^2 within delta, delta (|p - y| - 0.5 delta) beyond")):
    register(OpDef(_name, f"GG_OP_{_name.upper()}", _loss_shape, _loss_grad(f"{_name}_backward"), _loss_lower,
                   doc=_doc, flops=lambda ins, out, attrs: 3 * numel(ins[0])))
    # the backward kernels are not differentiated again (grad=None): second derivatives of losses
    # go through the elementwise ops when needed
    register(OpDef(f"{_name}_backward", f"GG_OP_{_name.upper()}_BACKWARD", _backward_shape, None,
                   _backward_lower, doc=f"gradient of {_name} with respect to the prediction",
                   flops=lambda ins, out, attrs: 3 * numel(out)))


def _loss(op, prediction, target, reduction, name) -> Tensor:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    prediction = as_tensor(prediction)
    target = as_tensor(target, like=prediction)
    return make(op, [prediction, target], {"reduction": reduction}, name=name)


def mse(prediction: Tensor, target, reduction: str = "mean", name: str | None = None) -> Tensor:
    """Mean squared error: mean((prediction - target)^2) over all elements. Shapes must match."""
    return _loss("mse", prediction, target, reduction, name)


def l1(prediction: Tensor, target, reduction: str = "mean", name: str | None = None) -> Tensor:
    """Mean absolute error: mean(|prediction - target|) over all elements. Shapes must match."""
    return _loss("l1", prediction, target, reduction, name)


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
register(OpDef("binary_cross_entropy_backward", "GG_OP_BCE_BACKWARD", _backward_shape, None, _backward_lower,
               flops=lambda ins, out, attrs: 5 * numel(out),
               doc="d/dx = scale (sigmoid(x) - y) (wrt=0) or d/dy = -scale x (wrt=1)"))


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
register(OpDef("softmax_cross_entropy_backward", "GG_OP_SOFTMAX_CE_BACKWARD", _backward_shape, None, _ce_lower,
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
               lambda shapes, attrs: shapes[0], None, _labels_lower, dtype=_labels_dtype,
               flops=lambda ins, out, attrs: 5 * numel(out),
               doc="d/dx = scale (softmax(x) - onehot(label))"))


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
