"""Graphviz pictures of graphs: forward, backward and update nodes in three colours, shapes on
the edges, and — with show_values=True — the chain-rule view: every edge carries the value
flowing along it and the local gradient ∂(consumer)/∂(input) evaluated there."""
from __future__ import annotations

import os
import tempfile
from typing import Sequence

import graphviz
import numpy as np

from .errors import GraphGradError
from .graph import Tensor, ancestors, building, constant
from .ops import REGISTRY, make
from .ops.registry import _fmt_shape

ROLE_COLOURS = {"forward": "#cfe2ff", "backward": "#ffd8a8", "update": "#c3f0c8"}
LEAF_STYLES = {
    "placeholder": dict(shape="ellipse", style="filled", fillcolor="#fff3bf"),
    "variable": dict(shape="box", style="filled,bold", fillcolor="#ffe066"),
    "constant": dict(shape="box", style="filled,dashed", fillcolor="#f1f3f5"),
}


def _fmt_value(v) -> str:
    v = np.asarray(v)
    if v.size == 1:
        return f"{float(v.reshape(())):.4g}"
    if v.size <= 4:
        return "[" + ", ".join(f"{float(x):.3g}" for x in v.ravel()) + "]"
    return f"mean {float(v.mean()):.3g}"


def _node_label(node: Tensor) -> str:
    default_name = node.name == f"{node.op}_{node.id}"
    if node.op == "constant" and node.data is not None and node.data.size == 1:
        return f"{node.name if not default_name else 'const'}\n= {_fmt_value(node.data)}"
    title = node.op if default_name else f"{node.name}\n{node.op}"
    return f"{title}\n{_fmt_shape(node.shape)}"


def _local_gradients(nodes: list[Tensor]) -> dict[tuple[int, int], Tensor]:
    """For each edge input -> node: the op's own gradient rule applied to ones, i.e. the local
    derivative ∂node/∂input (summed over node's elements when it is not a scalar)."""
    local = {}
    with building("backward"):
        for node in nodes:
            opdef = REGISTRY[node.op]
            if opdef.grad is None or not node.inputs or node.role == "update":
                continue
            ones = make("expand", [constant(1.0, dtype=node.dtype), node], {"axes": tuple(range(node.ndim)), "keepdims": False,
                                                      "mean": False})
            for inp, g in zip(node.inputs, opdef.grad(node, ones)):
                if g is not None:
                    local[(inp.id, node.id)] = g
    return local


def to_dot(outputs: Tensor | Sequence[Tensor], show_values: bool = False, feed_dict: dict | None = None,
           highlight: Tensor | None = None, rankdir: str = "LR", title: str | None = None) -> graphviz.Digraph:
    """The graphviz.Digraph of everything `outputs` depend on (see render)."""
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    highlight = getattr(highlight, "node", highlight)   # a NumericsError highlights the node it names
    nodes = ancestors(outputs)
    values: dict[int, np.ndarray] = {}
    grads: dict[tuple[int, int], np.ndarray] = {}
    if show_values:
        from .runtime import Program
        computable = [n for n in nodes if n.role != "update"]
        local = _local_gradients(computable)
        fetched = computable + list(local.values())
        results = Program(fetched)(feed_dict or {})
        values = {n.id: r for n, r in zip(computable, results)}
        grads = {edge: r for edge, r in zip(local, results[len(computable):])}

    dot = graphviz.Digraph(graph_attr={"rankdir": rankdir, "fontname": "Helvetica", "fontsize": "11",
                                       **({"label": title, "labelloc": "t"} if title else {})},
                           node_attr={"fontname": "Helvetica", "fontsize": "10"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#495057"})
    for node in nodes:
        style = LEAF_STYLES.get(node.op) or dict(shape="box", style="filled,rounded",
                                                 fillcolor=ROLE_COLOURS[node.role])
        if highlight is not None and node is highlight:
            style = {**style, "color": "red", "penwidth": "3", "fontcolor": "red"}
        label = _node_label(node)
        if REGISTRY[node.op].writes:
            label += "\n(in place)"
        dot.node(str(node.id), label, **style)
        for inp in node.inputs:
            if show_values and inp.id in values:
                label = f"{inp.name} = {_fmt_value(values[inp.id])}"
                if (inp.id, node.id) in grads:
                    label += f"\n∂{node.name}/∂{inp.name} = {_fmt_value(grads[(inp.id, node.id)])}"
            else:
                label = _fmt_shape(inp.shape)
            colour = "#e8590c" if node.role == "backward" else "#2b8a3e" if node.role == "update" else "#495057"
            dot.edge(str(inp.id), str(node.id), label=label, color=colour)
    with dot.subgraph(name="cluster_legend") as legend:
        legend.attr(label="legend", fontsize="9", style="dashed", color="#adb5bd")
        for role, colour in ROLE_COLOURS.items():
            legend.node(f"legend_{role}", role, shape="box", style="filled,rounded", fillcolor=colour, fontsize="9")
    return dot


def render(outputs: Tensor | Sequence[Tensor], path: str, show_values: bool = False, feed_dict: dict | None = None,
           highlight: Tensor | None = None, rankdir: str = "LR", title: str | None = None) -> str:
    """Draw the graph of `outputs` to `path` (format from the extension: .png, .svg, .pdf, .dot).

    show_values=True evaluates the graph (with `feed_dict` for its placeholders) and writes on
    each edge the value flowing along it and the local gradient of the consumer with respect
    to it — the chain rule, edge by edge. `highlight` outlines one node in red (a node, or a
    NumericsError: its node). Returns path.
    """
    dot = to_dot(outputs, show_values=show_values, feed_dict=feed_dict, highlight=highlight, rankdir=rankdir,
                 title=title)
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    if fmt == "dot":
        data = dot.source.encode()
    else:
        try:
            data = dot.pipe(format=fmt)
        except graphviz.ExecutableNotFound:
            raise GraphGradError("rendering needs the Graphviz `dot` program: apt-get install graphviz "
                                 "(or brew install graphviz)") from None
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # write beside the target and rename, so a failure never leaves half a file
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    return path
