"""Momentum in a narrow valley: plain SGD zig-zags across it, momentum and Nesterov go along it.

The loss is f(x, y) = ½·(x² + 25·y²): 25 times steeper across the valley (y) than along it (x).
Plain SGD at a learning rate that moves it along the valley at a useful speed overshoots across
it on every step (the cross-valley step flips direction each time) and still crawls along it.
With momentum the alternating cross-valley gradients cancel in the velocity while the
along-valley ones add up: few, slow swings and a faster descent. Nesterov takes the gradient
where the velocity is carrying it, which damps the swing further. Writes --out/momentum.png.
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import graphgrad as gg  # noqa: E402

STEEPNESS = 25.0
START = (-9.0, 1.5)
RUNS = {
    "SGD (lr 0.075)": lambda: gg.optim.SGD(lr=0.075),
    "momentum 0.8 (lr 0.02)": lambda: gg.optim.SGD(lr=0.02, momentum=0.8),
    "Nesterov 0.8 (lr 0.02)": lambda: gg.optim.SGD(lr=0.02, momentum=0.8, nesterov=True),
}


def valley(x, y):
    return 0.5 * (x * x) + (0.5 * STEEPNESS) * (y * y)


def descend(optimizer, steps):
    x = gg.variable(START[0], name="x", dtype="float64")
    y = gg.variable(START[1], name="y", dtype="float64")
    step = gg.compile(valley(x, y), optimizer=optimizer)
    path = [START]
    for _ in range(steps):
        step()
        path.append((float(x.value), float(y.value)))
    return np.array(path)


def reversals(path) -> int:
    """How often the step across the valley (in y) changes direction: the zig-zag count."""
    dy = np.diff(path[:, 1])
    return int(np.sum(np.sign(dy[1:]) != np.sign(dy[:-1])))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="accepted for symmetry: the example is already quick")
    args = parser.parse_args(argv)
    steps = args.steps

    paths = {label: descend(make(), steps) for label, make in RUNS.items()}
    fig, (ax, ax_loss) = plt.subplots(1, 2, figsize=(13, 4.6), gridspec_kw={"width_ratios": [1.6, 1]})
    gx, gy = np.meshgrid(np.linspace(-10, 2, 300), np.linspace(-2, 2, 200))
    ax.contour(gx, gy, valley(gx, gy), levels=np.geomspace(0.01, 80, 18), cmap="Greys", linewidths=0.7)
    result = {}
    for (label, path), colour in zip(paths.items(), ("#e03131", "#1971c2", "#2f9e44")):
        losses = valley(path[:, 0], path[:, 1])
        result[label] = {"final_loss": float(losses[-1]), "reversals": reversals(path), "path": path}
        ax.plot(*path.T, marker="o", ms=3, lw=1.3, color=colour, label=f"{label}: {reversals(path)} reversals")
        ax_loss.semilogy(losses, color=colour, label=label)
        print(f"{label:<24} loss after {steps} steps {losses[-1]:.3g}, direction reversals across the valley "
              f"{reversals(path)} of {steps - 1}")
    ax.plot(*START, "ko")
    ax.plot(0, 0, "*", ms=14, color="gold", markeredgecolor="k")
    ax.set(title=f"{steps} steps in the valley ½(x² + {STEEPNESS:g}y²)", xlabel="x (along the valley)",
           ylabel="y (across)", ylim=(-2, 2))
    ax_loss.set(title="loss", xlabel="step", ylabel="f (log scale)")
    ax.legend(fontsize=8, loc="lower right")
    ax_loss.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    out = os.path.join(args.out, "momentum.png")
    fig.savefig(out, dpi=110)
    plt.close(fig)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
