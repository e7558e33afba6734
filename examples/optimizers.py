"""Every optimizer on two 2-D losses: Himmelblau's surface (four minima: deep-learning losses are
not convex, and where you end depends on how you walk) and Rosenbrock's curved valley.

Each optimizer starts from the same point on each surface; every step is one compiled program
call (forward, backward, update in C). Writes to --out:
  optimizers_paths.png  the trajectories over the contour plots
  optimizers_loss.png   the loss against the step
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

import graphgrad as gg  # noqa: E402

O = gg.optim


def himmelblau(x, y):
    """(x² + y − 11)² + (x + y² − 7)²: works on graph tensors and on NumPy arrays alike."""
    a = x * x + y - 11.0
    b = x + y * y - 7.0
    return a * a + b * b


def rosenbrock(x, y):
    """(1 − x)² + 100·(y − x²)²: one minimum at (1, 1) at the end of a long curved valley."""
    a = 1.0 - x
    b = y - x * x
    return a * a + 100.0 * (b * b)


HIMMELBLAU_MINIMA = np.array([[3.0, 2.0], [-2.805118, 3.131312], [-3.779310, -3.283186], [3.584428, -1.848126]])

# name -> (optimizer on Himmelblau, optimizer on Rosenbrock): learning rates picked per surface,
# as one would in practice (Rosenbrock's gradients are ~100x larger)
OPTIMIZERS = {
    "SGD": (lambda: O.SGD(lr=0.01), lambda: O.SGD(lr=1e-3)),
    "SGD momentum": (lambda: O.SGD(lr=0.005, momentum=0.9), lambda: O.SGD(lr=3e-4, momentum=0.9)),
    "SGD Nesterov": (lambda: O.SGD(lr=0.005, momentum=0.9, nesterov=True),
                     lambda: O.SGD(lr=3e-4, momentum=0.9, nesterov=True)),
    "RMSprop": (lambda: O.RMSprop(lr=0.05), lambda: O.RMSprop(lr=3e-3)),
    "Adam": (lambda: O.Adam(lr=0.1), lambda: O.Adam(lr=0.05, betas=(0.9, 0.99))),
    "AdamW": (lambda: O.AdamW(lr=0.1), lambda: O.AdamW(lr=0.05, betas=(0.9, 0.99))),
    "Adamax": (lambda: O.Adamax(lr=0.2), lambda: O.Adamax(lr=0.1)),
    "NAdam": (lambda: O.NAdam(lr=0.1), lambda: O.NAdam(lr=0.05)),
    "Adagrad": (lambda: O.Adagrad(lr=0.5), lambda: O.Adagrad(lr=0.5)),
    "Adadelta": (lambda: O.Adadelta(lr=2.0), lambda: O.Adadelta(lr=5.0)),
    "Ftrl": (lambda: O.Ftrl(lr=0.5), lambda: O.Ftrl(lr=0.5)),
    "Lion": (lambda: O.Lion(lr=0.03), lambda: O.Lion(lr=3e-3)),
}

SURFACES = {
    "Himmelblau (4 minima)": dict(fn=himmelblau, start=(-1.0, -0.5), box=(-5, 5, -5, 5), minima=HIMMELBLAU_MINIMA),
    "Rosenbrock valley": dict(fn=rosenbrock, start=(-1.2, 1.0), box=(-1.6, 1.6, -0.6, 1.6),
                              minima=np.array([[1.0, 1.0]])),
}


def descend(surface, optimizer, start, steps):
    """The path (steps + 1, 2) and the loss before each step (steps,)."""
    x = gg.variable(start[0], name="x", dtype="float64")
    y = gg.variable(start[1], name="y", dtype="float64")
    step = gg.compile(surface(x, y), optimizer=optimizer)
    path, losses = [start], []
    for _ in range(steps):
        losses.append(float(step()))
        path.append((float(x.value), float(y.value)))
    return np.array(path), np.array(losses)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="300 steps, for the tests")
    args = parser.parse_args(argv)
    steps = 300 if args.quick else args.steps

    results = {}
    for k, (title, surface) in enumerate(SURFACES.items()):
        results[title] = {name: descend(surface["fn"], makers[k](), surface["start"], steps)
                          for name, makers in OPTIMIZERS.items()}

    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#ff1493", "#bcbd22",
               "#17becf", "#000080", "#00a86b"]
    fig_paths, path_axes = plt.subplots(1, 2, figsize=(15, 6.5))
    fig_loss, loss_axes = plt.subplots(1, 2, figsize=(14, 5))
    summary = {}
    for (title, surface), ax, ax_loss in zip(SURFACES.items(), path_axes, loss_axes):
        x0, x1, y0, y1 = surface["box"]
        gx, gy = np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300))
        z = surface["fn"](gx, gy)
        ax.contour(gx, gy, z + 1e-3, levels=np.logspace(-1, np.log10(z.max()), 25), norm=LogNorm(), cmap="Greys",
                   linewidths=0.7)
        ax.scatter(*surface["minima"].T, marker="*", s=220, color="gold", edgecolor="k", zorder=5, label="minima")
        ax.scatter(*surface["start"], marker="o", s=60, color="k", zorder=5, label="start")
        summary[title] = {}
        for (name, (path, losses)), colour in zip(results[title].items(), colours):
            shown = path[np.all((path >= [x0, y0]) & (path <= [x1, y1]), axis=1)]
            ax.plot(*shown.T, color=colour, lw=1.4, label=name)
            ax.plot(*shown[-1], "o", ms=4, color=colour)
            ax_loss.semilogy(np.arange(1, steps + 1), np.maximum(losses, 1e-16), color=colour, lw=1.3, label=name)
            final = float(surface["fn"](*path[-1]))
            summary[title][name] = {"start_loss": float(losses[0]), "final_loss": final, "end": path[-1].tolist()}
            print(f"{title:<22} {name:<13} loss {losses[0]:9.3g} -> {final:9.3g}  ends at "
                  f"({path[-1][0]: .3f}, {path[-1][1]: .3f})")
        ax.set(title=f"{title}: {steps} steps from {surface['start']}", xlabel="x", ylabel="y", xlim=(x0, x1),
               ylim=(y0, y1))
        ax_loss.set(title=title, xlabel="step", ylabel="loss (log scale)")
    path_axes[1].legend(fontsize=8, loc="lower right", ncol=2)
    loss_axes[1].legend(fontsize=8, ncol=2)
    fig_paths.tight_layout()
    fig_loss.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    written = []
    for fig, name in ((fig_paths, "optimizers_paths.png"), (fig_loss, "optimizers_loss.png")):
        written.append(os.path.join(args.out, name))
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
        print(f"wrote {written[-1]}")
    return {"steps": steps, "summary": summary, "paths": {t: {n: p for n, (p, _) in r.items()}
                                                           for t, r in results.items()}, "files": written}


if __name__ == "__main__":
    main()
