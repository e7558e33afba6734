"""A modern MNIST MLP: 784-128-10 ReLU, softmax cross-entropy on integer labels, Adam 1e-3,
mini-batches of 32, 20 epochs. On the bundled 4,000/1,000 split it reaches ≥ 92% test accuracy."""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import graphgrad as gg  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--quick", action="store_true", help="2 epochs, for the tests")
    parser.add_argument("--mnist", default=None, help="path to the full MNIST (IDX folder or mnist.pkl.gz)")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else args.epochs

    (X, y), (Xt, yt) = gg.datasets.mnist(path=args.mnist)
    model = gg.nn.Sequential(gg.nn.Dense(784, 128, activation="relu", kernel_init="he_normal", seed=0),
                             gg.nn.Dense(128, 10, seed=1))
    history = gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=gg.optim.Adam(lr=1e-3), epochs=epochs,
                     batch_size=32, seed=0, validation_data=(Xt, yt), metrics=["accuracy"], verbose=args.verbose)
    accuracy = history.history["val_accuracy"][-1]
    print(f"784-128-10 ReLU + Adam, {epochs} epochs: test accuracy {accuracy:.2%}")

    os.makedirs(args.out, exist_ok=True)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    e = np.arange(1, epochs + 1)
    ax_loss.plot(e, history.history["loss"], marker="o", label="training")
    ax_loss.plot(e, history.history["val_loss"], marker="o", label="test")
    ax_acc.plot(e, history.history["accuracy"], marker="o", label="training")
    ax_acc.plot(e, history.history["val_accuracy"], marker="o", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy"), ax_acc.set(xlabel="epoch", ylabel="accuracy")
    ax_loss.legend(), ax_acc.legend()
    fig.tight_layout()
    path = os.path.join(args.out, "mnist_mlp.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return {"accuracy": accuracy, "history": history.history}


if __name__ == "__main__":
    main()
