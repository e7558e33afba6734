"""Full-batch, mini-batch and stochastic gradient descent on the same regression problem.

An epoch is one pass over the data; an iteration is one update. Full-batch GD makes 1 iteration
per epoch, mini-batch GD n/b, stochastic GD n. More, noisier updates per epoch make progress
per epoch faster; each update is cheaper but there are many more. Writes
out/batch_vs_minibatch.png: the loss on the whole data set against epoch and against wall time.
"""
import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import graphgrad as gg  # noqa: E402

SETTINGS = {  # name: (batch size, learning rate)
    "full batch": (None, 0.1),
    "mini-batch (32)": (32, 0.05),
    "stochastic (1)": (1, 0.01),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="fewer samples and epochs")
    args = parser.parse_args(argv)
    n, epochs = (400, 6) if args.quick else (2000, args.epochs)
    X, Y = gg.datasets.regression(n, n_features=8, noise=0.1, seed=0)

    curves = {}
    for name, (batch_size, lr) in SETTINGS.items():
        model = gg.nn.Dense(8, 1, kernel_init="zeros")
        optimizer = gg.optim.SGD(lr=lr)
        iterations = 1 if batch_size is None else -(-n // batch_size)
        losses, times, elapsed = [gg.evaluate(model, X, Y, loss="mse")["loss"]], [0.0], 0.0
        for _ in range(epochs):
            start = time.perf_counter()
            gg.fit(model, X, Y, loss="mse", optimizer=optimizer, epochs=1, batch_size=batch_size, seed=0, verbose=0)
            elapsed += time.perf_counter() - start
            losses.append(gg.evaluate(model, X, Y, loss="mse")["loss"])
            times.append(elapsed)
        curves[name] = (np.array(losses), np.array(times))
        print(f"{name:<16} {iterations:>5} iterations per epoch, {iterations * epochs:>6} in all; "
              f"loss after {epochs} epochs {losses[-1]:.4f}, {elapsed * 1e3:.0f} ms")

    fig, (ax_e, ax_t) = plt.subplots(1, 2, figsize=(11, 4))
    for name, (losses, times) in curves.items():
        ax_e.semilogy(np.arange(len(losses)), losses, marker="o", ms=3, label=name)
        ax_t.semilogy(np.maximum(times, 1e-4) * 1e3, losses, marker="o", ms=3, label=name)
    ax_e.set(xlabel="epoch", ylabel="MSE on all data", title="loss per epoch")
    ax_t.set(xlabel="wall time (ms, training only)", ylabel="MSE on all data", xscale="log",
             title="loss against time")
    ax_e.legend(), ax_t.legend()
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "batch_vs_minibatch.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return {name: losses for name, (losses, _) in curves.items()}


if __name__ == "__main__":
    main()
