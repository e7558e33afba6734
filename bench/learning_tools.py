"""What the learning tools cost, each against its plain peer measured in the same run (1 thread):

  landscape point   one loss evaluation of LossSurface (weights C + a·D1 + b·D2, substituted into
                    the graph) vs one call of the plain compiled loss of the same model, on 1,000
                    MNIST digits of a 784-30-10 sigmoid MLP; and a whole 21×21 plane
  lr_find step      gg.lr_find's 100 steps (per-step lr written by C) vs 100 steps of gg.fit, batch 32
  GradientStats     an epoch of gg.fit with GradientStats(every=10 or 1) vs without, 784-30-30-30-10,
                    batches of 10 and 128 (every=10 runs the statistics only on the recorded steps)

Writes bench/results/learning_tools.json.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _common  # noqa: E402

_common.pin_threads(1)
import numpy as np  # noqa: E402

import graphgrad as gg  # noqa: E402
from graphgrad.landscape import LossSurface, loss_plane  # noqa: E402

LOSS = "softmax_cross_entropy"


def compare(tool, peer, repeats: int = 7) -> tuple[float, float]:
    """Best seconds of each, the two alternating (so that load from elsewhere hits both alike)."""
    tool(), peer()
    best = [float("inf"), float("inf")]
    for _ in range(repeats):
        for k, fn in enumerate((tool, peer)):
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return best[0], best[1]


def main():
    (X, y), _ = gg.datasets.mnist()
    Xs, ys = X[:1000], y[:1000]
    mlp = gg.nn.Sequential(gg.nn.Dense(784, 30, activation="sigmoid", seed=0), gg.nn.Dense(30, 10, seed=1))
    x, t = gg.placeholder((None, 784), name="x"), gg.placeholder((None,), name="y", dtype="int64")
    plain = gg.compile(gg.softmax_cross_entropy(mlp(x), t))
    feeds = {x: Xs, t: ys}
    surface = LossSurface(mlp, Xs, ys, LOSS)
    surface.set_plane([p.value for p in mlp.parameters()], [np.ones(p.shape) for p in mlp.parameters()],
                      [np.ones(p.shape) for p in mlp.parameters()])
    rows = {}
    point = _common.time_per_call(lambda: surface.loss(0.1, 0.2))
    peer = _common.time_per_call(lambda: plain(feeds))
    rows["landscape point"] = (point, peer)
    plane, peer_441 = compare(lambda: loss_plane(mlp, Xs, ys, LOSS, surface=surface),
                              lambda: [plain(feeds) for _ in range(441)], repeats=3)
    rows["21x21 plane (441 points)"] = (plane, peer_441)

    def lr_find():
        gg.lr_find(mlp, X, y, loss=LOSS, optimizer=opt, steps=100, end_lr=1.0, verbose=0, diverge_factor=1e9)

    def fit_100():
        gg.fit(mlp, X[:3200], y[:3200], loss=LOSS, optimizer=opt, epochs=1, batch_size=32, shuffle=False, verbose=0)

    opt = gg.optim.SGD(lr=0.01)
    rows["lr_find, 100 steps"] = compare(lr_find, fit_100)

    sizes = [784, 30, 30, 30, 10]
    deep = gg.nn.Sequential(*[gg.nn.Dense(a, b, activation="sigmoid" if k < 3 else None, seed=k)
                              for k, (a, b) in enumerate(zip(sizes, sizes[1:]))])
    opt_deep = gg.optim.SGD(lr=0.1)

    def epoch(callbacks, batch):
        return lambda: gg.fit(deep, X, y, loss=LOSS, optimizer=opt_deep, epochs=1, batch_size=batch, seed=0,
                              callbacks=callbacks, verbose=0)

    for every, batch in ((1, 10), (10, 10), (100, 10), (1, 128), (10, 128)):
        rows[f"epoch, stats every {every}, batch {batch}"] = compare(
            epoch([gg.callbacks.GradientStats(every=every)], batch), epoch(None, batch))

    print(f"CPU: {_common.machine().get('cpu', '?')}, 1 thread")
    print(f"{'measurement':<34} {'tool':>12} {'peer':>12} {'ratio':>7}")
    for name, (tool, ref) in rows.items():
        print(f"{name:<34} {tool * 1e3:>10.3f}ms {ref * 1e3:>10.3f}ms {tool / ref:>7.2f}")
    print("peers: the plain compiled loss (441 calls for the plane); gg.fit over 100 batches of 32; the same "
          "epoch without the callback. Best of 7 (3 for the plane), alternating tool and peer.")
    path = _common.write_json("learning_tools.json", {
        "machine": _common.machine(), "rows": {k: {"tool_s": a, "peer_s": b, "ratio": a / b} for k, (a, b) in rows.items()}})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
