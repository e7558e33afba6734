"""Update ops: they overwrite variables in place (the optimizers in graphgrad/optim.py build
them). `increment` advances a float64 counter such as the step count; `sgd_update` applies
PyTorch's SGD rule. Their output is the variable they write (OpDef.writes)."""
from __future__ import annotations

from .registry import Lowered, OpDef, OpShapeError, numel, register


def _update_shape(shapes, attrs):
    w, g = shapes[0], shapes[1]
    if tuple(w) != tuple(g):
        raise OpShapeError(f"variable {w} and its gradient {g} differ in shape")
    return w


def _update_dtype(op, dtypes, attrs):
    if dtypes[0] != dtypes[1]:
        raise OpShapeError(f"variable ({dtypes[0]}) and gradient ({dtypes[1]}) differ in dtype")
    return dtypes[0]


register(OpDef("increment", "GG_OP_INCREMENT", shape=lambda shapes, attrs: shapes[0], grad=None,
               lower=lambda ins, out, attrs: Lowered(attrs=[attrs["amount"]]),
               dtype=lambda op, dtypes, attrs: dtypes[0], writes=(0,),
               flops=lambda ins, out, attrs: 1, doc="counter += amount (float64 scalar variable)"))


def _sgd_lower(in_shapes, out_shape, attrs) -> Lowered:
    # node inputs: w, g, lr, step[, buf]  ->  instruction inputs: w, g, buf (or -1), lr, step
    buf = 4 if attrs["momentum"] != 0 else -1
    return Lowered(dims=[numel(out_shape), int(attrs["nesterov"])],
                   attrs=[attrs["momentum"], attrs["dampening"], attrs["weight_decay"]],
                   inputs=[0, 1, buf, 2, 3])


register(OpDef("sgd_update", "GG_OP_SGD_UPDATE", _update_shape, grad=None, lower=_sgd_lower,
               dtype=_update_dtype, writes=(0, 4),
               flops=lambda ins, out, attrs: 6 * numel(out),
               doc="PyTorch SGD step on variable w with gradient g (momentum buffer buf)"))

