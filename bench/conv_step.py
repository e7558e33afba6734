"""Case d: Keras' mnist_convnet training step (float32; forward, softmax cross-entropy, backward,
Adam 1e-3) — Conv2D(32, 3)-ReLU-MaxPool(2)-Conv2D(64, 3)-ReLU-MaxPool(2)-Flatten-Dropout(0.5)-
Dense(10) on 1×28×28 images — graphgrad against PyTorch eager (plain and fused Adam), each
implementation in its own process, with 1 and 2 threads, at batch 32 and 128.

--layers times each conv layer of that network alone at batch 128: forward, input gradient and
weight gradient, graphgrad's instructions against torch.nn.functional.conv2d and the kernel its
autograd runs for the backward (aten.convolution_backward, one output at a time).

Prints the tables, writes bench/results/conv_step.json.
Each implementation runs --repeats times (default 2) in fresh processes, round-robin, best kept.
Run: python bench/conv_step.py [--quick] [--threads 1 2] [--repeats N] [--layers]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _common  # noqa: E402

BATCHES = [32, 128]
IMPLS = ["graphgrad", "torch", "torch_fused"]
#: the two conv layers of mnist_convnet: (in_channels, out_channels, input height = width)
LAYERS = {"conv1": (1, 32, 28), "conv2": (32, 64, 13)}
PASSES = ["forward", "input_grad", "weight_grad"]


def _data(batch):
    import numpy as np
    rng = np.random.default_rng(0)
    return rng.random((batch, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, batch)


# ---- graphgrad ---------------------------------------------------------------------------------
def graphgrad_step(batch):
    import graphgrad as gg
    X, labels = _data(batch)
    gg.init.seed(0)
    model = gg.nn.Sequential(gg.nn.Conv2D(1, 32, 3, activation="relu"), gg.nn.MaxPool2D(2),
                             gg.nn.Conv2D(32, 64, 3, activation="relu"), gg.nn.MaxPool2D(2), gg.nn.Flatten(),
                             gg.nn.Dropout(0.5), gg.nn.Dense(1600, 10))
    x = gg.placeholder((None, 1, 28, 28), name="x")
    y = gg.placeholder((None,), name="y", dtype="int64")
    with gg.nn.training():
        loss = gg.softmax_cross_entropy(model(x), y)
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-3))
    feeds = {x: X, y: labels}
    return lambda: step(feeds)


def graphgrad_layer(layer, which, batch):
    import numpy as np
    import graphgrad as gg
    from graphgrad.ops import make
    c, o, size = LAYERS[layer]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, c, size, size)).astype(np.float32)
    w = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((batch, o, size - 2, size - 2)).astype(np.float32)
    X, W, DY = (gg.placeholder(a.shape) for a in (x, w, dy))
    attrs = {"stride": (1, 1), "padding": (0, 0), "dilation": (1, 1)}
    if which == "forward":
        out, feeds = gg.conv2d(X, W), {X: x, W: w}
    elif which == "input_grad":
        out, feeds = make("conv2d_input_grad", [DY, W], {**attrs, "input_hw": (size, size)}), {DY: dy, W: w}
    else:
        out, feeds = make("conv2d_weight_grad", [X, DY], {**attrs, "kernel": (3, 3)}), {X: x, DY: dy}
    program = gg.compile(out)
    return lambda: program(feeds)


# ---- PyTorch eager -------------------------------------------------------------------------------
def torch_step(batch, fused=False):
    import torch
    X, labels = _data(batch)
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.5), nn.Linear(1600, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, **({"fused": True} if fused else {}))
    xt, lt = torch.from_numpy(X), torch.from_numpy(labels)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt), lt)
        loss.backward()
        opt.step()
    step()
    return step


def torch_layer(layer, which, batch):
    import torch
    c, o, size = LAYERS[layer]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, c, size, size, generator=g)
    w = torch.randn(o, c, 3, 3, generator=g)
    dy = torch.randn(batch, o, size - 2, size - 2, generator=g)
    if which == "forward":
        return lambda: torch.nn.functional.conv2d(x, w)
    mask = [True, False, False] if which == "input_grad" else [False, True, False]
    backward = torch.ops.aten.convolution_backward
    return lambda: backward(dy, x, w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, mask)


def worker(spec, impl, threads):
    if impl.startswith("torch"):
        import torch
        torch.set_num_threads(threads)
    else:
        import graphgrad as gg
        gg.set_num_threads(threads)
    try:
        if spec.startswith("layer:"):
            _, layer, which, batch = spec.split(":")
            fn = (graphgrad_layer if impl == "graphgrad" else torch_layer)(layer, which, int(batch))
            seconds = _common.time_per_call(fn, min_time=0.4 if args.quick else 1.0)
            print(json.dumps({"seconds": seconds}))
            return
        batch = int(spec)
        fn = {"graphgrad": graphgrad_step, "torch": torch_step,
              "torch_fused": lambda b: torch_step(b, fused=True)}[impl](batch)
        seconds = _common.time_per_call(fn, min_time=0.6 if args.quick else 1.5)
        print(json.dumps({"seconds": seconds, "samples_per_s": batch / seconds}))
    except Exception as err:  # an implementation that cannot run this case says so
        print(json.dumps({"error": f"{type(err).__name__}: {err}"[:200]}))


def _best(a, b):
    key = lambda r: (r or {}).get("seconds", float("inf"))  # noqa: E731
    return b if a is None or key(b) < key(a) else a


def main():
    results = {"machine": _common.machine(), "steps": {}, "layers": {}}
    if not _common.torch_available():
        print("PyTorch is not importable: its columns are skipped (pip install torch to compare)")
    impls = [i for i in IMPLS if _common.torch_available() or not i.startswith("torch")]
    print(f"CPU: {results['machine']['cpu']}")
    if not args.layers_only:
        print(f"{'case':<10}{'threads':>8}" + "".join(f"{i + ' samples/s':>24}" for i in impls) + f"{'vs torch':>10}")
        for threads in args.threads:
            for batch in BATCHES:
                row = {}
                for _ in range(args.repeats):
                    for impl in impls:
                        row[impl] = _best(row.get(impl), _common.run_worker(__file__, [str(batch), impl], threads))
                results["steps"][f"d{batch}/{threads}t"] = row
                sps = {i: (row[i] or {}).get("samples_per_s") for i in impls}
                torch_best = max(filter(None, [sps.get("torch"), sps.get("torch_fused")]), default=None)
                ratio = f"{sps['graphgrad'] / torch_best:.2f}x" if sps["graphgrad"] and torch_best else "n/a"
                print(f"d{batch:<9}{threads:>8}" + "".join(f"{(v or 0):>24,.0f}" for v in sps.values())
                      + f"{ratio:>10}", flush=True)
    if args.layers or args.layers_only:
        layer_impls = [i for i in ("graphgrad", "torch") if i in impls]
        print(f"\nper layer, batch 128 (ms){'':<6}" + "".join(f"{i:>12}" for i in layer_impls) + f"{'ratio':>10}")
        for threads in args.threads:
            for layer in LAYERS:
                for which in PASSES:
                    spec = f"layer:{layer}:{which}:128"
                    row = {}
                    for _ in range(args.repeats):
                        for impl in layer_impls:
                            row[impl] = _best(row.get(impl), _common.run_worker(__file__, [spec, impl], threads))
                    results["layers"][f"{layer}/{which}/{threads}t"] = row
                    ms = {i: (row[i] or {}).get("seconds", float("nan")) * 1e3 for i in layer_impls}
                    ratio = ms.get("torch", float("nan")) / ms["graphgrad"]
                    print(f"{layer} {which:<12}{threads}t{'':<8}" + "".join(f"{v:>12.3f}" for v in ms.values())
                          + f"{ratio:>9.2f}x", flush=True)
    path = _common.write_json("conv_step.json", results)
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("SPEC", "IMPL"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--quick", action="store_true", help="shorter timings")
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per implementation (best kept)")
    parser.add_argument("--layers", action="store_true", help="also time each conv layer's three passes")
    parser.add_argument("--layers-only", action="store_true", help="only the per-layer table")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.threads[0])
    else:
        main()
