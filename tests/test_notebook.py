"""The lecture notebook runs headless (nbclient + ipykernel, quick mode) and its pictures are
graphgrad's own inline displays; Tensors, Programs, Plans and memory plans display inline;
big graphs collapse their layers; gg.fit picks the right progress bar inside Jupyter."""
import os
import sys
import types

import graphviz
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

import graphgrad as gg
from graphgrad import viz
from graphgrad.graph import ancestors
from graphgrad.train import progress_bar_class

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "gradient_descent_and_backprop.ipynb")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---- the notebook ---------------------------------------------------------------------------

def test_committed_notebook_has_no_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert len(code) >= 20
    assert all(not c.outputs and c.execution_count is None for c in code), "strip the outputs before committing"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = dict(os.environ, GRAPHGRAD_NOTEBOOK_QUICK="1", MPLBACKEND="module://matplotlib_inline.backend_inline")
    old = os.environ.copy()
    os.environ.update(env)             # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=180, kernel_name="python3",
                       resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    return nb


def _outputs(nb, kind=None):
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.outputs:
            if kind is None or out.output_type == kind:
                yield cell, out


def _text(nb, stream="stdout") -> str:
    return "".join(out.text for _, out in _outputs(nb, "stream") if out.name == stream)


def test_notebook_runs_in_quick_mode_without_errors(executed):
    assert not list(_outputs(executed, "error"))
    out = _text(executed)
    assert "quick mode" in out
    assert "gradient = (4, 6)" in out                          # ∇(x² + 3y²) at (2, 1)
    assert "step: (2.0, 1.0) -> (1.6, 0.4)" in out             # one step with lr 0.1
    assert "loss, dloss/dw, dloss/db = [3.0, 2.0, 1.0]" in out   # the first model, by the chain rule
    assert "DivergenceError" in out
    assert "300 iterations per epoch" in out                   # stochastic GD on 300 samples
    assert "test accuracy after 2 epochs" in out


def test_notebook_checks_its_claims(executed):
    out = _text(executed)
    # the chain rule: the product of the local derivatives equals gg.grad
    line = next(l for l in out.splitlines() if l.startswith("product ="))
    product, total = (float(part.split("=")[1]) for part in line.split("gg.grad(y, x)"))
    assert product == pytest.approx(total, rel=1e-9)
    # the learned linear model: y = 0.5·x1 + 1·x2 + 0.5
    learned = next(l for l in out.splitlines() if l.startswith("learned w"))
    assert "0.5" in learned and "b = [0.5" in learned
    # section 12: the suggested rate beats the default; vanishing gradients in the sigmoid net only
    accuracies = [float(l.rsplit(" ", 1)[1].rstrip("%")) for l in out.splitlines() if l.startswith("one epoch at lr")]
    assert len(accuracies) == 2 and accuracies[1] >= accuracies[0]
    ratios = {l.split(":")[0].strip(): float(l.rsplit("= ", 1)[1]) for l in out.splitlines() if "first / last =" in l}
    assert ratios["sigmoid"] < 0.1 and 0.25 < ratios["relu + He"] < 4
    assert "the line between them rises to" in out


def test_notebook_pictures_come_from_graphgrad_and_matplotlib(executed):
    mimes = [set(out.get("data", {})) for _, out in _outputs(executed) if out.output_type in
             ("display_data", "execute_result")]
    svgs = [out.data["image/svg+xml"] for _, out in _outputs(executed) if "image/svg+xml" in out.get("data", {})]
    pngs = sum("image/png" in m for m in mimes)
    assert len(svgs) >= 8 and pngs >= 10
    assert any("collapsed" in svg for svg in svgs)             # the training step of the MNIST net, by layer
    assert any("∂loss/∂x2" in svg for svg in svgs)             # the chain-rule view of the first model


def test_fit_progress_bar_in_the_kernel(executed):
    err = _text(executed, "stderr")
    assert "IProgress not found" not in err and "Warning" not in err
    widgets = [out for _, out in _outputs(executed) if "application/vnd.jupyter.widget-view+json" in out.get("data", {})]
    # the Makefile installs ipywidgets with the notebook's dependencies: the bar is the widget
    assert widgets and "epoch 1/2" not in err


# ---- inline displays -------------------------------------------------------------------------

def _mlp_step(sizes=(784, 30, 20, 10)):
    layers = [gg.nn.Dense(a, b, activation="relu" if k < len(sizes) - 2 else None, name=f"layer{k}")
              for k, (a, b) in enumerate(zip(sizes, sizes[1:]))]
    model = gg.nn.Sequential(*layers)
    x = gg.placeholder((None, sizes[0]), name="x")
    y = gg.placeholder((None, sizes[-1]), name="y")
    loss = gg.mse(model(x), y)
    return model, x, y, loss, gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-3))


def test_tensor_program_plan_and_memory_display_inline():
    model, x, y, loss, step = _mlp_step((4, 3, 2))
    for obj in (loss, step):
        svg = obj._repr_svg_()
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    step(x=np.ones((5, 4), np.float32), y=np.zeros((5, 2), np.float32))
    plan = step.plan()
    svg = plan._repr_svg_()
    assert "<svg" in svg and "arena @" in svg
    png = plan.memory._repr_png_()
    assert png.startswith(PNG_MAGIC) and len(png) > 2000


def test_inline_picture_is_sized_and_falls_back_without_dot(monkeypatch):
    *_, loss, _ = _mlp_step((4, 3, 2))
    svg = loss._repr_svg_()
    width_pt = float(svg.split('width="', 1)[1].split("pt", 1)[0])
    assert width_pt <= 11 * 72 + 1                             # INLINE_SIZE: at most 11 inches wide

    def missing(*args, **kwargs):
        raise graphviz.ExecutableNotFound(["dot"])
    monkeypatch.setattr(graphviz.Digraph, "pipe", missing)
    assert loss._repr_svg_() is None                           # Jupyter then shows the text repr


def test_layers_group_by_name_prefix_and_role():
    model, x, y, loss, step = _mlp_step()
    nodes = ancestors(step.outputs + step.updates)
    group = viz.layer_groups(nodes)
    for node in nodes:
        if node.op == "variable" and "/" in node.name:
            assert group[node.id] == node.name.split("/")[0]
        if node.op == "adam_update":                           # each update sits with its parameter's layer
            assert group[node.id] == node.inputs[0].name.split("/")[0]
    # every op reading a layer's kernel belongs to that layer, forward and backward
    for layer in model.layers:
        readers = [n for n in nodes if any(i is layer.kernel for i in n.inputs)]
        assert readers and all(group[n.id] == layer.name for n in readers)
    # the loss reads the targets too: it stays outside the layers; x and y do as well
    assert loss.id not in group and x.id not in group and y.id not in group
    # the activation's backward joins its own layer (it feeds that layer's gradients)
    relu_backward = [n for n in nodes if n.op == "relu_backward"]
    assert sorted(group[n.id] for n in relu_backward) == ["layer0", "layer1"]


def test_big_graphs_collapse_layers_past_max_nodes():
    model, x, y, loss, step = _mlp_step((8, 6, 5, 4, 3))
    everything = step.outputs + step.updates
    n = len(ancestors(everything))
    assert n > viz.INLINE_MAX_NODES
    collapsed = gg.to_dot(everything, collapse="auto").source
    assert "layers collapsed" in collapsed
    for layer in model.layers:
        for role in ("forward", "backward", "update"):
            assert f"{layer.name} ({role})" in collapsed
    assert collapsed.count("->") < sum(len(node.inputs) for node in ancestors(everything))
    expanded = gg.to_dot(everything, collapse=False).source     # the option to expand: every node, in layer boxes
    assert "collapsed" not in expanded and "cluster_layer_" in expanded
    assert all(f'"{node.id}"' in expanded or f"\t{node.id} [" in expanded for node in ancestors(everything))
    # small graphs stay expanded under "auto"; a large max_nodes keeps a big one expanded
    assert "collapsed" not in gg.to_dot(loss, collapse="auto").source
    assert "collapsed" not in gg.to_dot(everything, collapse="auto", max_nodes=n).source
    assert "collapsed" in gg.to_dot(loss, collapse=True).source
    with pytest.raises(ValueError, match="collapse"):
        gg.to_dot(loss, collapse="sometimes")


def test_collapsed_picture_highlights_the_layer_holding_a_bad_node(tmp_path):
    model, x, y, loss, step = _mlp_step()
    bad = next(n for n in ancestors([loss]) if n.op == "relu")
    source = gg.to_dot(step.outputs + step.updates, collapse=True, highlight=bad).source
    box = source.split('"layer layer0 forward" [', 1)[1].split("]", 1)[0]
    assert "color=red" in box
    assert "red" not in source.split('"layer layer1 forward" [', 1)[1].split("]", 1)[0]
    path = gg.render(step.outputs + step.updates, str(tmp_path / "step.png"), collapse=True)
    assert open(path, "rb").read().startswith(PNG_MAGIC)


# ---- the progress bar in Jupyter -------------------------------------------------------------

def test_progress_bar_is_text_outside_jupyter(monkeypatch):
    from tqdm.std import tqdm
    monkeypatch.delitem(sys.modules, "ipykernel.zmqshell", raising=False)
    assert progress_bar_class() is tqdm


def test_progress_bar_in_a_kernel_without_ipywidgets_is_text_and_says_what_to_install(monkeypatch):
    from tqdm.std import tqdm
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)        # importing it raises ImportError
    with pytest.warns(UserWarning, match=r"needs ipywidgets \(pip install ipywidgets\)"):
        assert progress_bar_class() is tqdm


def test_progress_bar_in_a_kernel_with_ipywidgets_is_the_notebook_bar(monkeypatch):
    from tqdm.notebook import tqdm as notebook_tqdm
    monkeypatch.setitem(sys.modules, "ipykernel.zmqshell", types.ModuleType("ipykernel.zmqshell"))
    monkeypatch.setitem(sys.modules, "ipywidgets", types.ModuleType("ipywidgets"))
    assert progress_bar_class() is notebook_tqdm
