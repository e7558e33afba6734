"""Linear regression by mini-batch SGD: fit y = 3x + 2 + noise with the mean squared error.

Each call of the compiled step runs forward, backward and the SGD update in one C call; the
Python loop only picks the mini-batches. Prints the recovered parameters and renders the
train-step graph (forward, backward and update nodes) to out/linear_regression_step.png.
"""
import argparse
import os

import numpy as np

import graphgrad as gg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out", help="folder for the PNG")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="fewer epochs, for the tests")
    args = parser.parse_args(argv)
    epochs = 15 if args.quick else args.epochs

    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, size=(1000, 1)).astype(np.float32)
    Y = (3 * X + 2 + 0.1 * rng.standard_normal((1000, 1))).astype(np.float32)

    x = gg.placeholder((None, 1), name="x")
    y = gg.placeholder((None, 1), name="y")
    w = gg.variable(np.zeros((1, 1)), name="w")
    b = gg.variable(np.zeros(1), name="b")
    loss = gg.mse(x @ w + b, y, name="loss")
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1))

    batch_size = 32
    for epoch in range(epochs):
        order = rng.permutation(len(X))
        losses = [step(x=X[idx], y=Y[idx]) for idx in np.array_split(order, len(X) // batch_size)]
        if epoch % 5 == 0 or epoch == epochs - 1:
            print(f"epoch {epoch + 1:3d}  loss {np.mean(losses):.5f}")

    w_fit, b_fit = float(w.value[0, 0]), float(b.value[0])
    print(f"recovered w = {w_fit:.4f} (true 3), b = {b_fit:.4f} (true 2)")
    os.makedirs(args.out, exist_ok=True)
    path = step.render(os.path.join(args.out, "linear_regression_step.png"), rankdir="TB",
                       title="one training step: forward (blue), backward (orange), SGD update (green)")
    print(f"wrote {path}")
    return {"w": w_fit, "b": b_fit}


if __name__ == "__main__":
    main()
