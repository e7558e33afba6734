"""What the compiler buys on one training step: a 784-(1024x8)-10 ReLU MLP, softmax
cross-entropy, Adam, batch 256, float32 — compiled with every pass and with none, in the same
process, on the same data and the same initial weights.

Reports: instructions before/after fusion, arena peak against the naive sum of intermediates
(one slot each, no reuse), compile time (the compiler proper: passes + schedule, then the shape
specialisation: fusion, memory plan, lowering, C structures; and gg.compile end to end, which
adds autodiff and the optimizer's state allocation), and the step time with the passes on
against off (steps of the two programs interleaved, median per step).
Prints a table and writes bench/results/compiler.json.

    python bench/compiler.py [--steps 4] [--rounds 3] [--batch 256] [--width 1024] [--depth 8]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import graphgrad as gg  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def build(width: int, depth: int, seed: int = 0):
    """The MLP's loss and its variables (the same weights for the same seed)."""
    rng = np.random.default_rng(seed)
    sizes = [784] + [width] * depth + [10]
    x = gg.placeholder((None, 784), name="x")
    y = gg.placeholder((None, 10), name="y")
    h = x
    for k, (m, n) in enumerate(zip(sizes, sizes[1:])):
        w = gg.variable(rng.normal(size=(m, n)) * np.sqrt(2.0 / m), name=f"w{k}")
        b = gg.variable(np.zeros(n), name=f"b{k}")
        h = h @ w + b
        if k < len(sizes) - 2:
            h = gg.relu(h)
    return gg.softmax_cross_entropy(h, y), x, y


def compile_step(width, depth, batch, passes):
    """(program, seconds: gg.compile + first specialisation end to end; of which the optimizer's
    autodiff and state allocation; the compiler proper: passes + schedule, then fusion + memory
    plan + lowering + C structures for the batch)."""
    loss, x, y = build(width, depth)
    started = time.perf_counter()
    step = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-3), passes=passes)
    exe = step.executable(((batch, 784), (batch, 10)))
    total = time.perf_counter() - started
    return step, {"end_to_end_s": total, "optimizer_s": step.compile_seconds["optimizer"],
                  "graph_s": step.compile_seconds["graph"], "specialise_s": exe.compile_seconds}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4, help="steps per timed round, per program")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--width", type=int, default=1024)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--compiles", type=int, default=3, help="compile-time repeats (best is reported)")
    args = ap.parse_args()

    configs = {"no passes": [], "graph passes, no fusion": ["fold_constants", "simplify", "cse"], "all passes": None}
    rows = {}
    for label, passes in configs.items():
        timings = [compile_step(args.width, args.depth, args.batch, passes)[1] for _ in range(args.compiles)]
        step, _ = compile_step(args.width, args.depth, args.batch, passes)
        plan = step.plan(batch_size=args.batch)
        best = {k: min(t[k] for t in timings) for k in timings[0]}
        rows[label] = {
            "instructions": len(plan.instructions),
            "fused_instructions": sum(ins.fused for ins in plan.instructions),
            "arena_peak_bytes": plan.memory.arena_bytes,
            "naive_bytes": plan.memory.naive_bytes,
            "passes_schedule_ms": 1e3 * best["graph_s"],
            "specialise_ms": 1e3 * best["specialise_s"],
            "compile_ms": 1e3 * (best["graph_s"] + best["specialise_s"]),
            "optimizer_ms": 1e3 * best["optimizer_s"],
            "end_to_end_ms": 1e3 * best["end_to_end_s"],
            "step": step,
        }
    naive_unopt = rows["no passes"]["naive_bytes"]

    # step time: the two programs' steps interleaved, so machine noise hits both alike
    rng = np.random.default_rng(1)
    X = rng.random((args.batch, 784), dtype=np.float32)
    Y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.batch)]
    timed = {label: [] for label in configs}
    for label in timed:
        rows[label]["step"](x=X, y=Y)   # warm-up
    for _ in range(args.rounds):
        for label in timed:
            step = rows[label]["step"]
            for _ in range(args.steps):
                started = time.perf_counter()
                step(x=X, y=Y)
                timed[label].append(time.perf_counter() - started)
    for label, samples in timed.items():
        rows[label]["step_ms"] = 1e3 * statistics.median(samples)

    mib = 2 ** 20
    print(f"train step: 784-({args.width}x{args.depth})-10 ReLU MLP, softmax cross-entropy, Adam, batch {args.batch}, "
          f"float32, {gg.get_num_threads()} threads")
    header = (f"{'compiled with':<24} {'instr':>5} {'fused':>5} {'arena peak':>11} {'naive sum':>10} {'peak/naive':>10} "
              f"{'compile ms':>10} {'(passes':>7} {'+ plan)':>7} {'gg.compile ms':>13} {'step ms':>9}")
    print(header)
    print("-" * len(header))
    for label, r in rows.items():
        step_ms = f"{r['step_ms']:9.1f}"
        print(f"{label:<24} {r['instructions']:>5} {r['fused_instructions']:>5} {r['arena_peak_bytes'] / mib:>7.1f} MiB "
              f"{r['naive_bytes'] / mib:>6.1f} MiB {r['arena_peak_bytes'] / r['naive_bytes']:>10.2f} "
              f"{r['compile_ms']:>10.1f} {r['passes_schedule_ms']:>7.1f} {r['specialise_ms']:>7.1f} "
              f"{r['end_to_end_ms']:>13.1f} {step_ms}")
    on, off = rows["all passes"], rows["no passes"]
    summary = {
        "instructions_before_fusion": rows["graph passes, no fusion"]["instructions"],
        "instructions_after_fusion": on["instructions"],
        "instructions_no_passes": off["instructions"],
        "arena_peak_over_naive": on["arena_peak_bytes"] / on["naive_bytes"],
        "arena_peak_over_naive_of_unoptimised_plan": on["arena_peak_bytes"] / naive_unopt,
        "compile_ms": on["compile_ms"],
        "gg_compile_end_to_end_ms": on["end_to_end_ms"],
        "of_which_optimizer_autodiff_and_state_ms": on["optimizer_ms"],
        "step_ms_passes_on": on["step_ms"],
        "step_ms_passes_off": off["step_ms"],
        "step_speedup": off["step_ms"] / on["step_ms"],
        "step_ms_graph_passes_no_fusion": rows["graph passes, no fusion"]["step_ms"],
    }
    print("-" * len(header))
    print("compile ms: the compiler proper — graph passes and schedule, then fusion, memory plan, lowering and the C\n"
          "structures for the batch; gg.compile ms: end to end, adding autodiff and Adam's state allocation (m, v)")
    print(f"instructions {summary['instructions_before_fusion']} -> {summary['instructions_after_fusion']} with fusion; "
          f"arena peak {summary['arena_peak_over_naive']:.2f}x the naive sum (target <= 0.5); "
          f"compile {summary['compile_ms']:.1f} ms (target <= 50); "
          f"step {summary['step_ms_passes_off']:.1f} -> {summary['step_ms_passes_on']:.1f} ms "
          f"({summary['step_speedup']:.2f}x)")
    os.makedirs(RESULTS, exist_ok=True)
    out = {"config": vars(args), "threads": gg.get_num_threads(),
           "rows": {k: {kk: vv for kk, vv in v.items() if kk != "step"} for k, v in rows.items()},
           "summary": summary}
    with open(os.path.join(RESULTS, "compiler.json"), "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
