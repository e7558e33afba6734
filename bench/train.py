"""Training throughput: gg.fit (a whole epoch in one C call) against a Python loop of single
step() calls — the same compiled program, the same data, measured in the same run.

Nielsen's network (784-30-10, sigmoid, MSE, SGD lr 3.0, batch 10) on random data shaped like
MNIST (the MNIST loader is a later issue). The peer is what a user writes by hand: draw a
permutation, slice each batch with NumPy, call step(x=..., y=...). Prints a table and writes
bench/results/train.json. Throughput is given by wall clock and by this process's CPU time
(the latter is the fair one on a machine shared with other jobs).

    python bench/train.py [--samples 20000] [--repeats 3] [--threads 1]
"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import graphgrad as gg  # noqa: E402


def nielsen(seed=0):
    return gg.nn.Sequential(
        gg.nn.Dense(784, 30, activation="sigmoid", kernel_init="normal", bias_init="normal", seed=seed),
        gg.nn.Dense(30, 10, activation="sigmoid", kernel_init="normal", bias_init="normal", seed=seed + 1))


def _clock():
    return time.perf_counter(), time.process_time()


def _rates(samples, started):
    wall, cpu = _clock()
    return samples / (wall - started[0]), samples / max(cpu - started[1], 1e-9)


def time_fit(X, Y, batch, verbose, epochs):
    model, opt = nielsen(), gg.optim.SGD(lr=3.0)
    gg.fit(model, X[:batch * 10], Y[:batch * 10], optimizer=opt, batch_size=batch, verbose=0)   # compile once
    started = _clock()
    devnull = open(os.devnull, "w")
    stderr, sys.stderr = sys.stderr, devnull      # the bar is drawn, but not onto the table
    try:
        gg.fit(model, X, Y, optimizer=opt, batch_size=batch, epochs=epochs, verbose=verbose, seed=0)
    finally:
        sys.stderr = stderr
        devnull.close()
    return _rates(len(X) * epochs, started)


def time_step_loop(X, Y, batch, epochs):
    model, opt = nielsen(), gg.optim.SGD(lr=3.0)
    x = gg.placeholder((None, 784), name="x")
    y = gg.placeholder((None, 10), name="y")
    step = gg.compile(gg.mse(model(x), y), optimizer=opt)
    step(x=X[:batch], y=Y[:batch])                  # compile once
    rng = np.random.default_rng(0)
    started = _clock()
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for i in range(0, len(X), batch):
            rows = order[i:i + batch]
            step(x=X[rows], y=Y[rows])
    return _rates(len(X) * epochs, started)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="best of N runs of each")
    parser.add_argument("--threads", type=int, default=None, help="gg.set_num_threads (default: library default)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                      "train.json"))
    args = parser.parse_args(argv)
    if args.threads:
        gg.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    X = rng.random((args.samples, 784), dtype=np.float32)
    Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.samples)]

    runs = {"step() loop": [], "gg.fit verbose=0": [], "gg.fit verbose=1": []}
    for _ in range(args.repeats):    # interleaved, so a noisy neighbour hurts every column alike
        runs["step() loop"].append(time_step_loop(X, Y, args.batch, args.epochs))
        runs["gg.fit verbose=0"].append(time_fit(X, Y, args.batch, 0, args.epochs))
        runs["gg.fit verbose=1"].append(time_fit(X, Y, args.batch, 1, args.epochs))
    best_wall = {k: max(r[0] for r in v) for k, v in runs.items()}
    best_cpu = {k: max(r[1] for r in v) for k, v in runs.items()}
    peer_wall, peer_cpu = best_wall["step() loop"], best_cpu["step() loop"]

    print(f"Nielsen 784-30-10 sigmoid, MSE, SGD lr 3.0, batch {args.batch}, {args.samples} samples x "
          f"{args.epochs} epoch(s), best of {args.repeats}, {gg.get_num_threads()} thread(s)")
    print(f"{'method':<20}{'samples/s wall':>16}{'vs loop':>9}{'samples/s CPU':>16}{'vs loop':>9}")
    for name in runs:
        print(f"{name:<20}{best_wall[name]:>16,.0f}{best_wall[name] / peer_wall:>8.2f}x"
              f"{best_cpu[name]:>16,.0f}{best_cpu[name] / peer_cpu:>8.2f}x")
    result = {"benchmark": "train", "network": "784-30-10 sigmoid mse sgd(3.0)", "batch": args.batch,
              "samples": args.samples, "epochs": args.epochs, "threads": gg.get_num_threads(),
              "machine": platform.processor() or platform.machine(), "load_average": os.getloadavg(),
              "samples_per_s_wall": best_wall, "samples_per_s_cpu": best_cpu,
              "all_runs_wall_cpu": runs,
              "ratio_fit_vs_loop_wall": best_wall["gg.fit verbose=0"] / peer_wall,
              "ratio_fit_vs_loop_cpu": best_cpu["gg.fit verbose=0"] / peer_cpu,
              "ratio_fit_bar_vs_loop_wall": best_wall["gg.fit verbose=1"] / peer_wall}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
