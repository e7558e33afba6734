"""Graphviz pictures of graphs: forward, backward and update nodes in three colours, shapes on
the edges, and — with show_values=True — the chain-rule view: every edge carries the value
flowing along it and the local gradient ∂(consumer)/∂(input) evaluated there.

Big graphs are drawn by layer: nodes are grouped by the name prefix of the gg.nn layer they
belong to ("dense0/kernel" -> "dense0") and by role; past `max_nodes` nodes each group becomes
one box (collapse="auto"), so a notebook shows a readable picture of a whole training step.
Jupyter shows Tensors, Programs, Plans and memory plans inline: this module attaches their
_repr_svg_ / _repr_png_ methods (at the end of the file), so that the graph, the compiler and
the runtime import no drawing code."""
from __future__ import annotations

import os
import tempfile
from typing import Sequence

import graphviz
import numpy as np

from .compiler import Plan
from .compiler.memory import MemoryPlan
from .errors import GraphGradError
from .files import atomic_write
from .graph import Tensor, ancestors, building, constant
from .ops import REGISTRY, make
from .ops.registry import _fmt_shape, op_label
from .runtime import Program
from .summary import plan_dot, render_memory

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
    return f"{v.size} values, mean {float(v.mean()):.3g}"


def _node_label(node: Tensor) -> str:
    op = op_label(node)
    default_name = node.name == f"{op}_{node.id}"
    if node.op == "constant" and node.data is not None and node.data.size == 1:
        return f"{node.name if not default_name else 'const'}\n= {_fmt_value(node.data)}"
    title = op if default_name else f"{node.name}\n{op}"
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


#: inline pictures (and collapse="auto") group layers into single boxes past this many nodes
INLINE_MAX_NODES = 60
#: the largest inline picture, in inches (Graphviz scales bigger drawings down to fit)
INLINE_SIZE = "11,8"


def _layer_of_name(name: str) -> str | None:
    """ "dense0/kernel" and its optimizer state "dense0/kernel/m" -> "dense0"; no "/" -> None."""
    return name.split("/", 1)[0] if "/" in name else None


def layer_groups(nodes: list[Tensor]) -> dict[int, str]:
    """node id -> the layer it belongs to, for the nodes that belong to one.

    Variables name their layer (gg.nn names them "<layer>/<what>", optimizer state
    "<layer>/<what>/<slot>"). An op node that reads a layer's variable joins that layer.
    Otherwise a forward (or update) node joins the layer of its inputs when every input that is
    not a constant has one (an activation joins the layer it follows; a loss that also reads
    the targets stays outside); a backward node joins the layer its result flows to (the
    gradients of a layer's ops feed that layer's updates), or failing that, its inputs'. Among
    several layers the latest created wins (layer L's matmul reads layer L-1's output)."""
    group: dict[int, str] = {}
    first_seen: dict[str, int] = {}        # layer -> id of its first node (its creation order)

    def latest(layers: list[str]) -> str | None:
        return max(layers, key=lambda g: first_seen[g]) if layers else None

    def from_inputs(node: Tensor) -> str | None:
        others = [i for i in node.inputs if i.op != "constant"]
        return latest([group[i.id] for i in others]) if others and all(i.id in group for i in others) else None

    def assign(node: Tensor, layer: str | None) -> None:
        if layer is not None:
            group[node.id] = layer
            first_seen.setdefault(layer, node.id)

    for node in nodes:                     # in id order: inputs before readers
        if node.is_leaf:
            assign(node, _layer_of_name(node.name) if node.op == "variable" else None)
            continue
        direct = [group[i.id] for i in node.inputs if i.op == "variable" and i.id in group]
        if direct:
            assign(node, latest(direct))
        elif node.role != "backward":
            assign(node, from_inputs(node))
    consumers: dict[int, list[Tensor]] = {}
    for node in nodes:
        for inp in node.inputs:
            consumers.setdefault(inp.id, []).append(node)
    for node in reversed(nodes):           # readers before inputs: where each gradient flows to
        if node.role == "backward" and not node.is_leaf and node.id not in group:
            assign(node, latest([group[c.id] for c in consumers.get(node.id, ()) if c.id in group]))
    for node in nodes:                     # a gradient that is only fetched: from its inputs
        if node.role == "backward" and not node.is_leaf and node.id not in group:
            assign(node, from_inputs(node))
    return group


def _graph_attrs(rankdir: str, title: str | None) -> dict:
    return {"rankdir": rankdir, "fontname": "Helvetica", "fontsize": "11",
            **({"label": title, "labelloc": "t"} if title else {})}


def _collapsed_dot(nodes: list[Tensor], group: dict[int, str], highlight, rankdir: str, title: str | None,
                   hidden: int) -> graphviz.Digraph:
    """One box per (layer, role) with its node count and ops; the other nodes as usual; edges
    between boxes drawn once, with how many tensors cross them."""
    def key(node: Tensor) -> str:
        return f"layer {group[node.id]} {node.role}" if node.id in group else str(node.id)

    note = f"{len(nodes)} nodes; layers collapsed (gg.to_dot(..., collapse=False) draws every node)"
    dot = graphviz.Digraph(graph_attr=_graph_attrs(rankdir, f"{title}\n{note}" if title else note),
                           node_attr={"fontname": "Helvetica", "fontsize": "10"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#495057"})
    members: dict[str, list[Tensor]] = {}
    for node in nodes:
        members.setdefault(key(node), []).append(node)
    for k, group_nodes in members.items():
        first = group_nodes[0]
        if first.id not in group:
            style = LEAF_STYLES.get(first.op) or dict(shape="box", style="filled,rounded",
                                                      fillcolor=ROLE_COLOURS[first.role])
            if highlight is not None and first is highlight:
                style = {**style, "color": "red", "penwidth": "3", "fontcolor": "red"}
            dot.node(k, _node_label(first), **style)
            continue
        ops_used = sorted({n.op for n in group_nodes if not n.is_leaf})
        params = [n for n in group_nodes if n.op == "variable" and n.trainable]
        shapes = ", ".join(_fmt_shape(p.shape) for p in params[:3])
        label = f"{group[first.id]} ({first.role})\n{len(group_nodes)} nodes"
        if shapes:
            label += f"\nparameters {shapes}"
        if ops_used:
            label += "\n" + ", ".join(ops_used[:6]) + (", …" if len(ops_used) > 6 else "")
        bad = highlight is not None and any(n is highlight for n in group_nodes)
        dot.node(k, label, shape="box3d", style="filled", fillcolor=ROLE_COLOURS[first.role],
                 **({"color": "red", "penwidth": "3", "fontcolor": "red"} if bad else {}))
    edges: dict[tuple[str, str], int] = {}
    for node in nodes:
        for inp in node.inputs:
            a, b = key(inp), key(node)
            if a != b:
                edges[(a, b)] = edges.get((a, b), 0) + 1
    for (a, b), count in edges.items():
        role = members[b][0].role
        colour = "#e8590c" if role == "backward" else "#2b8a3e" if role == "update" else "#495057"
        dot.edge(a, b, label=str(count) if count > 1 else "", color=colour)
    return dot


def to_dot(outputs: Tensor | Sequence[Tensor], show_values: bool = False, feed_dict: dict | None = None,
           highlight: Tensor | None = None, rankdir: str = "LR", title: str | None = None,
           collapse: bool | str = False, max_nodes: int = INLINE_MAX_NODES) -> graphviz.Digraph:
    """The graphviz.Digraph of everything `outputs` depend on (see render).

    Nodes of gg.nn layers are drawn inside a box per layer. collapse=True draws each layer (per
    role: forward, backward, update) as one box; collapse="auto" does so only past `max_nodes`
    nodes (what notebooks show inline); show_values=True always draws every node. A
    graphviz.Digraph displays itself in Jupyter, so gg.to_dot(loss, collapse=False) is the
    expanded picture of a big graph."""
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    highlight = getattr(highlight, "node", highlight)   # a NumericsError highlights the node it names
    nodes = ancestors(outputs)
    if collapse not in (True, False, "auto"):
        raise ValueError(f'collapse must be True, False or "auto", got {collapse!r}')
    group = layer_groups(nodes)
    if group and not show_values and (collapse is True or (collapse == "auto" and len(nodes) > max_nodes)):
        return _collapsed_dot(nodes, group, highlight, rankdir, title, len(nodes))
    values: dict[int, np.ndarray] = {}
    grads: dict[tuple[int, int], np.ndarray] = {}
    if show_values:
        computable = [n for n in nodes if n.role != "update"]
        local = _local_gradients(computable)
        fetched = computable + list(local.values())
        results = Program(fetched)(feed_dict or {})
        values = {n.id: r for n, r in zip(computable, results)}
        grads = {edge: r for edge, r in zip(local, results[len(computable):])}

    dot = graphviz.Digraph(graph_attr=_graph_attrs(rankdir, title),
                           node_attr={"fontname": "Helvetica", "fontsize": "10"},
                           edge_attr={"fontname": "Helvetica", "fontsize": "9", "color": "#495057"})
    clusters: dict[str, graphviz.Digraph] = {}
    for node in nodes:
        style = LEAF_STYLES.get(node.op) or dict(shape="box", style="filled,rounded",
                                                 fillcolor=ROLE_COLOURS[node.role])
        if highlight is not None and node is highlight:
            style = {**style, "color": "red", "penwidth": "3", "fontcolor": "red"}
        label = _node_label(node)
        if REGISTRY[node.op].writes:
            label += "\n(in place)"
        target = dot
        if node.id in group:    # drawn inside its layer's box
            layer = group[node.id]
            if layer not in clusters:
                clusters[layer] = graphviz.Digraph(name=f"cluster_layer_{len(clusters)}")
                clusters[layer].attr(label=layer, style="rounded", color="#868e96", fontsize="10")
            target = clusters[layer]
        target.node(str(node.id), label, **style)
        for inp in node.inputs:
            if show_values and inp.id in values:
                label = f"{inp.name} = {_fmt_value(values[inp.id])}"
                if (inp.id, node.id) in grads:
                    label += f"\n∂{node.name}/∂{inp.name} = {_fmt_value(grads[(inp.id, node.id)])}"
                    size = np.size(values[node.id]) if node.id in values else 1
                    if size != 1:   # the local derivative of a non-scalar is summed (see _local_gradients)
                        label += f"\n(each summed over {node.name}'s {size} elements)"
            else:
                label = _fmt_shape(inp.shape)
            colour = "#e8590c" if node.role == "backward" else "#2b8a3e" if node.role == "update" else "#495057"
            dot.edge(str(inp.id), str(node.id), label=label, color=colour)
    for cluster in clusters.values():
        dot.subgraph(cluster)
    with dot.subgraph(name="cluster_legend") as legend:
        legend.attr(label="legend", fontsize="9", style="dashed", color="#adb5bd")
        present = {n.role for n in nodes if not n.is_leaf}
        for role, colour in ROLE_COLOURS.items():
            if role not in present:   # name only the kinds of node this picture has
                continue
            legend.node(f"legend_{role}", role, shape="box", style="filled,rounded", fillcolor=colour, fontsize="9")
    return dot


def render(outputs: Tensor | Sequence[Tensor], path: str, show_values: bool = False, feed_dict: dict | None = None,
           highlight: Tensor | None = None, rankdir: str = "LR", title: str | None = None,
           collapse: bool | str = False, max_nodes: int = INLINE_MAX_NODES) -> str:
    """Draw the graph of `outputs` to `path` (format from the extension: .png, .svg, .pdf, .dot).

    show_values=True evaluates the graph (with `feed_dict` for its placeholders) and writes on
    each edge the value flowing along it and the local gradient of the consumer with respect
    to it — the chain rule, edge by edge. `highlight` outlines one node in red (a node, or a
    NumericsError: its node). collapse=True (or "auto", past max_nodes nodes) draws each gg.nn
    layer as one box. Returns path.
    """
    dot = to_dot(outputs, show_values=show_values, feed_dict=feed_dict, highlight=highlight, rankdir=rankdir,
                 title=title, collapse=collapse, max_nodes=max_nodes)
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    if fmt == "dot":
        data = dot.source.encode()
    else:
        try:
            data = dot.pipe(format=fmt)
        except graphviz.ExecutableNotFound:
            raise GraphGradError("rendering needs the Graphviz `dot` program: apt-get install graphviz "
                                 "(or brew install graphviz)") from None
    with atomic_write(path) as f:
        f.write(data)
    return path


def inline_svg(dot: graphviz.Digraph) -> str | None:
    """The SVG text Jupyter shows for a picture, scaled to fit INLINE_SIZE; None when Graphviz's
    `dot` program is missing (Jupyter then shows the text repr instead)."""
    dot = dot.copy()
    dot.graph_attr["size"] = INLINE_SIZE
    try:
        return dot.pipe(format="svg").decode("utf-8")
    except graphviz.ExecutableNotFound:
        return None


def memory_png(memory) -> bytes:
    """PNG bytes of gg.render_memory's arena picture for a MemoryPlan (what Jupyter shows)."""
    with tempfile.TemporaryDirectory() as folder:
        path = render_memory(memory, os.path.join(folder, "memory.png"))
        with open(path, "rb") as f:
            return f.read()


# ---- Jupyter display, attached here: the graph, compiler and runtime import no drawing code ----

def _tensor_svg(self: Tensor) -> str | None:
    """Jupyter: the graph this tensor depends on, layers collapsed when it is big."""
    return inline_svg(to_dot(self, collapse="auto"))


def _program_svg(self: Program) -> str | None:
    """Jupyter: the graph this program runs (forward, backward, update), layers collapsed when
    it is big. program.plan() displays the compiled instruction list, .plan().memory the arena."""
    return inline_svg(to_dot(self.outputs + self.updates, collapse="auto"))


def _plan_svg(self: Plan) -> str | None:
    """Jupyter: the instruction list, fused groups as clusters, arena offsets in the labels."""
    return inline_svg(plan_dot(self))


def _memory_png(self: MemoryPlan) -> bytes:
    """Jupyter: the arena over time (gg.render_memory's picture)."""
    return memory_png(self)


Tensor._repr_svg_ = _tensor_svg
Program._repr_svg_ = _program_svg
Plan._repr_svg_ = _plan_svg
MemoryPlan._repr_png_ = _memory_png


# ---- the loss landscape (computed in landscape.py, drawn in plots.py) ------------------------

def loss_landscape(model, X, Y, loss="mse", start=None, contour_path: str | None = "loss_contour.png",
                   line_path: str | None = "loss_line.png", steps: int = 21, span: float = 1.0,
                   line_steps: int = 25, margin: float = 0.25, directions=None, seed=0, bias: str = "zero"):
    """The loss landscape of `model` (its current, trained weights θ*) on X, Y, as pictures.

    - contour_path: the loss on a steps×steps grid of the plane θ* + α·δ + β·η, α, β in
      [−span, span], δ and η random directions normalised per filter (Li et al. 2018; or your own
      pair `directions`, each one array per parameter).
    - line_path (when `start` is given: the initial weights, or another model): the loss on the
      straight line from start (α = 0) to θ* (α = 1), α in [−margin, 1 + margin] (Goodfellow et
      al. 2015).

    Every point is one call of one compiled program (see graphgrad.landscape). Returns a
    landscape.Landscape with .plane, .line (or None) and .paths. Pass a path None to skip it."""
    from .landscape import Landscape, LossSurface, loss_line, loss_plane
    from .plots import plot_loss_lines, plot_loss_plane
    surface = LossSurface(model, X, Y, loss)
    line = None
    if start is not None:
        line = loss_line(model, X, Y, loss, start=start, steps=line_steps, margin=margin, surface=surface)
    plane = loss_plane(model, X, Y, loss, directions=directions, steps=steps, span=span, seed=seed, bias=bias,
                       surface=surface)
    paths = []
    if contour_path is not None:
        paths.append(plot_loss_plane(plane, contour_path))
    if line is not None and line_path is not None:
        paths.append(plot_loss_lines(line, line_path))
    return Landscape(plane, line, paths)
