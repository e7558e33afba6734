"""Prints the table of ONNX node-test results per operator (pass / fail / unsupported) that
docs/onnx.md shows: every node test case of the installed onnx package for the operators
graphgrad's importer supports, run through graphgrad.onnx.backend. "unsupported" is a case that
raises graphgrad's typed UnsupportedOpError / OnnxShapeError (a documented gap); "fail" is a
wrong value or any other error. Run from the repository root:

    python docs/onnx_node_table.py            # the Markdown table
    python docs/onnx_node_table.py --details  # and the message of every case that did not pass
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--details", action="store_true")
    args = parser.parse_args(argv)
    import onnx
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # onnx's case builders warn about their own casts
        from onnx_node_cases import load_cases, outcome
        cases = load_cases()
        counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        notes = []
        for op, case in cases:
            status, message = outcome(case)
            counts[op][status] += 1
            if status != "pass":
                notes.append((op, case.name, status, message))
    print(f"ONNX {onnx.__version__} node tests, graphgrad.onnx.backend\n")
    print("| operator | pass | fail | unsupported |")
    print("|---|---:|---:|---:|")
    total = collections.Counter()
    for op in sorted(counts):
        c = counts[op]
        total.update(c)
        print(f"| {op} | {c['pass']} | {c['fail']} | {c['unsupported']} |")
    print(f"| **all** | **{total['pass']}** | **{total['fail']}** | **{total['unsupported']}** |")
    if args.details:
        print()
        for op, name, status, message in notes:
            print(f"- {name} ({op}): {status}: {message.splitlines()[0][:160]}")
    return {op: dict(c) for op, c in counts.items()}


if __name__ == "__main__":
    main()
