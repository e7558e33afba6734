"""The instruction list. Each step becomes one gg_instr record (opcode, dtype, output and input
buffer indices, integer dims and real attrs), computed for concrete shapes: a single op from
its OpDef.lower, a fused group as GG_OP_FUSED with its op list (layout in csrc/graphgrad.h).
Nothing here runs at step time."""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import dtypes as _dt
from .._core import lib
from ..errors import ShapeError
from ..graph import Tensor
from ..ops import REGISTRY
from ..ops.registry import numel
from .fusion import Step, input_mode
from .memory import MemoryPlan

# the sizes of gg_instr's arrays and GG_OP_FUSED's dims layout: enum gg_limits in csrc/graphgrad.h
MAX_INPUTS, MAX_DIMS, MAX_ATTRS = lib.GG_MAX_INPUTS, lib.GG_MAX_DIMS, lib.GG_MAX_ATTRS
FUSED_HEADER = lib.GG_FUSED_HEADER
REF_TEMP, REF_GEMM = lib.GG_FUSED_REF_TEMP, lib.GG_FUSED_REF_GEMM


@dataclass
class Instruction:
    node: Tensor                 # the node whose value the instruction outputs (a fused group's root)
    opcode: int
    dtype: int
    out: int
    inputs: list[int]
    out_size: int
    dims: list[int]
    attrs: list[float]
    members: list[Tensor] = field(default_factory=list)   # every node it computes, in order

    @property
    def fused(self) -> bool:
        return len(self.members) > 1


def opcode_value(name: str) -> int:
    """The value of a C enum constant (GG_OP_*, GG_ACT_*)."""
    return int(getattr(lib, name))


def _pack(opcode: int, refs: list[int]) -> int:
    """One op of a fused list in one int64: opcode, then three 16-bit operand refs (+1, 0 = none)."""
    refs = list(refs) + [-1] * (3 - len(refs))
    return opcode | (refs[0] + 1) << 16 | (refs[1] + 1) << 32 | (refs[2] + 1) << 48


def _lower_fused(step: Step, shapes: dict[int, tuple], memory: MemoryPlan) -> tuple[list, list, list]:
    """(input buffers, dims, attrs) of a GG_OP_FUSED instruction."""
    root = step.root
    out_shape = shapes[root.id]
    head = step.head
    slot_nodes: list[Tensor] = []
    if head is not None:
        slot_nodes += list(head.inputs)          # the GEMM reads in[0] and in[1]
    for i in step.inputs:
        if head is None or i not in head.inputs:
            slot_nodes.append(i)
    slot_of: dict[int, int] = {}
    for k, n in enumerate(slot_nodes):
        slot_of.setdefault(n.id, k)
    ncols = out_shape[-1] if out_shape else 1
    rows = numel(out_shape) // ncols if ncols else 0
    dims = [numel(out_shape), 0, 0, rows, ncols, 0, 0, 0]   # up to GG_FUSED_MODES
    if head is not None:
        low = REGISTRY["matmul"].lower([shapes[i.id] for i in head.inputs], shapes[head.id], head.attrs)
        m, n, k, ta, tb = low.dims[:5]
        dims[2:8] = [1, m, n, k, ta, tb]
    modes = [0] * MAX_INPUTS
    for k, n in enumerate(slot_nodes):
        modes[k] = input_mode(shapes[n.id], out_shape) or 0   # None: read by the GEMM only
    ref_of: dict[int, int] = {}
    if head is not None:
        ref_of[head.id] = REF_GEMM
    ops, attrs = [], []
    members = [m for m in step.nodes if m is not head]
    for j, node in enumerate(members):
        refs = [ref_of[i.id] if i.id in ref_of else slot_of[i.id] for i in node.inputs]
        low = REGISTRY[node.op].lower([shapes[i.id] for i in node.inputs], shapes[node.id], node.attrs)
        ops.append(_pack(opcode_value(REGISTRY[node.op].opcode), refs))
        attrs.append(float(low.attrs[0]) if low.attrs else 0.0)
        ref_of[node.id] = REF_TEMP + j
    dims[1] = len(ops)
    assert len(dims) == lib.GG_FUSED_MODES
    dims += modes + ops
    assert len(dims) == FUSED_HEADER + len(ops)
    return [memory.buffer_of[n.id] for n in slot_nodes], dims, attrs


#: activations the GEMM applies in its epilogue: op -> its enum gg_act name in csrc/graphgrad.h
EPILOGUE_ACT = {"relu": "GG_ACT_RELU", "sigmoid": "GG_ACT_SIGMOID"}


def _lower_gemm_epilogue(step: Step, shapes: dict[int, tuple], memory: MemoryPlan) -> tuple | None:
    """(input buffers, dims, attrs) of a plain GG_OP_MATMUL when a fused group is just the product,
    a bias row added to it and/or relu or sigmoid: the GEMM adds the bias and applies the activation
    to each tile in registers (the same bits as the separate ops), with no op list to interpret.
    None for any other group."""
    head, rest = step.head, [m for m in step.nodes if m is not step.head]
    if head is None or not rest or len(rest) > 2:
        return None
    bias, prev = None, head
    if rest[0].op == "add":
        a, b = rest[0].inputs
        other = b if a is head else a if b is head else None
        n = shapes[head.id][1]
        if other is None or other is head or tuple(shapes[other.id]) != (n,):
            return None
        bias, prev, rest = other, rest[0], rest[1:]
    act = 0
    if rest:
        if rest[0].op not in EPILOGUE_ACT or rest[0].inputs[0] is not prev or len(rest) > 1:
            return None
        act = opcode_value(EPILOGUE_ACT[rest[0].op])
    low = REGISTRY["matmul"].lower([shapes[i.id] for i in head.inputs], shapes[head.id], head.attrs)
    inputs = [memory.buffer_of[head.inputs[0].id], memory.buffer_of[head.inputs[1].id]]
    inputs.append(memory.buffer_of[bias.id] if bias is not None else -1)
    return inputs, list(low.dims) + [act], [1.0, 0.0]


def _lower_gemm_update(step: Step, shapes: dict[int, tuple], memory: MemoryPlan) -> tuple[list, list, list]:
    """(input buffers, dims, attrs) of the GG_OP_MATMUL that is a plain SGD update: the variable is
    the output, alpha = -1 scaled by the learning-rate buffer (in[3]) at run time, beta = 1."""
    head, update = step.head, step.root
    low = REGISTRY["matmul"].lower([shapes[i.id] for i in head.inputs], shapes[head.id], head.attrs)
    lr = update.inputs[2]
    inputs = [memory.buffer_of[head.inputs[0].id], memory.buffer_of[head.inputs[1].id], -1, memory.buffer_of[lr.id]]
    return inputs, list(low.dims) + [0], [-1.0, 1.0]


def _lower_conv_epilogue(step: Step, shapes: dict[int, tuple], memory: MemoryPlan) -> tuple[list, list, list]:
    """(input buffers, dims, attrs) of the GG_OP_CONV2D that applies its ReLU in the epilogue."""
    conv = step.head
    low = REGISTRY["conv2d"].lower([shapes[i.id] for i in conv.inputs], shapes[conv.id], conv.attrs)
    inputs = [-1 if k < 0 else memory.buffer_of[conv.inputs[k].id] for k in low.inputs]
    scratch = memory.scratch_of[step.root.id]
    dims = list(low.dims[:-1]) + [opcode_value("GG_ACT_RELU"), memory.buffers[scratch].shape[0]]
    return inputs + [scratch], dims, list(low.attrs)


def lower(steps: list[Step], shapes: dict[int, tuple], memory: MemoryPlan) -> list[Instruction]:
    instructions = []
    for step in steps:
        node = step.root
        if step.fused and REGISTRY[node.op].writes:
            inputs, dims, attrs = _lower_gemm_update(step, shapes, memory)
            opcode = opcode_value("GG_OP_MATMUL")
        elif step.fused and step.head is not None and step.head.op == "conv2d":
            inputs, dims, attrs = _lower_conv_epilogue(step, shapes, memory)
            opcode = opcode_value("GG_OP_CONV2D")
        elif step.fused and (epilogue := _lower_gemm_epilogue(step, shapes, memory)) is not None:
            inputs, dims, attrs = epilogue
            opcode = opcode_value("GG_OP_MATMUL")
        elif step.fused:
            inputs, dims, attrs = _lower_fused(step, shapes, memory)
            opcode = opcode_value("GG_OP_FUSED")
        else:
            opdef = REGISTRY[node.op]
            in_shapes = [shapes[i.id] for i in node.inputs]
            low = opdef.lower(in_shapes, shapes[node.id], node.attrs)
            picked = range(len(node.inputs)) if low.inputs is None else low.inputs
            inputs = [-1 if k < 0 else memory.buffer_of[node.inputs[k].id] for k in picked]
            dims, attrs, opcode = low.dims, low.attrs, opcode_value(opdef.opcode)
            if opdef.scratch is not None:   # the scratch block is the last input; its size ends dims
                scratch = memory.scratch_of[node.id]
                inputs, dims = inputs + [scratch], list(dims) + [memory.buffers[scratch].shape[0]]
        if len(inputs) > MAX_INPUTS or len(dims) > MAX_DIMS or len(attrs) > MAX_ATTRS:
            raise ShapeError(f'{node.op} "{node.name}": too many inputs or dimensions for one instruction '
                             f"(rank above 10 after collapsing axes?)")
        instructions.append(Instruction(
            node=node, opcode=opcode, dtype=_dt.C_CODES[node.dtype],
            out=memory.buffer_of[node.id], inputs=inputs, out_size=numel(shapes[node.id]),
            dims=[int(d) for d in dims], attrs=[float(a) for a in attrs], members=list(step.nodes)))
    return instructions
