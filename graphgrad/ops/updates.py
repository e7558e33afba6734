"""Update ops: they overwrite variables in place (the optimizers in graphgrad/optim.py build
them), and the gradient-clipping ops that run between the gradients and the updates.

`increment` advances a float64 counter such as the step count. Each `<rule>_update` op applies
one optimizer's rule to one variable. Its node inputs are always

    [w, g, lr, step, *state]       (state: the rule's state variables that this node has)

and its output is w itself (OpDef.writes: w and every state variable are overwritten). The
instruction's layout is fixed per rule: in = [g, every state slot (or -1 when absent), lr
(, step)]; the variable is the instruction's output buffer. The C kernels are in csrc/optim.c.

Clipping: `grad_sumsq` chains Σg² over every gradient into one float64 scalar; `clip_by_norm`
scales a gradient by min(1, max_norm/(‖g‖ + 1e-6)) from it; `clip_by_value` clamps one.
"""
from __future__ import annotations

from .. import dtypes as _dt
from ..graph import Tensor
from .registry import Lowered, OpDef, OpShapeError, make, numel, register

#: node input positions of the fixed part (the state variables follow)
W, G, LR, STEP = 0, 1, 2, 3


def _update_shape(shapes, attrs):
    w, g = shapes[W], shapes[G]
    # a None in the gradient's static shape (from a batch dimension) is checked when specialised
    if len(w) != len(g) or any(b is not None and a != b for a, b in zip(w, g)):
        raise OpShapeError(f"variable {w} and its gradient {g} differ in shape")
    for name, shape in zip(attrs["state"], shapes[STEP + 1:]):
        if name != "mu_product" and tuple(shape) != tuple(w):
            raise OpShapeError(f"state {name!r} has shape {shape}, its variable {w}")
    return w


def _update_dtype(op, dtypes, attrs):
    if dtypes[W] != dtypes[G]:
        raise OpShapeError(f"variable ({dtypes[W]}) and gradient ({dtypes[G]}) differ in dtype")
    return dtypes[W]


register(OpDef("increment", "GG_OP_INCREMENT", shape=lambda shapes, attrs: shapes[0], grad=None,
               lower=lambda ins, out, attrs: Lowered(attrs=[attrs["amount"]]),
               dtype=lambda op, dtypes, attrs: dtypes[0], writes=(0,),
               flops=lambda ins, out, attrs: 1, doc="counter += amount (float64 scalar variable)"))


def _register_update(name: str, slots: tuple[str, ...], uses_step: bool, flags: tuple[str, ...],
                     hyper: tuple[str, ...], flops_per_element: int, doc: str) -> None:
    """Declare `<name>_update`: `slots` is the instruction's state layout, `flags` the integer
    options after the element count in dims, `hyper` the real attrs, in kernel argument order."""

    def lower(in_shapes, out_shape, attrs) -> Lowered:
        present = attrs["state"]
        state = [STEP + 1 + present.index(s) if s in present else -1 for s in slots]
        tail = [LR, STEP] if uses_step else [LR]
        return Lowered(dims=[numel(out_shape), *(int(attrs[f]) for f in flags)],
                       attrs=[float(attrs[h]) for h in hyper], inputs=[G, *state, *tail])

    register(OpDef(f"{name}_update", f"GG_OP_{name.upper()}_UPDATE", _update_shape, grad=None, lower=lower,
                   dtype=_update_dtype, writes=(W, *range(STEP + 1, STEP + 1 + len(slots))),
                   flops=lambda ins, out, attrs: flops_per_element * numel(out), doc=doc))


_register_update("sgd", ("momentum_buffer",), True, ("nesterov",), ("momentum", "dampening", "weight_decay"), 6,
                 "PyTorch SGD (momentum, dampening, nesterov, weight_decay)")
_register_update("rmsprop", ("square_avg", "grad_avg", "momentum_buffer"), False, (),
                 ("alpha", "eps", "weight_decay", "momentum"), 10, "PyTorch RMSprop (centered, momentum)")
_register_update("adam", ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), True, ("decoupled",),
                 ("beta1", "beta2", "eps", "weight_decay"), 12, "PyTorch Adam / AdamW (amsgrad)")
_register_update("adamax", ("exp_avg", "exp_inf"), True, (), ("beta1", "beta2", "eps", "weight_decay"), 9,
                 "PyTorch Adamax")
_register_update("nadam", ("exp_avg", "exp_avg_sq", "mu_product"), True, ("decoupled",),
                 ("beta1", "beta2", "eps", "weight_decay", "momentum_decay"), 14, "PyTorch NAdam")
_register_update("adagrad", ("sum",), True, (), ("lr_decay", "weight_decay", "eps"), 7, "PyTorch Adagrad")
_register_update("adadelta", ("square_avg", "acc_delta"), False, (), ("rho", "eps", "weight_decay"), 14,
                 "PyTorch Adadelta")
_register_update("ftrl", ("accumulator", "linear"), False, (),
                 ("learning_rate_power", "l1", "l2", "l2_shrinkage", "beta"), 16,
                 "TensorFlow ApplyFtrlV2 (FTRL-Proximal)")
_register_update("lion", ("exp_avg",), False, (), ("beta1", "beta2", "weight_decay"), 8, "Lion (sign momentum)")


# ---- gradient clipping --------------------------------------------------------------------

def _sumsq_shape(shapes, attrs):
    if len(shapes) > 1 and tuple(shapes[1]) != ():
        raise OpShapeError(f"the running sum must be a scalar, got {shapes[1]}")
    return ()


def _sumsq_dtype(op, dtypes, attrs):
    if len(dtypes) > 1 and dtypes[1] != _dt.FLOAT64:
        raise OpShapeError("the running sum of squares is float64")
    return _dt.FLOAT64


def _sumsq_lower(in_shapes, out_shape, attrs) -> Lowered:
    # the output is float64 whatever the gradient is: dims[1] tells C the gradient's dtype
    return Lowered(dims=[numel(in_shapes[0]), attrs["grad_dtype"]], inputs=[0, 1 if len(in_shapes) > 1 else -1])


register(OpDef("grad_sumsq", "GG_OP_GRAD_SUMSQ", _sumsq_shape, grad=None, lower=_sumsq_lower, dtype=_sumsq_dtype,
               flops=lambda ins, out, attrs: 2 * numel(ins[0]),
               doc="acc + sum(g^2) in float64: the squared global gradient norm, one gradient at a time"))


def _clip_norm_shape(shapes, attrs):
    if tuple(shapes[1]) != ():
        raise OpShapeError(f"the squared norm must be a scalar, got {shapes[1]}")
    return shapes[0]


def _clip_norm_dtype(op, dtypes, attrs):
    if dtypes[1] != _dt.FLOAT64:
        raise OpShapeError(f"the squared norm must be float64 (grad_sumsq's output), got {dtypes[1]}")
    return dtypes[0]


register(OpDef("clip_by_norm", "GG_OP_CLIP_BY_NORM", _clip_norm_shape, grad=None,
               lower=lambda ins, out, attrs: Lowered(dims=[numel(out)], attrs=[attrs["max_norm"]]),
               dtype=_clip_norm_dtype,
               doc="g * min(1, max_norm / (sqrt(sumsq) + 1e-6)), as torch.nn.utils.clip_grad_norm_"))
register(OpDef("clip_by_value", "GG_OP_CLIP_BY_VALUE", lambda shapes, attrs: shapes[0], grad=None,
               lower=lambda ins, out, attrs: Lowered(dims=[numel(out)], attrs=[attrs["clip_value"]]),
               dtype=lambda op, dtypes, attrs: dtypes[0],
               doc="clamp(g, -clip_value, clip_value), as torch.nn.utils.clip_grad_value_"))


def grad_sumsq(g: Tensor, acc: Tensor | None = None, name: str | None = None) -> Tensor:
    """acc + Σg², a float64 scalar (chain it over every gradient for the squared global norm)."""
    return make("grad_sumsq", [g] if acc is None else [g, acc], {"grad_dtype": _dt.C_CODES[g.dtype]},
                name=name)


def clip_by_norm(g: Tensor, sumsq: Tensor, max_norm: float, name: str | None = None) -> Tensor:
    """g · min(1, max_norm/(√sumsq + 1e-6)); sumsq is grad_sumsq's float64 scalar."""
    return make("clip_by_norm", [g, sumsq], {"max_norm": float(max_norm)}, name=name)


def clip_by_value(g: Tensor, clip_value: float, name: str | None = None) -> Tensor:
    """g clamped to [−clip_value, clip_value]."""
    return make("clip_by_value", [g], {"clip_value": float(clip_value)}, name=name)
