"""ONNX's own node tests (onnx.backend.test.case.node, built in memory by the installed onnx
package) for the operators graphgrad's importer supports: only those operators' case modules are
imported (all of them take ~40 s to build; these take ~2 s), and only cases whose every node is
a supported operator are kept. Shared by tests/test_onnx_backend.py and docs/onnx_node_table.py.
"""
from __future__ import annotations

import importlib

import numpy as np

from graphgrad.onnx.common import OnnxShapeError, UnsupportedOpError
from graphgrad.onnx.importer import IMPORTERS

#: operators read only as shape glue (on values known at import time): graphgrad has no op for
#: them on tensors, so their node tests (casts between tensor dtypes) are not run
GLUE_ONLY = {"Cast"}
#: the case module of an operator, where it is not the lower-cased operator name
CASE_MODULE = {"BatchNormalization": "batch_normalization"}


def load_cases() -> list[tuple[str, object]]:
    """[(operator, onnx TestCase)] for every supported operator's node tests."""
    import onnx.backend.test.case.node as node_cases
    found = []
    for op in sorted(set(IMPORTERS) - GLUE_ONLY):
        before = len(node_cases._NodeTestCases)
        importlib.import_module(f"onnx.backend.test.case.node.{CASE_MODULE.get(op, op.lower())}")
        for case in node_cases._NodeTestCases[before:]:
            if {n.op_type for n in case.model.graph.node} <= set(IMPORTERS):
                found.append((op, case))
    return found


def run_case(case) -> None:
    """Run one node test through graphgrad's backend, comparing as onnx's own runner does."""
    from onnx.backend.test.runner import Runner

    from graphgrad.onnx.backend import GraphgradBackend
    rep = GraphgradBackend.prepare(case.model, "CPU")
    for inputs, ref_outputs in case.data_sets:
        outputs = rep.run([np.asarray(x) for x in inputs])
        Runner.assert_similar_outputs(ref_outputs, outputs, rtol=case.rtol, atol=case.atol)


def outcome(case) -> tuple[str, str]:
    """("pass", ""), ("unsupported", message) for a typed, documented gap, or ("fail", message)."""
    try:
        run_case(case)
    except (UnsupportedOpError, OnnxShapeError) as err:
        return "unsupported", f"{type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 - a wrong value or an unexpected error: both are failures
        return "fail", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return "pass", ""
