"""Randomness inside a compiled step: dropout_mask(like, counter).

The mask has `like`'s shape: 0 with probability `rate`, else 1/(1 - rate) (inverted dropout, so
the expected value of x * mask is x). Each element's draw is a pure function of (seed, the
counter's value, the element's index) — see csrc/random.c — so a step is reproducible and a
new counter value gives a new mask. The counter is a float64 variable the dropout layer
advances once per step (gg.nn.Dropout). The mask does not depend on `like`'s values, so its
derivative is zero: gradients flow through x * mask as dy * mask."""
from __future__ import annotations

from ..graph import Tensor
from .registry import export, Lowered, OpDef, OpShapeError, make, numel, register


def _mask_shape(shapes, attrs):
    if tuple(shapes[1]) != ():
        raise OpShapeError(f"the counter must be a scalar, got shape {shapes[1]}")
    return shapes[0]


def _mask_dtype(op, dtypes, attrs):
    if dtypes[1].name != "float64":
        raise OpShapeError(f"the counter must be float64, got {dtypes[1].name}")
    if dtypes[0].kind != "f":
        raise OpShapeError(f"the mask takes a float dtype from its first input, got {dtypes[0].name}")
    return dtypes[0]


register(OpDef("dropout_mask", "GG_OP_DROPOUT_MASK", _mask_shape, grad=lambda node, g: [None, None],
               lower=lambda ins, out, attrs: Lowered(dims=[numel(out), attrs["seed"]], attrs=[attrs["rate"]],
                                                     inputs=[1]),
               dtype=_mask_dtype, flops=lambda ins, out, attrs: 10 * numel(out),
               doc="0 with probability rate, else 1/(1-rate); a pure function of (seed, counter, index)"))


@export(top_level=False)
def dropout_mask(like: Tensor, counter: Tensor, rate: float, seed: int, name: str | None = None) -> Tensor:
    """The inverted-dropout mask for a tensor shaped like `like` (see the module docstring)."""
    rate = float(rate)
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    seed = int(seed) % (1 << 63)
    return make("dropout_mask", [like, counter], {"rate": rate, "seed": seed}, name=name)
