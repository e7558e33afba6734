"""ONNX's own backend node tests judge graphgrad's op semantics: onnx.backend.test.BackendTest
runs every supported operator's node test cases (tests/onnx_node_cases.py) through
graphgrad.onnx.backend (import + compile + run), and compares with ONNX's expected outputs.

EXCLUDED lists the cases graphgrad documents as unsupported (docs/onnx.md, "Known gaps"); each
of them is checked below to raise a typed error (UnsupportedOpError / OnnxShapeError), never a
wrong answer.
"""
import re
from unittest import mock

import numpy as np
import onnx.backend.test.runner
import pytest
from onnx.backend.test import BackendTest

from graphgrad.onnx.backend import GraphgradBackend, GraphgradRep, prepare, run_model, supports_device
from onnx_node_cases import load_cases, outcome

# (regex over the test name, why graphgrad does not run it)
EXCLUDED = [
    (r"^test_(add|sub|mul|div|max|min)_(u?int\d+|float16)|^test_pow_types_u?int\d+_|^test_clip_default_int8_(min|max|inbounds)$",
     "integer and float16 tensors: graphgrad computes in float32 and float64 (it reads integers only as shapes, "
     "axes, indices and bounds)"),
    (r"^test_reduce_max_(bool_inputs|empty_set_bool)$", "bool tensors"),
    (r"^test_reduce_max_empty_set$", "max over zero elements: graphgrad raises (as NumPy) where ONNX gives -inf"),
    (r"^test_matmul_(3d|4d|bcast|1d_3d)$", "batched MatMul (a right operand of rank > 2): graphgrad's matmul is 2-D"),
    (r"^test_identity_(sequence|opt)$", "sequence and optional values: graphgrad has tensors only"),
    (r"^test_training_dropout(_default)?(_mask)?$", "training-mode Dropout with a ratio > 0 draws random masks"),
    (r"^test_(average|max)pool_(1d|3d)_", "1-D and 3-D pooling: graphgrad pools 2-D (NCHW) images"),
    (r"^test_(average|max)pool_2d_same_(upper|lower)$|^test_(average|max)pool_2d_pads(_count_include_pad)?$",
     "padding graphgrad's pooling does not take: one side more than the other (an even kernel's SAME), or more "
     "than half the kernel (windows of padding only; PyTorch refuses it too)"),
    (r"^test_(average|max)pool_2d_ceil", "ceil_mode=1 where it adds a partial last window: graphgrad pools in "
     "floor mode (ceil_mode=1 is read where it changes nothing)"),
    (r"^test_(average|max)pool_2d_dilations$", "dilated pooling"),
    (r"^test_maxpool_2d_uint8$", "integer tensors (uint8 images)"),
    (r"^test_maxpool_with_argmax_", "MaxPool's second output, the arg-max indices"),
    (r"^test_batchnorm_(example|epsilon)_training_mode$", "training-mode BatchNormalization (training_mode=1 and "
     "its running-statistics outputs): an imported model is an inference graph; gg.fit fine-tunes it with the "
     "running statistics held fixed"),
]

CASES = load_cases()


def _excluded(name: str) -> bool:
    return any(re.search(pattern, name) for pattern, _ in EXCLUDED)


def _node_cases(kind_filter):
    return lambda data_dir=None, kind=None: [c for _, c in CASES if kind_filter(c.name)] if kind == "node" else []


# BackendTest loads every node test of the onnx package (~40 s) and the model tests too; it gets
# only the supported operators' cases here, and no model tests (they need downloads or other ops)
with mock.patch.object(onnx.backend.test.runner, "load_model_tests", _node_cases(lambda name: not _excluded(name))):
    backend_test = BackendTest(GraphgradBackend, __name__)

_test_cases = backend_test.test_cases      # (a property that builds new classes on every read)
for _suite in _test_cases.values():
    # graphgrad runs on CPUs: the CUDA variants are removed rather than reported as skipped
    for _test in [t for t in vars(_suite) if t.endswith("_cuda")]:
        delattr(_suite, _test)
del _suite           # (a module-level TestCase class would be collected twice)
globals().update(_test_cases)


def test_every_supported_operator_has_passing_node_tests():
    from graphgrad.onnx.importer import IMPORTERS
    from onnx_node_cases import GLUE_ONLY
    run = [(op, c) for op, c in CASES if not _excluded(c.name)]
    assert {op for op, _ in run} == set(IMPORTERS) - GLUE_ONLY
    assert len(run) > 200


@pytest.mark.parametrize("case", [c for _, c in CASES if _excluded(c.name)], ids=lambda c: c.name)
def test_excluded_cases_raise_typed_errors(case):
    status, message = outcome(case)
    assert status == "unsupported", message


def test_every_exclusion_matches_a_case():
    names = [c.name for _, c in CASES]
    for pattern, reason in EXCLUDED:
        assert any(re.search(pattern, n) for n in names), (pattern, reason)


def test_backend_interface():
    from onnx import TensorProto, helper
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert supports_device("CPU") and not supports_device("CUDA")
    rep = prepare(model)
    assert isinstance(rep, GraphgradRep)
    for n in (1, 3):      # one import, specialised per batch size
        x = np.linspace(-1, 1, 2 * n, dtype=np.float32).reshape(n, 2)
        (y,) = rep.run([x])
        np.testing.assert_array_equal(y, np.maximum(x, 0))
    (y,) = run_model(model, {"x": np.array([[-2.0, 5.0]], np.float32)})
    np.testing.assert_array_equal(y, [[0.0, 5.0]])
