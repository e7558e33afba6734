"""Program: a compiled graph you call with feeds. Each call is exactly one call into C
(gg_program_run) that runs every instruction — forward, backward and optimizer update.

A Program is specialised to the concrete shapes of its feeds: the first call with new shapes
plans and lowers once more (cheap) and caches the result, so a different batch size works.
Buffers (the arena, the instruction list, the pointer table) are allocated once per
specialisation, never per call.
"""
from __future__ import annotations

import math
import operator
import os
import threading
import time
from typing import Sequence

import numpy as np

from ._core import ffi, lib
from .compiler import Plan, build_plan, register_constant_evaluator, resolve_passes, run_passes, schedule
from .compiler.memory import ALIGN
from .dtypes import C_CODES
from .errors import (DivergenceError, FeedError, GraphGradError, NumericsError, RuntimeFailure, ShapeError,
                     invalid_program)
from .graph import Graph, Tensor, source_text
from .ops import REGISTRY
from .ops.registry import _fmt_shape
from .optim import get as get_optimizer


#: spare elements after a split_gradients program's gradients (see _Executable.gradient_region)
GRADIENT_SPARE = 4

_same = operator.is_
_shape = operator.attrgetter("shape")

#: run_steps' parts of a step: all of it, or the loss and gradients, or the updates
STEP_PARTS = ("step", "gradients", "updates")


class _Executable:
    """One specialisation: the plan and the C structures that run it."""

    def __init__(self, plan: Plan, placeholders: list[Tensor], feed_shapes: tuple, check_numerics: bool,
                 profile: bool = False):
        self.plan = plan
        self.feed_shapes = feed_shapes   # the placeholders' shapes this specialisation is for
        mem = plan.memory
        try:
            self.arena = np.zeros(mem.arena_bytes + ALIGN, dtype=np.uint8)
        except MemoryError:
            largest = max((b for b in mem.buffers if b.kind == "arena"), key=lambda b: b.nbytes)
            raise MemoryError(f"cannot allocate this program's {mem.arena_bytes:,}-byte arena; its largest "
                              f'buffer is {largest.node.op} node "{largest.node.name}" {largest.shape} '
                              f"({largest.nbytes:,} bytes, created at {largest.node.source})") from None
        base = (-self.arena.ctypes.data) % ALIGN
        #: split_gradients programs: the gradient region (see compiler/memory.py), as a flat array of
        #: the gradients' dtype with GRADIENT_SPARE spare elements after it, for values that travel
        #: with the gradients (distributed training sends the step's loss there)
        self.gradient_region = self.gradients = None
        if mem.gradient_dtype is not None:
            self._own_gradient_region()
        self.c_buffers = ffi.new("void *[]", max(len(mem.buffers), 1))
        self.views: list[np.ndarray | None] = []
        for i, buf in enumerate(mem.buffers):
            if buf.kind == "state":
                view = buf.node.data
            elif buf.kind == "arena":
                start = base + buf.offset
                view = self.arena[start:start + buf.nbytes].view(buf.node.dtype).reshape(buf.shape)
            elif buf.kind == "gradient":
                start = buf.offset // buf.node.dtype.itemsize
                view = self.gradient_region[start:start + buf.nbytes // buf.node.dtype.itemsize].reshape(buf.shape)
            else:
                self.views.append(None)
                continue
            self.views.append(view)
            self.c_buffers[i] = ffi.cast("void *", view.ctypes.data)

        self.c_instrs = ffi.new("gg_instr[]", max(len(plan.instructions), 1))
        self._subsets: dict = {}           # instruction subsets run as programs of their own (see subset_program)
        for c, ins in zip(self.c_instrs, plan.instructions):
            c.opcode, c.dtype, c.out, c.n_in, c.out_size = ins.opcode, ins.dtype, ins.out, len(ins.inputs), ins.out_size
            c_inputs = getattr(c, "in")    # `in` is a Python keyword
            for k, v in enumerate(ins.inputs):
                c_inputs[k] = v
            for k, v in enumerate(ins.dims):
                c.dims[k] = v
            for k, v in enumerate(ins.attrs):
                c.attrs[k] = v
        self.c_prog = ffi.new("gg_program *")
        self.c_prog.n_instr = len(plan.instructions)
        self.c_prog.instrs = self.c_instrs
        self.c_prog.n_buffers = len(mem.buffers)
        self.c_prog.buffers = self.c_buffers
        self.c_prog.check_numerics = int(check_numerics)
        status = lib.gg_program_validate(self.c_prog)   # once per specialisation: runs trust the list
        if status != lib.GG_OK:
            reason = ffi.string(lib.gg_status_name(status)).decode()
            raise invalid_program(plan.instructions, self.c_prog.failed_instr, reason)
        # profile mode: C adds each instruction's nanoseconds here on every run
        self.profile_ns = np.zeros(max(len(plan.instructions), 1)) if profile else None
        self.c_prog.profile_ns = ffi.cast("double *", self.profile_ns.ctypes.data) if profile else ffi.NULL
        # packing scratch for the GEMMs, sized for the threads the machine has (fewer run if
        # gg.set_num_threads asks for more later)
        threads = max(os.cpu_count() or 1, lib.gg_get_num_threads())
        nbytes = lib.gg_program_workspace_bytes(self.c_prog, threads)
        self.workspace = np.empty(max(nbytes, 1), dtype=np.uint8)
        self.c_prog.workspace = ffi.cast("void *", self.workspace.ctypes.data)
        self.c_prog.workspace_bytes = nbytes
        self.feed_slots = [mem.buffer_of[p.id] for p in placeholders]
        self.last_feeds: list = [None] * len(placeholders)   # the arrays the feed slots point at now
        # (buffer view or None, feed index) per output: a fetched placeholder is copied from its feed
        self.fetches = [(self.views[mem.buffer_of[o.id]],
                         placeholders.index(o) if o.op == "placeholder" else -1) for o in plan.outputs]


    def _own_gradient_region(self) -> None:
        """A fresh, zeroed, 64-byte-aligned gradient region of this executable's own."""
        mem = self.plan.memory
        itemsize = mem.gradient_dtype.itemsize
        n = mem.gradient_bytes // itemsize
        raw = np.zeros(mem.gradient_bytes + (GRADIENT_SPARE + 1) * itemsize + ALIGN, dtype=np.uint8)
        start = (-raw.ctypes.data) % ALIGN
        self.gradient_region = raw[start:start + (n + GRADIENT_SPARE) * itemsize].view(mem.gradient_dtype)
        self.gradients = self.gradient_region[:n]

    def place_gradient_region(self, memory: np.ndarray | None) -> np.ndarray:
        """Move the gradient region into `memory` (a writeable, 64-byte-aligned, C-contiguous array
        of the gradients' dtype and the region's size: shared memory, say), or back into an array
        of its own (memory=None); the current contents come along. Every gradient buffer and the
        C pointers to them follow."""
        mem, old = self.plan.memory, self.gradient_region
        if memory is None:
            self._own_gradient_region()
        else:
            if (not isinstance(memory, np.ndarray) or memory.dtype != old.dtype or memory.shape != old.shape
                    or not memory.flags.c_contiguous or not memory.flags.writeable or memory.ctypes.data % ALIGN):
                raise ValueError(f"the gradient region needs a writeable, C-contiguous, {ALIGN}-byte-aligned "
                                 f"{old.dtype.name} array of shape {old.shape}")
            self.gradient_region, self.gradients = memory, memory[:old.size - GRADIENT_SPARE]
        self.gradient_region[...] = old
        self._subsets.clear()              # their buffer tables hold pointers into the old region
        for i, buf in enumerate(mem.buffers):
            if buf.kind == "gradient":
                start = buf.offset // buf.node.dtype.itemsize
                view = self.gradient_region[start:start + buf.nbytes // buf.node.dtype.itemsize].reshape(buf.shape)
                self.views[i] = view
                self.c_buffers[i] = ffi.cast("void *", view.ctypes.data)
        return self.gradient_region

    def place_variable(self, var: Tensor, memory: np.ndarray | None) -> None:
        """Let this executable's instructions read and write variable `var` in `memory` (an array
        of its shape and dtype, C-contiguous, writeable: shared memory, say) instead of var.data;
        None points them back at var.data. Nothing is copied: var.data and `memory` are two copies
        the caller keeps in step."""
        i = self.plan.memory.buffer_of.get(var.id)
        if i is None or self.plan.memory.buffers[i].kind != "state":
            raise ValueError(f'variable "{var.name}" is not one this program reads')
        if memory is None:
            memory = var.data
        elif (not isinstance(memory, np.ndarray) or memory.dtype != var.data.dtype or memory.shape != var.data.shape
              or not memory.flags.c_contiguous or not memory.flags.writeable):
            raise ValueError(f'variable "{var.name}" needs a writeable C-contiguous {var.data.dtype.name} array of '
                             f"shape {var.data.shape}")
        self.views[i] = memory
        self.c_buffers[i] = ffi.cast("void *", memory.ctypes.data)
        self._subsets.clear()

    def subset_program(self, parts: tuple):
        """A gg_program running only some of this executable's instructions, in order, on the same
        buffers and workspace: a share of a step's updates, say. parts: ascending instruction
        indices, or (index, start, stop) for an optimizer update (`<rule>_update`) applied to
        elements [start, stop) of its variable only — its variable, gradient and per-element
        state buffers are entered again in the program's own buffer table at that offset."""
        found = self._subsets.get(parts)
        if found is None:
            mem = self.plan.memory
            instrs = ffi.new("gg_instr[]", max(len(parts), 1))
            extra: list = []                         # (buffer pointer) entries after the executable's own
            for k, part in enumerate(parts):
                i, start, stop = (part, None, None) if isinstance(part, int) else part
                instrs[k] = self.c_instrs[i]
                if start is None:
                    continue
                c, size = instrs[k], math.prod(mem.buffers[self.c_instrs[i].out].shape)
                c_inputs = getattr(c, "in")
                slots = [("out", c.out)] + [(j, c_inputs[j]) for j in range(c.n_in) if c_inputs[j] >= 0]
                for where, b in slots:
                    buf = mem.buffers[b]
                    item = buf.node.dtype.itemsize
                    if math.prod(buf.shape) != size:     # a scalar (lr, step, NAdam's mu_product): as it is
                        continue
                    extra.append(ffi.cast("char *", self.c_buffers[b]) + start * item)
                    if where == "out":
                        c.out = len(mem.buffers) + len(extra) - 1
                    else:
                        c_inputs[where] = len(mem.buffers) + len(extra) - 1
                c.dims[0] = stop - start
            view = ffi.new("gg_program *")
            view[0] = self.c_prog[0]
            table = self.c_buffers
            if extra:
                table = ffi.new("void *[]", len(mem.buffers) + len(extra))
                for b in range(len(mem.buffers)):
                    table[b] = self.c_buffers[b]
                for k, ptr in enumerate(extra):
                    table[len(mem.buffers) + k] = ptr
                view.buffers, view.n_buffers = table, len(mem.buffers) + len(extra)
            view.instrs, view.n_instr, view.profile_ns = instrs, len(parts), ffi.NULL
            status = lib.gg_program_validate(view)
            if status != lib.GG_OK:
                raise GraphGradError(f"a subset of the update instructions {parts} does not validate: "
                                     f"{ffi.string(lib.gg_status_name(status)).decode()}")
            found = self._subsets[parts] = (view, instrs, table)
        return found[0]


class Program:
    """A compiled graph. Call it with feeds (by placeholder name, or a {placeholder: value} dict);
    it returns the outputs as NumPy arrays — one value when compiled from a single Tensor, a
    list when compiled from a list. With an optimizer, each call is one training step and
    returns the loss (the first output) as it was before the update. Calls from several threads
    are safe: they take turns (different Programs run in parallel).

    after_update: a function (update nodes) -> Tensors, called once the optimizer has built its
    updates; what it returns is compiled into the same step and fetched after `outputs` (how
    gg.callbacks.GradientStats reads each update). split_gradients: see gg.compile."""

    def __init__(self, outputs, optimizer=None, check_numerics: bool = False, passes=None, profile: bool = False,
                 after_update=None, split_gradients: bool = False):
        self._single = isinstance(outputs, Tensor)
        self.outputs: list[Tensor] = [outputs] if self._single else list(outputs)
        if not self.outputs or not all(isinstance(o, Tensor) for o in self.outputs):
            raise TypeError("gg.compile takes a Tensor or a non-empty list of Tensors")
        # an instance, or a Keras-style name ("adam"); a class is an error saying what to pass
        self.optimizer = optimizer = get_optimizer(optimizer) if optimizer is not None else None
        started = time.perf_counter()
        self.updates: list[Tensor] = optimizer.minimize(self.outputs[0]) if optimizer is not None else []
        if after_update is not None:
            # outputs built from the update nodes (e.g. gradient statistics), computed in the same step
            self._single = False
            self.outputs += list(after_update(self.updates))
        graph_built = time.perf_counter()
        graph = Graph(self.outputs + self.updates)
        # the user's feeds: every placeholder of the graph as written, in id order (a pass may
        # remove a read; the feed is still checked)
        self.placeholders = [n for n in graph.nodes if n.op == "placeholder"]
        graph_passes, self.fusion = resolve_passes(passes)
        # check_numerics tests every op's output: a fused group would only show its last one
        self.fusion = self.fusion and not check_numerics
        self.graph = run_passes(graph, graph_passes)
        self.order = schedule(self.graph)
        #: split_gradients: the gradients that feed the updates (one per variable, in the optimizer's
        #: order), each kept whole in the gradient region; empty otherwise
        self.gradient_nodes: list[Tensor] = []
        if split_gradients:
            if optimizer is None:
                raise ValueError("split_gradients=True needs an optimizer: it splits a training step")
            self.order, self.gradient_nodes = _split_order(self.order, self.graph.outputs[len(self.outputs):])
        #: the nodes fetched for self.outputs (the passes' replacements, position for position)
        self.compiled_outputs: list[Tensor] = self.graph.outputs[:len(self.outputs)]
        #: seconds spent: building the optimizer's nodes and state, and compiling the graph
        #: (passes + schedule); each specialisation adds its own (exe.compile_seconds)
        self.compile_seconds = {"optimizer": graph_built - started, "graph": time.perf_counter() - graph_built}
        self._by_name: dict[str, list[Tensor]] = {}
        for p in self.placeholders:
            self._by_name.setdefault(p.name, []).append(p)
        self.check_numerics = bool(check_numerics)
        self.profiling = bool(profile)
        self._executables: dict[tuple, _Executable] = {}
        self._last: _Executable | None = None
        self._feed_dtypes = [p.dtype for p in self.placeholders]
        # (feed keys, placeholder -> key position, whether that is the identity) of the last checked call
        self._fast: tuple | None = None
        self._lock = threading.Lock()
        self._step_records: dict[tuple, _StepsRecord] = {}   # run_steps' C descriptions, recent ones

    # ---- calling ----
    def __call__(self, feed_dict: dict | None = None, **feeds):
        # one call at a time per Program: C runs without the GIL, and two runs at once would share
        # the arena and the variables (different Programs run in parallel freely)
        with self._lock:
            # fast path: the same feed keys as the last call, arrays of the right dtype and layout,
            # shapes already specialised — no validation to redo, no copies
            source = feeds if feed_dict is None else (feed_dict if not feeds else None)
            fast = self._fast
            if fast is not None and type(source) is dict and tuple(source) == fast[0]:
                values = list(source.values())
                arrays = values if fast[2] else [values[i] for i in fast[1]]
                exe = self._last
                # the very arrays of the last call, same shapes: their pointers are in place already
                if (exe is not None and all(map(_same, arrays, exe.last_feeds))
                        and tuple(map(_shape, arrays)) == exe.feed_shapes):
                    status = lib.gg_program_run(exe.c_prog)
                    if status != lib.GG_OK:
                        self._raise_status(exe, status)
                    return self._results(exe, arrays)
                exe = self._ready_executable(arrays)
                if exe is not None:
                    return self._run(exe, arrays)
            arrays = self._collect_feeds(feed_dict, feeds)
            key = tuple(a.shape for a in arrays)
            exe = self._executables.get(key)
            if exe is None:
                exe = self._specialise(key)
            result = self._run(exe, arrays)
            self._remember_feed_keys(source)
            return result

    def _ready_executable(self, arrays: list) -> "_Executable | None":
        """The specialisation for arrays fed under the last call's keys, when they need no checks
        beyond dtype and layout (and it exists already); else None."""
        for arr, dtype in zip(arrays, self._feed_dtypes):
            if type(arr) is not np.ndarray or arr.dtype != dtype or not arr.flags.c_contiguous:
                return None
        return self._executables.get(tuple([a.shape for a in arrays]))

    def _remember_feed_keys(self, source) -> None:
        """After a validated call: remember its keys (placeholders or names) and where each
        placeholder's value sits among them, so the next call with the same keys skips checks."""
        if type(source) is not dict or self.check_numerics or len(source) != len(self.placeholders):
            return
        keys = tuple(source)
        position = {(k.id if isinstance(k, Tensor) else k): i for i, k in enumerate(keys)}
        try:
            order = [position[p.id] if p.id in position else position[p.name] for p in self.placeholders]
        except KeyError:
            return
        if len(set(order)) == len(order):
            self._fast = (keys, order, order == list(range(len(order))))

    def _run(self, exe: "_Executable", arrays: list):
        """Point the feed slots at the arrays, run the program in C once, copy the outputs out."""
        last = exe.last_feeds
        for i, (slot, arr) in enumerate(zip(exe.feed_slots, arrays)):
            if arr is not last[i]:          # a live array never moves, so the same object keeps its pointer
                exe.c_buffers[slot] = ffi.from_buffer(arr)
                last[i] = arr
        status = lib.gg_program_run(exe.c_prog)
        if status != lib.GG_OK:
            self._raise_status(exe, status)
        self._last = exe
        return self._results(exe, arrays)

    def _results(self, exe: "_Executable", arrays: list):
        """The fetched values after a run: copies (a scalar as a NumPy scalar), never views."""
        if self._single and exe.fetches[0][0] is not None:
            view = exe.fetches[0][0]
            return view[()] if view.ndim == 0 else view.copy()
        results = []
        for view, feed in exe.fetches:
            value = arrays[feed] if view is None else view
            results.append(value[()] if value.ndim == 0 else value.copy())
        return results[0] if self._single else results

    def executable(self, feed_shapes: tuple) -> _Executable:
        """The specialisation for these feed shapes (one per placeholder, in self.placeholders'
        order), made on first use."""
        return self._executables.get(feed_shapes) or self._specialise(feed_shapes)

    def gradient_buffer(self, batch_size: int | None = None) -> np.ndarray:
        """A split_gradients program's gradient region, for its specialisation at `batch_size`
        (placeholders' None dims; None: the last one run): one flat array of the gradients' dtype
        holding every gradient that feeds an update, in the optimizer's variable order, each at a
        64-byte boundary with zero padding between (compiler/memory.py), then GRADIENT_SPARE
        spare elements. run_steps(part="gradients") fills the gradients; part="updates" reads them."""
        if not self.gradient_nodes:
            raise GraphGradError("this program has no gradient region: compile it with split_gradients=True "
                                 "(and an optimizer)")
        if batch_size is None:
            if self._last is None:
                raise ValueError("this program has not run yet: pass batch_size=N")
            return self._last.gradient_region
        key = tuple(tuple(batch_size if d is None else d for d in p.shape) for p in self.placeholders)
        return self.executable(key).gradient_region

    def place_gradients(self, batch_size: int, memory: np.ndarray | None) -> np.ndarray:
        """Put the gradient region of the specialisation at `batch_size` into `memory` (see
        _Executable.place_gradient_region; None: back into memory of its own) and return it.
        Distributed training puts it in a window of MPI shared memory, so that the ranks of a
        host sum each other's gradients without a copy. Whoever passes memory keeps it alive
        until it is placed back."""
        self.gradient_buffer(batch_size)            # (checks that there is a region)
        key = tuple(tuple(batch_size if d is None else d for d in p.shape) for p in self.placeholders)
        return self.executable(key).place_gradient_region(memory)

    def place_variables(self, batch_size: int, memory: dict) -> None:
        """For the specialisation at `batch_size`: the variables of `memory` ({variable: array, or
        None for back to variable.data}) live in those arrays while it runs (see
        _Executable.place_variable). Distributed training keeps a host's parameters once, in MPI
        shared memory, so that a rank's update is every rank's without a copy."""
        key = tuple(tuple(batch_size if d is None else d for d in p.shape) for p in self.placeholders)
        exe = self.executable(key)
        for var, array in memory.items():
            exe.place_variable(var, array)

    def update_instructions(self, batch_size: int) -> list:
        """The instructions of the update part of the step at `batch_size` (a split_gradients
        program's), in order: what run_steps(part="updates") runs; run_steps' `only` picks some."""
        self.gradient_buffer(batch_size)
        plan = self.plan(batch_size=batch_size)
        return plan.instructions[_update_split(plan):]

    # ---- many steps over a data set ----
    def run_steps(self, data: dict, batch_size: int | None = None, *, first_step: int = 0,
                  n_steps: int | None = None, order: np.ndarray | None = None, drop_last: bool = False,
                  losses: np.ndarray | None = None, stop_on_nonfinite: bool = False,
                  accuracy: tuple | None = None, threshold: float = 0.5, correct: np.ndarray | None = None,
                  predictions: tuple | None = None, part: str = "step", step_scalar: tuple | None = None,
                  record: tuple | None = None, only: tuple[int, ...] | None = None) -> int:
        """Run steps [first_step, first_step + n_steps) of one pass (an epoch) over a data set, in C
        (gg_program_run_steps): each step gathers its batch's rows from the full arrays and runs the
        program once — with an optimizer, forward + backward + update. Returns the steps run.

        data: {placeholder (or its name): array of shape (n, ...)}, one per placeholder the program
        reads, all with the same n rows; row i of each is sample i. Placeholders this program does
        not read are ignored. The arrays are read in place (no copy) when they already have the
        placeholder's dtype and are C-contiguous; pass the same arrays again and the C description
        built for them is reused, so calling run_steps one step at a time is cheap.
        batch_size: rows per step (B); None = all n rows in one step. Step s reads positions
        [s*B, min((s+1)*B, n)); the short last batch (n % B rows) is a step of its own, run on the
        program's specialisation for that size, or not part of the epoch with drop_last=True. The
        epoch has n // B steps, plus one when B does not divide n and not drop_last.
        first_step, n_steps: the steps to run (n_steps=None: to the end of the epoch; 0 builds and
        checks the C description without running a step). Run the epoch in chunks, changing
        variables in between (an optimizer's lr, say), by calling again with the next first_step:
        the state carries over exactly as in one call.
        order: int64 (n,): position p reads row order[p] (a shuffle); None reads the rows in order.

        What each step records, into arrays you pass (entry k for the k-th step run):
        losses: float64 (>= n_steps,): the loss — the program's first output, a scalar — before
        that step's update.
        stop_on_nonfinite: a NaN/Inf loss stops the run at that step and raises DivergenceError.
        Where the program computes its loss before it updates any variable (the usual case), the
        failing step's updates do not run, and the step counters it had advanced are put back: the
        variables are exactly as after the last good step (err.before_update is True). Otherwise
        the failing step's update has run (err.before_update is False).
        accuracy=(prediction, targets): count correct predictions per step into correct: int64
        (>= n_steps,). prediction is one of the program's outputs, shaped (batch, ...); targets are
        integer class labels (n,), or rows (n, ...) with the prediction's columns (one-hot, or 0/1
        for one column). Several columns: the predicted class is the argmax; one column: it is
        prediction > threshold, and a target row counts as class 1 when it is > 0.5.
        predictions=(output, out): copy the output's rows for every step into out, shaped
        (n, ...) like the output's rows: row p of out holds position p's (sample order[p]'s).

        step_scalar=(variable, values): a float64 scalar variable the program reads (an optimizer's
        lr_var, say) and float64 values (>= n_steps,): before the k-th step run, C writes values[k]
        into the variable (the LR range test's per-step rate). The variable keeps the last value.
        record=(output, out, every, count): copy a float64 output of the program (a few statistics
        the step computes) into the rows of out, float64 (records, output size), after each step
        run whose count + k (k-th step of this call) is a multiple of every; record_count(count,
        n_steps, every) is the number of rows that takes.

        part: "step" (default) runs whole steps. For data-parallel training, "gradients" runs one
        step (n_steps=1) up to the start of its updates — forward, loss, gradients, with the
        recording above — and "updates" then runs the rest of that same step (same arguments),
        after you have changed the gradients in place (an allreduce, say); a record (statistics of
        the update, gg.callbacks.GradientStats') is taken there. The program's schedule
        must put every variable update after the last gradient (a step counter may come first),
        else GraphGradError says which update comes early. only (with part="updates"): the
        positions, ascending, in update_instructions(batch_size) of the instructions to run (a
        rank's share of the updates), each a position or (position, start, stop) to apply an
        optimizer update (`<rule>_update`) to elements [start, stop) of its variable only;
        None runs them all.

        Errors: DivergenceError (above), NumericsError (check_numerics), FeedError (a class label
        out of range, a missing or mis-shaped array), GraphGradError (a row index in order out of
        range). An error raised by a step that ran carries err.steps_done, the steps of this call
        that completed before it; one raised by a check before any step ran (ValueError,
        FeedError, ShapeError) does not.
        """
        if part not in STEP_PARTS:
            raise ValueError(f"part must be one of {STEP_PARTS}, got {part!r}")
        arrays, n, own = self._step_sources(data)
        size, steps_in_epoch, tail = epoch_steps(n, batch_size, drop_last)
        first_step = int(first_step)
        n_steps = steps_in_epoch - first_step if n_steps is None else int(n_steps)
        if first_step < 0 or n_steps < 0 or first_step + n_steps > steps_in_epoch:
            raise ValueError(f"steps [{first_step}, {first_step + n_steps}) are outside this epoch's "
                             f"{steps_in_epoch} steps ({n} rows, batch size {size})")
        if part != "step" and n_steps != 1:
            raise ValueError(f'part="{part}" runs one step: pass n_steps=1')
        if order is not None and (not isinstance(order, np.ndarray) or order.dtype != np.int64
                                  or order.shape != (n,) or not order.flags.c_contiguous):
            raise ValueError(f"order must be a C-contiguous int64 array of shape ({n},)")
        want_loss = losses is not None or stop_on_nonfinite
        if want_loss and self.outputs[0].shape != ():
            raise ValueError(f'losses and stop_on_nonfinite read the program\'s first output as the loss; '
                             f'"{self.outputs[0].name}" has shape {self.outputs[0].shape}, not a scalar')
        if (correct is None) != (accuracy is None):
            raise ValueError("accuracy=(prediction, targets) and correct=array come together")
        if part == "updates" and (want_loss or accuracy or predictions):
            raise ValueError('part="updates" records nothing: losses, accuracy and predictions belong to '
                             'part="gradients"')
        if record is not None and part == "gradients":
            raise ValueError('record= copies its output after the whole step: pass it to part="updates"')
        if only is not None:
            if part != "updates":
                raise ValueError('only= picks update instructions: it needs part="updates"')
            if record is not None:
                raise ValueError("record= reads statistics of every update: it runs without only=")
            only = tuple(int(i) if isinstance(i, (int, np.integer)) else tuple(int(v) for v in i) for i in only)
            first = [i if isinstance(i, int) else i[0] for i in only]
            if first != sorted(set(first)) or (first and first[0] < 0):
                raise ValueError(f"only must be ascending instruction positions, got {only}")
        _check_out(losses, np.float64, n_steps, "losses")
        _check_out(correct, np.int64, n_steps, "correct")
        extras = self._step_extras(step_scalar, record, n_steps)
        if stop_on_nonfinite and losses is None:
            losses = np.empty(n_steps)
        n_full = steps_in_epoch - (1 if tail else 0)
        runs = []                       # (batch size, first row position, steps)
        if first_step < n_full:
            runs.append((size, first_step * size, min(first_step + n_steps, n_full) - first_step))
        if first_step + n_steps > n_full:
            runs.append((tail, n_full * size, 1))
        done = 0
        for batch, pos, k in runs:
            record = self._steps_record(arrays, own, batch, want_loss, accuracy, threshold, predictions,
                                        stop_on_nonfinite, part)
            if k == 0:
                continue                # n_steps=0: the C description is built and checked, nothing runs
            try:
                record.run(pos, k, order, losses, correct, done, extras, only)
            except GraphGradError as err:
                err.steps_done = done + getattr(err, "steps_done", 0)
                if isinstance(err, DivergenceError):
                    err.args = (f"run_steps: the loss became {err.loss} at step {first_step + err.steps_done} of "
                                "the epoch (counting from 0)",)
                raise
            done += k
        return done

    def _step_extras(self, step_scalar: tuple | None, record: tuple | None, n_steps: int) -> tuple:
        """run_steps' step_scalar and record, checked: ((variable, values) or None,
        (output, out, every, count) or None)."""
        if step_scalar is not None:
            var, values = step_scalar
            if not (isinstance(var, Tensor) and var.op == "variable" and var.shape == () and var.dtype == np.float64
                    and any(var is n for n in self.order)):
                raise ValueError(f"step_scalar: {var!r} is not a float64 scalar variable this program reads")
            _check_out(values, np.float64, n_steps, "step_scalar values")
        if record is not None:
            output, out, every, count = record
            if not any(output is o for o in self.outputs) or output.dtype != np.float64 or None in output.shape:
                raise ValueError(f"record: {output!r} is not a float64 output of this program with a fixed shape")
            if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1 or int(count) < 0:
                raise ValueError(f"record: every must be a positive int and count >= 0, got {every!r}, {count!r}")
            rows = record_count(int(count), n_steps, int(every))
            size = math.prod(output.shape)
            if (not isinstance(out, np.ndarray) or out.dtype != np.float64 or not out.flags.c_contiguous
                    or not out.flags.writeable or out.ndim != 2 or out.shape[0] < rows or out.shape[1] != size):
                raise ValueError(f"record: out must be a writeable C-contiguous float64 array of shape "
                                 f"(>= {rows}, {size})")
        return step_scalar, record

    def _step_sources(self, data: dict) -> tuple[list[np.ndarray], int, bool]:
        """run_steps' full arrays, one per placeholder in self.placeholders' order, their rows, and
        whether they are all the caller's own arrays (none needed a converted copy)."""
        if not isinstance(data, dict):
            raise TypeError(f"run_steps takes a dict {{placeholder or name: array}}, got {type(data).__name__}")
        given: dict[int, object] = {}
        for key, value in data.items():
            if isinstance(key, Tensor):
                if key in self.placeholders:
                    given[key.id] = value
                continue
            matches = self._by_name.get(key)
            if not matches or len(matches) > 1:
                raise FeedError(f"run_steps: {'ambiguous' if matches else 'unknown'} feed name {key!r}. "
                                f"{self._expected()}")
            given[matches[0].id] = value
        missing = [p for p in self.placeholders if p.id not in given]
        if missing:
            names = ", ".join(f'"{p.name}" {_fmt_shape(p.shape)} {p.dtype.name}' for p in missing)
            raise FeedError(f"missing feed for {names}. {self._expected()}")
        arrays, own = [], True
        for p in self.placeholders:
            arr = np.asarray(given[p.id])
            if arr.ndim == 0 or arr.dtype.kind not in "biuf" or not np.can_cast(arr.dtype, p.dtype, "same_kind"):
                raise FeedError(f'run_steps: the data for "{p.name}" must be an array of rows (n, ...) of '
                                f"{p.dtype.name} numbers; got {arr.dtype} {arr.shape}")
            arrays.append(np.ascontiguousarray(arr, dtype=p.dtype))
            own = own and arrays[-1] is given[p.id]
        rows = {len(a) for a in arrays}
        if len(rows) > 1:
            raise FeedError(f"run_steps: the arrays have different numbers of rows: "
                            f"{[(p.name, len(a)) for p, a in zip(self.placeholders, arrays)]}")
        n = rows.pop() if rows else 0
        if n == 0:
            raise FeedError("run_steps: the data holds no rows")
        return arrays, n, own

    def _steps_record(self, arrays, own: bool, batch, want_loss, accuracy, threshold, predictions,
                      stop_on_nonfinite, part) -> "_StepsRecord":
        """The C description of running these arrays at this batch size: cached while the caller
        passes the same arrays (a converted copy is never cached: it would miss later changes to
        the caller's array, and pin a copy of the data)."""
        key = (batch, part, want_loss, stop_on_nonfinite, float(threshold), tuple(map(id, arrays)),
               None if accuracy is None else tuple(map(id, accuracy)),
               None if predictions is None else tuple(map(id, predictions)))
        record = self._step_records.get(key)
        if record is None:
            feed_shapes = tuple((batch,) + a.shape[1:] for a in arrays)
            for p, shape in zip(self.placeholders, feed_shapes):
                self._check_feed_shape(p, shape)
            exe = self.executable(feed_shapes)
            record = _StepsRecord(self, exe, arrays, batch, want_loss, accuracy, threshold, predictions,
                                  stop_on_nonfinite, part)
            if own and record.own_targets:
                if len(self._step_records) >= 16:        # keep the few recent ones (each pins its arrays)
                    self._step_records.pop(next(iter(self._step_records)))
                self._step_records[key] = record
        return record

    @staticmethod
    def _check_feed_shape(p: Tensor, shape: tuple) -> None:
        if len(shape) != len(p.shape) or any(d is not None and d != s for d, s in zip(p.shape, shape)):
            raise FeedError(f'run_steps: the batches for "{p.name}" have shape {shape}; expected '
                            f"{_fmt_shape(p.shape)} (None matches any size)")

    def _specialise(self, key: tuple) -> _Executable:
        started = time.perf_counter()
        feed_shapes = {p.id: shape for p, shape in zip(self.placeholders, key)}
        aliases = {o.id: c for o, c in zip(self.outputs, self.compiled_outputs) if o is not c}
        plan = build_plan(self.order, feed_shapes, self.compiled_outputs, fusion=self.fusion,
                          placeholders=self.placeholders, aliases=aliases, gradients=self.gradient_nodes)
        exe = _Executable(plan, self.placeholders, key, self.check_numerics, self.profiling)
        exe.compile_seconds = time.perf_counter() - started   # fusion, memory plan, lowering, C structures
        self._executables[key] = exe
        return exe

    def _collect_feeds(self, feed_dict: dict | None, feeds: dict) -> list[np.ndarray]:
        if feed_dict is not None and not isinstance(feed_dict, dict):
            raise TypeError(f"feed a program by name, f(x=...), or with a dict {{placeholder: value}}; got a "
                            f"{type(feed_dict).__name__} as its positional argument. {self._expected()}")
        given: dict[int, object] = {}
        items = list((feed_dict or {}).items()) + list(feeds.items())
        for key, value in items:
            if isinstance(key, Tensor):
                if key.op != "placeholder":
                    raise FeedError(f'cannot feed "{key.name}": it is a {key.op} node, not a placeholder. '
                                    f"{self._expected()}")
                if key not in self.placeholders:
                    continue   # a placeholder this program does not need: nothing to do
                target = key
            else:
                matches = self._by_name.get(key)
                if not matches:
                    raise FeedError(f"unknown feed {key!r}. {self._expected()}")
                if len(matches) > 1:
                    raise FeedError(f"feed name {key!r} is ambiguous ({len(matches)} placeholders share it); "
                                    "feed by placeholder: f({x: value})")
                target = matches[0]
            given[target.id] = value
        missing = [p for p in self.placeholders if p.id not in given]
        if missing:
            names = ", ".join(f'"{p.name}" {_fmt_shape(p.shape)} {p.dtype.name}' for p in missing)
            raise FeedError(f"missing feed for {names}. {self._expected()}")
        arrays = [self._check_feed(p, given[p.id]) for p in self.placeholders]
        if self.optimizer is not None:
            # a step on no examples would still advance the step count and the optimizer's state
            for p, arr in zip(self.placeholders, arrays):
                if arr.size == 0:
                    raise FeedError(f'feed "{p.name}" has shape {arr.shape}: a training step needs at least '
                                    "one example (skip empty batches)")
        if self.check_numerics:
            for p, arr in zip(self.placeholders, arrays):
                if not np.isfinite(arr).all():
                    raise NumericsError(f'check_numerics: feed "{p.name}" {arr.shape} holds NaN or Inf '
                                        f"(first at index {np.argwhere(~np.isfinite(arr))[0].tolist()})")
        return arrays

    def __repr__(self) -> str:
        outputs = ", ".join(f'"{o.name}"' for o in self.outputs)
        feeds = ", ".join(f'"{p.name}" {_fmt_shape(p.shape)} {p.dtype.name}' for p in self.placeholders) or "none"
        optimizer = f", optimizer {type(self.optimizer).__name__}" if self.optimizer is not None else ""
        if self._last is not None:
            plan = self._last.plan
            batch = ", ".join(str(s) for s in self._last.feed_shapes) or "()"
            compiled = f"{len(plan.instructions)} instructions for feeds {batch}"
        else:
            compiled = "not run yet"
        return f"<Program outputs {outputs}; feeds {feeds}{optimizer}; {compiled}>"

    def _expected(self) -> str:
        return "This program's placeholders: " + ", ".join(
            f'"{p.name}" {_fmt_shape(p.shape)} {p.dtype.name}' for p in self.placeholders) + "."

    @staticmethod
    def _check_feed(p: Tensor, value) -> np.ndarray:
        if isinstance(value, np.ndarray) and value.dtype == p.dtype and value.flags.c_contiguous:
            arr = value                          # used as it is: no copy
        else:
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf" or not np.can_cast(arr.dtype, p.dtype, casting="same_kind"):
                raise FeedError(f'feed "{p.name}" has dtype {arr.dtype}; expected {p.dtype.name} '
                                f"(or a real number type that casts to it)")
            arr = np.asarray(arr, dtype=p.dtype, order="C")   # (ascontiguousarray would make 0-d arrays 1-d)
        if arr.ndim != len(p.shape) or any(d is not None and d != s for d, s in zip(p.shape, arr.shape)):
            raise FeedError(f'feed "{p.name}" has shape {arr.shape}; expected {_fmt_shape(p.shape)} '
                            "(None matches any size)")
        return arr

    def _raise_status(self, exe: _Executable, status: int, failed_instr: int | None = None):
        index = exe.c_prog.failed_instr if failed_instr is None else failed_instr
        node = exe.plan.instructions[index].node if 0 <= index < len(exe.plan.instructions) else None
        where = f"\n  created at {node.source}: {source_text(node.source)}" if node is not None and node.source else ""
        if status == lib.GG_ERR_NUMERICS:
            err = NumericsError(f'check_numerics: instruction {index}, {node.op} node "{node.name}" '
                                f"({node.role}), produced NaN or Inf{where}")
            err.node = node    # so that gg.render(..., highlight=err) can mark it
            raise err
        if status == lib.GG_ERR_BAD_INDEX:
            raise FeedError(f'{node.op} node "{node.name}": a class label is outside [0, number of classes)'
                            f"{where}")
        op = node.op if node is not None else "?"
        raise RuntimeFailure(f"the C interpreter failed with status {status} at instruction {index} ({op}){where}")

    # ---- reading the plan ----
    def plan(self, batch_size: int | None = None) -> Plan:
        """The plan of the last specialisation run, or of the one for `batch_size` (None dims)."""
        if batch_size is not None:
            key = tuple(tuple(batch_size if d is None else d for d in p.shape) for p in self.placeholders)
            return (self._executables.get(key) or self._specialise(key)).plan
        if self._last is None:
            if all(None not in p.shape for p in self.placeholders):
                return self.plan(batch_size=1)
            raise ValueError("this program has not run yet: call it once, or pass batch_size=N")
        return self._last.plan

    def summary(self, batch_size: int | None = None, file=None, as_text: bool = False) -> str | None:
        """Print the instruction table: op (fused members listed), shapes, FLOPs, bytes, arena
        offset and size, in place or not; then the totals (instruction count, FLOPs per step,
        arena peak against the naive sum of intermediates). Like Keras's model.summary() it prints
        and returns None (so a notebook shows it once); as_text=True returns the table instead of
        printing it."""
        from .summary import format_summary
        plan = self.plan(batch_size)
        text = format_summary(plan, self.profile_ns(plan))
        if as_text:
            return text
        print(text, file=file)
        return None

    def profile_ns(self, plan: Plan | None = None) -> np.ndarray | None:
        """With compile(..., profile=True): nanoseconds spent in each instruction of `plan` (the
        last one run by default), summed over every run so far — measured inside C. None when
        the program was compiled without profile=True."""
        plan = plan or self.plan()
        exe = next((e for e in self._executables.values() if e.plan is plan), None)
        if exe is None or exe.profile_ns is None:
            return None
        return exe.profile_ns[:len(plan.instructions)].copy()

    def plan_json(self, batch_size: int | None = None) -> str:
        """The compiled plan as JSON text (instructions, buffers, totals), stable from run to run:
        usable as a golden file."""
        from .summary import plan_json
        return plan_json(self.plan(batch_size))

    def render(self, path: str, plan: bool = False, batch_size: int | None = None, **options) -> str:
        """Draw the program to `path` (.png, .svg, .pdf, .dot).

        plan=False (default): the graph it was compiled from — forward, backward and update
        nodes (options as for gg.render). plan=True: the compiled instruction list — fused
        groups as clusters, arena offsets in the labels (options: rankdir, title); for the last
        specialisation run, or the one for `batch_size`."""
        if plan:
            from .summary import render_plan
            return render_plan(self.plan(batch_size), path, **options)
        from .viz import render
        return render(self.outputs + self.updates, path, **options)


def _split_order(order: list[Tensor], updates: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """(order, gradients) for split_gradients: `order` with every update-role node (clipping, the
    step count, the updates and their state) moved after all other nodes, keeping relative order,
    and the raw gradients (before clipping) that feed the updates."""
    late = [n for n in order if n.role == "update"]
    early = [n for n in order if n.role != "update"]
    late_ids = {n.id for n in late}
    for n in early:
        if any(i.id in late_ids for i in n.inputs):
            raise GraphGradError(f'split_gradients: {n.op} node "{n.name}" ({n.role}) reads the update-role node '
                                 f'"{next(i for i in n.inputs if i.id in late_ids).name}"')
    gradients, seen = [], set()
    for u in updates:
        if not REGISTRY[u.op].writes or u.op == "increment":
            continue
        g = u.inputs[1]
        while g.role == "update":        # through the clipping nodes to the gradient itself
            g = g.inputs[0]
        if g.op == "placeholder":
            raise GraphGradError(f'split_gradients: the gradient of "{u.inputs[0].name}" is the placeholder '
                                 f'"{g.name}" itself; it must be computed')
        if g.op in ("variable", "constant") or g.id in seen:
            continue                     # the same on every rank (data-independent) or already placed
        seen.add(g.id)
        gradients.append(g)
    dtypes = {g.dtype for g in gradients}
    if len(dtypes) > 1:
        raise GraphGradError(f"split_gradients: the gradients have several dtypes ({sorted(d.name for d in dtypes)}); "
                             "the gradient region holds one")
    return early + late, gradients


def compile(outputs: Tensor | Sequence[Tensor], optimizer=None, check_numerics: bool = False,  # noqa: A001
            passes=None, profile: bool = False, split_gradients: bool = False) -> Program:
    """Compile outputs into a Program. With an optimizer, outputs[0] is the loss and every call
    runs forward, backward and the update in one C call.

    check_numerics=True stops at the first instruction that produces NaN or Inf and raises
    NumericsError naming its node and the line of code that created it (fusion is off in this
    mode, so that every op is its own instruction and checked).

    passes: the compiler passes to run, in order — names from
    ("fold_constants", "simplify", "cse", "fuse") or your own Graph -> Graph functions; None
    (the default) runs them all, [] none.

    profile=True times every instruction inside C on every run (a clock read before and after
    each); summary() then shows each instruction's share of the time, and profile_ns() the raw
    nanoseconds. Every pass leaves the results unchanged (fusion
    keeps each op's arithmetic, so its results are the same bits too).

    split_gradients=True (with an optimizer; what data-parallel training uses) schedules every
    update after the last gradient and keeps the gradients that feed the updates in one
    contiguous region (layout in compiler/memory.py): `program.gradient_buffer(batch_size)`
    is that region, and `run_steps(..., part="gradients")` / `part="updates"` run a step's two
    halves around whatever changes it in place (an allreduce). A call still runs the whole step.
    """
    return Program(outputs, optimizer=optimizer, check_numerics=check_numerics, passes=passes, profile=profile,
                   split_gradients=split_gradients)


# ---- run_steps' C side ----------------------------------------------------------------------

def epoch_steps(n: int, batch_size: int | None, drop_last: bool = False) -> tuple[int, int, int]:
    """(batch size, steps in an epoch over n rows, size of the short last batch or 0). A batch
    size above n is clipped to n (as Keras does), so an epoch has at least one step."""
    if batch_size is None:
        return n, 1, 0
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int (1 = stochastic GD) or None (full batch), "
                         f"got {batch_size!r}")
    size = min(int(batch_size), n)
    full, tail = divmod(n, size)
    if drop_last:
        tail = 0
    return size, full + (1 if tail else 0), tail


def _check_out(arr, dtype, n: int, name: str) -> None:
    if arr is None:
        return
    if (not isinstance(arr, np.ndarray) or arr.dtype != dtype or arr.ndim != 1 or not arr.flags.c_contiguous
            or not arr.flags.writeable or len(arr) < n):
        raise ValueError(f"{name} must be a writeable C-contiguous {np.dtype(dtype).name} array of at least "
                         f"{n} entries (one per step)")


def _members(ins) -> list[Tensor]:
    return ins.members or [ins.node]


def _loss_check_point(instructions, watched: list[int]) -> tuple[int, list | None]:
    """Where C pauses each step to read the loss (and count correct predictions): right after
    the last instruction writing a watched buffer. The pause is "before the update" when no
    instruction before it updates a variable, except counter increments (the optimizer's step
    count, which the scheduler may run first): those come back as (variable, amount), so that a
    step stopped there can be undone exactly. Otherwise the pause is after the whole step
    (split = len(instructions)) and None comes back."""
    n = len(instructions)
    writers = [i for i, ins in enumerate(instructions) if ins.out >= 0 and ins.out in watched]
    if not writers:
        return n, None
    split = max(writers) + 1
    early = [ins.node for ins in instructions[:split] if ins.node.role == "update"]
    if all(node.op == "increment" for node in early):
        return split, [(node.inputs[0], node.attrs["amount"]) for node in early]
    return n, None


def _update_split(plan: Plan) -> int:
    """Where a step's update part begins: the start of the trailing run of instructions that
    compute only update nodes. Raises GraphGradError when an update other than a counter
    increment runs before that point (the schedule interleaves updates with the gradients)."""
    instructions = plan.instructions
    split = len(instructions)
    while split > 0 and all(m.role == "update" for m in _members(instructions[split - 1])):
        split -= 1
    for i, ins in enumerate(instructions[:split]):
        early = next((m for m in _members(ins) if m.role == "update" and m.op != "increment"), None)
        if early is not None:
            raise GraphGradError(
                f'run_steps: this step cannot run as a gradient part and an update part: instruction {i} '
                f'({early.op} node "{early.name}") belongs to the update but runs before the last gradient '
                f"(instruction {split - 1}); the schedule interleaves updates with the backward pass")
    return split


def _program_view(exe: _Executable, lo: int, hi: int):
    """A gg_program running instructions [lo, hi) of exe's (same buffers, workspace and settings)."""
    view = ffi.new("gg_program *")
    view[0] = exe.c_prog[0]
    view.instrs = exe.c_instrs + lo
    view.n_instr = hi - lo
    if exe.profile_ns is not None:
        view.profile_ns = exe.c_prog.profile_ns + lo
    return view


class _StepsRecord:
    """run_steps' C side for one specialisation, one set of full arrays and one part of the step:
    the gg_steps description (the only place one is built), the gather buffers the program's
    feed slots point at while it runs, and for a part a gg_program over that part's instructions.
    Built once, reused while the same arrays come back."""

    def __init__(self, program: Program, exe: _Executable, arrays: list[np.ndarray], batch: int, want_loss: bool,
                 accuracy: tuple | None, threshold: float, predictions: tuple | None, stop_on_nonfinite: bool,
                 part: str):
        self.program, self.exe, self.part = program, exe, part
        plan, buffer_of = exe.plan, exe.plan.memory.buffer_of
        lo, hi = 0, len(plan.instructions)
        if part != "step":
            split = _update_split(plan)
            lo, hi = (0, split) if part == "gradients" else (split, hi)
        self.offset = lo
        self.c_prog = exe.c_prog if part == "step" else _program_view(exe, lo, hi)
        self.keep = (arrays, accuracy, predictions)     # the arrays the C pointers below point into
        n = len(arrays[0])
        sources = list(arrays)
        s = self.c_steps = ffi.new("gg_steps *")
        s.loss_buf = s.pred_buf = s.out_buf = -1
        s.dtype = C_CODES[np.dtype(np.float32)]        # of the loss and predictions C reads, when it reads any
        self.own_targets = True
        if want_loss:
            s.dtype = C_CODES[program.outputs[0].dtype]
            s.loss_buf = buffer_of[program.outputs[0].id]
        if accuracy is not None:
            pred, targets = accuracy
            pred_cols = self._output_columns(pred, batch, "accuracy")
            target = next((k for k, a in enumerate(arrays) if a is targets), None)
            given = targets
            targets = np.asarray(targets)
            labels = targets.dtype.kind in "iu"
            if target is None:
                targets = np.ascontiguousarray(targets, dtype=np.int64 if labels else pred.dtype)
                self.own_targets = targets is given
                sources.append(targets)
                target = len(sources) - 1
            if len(targets) != n or (labels and targets.ndim != 1):
                raise ShapeError(f"accuracy targets have shape {targets.shape}; expected {n} integer class labels "
                                 f"({n},) or {n} rows like the predictions")
            target_cols = math.prod(targets.shape[1:])
            if not labels and target_cols != pred_cols:
                raise ShapeError(f"accuracy compares predictions of {pred_cols} columns with targets of "
                                 f"{target_cols}: give one-hot targets shaped like the predictions, or "
                                 "integer class labels of shape (n,)")
            s.dtype = C_CODES[pred.dtype]
            s.pred_buf, s.target_feed, s.pred_cols = buffer_of[pred.id], target, pred_cols
            s.target_is_label, s.threshold = int(labels), float(threshold)
        if predictions is not None:
            output, out = predictions
            self._output_columns(output, batch, "predictions")
            want = (n,) + tuple(plan.shapes[output.id][1:])
            if (not isinstance(out, np.ndarray) or out.shape != want or out.dtype != output.dtype
                    or not out.flags.c_contiguous or not out.flags.writeable):
                raise ValueError(f'predictions: the array for "{output.name}" must be a writeable C-contiguous '
                                 f"{output.dtype.name} array of shape {want}")
            s.out_buf = buffer_of[output.id]
            s.out_dst = ffi.cast("void *", out.ctypes.data)
            s.out_row_bytes = out.strides[0]
        if want_loss and accuracy is not None and accuracy[0].dtype != program.outputs[0].dtype:
            raise ValueError("run_steps reads the loss and the predictions in one dtype; they differ here")
        if len(sources) > lib.GG_STEPS_MAX_FEEDS:
            raise GraphGradError(f"run_steps gathers at most {lib.GG_STEPS_MAX_FEEDS} arrays per step (the placeholders "
                                 f"and the accuracy targets); this program needs {len(sources)}")
        # the updates part runs on the batch the gradients part gathered: it re-points nothing
        self.gather = [] if part == "updates" else [np.empty((batch,) + a.shape[1:], a.dtype) for a in sources]
        self.feed_ptrs = [(slot, ffi.cast("void *", g.ctypes.data)) for slot, g in zip(exe.feed_slots, self.gather)]
        s.n_feeds = len(self.gather)
        for k, (src, dst) in enumerate(zip(sources, self.gather)):
            s.feed_dst[k] = ffi.cast("void *", dst.ctypes.data)
            s.feed_src[k] = ffi.cast("void *", src.ctypes.data)
            s.feed_row_bytes[k] = src.strides[0] if src.ndim > 1 else src.itemsize
        s.n_rows, s.batch_size = n, batch
        watched = [b for b in (s.loss_buf, s.pred_buf) if b >= 0]
        s.split, self.early_counters = _loss_check_point(plan.instructions[lo:hi], watched)
        s.stop_on_nonfinite = int(stop_on_nonfinite)
        self.restores_counters = bool(stop_on_nonfinite and self.early_counters)

    def _output_columns(self, output: Tensor, batch: int, what: str) -> int:
        """Columns per row of one of the program's outputs at this batch size."""
        if not any(output is o for o in self.program.outputs):
            raise ValueError(f'{what}: "{output.name}" is not one of this program\'s outputs')
        shape = self.exe.plan.shapes[output.id]
        if shape[:1] != (batch,):
            raise ShapeError(f'the model\'s output "{output.name}" has shape {shape} for a batch of {batch}: its '
                             "first axis must be the batch")
        return math.prod(shape[1:])

    def run(self, pos: int, k: int, order, losses, correct, offset: int, extras: tuple = (None, None),
            only: tuple[int, ...] | None = None) -> None:
        """k steps from row position pos; losses and correct receive entries from `offset` on, as
        do the step_scalar values and the record's steps (run_steps' extras)."""
        program, exe, s = self.program, self.exe, self.c_steps
        with program._lock:     # these runs and the Program's calls take turns (see Program.__call__)
            for slot, ptr in self.feed_ptrs:
                exe.c_buffers[slot] = ptr       # a direct call of the Program may have pointed them elsewhere
            exe.last_feeds[:] = [None] * len(exe.last_feeds)   # ... and the next direct call must re-point them
            counters = [var.data.copy() for var, _ in self.early_counters] if self.restores_counters else None
            c_prog, positions = self.c_prog, None       # positions: a subset's instructions in exe's list
            if self.part == "updates":
                if only is not None:
                    parts = tuple(self._subset_part(i) for i in only)
                    positions = tuple(p if isinstance(p, int) else p[0] for p in parts)
                    c_prog = exe.subset_program(parts)
                status = lib.gg_program_run(c_prog)
                done = int(status == lib.GG_OK)
                if done:
                    self._record_update(extras[1], offset)
            else:
                s.order = ffi.NULL if order is None else ffi.cast("int64_t *", order.ctypes.data)
                s.first_pos, s.n_steps = pos, k
                s.losses = ffi.NULL if losses is None else ffi.cast("double *", losses.ctypes.data) + offset
                s.correct = ffi.NULL if correct is None else ffi.cast("int64_t *", correct.ctypes.data) + offset
                self._point_extras(extras, offset)
                status = lib.gg_program_run_steps(self.c_prog, s)
                done = int(s.steps_done)
            program._last = exe
            if status == lib.GG_OK:
                return
            if status == lib.GG_ERR_DIVERGED:
                if counters is not None:       # the failing step stopped before its update, after its counters
                    for (var, amount), start in zip(self.early_counters, counters):
                        var.data[...] = start + amount * done
                loss = float(losses[offset + done])
                err = DivergenceError(f"the loss became {loss}")
                err.loss, err.before_update = loss, self.early_counters is not None
            elif status == lib.GG_ERR_BAD_STEPS:
                err = GraphGradError("gg_program_run_steps rejected its arguments (a row index or buffer out of range)")
            else:
                try:
                    failed = (positions[c_prog.failed_instr] if positions is not None
                              else c_prog.failed_instr + self.offset)
                    program._raise_status(exe, status, failed)
                except GraphGradError as raised:
                    err = raised
            err.steps_done = done
            raise err


    def _subset_part(self, item):
        """One entry of run_steps' `only`, checked, in the executable's instruction indices."""
        position = item if isinstance(item, int) else item[0]
        if not 0 <= position < self.c_prog.n_instr:
            raise ValueError(f"only: the update part has {self.c_prog.n_instr} instructions, got position {position}")
        if isinstance(item, int):
            return self.offset + position
        if len(item) != 3:
            raise ValueError(f"only: (position, start, stop), got {item}")
        ins = self.exe.plan.instructions[self.offset + position]
        size = math.prod(self.exe.plan.shapes[ins.node.id])
        if ins.members and len(ins.members) > 1 or not ins.node.op.endswith("_update") or not 0 <= item[1] < item[2] <= size:
            raise ValueError(f"only: {item} must name an optimizer update and elements 0 <= start < stop <= {size} "
                             f"of its variable (instruction {position} is {ins.node.op})")
        return (self.offset + position, item[1], item[2])

    def _record_update(self, record: tuple | None, offset: int) -> None:
        """The update part's record (run_steps' record=), as gg_program_run_steps takes it for a
        whole step: the output's values into their row of out when count + offset is a multiple
        of every."""
        if record is None:
            return
        output, out, every, count = record
        if (int(count) + offset) % int(every) == 0:
            row = record_count(int(count), offset, int(every))
            out[row] = self.exe.views[self.exe.plan.memory.buffer_of[output.id]].reshape(-1)

    def _point_extras(self, extras: tuple, offset: int) -> None:
        """Set the per-step scalar and the record of gg_steps (off when not asked for)."""
        s, buffer_of = self.c_steps, self.exe.plan.memory.buffer_of
        step_scalar, record = extras
        s.step_values = ffi.NULL
        if step_scalar is not None:
            var, values = step_scalar
            s.step_values = ffi.cast("double *", values.ctypes.data) + offset
            s.step_value_buf = buffer_of[var.id]
        s.record_every = 0
        if record is not None:
            output, out, every, count = record
            s.record_buf, s.record_every, s.record_first = buffer_of[output.id], int(every), int(count) + offset
            s.record_bytes = out.shape[1] * 8
            before = record_count(int(count), offset, int(every))   # rows the earlier part of this call wrote
            s.record_dst = ffi.cast("char *", out.ctypes.data) + before * s.record_bytes


def record_count(count: int, n_steps: int, every: int) -> int:
    """How many of the steps count, count + 1, ..., count + n_steps - 1 are multiples of every."""
    return len(range(-(-count // every) * every, count + n_steps, every))


def _evaluate_constants(nodes: list[Tensor]) -> list[np.ndarray]:
    """Constant folding's evaluator: the constant subgraph runs through the interpreter itself,
    so folded values are the bits the step would have computed."""
    return Program(nodes, passes=[])({})


register_constant_evaluator(_evaluate_constants)


def set_num_threads(n: int) -> None:
    """Threads the C kernels use (default: GRAPHGRAD_NUM_THREADS, else all cores)."""
    lib.gg_set_num_threads(int(n))


def get_num_threads() -> int:
    return int(lib.gg_get_num_threads())
