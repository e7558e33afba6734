"""Where every buffer lives. Placeholders are fed (their arrays are used as they are),
variables and constants keep the arrays they own (optimizer state included), update ops write
the variable they update, and every other step's output gets a 64-byte-aligned offset in one
arena allocated once per compiled program.

Offsets come from liveness: a value is live from the step that computes it to the last step
that reads it (fetched outputs to the end of the program). Walking the steps in order, each
output takes the best-fitting free block of the arena (the smallest that is large enough),
or takes over the block of an input that dies at that very step when the op may run in place
(OpDef.inplace: input 0; a fused elementwise group: any full-size input); the blocks of values
read for the last time are freed after the step's output is placed, and neighbouring free
blocks merge. The arena's size is the highest end any block reached (the peak).

A program compiled for data-parallel training (gg.compile(..., split_gradients=True)) keeps the
gradients that feed its updates out of the arena, in one contiguous "gradients" region of their
own, so one in-place allreduce covers them all. Layout: the gradients in the order given (the
optimizer's variable order), each starting at a 64-byte boundary; the bytes between them are
zero padding that no instruction writes. A gradient's block is never reused or shared in place.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass

from ..graph import Tensor
from ..ops import REGISTRY
from ..ops.registry import numel
from .fusion import FULL, Step, input_mode

ALIGN = 64


def align(nbytes: int) -> int:
    return (nbytes + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class BufferSpec:
    """One entry of the program's buffer table."""
    kind: str            # "feed", "state" (variable/constant array), "arena", or "gradient"
    node: Tensor         # the node whose value the buffer holds
    shape: tuple
    nbytes: int
    offset: int = -1     # arena offset (kind "arena"), or offset in the gradient region (kind "gradient")
    first: int = -1      # the step that writes it (arena buffers)
    last: int = -1       # the last step that reads it (the step count for fetched outputs)
    inplace_of: int = -1  # buffer index whose block this one took over at step `first`, or -1
    scratch: bool = False  # an instruction's scratch (conv column buffers), live during its step only

    @property
    def size(self) -> int:
        """Bytes of arena the buffer occupies (aligned, at least one line)."""
        return align(max(self.nbytes, 1))


@dataclass
class MemoryPlan:
    buffers: list[BufferSpec]
    buffer_of: dict[int, int]     # node id -> index into buffers
    arena_bytes: int              # the arena's size (peak)
    naive_bytes: int              # the sum of all intermediates, aligned (one slot each, no reuse)
    n_steps: int = 0
    gradient_bytes: int = 0       # size of the gradient region (0 unless gradients were placed there)
    gradient_dtype: object = None  # the one dtype every gradient in the region has
    scratch_of: dict[int, int] = None   # node id -> index of its instruction's scratch buffer

    @property
    def scratch_bytes(self) -> int:
        """The largest scratch block (scratch blocks live one instruction each, so they reuse space)."""
        return max((b.size for b in self.buffers if b.scratch), default=0)


class _FreeList:
    """Free blocks of the arena, sorted by offset, merged with their neighbours."""

    def __init__(self):
        self.blocks: list[list[int]] = []   # [offset, size]
        self.top = 0                        # end of the arena so far
        self.peak = 0

    def take(self, size: int) -> int:
        best = None
        for k, (off, sz) in enumerate(self.blocks):
            if sz >= size and (best is None or sz < self.blocks[best][1]):
                best = k
        if best is not None:
            off, sz = self.blocks[best]
            if sz == size:
                del self.blocks[best]
            else:
                self.blocks[best] = [off + size, sz - size]
            return off
        # nothing fits: grow the arena, starting inside a free block that ends at the top
        if self.blocks and sum(self.blocks[-1]) == self.top:
            off = self.blocks.pop()[0]
        else:
            off = self.top
        self.top = off + size
        self.peak = max(self.peak, self.top)
        return off

    def give(self, off: int, size: int) -> None:
        k = bisect.bisect_left(self.blocks, [off, size])
        self.blocks.insert(k, [off, size])
        if k + 1 < len(self.blocks) and off + size == self.blocks[k + 1][0]:
            self.blocks[k][1] += self.blocks.pop(k + 1)[1]
        if k > 0 and sum(self.blocks[k - 1]) == off:
            self.blocks[k - 1][1] += self.blocks.pop(k)[1]


def _inplace_candidates(step: Step, shapes: dict[int, tuple]) -> list[Tensor]:
    """Inputs whose memory the step's output may reuse (when they die here)."""
    root = step.root
    if step.fused:
        if step.head is not None:
            return []   # the GEMM reads its operands while it writes
        out = shapes[root.id]
        return [i for i in step.inputs if input_mode(shapes[i.id], out) == FULL]
    opdef = REGISTRY[root.op]
    return [root.inputs[0]] if opdef.inplace and root.inputs else []


def plan_memory(order: list[Tensor], steps: list[Step], shapes: dict[int, tuple],
                fetched: set[int], gradients: list[Tensor] = ()) -> MemoryPlan:
    """Place every buffer; `gradients` (computed nodes, no repeats) go to the gradient region."""
    buffers: list[BufferSpec] = []
    buffer_of: dict[int, int] = {}
    scratch_of: dict[int, int] = {}

    def nbytes(node: Tensor) -> int:
        return numel(shapes[node.id]) * node.dtype.itemsize

    for node in order:   # leaves first-come, in schedule order
        if node.op in ("placeholder", "variable", "constant"):
            buffer_of[node.id] = len(buffers)
            buffers.append(BufferSpec("feed" if node.op == "placeholder" else "state", node, shapes[node.id],
                                      nbytes(node)))
    n_steps = len(steps)
    for k, step in enumerate(steps):
        root = step.root
        writes = REGISTRY[root.op].writes
        if writes:
            buffer_of[root.id] = buffer_of[root.inputs[writes[0]].id]   # writes its variable in place
            continue
        buffer_of[root.id] = len(buffers)
        buffers.append(BufferSpec("arena", root, shapes[root.id], nbytes(root), first=k, last=k))
        node = step.head if step.head is not None else root   # the op whose kernel runs
        if REGISTRY[node.op].scratch is not None:
            elems = REGISTRY[node.op].scratch([shapes[i.id] for i in node.inputs], shapes[node.id], node.attrs,
                                              node.dtype)
            scratch_of[root.id] = len(buffers)
            buffers.append(BufferSpec("arena", root, (elems,), elems * root.dtype.itemsize, first=k, last=k,
                                      scratch=True))
    gradient_bytes, gradient_dtype = 0, None
    for g in gradients:
        buf = buffers[buffer_of[g.id]]
        if buf.kind != "arena" or buf.node is not g:
            raise ValueError(f'gradient "{g.name}" is not computed by an instruction of its own')
        if gradient_dtype is not None and g.dtype != gradient_dtype:
            raise TypeError(f"the gradient region holds one dtype: {gradient_dtype.name} and {g.dtype.name} "
                            f'(gradient "{g.name}") differ')
        gradient_dtype = g.dtype
        buf.kind, buf.offset = "gradient", gradient_bytes
        gradient_bytes += buf.size
    for k, step in enumerate(steps):
        for i in step.inputs:
            buf = buffers[buffer_of[i.id]]
            if buf.kind == "arena":
                buf.last = max(buf.last, k)
    for node_id in fetched:
        if node_id in buffer_of and buffers[buffer_of[node_id]].kind == "arena":
            buffers[buffer_of[node_id]].last = n_steps

    # best-fit placement, walking the steps
    free = _FreeList()
    dying: dict[int, list[int]] = {}
    for b, buf in enumerate(buffers):
        if buf.kind == "arena":
            dying.setdefault(buf.last, []).append(b)
    for k, step in enumerate(steps):
        root = step.root
        b = buffer_of[root.id]
        buf = buffers[b]
        if buf.kind == "arena" and buf.node is root:
            for cand in _inplace_candidates(step, shapes):
                c = buffer_of[cand.id]
                src = buffers[c]
                if (src.kind == "arena" and src.last == k and src.nbytes == buf.nbytes and src.node.dtype == root.dtype
                        and c in dying.get(k, ()) and src.offset >= 0):
                    buf.offset, buf.inplace_of = src.offset, c
                    dying[k].remove(c)   # the block passes to the output instead of being freed
                    break
            if buf.offset < 0:
                buf.offset = free.take(buf.size)
        if root.id in scratch_of:   # placed while the step's inputs still hold their blocks
            scratch = buffers[scratch_of[root.id]]
            scratch.offset = free.take(scratch.size)
        for d in dying.pop(k, ()):
            free.give(buffers[d].offset, buffers[d].size)

    naive = sum(b.size for b in buffers if b.kind == "arena")
    return MemoryPlan(buffers, buffer_of, free.peak, naive, n_steps, gradient_bytes, gradient_dtype, scratch_of)
