"""Writes docs/api.md from graphgrad's docstrings: one entry per public name of gg, gg.nn,
gg.optim, gg.schedules, gg.init, gg.datasets and gg.errors (tests/test_docs.py checks that every
public name has one). Run from the repository root after changing a public name or docstring:

    python docs/gen_api.py
"""
from __future__ import annotations

import inspect
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import graphgrad as gg  # noqa: E402

SUBMODULES = ("nn", "optim", "schedules", "init", "datasets", "distributed", "errors", "callbacks", "ops")

# the top-level names by topic, in reading order; public names not listed go under "More"
TOPICS = {
    "Building graphs": ["Tensor", "placeholder", "variable", "constant", "Graph"],
    "Gradients": ["grad", "gradcheck"],
    "Compiling and running": ["compile", "Program", "set_num_threads", "get_num_threads", "isa", "gemm_config"],
    "Pictures": ["render", "to_dot", "render_memory"],
    "Training": ["fit", "evaluate", "predict", "History", "Callback", "EarlyStopping"],
    "Checkpoints": ["save", "load", "Checkpoint"],
    "Learning tools": ["lr_find", "LRFinderResult"],
    "Elementwise ops": ["add", "sub", "mul", "div", "neg", "abs", "pow", "exp", "log", "sqrt", "maximum", "minimum",
                        "clip"],
    "Linear algebra, reductions and shapes": ["matmul", "sum", "mean", "max", "reshape", "transpose", "broadcast_to",
                                              "concat"],
    "Activations": list(gg.ops.ACTIVATIONS),   # the names gg.nn layers accept, from the op registry
    "Losses": ["mse", "l1", "huber", "binary_cross_entropy", "softmax_cross_entropy"],
    "Convolutional networks": ["conv2d", "max_pool2d", "avg_pool2d", "global_avg_pool2d", "batch_norm", "flatten"],
}

NOTES = {
    "Learning tools": "Also: `gg.callbacks.GradientStats` (gradient flow per layer, below) and "
                      "`gg.viz.loss_landscape(model, X, Y, loss=..., start=..., contour_path=..., line_path=...)` "
                      "(the loss along a line and over a plane in weight space; the numbers alone: "
                      "`graphgrad.landscape.loss_line` / `loss_plane`). A guide with pictures: "
                      "[learning-tools.md](learning-tools.md).",
    "Pictures": "In Jupyter, Tensors, Programs, plans (`program.plan()`) and memory plans (`program.plan().memory`) "
                "display themselves as pictures, and so does the `graphviz.Digraph` that `gg.to_dot` returns. "
                "Graphs with more than `gg.viz.INLINE_MAX_NODES` (60) nodes are shown with each gg.nn layer "
                "collapsed into one box per role; `gg.to_dot(t, collapse=False)` draws every node. Inline "
                "pictures are scaled to fit `gg.viz.INLINE_SIZE` inches.",
}

INTRO = {
    "nn": "Layers (Keras/PyTorch style). A layer owns its variables, named `<layer>/<what>`; calling it on a "
          "Tensor adds its ops to the graph.",
    "optim": "Optimizers: `gg.compile(loss, optimizer=...)` adds their update nodes to the training step. The exact "
             "update rules are in [optimizers.md](optimizers.md).",
    "schedules": "Learning-rate schedules: they set an optimizer's runtime learning rate; pass one to "
                 "`gg.fit(callbacks=[...])` or call `.step()` yourself.",
    "init": "Initialisers: functions `(shape, seed=None, dtype=\"float32\") -> numpy array`, usable by name "
            "(`kernel_init=\"he_normal\"`).",
    "datasets": "Data sets for examples and tests.",
    "distributed": "Data-parallel training over MPI (mpi4py, launched by `mpirun -n N`): "
                   "`gg.fit(..., distributed=True)`. Commands, layout and costs: [distributed.md](distributed.md).",
    "callbacks": "fit's callbacks in one namespace (`gg.Callback`, `gg.EarlyStopping`, `gg.ModelCheckpoint` are "
                 "here too) and the one that records inside the C step.",
    "errors": "Typed errors; every one is a `gg.GraphGradError`. What to do about each: "
              "[troubleshooting.md](troubleshooting.md).",
}


def top_level_names() -> list[str]:
    return [n for n in gg.__all__ if n not in SUBMODULES]


def module_names(module) -> list[str]:
    """A module's public names: its __all__, else the classes and functions it defines."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    names = []
    for name, obj in vars(module).items():
        if name.startswith("_") or not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        if getattr(obj, "__module__", "") == module.__name__:
            names.append(name)
    if module is gg.errors:
        names = [n for n in names if inspect.isclass(getattr(module, n))]
    return names


def signature(obj) -> str:
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return ""
    params = []
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            params.append(f"*{p.name}")
        elif p.kind is p.VAR_KEYWORD:
            params.append(f"**{p.name}")
        elif p.default is p.empty:
            params.append(p.name)
        else:
            params.append(f"{p.name}={p.default!r}")
    return "(" + ", ".join(params) + ")"


def docstring(obj) -> str:
    doc = inspect.getdoc(obj) or ""
    # indented blocks (update rules, tables) are code in markdown: keep them as such
    lines, out, in_block = doc.splitlines(), [], False
    for line in lines:
        indented = line.startswith("    ") and line.strip()
        if indented and not in_block:
            out.append("```text")
            in_block = True
        elif in_block and line.strip() and not line.startswith("    "):
            out.append("```")
            in_block = False
        out.append(line[4:] if in_block and line.startswith("    ") else line)
    if in_block:
        while out and not out[-1].strip():
            out.pop()
        out.append("```")
    return "\n".join(out).strip()


def _documented_in_graphgrad(cls, name: str) -> bool:
    """Whether the docstring a method shows is graphgrad's: its own, or one inherited from a
    graphgrad base class — not a builtin's (dict.update's text under ParamGroup.update)."""
    for base in cls.__mro__:
        member = vars(base).get(name)
        if member is not None and getattr(member, "__doc__", None):
            return base.__module__.startswith("graphgrad")
    return False


def methods(cls) -> list[tuple[str, object]]:
    found = []
    for name, member in vars(cls).items():
        if name.startswith("_") or name in ("model",):
            continue
        if inspect.isfunction(member) or isinstance(member, (property, staticmethod, classmethod)):
            found.append((name, member))
    return found


def entry(qualified: str, obj) -> str:
    kind = "class " if inspect.isclass(obj) else ""
    sig = signature(obj) if callable(obj) else ""
    text = [f"### `{kind}{qualified}{sig}`", "", docstring(obj) or "*(no docstring)*", ""]
    if inspect.isclass(obj) and not issubclass(obj, BaseException):
        for name, member in methods(obj):
            if isinstance(member, property):
                text += [f"- **`.{name}`** — {docstring(member.fget) or ''}".rstrip(" —")]
            else:
                fn = member.__func__ if isinstance(member, (staticmethod, classmethod)) else member
                doc = docstring(fn).replace("\n", "\n  ") if _documented_in_graphgrad(obj, name) else ""
                text += [f"- **`.{name}{signature(fn).replace('(self, ', '(').replace('(self)', '()')}`**"
                         + (f" — {doc}" if doc else "")]
        if methods(obj):
            text.append("")
    return "\n".join(text)


def build() -> str:
    out = ["# API reference", "",
           "Every public name of graphgrad, with its signature and docstring. This page is generated by "
           "`python docs/gen_api.py` from the docstrings; `tests/test_docs.py` fails when a public name is "
           "missing here. `import graphgrad as gg` throughout.", ""]
    names = top_level_names()
    listed = [n for topic in TOPICS.values() for n in topic if n in names]
    topics = dict(TOPICS)
    more = [n for n in names if n not in listed]
    if more:
        topics["More"] = more
    out.append("## Contents\n")
    for topic in topics:
        out.append(f"- [gg: {topic}](#gg-{topic.lower().replace(' ', '-').replace(',', '')})")
    for sub in SUBMODULES[:-1]:
        out.append(f"- [gg.{sub}](#gg{sub})")
    out.append("")
    for topic, topic_names in topics.items():
        out += [f"## gg: {topic}", ""]
        for name in topic_names:
            if name in names:
                out.append(entry(f"gg.{name}", getattr(gg, name)))
        if topic in NOTES:
            out += [NOTES[topic], ""]
    for sub in SUBMODULES[:-1]:
        module = getattr(gg, sub)
        out += [f"## gg.{sub}", "", INTRO[sub], ""]
        for name in module_names(module):
            out.append(entry(f"gg.{sub}.{name}", getattr(module, name)))
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    path = os.path.join(ROOT, "docs", "api.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(build())
    print(f"wrote {path}")
