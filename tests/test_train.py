"""Training: fit/evaluate/predict, the epoch-in-C loop against a Python loop of single steps,
callbacks (ModelCheckpoint included), divergence, check_numerics. Initialisers, layers and
checkpoints have their own files (test_init.py, test_nn.py, test_checkpoint.py)."""
import os

import numpy as np
import pytest

import graphgrad as gg
from graphgrad import runtime, train
from graphgrad._core import lib
from train_cases import classification_data, dropout_mlp, mlp, numpy_forward, params, regression_data


def test_fit_with_dropout_matches_a_step_loop_and_predicts_without_it():
    X, Y = regression_data(n=40)
    fitted = dropout_mlp()
    hist = gg.fit(fitted, X, Y, optimizer=gg.optim.SGD(lr=0.1), batch_size=10, epochs=2, seed=3, verbose=0)
    looped = dropout_mlp()
    x, y = gg.placeholder((None, 4), name="x"), gg.placeholder((None, 1), name="y")
    with gg.nn.training():
        step = gg.compile(gg.mse(looped(x), y), optimizer=gg.optim.SGD(lr=0.1))
    for epoch in range(2):
        order = np.random.default_rng([3, epoch]).permutation(40)
        losses = [float(step(x=X[order[i:i + 10]], y=Y[order[i:i + 10]])) for i in range(0, 40, 10)]
        np.testing.assert_array_equal(hist.step_losses[epoch], losses)
    for a, b in zip(params(fitted), params(looped)):
        np.testing.assert_array_equal(a, b)
    assert fitted.layers[1].counter.value == 8.0
    # inference: no dropout, so predict is the plain forward pass of the two Dense layers
    plain = gg.nn.Sequential(fitted.layers[0], fitted.layers[2])
    np.testing.assert_allclose(gg.predict(fitted, X), numpy_forward(plain, X), rtol=1e-5, atol=1e-6)


# ---- fit: the three flavours of gradient descent ----------------------------------------------

@pytest.mark.parametrize("batch_size, lr, epochs", [(1, 0.05, 15), (16, 0.5, 15), (20, 0.5, 15), (None, 0.5, 100)],
                         ids=["stochastic", "minibatch", "minibatch-tail", "full"])
def test_every_flavour_of_gradient_descent_reduces_a_regression_loss(batch_size, lr, epochs):
    X, Y = regression_data()
    model = mlp()
    before = gg.evaluate(model, X, Y)["loss"]
    hist = gg.fit(model, X, Y, loss="mse", optimizer=gg.optim.SGD(lr=lr), epochs=epochs, batch_size=batch_size,
                  seed=0, verbose=0)
    after = gg.evaluate(model, X, Y)["loss"]
    assert after < 0.5 * before
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    steps = {1: 96, 16: 6, 20: 5, None: 1}[batch_size]
    assert [len(s) for s in hist.step_losses] == [steps] * epochs
    assert hist.epoch == list(range(epochs)) and model.epochs_trained == epochs


def test_short_last_batch_is_kept_or_dropped():
    X, Y = regression_data(n=50)
    kept = gg.fit(mlp(), X, Y, optimizer=gg.optim.SGD(lr=0.1), batch_size=16, verbose=0, seed=0)
    dropped = gg.fit(mlp(), X, Y, optimizer=gg.optim.SGD(lr=0.1), batch_size=16, drop_last=True, verbose=0, seed=0)
    assert len(kept.step_losses[0]) == 4 and len(dropped.step_losses[0]) == 3
    np.testing.assert_array_equal(kept.step_losses[0][:3], dropped.step_losses[0])
    whole = gg.fit(mlp(), X, Y, batch_size=64, drop_last=True, verbose=0)   # clipped to the 50 samples
    assert len(whole.step_losses[0]) == 1
    with pytest.raises(ValueError, match="batch_size must be"):
        gg.fit(mlp(), X, Y, batch_size=0, verbose=0)


def test_epoch_loss_is_the_sample_weighted_mean_of_step_losses():
    X, Y = regression_data(n=50)
    hist = gg.fit(mlp(), X, Y, optimizer=gg.optim.SGD(lr=0.1), batch_size=16, verbose=0, seed=0)
    steps = hist.step_losses[0]
    assert hist.history["loss"][0] == pytest.approx((steps[:3].sum() * 16 + steps[3] * 2) / 50, rel=1e-12)


def test_results_are_reproducible_per_epoch_with_a_seed():
    X, Y = regression_data()
    runs = []
    for seed in (3, 3, 4):
        model = mlp(seed=0)
        hist = gg.fit(model, X, Y, optimizer=gg.optim.SGD(lr=0.3, momentum=0.9), epochs=3, batch_size=8,
                      seed=seed, verbose=0)
        runs.append((hist, params(model)))
    (h1, p1), (h2, p2), (h3, p3) = runs
    assert h1.history == h2.history
    for a, b in zip(h1.step_losses, h2.step_losses):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)
    assert h1.history["loss"] != h3.history["loss"]        # another seed, another order
    assert not np.array_equal(h1.step_losses[1], h1.step_losses[0])   # every epoch reshuffles


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_epoch_in_c_equals_a_python_loop_of_single_steps(dtype):
    X, Y = regression_data(n=70, dtype=dtype)
    seed, B, epochs = 5, 16, 3
    fitted = mlp(seed=0, dtype=dtype)
    hist = gg.fit(fitted, X, Y, optimizer=gg.optim.SGD(lr=0.2, momentum=0.5), epochs=epochs, batch_size=B,
                  seed=seed, verbose=0)

    looped = mlp(seed=0, dtype=dtype)
    x = gg.placeholder((None, 4), name="x", dtype=dtype)
    y = gg.placeholder((None, 1), name="y", dtype=dtype)
    step = gg.compile(gg.mse(looped(x), y), optimizer=gg.optim.SGD(lr=0.2, momentum=0.5))
    for epoch in range(epochs):
        # fit's documented shuffle: a permutation drawn from (seed, epoch)
        order = np.random.default_rng([seed, epoch]).permutation(len(X))
        losses = [float(step(x=X[order[i:i + B]], y=Y[order[i:i + B]])) for i in range(0, len(X), B)]
        np.testing.assert_array_equal(hist.step_losses[epoch], np.array(losses))
    for a, b in zip(params(fitted), params(looped)):
        np.testing.assert_array_equal(a, b)


def test_unshuffled_epochs_walk_the_rows_in_order():
    X, Y = regression_data(n=40)
    fitted = mlp(seed=2)
    gg.fit(fitted, X, Y, optimizer=gg.optim.SGD(lr=0.2), batch_size=10, shuffle=False, verbose=0)
    looped = mlp(seed=2)
    x, y = gg.placeholder((None, 4), name="x"), gg.placeholder((None, 1), name="y")
    step = gg.compile(gg.mse(looped(x), y), optimizer=gg.optim.SGD(lr=0.2))
    for i in range(0, 40, 10):
        step(x=X[i:i + 10], y=Y[i:i + 10])
    for a, b in zip(params(fitted), params(looped)):
        np.testing.assert_array_equal(a, b)


def test_fit_epoch_is_one_c_call_without_a_progress_bar(monkeypatch):
    X, Y = regression_data(n=64)
    model = mlp()
    gg.fit(model, X, Y, optimizer=gg.optim.SGD(lr=0.1), batch_size=8, verbose=0)
    calls = []
    real = lib.gg_program_run_steps

    class Counting:
        def __getattr__(self, name):
            return getattr(lib, name)

        @staticmethod
        def gg_program_run_steps(*args):
            calls.append(1)
            return real(*args)

    monkeypatch.setattr(runtime, "lib", Counting())
    gg.fit(model, X, Y, optimizer=gg.optim.SGD(lr=0.1), batch_size=8, epochs=3, verbose=0)
    assert len(calls) == 3


# ---- metrics, evaluate, predict, validation ---------------------------------------------------

def test_accuracy_with_one_hot_targets_and_with_integer_labels():
    X, labels = classification_data()
    one_hot = np.eye(3, dtype=np.float32)[labels]
    model = mlp(d=5, hidden=6, out=3, seed=1)
    expected_acc = float((numpy_forward(model, X).argmax(1) == labels).mean())
    expected_loss = float(((numpy_forward(model, X) - one_hot) ** 2).mean())
    by_one_hot = gg.evaluate(model, X, one_hot, metrics=["accuracy"], batch_size=32)
    assert by_one_hot["accuracy"] == pytest.approx(expected_acc, abs=1e-12)
    assert by_one_hot["loss"] == pytest.approx(expected_loss, rel=1e-5)
    by_label = gg.evaluate(model, X, labels, loss=lambda p, y: gg.sum(p) * 0.0, metrics=["acc"], batch_size=50)
    assert by_label["accuracy"] == pytest.approx(expected_acc, abs=1e-12)
    # one output column: the class is pred > 0.5
    binary = gg.nn.Sequential(gg.nn.Dense(5, 1, activation="sigmoid", seed=0))
    target = (labels == 0).astype(np.float32)[:, None]
    p = numpy_forward(binary, X)
    assert gg.evaluate(binary, X, target, metrics=["accuracy"])["accuracy"] == pytest.approx(
        float(((p > 0.5) == (target > 0.5)).mean()))


def test_full_batch_training_metrics_are_measured_before_the_update():
    X, labels = classification_data()
    one_hot = np.eye(3, dtype=np.float32)[labels]
    model = mlp(d=5, hidden=6, out=3, seed=1)
    before = gg.evaluate(model, X, one_hot, metrics=["accuracy"], batch_size=None)
    hist = gg.fit(model, X, one_hot, optimizer=gg.optim.SGD(lr=1.0), batch_size=None, metrics=["accuracy"],
                  validation_data=(X, one_hot), verbose=0)
    assert hist.history["loss"][0] == pytest.approx(before["loss"], rel=1e-6)
    assert hist.history["accuracy"][0] == before["accuracy"]
    after = gg.evaluate(model, X, one_hot, metrics=["accuracy"])
    assert hist.history["val_loss"][0] == pytest.approx(after["loss"], rel=1e-6)
    assert hist.history["val_accuracy"][0] == after["accuracy"]


def test_cross_entropy_losses_with_labels_and_logits():
    X, labels = classification_data(n=300)
    model = gg.nn.Sequential(gg.nn.Dense(5, 16, activation="relu", seed=0), gg.nn.Dense(16, 3, seed=1))
    hist = gg.fit(model, X, labels, loss="cross_entropy", optimizer=gg.optim.Adam(lr=0.01), epochs=8,
                  batch_size=20, metrics=["accuracy"], seed=0, verbose=0)
    assert hist.history["accuracy"][-1] > 0.85
    logits = numpy_forward(model, X)
    shifted = logits - logits.max(1, keepdims=True)
    nll = (np.log(np.exp(shifted).sum(1)) - shifted[np.arange(len(X)), labels]).mean()
    result = gg.evaluate(model, X, labels, loss="cross_entropy", metrics=["accuracy"])
    assert result["loss"] == pytest.approx(nll, rel=1e-4)
    assert result["accuracy"] == pytest.approx(float((logits.argmax(1) == labels).mean()))
    # binary cross-entropy takes logits: one column, the class is logit > 0
    binary = gg.nn.Sequential(gg.nn.Dense(5, 1, seed=2))
    target = (labels == 0).astype(np.float32)[:, None]
    gg.fit(binary, X, target, loss="binary_cross_entropy", optimizer=gg.optim.Adam(lr=0.05), epochs=5, verbose=0)
    z = numpy_forward(binary, X)
    expected = float(((z > 0) == (target > 0.5)).mean())
    assert expected > 0.85
    assert gg.evaluate(binary, X, target, loss="bce", metrics=["accuracy"])["accuracy"] == pytest.approx(expected)


def test_classifier_learns():
    X, labels = classification_data(n=300)
    one_hot = np.eye(3, dtype=np.float32)[labels]
    model = gg.nn.Sequential(gg.nn.Dense(5, 16, activation="sigmoid", seed=0),
                             gg.nn.Dense(16, 3, activation="sigmoid", seed=1))
    hist = gg.fit(model, X, one_hot, optimizer=gg.optim.SGD(lr=3.0), epochs=10, batch_size=10,
                  metrics=["accuracy"], seed=0, verbose=0)
    assert hist.history["accuracy"][-1] > 0.85 > hist.history["accuracy"][0] - 0.2


def test_predict_is_the_batched_forward_pass():
    X, _ = classification_data(n=77)
    model = mlp(d=5, hidden=6, out=3, seed=1)
    expected = numpy_forward(model, X)
    for batch in (None, 10, 77, 500):
        out = gg.predict(model, X, batch_size=batch)
        assert out.shape == (77, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_bad_loss_metric_and_data_are_clear_errors():
    X, Y = regression_data(n=10)
    with pytest.raises(ValueError, match="unknown loss 'mse2'.*'mse'"):
        gg.fit(mlp(), X, Y, loss="mse2", verbose=0)
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        gg.fit(mlp(), X, Y, metrics=["f1"], verbose=0)
    with pytest.raises(gg.ShapeError, match="X has 10 samples but Y has 9"):
        gg.fit(mlp(), X, Y[:9], verbose=0)
    with pytest.raises(gg.ShapeError, match="accuracy compares predictions of 1 columns with targets of 2"):
        gg.evaluate(mlp(), X, np.zeros((10, 2), np.float32), loss=lambda p, y: gg.sum(p), metrics=["accuracy"])
    assert train.loss_function("mean_squared_error") is gg.mse and train.loss_function("mae") is gg.l1
    bad = X.copy()
    bad[7, 2] = np.nan
    with pytest.raises(gg.FeedError, match="X holds NaN or Inf \\(first in sample 7\\)"):
        gg.fit(mlp(), bad, Y, verbose=0)
    with pytest.raises(TypeError, match="take a gg.nn model"):
        gg.fit(lambda x: x, X, Y, verbose=0)


# ---- progress and callbacks -----------------------------------------------------------------

def test_progress_bar_shows_loss_metric_and_samples_per_second(capsys):
    X, labels = classification_data(n=60)
    gg.fit(mlp(d=5, out=3), X, np.eye(3, dtype=np.float32)[labels], batch_size=10, epochs=2, metrics=["accuracy"],
           verbose=1)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "loss=" in err and "accuracy=" in err and "sample/s" in err
    gg.fit(mlp(), *regression_data(n=30), verbose=0)
    assert capsys.readouterr() == ("", "")
    gg.fit(mlp(), *regression_data(n=30), verbose=2, epochs=2)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "samples/s" in lines[1] and lines[1].startswith("epoch 2/2 - loss")


def test_callbacks_see_every_epoch_and_early_stopping_stops():
    X, Y = regression_data()
    seen = []
    gg.fit(mlp(), X, Y, epochs=3, verbose=0, callbacks=[lambda epoch, logs: seen.append((epoch, sorted(logs)))])
    assert seen == [(0, ["loss", "lr"]), (1, ["loss", "lr"]), (2, ["loss", "lr"])]

    class Stop(gg.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 1:
                self.model.stop_training = True

    hist = gg.fit(mlp(), X, Y, epochs=10, verbose=0, callbacks=[Stop()])
    assert hist.epoch == [0, 1]
    # lr 0 never improves val_loss: stops after patience epochs
    early = gg.EarlyStopping(monitor="val_loss", patience=2)
    hist = gg.fit(mlp(), X, Y, epochs=20, verbose=0, optimizer=gg.optim.SGD(lr=0.0), validation_data=(X, Y),
                  callbacks=[early])
    assert len(hist.epoch) == 3 and early.stopped_epoch == 2


def test_a_schedule_in_callbacks_sets_each_epochs_lr():
    X, Y = regression_data(n=32)
    opt = gg.optim.SGD(lr=0.4)
    schedule = gg.schedules.StepLR(opt, step_size=2, gamma=0.5)
    hist = gg.fit(mlp(), X, Y, optimizer=opt, epochs=5, batch_size=8, verbose=0, callbacks=[schedule])
    assert hist.history["lr"] == [0.4, 0.4, 0.2, 0.2, 0.1]


# ---- divergence and check_numerics ----------------------------------------------------------

def test_divergence_stops_with_epoch_step_and_lr_and_keeps_finite_variables():
    X, Y = regression_data()
    model = mlp(activation="relu")
    opt = gg.optim.SGD(lr=1e6)
    with pytest.raises(gg.DivergenceError, match=r"epoch 1, step \d+ .*learning rate 1e\+06.*smaller one") as info:
        gg.fit(model, X, Y, optimizer=opt, epochs=5, batch_size=8, verbose=0, seed=0)
    err = info.value
    assert err.epoch == 1 and err.step >= 2 and err.lr == 1e6 and not np.isfinite(err.loss)
    for p in params(model):
        assert np.isfinite(p).all()
    assert opt.step_count == err.step - 1


def test_divergence_restores_exactly_the_last_finite_state():
    """Replay a Python loop of single steps to find the last all-finite variables: fit must leave
    exactly those, even when an update (not a loss) was the first to overflow."""
    X, Y = regression_data(n=48)
    B, lr = 8, 1e300     # lr·g overflows float32 in the first update, before any loss does
    fitted = mlp(seed=3, activation="relu")
    with pytest.raises(gg.DivergenceError):
        gg.fit(fitted, X, Y, optimizer=gg.optim.SGD(lr=lr), epochs=3, batch_size=B, seed=1, verbose=0)

    looped = mlp(seed=3, activation="relu")
    x, y = gg.placeholder((None, 4), name="x"), gg.placeholder((None, 1), name="y")
    step = gg.compile(gg.mse(looped(x), y), optimizer=gg.optim.SGD(lr=lr))
    last_finite = params(looped)
    done = update_first = False
    with np.errstate(all="ignore"):
        for epoch in range(3):
            order = np.random.default_rng([1, epoch]).permutation(len(X))
            for i in range(0, len(X), B):
                loss = float(step(x=X[order[i:i + B]], y=Y[order[i:i + B]]))
                current = params(looped)
                if not np.isfinite(loss) or not all(np.isfinite(p).all() for p in current):
                    done, update_first = True, np.isfinite(loss)
                    break
                last_finite = current
            if done:
                break
    assert done and update_first   # an update overflowed before any loss did: fit must undo it (by replay)
    for a, b in zip(params(fitted), last_finite):
        np.testing.assert_array_equal(a, b)


def test_check_numerics_names_the_node_and_render_highlights_it(tmp_path):
    X, Y = regression_data(n=32)
    model = mlp()
    made = {}

    def loss(p, y):
        zero = y - y
        made["node"] = gg.div(p, zero, name="ratio")   # p / 0: Inf at the first step
        return gg.mse(made["node"], y)

    with pytest.raises(gg.NumericsError, match=r"(?s)div node \"ratio\".*test_train.py.*epoch 1, step 1") as info:
        gg.fit(model, X, Y, loss=loss, optimizer=gg.optim.SGD(lr=0.1), batch_size=8, check_numerics=True,
               verbose=0)
    assert info.value.node is made["node"]
    for p in params(model):
        assert np.isfinite(p).all()
    dot = gg.to_dot(made["node"], highlight=info.value).source
    assert f'{made["node"].id} [label="ratio' in dot and "color=red" in dot
    gg.render(made["node"], str(tmp_path / "bad.png"), highlight=info.value)
    assert (tmp_path / "bad.png").stat().st_size > 0

def test_a_non_finite_loss_stops_its_step_before_any_update(monkeypatch):
    """The loss is checked in C between the forward pass and the updates: the failing step's
    updates never run, so nothing is replayed (the epoch stays one C call)."""
    X, Y = regression_data(n=32)
    v = float(Y[20, 0])

    def bad_loss(p, y):                       # p / 0 in the batch holding row 20: the epoch's step 3
        return gg.mse(gg.div(p, y - v), y)

    model, opt = mlp(), gg.optim.SGD(lr=0.1, momentum=0.9)
    twin, twin_opt = mlp(), gg.optim.SGD(lr=0.1, momentum=0.9)
    for m, o in ((model, opt), (twin, twin_opt)):
        gg.fit(m, X, Y, optimizer=o, batch_size=8, seed=0, verbose=0)
    gg.fit(twin, X[:16], Y[:16], loss=bad_loss, optimizer=twin_opt, batch_size=8, shuffle=False, verbose=0)
    calls = []
    real = runtime.lib

    class Counting:
        def __getattr__(self, name):
            if name == "gg_program_run_steps":
                calls.append(name)
            return getattr(real, name)

    monkeypatch.setattr(runtime, "lib", Counting())
    with pytest.raises(gg.DivergenceError, match=r"epoch 2, step 3 \(optimizer step 7\)"):
        gg.fit(model, X, Y, loss=bad_loss, optimizer=opt, batch_size=8, shuffle=False, verbose=0)
    assert calls == ["gg_program_run_steps"]             # a replay would have run the good steps again
    assert opt.step_count == twin_opt.step_count == 6    # the two good steps of the epoch, not the third
    for a, b in zip(params(model), params(twin)):
        np.testing.assert_array_equal(a, b)


def test_model_checkpoint_callback_saves_each_epoch_or_the_best(tmp_path):
    X, Y = regression_data(n=40)
    model, opt = mlp(), gg.optim.SGD(lr=0.2, momentum=0.5)
    every = gg.ModelCheckpoint(str(tmp_path / "e{epoch}-{loss:.2f}.npz"), opt)
    hist = gg.fit(model, X, Y, optimizer=opt, epochs=3, batch_size=8, verbose=0, callbacks=[every])
    assert [os.path.basename(p) for p in every.saved] == [f"e{e + 1}-{loss:.2f}.npz"
                                                          for e, loss in enumerate(hist.history["loss"])]
    last = gg.load(every.saved[-1])
    assert last.epochs_trained == 3 and last.step == 15 and last.metadata["logs"]["loss"] == hist.history["loss"][2]
    for a, b in zip(params(last.model), params(model)):
        np.testing.assert_array_equal(a, b)
    # lr 0: the validation loss never improves after the first epoch, so only epoch 1 is saved
    best = gg.ModelCheckpoint(str(tmp_path / "best.npz"), monitor="val_loss", save_best_only=True)
    gg.fit(mlp(), X, Y, optimizer=gg.optim.SGD(lr=0.0), epochs=3, verbose=0, validation_data=(X, Y),
           callbacks=[best])
    assert best.saved == [str(tmp_path / "best.npz")] and gg.load(best.saved[0]).epochs_trained == 1


def test_bench_script_runs_in_a_small_setting(tmp_path):
    import importlib.util
    import json
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "train.py")
    spec = importlib.util.spec_from_file_location("bench_train", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "train.json"
    result = bench.main(["--samples", "100", "--repeats", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert set(saved["samples_per_s_wall"]) == {"step() loop", "gg.fit verbose=0", "gg.fit verbose=1"}
    assert saved["ratio_fit_vs_loop_cpu"] == result["ratio_fit_vs_loop_cpu"] > 0


# ---- what a Keras user expects ---------------------------------------------------------------

def test_evaluate_uses_the_loss_the_model_was_fitted_with(tmp_path):
    X, labels = classification_data()
    model = mlp(d=5, hidden=6, out=3, seed=1)
    assert gg.evaluate(model, X, np.eye(3, dtype=np.float32)[labels])["loss"] == pytest.approx(
        gg.evaluate(model, X, np.eye(3, dtype=np.float32)[labels], loss="mse")["loss"])   # never fitted: fit's mse
    gg.fit(model, X, labels, loss="softmax_cross_entropy", optimizer="adam", epochs=1, verbose=0)
    by_default = gg.evaluate(model, X, labels, metrics=["accuracy"])      # int labels: MSE would be a dtype error
    assert by_default == gg.evaluate(model, X, labels, loss="softmax_cross_entropy", metrics=["accuracy"])
    gg.save(str(tmp_path / "m.npz"), model)
    restored = gg.load(str(tmp_path / "m.npz")).model
    assert gg.evaluate(restored, X, labels)["loss"] == pytest.approx(by_default["loss"], rel=1e-6)


def test_fit_takes_an_optimizer_name_and_refuses_a_class():
    X, Y = regression_data()
    model = mlp()
    gg.fit(model, X, Y, optimizer="sgd", epochs=1, verbose=0)
    with pytest.raises(gg.errors.OptimizerError, match="pass an optimizer instance"):
        gg.fit(model, X, Y, optimizer=gg.optim.SGD, epochs=1, verbose=0)


def test_validation_split_holds_out_the_last_samples_as_keras():
    X, labels = classification_data()
    model, twin = mlp(d=5, hidden=6, out=3, seed=1), mlp(d=5, hidden=6, out=3, seed=1)
    cut = len(X) - int(len(X) * 0.25)
    split = gg.fit(model, X, labels, loss="softmax_cross_entropy", optimizer=gg.optim.SGD(lr=0.1), epochs=2,
                   validation_split=0.25, seed=3, verbose=0)
    explicit = gg.fit(twin, X[:cut], labels[:cut], loss="softmax_cross_entropy", optimizer=gg.optim.SGD(lr=0.1),
                      epochs=2, validation_data=(X[cut:], labels[cut:]), seed=3, verbose=0)
    assert split.history == explicit.history
    with pytest.raises(ValueError, match="not both"):
        gg.fit(model, X, labels, validation_split=0.2, validation_data=(X, labels), verbose=0)
    for bad in (1.0, -0.1, "0.2"):
        with pytest.raises(ValueError, match=r"validation_split must be a fraction in \[0, 1\)"):
            gg.fit(model, X, labels, validation_split=bad, verbose=0)


def test_a_batch_larger_than_the_data_is_one_full_batch_even_with_drop_last():
    X, Y = regression_data()
    model = mlp()
    full = gg.evaluate(model, X[:5], Y[:5])["loss"]
    hist = gg.fit(model, X[:5], Y[:5], batch_size=8, drop_last=True, epochs=1, verbose=0)
    assert len(hist.step_losses[0]) == 1 and hist.samples_per_second[0] > 0
    assert hist.step_losses[0][0] == pytest.approx(full, rel=1e-6)      # the step saw all 5 samples
