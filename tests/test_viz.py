"""Rendering: valid PNGs, the labels a reader needs, roles in three colours, the chain rule."""
import numpy as np

import graphgrad as gg
from graphgrad.viz import ROLE_COLOURS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _first_model():
    x = gg.constant(2.0, name="x")
    w = gg.variable(3.0, name="w")
    b = gg.variable(1.0, name="b")
    y_true = gg.constant(4.0, name="y_true")
    x1 = gg.mul(w, x, name="x1")
    x2 = gg.add(x1, b, name="x2")
    return w, b, gg.l1(x2, y_true, name="loss")


def test_render_writes_a_png(tmp_path):
    *_, loss = _first_model()
    path = gg.render(loss, str(tmp_path / "g.png"))
    data = open(path, "rb").read()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_chain_rule_view_has_values_and_local_gradients_on_edges():
    *_, loss = _first_model()
    source = gg.to_dot(loss, show_values=True).source
    for label in ("x2 = 7", "∂loss/∂x2 = 1", "x1 = 6", "∂x2/∂x1 = 1", "∂x2/∂b = 1", "w = 3", "∂x1/∂w = 2",
                  "∂x1/∂x = 3", "∂loss/∂y_true = -1"):
        assert label in source, label


def test_training_step_graph_shows_three_roles_and_shapes(tmp_path):
    x = gg.placeholder((None, 4), name="x")
    y = gg.placeholder((None, 1), name="y")
    w = gg.variable(np.zeros((4, 1)), name="w")
    step = gg.compile(gg.mse(x @ w, y), optimizer=gg.optim.SGD(lr=0.1))
    path = step.render(str(tmp_path / "step.png"))
    assert open(path, "rb").read().startswith(PNG_MAGIC)
    source = gg.to_dot(step.outputs + step.updates).source
    for colour in ROLE_COLOURS.values():
        assert colour in source
    assert "(None, 4)" in source and "sgd_update" in source and "(in place)" in source


def test_show_values_with_feeds_and_highlight(tmp_path):
    x = gg.placeholder((2,), name="x")
    s = gg.sum(gg.sigmoid(x), name="s")
    dot = gg.to_dot(s, show_values=True, feed_dict={x: [0.0, 0.0]}, highlight=s)
    assert "x = [0, 0]" in dot.source and "∂s/∂sigmoid" in dot.source
    assert 'color=red' in dot.source


def test_render_other_formats(tmp_path):
    *_, loss = _first_model()
    assert open(gg.render(loss, str(tmp_path / "g.svg")), encoding="utf-8").read().lstrip().startswith("<?xml")
    assert "digraph" in open(gg.render(loss, str(tmp_path / "g.dot")), encoding="utf-8").read()


def test_legend_names_only_the_roles_the_picture_has():
    *_, loss = _first_model()
    forward_only = gg.to_dot(loss).source
    assert "legend_forward" in forward_only
    assert "legend_backward" not in forward_only and "legend_update" not in forward_only
    w, b, loss = _first_model()
    with_grads = gg.to_dot([loss] + gg.grad(loss, [w, b])).source
    assert "legend_backward" in with_grads and "legend_update" not in with_grads


def test_chain_rule_labels_say_a_local_gradient_is_summed_over_a_non_scalar():
    x = gg.placeholder((3, 2), name="x")
    w = gg.variable(np.arange(6.0).reshape(2, 3), name="w")
    h = gg.matmul(x, w, name="h")
    loss = gg.sum(h, name="loss")
    source = gg.to_dot(loss, show_values=True, feed_dict={x: np.ones((3, 2))}).source
    # ∂h/∂w, summed over h's 9 elements: every entry of w's gradient is the column sum of x = 3
    assert "∂h/∂w = 6 values, mean 3" in source and "(each summed over h's 9 elements)" in source
    assert "h = 9 values, mean" in source


def test_a_mean_is_drawn_and_listed_as_a_mean():
    x = gg.placeholder((None, 3), name="x")
    m = gg.mean(x * x)
    s = gg.sum(x)
    assert m.name.startswith("mean_") and s.name.startswith("sum_")
    source = gg.to_dot([m, s]).source
    assert f'label="mean\n(' in source.replace("\\n", "\n") and f'label="sum\n(' in source.replace("\\n", "\n")
    program = gg.compile(m, passes=[])
    program(x=np.ones((2, 3), np.float32))
    assert "mean" in program.summary(as_text=True)
