"""Program: feeds, fetches, one C call per step, and SGD training steps against NumPy."""
import numpy as np
import pytest

import graphgrad as gg
import graphgrad.runtime as runtime


class _CountingLib:
    """Wraps the cffi lib: counts every call into C."""

    def __init__(self, lib):
        self._lib, self.calls = lib, []

    def __getattr__(self, name):
        attr = getattr(self._lib, name)
        if callable(attr):
            def counted(*args):
                self.calls.append(name)
                return attr(*args)
            return counted
        return attr


def test_a_training_step_is_exactly_one_c_call(monkeypatch):
    x = gg.placeholder((None, 3), name="x")
    y = gg.placeholder((None, 1), name="y")
    w = gg.variable(np.zeros((3, 1)), name="w")
    loss = gg.mse(gg.sigmoid(x @ w), y)
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1, momentum=0.9))
    X, Y = np.ones((4, 3), np.float32), np.ones((4, 1), np.float32)
    step(x=X, y=Y)                              # first call specialises
    counting = _CountingLib(runtime.lib)
    monkeypatch.setattr(runtime, "lib", counting)
    for _ in range(5):
        step(x=X, y=Y)
    assert counting.calls == ["gg_program_run"] * 5


def test_feeds_by_name_by_placeholder_and_results_shape():
    a = gg.placeholder((2,), name="a")
    b = gg.placeholder((2,), name="b")
    f = gg.compile([a + b, a * b])
    s, p = f({a: [1, 2]}, b=np.array([3.0, 4.0]))
    np.testing.assert_allclose(s, [4, 6])
    np.testing.assert_allclose(p, [3, 8])
    single = gg.compile(a * 2.0)(a=[1.0, 2.0])
    assert isinstance(single, np.ndarray) and single.tolist() == [2.0, 4.0]


def test_scalar_result_is_a_number():
    a = gg.placeholder((3,), name="a")
    r = gg.compile(gg.sum(a))(a=[1, 2, 3])
    assert float(r) == 6.0 and np.ndim(r) == 0


def test_float64_feed_is_cast_to_a_float32_placeholder():
    a = gg.placeholder((2,), name="a")
    assert gg.compile(a * 1.0)(a=np.array([1.5, 2.5])).dtype == np.float32


def test_variables_are_updated_in_place_and_assign_keeps_programs_valid():
    w = gg.variable(np.array([1.0, 2.0]), name="w")
    x = gg.placeholder((2,), name="x")
    loss = gg.sum(w * x)
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.5))
    step(x=[1.0, 1.0])
    np.testing.assert_allclose(w.value, [0.5, 1.5])
    w.assign([10.0, 10.0])                     # same array: the compiled program sees it
    step(x=[2.0, 0.0])
    np.testing.assert_allclose(w.value, [9.0, 10.0])
    with pytest.raises(gg.ShapeError, match="shape"):
        w.assign(np.zeros(3))
    np.testing.assert_allclose(w.value, [9.0, 10.0])   # untouched by the failed assign


def _sgd_reference(w, grads_fn, steps, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """torch.optim.SGD's update rule, transcribed."""
    buf = None
    path = []
    for t in range(steps):
        g = grads_fn(w) + weight_decay * w
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        w = w - lr * g
        path.append(w.copy())
    return path


@pytest.mark.parametrize("kw", [dict(), dict(momentum=0.9), dict(momentum=0.8, dampening=0.3),
                                dict(momentum=0.9, nesterov=True), dict(momentum=0.5, weight_decay=0.1)])
def test_sgd_steps_match_the_published_rule(kw):
    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((8, 3)), rng.standard_normal(8)
    w0 = rng.standard_normal(3)
    w = gg.variable(w0, dtype="float64")
    a_ph, b_ph = gg.placeholder((8, 3), dtype="float64"), gg.placeholder((8,), dtype="float64")
    r = gg.sum(a_ph * w, axis=1) - b_ph
    loss = gg.mean(r * r)
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.05, **kw))
    want = _sgd_reference(w0, lambda v: 2 * A.T @ (A @ v - b) / 8, 30, 0.05, **kw)
    for t in range(30):
        step({a_ph: A, b_ph: b})
        np.testing.assert_allclose(w.value, want[t], rtol=1e-12, atol=1e-12)


def test_learning_rate_is_a_runtime_scalar():
    w = gg.variable(np.array([1.0]), dtype="float64")
    opt = gg.optim.SGD(lr=0.1)
    step = gg.compile(gg.sum(w * w), optimizer=opt)
    step()
    opt.lr = 0.0
    step()
    np.testing.assert_allclose(w.value, [0.8])
    assert opt.step_count == 2 and len(step._executables) == 1
    with pytest.raises(ValueError):
        opt.lr = float("nan")


def test_check_numerics_names_the_first_bad_node():
    x = gg.placeholder((2,), name="x")
    bad = gg.div(1.0, x, name="reciprocal")
    f = gg.compile(gg.sum(bad), check_numerics=True)
    with pytest.raises(gg.NumericsError, match="reciprocal") as info:
        f(x=[1.0, 0.0])
    assert "test_runtime.py" in str(info.value)
    np.testing.assert_allclose(f(x=[1.0, 2.0]), 1.5)


def test_threads_setting_round_trips():
    before = gg.get_num_threads()
    gg.set_num_threads(1)
    assert gg.get_num_threads() == 1
    gg.set_num_threads(before)
    assert gg.get_num_threads() == before


def test_repeated_calls_take_the_fast_path_and_still_check_new_feeds():
    x = gg.placeholder((None, 2), name="x")
    f = gg.compile(gg.sum(x, axis=1))
    X = np.ones((3, 2), np.float32)
    assert f({x: X}).tolist() == [2.0, 2.0, 2.0]
    assert f._fast is not None                                   # keys remembered after a checked call
    X[:] = 2.0                                                   # same array, new contents
    assert f({x: X}).tolist() == [4.0, 4.0, 4.0]
    assert f({x: np.ones((1, 2), np.float64)}).tolist() == [2.0]  # other dtype: cast on the checked path
    with pytest.raises(gg.FeedError, match=r"shape \(3, 3\)"):
        f({x: np.ones((3, 3), np.float32)})
    assert f(x=np.full((2, 2), 0.5, np.float32)).tolist() == [1.0, 1.0]   # by name
    with pytest.raises(gg.FeedError, match="unknown feed"):
        f(y=X)
    strided = np.ones((3, 4), np.float32)[:, ::2]                # not contiguous: copied, same result
    assert f({x: strided}).tolist() == [2.0, 2.0, 2.0]


def test_profile_mode_times_every_instruction_in_c():
    x = gg.placeholder((None, 8), name="x")
    w = gg.variable(np.ones((8, 4)), name="w")
    loss = gg.mean(gg.sigmoid(x @ w))
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1), profile=True)
    for _ in range(5):
        step(x=np.ones((16, 8), np.float32))
    ns = step.profile_ns()
    assert ns.shape == (len(step.plan().instructions),) and (ns > 0).all()
    text = step.summary()
    assert "time" in text and "profile:" in text and "%" in text
    plain = gg.compile(loss)
    plain(x=np.ones((2, 8), np.float32))
    assert plain.profile_ns() is None and "profile:" not in plain.summary()
