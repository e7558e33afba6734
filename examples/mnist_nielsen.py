"""Nielsen's network from "Neural Networks and Deep Learning", chapter 1, reproduced.

784-30-10, sigmoid everywhere, his quadratic cost C = ½‖a − y‖² summed over the 10 outputs and
averaged over the mini-batch, plain SGD with learning rate 3.0, mini-batches of 10, 30 epochs,
weights and biases drawn from N(0, 1). On the bundled 4,000/1,000 MNIST split it reaches ≥ 88%
test accuracy. Every epoch runs as chunks of steps inside one C loop (gg.fit).
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import graphgrad as gg  # noqa: E402


def quadratic_cost(prediction, target):
    """½·Σ over the 10 outputs of (a − y)², averaged over the batch = 5 · mean over all elements."""
    return 5.0 * gg.mse(prediction, target)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="3 epochs, for the tests")
    parser.add_argument("--mnist", default=None, help="path to the full MNIST (IDX folder or mnist.pkl.gz)")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else args.epochs

    (X, labels), (Xt, labels_t) = gg.datasets.mnist(path=args.mnist)
    Y = np.eye(10, dtype=np.float32)[labels]          # one-hot targets, as Nielsen's vectorized_result
    Yt = np.eye(10, dtype=np.float32)[labels_t]
    model = gg.nn.Sequential(
        gg.nn.Dense(784, 30, activation="sigmoid", kernel_init="normal", bias_init="normal", seed=0),
        gg.nn.Dense(30, 10, activation="sigmoid", kernel_init="normal", bias_init="normal", seed=1))
    history = gg.fit(model, X, Y, loss=quadratic_cost, optimizer=gg.optim.SGD(lr=3.0), epochs=epochs,
                     batch_size=10, seed=0, validation_data=(Xt, Yt), metrics=["accuracy"], verbose=args.verbose)
    accuracy = history.history["val_accuracy"][-1]
    print(f"Nielsen's network, {epochs} epochs: test accuracy {accuracy:.2%} "
          f"({int(round(accuracy * len(Xt)))} / {len(Xt)})")

    os.makedirs(args.out, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, epochs + 1), history.history["val_accuracy"], marker="o")
    ax.set(xlabel="epoch", ylabel="test accuracy", title="Nielsen's 784-30-10 sigmoid network, SGD lr 3.0")
    fig.tight_layout()
    path = os.path.join(args.out, "mnist_nielsen.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return {"accuracy": accuracy, "history": history.history}


if __name__ == "__main__":
    main()
