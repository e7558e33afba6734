"""One full training step (forward, loss, backward, optimizer update; float32), graphgrad
against a hand-written vectorised NumPy step, PyTorch eager (plain and fused Adam), JAX (jax.jit of
the whole step, optax's optimizer) and TensorFlow (tf.function over a GradientTape step of a Keras
model, a Keras optimizer), each case and implementation in its own process, with 1 and 2 threads.
A peer that is not importable is skipped, and the table says so.

  a) Nielsen's 784-30-10 sigmoid network (sigmoid outputs too), quadratic cost (MSE), SGD lr 3.0, batch 10
  b) 784-128-10 ReLU, softmax cross-entropy, Adam 1e-3, batch 64
  c) 784-1024-1024-10 ReLU, softmax cross-entropy, Adam 1e-3, batch 256 and 1024

Every implementation starts from the same weights (He-scaled normal), trains on the same batch and
computes the same loss (mean over the batch; MSE over all elements); its first steps' losses are
printed next to graphgrad's, so the comparison is of the same work.

Threads: a worker pins itself to its first N allowed cores (sched_setaffinity) before any framework is
imported, and sets every framework's own thread options (OMP/MKL/OpenBLAS variables, torch.set_num_threads,
XLA_FLAGS for JAX, tf.config.threading for TensorFlow); it reports the CPU time it used per second
of wall time while timing ("cores used"), which a 1-thread run keeps at 1.00 or below.

Prints a table of samples/s and ratios, writes bench/results/latest.json and a bar chart.
Each implementation runs --repeats times (default 2) in fresh processes, round-robin, best kept.
Run: python bench/train_step.py [--quick] [--threads 1 2] [--repeats N] [--cases c256 c1024]
     [--baseline DIR]   (also graphgrad from another built tree, e.g. main's, as "graphgrad_base")
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _common  # noqa: E402

CASES = {
    # Nielsen's network has sigmoid outputs too (without them, SGD at lr 3.0 diverges and times inf/NaN)
    "a": dict(sizes=[784, 30, 10], act="sigmoid", loss="mse", opt="sgd", lr=3.0, batch=10, out_act=True),
    "b": dict(sizes=[784, 128, 10], act="relu", loss="ce", opt="adam", lr=1e-3, batch=64),
    "c256": dict(sizes=[784, 1024, 1024, 10], act="relu", loss="ce", opt="adam", lr=1e-3, batch=256),
    "c1024": dict(sizes=[784, 1024, 1024, 10], act="relu", loss="ce", opt="adam", lr=1e-3, batch=1024),
}
IMPLS = ["graphgrad", "graphgrad_base", "graphgrad_epoch", "numpy", "torch", "torch_fused", "jax", "tensorflow"]
#: the modules each peer needs (the bench skips a peer whose modules are missing), how to get them
#: the peers "vs best peer" is taken over (the NumPy step is a baseline, not a framework)
PEERS = ["torch", "torch_fused", "jax", "tensorflow"]
PEER_MODULES = {"torch": ("torch",), "torch_fused": ("torch",), "jax": ("jax", "optax"),
                "tensorflow": ("tensorflow",)}
PEER_INSTALL = {"torch": "torch", "torch_fused": "torch", "jax": "jax jaxlib optax", "tensorflow": "tensorflow-cpu"}
CHECK_STEPS = 5


def _activated(case, i: int) -> bool:
    """Whether layer i (of len(sizes) - 1) is followed by the case's activation: all hidden layers, and
    the output layer when the case says so (out_act)."""
    return i < len(case["sizes"]) - 2 or case.get("out_act", False)


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
        if _activated(case, i):
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
    layers = [gg.nn.Dense(a, b, activation=case["act"] if _activated(case, i) else None)
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
            if _activated(case, i):
                h = sigmoid(z) if case["act"] == "sigmoid" else np.maximum(z, 0)
            else:
                h = z
            acts.append(h)
        if case["loss"] == "mse":
            loss = np.mean((h - Y) ** 2)
            d = 2 * (h - Y) / h.size
        else:
            z = h - h.max(axis=1, keepdims=True)
            p = np.exp(z)
            s = p.sum(axis=1, keepdims=True)
            loss = np.mean(np.log(s[:, 0]) - z[np.arange(len(X)), labels])
            p /= s
            d = (p - Y) / len(X)
        if _activated(case, n_layers - 1):   # the output activation's own derivative
            d = d * h * (1 - h) if case["act"] == "sigmoid" else d * (pre[-1] > 0)
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
        return loss
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
        if _activated(case, i):
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
        return loss.detach()
    return step


# ---- JAX: the whole step under one jax.jit ----------------------------------------------------------
def jax_step(case):
    """What a JAX user writes: a pure loss function, jax.value_and_grad, an optax optimizer, and one
    jax.jit over forward, loss, gradient and update, the parameters and optimizer state donated."""
    import jax
    import jax.numpy as jnp
    import optax
    X, Y, labels = _data(case)
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in _weights(case)]
    act = jax.nn.sigmoid if case["act"] == "sigmoid" else jax.nn.relu
    opt = optax.sgd(case["lr"]) if case["opt"] == "sgd" else optax.adam(case["lr"])   # torch's defaults

    def loss_fn(params, x, y):
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if _activated(case, i):
                h = act(h)
        if case["loss"] == "mse":
            return jnp.mean((h - y) ** 2)
        return jnp.mean(optax.softmax_cross_entropy(h, y))

    def train_step(params, opt_state, x, y):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    train_step = jax.jit(train_step, donate_argnums=(0, 1))
    xj, yj = jnp.asarray(X), jnp.asarray(Y)
    state = {"params": params, "opt": opt.init(params)}

    def step():
        state["params"], state["opt"], loss = train_step(state["params"], state["opt"], xj, yj)
        return loss.block_until_ready()   # jit calls are asynchronous: time the work, not its dispatch
    return step


# ---- TensorFlow: tf.function over a GradientTape step of a Keras model -----------------------------
def tensorflow_step(case):
    """What a TensorFlow user writes: a keras.Sequential of Dense layers, a Keras loss and optimizer,
    and a custom training step under tf.function (graph mode) with a GradientTape."""
    import tensorflow as tf
    keras = tf.keras
    X, Y, labels = _data(case)
    weights = _weights(case)
    model = keras.Sequential([keras.Input((case["sizes"][0],))] + [
        keras.layers.Dense(w.shape[1], activation=(case["act"] if _activated(case, i) else None))
        for i, (w, _) in enumerate(weights)])
    model.set_weights([a for wb in weights for a in wb])   # Dense kernels are (in, out), as ours
    if case["loss"] == "mse":
        loss_fn, target = keras.losses.MeanSquaredError(), tf.constant(Y)
    else:
        loss_fn, target = keras.losses.SparseCategoricalCrossentropy(from_logits=True), tf.constant(labels)
    # Keras' Adam defaults to epsilon 1e-7; torch's, optax's and graphgrad's 1e-8
    opt = (keras.optimizers.SGD(learning_rate=case["lr"]) if case["opt"] == "sgd" else
           keras.optimizers.Adam(learning_rate=case["lr"], epsilon=1e-8))
    xt = tf.constant(X)

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    return lambda: train_step(xt, target)


def _thread_options(impl: str, threads: int) -> None:
    """Each framework's own thread settings, made before it is imported (the OMP/MKL/OpenBLAS
    variables come from run_worker; XLA's and TensorFlow's pools do not read them)."""
    if impl == "jax":
        flags = os.environ.get("XLA_FLAGS", "")
        if threads == 1:   # XLA's CPU backend otherwise runs its Eigen pool and intra-op threads
            flags += " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = flags.strip()
    if impl == "tensorflow":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # no start-up banner on stderr
        import tensorflow as tf
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    if impl.startswith("torch"):
        import torch
        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
    if impl.startswith("graphgrad"):
        import graphgrad as gg
        gg.set_num_threads(threads)


BUILDERS = {"graphgrad": graphgrad_step, "graphgrad_base": graphgrad_step, "numpy": numpy_step,
            "torch": torch_step, "torch_fused": lambda c: torch_step(c, fused=True), "jax": jax_step,
            "tensorflow": tensorflow_step}


def worker(case_name, impl, threads):
    import json
    import time
    # first of all, before any framework is loaded: this process runs on `threads` cores only
    cores = _common.pin_cores(threads)
    case = CASES[case_name]
    try:
        _thread_options(impl, threads)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        losses = []
        if impl == "graphgrad_epoch":
            seconds = graphgrad_epoch(case)
        else:
            fn = BUILDERS[impl](case)
            # the first steps from the shared start, to compare with graphgrad's (they also warm up)
            losses = [float(fn()) for _ in range(CHECK_STEPS)]
            cpu0, wall0 = time.process_time(), time.perf_counter()
            seconds = _common.time_per_call(fn, min_time=0.6 if args.quick else 1.5)
        cores_used = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        print(json.dumps({"seconds": seconds, "samples_per_s": case["batch"] / seconds, "losses": losses,
                          "cores_used": cores_used, "cores_allowed": len(cores)}))
    except Exception as err:  # an implementation that cannot run this case says so
        print(json.dumps({"error": f"{type(err).__name__}: {err}"[:200]}))


def _importable(impl: str) -> bool:
    import importlib.util
    return all(importlib.util.find_spec(m) is not None for m in PEER_MODULES.get(impl, ()))


def main():
    results = {"machine": _common.machine(), "torch": _common.torch_available(), "skipped": {}, "cases": {}}
    impls = []
    for impl in IMPLS:
        if impl == "graphgrad_base" and not args.baseline:
            continue
        if not _importable(impl):
            need = " ".join(PEER_MODULES[impl])
            results["skipped"][impl] = f"not importable: {need} (pip install {PEER_INSTALL[impl]})"
            print(f"{impl} is not importable ({need}): its column is skipped (pip install {PEER_INSTALL[impl]})")
            continue
        impls.append(impl)
    if args.baseline:
        results["baseline"] = os.path.abspath(args.baseline)
        print(f"graphgrad_base: graphgrad imported from {results['baseline']}")
    cases = args.cases or list(CASES)
    extra = ["--baseline", args.baseline] if args.baseline else []
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
                    got = _common.run_worker(__file__, [case, impl, *extra], threads)
                    row[impl] = _faster(row.get(impl), got)
            results["cases"][f"{case}/{threads}t"] = row
            print_row(case, threads, row)
    print_table(results)
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


def _graphgrad_sps(row):
    return max(filter(None, [_sps(row, "graphgrad"), _sps(row, "graphgrad_epoch")]), default=None)


def _best_peer(row):
    """(name, samples/s) of the fastest framework peer in this row, or (None, None)."""
    got = [(_sps(row, p), p) for p in PEERS if _sps(row, p)]
    return (max(got)[1], max(got)[0]) if got else (None, None)


def _loss_gap(row, impl):
    """Largest relative difference of impl's first losses from graphgrad's (None if either is missing)."""
    ref, got = (row.get("graphgrad") or {}).get("losses"), (row.get(impl) or {}).get("losses")
    if not ref or not got:
        return None
    return max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(ref, got))


def print_row(case, threads, row):
    cells = []
    for impl, r in row.items():
        cells.append(f"{impl}={r['samples_per_s']:,.0f}/s" if r and "samples_per_s" in r else
                     f"{impl}=n/a ({(r or {}).get('error', 'failed')[:60]})")
    gg_sps = _graphgrad_sps(row)
    ratios = []
    torch_best = max(filter(None, [_sps(row, "torch"), _sps(row, "torch_fused")]), default=None)
    if gg_sps and torch_best:
        ratios.append(f"vs torch {gg_sps / torch_best:.2f}x")
    for peer in ("jax", "tensorflow"):
        if gg_sps and _sps(row, peer):
            ratios.append(f"vs {peer} {gg_sps / _sps(row, peer):.2f}x")
    best, best_sps = _best_peer(row)
    if gg_sps and best:
        ratios.append(f"vs best peer ({best}) {gg_sps / best_sps:.2f}x")
    if gg_sps and _sps(row, "numpy"):
        ratios.append(f"vs numpy {gg_sps / _sps(row, 'numpy'):.2f}x")
    if _sps(row, "graphgrad") and _sps(row, "graphgrad_base"):
        ratios.append(f"vs graphgrad_base {_sps(row, 'graphgrad') / _sps(row, 'graphgrad_base'):.2f}x")
    print(f"case {case:<6} {threads}t  " + "  ".join(cells) + ("   → " + ", ".join(ratios) if ratios else ""),
          flush=True)
    used = [f"{impl} {r['cores_used']:.2f}" for impl, r in row.items() if r and "cores_used" in r]
    gaps = [f"{impl} {g:.1e}" for impl in row if impl != "graphgrad" and (g := _loss_gap(row, impl)) is not None]
    first = (row.get("graphgrad") or {}).get("losses")
    print(f"            cores used (CPU s / wall s while timing): {', '.join(used)}", flush=True)
    if first:
        print(f"            graphgrad's first {len(first)} losses {', '.join(f'{x:.5f}' for x in first)}; "
              f"largest relative difference of each peer's: {', '.join(gaps)}", flush=True)


def print_table(results):
    """The summary: samples/s of graphgrad and each peer, and graphgrad over the best framework peer."""
    peers = [p for p in ("numpy", "torch", "torch_fused", "jax", "tensorflow", "graphgrad_base")
             if any(p in row for row in results["cases"].values())]
    head = f"{'case':10} {'graphgrad':>10} " + " ".join(f"{p:>11}" for p in peers) + f" {'vs best peer':>14}"
    print("\nsamples/s (best of the fresh processes); vs best peer = graphgrad / max(torch, torch_fused, jax, "
          "tensorflow)\n" + head + "\n" + "-" * len(head))
    for key, row in results["cases"].items():
        gg_sps, (best, best_sps) = _graphgrad_sps(row), _best_peer(row)
        cells = " ".join(f"{_sps(row, p):11,.0f}" if _sps(row, p) else f"{'n/a':>11}" for p in peers)
        ratio = f"{gg_sps / best_sps:6.2f}x {best:>7}" if gg_sps and best else f"{'n/a':>14}"
        print(f"{key:10} {gg_sps or 0:10,.0f} {cells} {ratio}")


def chart(results):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    labels, vs_peer, vs_numpy = [], [], []
    for key, row in results["cases"].items():
        gg_sps, (_, best_sps) = _graphgrad_sps(row), _best_peer(row)
        labels.append(key)
        vs_peer.append(gg_sps / best_sps if gg_sps and best_sps else 0)
        vs_numpy.append(gg_sps / _sps(row, "numpy") if gg_sps and _sps(row, "numpy") else 0)
    import numpy as np
    pos = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.bar(pos - 0.2, vs_peer, 0.4, label="graphgrad / best peer (PyTorch eager, JAX jit, TF tf.function)")
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
    parser.add_argument("--baseline", metavar="DIR",
                        help="also time graphgrad imported from DIR (another built tree, e.g. main's) as graphgrad_base")
    args = parser.parse_args()
    if args.worker and args.worker[1] == "graphgrad_base":
        sys.path.insert(0, os.path.abspath(args.baseline))
    if args.worker:
        worker(args.worker[0], args.worker[1], args.threads[0])
    else:
        main()
