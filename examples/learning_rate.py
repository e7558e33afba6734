"""The learning rate decides whether gradient descent converges: too small crawls, a good one
converges, too large overshoots and diverges (the lecture's figure of the three cases).

Gradient descent on f(θ) = θ², starting at θ = 1, with each learning rate; every step is one
compiled program call (forward, backward, update). Writes out/learning_rate.png: the loss per
step and the path of θ on the curve.
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import graphgrad as gg  # noqa: E402

RATES = {"too small (0.01)": 0.01, "good (0.3)": 0.3, "too large (1.05)": 1.05}


def descend(lr: float, steps: int):
    theta = gg.variable(1.0, name="theta", dtype="float64")
    loss = gg.mul(theta, theta, name="loss")
    step = gg.compile([loss, theta], optimizer=gg.optim.SGD(lr=lr))
    path, losses = [1.0], []
    for _ in range(steps):
        loss_value, theta_value = step()
        losses.append(float(loss_value))
        path.append(float(theta_value))
    return np.array(path), np.array(losses)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="fewer steps")
    args = parser.parse_args(argv)
    steps = 12 if args.quick else args.steps

    results = {label: descend(lr, steps) for label, lr in RATES.items()}
    fig, (ax_loss, ax_path) = plt.subplots(1, 2, figsize=(11, 4.2))
    grid = np.linspace(-2.2, 2.2, 200)
    ax_path.plot(grid, grid ** 2, color="#adb5bd", lw=2, label="f(θ) = θ²")
    for (label, (path, losses)), colour in zip(results.items(), ("#4dabf7", "#2b8a3e", "#e03131")):
        ax_loss.semilogy(np.arange(1, len(losses) + 1), losses, marker="o", ms=3, color=colour, label=label)
        shown = np.clip(path, -2.2, 2.2)
        ax_path.plot(shown, shown ** 2, marker="o", ms=4, color=colour, label=label, alpha=0.8)
        print(f"lr {label:<18} loss after {steps} steps: {losses[-1]:.3g}")
    ax_loss.set(xlabel="step", ylabel="loss f(θ) (log scale)", title="loss per step")
    ax_path.set(xlabel="θ", ylabel="f(θ)", title="the path of θ", ylim=(-0.2, 5))
    ax_loss.legend(), ax_path.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "learning_rate.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return {label: losses for label, (_, losses) in results.items()}


if __name__ == "__main__":
    main()
