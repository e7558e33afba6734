"""gg.lr_find, the LR range test (graphgrad/lr_finder.py): its suggestion trains better than the
default rate, it leaves the model and the optimizer exactly as they were, each step uses its
own rate (written by C), it stops on divergence, and bad ranges are typed errors."""
import numpy as np
import pytest

import graphgrad as gg
from graphgrad.lr_finder import exponential_lrs, smooth


def nielsen_mlp():
    return gg.nn.Sequential(gg.nn.Dense(784, 30, activation="sigmoid", seed=0), gg.nn.Dense(30, 10, seed=1))


def every_variable(model, optimizer):
    return [v.value for v in model.parameters()] + [v.value for v in optimizer.variables()]


def test_the_suggested_rate_trains_at_least_as_well_as_the_default():
    (X, y), (Xt, yt) = gg.datasets.mnist()
    result = gg.lr_find(nielsen_mlp(), X, y, loss="softmax_cross_entropy", verbose=0)
    assert result.suggestion is not None and 1e-7 < result.suggestion < 10
    accuracy = {}
    for name, optimizer in (("default", gg.optim.SGD(lr=0.01)), ("suggested", gg.optim.SGD(lr=result.suggestion))):
        history = gg.fit(nielsen_mlp(), X, y, loss="softmax_cross_entropy", optimizer=optimizer, epochs=1,
                         batch_size=32, seed=0, validation_data=(Xt, yt), metrics=["accuracy"], verbose=0)
        accuracy[name] = history["val_accuracy"][-1]
    assert accuracy["suggested"] >= accuracy["default"]      # gg.fit's default optimizer is SGD(lr=0.01)


@pytest.mark.parametrize("make_optimizer", [lambda: gg.optim.SGD(lr=0.05, momentum=0.9),
                                            lambda: gg.optim.Adam(lr=1e-3)])
def test_model_and_optimizer_are_restored_bit_for_bit(make_optimizer):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 6)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    models, optimizers = [], []
    for _ in range(2):
        model = gg.nn.Sequential(gg.nn.Dense(6, 8, activation="relu", seed=3), gg.nn.Dropout(0.2, seed=4),
                                 gg.nn.Dense(8, 3, seed=5))
        optimizer = make_optimizer()
        gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=optimizer, epochs=1, batch_size=20, seed=0,
               verbose=0)   # optimizer state and step count are not trivial
        models.append(model), optimizers.append(optimizer)
    before = every_variable(models[0], optimizers[0]) + [b.value for b in models[0].buffers()]
    result = gg.lr_find(models[0], X, y, loss="softmax_cross_entropy", optimizer=optimizers[0], end_lr=100,
                        steps=60, batch_size=20, verbose=0)
    assert len(result.lrs) > 5
    after = every_variable(models[0], optimizers[0]) + [b.value for b in models[0].buffers()]
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    # and training goes on exactly as if lr_find had never run
    for model, optimizer in zip(models, optimizers):
        gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=optimizer, epochs=1, batch_size=20, seed=1,
               verbose=0)
    for a, b in zip(every_variable(models[0], optimizers[0]), every_variable(models[1], optimizers[1])):
        np.testing.assert_array_equal(a, b)


def test_each_step_trains_with_its_own_rate():
    """Replayed in Python, one compiled step per call with opt.lr set by hand: the same losses."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((32, 4)).astype(np.float32)
    Y = rng.standard_normal((32, 2)).astype(np.float32)
    model = gg.nn.Dense(4, 2, seed=0)
    start = [p.value for p in model.parameters()]
    result = gg.lr_find(model, X, Y, loss="mse", start_lr=1e-3, end_lr=1.0, steps=8, batch_size=32, verbose=0,
                        diverge_factor=1e9)
    np.testing.assert_allclose(result.lrs, 1e-3 * 1000.0 ** (np.arange(8) / 7), rtol=1e-12)
    assert not result.stopped_early and result.lrs[-1] == pytest.approx(1.0)
    replay = gg.nn.Dense(4, 2, seed=0)
    for p, v in zip(replay.parameters(), start):
        p.assign(v)
    x, y = gg.placeholder((None, 4), name="x"), gg.placeholder((None, 2), name="y")
    optimizer = gg.optim.SGD(lr=1.0)
    step = gg.compile(gg.mse(replay(x), y), optimizer=optimizer)
    losses = []
    for lr in result.lrs:
        optimizer.lr = lr
        losses.append(float(step(x=X, y=Y)))   # a full batch: the row order only changes the rounding
    np.testing.assert_allclose(result.raw_losses, losses, rtol=1e-5)
    np.testing.assert_allclose(result.losses, smooth(np.array(losses)), rtol=1e-5)


def test_stops_early_when_the_loss_diverges(tmp_path):
    (X, y), _ = gg.datasets.mnist()
    model = nielsen_mlp()
    before = [p.value for p in model.parameters()]
    result = gg.lr_find(model, X, y, loss="softmax_cross_entropy", start_lr=1e-3, end_lr=1e6, steps=200,
                        verbose=0)
    assert result.stopped_early and len(result.lrs) < 200
    last = result.losses[-1]
    assert not np.isfinite(last) or last > 4 * np.nanmin(result.losses)
    assert np.all(result.losses[:-1] <= 4 * np.minimum.accumulate(result.losses[:-1]))
    assert result.suggestion < result.lr_at_min
    for p, v in zip(model.parameters(), before):
        np.testing.assert_array_equal(p.value, v)
    path = result.plot(str(tmp_path / "lr_find.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_bad_ranges_and_models_are_typed_errors():
    X = np.zeros((10, 3), np.float32)
    Y = np.zeros((10, 1), np.float32)
    model = gg.nn.Dense(3, 1)
    with pytest.raises(gg.OptimizerError, match="must grow"):
        gg.lr_find(model, X, Y, start_lr=1.0, end_lr=1.0)
    with pytest.raises(gg.OptimizerError, match="must grow"):
        gg.lr_find(model, X, Y, start_lr=1.0, end_lr=0.1)
    with pytest.raises(gg.OptimizerError, match="steps >= 2"):
        gg.lr_find(model, X, Y, steps=1)
    with pytest.raises(gg.OptimizerError, match="start_lr > 0"):
        gg.lr_find(model, X, Y, start_lr=0.0)
    with pytest.raises(gg.ModelError, match="no parameters"):
        gg.lr_find(gg.nn.Sequential(gg.nn.ReLU()), X, Y)
    with pytest.raises(gg.OptimizerError, match="2 parameter groups"):
        gg.lr_find(model, X, Y, optimizer=gg.optim.SGD([{"params": [model.kernel]}, {"params": [model.bias]}],
                                                       lr=0.1))
    with pytest.raises(TypeError):
        gg.lr_find("not a model", X, Y)
    assert exponential_lrs(1e-7, 10, 100)[[0, -1]].tolist() == pytest.approx([1e-7, 10])
