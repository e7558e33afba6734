"""Reading a compiled plan: the instruction table (`Program.summary`), the same as stable JSON
(`Program.plan_json`), a Graphviz picture of the instruction list with fused groups as clusters
(`Program.render(path, plan=True)`), and a picture of the arena over time (`gg.render_memory`).

Names in the JSON are stable across runs: a node the user named keeps its name; a default name
(which ends in _<creation id>) becomes name#k, k the node's position in the schedule."""
from __future__ import annotations

import json
import os
import re

from .compiler import Plan
from .errors import GraphGradError
from .files import atomic_write
from .ops.registry import _fmt_shape, op_label

ROLE_COLOURS = {"forward": "#cfe2ff", "backward": "#ffd8a8", "update": "#c3f0c8"}


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def stable_names(plan: Plan) -> dict[int, str]:
    """node id -> a name that does not depend on how many nodes were created before."""
    names = {}
    for k, node in enumerate(plan.order):
        # default names end in _<creation id> ("add_123", "dmse_45"): use the position instead
        match = re.fullmatch(r"(.*)_\d+", node.name)
        names[node.id] = f"{match.group(1)}#{k}" if match else node.name
    return names


def instruction_rows(plan: Plan) -> list[dict]:
    """One dict per instruction: what it computes, its shapes, FLOPs, bytes and where its output lives."""
    rows = []
    mem = plan.memory
    names = stable_names(plan)
    for i, ins in enumerate(plan.instructions):
        node = ins.node
        buf = mem.buffers[ins.out]
        reads = [k for k in ins.inputs if k >= 0]
        rows.append({
            "index": i,
            "op": "+".join(op_label(m) for m in ins.members) if ins.fused else op_label(node),
            "fused": ins.fused,
            "members": [names[m.id] for m in ins.members],
            "node": names[node.id],
            "role": node.role,
            "inputs": [list(mem.buffers[k].shape) for k in reads],
            "output": list(plan.shapes[node.id]),
            "flops": plan.instruction_flops(ins),
            # bytes moved: the output written plus every input read once
            "bytes": buf.nbytes + sum(mem.buffers[k].nbytes for k in reads),
            "buffer": ins.out,
            "arena_offset": buf.offset if buf.kind == "arena" else None,
            "arena_size": buf.size if buf.kind == "arena" else None,
            "in_place": buf.inplace_of >= 0 or buf.kind not in ("arena", "gradient"),
            "writes": None if buf.kind in ("arena", "gradient") else names.get(buf.node.id, buf.node.name),
            # split_gradients programs: where the output sits in the contiguous gradient region
            "gradient_offset": buf.offset if buf.kind == "gradient" else None,
        })
    return rows


def totals(plan: Plan) -> dict:
    mem = plan.memory
    return {
        "instructions": len(plan.instructions),
        "fused_instructions": sum(1 for ins in plan.instructions if ins.fused),
        "op_nodes": sum(len(ins.members) for ins in plan.instructions),
        "flops": plan.flops(),
        "arena_peak_bytes": mem.arena_bytes,
        "naive_bytes": mem.naive_bytes,
    }


def format_summary(plan: Plan, profile_ns=None) -> str:
    """The table; with profile_ns (nanoseconds per instruction, from profile=True) a column of
    each instruction's share of the measured time, and the hottest instructions at the end."""
    rows = instruction_rows(plan)
    total_ns = float(sum(profile_ns)) if profile_ns is not None else 0.0
    timed = total_ns > 0
    header = (f"{'#':>3}  {'op':<26} {'node':<20} {'output':<13} {'inputs':<26} {'FLOPs':>11} {'bytes':>10} "
              f"{'arena offset':>12} {'size':>10}  {'in place':<8}" + ("   time" if timed else ""))
    lines = [header, "-" * len(header)]
    for r in rows:
        ins = ", ".join(_fmt_shape(s) for s in r["inputs"])
        if r.get("gradient_offset") is not None:
            offset, size, inplace = f"g{r['gradient_offset']:,}", "-", ""
        elif r["arena_offset"] is None:
            offset, size, inplace = "-", "-", f"yes ({r['writes']})"
        else:
            offset, size, inplace = f"{r['arena_offset']:,}", _human_bytes(r["arena_size"]), \
                "yes" if r["in_place"] else ""
        op = r["op"] if len(r["op"]) <= 26 else r["op"][:25] + "…"
        share = f"  {100 * profile_ns[r['index']] / total_ns:5.1f}%" if timed else ""
        lines.append(f"{r['index']:>3}  {op:<26} {r['node'][:20]:<20} {_fmt_shape(r['output']):<13} "
                     f"{ins[:26]:<26} {r['flops']:>11,} {_human_bytes(r['bytes']):>10} {offset:>12} {size:>10}  "
                     f"{inplace:<8}{share}")
        if r["fused"]:
            lines.append(f"{'':>5}└ fused: {' → '.join(r['members'])}")
    t = totals(plan)
    roles = {role: sum(1 for r in rows if r["role"] == role) for role in ("forward", "backward", "update")}
    lines.append("-" * len(header))
    lines.append(f"instructions: {t['instructions']} ({t['fused_instructions']} fused, computing {t['op_nodes']} op "
                 f"nodes; by role of the output: forward {roles['forward']}, backward {roles['backward']}, "
                 f"update {roles['update']})   FLOPs per step: {t['flops']:,}")
    ratio = f" ({t['arena_peak_bytes'] / t['naive_bytes']:.2f}x)" if t["naive_bytes"] else ""
    lines.append(f"arena: {_human_bytes(t['arena_peak_bytes'])} peak, naive sum of intermediates "
                 f"{_human_bytes(t['naive_bytes'])}{ratio}")
    scratch = [b for b in plan.memory.buffers if b.scratch]
    if scratch:
        lines.append(f"scratch (convolution column buffers, in the arena for one instruction each): "
                     f"{len(scratch)} blocks, largest {_human_bytes(max(b.size for b in scratch))}")
    if timed:
        hottest = sorted(range(len(rows)), key=lambda i: -profile_ns[i])[:3]
        lines.append(f"profile: {total_ns / 1e6:.3f} ms measured in C; hottest: " + ", ".join(
            f"#{i} {rows[i]['op']} {100 * profile_ns[i] / total_ns:.0f}%" for i in hottest))
    return "\n".join(lines)


def plan_dict(plan: Plan) -> dict:
    names = stable_names(plan)
    buffers = []
    for k, b in enumerate(plan.memory.buffers):
        entry = {"index": k, "kind": b.kind, "node": names.get(b.node.id, b.node.name), "shape": list(b.shape),
                 "dtype": b.node.dtype.name, "nbytes": b.nbytes}
        if b.kind == "arena":
            entry.update(offset=b.offset, size=b.size, first_step=b.first, last_step=b.last,
                         in_place_of=b.inplace_of if b.inplace_of >= 0 else None)
        buffers.append(entry)
    instructions = instruction_rows(plan)
    for row, ins in zip(instructions, plan.instructions):
        row["reads"] = list(ins.inputs)
        row["member_ops"] = [m.op for m in ins.members]
    return {"instructions": instructions, "buffers": buffers,
            "outputs": [names.get(o.id, o.name) for o in plan.outputs], "totals": totals(plan)}


def plan_json(plan: Plan) -> str:
    """The plan as JSON text with sorted keys: the same plan always gives the same text."""
    return json.dumps(plan_dict(plan), indent=1, sort_keys=True)


# ---- pictures ------------------------------------------------------------------------------

def _write(data: bytes, path: str) -> str:
    with atomic_write(path) as f:
        f.write(data)
    return path


def plan_dot(plan: Plan, rankdir: str = "TB", title: str | None = None):
    """The graphviz.Digraph of a compiled plan: one box per instruction (fused groups are
    clusters of their member ops), leaves as ellipses, arena offsets in the labels."""
    import graphviz
    names = stable_names(plan)
    mem = plan.memory
    dot = graphviz.Digraph(graph_attr={"rankdir": rankdir, "fontname": "Helvetica", "fontsize": "11",
                                       **({"label": title, "labelloc": "t"} if title else {})},
                           node_attr={"fontname": "Helvetica", "fontsize": "9", "shape": "box",
                                      "style": "filled,rounded"},
                           edge_attr={"color": "#495057", "arrowsize": "0.6"})

    def where(node) -> str:
        buf = mem.buffers[mem.buffer_of[node.id]]
        if buf.kind == "gradient":
            return f"gradients @{buf.offset:,} ({_human_bytes(buf.size)})"
        if buf.kind != "arena":
            return f"writes {names.get(buf.node.id, buf.node.name)}"
        text = f"arena @{buf.offset:,} ({_human_bytes(buf.size)})"
        return text + (", in place" if buf.inplace_of >= 0 else "")

    computed = {m.id for ins in plan.instructions for m in ins.members}
    for node in plan.order:
        if node.id not in computed and node.id in mem.buffer_of:
            kind = mem.buffers[mem.buffer_of[node.id]].kind
            dot.node(str(node.id), f"{names[node.id]}\n{_fmt_shape(plan.shapes[node.id])}", shape="ellipse",
                     fillcolor="#fff3bf" if kind == "feed" else "#f1f3f5")
    for i, ins in enumerate(plan.instructions):
        colour = ROLE_COLOURS.get(ins.node.role, "#e9ecef")
        if ins.fused:
            with dot.subgraph(name=f"cluster_{i}") as group:
                group.attr(label=f"#{i} fused: {where(ins.node)}", style="rounded,dashed", color="#868e96",
                           fontsize="9")
                for m in ins.members:
                    group.node(str(m.id), f"{m.op}\n{_fmt_shape(plan.shapes[m.id])}", fillcolor=colour)
        else:
            dot.node(str(ins.node.id), f"#{i} {op_label(ins.node)}\n{_fmt_shape(plan.shapes[ins.node.id])}\n{where(ins.node)}",
                     fillcolor=colour)
    drawn = computed | {n.id for n in plan.order if n.id in mem.buffer_of}
    for ins in plan.instructions:
        for m in ins.members:
            for inp in m.inputs:
                if inp.id in drawn:
                    dot.edge(str(inp.id), str(m.id))
    return dot


def render_plan(plan: Plan, path: str, rankdir: str = "TB", title: str | None = None) -> str:
    """Draw the compiled plan to `path` (format from the extension: .png, .svg, .pdf, .dot)."""
    import graphviz
    dot = plan_dot(plan, rankdir=rankdir, title=title)
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    if fmt == "dot":
        return _write(dot.source.encode(), path)
    try:
        data = dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise GraphGradError("rendering needs the Graphviz `dot` program: apt-get install graphviz "
                             "(or brew install graphviz)") from None
    return _write(data, path)


def render_memory(program, path: str, batch_size: int | None = None, title: str | None = None) -> str:
    """Draw the arena over time to `path`: one bar per buffer, from the instruction that writes
    it to the last one that reads it, at its arena offset (matplotlib, no display needed).
    `program` is a Program (its last specialisation, or the one for `batch_size`), a Plan, or
    a Plan's MemoryPlan (plan.memory)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .compiler.memory import MemoryPlan
    if isinstance(program, MemoryPlan):
        mem = program
    else:
        mem = (program if isinstance(program, Plan) else program.plan(batch_size)).memory
    scale, unit = (2**20, "MiB") if mem.arena_bytes >= 2**20 else (2**10, "KiB")
    fig, ax = plt.subplots(figsize=(10, 5.5))
    for b in mem.buffers:
        if b.kind != "arena":
            continue
        colour = ROLE_COLOURS.get(b.node.role, "#e9ecef")
        ax.add_patch(Rectangle((b.first, b.offset / scale), b.last - b.first + 1, b.size / scale,
                               facecolor=colour, edgecolor="#343a40", linewidth=0.5,
                               hatch="//" if b.inplace_of >= 0 else None))
    steps = max(mem.n_steps, 1)
    ax.axhline(mem.arena_bytes / scale, color="#c92a2a", linewidth=1)
    ax.text(0, mem.arena_bytes / scale, f" peak {_human_bytes(mem.arena_bytes)}", color="#c92a2a", va="bottom",
            fontsize=9)
    ax.set_xlim(0, steps + 1)
    ax.set_ylim(0, max(mem.arena_bytes, 64) / scale * 1.08)
    ax.set_xlabel("instruction (the step's time line; the last column: outputs kept to the end)")
    ax.set_ylabel(f"arena offset ({unit})")
    ratio = mem.arena_bytes / mem.naive_bytes if mem.naive_bytes else 0.0
    ax.set_title(title or f"arena over one run: peak {_human_bytes(mem.arena_bytes)} vs "
                          f"{_human_bytes(mem.naive_bytes)} with no reuse ({ratio:.2f}x)")
    from matplotlib.patches import Patch
    handles = [Patch(facecolor=c, edgecolor="#343a40", label=r) for r, c in ROLE_COLOURS.items() if r != "update"]
    handles.append(Patch(facecolor="white", edgecolor="#343a40", hatch="//", label="in place"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    fig.tight_layout()
    fmt = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format=fmt, dpi=110)
    finally:
        plt.close(fig)
    return path
