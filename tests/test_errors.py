"""Bad input raises a typed error whose message names what the user needs — and the process
carries on: after every case here a correct program compiles and runs (the autouse fixture
below checks that, and each case checks it again where it matters).

Decisions recorded by these tests:
- non-contiguous feeds (slices, transposes, Fortran order) are copied to C order and work;
- feeds are never written: read-only arrays are fine, even where an op could run in place;
- a zero-size batch is fine for a program without an optimizer (empty results), and a FeedError
  for a training step (a step on no examples would still advance the optimizer's state);
- sizes whose bytes overflow int64 are a ShapeError when the node is built (static shapes) or
  when the program is specialised (batch dimension known), never an allocation.
"""
import numpy as np
import pytest

import graphgrad as gg


def _still_works():
    a = gg.placeholder((2,), name="a")
    assert gg.compile(a + 1.0)(a=[1.0, 2.0]).tolist() == [2.0, 3.0]


@pytest.fixture(autouse=True)
def process_still_works():
    yield
    _still_works()


def _regression(name="w"):
    """x (None, 3) @ w (3, 1) -> mse against y: the small model most cases break."""
    x = gg.placeholder((None, 3), name="x")
    y = gg.placeholder((None, 1), name="y")
    w = gg.variable(np.ones((3, 1)), name=name)
    return x, y, w, gg.mse(x @ w, y)


def test_matmul_shape_error_names_op_nodes_shapes_and_line():
    x = gg.placeholder((None, 784), name="images")
    w = gg.variable(np.zeros((30, 10)), name="W1")
    with pytest.raises(gg.ShapeError) as info:
        x @ w
    msg = str(info.value)
    for part in ("matmul", '"images"', '"W1"', "(None, 784)", "(30, 10)", "784", "test_errors.py:"):
        assert part in msg, part
    _still_works()


def test_broadcast_shape_error():
    a = gg.placeholder((3, 4), name="a")
    b = gg.placeholder((5,), name="b")
    with pytest.raises(gg.ShapeError, match=r"add.*cannot be broadcast") as info:
        a + b
    assert '"a" (3, 4)' in str(info.value) and '"b" (5,)' in str(info.value)
    _still_works()


def test_dtype_mismatch_is_a_shape_error():
    a = gg.placeholder((2,), dtype="float32", name="a32")
    b = gg.placeholder((2,), dtype="float64", name="b64")
    with pytest.raises(gg.ShapeError, match="dtypes"):
        a * b


def test_loss_shapes_must_match():
    p = gg.placeholder((None, 10), name="pred")
    y = gg.placeholder((None, 1), name="target")
    with pytest.raises(gg.ShapeError, match="mse.*same shape"):
        gg.mse(p, y)


def test_batch_dimension_mismatch_is_caught_when_fed():
    x = gg.placeholder((None, 3), name="x")
    y = gg.placeholder((None, 3), name="y")
    f = gg.compile(gg.mse(x, y))
    with pytest.raises(gg.ShapeError, match=r"as fed.*\(4, 3\).*\(5, 3\)"):
        f(x=np.zeros((4, 3)), y=np.zeros((5, 3)))
    _still_works()


@pytest.mark.parametrize("feeds,pattern", [
    (dict(x=np.zeros((2, 3))), r'missing feed for "y"'),
    (dict(x=np.zeros((2, 3)), y=np.zeros((2, 1)), z=1), r"unknown feed 'z'"),
    (dict(x=np.zeros((2, 4)), y=np.zeros((2, 1))), r'feed "x" has shape \(2, 4\); expected \(None, 3\)'),
    (dict(x=np.zeros(3), y=np.zeros((2, 1))), r'feed "x" has shape \(3,\)'),
    (dict(x=np.zeros((2, 3), complex), y=np.zeros((2, 1))), r'feed "x" has dtype complex128'),
    (dict(x=[["a", "b", "c"]], y=np.zeros((1, 1))), r'feed "x" has dtype <U1'),
])
def test_feed_errors(feeds, pattern):
    x = gg.placeholder((None, 3), name="x")
    y = gg.placeholder((None, 1), name="y")
    w = gg.variable(np.ones((3, 1)), name="w")
    f = gg.compile(gg.mse(x @ w, y))
    with pytest.raises(gg.FeedError, match=pattern):
        f(**feeds)
    assert f(x=np.ones((2, 3)), y=np.zeros((2, 1))) == pytest.approx(9.0)


def test_feeding_a_non_placeholder_is_an_error():
    x = gg.placeholder((2,), name="x")
    h = x * 2.0
    f = gg.compile(h + 1.0)
    with pytest.raises(gg.FeedError, match="not a placeholder"):
        f({x: [1.0, 1.0], h: [0.0, 0.0]})


def test_optimizer_without_variables():
    x = gg.placeholder((2,), name="x")
    with pytest.raises(gg.GraphGradError, match="no variables"):
        gg.compile(gg.sum(x), optimizer=gg.optim.SGD(lr=0.1))


def test_unsupported_dtype():
    with pytest.raises(gg.ShapeError, match="unsupported dtype"):
        gg.placeholder((2,), dtype="int8")


def test_bad_reduction_axis():
    x = gg.placeholder((2, 3), name="x")
    with pytest.raises(gg.ShapeError, match="axis 2 is out of range"):
        gg.sum(x, axis=2)


# ---- shapes --------------------------------------------------------------------------------

def test_matmul_needs_2d_operands():
    a = gg.placeholder((2, 3, 4), name="cube")
    w = gg.variable(np.zeros((4, 5)), name="W")
    with pytest.raises(gg.ShapeError) as info:
        gg.matmul(a, w)
    msg = str(info.value)
    for part in ("matmul", "2-D", '"cube" (2, 3, 4)', '"W" (4, 5)', "test_errors.py:"):
        assert part in msg, part


def test_broadcast_mismatch_found_only_when_fed_names_the_node_and_line():
    x = gg.placeholder((None, 3), name="x")
    b = gg.placeholder((None,), name="b")
    f = gg.compile(gg.add(x, b, name="shifted"))
    assert f(x=np.zeros((2, 3)), b=np.ones(3)).tolist() == [[1.0] * 3] * 2
    with pytest.raises(gg.ShapeError) as info:
        f(x=np.zeros((2, 3)), b=np.ones(5))
    msg = str(info.value)
    for part in ('add "shifted"', "cannot be broadcast", "(2, 3)", "(5,)", "test_errors.py:"):
        assert part in msg, part
    assert f(x=np.zeros((1, 3)), b=np.ones(3)).shape == (1, 3)   # the same program still runs


def test_repeated_reduction_axis():
    x = gg.placeholder((2, 3), name="x")
    with pytest.raises(gg.ShapeError, match=r'sum of "x".*repeated axis'):
        gg.sum(x, axis=(0, 0))


@pytest.mark.parametrize("shape", [(-1, 3), (2.5,), "abc", (None, "3")])
def test_bad_placeholder_shape(shape):
    with pytest.raises(gg.ShapeError, match="shape must be"):
        gg.placeholder(shape)


def test_absurd_placeholder_dimension_is_a_shape_error_not_an_allocation():
    with pytest.raises(gg.ShapeError) as info:
        gg.placeholder((2**40, 2**40), name="huge")
    msg = str(info.value)
    for part in ('"huge"', "1099511627776", "bytes", "test_errors.py:"):
        assert part in msg, part


def test_absurd_result_of_an_op_is_caught_when_built():
    a = gg.placeholder((2**40, 1), name="tall", dtype="float64")
    b = gg.placeholder((1, 2**40), name="wide", dtype="float64")
    with pytest.raises(gg.ShapeError) as info:
        a @ b
    msg = str(info.value)
    for part in ("matmul", '"tall" (1099511627776, 1)', "bytes", "test_errors.py:"):
        assert part in msg, part


def test_absurd_batch_dimension_is_caught_when_compiled():
    a = gg.placeholder((None, 1), name="col")
    b = gg.placeholder((1, None), name="row")
    f = gg.compile(gg.matmul(a, b, name="outer"))
    with pytest.raises(gg.ShapeError) as info:
        f.plan(batch_size=2**33)       # an (2**33, 2**33) float32 result: 2**68 bytes
    msg = str(info.value)
    for part in ('matmul "outer"', "as fed", "bytes", "test_errors.py:"):
        assert part in msg, part
    assert f(col=np.ones((2, 1)), row=np.ones((1, 2))).tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_a_batch_dimension_fed_as_1_is_never_broadcast():
    x = gg.placeholder((None, 3), name="rows")
    w = gg.variable(np.ones((4, 3)), name="w4")
    f = gg.compile(gg.mul(x, w, name="scaled"))
    assert f(rows=np.ones((4, 3))).shape == (4, 3)
    with pytest.raises(gg.ShapeError) as info:
        f(rows=np.ones((1, 3)))   # None fed as 1 would stretch to 4: its gradient would have the wrong shape
    msg = str(info.value)
    for part in ('mul "scaled"', '"rows" declares axis 0 as None', "never broadcast", "test_errors.py:"):
        assert part in msg, part


# ---- feeds ---------------------------------------------------------------------------------

def test_ambiguous_feed_name():
    a1 = gg.placeholder((2,), name="a")
    a2 = gg.placeholder((2,), name="a")
    f = gg.compile(a1 * a2)
    with pytest.raises(gg.FeedError, match="'a' is ambiguous"):
        f(a=np.ones(2))
    assert f({a1: [1.0, 2.0], a2: [3.0, 4.0]}).tolist() == [3.0, 8.0]


def test_positional_feed_that_is_not_a_dict():
    x, y, w, loss = _regression()
    f = gg.compile(loss)
    with pytest.raises(TypeError, match=r'got a ndarray.*"x" \(None, 3\) float32.*"y"'):
        f(np.zeros((2, 3)))


@pytest.mark.parametrize("make_view", [
    lambda a: a[:, ::2],                       # strided slice
    lambda a: np.asfortranarray(a[:, :3]),     # Fortran order
    lambda a: a[::-1, 1:4],                    # negative stride
    lambda a: a.T.T[:, 2:5].astype(np.float64),  # another dtype, cast on the way in
])
def test_non_contiguous_feeds_are_copied_and_work(make_view):
    x, y, w, loss = _regression()
    f = gg.compile([x @ w, loss])
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    xv = make_view(base)
    assert not (xv.flags.c_contiguous and xv.dtype == np.float32)
    pred, value = f(x=xv, y=np.zeros((4, 1), np.float32))
    np.testing.assert_allclose(pred, np.asarray(xv, np.float64) @ np.ones((3, 1)), rtol=1e-6)
    assert value == pytest.approx(np.mean((np.asarray(xv, np.float64) @ np.ones((3, 1))) ** 2), rel=1e-6)


def test_read_only_feeds_are_never_written():
    x = gg.placeholder((None, 3), name="x")
    y = gg.placeholder((None, 1), name="y")
    w = gg.variable(np.full((3, 1), 0.5), name="w")
    h = gg.relu(x * 2.0)             # ops that may run in place
    loss = gg.mse(gg.neg(h) @ w, y)
    xs = np.array([[1, -2, 3], [-4, 5, -6]], np.float32)
    ys = np.array([[1], [2]], np.float32)
    for arr in (xs, ys):
        arr.flags.writeable = False
    keep_x, keep_y = xs.copy(), ys.copy()
    f = gg.compile([h, loss, x])
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.01))
    h_val, _, x_val = f(x=xs, y=ys)
    np.testing.assert_array_equal(h_val, np.maximum(xs * 2, 0))
    x_val[...] = 7.0                 # a fetched placeholder is the caller's own copy
    step(x=xs, y=ys)
    np.testing.assert_array_equal(xs, keep_x)
    np.testing.assert_array_equal(ys, keep_y)


def test_nan_feed_with_check_numerics_names_the_feed():
    x, y, w, loss = _regression()
    f = gg.compile(loss, check_numerics=True)
    bad = np.ones((2, 3), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(gg.NumericsError, match=r'feed "x" \(2, 3\) holds NaN or Inf \(first at index \[1, 2\]\)'):
        f(x=bad, y=np.zeros((2, 1)))
    # without check_numerics a NaN simply flows through
    assert np.isnan(gg.compile(loss)(x=bad, y=np.zeros((2, 1))))


def test_inf_produced_by_an_op_names_the_node_and_the_line():
    x, y, w, loss = _regression()
    z = gg.placeholder((None, 1), name="z")
    scaled = gg.div(x @ w, z, name="scaled")
    step = gg.compile(gg.mse(scaled, y), optimizer=gg.optim.SGD(lr=0.1), check_numerics=True)
    with pytest.raises(gg.NumericsError) as info:
        step(x=np.ones((2, 3)), y=np.zeros((2, 1)), z=np.array([[1.0], [0.0]]))
    msg = str(info.value)
    for part in ('div node "scaled"', "forward", "NaN or Inf", "test_errors.py:", 'gg.div(x @ w, z, name="scaled")'):
        assert part in msg, part
    # it stopped in the forward pass: the variable was not touched
    np.testing.assert_array_equal(w.value, np.ones((3, 1)))
    step(x=np.ones((2, 3)), y=np.zeros((2, 1)), z=np.ones((2, 1)))
    assert not np.array_equal(w.value, np.ones((3, 1)))


def test_zero_batch_forward_gives_empty_results():
    x, y, w, loss = _regression()
    (gw,) = gg.grad(loss, [w])
    f = gg.compile([gg.relu(x @ w), gw])
    h, g = f(x=np.zeros((0, 3)), y=np.zeros((0, 1)))
    assert h.shape == (0, 1) and g.shape == (3, 1)
    np.testing.assert_array_equal(g, 0.0)


def test_zero_batch_training_step_is_a_feed_error_and_changes_nothing():
    x, y, w, loss = _regression()
    opt = gg.optim.SGD(lr=0.1, momentum=0.9)
    step = gg.compile(loss, optimizer=opt)
    with pytest.raises(gg.FeedError, match=r'feed "x" has shape \(0, 3\): a training step needs at least one'):
        step(x=np.zeros((0, 3)), y=np.zeros((0, 1)))
    assert opt.step_count == 0
    np.testing.assert_array_equal(w.value, np.ones((3, 1)))
    step(x=np.ones((1, 3)), y=np.zeros((1, 1)))
    assert opt.step_count == 1


def test_a_rejected_step_leaves_variables_and_step_count_alone():
    x, y, w, loss = _regression()
    opt = gg.optim.SGD(lr=0.1)
    step = gg.compile(loss, optimizer=opt)
    step(x=np.ones((2, 3)), y=np.zeros((2, 1)))
    after_one = w.value
    for bad in (dict(x=np.ones((2, 4)), y=np.zeros((2, 1))),   # wrong shape
                dict(x=np.ones((2, 3)), y=np.zeros((3, 1))),   # batch sizes disagree
                dict(x=np.ones((2, 3))),                      # missing feed
                dict(x=np.ones((2, 3), complex), y=np.zeros((2, 1)))):
        with pytest.raises(gg.GraphGradError):
            step(**bad)
        np.testing.assert_array_equal(w.value, after_one)
        assert opt.step_count == 1


# ---- variables -----------------------------------------------------------------------------

def test_assign_with_a_wrong_shape_keeps_the_old_value():
    x, y, w, loss = _regression(name="weights")
    f = gg.compile(x @ w)
    with pytest.raises(gg.ShapeError) as info:
        w.assign(np.zeros((1, 3)))
    msg = str(info.value)
    for part in ('"weights"', "(1, 3)", "(3, 1)"):
        assert part in msg, part
    np.testing.assert_array_equal(f(x=np.ones((1, 3))), [[3.0]])
    w.assign(np.full((3, 1), 2.0))         # a right-shaped value reaches the compiled program
    np.testing.assert_array_equal(f(x=np.ones((1, 3))), [[6.0]])


def test_assign_with_a_wrong_dtype():
    w = gg.variable(np.ones(2), name="w")
    with pytest.raises(gg.ShapeError, match=r'cannot assign a complex128 value to float32 variable "w"'):
        w.assign(np.ones(2, complex))
    np.testing.assert_array_equal(w.value, [1.0, 1.0])


def test_only_variables_can_be_assigned_and_only_leaves_have_values():
    p = gg.placeholder((2,), name="p")
    c = gg.constant([1.0, 2.0], name="c")
    with pytest.raises(gg.GraphGradError, match='only variables can be assigned; "c" is a constant'):
        c.assign([0.0, 0.0])
    with pytest.raises(gg.GraphGradError, match='"p" is a placeholder node: it has no stored value'):
        p.value


# ---- gradients -----------------------------------------------------------------------------

def test_gradient_of_a_non_scalar_needs_grad_ys():
    x = gg.placeholder((None, 3), name="x")
    w = gg.variable(np.ones((3, 2)), name="w")
    h = gg.matmul(x, w, name="hidden")
    with pytest.raises(gg.GradientError, match=r'"hidden" has shape \(None, 2\), not a scalar; pass grad_ys'):
        gg.grad(h, [w])
    with pytest.raises(gg.GradientError, match=r'grad_ys has shape \(3,\) but "hidden" has \(None, 2\)'):
        gg.grad(h, [w], grad_ys=gg.placeholder((3,)))
    (gw,) = gg.grad(h, [w], grad_ys=gg.placeholder((None, 2), name="dh"))
    assert gw.shape == (3, 2)


def test_gradient_of_an_unconnected_input():
    x, y, w, loss = _regression()
    other = gg.variable(np.ones(4), name="unused_bias")
    with pytest.raises(gg.GradientError) as info:
        gg.grad(loss, [w, other])
    msg = str(info.value)
    for part in ('does not depend on "unused_bias"', "variable", "test_errors.py:", 'unconnected="zero"'):
        assert part in msg, part
    gw, gz = gg.grad(loss, [w, other], unconnected="zero")
    g_w, g_z = gg.compile([gw, gz])(x=np.ones((1, 3)), y=np.ones((1, 1)))
    np.testing.assert_array_equal(g_w, np.full((3, 1), 4.0))   # d/dw mean((x·w - y)^2) = 2·(3 - 1)·x
    np.testing.assert_array_equal(g_z, np.zeros(4))


def test_gradient_with_an_input_listed_twice_names_it():
    x, y, w, loss = _regression(name="W_twice")
    with pytest.raises(gg.GradientError, match='"W_twice" .*listed twice'):
        gg.grad(loss, [w, w])


def test_a_forced_cycle_is_a_cycle_error():
    x = gg.placeholder((2,), name="x")
    h = gg.mul(x, 2.0, name="h")
    out = gg.add(h, 1.0, name="out")
    h.inputs = (out, h.inputs[1])          # rewire after creation: h now reads its own reader
    with pytest.raises(gg.CycleError, match='cycle.*"h" -> "out"|cycle.*"out" -> "h"'):
        gg.compile(out)
    with pytest.raises(gg.CycleError, match="cycle"):
        gg.grad(gg.sum(out), x)


# ---- optimizers ----------------------------------------------------------------------------

def test_optimizer_given_a_variable_twice_names_it():
    x, y, w, loss = _regression(name="W_dup")
    with pytest.raises(gg.GraphGradError, match='"W_dup"'):
        gg.optim.SGD(lr=0.1).minimize(loss, var_list=[w, w])


def test_optimizer_given_something_that_is_not_a_variable():
    x, y, w, loss = _regression()
    with pytest.raises(gg.GraphGradError, match="variables"):
        gg.optim.SGD(lr=0.1).minimize(loss, var_list=[w, gg.constant(np.ones((3, 1)), name="frozen")])


@pytest.mark.parametrize("lr", [-0.1, float("nan"), float("inf")])
def test_bad_learning_rate(lr):
    with pytest.raises(ValueError, match=r"learning rate.*" + str(lr).replace("inf", "inf")):
        gg.optim.SGD(lr=lr)
    opt = gg.optim.SGD(lr=0.1)
    with pytest.raises(ValueError, match="learning rate"):
        opt.lr = lr
    assert opt.lr == pytest.approx(0.1)   # the rejected value did not reach the runtime scalar


def test_nesterov_needs_momentum():
    with pytest.raises(ValueError, match="Nesterov"):
        gg.optim.SGD(lr=0.1, nesterov=True)


# ---- API misuse ----------------------------------------------------------------------------

def test_unknown_loss_reduction():
    p = gg.placeholder((2,), name="p")
    with pytest.raises(ValueError, match=r"reduction must be one of.*'avg'"):
        gg.mse(p, p, reduction="avg")


@pytest.mark.parametrize("outputs", [[], [1.0], np.zeros(3)])
def test_compile_needs_tensors(outputs):
    with pytest.raises(TypeError, match="gg.compile takes a Tensor"):
        gg.compile(outputs)


# ---- models, training and checkpoints (gg.nn, gg.fit, gg.save / gg.load) ------------------

def _small_model():
    return gg.nn.Sequential(gg.nn.Dense(3, 4, activation="relu"), gg.nn.Dense(4, 1))


def _data(n=20):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, 3)).astype(np.float32)
    return X, X.sum(axis=1, keepdims=True)


def test_unknown_activation_name():
    with pytest.raises(ValueError, match=r"unknown activation 'relux'.*'relu'"):
        gg.nn.Dense(3, 4, activation="relux")


def test_unknown_loss_name():
    X, Y = _data()
    with pytest.raises(ValueError, match=r"unknown loss 'msee'.*'mse'"):
        gg.fit(_small_model(), X, Y, loss="msee", optimizer=gg.optim.SGD(lr=0.1), epochs=1, verbose=0)


def test_fit_with_mismatched_samples():
    X, Y = _data()
    with pytest.raises(gg.ShapeError, match="X has 20 samples but Y has 5"):
        gg.fit(_small_model(), X, Y[:5], loss="mse", optimizer=gg.optim.SGD(lr=0.1), epochs=1, verbose=0)


def test_optimizer_given_an_empty_parameter_list():
    with pytest.raises(gg.GraphGradError, match="empty parameter list"):
        gg.optim.SGD([], lr=0.1)


@pytest.fixture
def checkpoint(tmp_path):
    model, opt = _small_model(), gg.optim.SGD(lr=0.1, momentum=0.9)
    X, Y = _data()
    gg.fit(model, X, Y, loss="mse", optimizer=opt, epochs=1, batch_size=5, verbose=0)
    path = tmp_path / "model.npz"
    gg.save(str(path), model, opt)
    return path, model


@pytest.mark.parametrize("cut", [0.0, 0.5, 0.99])
def test_loading_a_truncated_checkpoint(checkpoint, cut):
    path, model = checkpoint
    data = path.read_bytes()
    bad = path.with_name("cut.npz")
    bad.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(gg.GraphGradError, match=r"cut\.npz.*(not an \.npz|truncated or corrupt|cut short)"):
        gg.load(str(bad))
    assert gg.load(str(path)).model is not None      # the intact file still loads


def test_loading_a_corrupt_checkpoint(checkpoint):
    path, model = checkpoint
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0xFF                   # one flipped byte inside an array: the CRC catches it
    bad = path.with_name("flipped.npz")
    bad.write_bytes(bytes(data))
    with pytest.raises(gg.GraphGradError, match=r"flipped\.npz"):
        gg.load(str(bad))


@pytest.mark.parametrize("content", ["foreign_npz", "text"])
def test_loading_a_foreign_file(tmp_path, content):
    path = tmp_path / "other.npz"
    if content == "foreign_npz":
        np.savez(path, weights=np.ones(3))
    else:
        path.write_text("not a checkpoint")
    with pytest.raises(gg.GraphGradError, match=r"other\.npz is not a graphgrad checkpoint"):
        gg.load(str(path))


def test_loading_a_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        gg.load(str(tmp_path / "nope.npz"))


def test_checkpoint_that_does_not_match_the_model_changes_nothing(checkpoint):
    path, _ = checkpoint
    other = gg.nn.Sequential(gg.nn.Dense(3, 5, activation="relu"), gg.nn.Dense(5, 1))
    before = [p.value for p in other.parameters()]
    with pytest.raises(gg.ShapeError) as info:
        gg.load(str(path), model=other)
    msg = str(info.value)
    for part in ("model.npz", "(3, 4)", "(3, 5)", "kernel"):
        assert part in msg, part
    for p, v in zip(other.parameters(), before):     # checked before anything was assigned
        np.testing.assert_array_equal(p.value, v)
    deeper = gg.nn.Sequential(gg.nn.Dense(3, 4), gg.nn.Dense(4, 4), gg.nn.Dense(4, 1))
    with pytest.raises(gg.ShapeError, match="holds 4 parameters; the model has 6"):
        gg.load(str(path), model=deeper)
