"""Vanishing gradients (Nielsen, "Neural Networks and Deep Learning", chapter 5): in a deep sigmoid
network the early layers learn much more slowly than the later ones, because each layer's
gradient is the next one's times σ'(z) ≤ 1/4 and the weights.

Trains a 784-30-30-30-10 network on the bundled MNIST twice, one epoch of SGD on mini-batches of
10 each time, with gg.callbacks.GradientStats recording every parameter's gradient norm inside
the C step:
- sigmoid hidden layers, initialised as Nielsen's network2 (weights N(0, 1/n_in), biases N(0, 1));
- ReLU hidden layers with He initialisation (weights N(0, 2/n_in), biases 0).
Prints, for each, the first hidden layer's gradient norm over the last layer's (weights, and
biases — Nielsen's δ per layer), averaged over the first recorded steps, and writes
out/vanishing_gradients.png: gradient norm and update-to-weight ratio per layer over training.
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import graphgrad as gg  # noqa: E402

SIZES = [784, 30, 30, 30, 10]
SETUPS = {
    "sigmoid": dict(activation="sigmoid", kernel_init="lecun_normal", bias_init="normal"),
    "relu + He": dict(activation="relu", kernel_init="he_normal", bias_init="zeros"),
}
FIRST_RECORDS = 20        # the ratio is taken early in training, where Nielsen measures it


def network(setup: dict) -> gg.nn.Sequential:
    layers = []
    for k, (n_in, n_out) in enumerate(zip(SIZES, SIZES[1:])):
        last = k == len(SIZES) - 2
        layers.append(gg.nn.Dense(n_in, n_out, activation=None if last else setup["activation"],
                                  kernel_init=setup["kernel_init"], bias_init=setup["bias_init"], seed=k,
                                  name=f"layer{k + 1}"))
    return gg.nn.Sequential(*layers)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--every", type=int, default=10, help="record the statistics every N steps")
    parser.add_argument("--quick", action="store_true", help="1,000 digits, for the tests")
    args = parser.parse_args(argv)

    (X, y), _ = gg.datasets.mnist()
    if args.quick:
        X, y = X[:1000], y[:1000]
    every = 2 if args.quick else args.every
    results = {}
    for name, setup in SETUPS.items():
        stats = gg.callbacks.GradientStats(every=every)
        history = gg.fit(network(setup), X, y, loss="softmax_cross_entropy", optimizer=gg.optim.SGD(lr=0.1),
                         epochs=1, batch_size=10, seed=0, callbacks=[stats], verbose=0)
        early = {n: float(np.mean(s["grad_norm"][:FIRST_RECORDS])) for n, s in stats.stats.items() if n != "step"}
        kernels = [early[f"layer{k}/kernel"] for k in range(1, len(SIZES))]
        biases = [early[f"layer{k}/bias"] for k in range(1, len(SIZES))]
        results[name] = {"kernel_norms": kernels, "bias_norms": biases, "kernel_ratio": kernels[0] / kernels[-1],
                         "bias_ratio": biases[0] / biases[-1], "stats": stats.stats,
                         "loss": history["loss"][-1]}
        print(f"{name:>10}: ‖∂C/∂W‖ per layer {np.round(kernels, 4).tolist()}; first hidden / last = "
              f"{kernels[0] / kernels[-1]:.3g} (biases, Nielsen's δ: {biases[0] / biases[-1]:.3g})")

    os.makedirs(args.out, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, (name, result) in zip(axes, results.items()):
        stats = result["stats"]
        colours = plt.cm.viridis(np.linspace(0, 0.85, len(SIZES) - 1))
        for k, colour in enumerate(colours, start=1):
            ax.semilogy(stats["step"], stats[f"layer{k}/kernel"]["grad_norm"], color=colour,
                        label=f"layer {k}" + (" (output)" if k == len(SIZES) - 1 else " (hidden)"))
        ax.set(title=f"{name}: first / last = {result['kernel_ratio']:.2g}", xlabel="training step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("gradient norm ‖∂C/∂W‖ (log scale)")
    axes[0].legend(fontsize=8)
    fig.suptitle("784-30-30-30-10 on MNIST: each layer's weight-gradient norm during the first epoch")
    fig.tight_layout()
    path = os.path.join(args.out, "vanishing_gradients.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    ratios_path = gg.plots.plot_gradient_stats(results["sigmoid"]["stats"],
                                               os.path.join(args.out, "gradient_stats_sigmoid.png"),
                                               names=[f"layer{k}/kernel" for k in range(1, len(SIZES))],
                                               title="sigmoid network: per-layer statistics")
    print(f"wrote {path} and {ratios_path}")
    return results


if __name__ == "__main__":
    main()
