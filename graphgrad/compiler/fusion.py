"""Fusion: the scheduled nodes grouped into steps, one instruction each.

A step is one node, or a fused group: an optional matrix product (the head) followed by a
chain of elementwise ops, run as one GG_OP_FUSED instruction (csrc/fused.c) that streams the
data through L1 in small blocks — the head's output row blocks are finished (bias add,
activation, activation backward) while they are still in cache, and a chain such as
mse_backward -> sigmoid_backward never writes its intermediate to memory.

A node joins the group of an input when that input is read by nothing else and is not
fetched and has the same element count. A group runs as soon as every value it reads exists,
and only if no update overwrites a variable it reads before that point.
Elementwise inputs may be full-size, scalars, or rows broadcast over the leading axes (a bias).

A convolution takes a ReLU that only it feeds into its GEMM's epilogue (conv2d's kernel adds the
bias and applies the activation to each finished block), and nothing else.

Plain SGD (no momentum, no weight decay) joins the matrix product that computes its gradient:
w ← w − lr·(a·b) is one GEMM with alpha = −lr and beta = 1 writing into w, so the gradient is
never stored and the update makes no pass of its own. Bit for bit the same as the two steps:
the product is accumulated the same way, then scaled by −lr and added to w once. The group runs
where the update was scheduled (after every reader of w).

Runs once per shape specialisation: pure Python, nothing at step time.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .._core import lib
from ..graph import Tensor
from ..ops import REGISTRY
from ..ops.registry import ANY as READ_ANY, FULL as READ_FULL, numel

MAX_OPS = lib.GG_FUSED_MAX_OPS     # ops in one fused list (enum gg_limits, csrc/graphgrad.h)
MAX_INPUTS = lib.GG_MAX_INPUTS     # input buffers of one instruction

FULL, SCALAR, ROW = 0, 1, 2   # how a fused op reads an input (csrc/fused.c input modes)


@dataclass
class Step:
    """What one instruction computes: `nodes` in execution order; the last is the root, whose
    value is the step's output. `head` is the matmul a fused group starts with, if any."""
    nodes: list[Tensor]
    head: Tensor | None = None
    inputs: list[Tensor] = field(default_factory=list)   # values read from outside the step, no repeats

    @property
    def root(self) -> Tensor:
        return self.nodes[-1]

    @property
    def fused(self) -> bool:
        return len(self.nodes) > 1


def input_mode(inp_shape: tuple, out_shape: tuple) -> int | None:
    """How a fused elementwise op producing out_shape reads an input of inp_shape, or None
    when the fused kernel cannot (a broadcast other than scalar or trailing row)."""
    n, k = numel(out_shape), numel(inp_shape)
    if k == n:
        return FULL            # same elements in the same order (shapes differ by size-1 axes only)
    if k == 1:
        return SCALAR
    if out_shape and k == out_shape[-1] and all(d == 1 for d in inp_shape[:-1]) and inp_shape[-1:] == out_shape[-1:]:
        return ROW
    return None


def _reads_ok(how: str, inp_shape: tuple, out_shape: tuple) -> bool:
    """Whether the fused loop can read an input of inp_shape as `how` (an OpDef.fusion entry)."""
    if how == READ_ANY:
        return input_mode(inp_shape, out_shape) is not None
    return numel(inp_shape) == (numel(out_shape) if how == READ_FULL else 1)


def _elementwise_ok(node: Tensor, shapes: dict[int, tuple]) -> bool:
    """Whether the node can be an op of a fused list: its OpDef says it fuses, and how it reads each input."""
    fusion = REGISTRY[node.op].fusion
    if fusion is None or len(fusion) != len(node.inputs):
        return False
    out = shapes[node.id]
    return all(_reads_ok(how, shapes[i.id], out) for how, i in zip(fusion, node.inputs))


def _external_inputs(nodes: list[Tensor]) -> list[Tensor]:
    inside = {n.id for n in nodes}
    seen, out = set(), []
    for node in nodes:
        for i in node.inputs:
            if i.id not in inside and i.id not in seen:
                seen.add(i.id)
                out.append(i)
    return out


def _gemm_update_ok(node: Tensor, consumers: dict[int, int], fetched: set[int], first_write: dict[int, int],
                    position: dict[int, int], group_of: dict[int, list]) -> bool:
    """Whether an update node can run as its gradient's GEMM (see the module docstring)."""
    if node.op != "sgd_update" or node.attrs["state"] or node.attrs["weight_decay"] != 0:
        return False
    var, grad = node.inputs[0], node.inputs[1]
    if (grad.op != "matmul" or consumers.get(grad.id) != 1 or grad.id in fetched or grad.dtype != var.dtype
            or len(group_of.get(grad.id, ())) != 1):
        return False
    # the product's operands are read when the update runs: none may be w (written while read)
    # or be overwritten between the product's place in the schedule and the update's
    return all(i.id != var.id and first_write.get(i.id, len(position)) > position[node.id] for i in grad.inputs)


def fuse(order: list[Tensor], shapes: dict[int, tuple], fetched: set[int], enabled: bool = True) -> list[Step]:
    """Group the scheduled op nodes into steps (one step per node when fusion is off)."""
    ops = [n for n in order if REGISTRY[n.op].opcode is not None]
    if not enabled:
        return [Step([n], inputs=_external_inputs([n])) for n in ops]

    position = {n.id: k for k, n in enumerate(order)}
    consumers: dict[int, int] = {}
    first_write: dict[int, int] = {}   # variable id -> position of the first update writing it
    for node in order:
        for i in node.inputs:
            consumers[i.id] = consumers.get(i.id, 0) + 1
        for k in REGISTRY[node.op].writes:
            if k < len(node.inputs):
                var = node.inputs[k].id
                first_write[var] = min(first_write.get(var, len(order)), position[node.id])

    group_of: dict[int, list[Tensor]] = {}   # member id -> its group (a shared list)
    head_of: dict[int, Tensor] = {}          # id of a group's first member -> its matmul head

    def can_absorb(producer: Tensor, node: Tensor) -> bool:
        return (producer.id in group_of and consumers.get(producer.id) == 1 and producer.id not in fetched
                and numel(shapes[producer.id]) == numel(shapes[node.id]) and producer.dtype == node.dtype)

    for node in ops:
        if node.op == "matmul":
            group = [node]
            group_of[node.id] = group
            head_of[node.id] = node
            continue
        if node.op == "conv2d":
            group_of[node.id] = [node]
            continue
        if node.op == "relu" and node.inputs[0].op == "conv2d" and can_absorb(node.inputs[0], node) \
                and len(group_of[node.inputs[0].id]) == 1:
            group = group_of[node.inputs[0].id]
            group.append(node)
            group_of[node.id] = group
            continue
        if _gemm_update_ok(node, consumers, fetched, first_write, position, group_of):
            group = [node.inputs[1], node]
            for m in group:
                group_of[m.id] = group
            head_of[group[0].id] = group[0]
            continue
        if not _elementwise_ok(node, shapes):
            continue
        merged: list[list[Tensor]] = []
        for i in node.inputs:
            # a convolution's group (conv2d, or conv2d + its ReLU) takes nothing more: its kernel has
            # only the bias and activation epilogue (an elementwise op that took conv2d + ReLU in
            # was dropped by the lowering: relu(conv(x)) * c computed relu(conv(x)))
            if can_absorb(i, node) and group_of[i.id][0].op != "conv2d" and not any(group_of[i.id] is g for g in merged):
                merged.append(group_of[i.id])
        heads = [g for g in merged if g[0].id in head_of]
        if len(heads) > 1:   # one matmul per instruction: keep the first head's group
            merged = [g for g in merged if g[0].id not in head_of or g is heads[0]]
        if heads and shapes[heads[0][0].id] != shapes[node.id]:   # the head's rows and columns are the output's
            merged = [g for g in merged if g is not heads[0]]
        members = sorted((m for g in merged for m in g), key=lambda m: position[m.id]) + [node]
        head = next((m for m in members if m.op == "matmul"), None)
        if head is not None:   # the product runs first; the elementwise members follow in schedule order
            members = [head] + [m for m in members if m is not head]
        external = _external_inputs(members)
        n_ops = len(members) - (1 if head else 0)
        # the group runs as soon as everything it reads exists: nothing it reads may be
        # overwritten by then
        start = max(position[i.id] for i in external)
        safe = all(first_write.get(i.id, len(order)) > start for i in external)
        if merged and n_ops <= MAX_OPS and len(external) <= MAX_INPUTS and safe:
            group = members
            if head is not None:
                head_of[group[0].id] = head
        else:
            group = [node]
        for m in group:
            group_of[m.id] = group

    # a single op runs where the schedule put it; a group right after the last value it reads
    # (so a backward GEMM and its activation mask run before the weight's update, not after)
    keyed: list[tuple[float, int, Step]] = []
    for node in ops:
        group = group_of.get(node.id)
        if group is None or len(group) == 1:
            keyed.append((position[node.id], position[node.id], Step([node], inputs=_external_inputs([node]))))
        elif group[-1] is node:
            head = group[0] if group[0].op in ("matmul", "conv2d") else None
            inputs = _external_inputs(group)
            start = max(position[i.id] for i in inputs) + 0.5
            if REGISTRY[node.op].writes:   # an update stays where the schedule put it
                start = position[node.id]
            keyed.append((start, position[node.id], Step(list(group), head=head, inputs=inputs)))
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [step for _, _, step in keyed]
