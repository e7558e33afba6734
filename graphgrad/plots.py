"""Matplotlib pictures of the learning tools: the loss landscape (line and contour), the learning-rate
range test, and per-layer gradient statistics. Drawing only: the numbers come from landscape.py,
lr_finder.py and the GradientStats callback. matplotlib is imported when a picture is drawn (it
is the plotting examples' dependency, not the core's), with the Agg backend unless one is chosen."""
from __future__ import annotations

import os
import sys
from typing import Sequence

import numpy as np

#: figure width in inches: legible at a notebook's width at the dpi below
WIDTH = 6.4
DPI = 110


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("drawing these pictures needs matplotlib: pip install matplotlib") from None
    if "matplotlib.pyplot" not in sys.modules:   # pick a file backend only if nobody chose one
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def plot_loss_lines(lines, path: str, title: str | None = None) -> str:
    """One curve per LossLine (loss against α), the end points marked with their labels."""
    plt = _pyplot()
    lines = [lines] if not isinstance(lines, (list, tuple)) else list(lines)
    fig, ax = plt.subplots(figsize=(WIDTH, 3.8))
    for line in lines:
        label = f"{line.start_label} → {line.end_label}"
        ax.plot(line.alphas, line.losses, marker="o", ms=3, label=label)
    for x in (0.0, 1.0):
        ax.axvline(x, color="#adb5bd", lw=1, ls="--")
    ax.set_xlabel("α   (θ = θ_start + α·(θ_end − θ_start); 0 = start, 1 = end)")
    ax.set_ylabel("loss")
    ax.set_title(title or "loss along the straight line between two points in weight space")
    ax.legend(fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_loss_plane(plane, path: str, title: str | None = None, levels: int = 20) -> str:
    """Filled contours of a LossPlane (log-spaced levels when the losses are positive), the centre
    marked; both axes are the directions' coefficients."""
    plt = _pyplot()
    from matplotlib import colors, ticker
    fig, ax = plt.subplots(figsize=(WIDTH, 5.2))
    losses = plane.losses
    lo, hi = float(np.nanmin(losses)), float(np.nanmax(losses))
    if lo > 0 and hi > lo:
        bounds = np.geomspace(lo, hi, levels)
        norm = colors.LogNorm(lo, hi)
    else:
        bounds, norm = np.linspace(lo, hi if hi > lo else lo + 1, levels), None
    filled = ax.contourf(plane.alphas, plane.betas, losses, levels=bounds, norm=norm, cmap="viridis")
    ax.contour(plane.alphas, plane.betas, losses, levels=bounds[::3], colors="white", linewidths=0.6, alpha=0.7)
    ax.plot([0], [0], marker="*", ms=14, color="#e03131", markeredgecolor="white", label="θ* (centre)")
    bar = fig.colorbar(filled, ax=ax, format=ticker.FormatStrFormatter("%.3g"))
    bar.set_label("loss")
    ax.set_xlabel("α   (along direction δ)")
    ax.set_ylabel("β   (along direction η)")
    ax.set_title(title or "loss on the plane θ* + α·δ + β·η (filter-normalised directions)")
    ax.set_aspect("equal")
    ax.legend(loc="upper right", fontsize=9)
    return _save(fig, path)


def plot_lr_find(result, path: str) -> str:
    """The LR range test: smoothed loss against the learning rate (log axis), the suggestion marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.8))
    ax.semilogx(result.lrs, result.losses, color="#1971c2", label="smoothed loss")
    ax.semilogx(result.lrs, result.raw_losses, color="#1971c2", alpha=0.25, lw=0.8, label="loss per step")
    if result.lr_at_min is not None:
        k = int(np.argmin(np.abs(np.log(result.lrs) - np.log(result.lr_at_min))))
        ax.plot([result.lr_at_min], [result.losses[k]], marker="v", ms=8, color="#868e96", ls="none",
                label=f"minimum of the smoothed loss (lr {result.lr_at_min:.2g})")
    if result.suggestion is not None:
        ax.axvline(result.suggestion, color="#e03131", lw=1.5,
                   label=f"suggested lr {result.suggestion:.2g} ({result.rule})")
    finite = result.losses[np.isfinite(result.losses)]
    raw = result.raw_losses[np.isfinite(result.raw_losses)]
    if finite.size:
        # from the low end of the per-step losses to the smoothed curve's start (the blow-up is cut)
        bottom = min(float(finite.min()), float(np.percentile(raw, 2)))
        top = max(float(finite[0]), float(np.percentile(finite, 90)))
        pad = 0.05 * (top - bottom) if top > bottom else 0.1 * abs(top) + 1e-3
        ax.set_ylim(bottom - pad, top + 3 * pad)
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    ax.set_title("learning-rate range test")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_gradient_stats(stats: dict, path: str, names: Sequence[str] | None = None, title: str | None = None) -> str:
    """Per-parameter curves over training: gradient norm, and update-to-weight ratio (log axes).
    `stats` is History.gradient_stats: {"step": [...], "<param>": {"grad_norm": [...], ...}}."""
    plt = _pyplot()
    names = list(names or [k for k in stats if k != "step"])
    steps = np.asarray(stats["step"])
    fig, (ax_g, ax_r) = plt.subplots(1, 2, figsize=(WIDTH * 1.6, 3.8))
    colours = plt.cm.viridis(np.linspace(0.0, 0.9, max(len(names), 1)))
    for name, colour in zip(names, colours):
        ax_g.semilogy(steps, stats[name]["grad_norm"], color=colour, label=name)
        ax_r.semilogy(steps, stats[name]["update_ratio"], color=colour, label=name)
    ax_g.set(xlabel="training step", ylabel="‖∂loss/∂W‖ (log scale)", title="gradient norm per parameter")
    ax_r.set(xlabel="training step", ylabel="‖ΔW‖ / ‖W‖ (log scale)", title="update-to-weight ratio")
    for ax in (ax_g, ax_r):
        ax.grid(alpha=0.3, which="both")
    ax_g.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
