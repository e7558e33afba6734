"""Peak memory of case c (784-1024-1024-10 ReLU, softmax cross-entropy, Adam, batch 1024): the
peak resident set size of a fresh process per implementation after a few training steps, and
graphgrad's arena peak against the naive sum of its intermediates.

Target (issue 9): graphgrad's peak RSS ≤ 0.5× PyTorch's. Writes bench/results/memory.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _common  # noqa: E402

STEPS = 5


def peak_rss_bytes() -> int:
    """VmHWM, the peak resident set of this process image (ru_maxrss would carry the parent's
    peak across fork + exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(impl: str) -> None:
    import train_step
    case = train_step.CASES["c1024"]
    baseline = peak_rss_bytes()
    builder = {"graphgrad": train_step.graphgrad_step, "numpy": train_step.numpy_step,
               "torch": train_step.torch_step}[impl]
    step = builder(case)
    for _ in range(STEPS):
        step()
    extra = {}
    if impl == "graphgrad":
        import gc
        import graphgrad as gg
        program = next(o for o in gc.get_objects() if isinstance(o, gg.Program))
        plan = program.plan()
        extra = {"arena_bytes": plan.memory.arena_bytes, "naive_bytes": plan.memory.naive_bytes}
    print(json.dumps({"peak_rss": peak_rss_bytes(), "start_rss": baseline, **extra}))


def main() -> None:
    impls = ["graphgrad", "numpy"] + (["torch"] if _common.torch_available() else [])
    if "torch" not in impls:
        print("PyTorch is not importable: its row is skipped")
    rows = {impl: _common.run_worker(__file__, [impl], threads=2) for impl in impls}
    print(f"{'implementation':<12} {'peak RSS':>10}")
    for impl, r in rows.items():
        print(f"{impl:<12} {r['peak_rss'] / 2**20:>7.0f} MiB" if r else f"{impl:<12} failed")
    g = rows.get("graphgrad")
    if g:
        print(f"graphgrad arena: {g['arena_bytes'] / 2**20:.1f} MiB peak vs {g['naive_bytes'] / 2**20:.1f} MiB naive "
              f"sum of intermediates ({g['arena_bytes'] / g['naive_bytes']:.2f}x)")
    if g and rows.get("torch"):
        print(f"graphgrad / torch peak RSS: {g['peak_rss'] / rows['torch']['peak_rss']:.2f}x (target <= 0.5x)")
    print(f"wrote {_common.write_json('memory.json', {'machine': _common.machine(), 'rows': rows})}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
    else:
        main()
