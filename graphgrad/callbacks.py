"""fit's callbacks in one namespace (gg.callbacks), and GradientStats: gradient flow per layer.

GradientStats(every=N) adds a few reductions to the training step: for each parameter W the
update reads, Σg² of the gradient g the update uses (after clipping, when the optimizer clips),
ΣW² of W before the update, and Σ(ΔW)² of the update itself (W after minus a copy of W before),
all float64 scalars (grad_sumsq) gathered into one small vector. C computes it in every step;
fit's epoch loop copies that vector out every N optimizer steps (gg_steps' record buffer) — the
gradients themselves never leave C. The norms are square roots of those sums, the
update-to-weight ratio is ‖ΔW‖ / ‖W‖ (a common rule of thumb: around 1e-3 is healthy; NaN where
W is all zeros, as zero-initialised biases are before their first update).

After fit, history.gradient_stats (and the callback's .stats) holds
{"step": [optimizer step numbers], "<parameter name>": {"grad_norm": [...], "weight_norm": [...],
"update_ratio": [...]}}; .plot(path) draws one curve per parameter. A callback keeps adding to
its .stats over several fits (the steps keep counting), so curves continue.

Cost: a few passes over the weights per recorded step, and plain SGD's gradient can no longer be
folded into its GEMM. With every >= 8 fit runs this program only for the recorded steps and the
plain one otherwise (train.ALTERNATE_FROM); docs/learning-tools.md gives the measured cost.
"""
from __future__ import annotations

import numpy as np

from . import ops
from .graph import Tensor, building
from .ops import updates as update_ops
from .train import Callback, EarlyStopping, ModelCheckpoint

__all__ = ["GradientStats"]   # the others are documented as gg.Callback, gg.EarlyStopping, gg.ModelCheckpoint

STATS = ("grad_norm", "weight_norm", "update_ratio")


class GradientStats(Callback):
    """Per-parameter gradient norm, weight norm and update-to-weight ratio every `every` steps,
    computed inside the C step (see the module docstring)."""

    def __init__(self, every: int = 10):
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"GradientStats(every=...) must be a positive int, got {every!r}")
        self.record_every = int(every)
        self.names: list[str] = []
        self.stats: dict = {"step": []}

    def step_record(self, updates: list[Tensor]) -> Tensor:
        """[Σg², ΣW², Σ(ΔW)²] per updated variable, as one float64 vector."""
        parts = []
        with building("update"):
            for update in updates:
                var, g = update.inputs[0], update.inputs[1]
                before = ops.make("copy", [var], name=f"{var.name} before the update")
                delta = ops.sub(update, before, name=f"Δ{var.name}")
                for value, what in ((g, "g"), (var, var.name), (delta, f"Δ{var.name}")):
                    total = update_ops.grad_sumsq(value, name=f"Σ {what}²")
                    parts.append(ops.reshape(total, (1,)))
            return ops.concat(parts, name="gradient statistics")   # (update role too: it reads the update)

    def on_step_records(self, steps: np.ndarray, values: np.ndarray, updates: list[Tensor]) -> None:
        names = [u.inputs[0].name for u in updates]
        if names != self.names:
            if self.names:
                raise ValueError(f"GradientStats recorded {self.names} before and now {names}: use one callback "
                                 "per model and optimizer")
            self.names = names
            for name in self.names:
                self.stats[name] = {k: [] for k in STATS}
        sums = values.reshape(len(steps), len(self.names), 3)
        grad_norm, weight_norm, update_norm = np.sqrt(sums[..., 0]), np.sqrt(sums[..., 1]), np.sqrt(sums[..., 2])
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(weight_norm > 0, update_norm / weight_norm, np.nan)
        self.stats["step"].extend(int(s) for s in steps)
        for k, name in enumerate(self.names):
            entry = self.stats[name]
            entry["grad_norm"].extend(grad_norm[:, k].tolist())
            entry["weight_norm"].extend(weight_norm[:, k].tolist())
            entry["update_ratio"].extend(ratio[:, k].tolist())

    def plot(self, path: str, names=None, title: str | None = None) -> str:
        """Gradient norm and update-to-weight ratio per parameter over training, to a PNG."""
        from .plots import plot_gradient_stats
        return plot_gradient_stats(self.stats, path, names=names, title=title)
