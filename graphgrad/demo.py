"""`graphgrad demo` / `make demo`: train a 784-128-10 ReLU network with softmax cross-entropy and
Adam on the bundled MNIST digits, print the test accuracy and a confusion summary, and write the
pictures into out/: the model graph, the full training-step graph (forward, backward, update),
the loss/accuracy curves, and a grid of test digits with their predictions."""
from __future__ import annotations

import os
import time

import numpy as np


def _model(gg):
    return gg.nn.Sequential(gg.nn.Dense(784, 128, activation="relu", seed=0), gg.nn.Dense(128, 10, seed=1))


def run_demo(out: str = "out", epochs: int | None = None, quick: bool = False) -> dict:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import graphgrad as gg

    epochs = epochs or (1 if quick else 8)
    os.makedirs(out, exist_ok=True)
    (X, y), (Xt, yt) = gg.datasets.mnist()
    if quick:
        X, y = X[:1000], y[:1000]
    print(f"MNIST (bundled subset): {len(X)} training and {len(Xt)} test digits, 28×28 pixels")

    model = _model(gg)
    optimizer = gg.optim.Adam(lr=1e-3)
    start = time.perf_counter()
    history = gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=optimizer, epochs=epochs, batch_size=32,
                     validation_data=(Xt, yt), metrics=["accuracy"], seed=0)
    seconds = time.perf_counter() - start
    logits = gg.predict(model, Xt)
    predicted = logits.argmax(axis=1)
    accuracy = float((predicted == yt).mean())
    print(f"trained {epochs} epochs in {seconds:.1f} s; test accuracy {accuracy:.2%}")

    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (yt, predicted), 1)
    pairs = [(confusion[i, j], i, j) for i in range(10) for j in range(10) if i != j]
    worst = sorted(pairs, reverse=True)[:3]
    per_class = confusion.diagonal() / confusion.sum(axis=1)
    print("per-digit accuracy: " + "  ".join(f"{d}:{a:.0%}" for d, a in enumerate(per_class)))
    print("most frequent confusions: " + ", ".join(f"{i}→{j} ({n}×)" for n, i, j in worst))

    # the pictures
    x = gg.placeholder((None, 784), name="images")
    labels = gg.placeholder((None,), name="labels", dtype="int64")
    logits_t = model(x)
    gg.render(logits_t, os.path.join(out, "model.png"), rankdir="TB", title="the model: 784-128-10, ReLU")
    step = gg.compile(gg.softmax_cross_entropy(logits_t, labels), optimizer=gg.optim.Adam(lr=1e-3))
    step.render(os.path.join(out, "train_step.png"), rankdir="TB",
                title="one training step: forward (blue), backward (orange), Adam update (green)")

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs_axis = np.arange(1, len(history.history["loss"]) + 1)
    ax_loss.plot(epochs_axis, history.history["loss"], marker="o", label="training")
    if "val_loss" in history.history:
        ax_loss.plot(epochs_axis, history.history["val_loss"], marker="o", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_acc.plot(epochs_axis, history.history["accuracy"], marker="o", label="training")
    if "val_accuracy" in history.history:
        ax_acc.plot(epochs_axis, history.history["val_accuracy"], marker="o", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_loss.legend(), ax_acc.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "curves.png"), dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(4, 8, figsize=(9, 5))
    for ax, image, truth, guess in zip(axes.ravel(), Xt, yt, predicted):
        ax.imshow(image.reshape(28, 28), cmap="gray_r")
        ax.set_title(f"{guess}" + ("" if guess == truth else f" (is {truth})"), fontsize=9,
                     color="black" if guess == truth else "red")
        ax.axis("off")
    fig.suptitle("test digits and the network's predictions (red: wrong)")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "predictions.png"), dpi=110)
    plt.close(fig)
    for name in ("model.png", "train_step.png", "curves.png", "predictions.png"):
        print(f"wrote {os.path.join(out, name)}")
    return {"accuracy": accuracy, "seconds": seconds, "history": history.history}
