"""The loss surface of a neural network is not convex: two training runs from different seeds end in
different minima (the lecture's "in deep learning there are usually several minima").

Trains the same 784-30-10 sigmoid MLP on the bundled MNIST from two seeds, then draws, on 1,000
training digits:
- out/loss_line.png: the loss along the straight line from each run's initial to its trained
  weights (Goodfellow et al. 2015), and along the line from run A's minimum to run B's — the loss
  rises between them: a barrier separates the two minima;
- out/loss_contour.png: the loss on a 21×21 slice around run A's minimum along two random
  filter-normalised directions (Li et al. 2018).
Every point is one call of one compiled program; the script prints how long the slice took.
"""
import argparse
import os

import numpy as np

import graphgrad as gg
from graphgrad.landscape import loss_line
from graphgrad.plots import plot_loss_lines

LOSS = "softmax_cross_entropy"


def train(seed: int, X, y, epochs: int):
    model = gg.nn.Sequential(gg.nn.Dense(784, 30, activation="sigmoid", seed=seed),
                             gg.nn.Dense(30, 10, seed=seed + 100))
    initial = [p.value for p in model.parameters()]
    gg.fit(model, X, y, loss=LOSS, optimizer=gg.optim.SGD(lr=0.5), epochs=epochs, batch_size=32, seed=seed,
           verbose=0)
    return model, initial


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="3 epochs and an 11x11 slice, for the tests")
    args = parser.parse_args(argv)
    epochs, steps = (3, 11) if args.quick else (args.epochs, 21)

    (X, y), _ = gg.datasets.mnist()
    Xs, ys = X[:1000], y[:1000]
    model_a, initial_a = train(0, X, y, epochs)
    model_b, initial_b = train(1, X, y, epochs)
    loss_a = gg.evaluate(model_a, Xs, ys, loss=LOSS)["loss"]
    loss_b = gg.evaluate(model_b, Xs, ys, loss=LOSS)["loss"]

    os.makedirs(args.out, exist_ok=True)
    result = gg.viz.loss_landscape(model_a, Xs, ys, loss=LOSS, start=initial_a, steps=steps,
                                   contour_path=os.path.join(args.out, "loss_contour.png"), line_path=None)
    line_a = result.line
    line_a.start_label, line_a.end_label = "run A initial", "run A trained"
    line_b = loss_line(model_b, Xs, ys, LOSS, start=initial_b, start_label="run B initial",
                       end_label="run B trained")
    between = loss_line(model_a, Xs, ys, LOSS, start=model_a, end=model_b, start_label="run A trained",
                        end_label="run B trained")
    line_path = plot_loss_lines([line_a, line_b, between], os.path.join(args.out, "loss_line.png"),
                                title="two runs, two minima: the loss along straight lines in weight space")
    inside = (between.alphas >= 0) & (between.alphas <= 1)       # the segment itself, not its extension
    barrier = float(between.losses[inside].max())
    distance = float(np.sqrt(sum(((a.value - b.value) ** 2).sum()
                                 for a, b in zip(model_a.parameters(), model_b.parameters()))))
    print(f"run A ends at loss {loss_a:.4f}, run B at {loss_b:.4f}, {distance:.1f} apart in weight space")
    print(f"on the straight line between them the loss rises to {barrier:.4f}: two different minima")
    print(f"{steps}x{steps} slice around run A on {len(Xs):,} digits: {result.plane.seconds:.2f} s "
          f"({result.plane.seconds / steps ** 2 * 1e3:.2f} ms per point, one C call each)")
    print(f"wrote {result.paths[0]} and {line_path}")
    return {"loss_a": loss_a, "loss_b": loss_b, "barrier": barrier, "between": between.losses,
            "alphas": between.alphas,
            "line_a": line_a.losses, "plane": result.plane.losses, "seconds": result.plane.seconds}


if __name__ == "__main__":
    main()
