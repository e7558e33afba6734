"""Backpropagation costs the same order as the forward pass.

For MLPs of growing width, this compares the forward pass with forward + backward (all the
gradients): FLOPs counted from the compiled plans, and measured time. The backward pass of a
matmul is two matmuls of the same size (one when its input needs no gradient, as the first
layer's data), so forward + backward costs 2–3× the forward — a constant factor, not one that
grows with the network. Writes out/backprop_cost.png.
"""
import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import graphgrad as gg  # noqa: E402


def mlp_loss(width: int, depth: int, n_in: int = 784, n_out: int = 10):
    x = gg.placeholder((None, n_in), name="x")
    y = gg.placeholder((None, n_out), name="y")
    h, params = x, []
    sizes = [n_in] + [width] * depth + [n_out]
    rng = np.random.default_rng(0)
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        w = gg.variable(rng.standard_normal((a, b)) / np.sqrt(a), name=f"W{i}")
        bias = gg.variable(np.zeros(b), name=f"b{i}")
        h = h @ w + bias
        h = gg.sigmoid(h) if i < depth else h
        params += [w, bias]
    return x, y, gg.mse(h, y), params


def plan_flops(program, batch):
    return program.plan(batch_size=batch).flops()   # fused instructions count every member


def best_time(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="small networks, few repeats")
    args = parser.parse_args(argv)
    widths = [32, 64, 128] if args.quick else [64, 128, 256, 512, 1024]
    repeats = 3 if args.quick else 20

    rng = np.random.default_rng(1)
    X = rng.random((args.batch, 784)).astype(np.float32)
    Y = rng.random((args.batch, 10)).astype(np.float32)
    rows = []
    print(f"{'width':>6} {'fwd MFLOP':>10} {'fwd+bwd MFLOP':>14} {'ratio':>6}   {'fwd ms':>7} {'fwd+bwd ms':>10} {'ratio':>6}")
    for width in widths:
        x, y, loss, params = mlp_loss(width, depth=2)
        forward = gg.compile(loss)
        both = gg.compile([loss] + gg.grad(loss, params))
        feeds = {x: X, y: Y}
        f_flops, b_flops = plan_flops(forward, args.batch), plan_flops(both, args.batch)
        f_time = best_time(lambda: forward(feeds), repeats)
        b_time = best_time(lambda: both(feeds), repeats)
        rows.append((width, f_flops, b_flops, f_time, b_time))
        print(f"{width:>6} {f_flops / 1e6:>10.2f} {b_flops / 1e6:>14.2f} {b_flops / f_flops:>6.2f}   "
              f"{f_time * 1e3:>7.3f} {b_time * 1e3:>10.3f} {b_time / f_time:>6.2f}")

    widths_arr = np.array([r[0] for r in rows])
    fig, (ax_f, ax_t) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (i, j), unit, scale in ((ax_f, (1, 2), "MFLOP", 1e6), (ax_t, (3, 4), "ms", 1e-3)):
        ax.plot(widths_arr, [r[i] / scale for r in rows], marker="o", label="forward")
        ax.plot(widths_arr, [r[j] / scale for r in rows], marker="o", label="forward + backward")
        ax.set(xscale="log", yscale="log", xlabel="hidden width (2 hidden layers)", ylabel=unit)
        ax.legend()
    ax_f.set_title("FLOPs per step (from the compiled plan)")
    ax_t.set_title(f"measured time per call, batch {args.batch}")
    fig.suptitle("backprop costs a constant factor (2–3×) of the forward pass")
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "backprop_cost.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")
    return {"flop_ratios": [r[2] / r[1] for r in rows], "time_ratios": [r[4] / r[3] for r in rows]}


if __name__ == "__main__":
    main()
