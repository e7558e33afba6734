"""Finding a learning rate with the LR range test (Smith 2017; fastai's lr_find), then using it.

On the bundled MNIST, a 784-30-10 sigmoid network (Nielsen's) trains for `steps` mini-batches while
the learning rate grows from 1e-7 to 10; gg.lr_find stops when the loss diverges, puts the model
and the optimizer back as they were, and suggests a rate (a tenth of the rate at the smoothed
loss's minimum). Then the same network trains for a few epochs with the suggested rate and with
gg.fit's default (SGD, lr = 0.01). Writes out/lr_find.png (the range test) and out/lr_compare.png.
"""
import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import graphgrad as gg  # noqa: E402

LOSS = "softmax_cross_entropy"


def network():
    return gg.nn.Sequential(gg.nn.Dense(784, 30, activation="sigmoid", seed=0), gg.nn.Dense(30, 10, seed=1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 epoch each, for the tests")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    epochs = 1 if args.quick else args.epochs

    (X, y), (Xt, yt) = gg.datasets.mnist()
    os.makedirs(args.out, exist_ok=True)
    result = gg.lr_find(network(), X, y, loss=LOSS, optimizer=gg.optim.SGD(), verbose=args.verbose)
    result.plot(os.path.join(args.out, "lr_find.png"))
    print(f"range test: {len(result.lrs)} steps in {result.seconds * 1e3:.0f} ms"
          f"{', stopped when the loss diverged' if result.stopped_early else ''}; smoothed minimum at "
          f"lr {result.lr_at_min:.3g}; suggested lr {result.suggestion:.3g} ({result.rule})")

    curves = {}
    for label, lr in (("gg.fit's default, lr 0.01", 0.01), (f"suggested, lr {result.suggestion:.2g}", result.suggestion)):
        history = gg.fit(network(), X, y, loss=LOSS, optimizer=gg.optim.SGD(lr=lr), epochs=epochs, batch_size=32,
                         seed=0, validation_data=(Xt, yt), metrics=["accuracy"], verbose=0)
        curves[label] = history["val_accuracy"]
        print(f"{label:>28}: test accuracy after {epochs} epoch(s) {history['val_accuracy'][-1]:.2%}")

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for label, accuracy in curves.items():
        ax.plot(range(1, epochs + 1), accuracy, marker="o", label=label)
    ax.set(xlabel="epoch", ylabel="test accuracy", title="784-30-10 sigmoid, SGD, mini-batches of 32")
    ax.legend(), ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(args.out, "lr_compare.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {os.path.join(args.out, 'lr_find.png')} and {path}")
    default, suggested = (c[-1] for c in curves.values())
    return {"suggestion": result.suggestion, "default_accuracy": default, "suggested_accuracy": suggested,
            "result": result}


if __name__ == "__main__":
    main()
