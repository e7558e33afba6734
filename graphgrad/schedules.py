"""Learning-rate schedules: they set an optimizer's runtime lr between steps, so a compiled
step is never recompiled (it reads each parameter group's lr variable when it runs).

As in torch.optim.lr_scheduler: a schedule remembers each group's starting lr ("initial_lr"),
sets the lr for count 0 when it is made, and `sched.step()` advances its count by one (call it
once per training step or once per epoch — the schedule counts whichever you choose) and sets
every group's lr to the closed-form value for that count:

    StepLR           base·γ^⌊t/step_size⌋
    MultiStepLR      base·γ^(number of milestones ≤ t)
    ExponentialLR    base·γ^t
    CosineAnnealingLR  eta_min + (base − eta_min)·(1 + cos(π·t/T_max))/2
    LinearLR         base·(start_factor + (end_factor − start_factor)·min(t, total_iters)/total_iters)
                     (linear warm-up with the defaults start_factor=1/3, end_factor=1)
    LambdaLR         base·lr_lambda(t)
    FunctionLR       fn(t): any Python callable step → learning rate, used as it is
    SequentialLR     schedule i from milestone i−1 on, counting from 0 there (warm-up, then decay)
"""
from __future__ import annotations

import bisect
import math
from typing import Callable, Sequence

from .errors import OptimizerError


class LRScheduler:
    """Base class: subclasses give the lr of one group at count t from its base lr (`_lr_at`)."""

    def __init__(self, optimizer, last_epoch: int = -1):
        from .optim import Optimizer
        if not isinstance(optimizer, Optimizer):
            raise OptimizerError(f"{type(self).__name__} needs a graphgrad optimizer, got {optimizer!r}")
        self.optimizer = optimizer
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()

    def _lr_at(self, base_lr: float, t: int) -> float:
        raise NotImplementedError

    def lr_at(self, t: int) -> list[float]:
        """Every group's learning rate at count t (pure: sets nothing)."""
        return [self._lr_at(base, t) for base in self.base_lrs]

    def step(self) -> None:
        """Advance the count by one and set each group's lr (takes effect on the next step)."""
        self.last_epoch += 1
        for group, lr in zip(self.optimizer.param_groups, self.lr_at(self.last_epoch)):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        """The learning rates this schedule set last, one per group."""
        return [group["lr"] for group in self.optimizer.param_groups]


class StepLR(LRScheduler):
    """lr = base·gamma^(t // step_size)."""

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        if int(step_size) < 1:
            raise OptimizerError(f"step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr, t):
        return base_lr * self.gamma ** (t // self.step_size)


class MultiStepLR(LRScheduler):
    """lr = base·gamma^(number of milestones ≤ t)."""

    def __init__(self, optimizer, milestones: Sequence[int], gamma: float = 0.1, last_epoch: int = -1):
        self.milestones, self.gamma = sorted(int(m) for m in milestones), float(gamma)
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr, t):
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, t)


class ExponentialLR(LRScheduler):
    """lr = base·gamma^t."""

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = float(gamma)
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr, t):
        return base_lr * self.gamma ** t


class CosineAnnealingLR(LRScheduler):
    """lr = eta_min + (base − eta_min)·(1 + cos(π·t/T_max))/2 (SGDR without restarts)."""

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):  # noqa: N803 (PyTorch's name)
        if int(T_max) < 1:
            raise OptimizerError(f"T_max must be >= 1, got {T_max}")
        self.T_max, self.eta_min = int(T_max), float(eta_min)
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr, t):
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.T_max)) / 2


class LinearLR(LRScheduler):
    """Linear warm-up (or decay): the factor goes from start_factor to end_factor over total_iters
    counts, then stays at end_factor."""

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5,
                 last_epoch: int = -1):
        if not 0 < start_factor <= 1 or not 0 <= end_factor <= 1:
            raise OptimizerError("LinearLR: start_factor must be in (0, 1] and end_factor in [0, 1]")
        if int(total_iters) < 1:
            raise OptimizerError(f"total_iters must be >= 1, got {total_iters}")
        self.start_factor, self.end_factor, self.total_iters = float(start_factor), float(end_factor), int(total_iters)
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr, t):
        frac = min(t, self.total_iters) / self.total_iters
        return base_lr * (self.start_factor + (self.end_factor - self.start_factor) * frac)


class LambdaLR(LRScheduler):
    """lr = base·lr_lambda(t), as torch.optim.lr_scheduler.LambdaLR."""

    def __init__(self, optimizer, lr_lambda: Callable[[int], float], last_epoch: int = -1):
        if not callable(lr_lambda):
            raise OptimizerError(f"lr_lambda must be callable, got {lr_lambda!r}")
        self.lr_lambda = lr_lambda
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr, t):
        return base_lr * self.lr_lambda(t)


class FunctionLR(LRScheduler):
    """lr = fn(t) for every group: any Python callable from the count to the learning rate."""

    def __init__(self, optimizer, fn: Callable[[int], float], last_epoch: int = -1):
        if not callable(fn):
            raise OptimizerError(f"fn must be callable, got {fn!r}")
        self.fn = fn
        super().__init__(optimizer, last_epoch)

    def _lr_at(self, base_lr, t):
        return self.fn(t)


class SequentialLR(LRScheduler):
    """schedulers[i] runs from milestones[i−1] on, counting from 0 there: e.g. a LinearLR warm-up
    for 100 steps, then CosineAnnealingLR."""

    def __init__(self, optimizer, schedulers: Sequence[LRScheduler], milestones: Sequence[int], last_epoch: int = -1):
        self.schedulers, self.milestones = list(schedulers), [int(m) for m in milestones]
        if len(self.milestones) != len(self.schedulers) - 1 or self.milestones != sorted(self.milestones):
            raise OptimizerError("SequentialLR needs one increasing milestone between each pair of schedulers")
        if any(s.optimizer is not optimizer for s in self.schedulers):
            raise OptimizerError("SequentialLR: every scheduler must drive the same optimizer")
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t):
        i = bisect.bisect_right(self.milestones, t)
        start = self.milestones[i - 1] if i > 0 else 0
        return self.schedulers[i].lr_at(t - start)


__all__ = ["LRScheduler", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "LinearLR", "LambdaLR",
           "FunctionLR", "SequentialLR"]
