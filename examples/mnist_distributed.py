"""MNIST MLP trained data-parallel over MPI: 784-128-10 ReLU, Adam 1e-3, global batch 64.

Run it on 2 processes of this machine:

    mpirun -n 2 python examples/mnist_distributed.py

or on several hosts (one line per host in `hosts`, e.g. "node1:4"):

    mpirun -f hosts -n 8 python examples/mnist_distributed.py          # MPICH
    mpirun --hostfile hosts -n 8 python examples/mnist_distributed.py  # Open MPI

Every rank loads the same data and builds the same model; each step, each rank computes the
gradient of its share of the global batch, one allreduce sums them, and every rank applies the
same update. Rank 0 prints the progress and writes the checkpoint. Without mpirun it runs as one
rank. docs/distributed.md explains the rest."""
import argparse
import os

import graphgrad as gg


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64, help="the global batch (split over the ranks)")
    parser.add_argument("--quick", action="store_true", help="2 epochs, for the tests")
    parser.add_argument("--mnist", default=None, help="path to the full MNIST (IDX folder or mnist.pkl.gz)")
    parser.add_argument("--verbose", type=int, default=1)
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else args.epochs

    ctx = gg.distributed.init()       # joins the MPI job (one rank when run without mpirun)
    (X, y), (Xt, yt) = gg.datasets.mnist(path=args.mnist)
    model = gg.nn.Sequential(gg.nn.Dense(784, 128, activation="relu", kernel_init="he_normal", seed=0),
                             gg.nn.Dense(128, 10, seed=1))
    optimizer = gg.optim.Adam(lr=1e-3)
    history = gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=optimizer, epochs=epochs,
                     batch_size=args.batch_size, seed=0, validation_data=(Xt, yt), metrics=["accuracy"],
                     verbose=args.verbose, distributed=True)
    path = gg.save(os.path.join(args.out, "mnist_distributed.npz"), model, optimizer)   # rank 0 writes
    accuracy = history.history["val_accuracy"][-1]
    seconds = history.distributed["allreduce_seconds"][-1]
    if gg.distributed.is_main():
        print(f"{ctx.size} ranks x {ctx.threads} threads, {epochs} epochs: test accuracy {accuracy:.2%}, "
              f"{history.samples_per_second[-1]:,.0f} samples/s, last epoch {seconds * 1e3:.1f} ms reducing gradients "
              f"({history.distributed['path']}); wrote {path}")
    return {"accuracy": accuracy, "history": history.history, "ranks": ctx.size, "path": path}


if __name__ == "__main__":
    main()
