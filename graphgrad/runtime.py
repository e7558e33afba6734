"""Program: a compiled graph you call with feeds. Each call is exactly one call into C
(gg_program_run) that runs every instruction — forward, backward and optimizer update.

A Program is specialised to the concrete shapes of its feeds: the first call with new shapes
plans and lowers once more (cheap) and caches the result, so a different batch size works.
Buffers (the arena, the instruction list, the pointer table) are allocated once per
specialisation, never per call.
"""
from __future__ import annotations

import operator
import os
import threading
import time
from typing import Sequence

import numpy as np

from ._core import ffi, lib
from .compiler import Plan, build_plan, register_constant_evaluator, resolve_passes, run_passes, schedule
from .compiler.memory import ALIGN
from .errors import FeedError, NumericsError, RuntimeFailure
from .graph import Graph, Tensor, source_text
from .ops import REGISTRY
from .ops.registry import _fmt_shape


_same = operator.is_
_shape = operator.attrgetter("shape")


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
        self.c_buffers = ffi.new("void *[]", max(len(mem.buffers), 1))
        self.views: list[np.ndarray | None] = []
        for i, buf in enumerate(mem.buffers):
            if buf.kind == "state":
                view = buf.node.data
            elif buf.kind == "arena":
                start = base + buf.offset
                view = self.arena[start:start + buf.nbytes].view(buf.node.dtype).reshape(buf.shape)
            else:
                self.views.append(None)
                continue
            self.views.append(view)
            self.c_buffers[i] = ffi.cast("void *", view.ctypes.data)

        self.c_instrs = ffi.new("gg_instr[]", max(len(plan.instructions), 1))
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


class Program:
    """A compiled graph. Call it with feeds (by placeholder name, or a {placeholder: value} dict);
    it returns the outputs as NumPy arrays — one value when compiled from a single Tensor, a
    list when compiled from a list. With an optimizer, each call is one training step and
    returns the loss (the first output) as it was before the update. Calls from several threads
    are safe: they take turns (different Programs run in parallel)."""

    def __init__(self, outputs, optimizer=None, check_numerics: bool = False, passes=None, profile: bool = False):
        self._single = isinstance(outputs, Tensor)
        self.outputs: list[Tensor] = [outputs] if self._single else list(outputs)
        if not self.outputs or not all(isinstance(o, Tensor) for o in self.outputs):
            raise TypeError("gg.compile takes a Tensor or a non-empty list of Tensors")
        self.optimizer = optimizer
        started = time.perf_counter()
        self.updates: list[Tensor] = optimizer.minimize(self.outputs[0]) if optimizer is not None else []
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
        order), made on first use. gg.fit drives it through gg_program_run_steps."""
        return self._executables.get(feed_shapes) or self._specialise(feed_shapes)

    def _specialise(self, key: tuple) -> _Executable:
        started = time.perf_counter()
        feed_shapes = {p.id: shape for p, shape in zip(self.placeholders, key)}
        aliases = {o.id: c for o, c in zip(self.outputs, self.compiled_outputs) if o is not c}
        plan = build_plan(self.order, feed_shapes, self.compiled_outputs, fusion=self.fusion,
                          placeholders=self.placeholders, aliases=aliases)
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

    def _raise_status(self, exe: _Executable, status: int):
        index = exe.c_prog.failed_instr
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

    def summary(self, batch_size: int | None = None, file=None) -> str:
        """Print (and return) the instruction table: op (fused members listed), shapes, FLOPs,
        bytes, arena offset and size, in place or not; then the totals (instruction count, FLOPs
        per step, arena peak against the naive sum of intermediates)."""
        from .summary import format_summary
        plan = self.plan(batch_size)
        text = format_summary(plan, self.profile_ns(plan))
        print(text, file=file)
        return text

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


def compile(outputs: Tensor | Sequence[Tensor], optimizer=None, check_numerics: bool = False,  # noqa: A001
            passes=None, profile: bool = False) -> Program:
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
    """
    return Program(outputs, optimizer=optimizer, check_numerics=check_numerics, passes=passes, profile=profile)


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
