"""Stage 3: the instruction list. Each scheduled op node becomes one gg_instr record (opcode,
dtype, output and input buffer indices, integer dims and real attrs from its OpDef.lower),
computed for concrete shapes. Nothing here runs at step time."""
from __future__ import annotations

from dataclasses import dataclass

from .. import dtypes as _dt
from ..errors import ShapeError
from ..graph import Tensor
from ..ops import REGISTRY
from ..ops.registry import numel
from .memory import MemoryPlan

MAX_INPUTS, MAX_DIMS, MAX_ATTRS = 6, 32, 8   # the sizes of gg_instr's arrays in csrc/graphgrad.h


@dataclass
class Instruction:
    node: Tensor
    opcode: int
    dtype: int
    out: int
    inputs: list[int]
    out_size: int
    dims: list[int]
    attrs: list[float]


def opcode_value(name: str) -> int:
    from .._core import lib
    return int(getattr(lib, name))


def lower(order: list[Tensor], shapes: dict[int, tuple], memory: MemoryPlan) -> list[Instruction]:
    instructions = []
    for node in order:
        opdef = REGISTRY[node.op]
        if opdef.opcode is None:
            continue
        in_shapes = [shapes[i.id] for i in node.inputs]
        low = opdef.lower(in_shapes, shapes[node.id], node.attrs)
        picked = range(len(node.inputs)) if low.inputs is None else low.inputs
        inputs = [-1 if k < 0 else memory.buffer_of[node.inputs[k].id] for k in picked]
        if len(inputs) > MAX_INPUTS or len(low.dims) > MAX_DIMS or len(low.attrs) > MAX_ATTRS:
            raise ShapeError(f'{node.op} "{node.name}": too many inputs or dimensions for one instruction '
                             f"(rank above 10 after collapsing axes?)")
        instructions.append(Instruction(
            node=node, opcode=opcode_value(opdef.opcode), dtype=_dt.C_CODES[node.dtype],
            out=memory.buffer_of[node.id], inputs=inputs, out_size=numel(shapes[node.id]),
            dims=[int(d) for d in low.dims], attrs=[float(a) for a in low.attrs]))
    return instructions
