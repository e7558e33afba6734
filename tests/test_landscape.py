"""The loss landscape (graphgrad/landscape.py, drawn by gg.viz.loss_landscape): every point against
the model's loss with the weights set by hand, the directions' normalisation, and bad inputs."""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st
import pytest

import graphgrad as gg
from graphgrad.errors import ModelError
from graphgrad.landscape import LossSurface, filter_normalized_direction, loss_line, loss_plane, parameter_values


def small_problem(seed=0, dtype="float32"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((64, 5)).astype(dtype)
    y = rng.integers(0, 3, 64)
    model = gg.nn.Sequential(gg.nn.Dense(5, 7, activation="tanh", seed=seed, dtype=dtype),
                             gg.nn.Dense(7, 3, seed=seed + 1, dtype=dtype))
    return model, X, y


def loss_with_weights(model, X, y, weights):
    """The reference: assign the weights to the model itself, evaluate, put the old ones back."""
    params = model.parameters()
    saved = [p.value for p in params]
    for p, w in zip(params, weights):
        p.assign(w)
    try:
        return gg.evaluate(model, X, y, loss="softmax_cross_entropy", batch_size=None)["loss"]
    finally:
        for p, w in zip(params, saved):
            p.assign(w)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_point_is_the_loss_at_those_weights(dtype):
    model, X, y = small_problem(dtype=dtype)
    params = model.parameters()
    before = [p.value for p in params]
    rng = np.random.default_rng(5)
    centre = [p.value for p in params]
    d1 = [rng.standard_normal(p.shape).astype(dtype) for p in params]
    d2 = [rng.standard_normal(p.shape).astype(dtype) for p in params]
    surface = LossSurface(model, X, y, "softmax_cross_entropy")
    surface.set_plane(centre, d1, d2)
    assert surface.loss(0.0, 0.0) == loss_with_weights(model, X, y, centre)   # bit for bit at the centre
    for a, b in ((0.5, 0.0), (-0.25, 0.75), (1.0, -1.0)):
        a_, b_ = np.asarray(a, dtype), np.asarray(b, dtype)
        weights = [c + a_ * u + b_ * v for c, u, v in zip(centre, d1, d2)]
        assert surface.loss(a, b) == pytest.approx(loss_with_weights(model, X, y, weights), rel=1e-5)
    for p, v in zip(params, before):                    # the model's own variables never change
        np.testing.assert_array_equal(p.value, v)


def test_line_ends_are_the_start_and_the_end():
    model, X, y = small_problem()
    start = [p.value for p in model.parameters()]
    gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=gg.optim.SGD(lr=0.3), epochs=20, batch_size=16,
           seed=0, verbose=0)
    line = loss_line(model, X, y, "softmax_cross_entropy", start=start, steps=13, margin=0.25)   # α steps of 0.125
    np.testing.assert_allclose(line.alphas, np.linspace(-0.25, 1.25, 13))
    assert line.losses[2] == pytest.approx(loss_with_weights(model, X, y, start), rel=1e-6)   # α = 0
    trained = gg.evaluate(model, X, y, loss="softmax_cross_entropy", batch_size=None)["loss"]
    assert line.losses[10] == pytest.approx(trained, rel=1e-5)                                # α = 1
    assert line.losses[10] < line.losses[2]


def test_plane_grid_and_centre():
    model, X, y = small_problem()
    plane = loss_plane(model, X, y, "softmax_cross_entropy", steps=5, span=0.5, seed=3)
    assert plane.losses.shape == (5, 5)
    np.testing.assert_allclose(plane.alphas, [-0.5, -0.25, 0, 0.25, 0.5])
    centre = gg.evaluate(model, X, y, loss="softmax_cross_entropy", batch_size=None)["loss"]
    assert plane.losses[2, 2] == centre
    # rows follow β: the point (α = 0.5, β = -0.5) sits at row 0, column 4
    delta, eta = plane.directions
    weights = [p.value + np.float32(0.5) * d - np.float32(0.5) * e for p, d, e in zip(model.parameters(), delta, eta)]
    assert plane.losses[0, 4] == pytest.approx(loss_with_weights(model, X, y, weights), rel=1e-5)
    # the same seed draws the same plane
    again = loss_plane(model, X, y, "softmax_cross_entropy", steps=5, span=0.5, seed=3)
    np.testing.assert_array_equal(again.losses, plane.losses)


def test_directions_are_normalised_per_filter():
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((6, 4)).astype(np.float32) * np.array([1, 10, 0.1, 3], np.float32)
    conv = rng.standard_normal((3, 2, 5, 5))
    bias = rng.standard_normal(4)
    d_kernel, d_conv, d_bias = filter_normalized_direction([kernel, conv, bias], seed=1)
    assert d_kernel.dtype == np.float32 and d_kernel.shape == kernel.shape
    # a Dense kernel's filters are its columns (one per output unit)
    np.testing.assert_allclose(np.linalg.norm(d_kernel, axis=0), np.linalg.norm(kernel, axis=0), rtol=1e-5)
    # a convolution kernel's filters lie along its first axis
    np.testing.assert_allclose(np.linalg.norm(d_conv.reshape(3, -1), axis=1),
                               np.linalg.norm(conv.reshape(3, -1), axis=1), rtol=1e-12)
    assert not d_bias.any()
    _, _, d_bias = filter_normalized_direction([kernel, conv, bias], seed=1, bias="filter")
    assert np.linalg.norm(d_bias) == pytest.approx(np.linalg.norm(bias))


def test_loss_landscape_draws_line_and_contour(tmp_path):
    model, X, y = small_problem()
    start = [p.value for p in model.parameters()]
    gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=gg.optim.SGD(lr=0.3), epochs=5, batch_size=16,
           seed=0, verbose=0)
    result = gg.viz.loss_landscape(model, X, y, loss="softmax_cross_entropy", start=start, steps=5, line_steps=7,
                                   contour_path=str(tmp_path / "c.png"), line_path=str(tmp_path / "l.png"))
    assert result.plane.losses.shape == (5, 5) and result.line.losses.shape == (7,)
    for path in result.paths:
        assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(result.paths) == 2


def test_bad_inputs_are_typed_errors():
    model, X, y = small_problem()
    with pytest.raises(ValueError, match="steps >= 2"):
        loss_plane(model, X, y, "softmax_cross_entropy", steps=1)
    with pytest.raises(ValueError, match="lo < hi"):
        loss_plane(model, X, y, "softmax_cross_entropy", span=0.0)
    with pytest.raises(ModelError, match="no parameters"):
        loss_plane(gg.nn.Sequential(gg.nn.ReLU()), X, y, "softmax_cross_entropy")
    params = model.parameters()
    wrong_shape = [np.zeros(p.shape) for p in params]
    wrong_shape[0] = np.zeros((7, 5))
    with pytest.raises(gg.ShapeError, match='"dense.*/kernel" has shape \\(5, 7\\)'):
        loss_plane(model, X, y, "softmax_cross_entropy", directions=(wrong_shape, wrong_shape))
    with pytest.raises(gg.ShapeError, match="3 arrays for a model with 4 parameters"):
        loss_plane(model, X, y, "softmax_cross_entropy", directions=([p.value for p in params[:3]],) * 2)
    with pytest.raises(gg.ShapeError, match="pair"):
        loss_plane(model, X, y, "softmax_cross_entropy", directions=([p.value for p in params],))
    with pytest.raises(ValueError, match="start="):
        loss_line(model, X, y, "softmax_cross_entropy")
    other, _, _ = small_problem()
    other = gg.nn.Sequential(gg.nn.Dense(5, 3))
    with pytest.raises(gg.ShapeError):
        loss_line(model, X, y, "softmax_cross_entropy", start=other)
    by_name = {p.name: p.value for p in params}
    assert all(np.array_equal(a, b) for a, b in zip(parameter_values(by_name, params), (p.value for p in params)))


@given(shape=st.lists(st.integers(1, 5), min_size=0, max_size=4).map(tuple), seed=st.integers(0, 2**16))
def test_filter_normalisation_at_random_shapes(shape, seed):
    theta = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    (d,) = filter_normalized_direction([theta], seed=seed)
    assert d.shape == theta.shape and d.dtype == theta.dtype
    if theta.ndim <= 1:
        assert not d.any()
        return
    by_filter = (lambda a: a.T.reshape(a.shape[1], -1)) if theta.ndim == 2 else (lambda a: a.reshape(a.shape[0], -1))
    np.testing.assert_allclose(np.linalg.norm(by_filter(d), axis=1), np.linalg.norm(by_filter(theta), axis=1),
                               rtol=1e-5, atol=1e-7)
