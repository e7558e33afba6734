"""The compiler: graph -> passes -> schedule -> concrete shapes -> fusion -> memory plan -> instructions.

Pure Python. The graph passes (passes.py) run once per Program; the rest runs once per
(program, feed shapes) and gives a Plan, which runtime.Program hands to the C interpreter."""
from __future__ import annotations

from dataclasses import dataclass

from ..graph import Graph, Tensor
from ..ops import REGISTRY
from ..ops.registry import concrete_shape
from .fusion import Step, fuse
from .lower import Instruction, lower
from .memory import MemoryPlan, plan_memory
from .passes import ALL_PASSES, cse, fold_constants, register_constant_evaluator, resolve_passes, run_passes, simplify
from .schedule import schedule


@dataclass
class Plan:
    order: list[Tensor]
    shapes: dict[int, tuple]        # node id -> concrete shape
    steps: list[Step]               # what each instruction computes (fused groups included)
    memory: MemoryPlan
    instructions: list[Instruction]
    outputs: list[Tensor]           # the fetched nodes, in fetch order

    def node_flops(self, node: Tensor) -> int:
        """FLOPs of one op node at this plan's shapes (its OpDef's estimate)."""
        return int(REGISTRY[node.op].flops([self.shapes[i.id] for i in node.inputs], self.shapes[node.id],
                                           node.attrs))

    def instruction_flops(self, ins: Instruction) -> int:
        """FLOPs of one instruction: the sum over the nodes it computes (fused members included)."""
        return sum(self.node_flops(m) for m in ins.members)

    def flops(self) -> int:
        """FLOPs per run of the whole instruction list."""
        return sum(self.instruction_flops(ins) for ins in self.instructions)


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


def build_plan(order: list[Tensor], feed_shapes: dict[int, tuple], outputs: list[Tensor] | None = None,
               fusion: bool = True, placeholders: list[Tensor] = (), aliases: dict[int, Tensor] | None = None,
               gradients: list[Tensor] = ()) -> Plan:
    """Plan `order` (a schedule) for concrete feed shapes; `outputs` are fetched (kept alive to
    the end and never fused away). Every placeholder in `placeholders` gets a feed buffer, read
    or not; `aliases` maps the id of a node the passes replaced (a user's output) to its
    replacement, so the plan's shapes and buffer_of answer for the user's node too. `gradients`
    are kept as values of their own (never fused into a consumer, so plain SGD's GEMM-update
    fusion is off for them) and placed in the memory plan's contiguous gradient region."""
    outputs = list(outputs or [])
    fetched = {o.id for o in outputs}
    in_order = {n.id for n in order}
    missing = [p for p in placeholders if p.id not in in_order]
    shapes = concrete_shapes(missing + order, feed_shapes)
    kept = fetched | {g.id for g in gradients}
    steps = fuse(order, shapes, kept, enabled=fusion)
    memory = plan_memory(missing + order, steps, shapes, fetched, gradients)
    for old_id, new in (aliases or {}).items():
        shapes.setdefault(old_id, shapes[new.id])
        memory.buffer_of.setdefault(old_id, memory.buffer_of[new.id])
    return Plan(order, shapes, steps, memory, lower(steps, shapes, memory), outputs)


__all__ = ["Graph", "Plan", "Step", "build_plan", "concrete_shapes", "schedule", "ALL_PASSES", "cse",
           "fold_constants", "register_constant_evaluator", "simplify", "resolve_passes", "run_passes"]
