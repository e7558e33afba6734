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

from op_cases import OP_CASES, _away_from_half, _log_softmax, _softmax, needs_case

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
            assert code is not None, f"{name}: opcode {opdef.opcode} missing from csrc/ops.def"
            assert lib.gg_opcode_name(code) != ffi.NULL, f"{name}: the interpreter does not know {opdef.opcode}"
            # the OpDef and the C op table agree on which ops the fused loop runs
            assert bool(opdef.fusion) == bool(lib.gg_opcode_fuses(code)), \
                f"{name}: OpDef.fusion is {opdef.fusion} but csrc/ops.def's row is {'' if opdef.fusion else 'not '}fusable"
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
        with pytest.raises(gg.errors.GradcheckError, match="differs at index"):
            gg.gradcheck(lambda x: -x, [np.ones(3)])
    finally:
        reg["neg"] = good


# ---- hypothesis: random shapes and broadcasting -----------------------------------------------

binary_ops = st.sampled_from([("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.divide)])
more_binary_ops = st.sampled_from([("pow", np.power), ("maximum", np.maximum), ("minimum", np.minimum)])


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=4, min_side=0, max_side=4),
       op=binary_ops | more_binary_ops, dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
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


@pytest.mark.parametrize("shape, axis", [((300, 1500), 0), ((7, 40, 1100), (0, 1)), ((2000, 513), 0),
                                         ((64, 1, 600), (0, 1))])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_column_sums_are_the_same_bits_on_any_thread_count(shape, axis, dtype):
    """A bias gradient's sum over every axis but the last splits the columns among the threads: each
    column is still added up in row order, so one thread and two give the same bits, and both match
    the float64 reference."""
    x = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    p = gg.placeholder(shape, dtype=dtype)
    program = gg.compile(gg.sum(p, axis=axis))
    before = gg.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            gg.set_num_threads(threads)
            results.append(program({p: x}).copy())
    finally:
        gg.set_num_threads(before)
    np.testing.assert_array_equal(results[0], results[1])
    # a float32 sum in row order of n terms (|x| < 5 here) drifts by up to about n·eps·|x|
    rows = x.size // shape[-1]
    tol = TOL[dtype] if dtype == "float64" else dict(rtol=0, atol=5 * rows * np.finfo(np.float32).eps)
    np.testing.assert_allclose(results[0], x.astype(np.float64).sum(axis=axis), **tol)


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3),
       op=binary_ops)
def test_binary_broadcast_gradients_fuzz(shapes, op):
    name, _ = op
    rng = np.random.default_rng(0)
    a, b = (rng.uniform(0.5, 2.0, s) for s in shapes.input_shapes)
    assert gg.gradcheck(lambda x, y: getattr(gg, name)(x, y), [a, b], atol=1e-6, rtol=1e-5)


#: ops whose cases take any shape (all inputs alike): elementwise maps, their backward kernels, losses
# the elementwise ops and the elementwise losses (a map, then a sum), from the registry
ANY_SHAPE = [name for name, opdef in REGISTRY.items()
             if opdef.elementwise or opdef.shape is gg.ops.losses._loss_shape]
ANY_SHAPE_CASES = [(name, i) for name in ANY_SHAPE for i, c in enumerate(OP_CASES[name])
                   if len({tuple(shape) for shape in c.shapes}) == 1]


@given(which=st.sampled_from(ANY_SHAPE_CASES), shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_elementwise_ops_and_losses_at_random_shapes(which, shape, dtype, seed):
    """Every elementwise op (and loss) against NumPy at a random shape, rank 0 and empty ones included,
    and the gradient of its sum has each input's shape."""
    name, index = which
    case = OP_CASES[name][index]
    rng = np.random.default_rng(seed)
    arrays = _inputs(type(case)(case.build, case.reference, [shape] * len(case.shapes), case.prepare), rng, dtype)
    phs = [gg.placeholder(a.shape, dtype=dtype) for a in arrays]
    out = case.build(*phs)
    if out.shape == () and int(np.prod(shape)) == 0:
        return   # a loss over no elements: graphgrad's is 0 (the sum's), NumPy's mean NaN
    grads = gg.grad(gg.sum(out), phs) if case.differentiable else []
    got = gg.compile([out, *grads])({p: a for p, a in zip(phs, arrays)})
    want = case.reference(*[a.astype(np.float64) for a in arrays])
    assert np.shape(got[0]) == np.shape(want)
    np.testing.assert_allclose(np.asarray(got[0], dtype=np.float64), want, **TOL[dtype])
    for g, a in zip(got[1:], arrays):
        assert g.shape == a.shape and g.dtype == a.dtype


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


# ---- the full op set: fuzzing, stability, second derivatives, edge cases ---------------------------

@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5), data=st.data(),
       keepdims=st.booleans(), dtype=st.sampled_from(["float32", "float64"]))
def test_max_reduction_fuzz(shape, data, keepdims, dtype):
    axes = data.draw(st.lists(st.integers(0, len(shape) - 1), unique=True, max_size=len(shape)).map(tuple))
    axis = axes if axes else None
    x = np.random.default_rng(len(shape)).standard_normal(shape).astype(dtype)
    p = gg.placeholder(shape, dtype=dtype)
    if np.prod([shape[a] for a in (axes or range(len(shape)))]) == 0:
        with pytest.raises(gg.ShapeError, match="zero-size"):
            gg.max(p, axis=axis, keepdims=keepdims)
        return
    out = gg.max(p, axis=axis, keepdims=keepdims)
    want = np.max(x, axis=axis, keepdims=keepdims)
    assert out.shape == want.shape
    np.testing.assert_array_equal(gg.compile(out)({p: x}), want)


@given(shapes=hnp.mutually_broadcastable_shapes(num_shapes=1, min_dims=0, max_dims=4, min_side=0, max_side=4),
       dtype=st.sampled_from(["float32", "float64"]))
def test_broadcast_to_fuzz(shapes, dtype):
    (shape,), target = shapes.input_shapes, shapes.result_shape
    x = np.arange(np.prod(shape), dtype=dtype).reshape(shape)
    p = gg.placeholder(shape, dtype=dtype)
    np.testing.assert_array_equal(gg.compile(gg.broadcast_to(p, target))({p: x}), np.broadcast_to(x, target))


@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=4), data=st.data())
def test_transpose_and_slice_fuzz(shape, data):
    perm = data.draw(st.permutations(range(len(shape))))
    index = data.draw(hnp.basic_indices(shape, allow_newaxis=False, allow_ellipsis=True))
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    p = gg.placeholder(shape, dtype="float64")
    t, s = gg.compile([gg.transpose(p, perm), p[index]])({p: x})
    np.testing.assert_array_equal(t, np.transpose(x, perm))
    np.testing.assert_array_equal(s, x[index])


def test_max_gradient_shares_ties_evenly():
    # torch.amax's rule: the elements equal to the max share the gradient
    x = gg.placeholder((2, 4), dtype="float64")
    g = gg.grad(gg.sum(gg.max(x, axis=1)), x)
    got = gg.compile(g)({x: np.array([[1.0, 3.0, 3.0, 0.0], [5.0, 5.0, 5.0, 5.0]])})
    np.testing.assert_array_equal(got, [[0, 0.5, 0.5, 0], [0.25, 0.25, 0.25, 0.25]])


def test_maximum_gradient_splits_ties_like_pytorch():
    a, b = gg.placeholder((3,), dtype="float64"), gg.placeholder((3,), dtype="float64")
    ga, gb = gg.grad(gg.sum(gg.maximum(a, b)), [a, b])
    ra, rb = gg.compile([ga, gb])({a: np.array([1.0, 2.0, 3.0]), b: np.array([2.0, 2.0, 1.0])})
    np.testing.assert_array_equal(ra, [0, 0.5, 1])
    np.testing.assert_array_equal(rb, [1, 0.5, 0])


def test_clip_gradient_includes_the_bounds_and_nan_stays():
    x = gg.placeholder((4,), dtype="float64")
    y = gg.clip(x, -1, 1)
    out, g = gg.compile([y, gg.grad(gg.sum(y), x)])({x: np.array([-2.0, -1.0, 1.0, np.nan])})
    np.testing.assert_array_equal(out[:3], [-1, -1, 1])
    assert np.isnan(out[3])
    np.testing.assert_array_equal(g[:3], [0, 1, 1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_stable_at_large_logits(dtype):
    """softmax, log_softmax, both cross-entropies, sigmoid, softplus, tanh and BCE stay finite at ±1000,
    values and gradients, and agree with the exact values there."""
    big = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, 999.0]], dtype=dtype)
    x = gg.placeholder(big.shape, dtype=dtype)
    labels = np.array([1, 0])
    probs = np.array([[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]], dtype=dtype)
    losses = [gg.softmax_cross_entropy(x, labels), gg.softmax_cross_entropy(x, probs),
              gg.binary_cross_entropy(x, (big > 0).astype(dtype)), gg.sum(gg.log_softmax(x)),
              gg.sum(gg.softmax(x) * 3.0), gg.sum(gg.sigmoid(x)), gg.sum(gg.softplus(x)), gg.sum(gg.tanh(x))]
    grads = [gg.grad(loss, x) for loss in losses]
    values = gg.compile(losses + grads)({x: big})
    for v in values:
        assert np.isfinite(v).all()
    ce_labels, ce_probs, bce = (float(v) for v in values[:3])
    # row 0: label 1 sits 2000 below the max; row 1: label 0 sits 1999 below
    np.testing.assert_allclose(ce_labels, (2000 + 1999) / 2, rtol=1e-6)
    np.testing.assert_allclose(ce_probs, (0.5 * 2000 + 0.3 * 1000 + 1999) / 2, rtol=1e-6)
    # the ±1000 logits sit on the right side of their targets (loss 0); the one 0 logit costs log 2
    np.testing.assert_allclose(bce, np.log(2) / 6, rtol=1e-6)
    # (softmax - onehot) / rows: softmax puts all its mass on each row's max
    np.testing.assert_allclose(values[len(losses)], [[0.5, -0.5, 0], [-0.5, 0, 0.5]], atol=1e-6)


def _hvp_function(x):
    a = gg.constant(np.array([[0.3, -0.2, 0.5, 0.1], [0.2, 0.4, -0.3, 0.6], [-0.5, 0.1, 0.2, 0.3]]), dtype="float64")
    z = gg.matmul(a, x)                                  # (3, 1)
    w = gg.matmul(x, z, trans_b=True)                    # x zᵀ: (4, 3), both operands depend on x
    terms = (gg.exp(z * 0.7) + gg.log(z * z + 1.0) + gg.sqrt(z * z + 2.0) + z ** 3 * 0.1
             + (z + 2.0) ** gg.tanh(z) + gg.maximum(z, 0.05) * z + gg.minimum(z, -0.05) * z
             + z / (z * z + 1.0) - abs(z) * 0.2)
    return gg.sum(terms) + gg.sum(w * w)


def test_hessian_vector_product_matches_finite_differences():
    """gg.grad twice through the elementwise ops and matmul: H v against central differences of
    the gradient."""
    x0 = np.array([[0.4], [-0.3], [0.8], [0.2]])
    v = np.array([[1.0], [0.5], [-0.7], [0.3]])
    x = gg.placeholder((4, 1), dtype="float64")
    g = gg.grad(_hvp_function(x), x)
    hv = gg.grad(gg.sum(g * gg.constant(v, dtype="float64")), x)
    grad_fn, hv_fn = gg.compile(g), gg.compile(hv)
    eps = 1e-5
    numeric = (grad_fn({x: x0 + eps * v}) - grad_fn({x: x0 - eps * v})) / (2 * eps)
    np.testing.assert_allclose(hv_fn({x: x0}), numeric, rtol=1e-6, atol=1e-8)


SECOND_ORDER = {
    "sigmoid": gg.sigmoid, "tanh": gg.tanh, "softplus": gg.softplus, "relu": gg.relu,
    "leaky_relu": lambda x: gg.leaky_relu(x, 0.1), "elu": gg.elu, "exp": gg.exp,
    "log": lambda x: gg.log(x * x + 1.0), "sqrt": lambda x: gg.sqrt(x * x + 1.0), "pow": lambda x: x ** 3,
    "clip": lambda x: gg.clip(x, -0.5, 0.5) * x, "softmax": lambda x: gg.softmax(x, axis=0),
    "log_softmax": lambda x: gg.log_softmax(x, axis=1), "max": lambda x: gg.max(x * x, axis=1),
    "reshape_transpose": lambda x: gg.transpose(gg.reshape(x * x, (-1, 2))),
    "slice_concat": lambda x: gg.concat([x[1:] * x[1:], x[:1]], axis=0) * x,
}


@pytest.mark.parametrize("name", sorted(SECOND_ORDER))
def test_second_derivatives_by_finite_differences(name):
    fn = SECOND_ORDER[name]
    x0 = _away_from_half(np.random.default_rng(3).standard_normal((3, 4)))
    x0 = np.where(np.abs(x0) < 0.2, x0 + 0.4, x0)    # and away from the kinks at 0
    assert gg.gradcheck(lambda x: gg.grad(gg.sum(fn(x) * fn(x)), x), [x0], atol=1e-5, rtol=1e-4)


def test_gelu_has_no_second_derivative_and_says_so():
    x = gg.placeholder((3,), dtype="float64")
    g = gg.grad(gg.sum(gg.gelu(x)), x)
    with pytest.raises(gg.GradientError, match="gelu_backward"):
        gg.grad(gg.sum(g), x)


def test_labels_are_an_int64_placeholder_and_checked():
    logits = gg.placeholder((None, 4))
    labels = gg.placeholder((None,), dtype="int64")
    loss = gg.softmax_cross_entropy(logits, labels)
    f = gg.compile([loss, gg.grad(loss, logits)])
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    y = np.array([0, 3, 1, 2, 3])
    value, grad = f({logits: x, labels: y})
    ref = -np.mean(_log_softmax(x.astype(np.float64))[np.arange(5), y])
    np.testing.assert_allclose(value, ref, rtol=1e-6)
    np.testing.assert_allclose(grad, (_softmax(x.astype(np.float64)) - np.eye(4)[y]) / 5, atol=1e-7)
    with pytest.raises(gg.FeedError, match="class label"):
        f({logits: x, labels: np.array([0, 4, 1, 2, 3])})
    with pytest.raises(gg.FeedError):
        f({logits: x, labels: y.astype(np.float32)})     # float labels do not cast to int64
    with pytest.raises(gg.ShapeError, match="float32 or float64"):
        gg.exp(labels)
    with pytest.raises(gg.ShapeError, match="without the last"):
        gg.softmax_cross_entropy(logits, gg.placeholder((None, 2), dtype="int64"))


def test_shape_ops_resolve_the_batch_dimension_at_compile_time():
    x = gg.placeholder((None, 2, 3), dtype="float64")
    flat = gg.reshape(x, (None, 6))
    assert flat.shape == (None, 6) and gg.reshape(x, (-1,)).shape == (None,)
    head = x[1:3]
    both = gg.concat([x, x[::-1]], axis=0)
    wide = gg.broadcast_to(gg.sum(x, axis=(1, 2), keepdims=True), (None, 2, 3))
    loss = gg.sum(flat * flat) + gg.sum(head) + gg.sum(both * both) + gg.sum(wide)
    f = gg.compile([flat, head, both, wide, gg.grad(loss, x)])
    for n in (4, 1):
        v = np.random.default_rng(n).standard_normal((n, 2, 3))
        rf, rh, rb, rw, g = f({x: v})
        np.testing.assert_array_equal(rf, v.reshape(n, 6))
        np.testing.assert_array_equal(rh, v[1:3])
        np.testing.assert_array_equal(rb, np.concatenate([v, v[::-1]]))
        np.testing.assert_allclose(rw, np.broadcast_to(v.sum(axis=(1, 2), keepdims=True), (n, 2, 3)))
        mask = np.zeros_like(v)
        mask[1:3] = 1
        np.testing.assert_allclose(g, 2 * v + mask + 2 * v + 2 * v[::-1][::-1] + 6, rtol=1e-12)


def test_shape_op_errors_name_the_problem():
    x = gg.placeholder((3, 4))
    with pytest.raises(gg.ShapeError, match="not a multiple"):
        gg.reshape(x, (5, -1))
    with pytest.raises(gg.ShapeError, match="cannot broadcast"):
        gg.broadcast_to(x, (2, 4, 3))
    with pytest.raises(gg.ShapeError, match="out of bounds"):
        x[3]
    with pytest.raises(gg.ShapeError, match="must match"):
        gg.concat([x, gg.placeholder((3, 5))])
    with pytest.raises(gg.ShapeError, match="permutation"):
        gg.transpose(x, (0, 0))
    fed = gg.placeholder((None, 4))
    f = gg.compile(gg.reshape(fed, (3, 4)))
    with pytest.raises(gg.ShapeError, match="cannot reshape"):
        f({fed: np.zeros((2, 4), np.float32)})


# the vectorised exp / log / tanh / sigmoid / softplus / expm1 of csrc/gg_math.h replace libm's
ULP_CASES = {
    "exp": (gg.exp, np.exp, 2), "log": (lambda x: gg.log(abs(x)), lambda x: np.log(np.abs(x)), 2),
    "tanh": (gg.tanh, np.tanh, 6), "sigmoid": (gg.sigmoid, lambda x: np.where(x < 0, np.exp(x) / (1 + np.exp(x)), 1 / (1 + np.exp(-x))), 6),
    "softplus": (gg.softplus, lambda x: np.logaddexp(0, x), 6),
    "elu": (gg.elu, lambda x: np.where(x > 0, x, np.expm1(x)), 4),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(ULP_CASES))
def test_vectorised_math_is_accurate_to_a_few_ulp(name, dtype):
    build, ref, max_ulp = ULP_CASES[name]
    rng = np.random.default_rng(7)
    wide = np.geomspace(np.finfo(dtype).tiny, np.finfo(dtype).max / 4, 2000)
    x = np.concatenate([rng.standard_normal(20000) * s for s in (1e-6, 1e-3, 0.1, 1, 10, 100)]
                       + [wide, -wide]).astype(dtype)
    p = gg.placeholder(x.shape, dtype=dtype)
    got = gg.compile(build(p))({p: x}).astype(np.float64)
    with np.errstate(all="ignore"):
        want = ref(x.astype(np.float64))
        want_rounded = want.astype(dtype)
    finite = np.isfinite(want_rounded) & (np.abs(want_rounded) >= np.finfo(dtype).tiny)
    ulp = np.abs(got[finite] - want[finite]) / np.spacing(np.abs(want_rounded[finite])).astype(np.float64)
    assert ulp.max() <= max_ulp, f"{name}: {ulp.max():.1f} ulp at x = {x[finite][np.argmax(ulp)]!r}"
    # overflow, underflow and signs agree with the exact values, rounded to the dtype
    rest = ~finite & ~np.isnan(want_rounded)
    np.testing.assert_allclose(got[rest], want_rounded[rest], atol=4 * np.finfo(dtype).tiny, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vectorised_math_special_values(dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40 if dtype == "float32" else 1e-310], dtype=dtype)
    p = gg.placeholder(x.shape, dtype=dtype)
    outs = gg.compile([gg.exp(p), gg.log(p), gg.tanh(p), gg.sigmoid(p), gg.softplus(p), gg.elu(p)])({p: x})
    with np.errstate(all="ignore"):
        wants = [np.exp(x), np.log(x), np.tanh(x), 1 / (1 + np.exp(-x)), np.logaddexp(0, x),
                 np.where(x > 0, x, np.expm1(x))]
    for got, want in zip(outs, wants):
        np.testing.assert_allclose(got, want.astype(dtype), rtol=1e-6, atol=0)


@pytest.mark.parametrize("loss", ["mse", "huber", "binary_cross_entropy", "softmax_cross_entropy", "labels"])
def test_hessian_vector_product_through_a_loss(loss):
    """H v of a small tanh network's loss with respect to its weights, against central differences."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((6, 3))
    targets = {"mse": rng.standard_normal((6, 4)), "huber": 2 * rng.standard_normal((6, 4)),
               "binary_cross_entropy": rng.uniform(0, 1, (6, 4)), "softmax_cross_entropy": _softmax(rng.standard_normal((6, 4))),
               "labels": rng.integers(0, 4, 6)}
    w = gg.placeholder((3, 4), dtype="float64")
    out = gg.tanh(gg.matmul(gg.constant(X, dtype="float64"), w)) * 2.0
    if loss == "labels":
        value = gg.softmax_cross_entropy(out, targets[loss])
    else:
        value = getattr(gg, loss)(out, gg.constant(targets[loss], dtype="float64"))
    v = rng.standard_normal((3, 4))
    g = gg.grad(value, w)
    hv = gg.grad(gg.sum(g * gg.constant(v, dtype="float64")), w)
    grad_fn, hv_fn = gg.compile(g), gg.compile(hv)
    w0, eps = rng.standard_normal((3, 4)) * 0.5, 1e-5
    numeric = (grad_fn({w: w0 + eps * v}) - grad_fn({w: w0 - eps * v})) / (2 * eps)
    np.testing.assert_allclose(hv_fn({w: w0}), numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vectorised_pow_matches_numpy_including_special_cases(dtype):
    """gg.pow follows C99/NumPy: negative bases with integer exponents, ±0, ±inf, NaN, p = 0, x = 1."""
    rng = np.random.default_rng(11)
    xs = np.concatenate([rng.uniform(-5, 5, 300), np.geomspace(1e-30, 1e30, 60), -np.geomspace(1e-30, 1e30, 60),
                         [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 2.0, 0.5]])
    ps = np.concatenate([rng.uniform(-4, 4, 60), rng.integers(-5, 6, 30).astype(float),
                         [0.0, -0.0, 0.5, 1.0, 2.0, 3.0, -1.0, -2.0, np.inf, -np.inf, np.nan]])
    X, P = (g.ravel().astype(dtype) for g in np.meshgrid(xs, ps))
    px, pp = gg.placeholder(X.shape, dtype=dtype), gg.placeholder(P.shape, dtype=dtype)
    got = gg.compile(gg.pow(px, pp))({px: X, pp: P}).astype(np.float64)
    with np.errstate(all="ignore"):
        want = np.power(X.astype(np.float64), P.astype(np.float64))
        want_rounded = want.astype(dtype).astype(np.float64)
    normal = np.isfinite(want_rounded) & (np.abs(want_rounded) >= np.finfo(dtype).tiny)
    ulp = np.abs(got[normal] - want[normal]) / np.spacing(np.abs(want_rounded[normal]).astype(dtype))
    assert ulp.max() <= 6, f"{ulp.max()} ulp"
    special = ~normal
    np.testing.assert_array_equal(np.isnan(got[special]), np.isnan(want_rounded[special]))
    ok = special & ~np.isnan(want_rounded)
    np.testing.assert_allclose(got[ok], want_rounded[ok], rtol=1e-6, atol=4 * np.finfo(dtype).tiny)
    assert (np.signbit(got[ok & (want_rounded == 0)]) == np.signbit(want_rounded[ok & (want_rounded == 0)])).all()


def test_exports_come_from_the_op_functions_marked_at_their_definition():
    """gg.ops exports every @export-marked function, graphgrad the top-level ones, and gg.nn takes
    every activation-marked one by name: no export list to keep by hand."""
    assert gg.ops.EXPORTS and gg.ops.ACTIVATIONS
    for name, fn in gg.ops.EXPORTS.items():
        assert getattr(gg.ops, name) is fn and name in gg.ops.__all__
    for name in gg.ops.TOP_LEVEL:
        assert getattr(gg, name) is gg.ops.EXPORTS[name] and name in gg.__all__
    assert "sign" in gg.ops.EXPORTS and "sign" not in gg.__all__     # gg.ops only
    x = gg.placeholder((2, 3))
    for name, fn in gg.ops.ACTIVATIONS.items():
        assert gg.nn.activation_function(name) is fn
        assert gg.nn.Dense(3, 2, activation=name)(x).shape == (2, 2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_hardtanh_follows_pytorch_at_nan_and_at_the_bounds(dtype):
    """hardtanh(NaN) is NaN; the gradient is 0 at and beyond ±1 and passes strictly inside, and at NaN
    (PyTorch's hardtanh_backward masks only x <= -1 and x >= 1)."""
    x = gg.placeholder((7,), dtype=dtype)
    y = gg.hardtanh(x)
    gx = gg.grad(gg.sum(y * 3.0), x)
    values = np.array([-2.0, -1.0, -0.5, 0.0, 1.0, 2.5, np.nan], dtype=dtype)
    for passes in (None, []):      # fused and not
        out, grad = gg.compile([y, gx], passes=passes)({x: values})
        np.testing.assert_array_equal(out, np.array([-1, -1, -0.5, 0, 1, 1, np.nan], dtype=dtype))
        np.testing.assert_array_equal(grad, np.array([0, 0, 3, 3, 0, 0, 3], dtype=dtype))


# ---- NaN and Inf through the activations, as PyTorch -----------------------------------------

SPECIAL = [np.nan, -1.0, 2.0, np.inf, -np.inf, 0.0, -0.5]
#: op -> (forward as NumPy/PyTorch compute it, d out / d x at each value as PyTorch's backward)
NAN_REFERENCES = {
    "relu": (lambda v: np.where(v <= 0, 0.0, v), lambda v: np.where(v <= 0, 0.0, 1.0)),
    "leaky_relu": (lambda v: np.where(v > 0, v, 0.01 * v), lambda v: np.where(v > 0, 1.0, 0.01)),
    "elu": (lambda v: np.where(v > 0, v, np.expm1(np.minimum(v, 0))),
            lambda v: np.where(v > 0, 1.0, np.exp(np.minimum(v, 0)))),
    "hardtanh": (lambda v: np.clip(v, -1, 1), lambda v: np.where((v <= -1) | (v >= 1), 0.0, 1.0)),
    "clip": (lambda v: np.clip(v, -0.7, 0.7), lambda v: np.where((v >= -0.7) & (v <= 0.7), 1.0, 0.0)),
    "maximum": (lambda v: np.maximum(v, 0.5), None),
    "minimum": (lambda v: np.minimum(v, 0.5), None),
}


#: d out / d x at x = NaN in PyTorch's backward kernels: relu's threshold_backward, elu's and
#: hardtanh's mask only their other side, so NaN passes; leaky_relu takes the slope; clamp's mask is 0
NAN_SLOPE = {"relu": 1.0, "leaky_relu": 0.01, "elu": 1.0, "hardtanh": 1.0, "clip": 0.0}


def _nan_op(name, x):
    if name == "clip":
        return gg.clip(x, -0.7, 0.7)
    if name in ("maximum", "minimum"):
        return getattr(gg, name)(x, gg.constant(0.5, dtype=x.dtype))
    return getattr(gg, name)(x)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", sorted(NAN_REFERENCES))
def test_nan_and_inf_propagate_through_activations_as_pytorch(name, dtype):
    """relu(NaN) is NaN (it was 0), in the op's own kernel, in a fused chain and in its gradient."""
    forward, slope = NAN_REFERENCES[name]
    values = np.array(SPECIAL, dtype=dtype)
    x = gg.placeholder((len(SPECIAL),), dtype=dtype, name="x")
    y = _nan_op(name, x)
    outputs = [y, y * 2.0]                                   # y * 2: fused with the op when fusion is on
    if slope is not None:
        outputs.append(gg.grad(gg.sum(y * 3.0), x))
    with np.errstate(invalid="ignore"):
        want = forward(values.astype(np.float64))
    for passes in (None, []):
        got = gg.compile(outputs, passes=passes)({x: values})
        np.testing.assert_allclose(got[0], want.astype(dtype), rtol=1e-6)
        np.testing.assert_allclose(got[1], (2 * want).astype(dtype), rtol=1e-6)
        if slope is not None:
            with np.errstate(invalid="ignore"):
                want_grad = 3 * slope(values.astype(np.float64))
            want_grad = np.where(np.isnan(values), 3 * NAN_SLOPE[name], want_grad)
            np.testing.assert_allclose(got[2], want_grad.astype(dtype), rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
def test_nan_rows_propagate_through_the_gemm_epilogue(activation, dtype):
    """matmul + bias + activation runs in the GEMM's epilogue: a NaN input row gives a NaN output row
    there too (a Dense layer fed a NaN sample must not return finite garbage)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(33, 17)).astype(dtype)
    X[4, 3], X[20, 0], X[31, 16] = np.nan, np.inf, -np.inf
    W = rng.normal(size=(17, 9)).astype(dtype)
    b = rng.normal(size=9).astype(dtype)
    x = gg.placeholder((None, 17), dtype=dtype, name="x")
    y = getattr(gg, activation)(x @ gg.constant(W, dtype=dtype) + gg.constant(b, dtype=dtype))
    with np.errstate(invalid="ignore", over="ignore"):
        z = X.astype(np.float64) @ W + b
        want = np.where(z <= 0, 0.0, z) if activation == "relu" else 1 / (1 + np.exp(-z))
    for passes in (None, []):
        got = gg.compile(y, passes=passes)(x=X)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = ~np.isnan(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-4, atol=1e-5)
