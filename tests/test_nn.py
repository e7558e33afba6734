"""gg.nn: layers against NumPy, their validation and descriptions, seeds, dropout masks."""
import numpy as np
import pytest

import graphgrad as gg
from train_cases import from_reference, mlp, numpy_forward


def test_dense_and_sequential_compute_what_numpy_does():
    model = mlp(d=3, hidden=5, out=2, activation="relu")
    x = gg.placeholder((None, 3), name="x")
    X = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
    out = gg.compile(model(x))(x=X)
    np.testing.assert_allclose(out, numpy_forward(model, X), rtol=1e-5, atol=1e-6)
    assert [p.shape for p in model.parameters()] == [(3, 5), (5,), (5, 2), (2,)]
    no_bias = gg.nn.Dense(3, 2, use_bias=False, seed=0)
    assert len(no_bias.parameters()) == 1
    np.testing.assert_allclose(gg.compile(no_bias(x))(x=X), X @ no_bias.kernel.value, rtol=1e-5)
    layered = gg.nn.Sequential(gg.nn.Dense(3, 2, seed=0), gg.nn.Sigmoid())
    expected = 1 / (1 + np.exp(-(X @ layered[0].kernel.value)))
    np.testing.assert_allclose(gg.compile(layered(x))(x=X), expected, rtol=1e-5)


def test_layers_validate_and_describe_themselves():
    with pytest.raises(ValueError, match="unknown activation 'sigmod'"):
        gg.nn.Dense(3, 2, activation="sigmod")
    with pytest.raises(ValueError, match="positive sizes"):
        gg.nn.Dense(0, 2)
    with pytest.raises(TypeError, match="Sequential takes layers"):
        gg.nn.Sequential(gg.nn.Dense(3, 2), "relu")
    model = gg.nn.Sequential(gg.nn.Dense(3, 4, activation=gg.relu, seed=0), gg.nn.ReLU(), gg.nn.Dense(4, 1))
    rebuilt = gg.nn.from_description(model.describe())
    assert rebuilt.describe() == model.describe()
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]
    custom = gg.nn.Dense(3, 2, activation=lambda t: t * 2.0)
    with pytest.raises(TypeError, match="custom activation"):
        custom.describe()


def test_dense_seed_makes_kernel_and_bias_reproducible_and_different():
    a = gg.nn.Dense(6, 6, kernel_init="normal", bias_init="normal", seed=4)
    b = gg.nn.Dense(6, 6, kernel_init="normal", bias_init="normal", seed=4)
    np.testing.assert_array_equal(a.kernel.value, b.kernel.value)
    np.testing.assert_array_equal(a.bias.value, b.bias.value)
    assert not np.array_equal(a.bias.value, a.kernel.value[0])


def test_dropout_masks_in_training_graphs_only():
    x = gg.placeholder((None, 400), name="x")
    drop = gg.nn.Dropout(0.3, seed=5)
    X = np.ones((50, 400), np.float32)
    with gg.nn.training():
        f = gg.compile(drop(x))
    first, second = f(x=X), f(x=X)
    assert drop.counter.value == 2.0
    assert abs((first == 0).mean() - 0.3) < 0.01 and abs(first.mean() - 1.0) < 0.02
    assert set(np.unique(first)) == {0.0, np.float32(1 / 0.7)}
    assert not np.array_equal(first, second)             # a new mask every step
    np.testing.assert_array_equal(first.ravel(), from_reference(5, 1, 0.3, X.size))
    np.testing.assert_array_equal(gg.compile(drop(x))(x=X), X)   # built outside training(): identity
    with pytest.raises(ValueError, match="rate must be in"):
        gg.nn.Dropout(1.0)


def test_sequential_summary_prints_once_like_program_summary(capsys):
    model = gg.nn.Sequential(gg.nn.Dense(4, 3, seed=0), gg.nn.Dense(3, 2, seed=1))
    assert model.summary() is None
    printed = capsys.readouterr().out
    assert "Output Shape" in printed and "Total params: 23" in printed
    assert model.summary(as_text=True).strip() == printed.strip() and capsys.readouterr().out == ""
