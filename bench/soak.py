"""Soak: many training steps of a small MLP in one process — does anything leak?

Trains a 32-64-10 MLP (Adam, batches of 32, cycling over a fixed data set) for --steps steps
(100,000 by default) with one compiled step program, and samples the process's resident memory
(VmRSS), open file descriptors and threads every --every steps. After --warmup steps (caches,
allocator pools, OpenMP's thread team settle), the growth to the end must stay under 1 MB and
the fd and thread counts must not move. Unless --no-mixed, it also re-specialises the step for a second batch size and
calls gg.fit (with a new optimizer each time) at every sample, so those paths soak too; their
warm-up is 400 gg.fit calls, by which point the allocator's pools have stopped growing.

    python bench/soak.py                 # 100,000 steps
    python bench/soak.py --steps 20000   # quicker
Prints a table and writes bench/results/soak.json; exits 1 when a limit is broken.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench._common import machine, pin_threads, write_json  # noqa: E402


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--warmup", type=int, default=5_000)
    parser.add_argument("--every", type=int, default=5_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--limit-kb", type=int, default=1024, help="allowed RSS growth after warm-up")
    parser.add_argument("--no-mixed", action="store_true", help="only the one step program")
    parser.add_argument("--fit-warmup", type=int, default=400, help="gg.fit calls in the warm-up (mixed mode)")
    args = parser.parse_args(argv)
    pin_threads(args.threads)

    import numpy as np
    import graphgrad as gg

    rng = np.random.default_rng(0)
    X = rng.standard_normal((1024, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 1024)
    Y = np.eye(10, dtype=np.float32)[labels]

    x = gg.placeholder((None, 32), name="x")
    y = gg.placeholder((None, 10), name="y")
    w1 = gg.variable(rng.standard_normal((32, 64)) * 0.2, name="w1")
    b1 = gg.variable(np.zeros(64), name="b1")
    w2 = gg.variable(rng.standard_normal((64, 10)) * 0.2, name="w2")
    b2 = gg.variable(np.zeros(10), name="b2")
    loss = gg.mse(gg.sigmoid(gg.relu(x @ w1 + b1) @ w2 + b2), y)
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-3))
    batches = [(X[i:i + 32], Y[i:i + 32]) for i in range(0, 1024, 32)]
    model = gg.nn.Sequential(gg.nn.Dense(32, 16, activation="relu"), gg.nn.Dense(16, 10))

    samples = []        # (step, rss_kb, fds, threads, loss)
    start = time.perf_counter()
    value = float("nan")
    for k in range(1, args.steps + 1):
        xb, yb = batches[k % len(batches)]
        value = step(x=xb, y=yb)
        if k == args.warmup and not args.no_mixed:
            # gg.fit's own first few hundred calls grow the allocator's pools (they plateau by ~300)
            for _ in range(args.fit_warmup):
                gg.fit(model, X[:64], Y[:64], loss="mse", optimizer=gg.optim.SGD(lr=0.01), epochs=1,
                       batch_size=32, verbose=0)
        if k % args.every == 0 or k == args.warmup:
            if not args.no_mixed:
                step(x=X[:7], y=Y[:7])            # a second specialisation, cached after the first time
                gg.fit(model, X[:64], Y[:64], loss="mse", optimizer=gg.optim.SGD(lr=0.01), epochs=1,
                       batch_size=32, verbose=0)
            samples.append((k, rss_kb(), open_fds(), threads(), float(value)))
    seconds = time.perf_counter() - start

    after_warmup = [s for s in samples if s[0] >= args.warmup]
    base, end = after_warmup[0], after_warmup[-1]
    growth = end[1] - base[1]
    peak_growth = max(s[1] for s in after_warmup) - base[1]
    fd_change = end[2] - base[2]
    thread_change = end[3] - base[3]
    ok = growth < args.limit_kb and fd_change == 0 and thread_change == 0 and np.isfinite(value)

    print(f"soak: {args.steps:,} train steps of a 32-64-10 MLP (Adam, batch 32), {args.threads} thread(s), "
          f"{seconds:.1f} s ({seconds / args.steps * 1e6:.1f} µs/step)")
    print(f"{'step':>9} {'RSS (kB)':>10} {'fds':>5} {'threads':>8} {'loss':>10}")
    for s in samples:
        print(f"{s[0]:>9,} {s[1]:>10,} {s[2]:>5} {s[3]:>8} {s[4]:>10.5f}")
    print(f"after warm-up ({args.warmup:,} steps): RSS growth {growth:+,} kB (peak {peak_growth:+,} kB; limit "
          f"{args.limit_kb:,} kB), fds {fd_change:+d}, threads {thread_change:+d} -> {'OK' if ok else 'LEAK'}")
    path = write_json("soak.json", {
        "machine": machine(), "steps": args.steps, "warmup": args.warmup, "threads": args.threads,
        "seconds": seconds, "us_per_step": seconds / args.steps * 1e6, "rss_growth_kb": growth,
        "rss_peak_growth_kb": peak_growth, "fd_change": fd_change, "thread_change": thread_change,
        "samples": samples, "ok": bool(ok)})
    print(f"wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
