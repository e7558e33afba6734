"""Bad input raises a typed error whose message names what the user needs — and the process
carries on: a correct program compiles and runs afterwards."""
import numpy as np
import pytest

import graphgrad as gg


def _still_works():
    a = gg.placeholder((2,), name="a")
    assert gg.compile(a + 1.0)(a=[1.0, 2.0]).tolist() == [2.0, 3.0]


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
