"""gg.grad: gradients as graph nodes — fan-out, broadcasting, unconnected inputs, VJPs, and
gradients of gradients."""
import numpy as np
import pytest

import graphgrad as gg


def _run(outputs, feeds=None):
    return gg.compile(outputs)(feeds or {})


def test_fan_out_accumulates():
    x = gg.placeholder((3,), dtype="float64")
    y = gg.sum(x * x + x)             # x feeds three consumers
    g = gg.grad(y, x)
    xv = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(_run(g, {x: xv}), 2 * xv + 1)


def test_broadcast_gradient_is_summed_back():
    x = gg.placeholder((None, 4), dtype="float64")
    b = gg.variable(np.zeros(4), dtype="float64")
    bias2d = gg.variable(np.zeros((1, 4)), dtype="float64")
    loss = gg.sum((x + b + bias2d) * 2.0)
    gb, gb2 = gg.grad(loss, [b, bias2d])
    assert gb.shape == (4,) and gb2.shape == (1, 4)
    rb, rb2 = _run([gb, gb2], {x: np.ones((5, 4))})
    np.testing.assert_allclose(rb, np.full(4, 10.0))
    np.testing.assert_allclose(rb2, np.full((1, 4), 10.0))


def test_gradients_are_backward_nodes():
    w = gg.variable(np.ones((2, 2)))
    loss = gg.sum(w * w)
    g = gg.grad(loss, w)
    assert g.role == "backward" and loss.role == "forward"


def test_unconnected_input_raises_naming_it():
    a = gg.variable(1.0, name="used")
    b = gg.variable(2.0, name="unused_weight")
    with pytest.raises(gg.GradientError, match="unused_weight"):
        gg.grad(a * 3.0, [a, b])


def test_unconnected_zero_returns_zeros():
    a = gg.variable(1.0)
    b = gg.variable(np.ones((2, 3)))
    ga, gb = gg.grad(a * 3.0, [a, b], unconnected="zero")
    ra, rb = _run([ga, gb])
    assert float(ra) == 3.0
    np.testing.assert_array_equal(rb, np.zeros((2, 3)))


def test_non_scalar_needs_grad_ys():
    w = gg.variable(np.ones(3))
    with pytest.raises(gg.GradientError, match="not a scalar"):
        gg.grad(w * 2.0, w)


def test_vector_jacobian_product_with_grad_ys():
    x = gg.placeholder((3,), dtype="float64")
    v = gg.placeholder((3,), dtype="float64")
    y = x * x
    g = gg.grad(y, x, grad_ys=v)
    np.testing.assert_allclose(_run(g, {x: np.array([1.0, 2, 3]), v: np.array([1.0, 0, 2])}), [2.0, 0, 12])


def test_second_derivative():
    x = gg.placeholder((), dtype="float64")
    y = x * x * x
    d1 = gg.grad(y, x)
    d2 = gg.grad(d1, x)
    r1, r2 = _run([d1, d2], {x: 1.5})
    assert r1 == pytest.approx(3 * 1.5 ** 2) and r2 == pytest.approx(6 * 1.5)


def test_hessian_vector_product_of_an_mlp_loss_matches_finite_differences():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 3))
    w = gg.placeholder((3, 2), dtype="float64")
    v = gg.placeholder((3, 2), dtype="float64")
    x = gg.constant(X, dtype="float64")
    loss = gg.mean(gg.sigmoid(x @ w) * (x @ w))
    g = gg.grad(loss, w)
    hvp = gg.grad(gg.sum(g * v), w)
    W, V = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    got = _run(hvp, {w: W, v: V})
    grad_at = gg.compile(g)
    eps = 1e-5
    fd = (grad_at({w: W + eps * V}) - grad_at({w: W - eps * V})) / (2 * eps)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8)


def test_gradient_of_a_deep_chain_is_iterative():
    x = gg.placeholder((), dtype="float64")
    y = x
    for _ in range(3000):
        y = y + 1.0
    g = gg.grad(y, x)
    assert float(_run(g, {x: 0.0})) == 1.0
