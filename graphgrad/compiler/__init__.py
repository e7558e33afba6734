"""The compiler: graph -> schedule -> concrete shapes -> memory plan -> instruction list.

Pure Python, run once per (program, feed shapes); its output, a Plan, is what runtime.Program
hands to the C interpreter."""
from __future__ import annotations

from dataclasses import dataclass

from ..graph import Graph, Tensor
from ..ops.registry import concrete_shape
from .lower import Instruction, lower
from .memory import MemoryPlan, plan_memory
from .schedule import schedule


@dataclass
class Plan:
    order: list[Tensor]
    shapes: dict[int, tuple]        # node id -> concrete shape
    memory: MemoryPlan
    instructions: list[Instruction]


def concrete_shapes(order: list[Tensor], feed_shapes: dict[int, tuple]) -> dict[int, tuple]:
    """Every node's shape once the placeholders' shapes are known."""
    shapes: dict[int, tuple] = {}
    for node in order:
        if node.op == "placeholder":
            shapes[node.id] = feed_shapes[node.id]
        elif node.op in ("variable", "constant"):
            shapes[node.id] = node.data.shape
        else:
            shapes[node.id] = concrete_shape(node, [shapes[i.id] for i in node.inputs])
    return shapes


def build_plan(order: list[Tensor], feed_shapes: dict[int, tuple]) -> Plan:
    shapes = concrete_shapes(order, feed_shapes)
    memory = plan_memory(order, shapes)
    return Plan(order, shapes, memory, lower(order, shapes, memory))


__all__ = ["Graph", "Plan", "build_plan", "concrete_shapes", "schedule"]
