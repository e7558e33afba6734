"""Convolutional ops and layers beyond the registry cases of test_ops: gradchecks over the
geometry (strides, paddings, dilations, odd/even sizes, channel and batch counts), second
derivatives (a Hessian-vector product through conv + pooling), random shapes with hypothesis,
one thread against two, fused against unfused, the errors bad geometry gets, batch norm's
running statistics, and the column buffers in the memory plan."""
import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import graphgrad as gg
from graphgrad.ops import make

import conv_reference as cref

# ---- gradients over the geometry ----------------------------------------------------------------

#: (batch, in_channels, height, width, out_channels, kernel, stride, padding, dilation)
GEOMETRIES = [
    (1, 1, 5, 5, 1, 3, 1, 0, 1),
    (2, 3, 6, 7, 2, 3, 1, 1, 1),
    (3, 2, 7, 6, 4, 2, 2, 0, 1),
    (2, 3, 8, 8, 3, 3, 2, 2, 1),
    (1, 2, 9, 7, 2, 3, 1, 2, 2),
    (2, 1, 9, 10, 3, 2, 2, 1, 2),
    (3, 4, 6, 5, 2, (3, 1), (1, 2), (1, 0), (2, 1)),
    (2, 3, 4, 4, 5, 1, 1, 0, 1),        # pointwise: no column buffer
    (2, 2, 5, 5, 3, 5, 1, 0, 1),        # the kernel covers the whole image
]
IDS = [f"n{g[0]}c{g[1]}h{g[2]}w{g[3]}o{g[4]}k{g[5]}s{g[6]}p{g[7]}d{g[8]}" for g in GEOMETRIES]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


def _arrays(geometry, rng, bias=True):
    n, c, h, w, o, k, s, p, d = geometry
    kh, kw = _pair(k)
    arrays = [rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c, kh, kw))]
    return arrays + ([rng.standard_normal(o)] if bias else [])


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=IDS)
def test_conv2d_forward_and_gradients(geometry, rng):
    n, c, h, w, o, k, s, p, d = geometry
    x, wt, b = _arrays(geometry, rng)
    conv = lambda x, w, b: gg.conv2d(x, w, b, stride=s, padding=p, dilation=d)  # noqa: E731
    X, W, B = (gg.placeholder(a.shape, dtype="float64") for a in (x, wt, b))
    got = gg.compile(conv(X, W, B))({X: x, W: wt, B: b})
    np.testing.assert_allclose(got, cref.conv2d(x, wt, b, s, p, d), rtol=1e-12, atol=1e-12)
    assert gg.gradcheck(conv, [x, wt, b], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("geometry", GEOMETRIES[:7], ids=IDS[:7])
def test_conv2d_gradient_ops_have_gradients(geometry, rng):
    """conv2d_input_grad and conv2d_weight_grad are differentiable in both inputs (second order)."""
    n, c, h, w, o, k, s, p, d = geometry
    x, wt = _arrays(geometry, rng, bias=False)
    y = cref.conv2d(x, wt, None, s, p, d)
    dy = rng.standard_normal(y.shape)
    attrs = {"stride": _pair(s), "padding": _pair(p), "dilation": _pair(d)}
    input_hw = (h, w)
    assert gg.gradcheck(lambda g, k: make("conv2d_input_grad", [g, k], {**attrs, "input_hw": input_hw}), [dy, wt],
                        atol=1e-6, rtol=1e-5)
    assert gg.gradcheck(lambda x, g: make("conv2d_weight_grad", [x, g], {**attrs, "kernel": wt.shape[2:]}),
                        [x, dy], atol=1e-6, rtol=1e-5)


def test_hessian_vector_product_through_conv_and_pooling(rng):
    """H·v of a small conv net's loss in its first kernel, against finite differences of the gradient."""
    x = rng.standard_normal((2, 2, 8, 8))
    w1_value, w2_value = rng.standard_normal((3, 2, 3, 3)), rng.standard_normal((2, 3, 2, 2))
    v_value = rng.standard_normal(w1_value.shape)
    w1 = gg.variable(w1_value, dtype="float64")
    w2 = gg.variable(w2_value, dtype="float64")
    v = gg.constant(v_value, dtype="float64")
    X = gg.placeholder(x.shape, dtype="float64")
    h = gg.max_pool2d(gg.tanh(gg.conv2d(X, w1, padding=1)), 2)
    h = gg.avg_pool2d(gg.tanh(gg.conv2d(h, w2, stride=1, padding=1)), 2)
    loss = gg.sum(h * h)
    (g,) = gg.grad(loss, [w1])
    (hv,) = gg.grad(gg.sum(g * v), [w1])
    hv_got = gg.compile(hv)({X: x})
    grad_at = gg.compile(g)
    eps = 1e-5
    w1.assign(w1_value + eps * v_value)
    plus = grad_at({X: x})
    w1.assign(w1_value - eps * v_value)
    minus = grad_at({X: x})
    np.testing.assert_allclose(hv_got, (plus - minus) / (2 * eps), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op,kernel,stride,padding", [("max_pool2d", 2, None, 0), ("max_pool2d", 3, 2, 1),
                                                      ("avg_pool2d", 2, None, 0), ("avg_pool2d", 3, 2, 1),
                                                      ("max_pool2d", (2, 3), (1, 2), (1, 1))])
@pytest.mark.parametrize("shape", [(1, 1, 6, 6), (2, 3, 7, 5)])
def test_pooling_gradients_to_second_order(op, kernel, stride, padding, shape, rng):
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.1   # distinct values: the arg-max is stable
    pool = getattr(gg, op)
    assert gg.gradcheck(lambda x: pool(x, kernel, stride, padding), [x], atol=1e-6, rtol=1e-5)
    dy = rng.standard_normal(pool(gg.placeholder(shape, dtype="float64"), kernel, stride, padding).shape)
    attrs = {"kernel_size": kernel, "stride": stride, "padding": padding}
    if op == "max_pool2d":
        X = gg.constant(x, dtype="float64")
        assert gg.gradcheck(lambda g: make("max_pool2d_backward", [X, g], attrs), [dy], atol=1e-6, rtol=1e-5)
    else:
        attrs["input_hw"] = shape[2:]
        assert gg.gradcheck(lambda g: make("avg_pool2d_backward", [g], attrs), [dy], atol=1e-6, rtol=1e-5)


def test_max_pool_tie_goes_to_the_first_maximum():
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, 1] = x[0, 0, 0, 1] = 3.0   # two maxima in the first window: row-major first is (0, 1)
    X = gg.placeholder(x.shape, dtype="float64")
    (dx,) = gg.grad(gg.sum(gg.max_pool2d(X, 2)), [X])
    got = gg.compile(dx)({X: x})
    want = np.zeros_like(x)
    want[0, 0, 0, 1] = 1.0
    want[0, 0, 0, 2] = 1.0   # the second window is all zeros: its first element
    np.testing.assert_array_equal(got, want)


# ---- random shapes ------------------------------------------------------------------------------

#: float32 geometries wider than one 16-lane vector, and the first layer of mnist_convnet (one input
#: channel, 3×3), which have vectorised and direct kernels of their own on AVX-512
WIDE_GEOMETRIES = [
    (2, 1, 28, 28, 32, 3, 1, 0, 1),
    (2, 1, 28, 31, 5, 3, 1, 1, 1),
    (1, 1, 30, 34, 3, 3, 1, 2, 1),
    (3, 1, 9, 40, 2, 3, 1, (0, 2), 1),
    (2, 3, 20, 37, 4, 3, 1, 1, 1),
    (2, 2, 19, 40, 3, 3, 1, 1, 2),
    (2, 2, 17, 35, 3, (3, 5), 1, (1, 2), 1),
    (2, 1, 23, 33, 3, 3, 2, 1, 1),
    (1, 2, 13, 18, 4, 3, (1, 2), 0, 1),
]


@pytest.mark.parametrize("geometry", WIDE_GEOMETRIES,
                         ids=[f"n{g[0]}c{g[1]}h{g[2]}w{g[3]}o{g[4]}k{g[5]}s{g[6]}p{g[7]}d{g[8]}" for g in WIDE_GEOMETRIES])
def test_conv2d_float32_wide_images_and_one_channel(geometry, rng):
    n, c, h, w, o, k, s, p, d = geometry
    x, wt, b = (a.astype(np.float32) for a in _arrays(geometry, rng))
    X, W, B = (gg.placeholder(a.shape) for a in (x, wt, b))
    for act in (None, "relu"):
        y = gg.conv2d(X, W, B, stride=s, padding=p, dilation=d)
        y = gg.relu(y) if act else y
        x64, w64 = x.astype(np.float64), wt.astype(np.float64)
        want = cref.conv2d(x64, w64, b.astype(np.float64), s, p, d)
        want = np.maximum(want, 0) if act else want
        g = rng.standard_normal(want.shape).astype(np.float32)
        dx, dw, db = gg.grad(gg.sum(y * gg.constant(g)), [X, W, B])
        got_y, got_dx, got_dw, got_db = gg.compile([y, dx, dw, db])({X: x, W: wt, B: b})
        g64 = g.astype(np.float64) * (want > 0 if act else 1)
        tol = dict(rtol=2e-4, atol=2e-4)
        np.testing.assert_allclose(got_y, want, **tol)
        np.testing.assert_allclose(got_dx, cref.conv2d_input_grad(g64, w64, (h, w), s, p, d), **tol)
        np.testing.assert_allclose(got_dw, cref.conv2d_weight_grad(x64, g64, wt.shape[2:], s, p, d), **tol)
        np.testing.assert_allclose(got_db, g64.sum(axis=(0, 2, 3)), **tol)


#: 3×3, stride 1, dilation 1, at least 8 input and output channels: the Winograd kernels (csrc/conv.c).
#: Under AVX-512 float32, outputs up to 12×12 take F(4×4, 3×3) (one image's tiles in a vector: 1×1 to 3×3
#: tiles here, 16 images a chunk, so 20 images are two chunks, the second partial); 13-14 wide take
#: F(2×2, 3×3)'s vector transforms, wider ones and float64 its portable loops (29×31: one image a chunk).
#: Odd and even output sizes (tiles past the last row and column), paddings 0-2, batch 1 and several.
WINOGRAD_GEOMETRIES = [
    (2, 8, 5, 5, 8, 3, 1, 0, 1),
    (1, 9, 6, 7, 10, 3, 1, 1, 1),
    (3, 8, 4, 6, 9, 3, 1, 2, 1),
    (10, 8, 13, 13, 8, 3, 1, 0, 1),
    (20, 8, 13, 13, 8, 3, 1, 0, 1),
    (3, 8, 12, 5, 9, 3, 1, 0, 1),
    (2, 8, 5, 14, 8, 3, 1, 0, 1),
    (2, 8, 16, 16, 8, 3, 1, 0, 1),
    (2, 12, 16, 15, 8, 3, 1, 1, 1),
    (2, 8, 29, 31, 8, 3, 1, 0, 1),
]
WG_IDS = [f"n{g[0]}c{g[1]}h{g[2]}w{g[3]}o{g[4]}p{g[7]}" for g in WINOGRAD_GEOMETRIES]


@pytest.mark.parametrize("geometry", WINOGRAD_GEOMETRIES[:3], ids=WG_IDS[:3])
def test_winograd_conv2d_float64_against_reference_and_finite_differences(geometry, rng):
    n, c, h, w, o, k, s, p, d = geometry
    x, wt, b = _arrays(geometry, rng)
    conv = lambda x, w, b: gg.relu(gg.conv2d(x, w, b, stride=s, padding=p, dilation=d))  # noqa: E731
    X, W, B = (gg.placeholder(a.shape, dtype="float64") for a in (x, wt, b))
    got = gg.compile(conv(X, W, B))({X: x, W: wt, B: b})
    np.testing.assert_allclose(got, np.maximum(cref.conv2d(x, wt, b, s, p, d), 0), rtol=1e-12, atol=1e-12)
    assert gg.gradcheck(conv, [x, wt, b], atol=1e-6, rtol=1e-5)
    y = cref.conv2d(x, wt, None, s, p, d)
    dy = rng.standard_normal(y.shape)
    attrs = {"stride": (1, 1), "padding": _pair(p), "dilation": (1, 1)}
    assert gg.gradcheck(lambda g, k: make("conv2d_input_grad", [g, k], {**attrs, "input_hw": (h, w)}), [dy, wt],
                        atol=1e-6, rtol=1e-5)
    assert gg.gradcheck(lambda x, g: make("conv2d_weight_grad", [x, g], {**attrs, "kernel": (3, 3)}), [x, dy],
                        atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("geometry", WINOGRAD_GEOMETRIES, ids=WG_IDS)
def test_winograd_conv2d_and_its_gradients_against_reference(geometry, dtype, rng):
    n, c, h, w, o, k, s, p, d = geometry
    x, wt, b = (a.astype(dtype) for a in _arrays(geometry, rng))
    X, W, B = (gg.placeholder(a.shape, dtype=dtype) for a in (x, wt, b))
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    for act in (None, "relu"):
        y = gg.conv2d(X, W, B, padding=p)
        y = gg.relu(y) if act else y
        want = cref.conv2d(x64, w64, b.astype(np.float64), s, p, d)
        want = np.maximum(want, 0) if act else want
        g = rng.standard_normal(want.shape).astype(dtype)
        dx, dw, db = gg.grad(gg.sum(y * gg.constant(g, dtype=dtype)), [X, W, B])
        got_y, got_dx, got_dw, got_db = gg.compile([y, dx, dw, db])({X: x, W: wt, B: b})
        g64 = g.astype(np.float64) * (want > 0 if act else 1)
        tol = dict(rtol=2e-4, atol=2e-4) if dtype == "float32" else dict(rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(got_y, want, **tol)
        np.testing.assert_allclose(got_dx, cref.conv2d_input_grad(g64, w64, (h, w), s, p, d), **tol)
        np.testing.assert_allclose(got_dw, cref.conv2d_weight_grad(x64, g64, (3, 3), s, p, d), **tol)
        np.testing.assert_allclose(got_db, g64.sum(axis=(0, 2, 3)), **tol)


def test_winograd_one_and_two_threads_and_fused_and_unfused_agree(rng):
    """mnist_convnet's conv2 (32 -> 64 channels, 13×13) in a small training-step graph: the images are
    shared out among the threads in contiguous ranges, the weight gradient's partials added in order."""
    x = rng.standard_normal((12, 32, 13, 13)).astype(np.float32)
    wt = (0.1 * rng.standard_normal((64, 32, 3, 3))).astype(np.float32)
    b = rng.standard_normal(64).astype(np.float32)
    g = rng.standard_normal((12, 64, 11, 11)).astype(np.float32)
    X, W, B = (gg.placeholder(a.shape) for a in (x, wt, b))
    y = gg.relu(gg.conv2d(X, W, B))
    outs = [y] + gg.grad(gg.sum(y * gg.constant(g)), [X, W, B])
    runs = []
    for threads, passes in ((1, None), (2, None), (1, [])):
        gg.set_num_threads(threads)
        try:
            runs.append(gg.compile(outs, passes=passes)({X: x, W: wt, B: b}))
        finally:
            gg.set_num_threads(0)
    for other in runs[1:]:   # float32 sums of 12·121 terms in another order: ~1e-5 of their scale
        for a, c in zip(runs[0], other):
            np.testing.assert_allclose(a, c, rtol=1e-4, atol=1e-5 * np.abs(a).max())
    np.testing.assert_array_equal(runs[0][0], runs[1][0])   # the forward does not depend on the threads


@st.composite
def conv_geometry(draw):
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 10))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 10))
    return (n, c, h, w, o, (kh, kw), (sh, sw), (ph, pw), (dh, dw))


@settings(max_examples=30)
@given(geometry=conv_geometry(), dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_conv2d_and_its_gradients_fuzz(geometry, dtype, seed):
    n, c, h, w, o, k, s, p, d = geometry
    rng = np.random.default_rng(seed)
    x, wt, b = (a.astype(dtype) for a in _arrays(geometry, rng))
    X, W, B = (gg.placeholder(a.shape, dtype=dtype) for a in (x, wt, b))
    y = gg.conv2d(X, W, B, stride=s, padding=p, dilation=d)
    want = cref.conv2d(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64), s, p, d)
    assert y.shape == want.shape
    g = rng.standard_normal(want.shape).astype(dtype)
    G = gg.constant(g, dtype=dtype)
    dx, dw, db = gg.grad(gg.sum(y * G), [X, W, B])
    got_y, got_dx, got_dw, got_db = gg.compile([y, dx, dw, db])({X: x, W: wt, B: b})
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == "float32" else dict(rtol=1e-10, atol=1e-10)
    g64 = g.astype(np.float64)
    np.testing.assert_allclose(got_y, want, **tol)
    np.testing.assert_allclose(got_dx, cref.conv2d_input_grad(g64, wt.astype(np.float64), (h, w), s, p, d), **tol)
    np.testing.assert_allclose(got_dw, cref.conv2d_weight_grad(x.astype(np.float64), g64, wt.shape[2:], s, p, d),
                               **tol)
    np.testing.assert_allclose(got_db, g64.sum(axis=(0, 2, 3)), **tol)


@settings(max_examples=40)
@given(n=st.integers(1, 3), c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 40), k=st.integers(1, 3),
       s=st.integers(1, 3), p=st.integers(0, 1), op=st.sampled_from(["max_pool2d", "avg_pool2d"]),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_pooling_fuzz(n, c, h, w, k, s, p, op, dtype, seed):
    """Widths up to 40 take the vectorised 2×2 path over more than one block of windows."""
    if 2 * p > k or h + 2 * p < k or w + 2 * p < k:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    X = gg.placeholder(x.shape, dtype=dtype)
    y = getattr(gg, op)(X, k, s, p)
    want = getattr(cref, op)(x, k, s, p)
    g = rng.standard_normal(want.shape)
    (dx,) = gg.grad(gg.sum(y * gg.constant(g, dtype=dtype)), [X])
    got_y, got_dx = gg.compile([y, dx])({X: x})
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_y, want, **tol)
    g = g.astype(dtype).astype(np.float64)
    want_dx = (cref.max_pool2d_backward(x, g, k, s, p) if op == "max_pool2d"
               else cref.avg_pool2d_backward(g, (h, w), k, s, p))
    np.testing.assert_allclose(got_dx, want_dx, **tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", [6, 37])
def test_max_pool_nan_propagates_and_takes_the_gradient(dtype, width):
    x = np.arange(2 * 4 * width, dtype=dtype).reshape(1, 2, 4, width) % 7
    x[0, 0, 1, 1] = np.nan          # window (0, 0): NaN is the maximum, and gets the gradient
    x[0, 1, 2, width - 2] = x[0, 1, 3, width - 1] = np.nan   # two NaNs in one window: the first wins
    X = gg.placeholder(x.shape, dtype=dtype)
    y = gg.max_pool2d(X, 2)
    (dx,) = gg.grad(gg.sum(y * gg.constant(np.ones(y.shape), dtype=dtype)), [X])
    got_y, got_dx = gg.compile([y, dx], passes=[])({X: x})
    want_y = cref.max_pool2d(x.astype(np.float64), 2)
    assert np.isnan(got_y[0, 0, 0, 0]) and np.isnan(got_y[0, 1, 1, width // 2 - 1])
    np.testing.assert_array_equal(np.isnan(got_y), np.isnan(want_y))
    np.testing.assert_array_equal(got_y[~np.isnan(got_y)], want_y[~np.isnan(want_y)])
    assert got_dx[0, 0, 1, 1] == 1 and got_dx[0, 0, 0, 0] == 0
    assert got_dx[0, 1, 2, width - 2] == 1 and got_dx[0, 1, 3, width - 1] == 0
    assert got_dx.sum() == y.shape[2] * y.shape[3] * 2


# ---- threads, fusion ------------------------------------------------------------------------------

def _small_cnn_step_values(threads: int, passes=None, batch=8):
    """Loss and gradients of a small CNN (each conv large enough for the kernels to share images
    out among threads)."""
    gg.set_num_threads(threads)
    try:
        rng = np.random.default_rng(3)
        model = gg.nn.Sequential(gg.nn.Conv2D(4, 8, 3, activation="relu", padding=1, seed=1), gg.nn.MaxPool2D(2),
                                 gg.nn.Conv2D(8, 16, 3, activation="relu", seed=2), gg.nn.Flatten(),
                                 gg.nn.Dense(16 * 6 * 6, 3, seed=3))
        x = gg.placeholder((None, 4, 16, 16), name="x")
        y = gg.placeholder((None,), name="y", dtype="int64")
        loss = gg.softmax_cross_entropy(model(x), y)
        grads = gg.grad(loss, model.parameters())
        out = gg.compile([loss] + grads, passes=passes)(x=rng.standard_normal((batch, 4, 16, 16)).astype(np.float32),
                                                        y=rng.integers(0, 3, batch))
        return out
    finally:
        gg.set_num_threads(0)


def test_one_thread_and_two_threads_agree():
    one, two = _small_cnn_step_values(1), _small_cnn_step_values(2)
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fused_and_unfused_agree():
    fused = _small_cnn_step_values(1)
    unfused = _small_cnn_step_values(1, passes=[])
    for a, b in zip(fused, unfused):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


# ---- errors ----------------------------------------------------------------------------------------

def _conv_error(x_shape, w_shape, **options):
    x = gg.placeholder(x_shape, name="images")
    layer = gg.nn.Conv2D(w_shape[1], w_shape[0], w_shape[2:], name="conv_under_test", **options)
    with pytest.raises(gg.ShapeError) as info:
        layer(x)   # the line the error must point at
    return str(info.value)


@pytest.mark.parametrize("x_shape,w_shape,options,expected", [
    ((None, 1, 4, 4), (2, 1, 5, 5), {}, "larger than the padded input"),
    ((None, 1, 4, 4), (2, 1, 3, 3), {"dilation": 2}, "larger than the padded input"),
    ((None, 3, 8, 8), (2, 1, 3, 3), {}, "channel mismatch: x has 3 channels"),
    ((None, 1, 8, 8), (2, 1, 3, 3), {"stride": -1}, "stride must be >= 1"),
    ((None, 1, 8, 8), (2, 1, 3, 3), {"stride": 0}, "stride must be >= 1"),
    ((None, 1, 8, 8), (2, 1, 3, 3), {"padding": -1}, "padding must be >= 0"),
    ((None, 1, 8, 8), (2, 1, 3, 3), {"padding": 1.5}, "padding must be an int"),
    ((None, 1, 8, 8), (2, 1, 3, 3), {"stride": 1.0}, "stride must be an int"),
    ((None, 1, 8, 8), (2, 1, 3, 3), {"padding": "full"}, "padding must be an int, a pair"),
    ((1, 8, 8), (2, 1, 3, 3), {}, "must be 4-D .* got 3-D"),
])
def test_bad_conv_geometry_is_a_shape_error_naming_the_layer_and_line(x_shape, w_shape, options, expected):
    message = _conv_error(x_shape, w_shape, **options)
    assert re.search(expected, message), message
    assert 'conv2d "conv_under_test"' in message
    assert "test_conv.py:" in message   # the user's line (the layer call inside _conv_error)


def test_bad_pooling_is_a_shape_error():
    x = gg.placeholder((None, 2, 3, 3))
    with pytest.raises(gg.ShapeError, match=r"max_pool2d.*larger than the padded input"):
        gg.max_pool2d(x, 4)
    with pytest.raises(gg.ShapeError, match="at most half the kernel"):
        gg.avg_pool2d(x, 2, padding=2)
    with pytest.raises(gg.ShapeError, match="must be 4-D"):
        gg.max_pool2d(gg.placeholder((None, 3, 3)), 2)


def test_batch_norm_channel_mismatch_is_a_shape_error():
    layer = gg.nn.BatchNorm(4, name="bn_under_test")
    with pytest.raises(gg.ShapeError, match=r'batch_norm_eval "bn_under_test".*gamma must be \(3,\)'):
        layer(gg.placeholder((None, 3, 5, 5)))


def test_batch_norm_statistics_have_no_gradient_of_their_own():
    x = gg.placeholder((4, 3))
    stats = make("batch_norm_stats", [x])
    with pytest.raises(gg.GradientError, match="batch_norm_stats"):
        gg.grad(gg.sum(stats), [x])


# ---- batch norm's running statistics --------------------------------------------------------------

@pytest.mark.parametrize("shape", [(6, 3, 4, 5), (8, 4)])
def test_batch_norm_updates_running_statistics_in_the_step_as_pytorch(shape, rng):
    layer = gg.nn.BatchNorm(shape[1], momentum=0.2)
    x = gg.placeholder((None,) + shape[1:], name="x")
    with gg.nn.training():
        y = layer(x)
    step = gg.compile(gg.sum(y * y), optimizer=gg.optim.SGD(lr=0.01))
    mean, var = np.zeros(shape[1]), np.ones(shape[1])
    for _ in range(3):
        data = rng.standard_normal(shape).astype(np.float32) * 2 + 1
        step(x=data)
        axes = (0,) + tuple(range(2, len(shape)))
        count = data.size // shape[1]
        mean = 0.8 * mean + 0.2 * data.mean(axis=axes)
        var = 0.8 * var + 0.2 * data.var(axis=axes) * count / (count - 1)   # unbiased, as PyTorch
    np.testing.assert_allclose(layer.running_mean.value, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.running_var.value, var, rtol=1e-5, atol=1e-6)


def test_batch_norm_training_output_uses_batch_statistics_and_eval_the_running_ones(rng):
    layer = gg.nn.BatchNorm(3)
    layer.running_mean.assign([0.5, -1.0, 2.0])
    layer.running_var.assign([4.0, 0.25, 1.0])
    layer.gamma.assign([1.5, 0.5, -1.0])
    layer.beta.assign([0.1, 0.2, 0.3])
    data = rng.standard_normal((5, 3, 2, 2)).astype(np.float32)
    x = gg.placeholder((None, 3, 2, 2), name="x")
    eval_y = gg.compile(layer(x))(x=data)
    with gg.nn.training():
        train_y = gg.compile(layer(x))(x=data)
    gamma, beta = layer.gamma.value.astype(np.float64), layer.beta.value.astype(np.float64)
    np.testing.assert_allclose(eval_y, cref.batch_norm(data.astype(np.float64), gamma, beta,
                                                       np.array([0.5, -1.0, 2.0]), np.array([4.0, 0.25, 1.0])),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(train_y, cref.batch_norm_train(data.astype(np.float64), gamma, beta),
                               rtol=1e-5, atol=1e-5)


# ---- memory: column buffers are bounded scratch in the arena ----------------------------------------

def test_column_buffers_are_arena_scratch_bounded_by_the_threads_not_the_batch():
    x = gg.placeholder((None, 3, 16, 16), name="x")
    w = gg.variable(np.zeros((8, 3, 3, 3)), name="w")
    program = gg.compile(gg.conv2d(x, w, padding=1))
    sizes = {}
    for batch in (4, 64):
        program(x=np.zeros((batch, 3, 16, 16), dtype=np.float32))
        memory = program.plan(batch).memory
        scratch = [b for b in memory.buffers if b.scratch]
        assert len(scratch) == 1 and scratch[0].offset >= 0
        assert scratch[0].offset + scratch[0].size <= memory.arena_bytes
        sizes[batch] = scratch[0].nbytes
    assert sizes[4] == sizes[64]   # one image's columns per thread, whatever the batch
    assert sizes[4] % (3 * 9 * 16 * 16 * 4) == 0
    assert "scratch" in program.summary(batch_size=64, as_text=True)


# ---- checkpoints: resume equals uninterrupted, running statistics included -------------------------

def _cnn_with_batch_norm():
    nn = gg.nn
    return nn.Sequential(nn.Conv2D(1, 4, 3, padding=1, use_bias=False, seed=0, name="c1"), nn.BatchNorm(4, name="b1"),
                         nn.ReLU(), nn.MaxPool2D(2, name="p1"),
                         nn.Conv2D(4, 6, 3, activation="relu", kernel_init="he_normal", seed=1, name="c2"),
                         nn.GlobalAvgPool2D(name="g"), nn.Dropout(0.25, seed=3, name="d"),
                         nn.Dense(6, 3, seed=2, name="out"))


def test_cnn_resume_from_a_checkpoint_equals_training_straight(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((48, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, 48)
    kwargs = dict(loss="softmax_cross_entropy", batch_size=16, seed=5, verbose=0)
    straight = _cnn_with_batch_norm()
    gg.fit(straight, X, y, optimizer=gg.optim.Adam(lr=0.01), epochs=4, **kwargs)

    half, opt = _cnn_with_batch_norm(), gg.optim.Adam(lr=0.01)
    gg.fit(half, X, y, optimizer=opt, epochs=2, **kwargs)
    path = str(tmp_path / "cnn.npz")
    gg.save(path, half, opt)
    ck = gg.load(path)          # the model rebuilt from its description
    bn = ck.model.layers[1]
    np.testing.assert_array_equal(bn.running_mean.value, half.layers[1].running_mean.value)
    np.testing.assert_array_equal(bn.running_var.value, half.layers[1].running_var.value)
    gg.fit(ck.model, X, y, optimizer=ck.optimizer, epochs=2, **kwargs)
    for a, b in zip(ck.model.parameters() + ck.model.buffers(), straight.parameters() + straight.buffers()):
        np.testing.assert_array_equal(a.value, b.value)
    np.testing.assert_array_equal(gg.predict(ck.model, X), gg.predict(straight, X))


def test_model_summary_lists_output_shapes_and_parameters():
    text = _cnn_with_batch_norm().summary(input_shape=(1, 8, 8), as_text=True)
    lines = {line.split()[0]: line for line in text.splitlines() if line[:1].isalpha() and "(" in line}
    assert "(None, 4, 8, 8)" in lines["c1"] and lines["c1"].split()[-1] == "36"
    assert "(None, 4, 8, 8)" in lines["b1"] and lines["b1"].split()[-1] == "8"
    assert "(None, 4, 4, 4)" in lines["p1"]
    assert "(None, 6, 2, 2)" in lines["c2"] and lines["c2"].split()[-1] == "222"
    assert "(None, 6)" in lines["g"] and "(None, 3)" in lines["out"] and lines["out"].split()[-1] == "21"
    assert "Trainable params: 287" in text and "Non-trainable params: 8" in text


def test_an_elementwise_op_after_conv_relu_is_not_fused_into_the_convolution(rng):
    """relu(conv(x)) · c: the product stays its own instruction (it was once fused into the conv + ReLU
    instruction and dropped, which returned relu(conv(x)))."""
    x, wt, c = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((2, 4, 3, 3))
    X, W = gg.placeholder(x.shape, dtype="float64"), gg.placeholder(wt.shape, dtype="float64")
    got = gg.compile(gg.relu(gg.conv2d(X, W)) * gg.constant(c, dtype="float64"))({X: x, W: wt})
    np.testing.assert_allclose(got, np.maximum(cref.conv2d(x, wt), 0) * c, rtol=1e-12, atol=1e-12)


def test_fused_conv_relu_and_pool_backward_keep_relus_nan_rule():
    """relu(NaN) is NaN and its backward passes dy at NaN: the conv epilogue and the folded pooling
    backward do the same as the separate ops (fusion and passes off)."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 1, 8, 8)).astype(np.float32)
    x[0, 0, 2, 3] = np.nan
    w = gg.variable(rng.standard_normal((3, 1, 3, 3)), name="w")
    X = gg.placeholder(x.shape, name="x")
    y = gg.max_pool2d(gg.relu(gg.conv2d(X, w)), 2)
    loss = gg.sum(y * gg.constant(rng.standard_normal(y.shape)))
    dx, dw = gg.grad(loss, [X, w])
    fused = gg.compile([y, dx, dw])(x=x)
    plain = gg.compile([y, dx, dw], passes=[])(x=x)
    assert np.isnan(fused[0]).any() and np.isnan(fused[2]).any()   # the NaN pixel's windows, and dw
    for a, b in zip(fused, plain):
        np.testing.assert_array_equal(a, b)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), o=st.integers(1, 5), h=st.integers(4, 12), w=st.integers(4, 12), k=st.sampled_from([1, 2, 3]),
       pool=st.sampled_from([(2, None, 0), (3, 2, 1), (2, 1, 0)]), seed=st.integers(0, 2**31 - 1))
def test_first_layer_weight_gradient_through_its_pool_is_one_pass(n, o, h, w, k, pool, seed):
    """A one-channel conv -> ReLU -> max pool: simplify turns its weight gradient into
    conv2d_pooled_weight_grad (no input-sized gradient in between); the gradients equal those with the
    passes off (same terms, another order of the additions)."""
    rng = np.random.default_rng(seed)
    kernel, stride, padding = pool
    if (h - k + 1) < kernel or (w - k + 1) < kernel:
        return
    x = rng.standard_normal((n, 1, h, w)).astype(np.float32)
    wt = gg.variable(rng.standard_normal((o, 1, k, k)), name="w")
    b = gg.variable(rng.standard_normal(o) * 0.1, name="b")
    X = gg.placeholder(x.shape, name="x")
    y = gg.max_pool2d(gg.relu(gg.conv2d(X, wt, b)), kernel, stride=stride, padding=padding)
    grads = gg.grad(gg.sum(y * gg.constant(rng.standard_normal(y.shape))), [wt, b])
    program = gg.compile(grads)
    ops = [ins.node.op for ins in program.plan().instructions]
    assert "conv2d_pooled_weight_grad" in ops and "max_pool2d_backward" not in ops
    for a, c in zip(program(x=x), gg.compile(grads, passes=[])(x=x)):
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-5)


def test_the_pooled_weight_gradient_is_only_for_small_first_layers():
    """With more input channels (or more than 9 taps) the weight gradient keeps the GEMM path."""
    for c, k in ((2, 3), (1, 4)):
        x = gg.placeholder((None, c, 10, 10), name="x")
        wt = gg.variable(np.ones((2, c, k, k), dtype=np.float32), name="w")
        y = gg.max_pool2d(gg.relu(gg.conv2d(x, wt)), 2)
        ops = [ins.node.op for ins in gg.compile(gg.grad(gg.sum(y), wt)).plan(2).instructions]
        assert "conv2d_weight_grad" in ops and "conv2d_pooled_weight_grad" not in ops
