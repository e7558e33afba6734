"""Every op: forward against NumPy in float32 and float64, backward by finite differences in
float64, and random shapes / broadcasting with hypothesis. The registry test fails when an op
lacks a case or its opcode is unknown to the C interpreter."""
import warnings

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import graphgrad as gg
from graphgrad._core import ffi, lib
from graphgrad.ops import REGISTRY

from op_cases import OP_CASES, needs_case

CASES = [(name, i, case) for name, cases in OP_CASES.items() for i, case in enumerate(cases)]
IDS = [f"{name}-{i}" for name, i, _ in CASES]
TOL = {"float32": dict(rtol=2e-5, atol=2e-6), "float64": dict(rtol=1e-12, atol=1e-12)}


def _inputs(case, rng, dtype):
    arrays = []
    for k, shape in enumerate(case.shapes):
        a = rng.standard_normal(shape)
        prep = case.prepare[k] if k < len(case.prepare) else None
        arrays.append(np.asarray(prep(a) if prep else a, dtype=dtype))
    return arrays


def test_registry_is_complete():
    for name, opdef in REGISTRY.items():
        if opdef.opcode is not None:
            code = getattr(lib, opdef.opcode, None)
            assert code is not None, f"{name}: opcode {opdef.opcode} missing from csrc/graphgrad.h"
            assert lib.gg_opcode_name(code) != ffi.NULL, f"{name}: the interpreter does not know {opdef.opcode}"
        if needs_case(opdef):
            assert OP_CASES.get(name), f"op {name} has no forward/gradcheck case in tests/op_cases.py"
            if opdef.grad is not None:
                assert any(c.differentiable for c in OP_CASES[name]), f"op {name} has no gradcheck"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,index,case", CASES, ids=IDS)
def test_forward_matches_numpy(name, index, case, dtype, rng):
    arrays = _inputs(case, rng, dtype)
    phs = [gg.placeholder(a.shape, dtype=dtype) for a in arrays]
    out = case.build(*phs)
    assert out.dtype == np.dtype(dtype)
    got = gg.compile(out)({p: a for p, a in zip(phs, arrays)})
    want = case.reference(*[a.astype(np.float64) for a in arrays])
    assert np.shape(got) == np.shape(want)
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, **TOL[dtype])


@pytest.mark.parametrize("name,index,case", [c for c in CASES if c[2].differentiable],
                         ids=[i for i, c in zip(IDS, CASES) if c[2].differentiable])
def test_backward_by_finite_differences(name, index, case, rng):
    arrays = _inputs(case, rng, "float64")
    assert gg.gradcheck(case.build, arrays, atol=1e-6, rtol=1e-5)


def test_gradcheck_reports_a_wrong_gradient():
    # a deliberately wrong gradient rule must be caught and located
    from graphgrad.ops.registry import OpDef, register, REGISTRY as reg
    import dataclasses
    good = reg["neg"]
    reg["neg"] = dataclasses.replace(good, grad=lambda node, g: [g])  # wrong sign
    try:
        with pytest.raises(gg.gradcheck.__globals__["GradcheckError"], match="differs at index"):
            gg.gradcheck(lambda x: -x, [np.ones(3)])
    finally:
        reg["neg"] = good


# ---- hypothesis: random shapes and broadcasting -----------------------------------------------

binary_ops = st.sampled_from([("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.divide)])


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=0, max_side=4),
       op=binary_ops, dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_binary_broadcasting_fuzz(shapes, op, dtype, seed):
    name, ref = op
    rng = np.random.default_rng(seed)
    a, b = (rng.uniform(0.5, 2.0, s).astype(dtype) for s in shapes.input_shapes)
    pa, pb = gg.placeholder(a.shape, dtype=dtype), gg.placeholder(b.shape, dtype=dtype)
    out = getattr(gg, name)(pa, pb)
    assert out.shape == shapes.result_shape
    got = gg.compile(out)({pa: a, pb: b})
    np.testing.assert_allclose(got, ref(a, b), **TOL[dtype])


@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5), data=st.data(),
       keepdims=st.booleans(), mean=st.booleans())
def test_reduction_fuzz(shape, data, keepdims, mean):
    axes = data.draw(st.lists(st.integers(0, len(shape) - 1), unique=True, max_size=len(shape)).map(tuple))
    axis = axes if axes else None
    if mean and np.prod([shape[a] for a in (axes or range(len(shape)))]) == 0:
        return  # the mean of nothing is NaN in NumPy (with a warning); checked separately below
    x = np.random.default_rng(len(shape)).standard_normal(shape)
    p = gg.placeholder(shape, dtype="float64")
    out = (gg.mean if mean else gg.sum)(p, axis=axis, keepdims=keepdims)
    want = (np.mean if mean else np.sum)(x, axis=axis, keepdims=keepdims)
    assert out.shape == want.shape
    np.testing.assert_allclose(gg.compile(out)({p: x}), want, rtol=1e-12, atol=1e-12)


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3),
       op=binary_ops)
def test_binary_broadcast_gradients_fuzz(shapes, op):
    name, _ = op
    rng = np.random.default_rng(0)
    a, b = (rng.uniform(0.5, 2.0, s) for s in shapes.input_shapes)
    assert gg.gradcheck(lambda x, y: getattr(gg, name)(x, y), [a, b], atol=1e-6, rtol=1e-5)


def test_mean_of_empty_is_nan_like_numpy():
    p = gg.placeholder((0, 3), dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want = np.mean(np.zeros((0, 3)), axis=0)
    got = gg.compile(gg.mean(p, axis=0))({p: np.zeros((0, 3))})
    assert np.isnan(got).all() and np.isnan(want).all() and got.shape == want.shape


def test_large_parallel_sizes_match_numpy(rng):
    # big enough for the OpenMP paths of the elementwise and reduction kernels
    a = rng.standard_normal((300, 400)).astype(np.float32)
    b = rng.standard_normal(400).astype(np.float32)
    pa, pb = gg.placeholder(a.shape), gg.placeholder(b.shape)
    s, m, r = gg.compile([pa * pb + pb, gg.sum(pa, axis=0), gg.sigmoid(pa)])({pa: a, pb: b})
    np.testing.assert_allclose(s, a * b + b, rtol=1e-6)
    np.testing.assert_allclose(m, a.sum(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(r, 1 / (1 + np.exp(-a)), rtol=1e-6)
