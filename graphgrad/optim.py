"""Optimizers: they turn a loss into update nodes that run in C inside the training step.

An optimizer owns its runtime scalars — the learning rate and the step count — as float64
variables that every compiled step reads, so `opt.lr = 0.01` takes effect on the next step
without recompiling. Per-variable state (momentum buffers, ...) is held in variables too,
created once per variable and shared by every program compiled with this optimizer.
"""
from __future__ import annotations

import math

import numpy as np

from . import ops
from .autodiff import grad
from .errors import GraphGradError
from .graph import Tensor, ancestors, building, variable


class Optimizer:
    """Base class: subclasses define `_update(var, grad, lr, step)` returning one update node."""

    def __init__(self, lr: float):
        self._lr_var = variable(np.float64(0.0), name="lr", dtype="float64", trainable=False)
        self._step_var = variable(np.float64(0.0), name="step", dtype="float64", trainable=False)
        self.lr = lr
        self._state: dict[int, dict[str, Tensor]] = {}

    # ---- runtime scalars ----
    @property
    def lr(self) -> float:
        """The learning rate the next step uses."""
        return float(self._lr_var.data)

    @lr.setter
    def lr(self, value: float) -> None:
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"learning rate must be a finite number >= 0, got {value}")
        self._lr_var.data[...] = value

    @property
    def step_count(self) -> int:
        """Steps taken so far (the update rules count from 1)."""
        return int(self._step_var.data)

    # ---- graph building ----
    def state(self, var: Tensor, name: str) -> Tensor:
        """The state variable `name` (zeros of var's shape) kept for `var`, created on first use."""
        slots = self._state.setdefault(var.id, {})
        if name not in slots:
            slots[name] = variable(np.zeros(var.shape), name=f"{var.name}/{name}", dtype=var.dtype, trainable=False)
        return slots[name]

    def minimize(self, loss: Tensor, var_list: list[Tensor] | None = None) -> list[Tensor]:
        """Gradient nodes for `loss` and one update node per variable (all trainable variables
        the loss depends on when var_list is None). Returns the update nodes."""
        if var_list is None:
            var_list = [n for n in ancestors([loss]) if n.op == "variable" and n.trainable]
        var_list = list(var_list)
        if not var_list:
            raise GraphGradError(f'optimizer has no variables to update: "{loss.name}" depends on no trainable '
                                 "variable")
        for v in var_list:
            if not isinstance(v, Tensor) or v.op != "variable":
                raise GraphGradError(f"optimizers update variables; got {v!r}")
        grads = grad(loss, var_list)
        with building("update"):
            step = ops.make("increment", [self._step_var], {"amount": 1.0}, name="step += 1")
            return [self._update(v, g, self._lr_var, step) for v, g in zip(var_list, grads)]

    def _update(self, var: Tensor, g: Tensor, lr: Tensor, step: Tensor) -> Tensor:
        raise NotImplementedError


class SGD(Optimizer):
    """Stochastic gradient descent, exactly as torch.optim.SGD:

        g ← g + weight_decay·w
        b ← g                                  on the first step (momentum ≠ 0)
        b ← momentum·b + (1 − dampening)·g     afterwards
        d ← g + momentum·b  (nesterov)  or  b  (momentum ≠ 0)  or  g
        w ← w − lr·d
    """

    def __init__(self, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(lr)
        if momentum < 0 or weight_decay < 0:
            raise ValueError("momentum and weight_decay must be >= 0")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        self.momentum, self.dampening = float(momentum), float(dampening)
        self.weight_decay, self.nesterov = float(weight_decay), bool(nesterov)

    def _update(self, var, g, lr, step):
        attrs = {"momentum": self.momentum, "dampening": self.dampening, "weight_decay": self.weight_decay,
                 "nesterov": self.nesterov}
        inputs = [var, g, lr, step]
        if self.momentum != 0:
            inputs.append(self.state(var, "momentum_buffer"))
        return ops.make("sgd_update", inputs, attrs, name=f"update {var.name}")
