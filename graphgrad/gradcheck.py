"""gg.gradcheck: compare autodiff gradients with central finite differences, in float64."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .autodiff import grad
from .errors import GradcheckError
from .graph import Tensor, placeholder
from .ops import mul, sum as reduce_sum
from .graph import constant


def gradcheck(fn: Callable[..., Tensor], inputs: Sequence[np.ndarray], eps: float = 1e-6, atol: float = 1e-6,
              rtol: float = 1e-4, seed: int = 0) -> bool:
    """Check fn's gradients with respect to every input by central finite differences.

    fn receives one float64 placeholder per input array and returns a Tensor; a non-scalar
    result is reduced to sum(result · R) with a fixed random R, so every output element is
    tested. Returns True, or raises GradcheckError naming the input, the worst element's index,
    and both values.
    """
    from .runtime import Program
    arrays = [np.array(x, dtype=np.float64) for x in inputs]
    phs = [placeholder(a.shape, name=f"input{i}", dtype="float64") for i, a in enumerate(arrays)]
    out = fn(*phs)
    if out.shape:
        weights = np.random.default_rng(seed).standard_normal([1 if d is None else d for d in out.shape])
        out = reduce_sum(mul(out, constant(weights, dtype="float64")))
    grads = grad(out, phs, unconnected="zero")
    program = Program([out] + list(grads))
    feeds = {p: a for p, a in zip(phs, arrays)}
    analytic = program(feeds)[1:]
    value = Program(out)
    for i, (a, g) in enumerate(zip(arrays, analytic)):
        numeric = np.zeros_like(a)
        flat = a.reshape(-1)
        for j in range(flat.size):
            saved = flat[j]
            flat[j] = saved + eps
            plus = float(value(feeds))
            flat[j] = saved - eps
            minus = float(value(feeds))
            flat[j] = saved
            numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        g = np.asarray(g, dtype=np.float64).reshape(a.shape)
        bad = np.abs(g - numeric) > atol + rtol * np.abs(numeric)
        if bad.any():
            worst = np.unravel_index(np.argmax(np.abs(g - numeric) - rtol * np.abs(numeric)), a.shape)
            raise GradcheckError(f"gradient of input {i} (shape {a.shape}) differs at index {tuple(int(k) for k in worst)}: "
                                 f"autodiff {g[worst]:.10g}, finite differences {numeric[worst]:.10g} "
                                 f"({int(bad.sum())} of {a.size} elements outside atol={atol}, rtol={rtol})")
    return True
