"""Keras' mnist_convnet in graphgrad: Conv2D(32, 3)-ReLU-MaxPool(2)-Conv2D(64, 3)-ReLU-MaxPool(2)-
Flatten-Dropout(0.5)-Dense(10), softmax cross-entropy, Adam 1e-3, batch 128, 15 epochs. On the
bundled 4,000/1,000 MNIST split it reaches >= 97% test accuracy.

It writes the learned first-layer filters, the feature maps of one test digit through each conv
layer, the training curves, and the training step's graph with each layer collapsed into a box.
--batch-norm adds BatchNorm after each convolution (examples/mnist_cnn_batchnorm.py runs that)."""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import graphgrad as gg  # noqa: E402


def build_model(batch_norm: bool = False, seed: int = 0) -> gg.nn.Sequential:
    """The network, NCHW: (batch, 1, 28, 28) images -> (batch, 10) logits."""
    nn = gg.nn

    def conv_block(c_in, c_out, k):
        if not batch_norm:
            return [nn.Conv2D(c_in, c_out, 3, activation="relu", seed=seed + k, name=f"conv{k}"),
                    nn.MaxPool2D(2, name=f"pool{k}")]
        # the convolution's bias is redundant before a batch norm (its beta shifts the same way)
        return [nn.Conv2D(c_in, c_out, 3, use_bias=False, seed=seed + k, name=f"conv{k}"),
                nn.BatchNorm(c_out, name=f"bn{k}"), nn.ReLU(), nn.MaxPool2D(2, name=f"pool{k}")]
    return nn.Sequential(*conv_block(1, 32, 1), *conv_block(32, 64, 2), nn.Flatten(name="flatten"),
                         nn.Dropout(0.5, seed=seed, name="dropout"), nn.Dense(1600, 10, seed=seed + 3, name="dense"))


def draw_filters(model, path):
    """The first layer's 32 learned 3×3 filters."""
    kernel = model[0].kernel.value[:, 0]
    fig, axes = plt.subplots(4, 8, figsize=(8, 4.4))
    for ax, k in zip(axes.flat, kernel):
        ax.imshow(k, cmap="RdBu_r", vmin=-abs(kernel).max(), vmax=abs(kernel).max())
        ax.axis("off")
    fig.suptitle("first-layer filters (3×3, red positive, blue negative)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_feature_maps(model, image, path):
    """One test digit, and its feature maps after each conv layer (and its activation), in inference mode."""
    x = gg.placeholder((None, 1, 28, 28), name="x")
    h, taps = x, []
    for layer in model.layers:
        if isinstance(layer, gg.nn.MaxPool2D):
            taps.append(h)   # a conv block's activation maps, as its pooling reads them
        h = layer(h)
    values = gg.compile(taps)(x=image[None, None])
    rows = len(values) + 1
    fig, axes = plt.subplots(rows, 16, figsize=(16, 1.2 * rows + 0.6))
    axes[0, 0].imshow(image, cmap="gray_r")
    for ax in axes[0]:
        ax.axis("off")
    axes[0, 0].set_title("input", fontsize=8)
    for r, v in enumerate(values, start=1):
        for c in range(16):
            axes[r, c].imshow(v[0, c], cmap="viridis")
            axes[r, c].axis("off")
        axes[r, 0].set_title(f"conv layer {r}: 16 of {v.shape[1]} maps ({v.shape[2]}×{v.shape[3]})", fontsize=8,
                             loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_curves(history, path):
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    e = np.arange(1, len(history["loss"]) + 1)
    ax_loss.plot(e, history["loss"], marker="o", label="training")
    ax_loss.plot(e, history["val_loss"], marker="o", label="test")
    ax_acc.plot(e, history["accuracy"], marker="o", label="training")
    ax_acc.plot(e, history["val_accuracy"], marker="o", label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy")
    ax_acc.set(xlabel="epoch", ylabel="accuracy")
    ax_loss.legend()
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_train_step(model, path):
    """The whole training step (forward, backward, Adam), each layer collapsed into one box per role."""
    x = gg.placeholder((None, 1, 28, 28), name="x")
    y = gg.placeholder((None,), name="y", dtype="int64")
    with gg.nn.training():
        loss = gg.softmax_cross_entropy(model(x), y)
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-3))
    gg.render(step.outputs + step.updates, path, collapse=True, title="mnist_convnet: one training step")


def main(argv=None, batch_norm: bool = False):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="2 epochs on 2,000 digits, for the tests")
    parser.add_argument("--batch-norm", action="store_true", help="BatchNorm after each convolution")
    parser.add_argument("--mnist", default=None, help="path to the full MNIST (IDX folder or mnist.pkl.gz)")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    batch_norm = batch_norm or args.batch_norm
    epochs = 2 if args.quick else args.epochs

    (X, y), (Xt, yt) = gg.datasets.mnist(path=args.mnist, flatten=False)
    X, Xt = X[:, None], Xt[:, None]                    # NCHW: one channel
    if args.quick:
        X, y = X[:2000], y[:2000]
    model = build_model(batch_norm)
    if args.verbose:
        model.summary(input_shape=(1, 28, 28))
    history = gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=gg.optim.Adam(lr=1e-3), epochs=epochs,
                     batch_size=128, seed=0, validation_data=(Xt, yt), metrics=["accuracy"], verbose=args.verbose)
    accuracy = history.history["val_accuracy"][-1]
    name = "mnist_cnn_batchnorm" if batch_norm else "mnist_cnn"
    print(f"{name}, {epochs} epochs on {len(X):,} digits: test accuracy {accuracy:.2%}")

    os.makedirs(args.out, exist_ok=True)
    paths = {"filters": os.path.join(args.out, f"{name}_filters.png"),
             "feature_maps": os.path.join(args.out, f"{name}_feature_maps.png"),
             "curves": os.path.join(args.out, f"{name}_curves.png"),
             "train_step": os.path.join(args.out, f"{name}_train_step.png")}
    draw_filters(model, paths["filters"])
    draw_feature_maps(model, Xt[0, 0], paths["feature_maps"])
    draw_curves(history.history, paths["curves"])
    draw_train_step(model, paths["train_step"])
    checkpoint = gg.save(os.path.join(args.out, f"{name}.npz"), model)
    for path in paths.values():
        print(f"wrote {path}")
    return {"accuracy": accuracy, "history": history.history, "model": model, "checkpoint": checkpoint,
            "test": (Xt, yt), **paths}


if __name__ == "__main__":
    main()
