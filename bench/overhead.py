"""Fixed costs: what one call of a compiled program costs when the work is tiny, and what one
more instruction costs, against NumPy and PyTorch doing the same tiny work.

  per call:        one add of two 4-element float32 vectors
  per instruction: a chain of 1,000 tiny ops (alternating x·c and x + c on 4 elements), compiled
                   with passes=[] so every op stays an instruction; (chain − single) / 999

Targets (issue 9): ≤ 3 µs per call, ≤ 50 ns per instruction. Writes bench/results/overhead.json.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _common  # noqa: E402

_common.pin_threads(1)
import numpy as np  # noqa: E402

import graphgrad as gg  # noqa: E402

CHAIN = 1000


def graphgrad_costs():
    a = gg.placeholder((4,), name="a")
    b = gg.placeholder((4,), name="b")
    single = gg.compile(a + b, passes=[])
    A, B = np.ones(4, np.float32), np.ones(4, np.float32)
    feeds = {a: A, b: B}
    per_call = _common.time_per_call(lambda: single(feeds))
    x = a
    for i in range(CHAIN):
        x = x * 1.0001 if i % 2 == 0 else x + 0.0001
    chain = gg.compile(x, passes=[])
    assert len(chain.plan(batch_size=None).instructions) == CHAIN
    per_chain = _common.time_per_call(lambda: chain({a: A}))
    feed_one = {a: A}
    single_a = gg.compile(a * 1.0001, passes=[])
    per_single = _common.time_per_call(lambda: single_a(feed_one))
    return per_call, (per_chain - per_single) / (CHAIN - 1)


def numpy_costs():
    A, B = np.ones(4, np.float32), np.ones(4, np.float32)
    per_call = _common.time_per_call(lambda: np.add(A, B))

    def chain():
        x = A
        for i in range(CHAIN):
            x = x * np.float32(1.0001) if i % 2 == 0 else x + np.float32(0.0001)
        return x
    return per_call, _common.time_per_call(chain) / CHAIN


def torch_costs():
    import torch
    torch.set_num_threads(1)
    A, B = torch.ones(4), torch.ones(4)
    with torch.no_grad():
        per_call = _common.time_per_call(lambda: torch.add(A, B))

        def chain():
            x = A
            for i in range(CHAIN):
                x = x * 1.0001 if i % 2 == 0 else x + 0.0001
            return x
        return per_call, _common.time_per_call(chain) / CHAIN


def main():
    rows = {"graphgrad": graphgrad_costs(), "numpy": numpy_costs()}
    if _common.torch_available():
        rows["torch (eager, no_grad)"] = torch_costs()
    else:
        print("PyTorch is not importable: its row is skipped")
    print(f"{'implementation':<24} {'per call':>10} {'per op/instruction':>20}")
    for name, (call, op) in rows.items():
        print(f"{name:<24} {call * 1e6:>8.2f} µs {op * 1e9:>17.1f} ns")
    gg_call, gg_op = rows["graphgrad"]
    print(f"targets: per call ≤ 3 µs ({'met' if gg_call <= 3e-6 else 'NOT met'}), "
          f"per instruction ≤ 50 ns ({'met' if gg_op <= 50e-9 else 'NOT met'})")
    path = _common.write_json("overhead.json", {"machine": _common.machine(), "seconds": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
