"""gg.save / gg.load: resuming equals training straight (optimizer state, dropout masks, parameter
groups), atomic saves, errors, compiled Programs."""
import glob

import numpy as np
import pytest

import graphgrad as gg
from train_cases import dropout_mlp, mlp, params, regression_data


OPTIMIZERS = {
    "sgd-nesterov": lambda: gg.optim.SGD(lr=0.2, momentum=0.9, nesterov=True),
    "adam-amsgrad": lambda: gg.optim.Adam(lr=0.01, amsgrad=True, clip_norm=1.0),
    "nadam": lambda: gg.optim.NAdam(lr=0.01),
}


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_train_save_load_resume_equals_training_straight(tmp_path, make_optimizer):
    X, Y = regression_data(n=50)
    kwargs = dict(loss="mse", batch_size=16, seed=11, verbose=0)
    straight = mlp(seed=0)
    gg.fit(straight, X, Y, optimizer=make_optimizer(), epochs=4, **kwargs)

    first = mlp(seed=0)
    opt = make_optimizer()
    gg.fit(first, X, Y, optimizer=opt, epochs=2, **kwargs)
    path = str(tmp_path / "ckpt.npz")
    gg.save(path, first, opt, note="halfway")

    ck = gg.load(path)       # a fresh model and optimizer, rebuilt from the file
    assert ck.model is not first and ck.epochs_trained == 2 and ck.step == 8 and ck.lr == opt.lr
    assert ck.metadata == {"note": "halfway"}
    assert type(ck.optimizer) is type(opt) and ck.optimizer.defaults == opt.defaults
    assert ck.optimizer.clip_norm == opt.clip_norm
    gg.fit(ck.model, X, Y, optimizer=ck.optimizer, epochs=2, **kwargs)
    for a, b in zip(params(ck.model), params(straight)):
        np.testing.assert_array_equal(a, b)
    # loading into existing objects works as well
    again, again_opt = mlp(seed=5), make_optimizer()
    again_opt.lr = 0.5
    gg.load(path, model=again, optimizer=again_opt)
    assert again_opt.lr == opt.lr and again_opt.step_count == 8 and again.epochs_trained == 2
    gg.fit(again, X, Y, optimizer=again_opt, epochs=2, **kwargs)
    for a, b in zip(params(again), params(straight)):
        np.testing.assert_array_equal(a, b)


def test_resume_with_dropout_continues_its_masks(tmp_path):
    X, Y = regression_data(n=40)
    kwargs = dict(optimizer=None, batch_size=8, seed=2, verbose=0)
    straight = dropout_mlp()
    gg.fit(straight, X, Y, epochs=4, **{**kwargs, "optimizer": gg.optim.Adam(lr=0.01)})
    half, opt = dropout_mlp(), gg.optim.Adam(lr=0.01)
    gg.fit(half, X, Y, epochs=2, **{**kwargs, "optimizer": opt})
    gg.save(str(tmp_path / "d.npz"), half, opt)
    ck = gg.load(str(tmp_path / "d.npz"))
    assert ck.model.layers[1].counter.value == 10.0 and ck.model.layers[1].seed == half.layers[1].seed
    gg.fit(ck.model, X, Y, epochs=2, **{**kwargs, "optimizer": ck.optimizer})
    for a, b in zip(params(ck.model), params(straight)):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_keeps_parameter_groups(tmp_path):
    X, Y = regression_data(n=40)
    model = mlp(seed=0)
    kernels = [layer.kernel for layer in model.layers]
    biases = [layer.bias for layer in model.layers]
    opt = gg.optim.SGD([{"params": kernels}, {"params": biases, "lr": 0.05, "weight_decay": 0.0}], lr=0.2,
                       momentum=0.5, weight_decay=0.01)
    gg.fit(model, X, Y, optimizer=opt, batch_size=8, seed=0, verbose=0)
    path = str(tmp_path / "groups.npz")
    gg.save(path, model, opt)
    ck = gg.load(path)
    groups = ck.optimizer.param_groups
    assert [g["lr"] for g in groups] == [0.2, 0.05] and [g["weight_decay"] for g in groups] == [0.01, 0.0]
    assert [p.name for p in groups[1]["params"]] == [p.name for p in biases]
    gg.fit(model, X, Y, optimizer=opt, batch_size=8, seed=0, verbose=0)
    gg.fit(ck.model, X, Y, optimizer=ck.optimizer, batch_size=8, seed=0, verbose=0)
    for a, b in zip(params(ck.model), params(model)):
        np.testing.assert_array_equal(a, b)


def test_an_interrupted_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    X, Y = regression_data(n=20)
    model, opt = mlp(), gg.optim.SGD(lr=0.1, momentum=0.9)
    gg.fit(model, X, Y, optimizer=opt, verbose=0)
    path = str(tmp_path / "model.npz")
    gg.save(path, model, opt)
    saved = params(model)
    with open(path, "rb") as f:
        original_bytes = f.read()
    gg.fit(model, X, Y, optimizer=opt, verbose=0)

    real = np.lib.format.write_array
    written = []

    def write_then_crash(*args, **kwargs):
        if len(written) == 2:
            raise KeyboardInterrupt("power cut mid-save")
        written.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", write_then_crash)
    with pytest.raises(KeyboardInterrupt):
        gg.save(path, model, opt)
    assert written == [1, 1]                      # it really was interrupted half-way
    monkeypatch.undo()
    with open(path, "rb") as f:
        assert f.read() == original_bytes
    assert glob.glob(str(tmp_path / "*")) == [path]   # no temporary file left behind
    restored = gg.load(path).model
    for a, b in zip(params(restored), saved):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_errors_and_programs(tmp_path):
    X, Y = regression_data(n=20)
    model = mlp()
    path = str(tmp_path / "m.npz")
    gg.save(path, model)
    with pytest.raises(gg.ShapeError, match="has shape"):
        gg.load(path, model=mlp(hidden=9))
    custom = gg.nn.Sequential(gg.nn.Dense(4, 1, activation=lambda t: t * 1.0))
    gg.save(path, custom)
    with pytest.raises(gg.GraphGradError, match="no model description"):
        gg.load(path)
    np.savez(str(tmp_path / "other.npz"), a=np.zeros(2))
    with pytest.raises(gg.GraphGradError, match="not a graphgrad checkpoint"):
        gg.load(str(tmp_path / "other.npz"))
    # a compiled Program: its trainable variables and its optimizer
    w = gg.variable(np.ones((4, 1)), name="w")
    x, y = gg.placeholder((None, 4), name="x"), gg.placeholder((None, 1), name="y")
    step = gg.compile(gg.mse(x @ w, y), optimizer=gg.optim.SGD(lr=0.05, momentum=0.5))
    step(x=X, y=Y)
    gg.save(path, step)
    trained = w.value
    step(x=X, y=Y)
    gg.load(path, model=step, optimizer=step.optimizer)
    np.testing.assert_array_equal(w.value, trained)
    assert step.optimizer.step_count == 1
