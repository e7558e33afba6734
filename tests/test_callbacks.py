"""gg.callbacks.GradientStats: the statistics C computes inside the step against the same numbers
computed from a replay in NumPy, its recording schedule, and its picture."""
import numpy as np
import pytest

import graphgrad as gg


def problem(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((24, 5)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    model = gg.nn.Sequential(gg.nn.Dense(5, 6, activation="tanh", seed=1), gg.nn.Dense(6, 3, seed=2))
    return model, X, y


def reference_gradients(model, X, y):
    x, t = gg.placeholder((None, 5), name="x"), gg.placeholder((None,), name="t", dtype="int64")
    loss = gg.softmax_cross_entropy(model(x), t)
    f = gg.compile(gg.grad(loss, model.parameters()))
    return lambda: f(x=X, t=y)


@pytest.mark.parametrize("make_optimizer", [lambda: gg.optim.SGD(lr=0.2), lambda: gg.optim.Adam(lr=0.05),
                                            lambda: gg.optim.SGD(lr=0.2, momentum=0.9, clip_norm=0.5)])
def test_statistics_match_a_replay(make_optimizer):
    model, X, y = problem()
    grads_now = reference_gradients(model, X, y)
    optimizer = make_optimizer()
    stats = gg.callbacks.GradientStats(every=1)
    expected = {p.name: {"grad_norm": [], "weight_norm": [], "update_ratio": []} for p in model.parameters()}
    for _ in range(4):     # one full-batch step per fit: the callback keeps counting across fits
        before = [p.value for p in model.parameters()]
        grads = grads_now()
        if optimizer.clip_norm is not None:
            total = np.sqrt(sum(float((g.astype(np.float64) ** 2).sum()) for g in grads))
            grads = [g * min(1.0, optimizer.clip_norm / (total + 1e-6)) for g in grads]
        history = gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=optimizer, epochs=1, batch_size=None,
                         callbacks=[stats], verbose=0)
        for p, w, g in zip(model.parameters(), before, grads):
            entry = expected[p.name]
            entry["grad_norm"].append(np.linalg.norm(g.astype(np.float64)))
            entry["weight_norm"].append(np.linalg.norm(w.astype(np.float64)))
            w_norm = entry["weight_norm"][-1]     # zero-initialised biases: no ratio (NaN)
            entry["update_ratio"].append(np.linalg.norm((p.value - w).astype(np.float64)) / w_norm if w_norm else np.nan)
    assert stats.stats["step"] == [1, 2, 3, 4] and history.gradient_stats is stats.stats
    assert stats.names == [p.name for p in model.parameters()]
    for name, entry in expected.items():
        for key, values in entry.items():
            np.testing.assert_allclose(stats.stats[name][key], values, rtol=2e-5, err_msg=f"{name} {key}")


def test_records_every_n_optimizer_steps_and_training_is_unchanged(tmp_path):
    model, X, y = problem()
    twin, _, _ = problem()
    stats = gg.callbacks.GradientStats(every=3)
    gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=gg.optim.SGD(lr=0.1), epochs=2, batch_size=5,
           seed=0, callbacks=[stats], verbose=0)          # 5 steps per epoch (the last one short): 10 steps
    gg.fit(twin, X, y, loss="softmax_cross_entropy", optimizer=gg.optim.SGD(lr=0.1), epochs=2, batch_size=5,
           seed=0, verbose=0)
    assert stats.stats["step"] == [1, 4, 7, 10]
    for name in stats.names:
        assert all(len(stats.stats[name][k]) == 4 for k in ("grad_norm", "weight_norm", "update_ratio"))
    for a, b in zip(model.parameters(), twin.parameters()):   # the statistics do not change training
        np.testing.assert_array_equal(a.value, b.value)
    path = stats.plot(str(tmp_path / "stats.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_bad_settings():
    with pytest.raises(ValueError, match="positive int"):
        gg.callbacks.GradientStats(every=0)
    model, X, y = problem()
    with pytest.raises(ValueError, match="one callback at a time"):
        gg.fit(model, X, y, loss="softmax_cross_entropy", callbacks=[gg.callbacks.GradientStats(),
                                                                      gg.callbacks.GradientStats()], verbose=0)


def test_sparse_records_alternate_programs_and_match_dense_ones():
    """every >= ALTERNATE_FROM: the plain step runs between the recorded ones; the records equal
    those of every=1 at the same steps, and the weights those of a run without the callback."""
    from graphgrad.train import ALTERNATE_FROM
    every = ALTERNATE_FROM + 2
    runs = {}
    for name, callbacks in (("dense", [gg.callbacks.GradientStats(every=1)]),
                            ("sparse", [gg.callbacks.GradientStats(every=every)]), ("none", None)):
        model, X, y = problem()
        gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=gg.optim.Adam(lr=0.01), epochs=6, batch_size=2,
               seed=0, callbacks=callbacks, verbose=0)       # 12 steps per epoch, 72 in all
        runs[name] = (model, callbacks[0].stats if callbacks else None)
    dense, sparse = runs["dense"][1], runs["sparse"][1]
    assert sparse["step"] == list(range(1, 73, every))
    for p_dense, p_sparse in zip(runs["dense"][0].parameters(), runs["sparse"][0].parameters()):
        for key in ("grad_norm", "weight_norm", "update_ratio"):     # (the layers' names differ per model)
            np.testing.assert_array_equal(sparse[p_sparse.name][key], dense[p_dense.name][key][::every])
    for a, b in zip(runs["sparse"][0].parameters(), runs["none"][0].parameters()):
        np.testing.assert_array_equal(a.value, b.value)


OPTIMIZERS = ["SGD", "RMSprop", "Adam", "AdamW", "Adamax", "NAdam", "Adagrad", "Adadelta", "Ftrl", "Lion"]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_reports_its_own_update(name):
    """The update-to-weight ratio is ‖W_after − W_before‖ / ‖W_before‖ whatever the rule."""
    model, X, y = problem()
    optimizer = getattr(gg.optim, name)(lr=0.05)
    stats = gg.callbacks.GradientStats(every=1)
    expected = []
    for _ in range(2):
        before = [p.value for p in model.parameters()]
        gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=optimizer, epochs=1, batch_size=None,
               callbacks=[stats], verbose=0)
        kernel, w = model.parameters()[0], before[0]          # (the biases start at zero: no ratio at step 1)
        expected.append(np.linalg.norm((kernel.value - w).astype(np.float64)) / np.linalg.norm(w.astype(np.float64)))
    kernel = model.parameters()[0].name
    np.testing.assert_allclose(stats.stats[kernel]["update_ratio"], expected, rtol=1e-4)
    assert np.all(np.array(stats.stats[kernel]["update_ratio"]) > 0)
