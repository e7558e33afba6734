"""One full training step (forward, loss, backward, optimizer update; float32), graphgrad
against a hand-written vectorised NumPy step and PyTorch eager, each case and implementation
in its own process, with 1 and 2 threads.

  a) Nielsen's 784-30-10 sigmoid network, quadratic cost (MSE), SGD lr 3.0, batch 10
  b) 784-128-10 ReLU, softmax cross-entropy, Adam 1e-3, batch 64
  c) 784-1024-1024-10 ReLU, softmax cross-entropy, Adam 1e-3, batch 256 and 1024

Prints a table of samples/s and ratios, writes bench/results/latest.json and a bar chart.
Each implementation runs --repeats times (default 2) in fresh processes, round-robin, best kept.
Run: python bench/train_step.py [--quick] [--threads 1 2] [--repeats N]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _common  # noqa: E402

CASES = {
    "a": dict(sizes=[784, 30, 10], act="sigmoid", loss="mse", opt="sgd", lr=3.0, batch=10),
    "b": dict(sizes=[784, 128, 10], act="relu", loss="ce", opt="adam", lr=1e-3, batch=64),
    "c256": dict(sizes=[784, 1024, 1024, 10], act="relu", loss="ce", opt="adam", lr=1e-3, batch=256),
    "c1024": dict(sizes=[784, 1024, 1024, 10], act="relu", loss="ce", opt="adam", lr=1e-3, batch=1024),
}
IMPLS = ["graphgrad", "graphgrad_epoch", "numpy", "torch", "torch_fused"]


def _data(case, n=None):
    import numpy as np
    rng = np.random.default_rng(0)
    n = n or case["batch"]
    X = rng.random((n, case["sizes"][0]), dtype=np.float32)
    labels = rng.integers(0, case["sizes"][-1], n)
    Y = np.eye(case["sizes"][-1], dtype=np.float32)[labels]
    return X, Y, labels


def _weights(case):
    import numpy as np
    rng = np.random.default_rng(1)
    s = case["sizes"]
    return [(rng.standard_normal((a, b)).astype(np.float32) * np.sqrt(2.0 / a), np.zeros(b, np.float32))
            for a, b in zip(s, s[1:])]


# ---- graphgrad ---------------------------------------------------------------------------------
def graphgrad_step(case):
    import graphgrad as gg
    X, Y, _ = _data(case)
    x = gg.placeholder((None, case["sizes"][0]), name="x")
    y = gg.placeholder((None, case["sizes"][-1]), name="y")
    h = x
    layers = _weights(case)
    for i, (w, b) in enumerate(layers):
        h = h @ gg.variable(w, name=f"W{i}") + gg.variable(b, name=f"b{i}")
        if i < len(layers) - 1:
            h = getattr(gg, case["act"])(h)
    if case["loss"] == "mse":
        loss = gg.mse(h, y)
    else:
        loss = gg.softmax_cross_entropy(h, y)
    opt = gg.optim.SGD(lr=case["lr"]) if case["opt"] == "sgd" else gg.optim.Adam(lr=case["lr"])
    step = gg.compile(loss, optimizer=opt)
    feeds = {x: X, y: Y}
    return lambda: step(feeds)


def graphgrad_epoch(case):
    """The epoch-in-C path: gg.fit over a data set, one C call per chunk of steps."""
    import graphgrad as gg
    n = case["batch"] * 500
    X, Y, _ = _data(case, n)
    layers = [gg.nn.Dense(a, b, activation=case["act"] if i < len(case["sizes"]) - 2 else None)
              for i, (a, b) in enumerate(zip(case["sizes"], case["sizes"][1:]))]
    model = gg.nn.Sequential(*layers)
    opt = gg.optim.SGD(lr=case["lr"])
    gg.fit(model, X, Y, loss="mse", optimizer=opt, epochs=1, batch_size=case["batch"], verbose=0)  # warm up
    import time
    start = time.perf_counter()
    gg.fit(model, X, Y, loss="mse", optimizer=opt, epochs=1, batch_size=case["batch"], verbose=0)
    return (time.perf_counter() - start) / (n // case["batch"])


# ---- NumPy, written by hand ----------------------------------------------------------------------
def numpy_step(case):
    import numpy as np
    X, Y, labels = _data(case)
    params = [p for wb in _weights(case) for p in wb]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    state = {"t": 0}
    sigmoid = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    n_layers = len(params) // 2

    def step():
        acts, pre = [X], []
        h = X
        for i in range(n_layers):
            z = h @ params[2 * i] + params[2 * i + 1]
            pre.append(z)
            if i < n_layers - 1:
                h = sigmoid(z) if case["act"] == "sigmoid" else np.maximum(z, 0)
            else:
                h = z
            acts.append(h)
        if case["loss"] == "mse":
            d = 2 * (h - Y) / h.size
        else:
            z = h - h.max(axis=1, keepdims=True)
            p = np.exp(z)
            p /= p.sum(axis=1, keepdims=True)
            d = (p - Y) / len(X)
        grads = [None] * len(params)
        for i in reversed(range(n_layers)):
            grads[2 * i] = acts[i].T @ d
            grads[2 * i + 1] = d.sum(axis=0)
            if i:
                d = d @ params[2 * i].T
                a = acts[i]
                d = d * a * (1 - a) if case["act"] == "sigmoid" else d * (pre[i - 1] > 0)
        state["t"] += 1
        t, lr = state["t"], case["lr"]
        for k, (p, g) in enumerate(zip(params, grads)):
            if case["opt"] == "sgd":
                p -= lr * g
            else:
                m[k] *= 0.9
                m[k] += 0.1 * g
                v[k] *= 0.999
                v[k] += 0.001 * g * g
                p -= lr / (1 - 0.9 ** t) * m[k] / (np.sqrt(v[k] / (1 - 0.999 ** t)) + 1e-8)
    return step


# ---- PyTorch eager ----------------------------------------------------------------------------------
def torch_step(case, fused=False):
    import torch
    X, Y, labels = _data(case)
    layers = []
    for i, (w, b) in enumerate(_weights(case)):
        lin = torch.nn.Linear(*w.shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(case["sizes"]) - 2:
            layers.append(torch.nn.Sigmoid() if case["act"] == "sigmoid" else torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    xt, yt, lt = torch.from_numpy(X), torch.from_numpy(Y), torch.from_numpy(labels)
    kw = {"fused": True} if fused else {}
    if case["opt"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=case["lr"], **kw)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=case["lr"], **kw)
    loss_fn = torch.nn.MSELoss() if case["loss"] == "mse" else torch.nn.CrossEntropyLoss()
    target = yt if case["loss"] == "mse" else lt

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt), target)
        loss.backward()
        opt.step()
    step()  # fused optimizers fail here, not in the timing loop
    return step


def worker(case_name, impl, threads):
    import json
    case = CASES[case_name]
    if impl.startswith("torch"):
        import torch
        torch.set_num_threads(threads)
    if impl.startswith("graphgrad"):
        import graphgrad as gg
        gg.set_num_threads(threads)
    try:
        if impl == "graphgrad_epoch":
            seconds = graphgrad_epoch(case)
        else:
            fn = {"graphgrad": graphgrad_step, "numpy": numpy_step, "torch": torch_step,
                  "torch_fused": lambda c: torch_step(c, fused=True)}[impl](case)
            seconds = _common.time_per_call(fn, min_time=0.6 if args.quick else 1.5)
        print(json.dumps({"seconds": seconds, "samples_per_s": case["batch"] / seconds}))
    except Exception as err:  # an implementation that cannot run this case says so
        print(json.dumps({"error": f"{type(err).__name__}: {err}"[:200]}))


def main():
    results = {"machine": _common.machine(), "torch": _common.torch_available(), "cases": {}}
    if not results["torch"]:
        print("PyTorch is not importable: its columns are skipped (pip install torch to compare)")
    impls = [i for i in IMPLS if results["torch"] or not i.startswith("torch")]
    cases = args.cases or list(CASES)
    for threads in args.threads:
        for case in cases:
            row = {}
            # every implementation runs --repeats times in fresh processes, round-robin, and keeps its
            # best: a process can land on a slow memory layout or a busy moment of the host, and
            # interleaving spreads that over all implementations alike
            for _ in range(args.repeats):
                for impl in impls:
                    if impl == "graphgrad_epoch" and case != "a":
                        continue
                    row[impl] = _faster(row.get(impl), _common.run_worker(__file__, [case, impl], threads))
            results["cases"][f"{case}/{threads}t"] = row
            print_row(case, threads, row)
    path = _common.write_json("latest.json", results)
    chart(results)
    print(f"wrote {path}")


def _faster(a: dict | None, b: dict | None) -> dict | None:
    """Of two worker results, the one with more samples/s (a result beats an error or nothing)."""
    speed = lambda r: (r or {}).get("samples_per_s", -1.0)  # noqa: E731
    return b if speed(b) > speed(a) or a is None else a


def _sps(row, impl):
    r = row.get(impl)
    return r.get("samples_per_s") if r else None


def print_row(case, threads, row):
    cells = []
    for impl, r in row.items():
        cells.append(f"{impl}={r['samples_per_s']:,.0f}/s" if r and "samples_per_s" in r else
                     f"{impl}=n/a ({(r or {}).get('error', 'failed')[:60]})")
    gg_sps = max(filter(None, [_sps(row, "graphgrad"), _sps(row, "graphgrad_epoch")]), default=None)
    torch_best = max(filter(None, [_sps(row, "torch"), _sps(row, "torch_fused")]), default=None)
    ratios = []
    if gg_sps and torch_best:
        ratios.append(f"vs torch {gg_sps / torch_best:.2f}x")
    if gg_sps and _sps(row, "numpy"):
        ratios.append(f"vs numpy {gg_sps / _sps(row, 'numpy'):.2f}x")
    print(f"case {case:<6} {threads}t  " + "  ".join(cells) + ("   → " + ", ".join(ratios) if ratios else ""),
          flush=True)


def chart(results):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    labels, vs_torch, vs_numpy = [], [], []
    for key, row in results["cases"].items():
        gg_sps = max(filter(None, [_sps(row, "graphgrad"), _sps(row, "graphgrad_epoch")]), default=None)
        torch_best = max(filter(None, [_sps(row, "torch"), _sps(row, "torch_fused")]), default=None)
        labels.append(key)
        vs_torch.append(gg_sps / torch_best if gg_sps and torch_best else 0)
        vs_numpy.append(gg_sps / _sps(row, "numpy") if gg_sps and _sps(row, "numpy") else 0)
    import numpy as np
    pos = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar(pos - 0.2, vs_torch, 0.4, label="graphgrad / PyTorch eager (best optimizer)")
    ax.bar(pos + 0.2, vs_numpy, 0.4, label="graphgrad / NumPy step")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set(xticks=pos, xticklabels=labels, ylabel="speed-up (samples/s ratio)", yscale="log",
           title="training step speed-up, same machine, same run")
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(_common.RESULTS, "train_step.png"), dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "IMPL"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cases", nargs="+", choices=list(CASES))
    parser.add_argument("--quick", action="store_true", help="shorter timings")
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per implementation (best kept)")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.threads[0])
    else:
        main()
