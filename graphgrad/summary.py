"""The plan as a table a person can read: one row per instruction (op, node, shapes, FLOPs,
bytes, where its output lives), then totals."""
from __future__ import annotations

from .compiler import Plan
from .ops import REGISTRY
from .ops.registry import _fmt_shape


def _human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def instruction_rows(plan: Plan) -> list[dict]:
    rows = []
    mem = plan.memory
    for i, ins in enumerate(plan.instructions):
        node = ins.node
        opdef = REGISTRY[node.op]
        in_shapes = [plan.shapes[x.id] for x in node.inputs]
        out_shape = plan.shapes[node.id]
        buf = mem.buffers[ins.out]
        where = f"arena@{buf.offset}" if buf.kind == "arena" else f"{buf.node.name} (in place)"
        rows.append({
            "index": i, "op": node.op, "node": node.name, "role": node.role,
            "inputs": [list(s) for s in in_shapes], "output": list(out_shape),
            "flops": int(opdef.flops(in_shapes, out_shape, node.attrs)),
            # bytes moved: the output written plus every input read once
            "bytes": buf.nbytes + sum(mem.buffers[k].nbytes for k in ins.inputs if k >= 0),
            "buffer": where,
        })
    return rows


def format_summary(plan: Plan) -> str:
    rows = instruction_rows(plan)
    header = f"{'#':>3}  {'op':<17} {'node':<22} {'output':<14} {'inputs':<30} {'FLOPs':>10} {'bytes':>10}  buffer"
    lines = [header, "-" * len(header)]
    for r in rows:
        ins = ", ".join(_fmt_shape(s) for s in r["inputs"])
        lines.append(f"{r['index']:>3}  {r['op']:<17} {r['node'][:22]:<22} {_fmt_shape(r['output']):<14} "
                     f"{ins[:30]:<30} {r['flops']:>10,} {_human_bytes(r['bytes']):>10}  {r['buffer']}")
    mem = plan.memory
    roles = {role: sum(1 for r in rows if r["role"] == role) for role in ("forward", "backward", "update")}
    lines.append("-" * len(header))
    lines.append(f"instructions: {len(rows)} (forward {roles['forward']}, backward {roles['backward']}, "
                 f"update {roles['update']})   FLOPs per step: {sum(r['flops'] for r in rows):,}")
    lines.append(f"arena: {_human_bytes(mem.arena_bytes)} peak, naive sum of intermediates "
                 f"{_human_bytes(mem.naive_bytes)}")
    return "\n".join(lines)
