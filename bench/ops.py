"""Elementwise, activation and softmax kernels on 1M float32 elements: graphgrad's C kernels
(called directly through cffi, 1 thread and all threads) against NumPy (single-threaded ufuncs,
writing into preallocated outputs; composite functions such as sigmoid as NumPy's cheapest
in-place sequence of ufuncs).

Throughput is in GB/s of the bytes each kernel must move (inputs read + output written, once).
Single-threaded runs are timed by the thread's CPU time by default (--clock cpu): on a shared
machine wall time mostly measures the other tenants; multi-threaded graphgrad runs use wall time.
Prints a table with the ratio to NumPy and writes bench/results/ops.json.
Run: python bench/ops.py [--n 1000000] [--min-time 0.2] [--dtype float32] [--threads 1 2]
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _common  # noqa: E402


def _time(fn, min_time: float, clock: str) -> float:
    """Seconds per call: the best of several batches, by wall time or by this thread's CPU time."""
    if clock == "wall":
        return _common.time_per_call(fn, min_time=min_time)
    import time
    for _ in range(3):
        fn()
    start = time.thread_time()
    fn()
    calls = max(1, int(0.05 / max(time.thread_time() - start, 1e-6)))
    best, spent = float("inf"), 0.0
    while spent < min_time or best == float("inf"):
        start = time.thread_time()
        for _ in range(calls):
            fn()
        elapsed = time.thread_time() - start
        spent += elapsed
        best = min(best, elapsed / calls)
    return best


def _numpy_peers(np):
    """name -> (inputs, fn(out, *inputs)) doing the op with NumPy ufuncs only, in place where possible."""
    def sigmoid(o, x):
        np.negative(x, out=o); np.exp(o, out=o); o += 1; np.reciprocal(o, out=o)

    def softplus(o, x):
        # stable: max(x, 0) + log1p(exp(-|x|))
        np.abs(x, out=o); np.negative(o, out=o); np.exp(o, out=o); np.log1p(o, out=o); o += np.maximum(x, 0)

    def elu(o, x):
        np.expm1(x, out=o); np.copyto(o, x, where=x > 0)

    def leaky_relu(o, x):
        np.multiply(x, 0.01, out=o); np.maximum(o, x, out=o)

    def gelu_tanh(o, x):
        np.multiply(x, x, out=o); o *= 0.044715 * x; o += x; o *= np.sqrt(2 / np.pi); np.tanh(o, out=o)
        o += 1; o *= x; o *= 0.5

    def relu_backward(o, x, dy):
        np.multiply(dy, x > 0, out=o)

    def sigmoid_backward(o, y, dy):
        np.subtract(1, y, out=o); o *= y; o *= dy

    def tanh_backward(o, y, dy):
        np.multiply(y, y, out=o); np.subtract(1, o, out=o); o *= dy

    def softmax(o, x):
        np.subtract(x, x.max(axis=1, keepdims=True), out=o); np.exp(o, out=o); o /= o.sum(axis=1, keepdims=True)

    def log_softmax(o, x):
        m = x.max(axis=1, keepdims=True)
        np.subtract(x, m, out=o); o -= np.log(np.exp(o).sum(axis=1, keepdims=True))

    return {
        "add": (2, lambda o, a, b: np.add(a, b, out=o)),
        "mul": (2, lambda o, a, b: np.multiply(a, b, out=o)),
        "div": (2, lambda o, a, b: np.divide(a, b, out=o)),
        "maximum": (2, lambda o, a, b: np.maximum(a, b, out=o)),
        "pow": (2, lambda o, a, b: np.power(a, b, out=o)),
        "neg": (1, lambda o, x: np.negative(x, out=o)),
        "abs": (1, lambda o, x: np.abs(x, out=o)),
        "square (x**2)": (1, lambda o, x: np.square(x, out=o)),
        "pow_scalar (x**1.7)": (1, lambda o, x: np.power(x, 1.7, out=o)),
        "exp": (1, lambda o, x: np.exp(x, out=o)),
        "log": (1, lambda o, x: np.log(x, out=o)),
        "sqrt": (1, lambda o, x: np.sqrt(x, out=o)),
        "clip": (1, lambda o, x: np.clip(x, -0.5, 0.5, out=o)),
        "relu": (1, lambda o, x: np.maximum(x, 0, out=o)),
        "leaky_relu": (1, leaky_relu),
        "elu": (1, elu),
        "gelu (tanh)": (1, gelu_tanh),
        "sigmoid": (1, sigmoid),
        "tanh": (1, lambda o, x: np.tanh(x, out=o)),
        "softplus": (1, softplus),
        "relu_backward": (2, relu_backward),
        "sigmoid_backward": (2, sigmoid_backward),
        "tanh_backward": (2, tanh_backward),
        "softmax (1000x1000)": (1, softmax),
        "log_softmax (1000x1000)": (1, log_softmax),
    }


def _graphgrad_kernels(lib, ffi, ctype, suffix, n):
    """name -> fn(out_ptr, *input_ptrs) calling the C kernel directly."""
    shape = ffi.new("int64_t[]", [n])
    one = ffi.new("int64_t[]", [1])

    def k(name):
        return getattr(lib, f"gg_{name}_{suffix}")

    def binary(name):
        f = k(name)
        return lambda o, a, b: f(o, a, b, 1, shape, one, one)

    def unary(name, *params):
        f = k(name)
        return lambda o, x: f(o, x, n, *params)

    def backward(name):
        f = k(name)
        return lambda o, s, dy: f(o, s, dy, n)

    rows = 1000
    return {
        "add": binary("add"), "mul": binary("mul"), "div": binary("div"), "maximum": binary("maximum"),
        "pow": binary("pow"),
        "neg": unary("neg"), "abs": unary("abs"), "square (x**2)": unary("pow_scalar", 2.0),
        "pow_scalar (x**1.7)": unary("pow_scalar", 1.7),
        "exp": unary("exp"), "log": unary("log"), "sqrt": unary("sqrt"), "clip": unary("clip", -0.5, 0.5),
        "relu": unary("relu"), "leaky_relu": unary("leaky_relu", 0.01), "elu": unary("elu", 1.0),
        "gelu (tanh)": unary("gelu_tanh"), "sigmoid": unary("sigmoid"), "tanh": unary("tanh"),
        "softplus": unary("softplus"),
        "relu_backward": backward("relu_backward"), "sigmoid_backward": backward("sigmoid_backward"),
        "tanh_backward": backward("tanh_backward"),
        "softmax (1000x1000)": (lambda f: lambda o, x: f(o, x, rows, n // rows, 1))(k("softmax")),
        "log_softmax (1000x1000)": (lambda f: lambda o, x: f(o, x, rows, n // rows, 1))(k("log_softmax")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--min-time", type=float, default=0.2, help="seconds of timing per measurement")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="cpu: this thread's CPU time (1-thread runs); wall: elapsed time")
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="graphgrad thread counts to measure (NumPy's ufuncs are single-threaded)")
    args = parser.parse_args()

    import numpy as np
    import graphgrad as gg
    from graphgrad._core import ffi, lib

    n = args.n // 1000 * 1000
    dt = np.dtype(args.dtype)
    suffix, ctype = ("f32", "float") if dt == np.float32 else ("f64", "double")
    rng = np.random.default_rng(0)
    # positive inputs keep log / sqrt / pow finite; the second input in (0.5, 1.5)
    a = rng.uniform(0.1, 3.0, n).astype(dt)
    b = rng.uniform(0.5, 1.5, n).astype(dt)
    signed = (rng.standard_normal(n) * 3).astype(dt)
    out_np, out_gg = np.empty(n, dt), np.empty(n, dt)
    peers = _numpy_peers(np)
    kernels = _graphgrad_kernels(lib, ffi, ctype, suffix, n)
    thread_cols = sorted(set(args.threads))
    ptr = lambda arr: ffi.cast(f"{ctype} *", arr.ctypes.data)  # noqa: E731

    rows = []
    for name, (n_in, np_fn) in peers.items():
        first = a if name in ("log", "sqrt", "pow", "pow_scalar (x**1.7)") else signed
        if name in ("sigmoid_backward", "tanh_backward"):
            first = np.tanh(signed)      # a saved output in (-1, 1)
        inputs = [first, b][:n_in]
        if name.startswith(("softmax", "log_softmax")):
            inputs = [first.reshape(1000, -1)]
            o_np = out_np.reshape(1000, -1)
        else:
            o_np = out_np
        gg_fn, gg_args = kernels[name], [ptr(out_gg)] + [ptr(x) for x in inputs]
        np_fn(o_np, *inputs)
        gg_fn(*gg_args)
        np.testing.assert_allclose(out_gg, out_np, rtol=1e-5 if dt == np.float32 else 1e-12, atol=1e-5,
                                   err_msg=name)
        nbytes = (n_in + 1) * n * dt.itemsize
        t_np = _time(lambda: np_fn(o_np, *inputs), args.min_time, args.clock)
        times = {}
        for threads in thread_cols:
            gg.set_num_threads(threads)
            clock = args.clock if threads == 1 else "wall"
            times[threads] = _time(lambda: gg_fn(*gg_args), args.min_time, clock)
        rows.append({"op": name, "bytes": nbytes, "numpy_s": t_np,
                     **{f"graphgrad_{t}t_s": s for t, s in times.items()},
                     "numpy_gbps": nbytes / t_np / 1e9,
                     **{f"graphgrad_{t}t_gbps": nbytes / s / 1e9 for t, s in times.items()},
                     **{f"ratio_{t}t": t_np / s for t, s in times.items()}})
    gg.set_num_threads(0)   # back to the default
    head = f"{'op (' + str(n) + ' ' + dt.name + ')':<26}{'NumPy GB/s':>11}" + "".join(
        f"{'gg ' + str(t) + 't GB/s':>13}{'x NumPy':>9}" for t in thread_cols)
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['op']:<26}{r['numpy_gbps']:>11.2f}" + "".join(
            f"{r[f'graphgrad_{t}t_gbps']:>13.2f}{r[f'ratio_{t}t']:>9.2f}" for t in thread_cols))
    geo = {t: float(np.exp(np.mean([np.log(r[f"ratio_{t}t"]) for r in rows]))) for t in thread_cols}
    print("geometric mean ratio: " + ", ".join(f"{t} thread(s) {g:.2f}x" for t, g in geo.items()))
    path = _common.write_json("ops.json", {"machine": _common.machine(), "n": n, "dtype": dt.name,
                                           "clock": args.clock, "command": " ".join(sys.argv),
                                           "rows": rows, "geomean_ratio": geo})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
