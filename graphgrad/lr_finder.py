"""The learning-rate range test (Leslie Smith 2017, "Cyclical learning rates for training neural
networks"; fastai's lr_find): train for a number of mini-batch steps while the learning rate grows
exponentially from start_lr to end_lr, record each step's loss, and read a good rate off the curve.

The steps run inside C's epoch loop (gg_program_run_steps) as fit's do, on fit's own compiled
training program (so a later gg.fit with the same optimizer compiles nothing new): the learning
rate is the optimizer's float64 runtime scalar, and C writes step i's rate into it before step i
(gg_steps.step_values). Python only draws the progress bar between chunks of steps.

Stopping: C stops at a NaN/Inf loss; after each call of steps/20 steps, the run stops once the smoothed loss
exceeds `diverge_factor` times its minimum (fastai's rule, factor 4); the record is cut at the
first such step. Afterwards every variable the training program reads — parameters, optimizer
state, learning rates, the step count, dropout counters — is put back bit for bit.

Smoothing: an exponential moving average of the losses with bias correction,
s_i = (β·a_{i-1} + (1 − β)·loss_i) / (1 − β^(i+1)), β = 0.98 by default (fastai's).

The suggestion: the learning rate at the smoothed loss's minimum, divided by 10 (Smith's rule,
fastai v1's default). The minimum is where training starts to become unstable; a tenth of it
still learns fast. (Tried and not kept, on the bundled MNIST with SGD, momentum and Adam: the
steepest descent of the smoothed curve, which the causal average's lag of about 1/(1 − β) steps
pushes onto the minimum itself, and a centred average, whose backward half drags the divergence
into the flat start.)
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import ModelError, OptimizerError
from .graph import Tensor

RULE = "minimum of the smoothed loss / 10"
#: divergence checks per run: C runs steps/CHECKS steps per call, so at most that many run past it
CHECKS = 20


@dataclass
class LRFinderResult:
    """lrs[i] is the rate step i trained with, losses[i] the smoothed loss, raw_losses[i] the
    step's own loss (before its update). suggestion follows `rule`; lr_at_min is the rate at the
    smoothed loss's minimum; stopped_early says the run ended on divergence before `steps`."""
    lrs: np.ndarray
    losses: np.ndarray
    raw_losses: np.ndarray
    suggestion: float | None
    lr_at_min: float | None
    rule: str
    stopped_early: bool
    seconds: float

    def plot(self, path: str) -> str:
        """Draw the smoothed (and raw) loss against the learning rate, the suggestion marked."""
        from .plots import plot_lr_find
        return plot_lr_find(self, path)


def exponential_lrs(start_lr: float, end_lr: float, steps: int) -> np.ndarray:
    """steps rates from start_lr to end_lr, each the previous times (end/start)^(1/(steps-1))."""
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise OptimizerError(f"the LR range test needs steps >= 2, got {steps!r}")
    start_lr, end_lr = float(start_lr), float(end_lr)
    if not (math.isfinite(start_lr) and math.isfinite(end_lr) and start_lr > 0):
        raise OptimizerError(f"the LR range needs finite rates and start_lr > 0, got start_lr={start_lr}, "
                             f"end_lr={end_lr}")
    if not start_lr < end_lr:
        raise OptimizerError(f"the LR range must grow: start_lr={start_lr:g} is not below end_lr={end_lr:g}")
    return start_lr * (end_lr / start_lr) ** (np.arange(steps) / (steps - 1))


def smooth(losses: np.ndarray, beta: float = 0.98) -> np.ndarray:
    """The bias-corrected exponential moving average of `losses` (see the module docstring)."""
    out = np.empty(len(losses))
    average = 0.0
    for i, loss in enumerate(losses):
        average = beta * average + (1 - beta) * loss
        out[i] = average / (1 - beta ** (i + 1))
    return out


def suggest(lrs: np.ndarray, smoothed: np.ndarray) -> float | None:
    """A tenth of the rate at the smoothed loss's minimum (None when no loss is finite)."""
    finite = np.isfinite(smoothed)
    if not finite.any():
        return None
    return float(lrs[int(np.argmin(np.where(finite, smoothed, np.inf)))]) / 10


def lr_find(model, X, Y, loss: str | Callable = "mse", optimizer=None, start_lr: float = 1e-7, end_lr: float = 10.0,
            steps: int = 100, batch_size: int = 32, seed: int | None = 0, beta: float = 0.98,
            diverge_factor: float = 4.0, verbose: int = 1) -> LRFinderResult:
    """The LR range test on `model` (see the module docstring): `steps` mini-batch steps of
    `batch_size` rows (epochs of shuffled batches follow each other as needed), the learning rate
    of `optimizer` (default SGD, as gg.fit's; or a name such as "adam") growing exponentially from
    start_lr to end_lr.
    The model and the optimizer are restored afterwards. verbose=1 draws a progress bar."""
    from . import train
    from .errors import DivergenceError
    from .optim import SGD, get
    from .runtime import epoch_steps
    lrs = exponential_lrs(start_lr, end_lr, steps)
    train._check_model(model)
    if not model.parameters():
        raise ModelError(f"{type(model).__name__} has no parameters: there is no learning rate to find")
    optimizer = SGD(lr=float(start_lr)) if optimizer is None else get(optimizer)   # an instance, or a name ("adam")
    if len(optimizer.param_groups) != 1:
        raise OptimizerError(f"lr_find sweeps one learning rate; this optimizer has {len(optimizer.param_groups)} "
                             "parameter groups")
    X, Y = train._prepare(model, X, Y)
    B, n_full, _ = epoch_steps(len(X), batch_size, drop_last=True)
    graph = train._build(model, "train", X.shape[1:], Y.shape[1:], Y.dtype, loss, optimizer, False)
    program, data = graph.program, {graph.x: X, graph.y: Y}
    lr_var: Tensor = optimizer.param_groups[0].lr_var
    if not any(lr_var is n for n in program.order):
        raise OptimizerError("the compiled step does not read the optimizer's learning rate")
    snapshot = train._Snapshot(graph.program)
    snapshot.take()
    raw = np.full(steps, np.nan)
    bar = None
    if verbose == 1:
        bar = train.progress_bar_class()(total=steps, desc="lr_find", unit="step", leave=True,
                                         file=sys.stderr, dynamic_ncols=True)
    started = time.perf_counter()
    done, stopped = 0, False
    chunk = max(1, steps // CHECKS)     # steps per C call: the divergence check runs between calls
    rng = np.random.default_rng(seed)
    try:
        while done < steps and not stopped:
            order = rng.permutation(len(X)).astype(np.int64)
            in_epoch = 0
            while in_epoch < n_full and done < steps and not stopped:
                k = min(chunk, n_full - in_epoch, steps - done)
                try:
                    program.run_steps(data, B, first_step=in_epoch, n_steps=k, order=order, drop_last=True,
                                      losses=raw[done:], stop_on_nonfinite=True, step_scalar=(lr_var, lrs[done:]))
                except DivergenceError as err:
                    done += err.steps_done + 1      # the diverging step's loss is recorded
                    stopped = True
                else:
                    done += k
                    in_epoch += k
                    s = smooth(raw[:done], beta)
                    stopped = bool(s[-1] > diverge_factor * np.nanmin(s)) and done < steps
                if bar is not None:
                    bar.set_postfix({"lr": f"{lrs[done - 1]:.2g}", "loss": f"{raw[done - 1]:.4g}"}, refresh=False)
                    bar.update(k if not stopped else steps - bar.n)
    finally:
        if bar is not None:
            bar.close()
        snapshot.restore()
    seconds = time.perf_counter() - started
    raw = raw[:done]
    smoothed = smooth(raw, beta)
    # cut at the first step past the divergence threshold (and at a non-finite loss)
    running_min = np.minimum.accumulate(np.where(np.isfinite(smoothed), smoothed, np.inf))
    over = np.nonzero(~np.isfinite(smoothed) | (smoothed > diverge_factor * running_min))[0]
    end = int(over[0]) + 1 if over.size else done
    lrs_run, smoothed, raw = lrs[:end], smoothed[:end], raw[:end]
    finite = np.isfinite(smoothed)
    lr_at_min = float(lrs_run[int(np.argmin(np.where(finite, smoothed, np.inf)))]) if finite.any() else None
    return LRFinderResult(lrs_run, smoothed, raw, suggest(lrs_run, smoothed), lr_at_min, RULE,
                          end < steps, seconds)
