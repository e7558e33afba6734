"""Stage 2: where every buffer lives. Placeholders are fed (their arrays are used as they are),
variables and constants keep the arrays they own, update ops write the variable they update,
and every other node's output gets a 64-byte-aligned offset in one arena allocated once per
compiled program.

This planner gives each intermediate its own slot for the whole step (no reuse yet: the
liveness-based planner replaces `assign_offsets`)."""
from __future__ import annotations

from dataclasses import dataclass

from ..graph import Tensor
from ..ops import REGISTRY
from ..ops.registry import numel

ALIGN = 64


def align(nbytes: int) -> int:
    return (nbytes + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class BufferSpec:
    """One entry of the program's buffer table."""
    kind: str            # "feed", "state" (variable/constant array), or "arena"
    node: Tensor         # the node whose value the buffer holds
    shape: tuple
    nbytes: int
    offset: int = -1     # arena offset, for kind == "arena"


@dataclass
class MemoryPlan:
    buffers: list[BufferSpec]
    buffer_of: dict[int, int]     # node id -> index into buffers
    arena_bytes: int              # the arena's size (peak)
    naive_bytes: int              # the sum of all intermediates, aligned


def plan_memory(order: list[Tensor], shapes: dict[int, tuple]) -> MemoryPlan:
    buffers: list[BufferSpec] = []
    buffer_of: dict[int, int] = {}
    for node in order:
        opdef = REGISTRY[node.op]
        nbytes = numel(shapes[node.id]) * node.dtype.itemsize
        if opdef.writes:
            buffer_of[node.id] = buffer_of[node.inputs[opdef.writes[0]].id]   # writes its variable in place
            continue
        kind = "feed" if node.op == "placeholder" else "state" if node.op in ("variable", "constant") else "arena"
        buffer_of[node.id] = len(buffers)
        buffers.append(BufferSpec(kind, node, shapes[node.id], nbytes))
    arena_bytes = assign_offsets([b for b in buffers if b.kind == "arena"])
    naive = sum(align(b.nbytes) for b in buffers if b.kind == "arena")
    return MemoryPlan(buffers, buffer_of, arena_bytes, naive)


def assign_offsets(arena_buffers: list[BufferSpec]) -> int:
    """Give each buffer its own aligned slot; returns the arena size."""
    offset = 0
    for buf in arena_buffers:
        buf.offset = offset
        offset += align(max(buf.nbytes, 1))
    return offset
