"""The graph: Tensor nodes, the leaf constructors (placeholder, variable, constant), and Graph,
a networkx view of everything some outputs depend on.

A Tensor is immutable once made: its op, inputs, attributes, static shape and dtype are fixed
when it is created (the op's shape rule runs then, so shape errors point at the user's line).
Static shapes may hold None for the batch dimension; a compiled Program resolves it from the
feeds. Node ids grow with creation, so every node's inputs have smaller ids than the node.
"""
from __future__ import annotations

import contextlib
import itertools
import linecache
import math
import os
import sys
from typing import Iterable, Iterator, Sequence

import networkx as nx
import numpy as np

from . import dtypes as _dt
from .errors import CycleError, GraphGradError, ShapeError

Shape = tuple  # tuple[int | None, ...]

_next_id = itertools.count()
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

#: the role given to nodes as they are made: "forward", "backward" (gg.grad) or "update" (optimizers)
_current_role = "forward"

ROLES = ("forward", "backward", "update")


@contextlib.contextmanager
def building(role: str) -> Iterator[None]:
    """Within this block new nodes get `role` (autodiff and optimizers use it)."""
    global _current_role
    assert role in ROLES
    previous, _current_role = _current_role, role
    try:
        yield
    finally:
        _current_role = previous


def user_source() -> str | None:
    """'file:line' of the innermost stack frame outside the graphgrad package."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return None
    path = frame.f_code.co_filename
    try:
        rel = os.path.relpath(path)
        path = rel if not rel.startswith("..") else path
    except ValueError:
        pass
    return f"{path}:{frame.f_lineno}"


def source_text(source: str | None) -> str:
    """The line of code a 'file:line' points at, stripped, or ''."""
    if not source or ":" not in source:
        return ""
    path, _, line = source.rpartition(":")
    try:
        return linecache.getline(path, int(line)).strip()
    except (ValueError, OSError):
        return ""


class Tensor:
    """A node of the graph: the result of an op on input Tensors, or a leaf.

    Leaves: placeholders (fed at run time), variables (hold a value that optimizers update)
    and constants. `shape` is static and may hold None for the batch dimension.
    """

    __slots__ = ("id", "op", "inputs", "attrs", "shape", "dtype", "name", "role", "source", "data", "trainable")

    # numpy must defer to our operators (ndarray + Tensor -> Tensor.__radd__)
    __array_ufunc__ = None

    def __init__(self, op: str, inputs: Sequence["Tensor"], attrs: dict, shape: Shape, dtype: np.dtype,
                 name: str | None = None, data: np.ndarray | None = None, trainable: bool = False,
                 source: str | None = None):
        self.id = next(_next_id)
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = dict(attrs)
        self.shape = tuple(shape)
        self.dtype = dtype
        self.name = name or f"{op}_{self.id}"
        self.role = _current_role
        self.source = source if source is not None else user_source()
        self.data = data
        self.trainable = trainable

    # ---- description ----
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_leaf(self) -> bool:
        return not self.inputs and self.op in ("placeholder", "variable", "constant")

    def __repr__(self) -> str:
        shape = "(" + ", ".join("None" if d is None else str(d) for d in self.shape) + ("," if len(self.shape) == 1 else "") + ")"
        return f'<Tensor "{self.name}" {self.op} shape={shape} {self.dtype.name}>'

    # ---- values of leaves ----
    @property
    def value(self) -> np.ndarray:
        """The current value of a variable or constant, as a copy: changing it (w.value[0] = 0)
        changes only the copy, never the variable. To change a variable, use w.assign(new_value)."""
        if self.data is None:
            raise GraphGradError(
                f'"{self.name}" is a {self.op} node: it has no stored value; compute it with gg.compile([...])')
        return self.data.copy()

    def assign(self, new_value) -> None:
        """Replace a variable's value in place (same shape; cast to the variable's dtype)."""
        if self.op != "variable":
            raise GraphGradError(f'only variables can be assigned; "{self.name}" is a {self.op} node')
        arr = np.asarray(new_value)
        if arr.shape != self.data.shape:
            raise ShapeError(f'cannot assign a value of shape {arr.shape} to variable "{self.name}" of shape '
                             f'{self.data.shape}')
        if not np.can_cast(arr.dtype, self.dtype, casting="same_kind"):
            raise ShapeError(f'cannot assign a {arr.dtype} value to {self.dtype} variable "{self.name}"')
        # copy into the existing array: compiled programs hold a pointer to it
        np.copyto(self.data, arr, casting="same_kind")

    # ---- operators (the op functions live in graphgrad.ops) ----
    def __add__(self, other): return _ops().add(self, other)
    def __radd__(self, other): return _ops().add(other, self)
    def __sub__(self, other): return _ops().sub(self, other)
    def __rsub__(self, other): return _ops().sub(other, self)
    def __mul__(self, other): return _ops().mul(self, other)
    def __rmul__(self, other): return _ops().mul(other, self)
    def __truediv__(self, other): return _ops().div(self, other)
    def __rtruediv__(self, other): return _ops().div(other, self)
    def __matmul__(self, other): return _ops().matmul(self, other)
    def __rmatmul__(self, other): return _ops().matmul(other, self)
    def __neg__(self): return _ops().neg(self)
    def __abs__(self): return _ops().abs(self)
    def __pow__(self, other): return _ops().pow(self, other)
    def __rpow__(self, other): return _ops().pow(other, self)
    def __getitem__(self, key): return _ops().getitem(self, key)

    # Tensors are graph nodes: identity is what matters (they are dict keys everywhere)
    __hash__ = object.__hash__


def _ops():
    from . import ops
    return ops


# ---- leaves -------------------------------------------------------------------------------

def _check_shape(shape) -> Shape:
    if isinstance(shape, int):
        shape = (shape,)
    try:
        shape = tuple(shape)
    except TypeError:
        raise ShapeError(f"a shape must be a tuple of ints (None for the batch dimension), got {shape!r}") from None
    for d in shape:
        if d is not None and (not isinstance(d, (int, np.integer)) or d < 0):
            raise ShapeError(f"a shape must be a tuple of non-negative ints or None, got {shape!r}")
    return tuple(None if d is None else int(d) for d in shape)


def placeholder(shape, name: str | None = None, dtype="float32") -> Tensor:
    """An input fed at run time. `shape` may use None for the batch dimension: (None, 784).
    dtype float32 (default), float64, or int64 for class labels."""
    shape, dtype = _check_shape(shape), _dt.as_dtype(dtype, integer_ok=True)
    nbytes = math.prod(1 if d is None else d for d in shape) * dtype.itemsize
    if nbytes > 2**63 - 1:
        raise ShapeError(f'placeholder "{name}" of shape {shape} {dtype.name} would take {nbytes:.3g} bytes, '
                         f"more than any buffer can hold (2**63 - 1)\n  at {user_source()}")
    return Tensor("placeholder", (), {}, shape, dtype, name=name, source=user_source())


def variable(value, name: str | None = None, dtype="float32", trainable: bool = True) -> Tensor:
    """A tensor whose value persists across program runs and that optimizers update.

    The value is copied (cast to `dtype`, float32 by default) into an array the variable owns.
    """
    dt = _dt.as_dtype(dtype)
    arr = np.array(value, dtype=dt, order="C", copy=True)
    return Tensor("variable", (), {}, arr.shape, dt, name=name, data=arr, trainable=trainable, source=user_source())


def constant(value, dtype="float32", name: str | None = None) -> Tensor:
    """A fixed tensor baked into the graph (float32, float64, or int64 for class labels)."""
    dt = _dt.as_dtype(dtype, integer_ok=True)
    arr = np.array(value, dtype=dt, order="C", copy=True)
    arr.flags.writeable = False
    return Tensor("constant", (), {}, arr.shape, dt, name=name, data=arr, source=user_source())


def as_tensor(x, like: Tensor | None = None) -> Tensor:
    """x itself when it is a Tensor; otherwise a constant of `like`'s dtype (Python scalars adopt
    the dtype of the tensor they meet, as in PyTorch)."""
    if isinstance(x, Tensor):
        return x
    dtype = like.dtype if like is not None else _dt.DEFAULT_FLOAT
    return constant(x, dtype=dtype)


# ---- graph views ----------------------------------------------------------------------------

def ancestors(outputs: Iterable[Tensor]) -> list[Tensor]:
    """Every node the outputs depend on (outputs included), in id order. Iterative."""
    seen: dict[int, Tensor] = {}
    stack = list(outputs)
    while stack:
        node = stack.pop()
        if node.id in seen:
            continue
        seen[node.id] = node
        stack.extend(node.inputs)
    return [seen[i] for i in sorted(seen)]


class Graph:
    """The part of the graph that some outputs need, as a networkx.DiGraph.

    Nodes of `nx` are Tensor ids with the Tensor under the attribute "tensor"; an edge u -> v
    means v reads u (attribute "kind": "data"), or must run after u because it overwrites a
    variable that u reads ("kind": "control").
    """

    def __init__(self, outputs: Iterable[Tensor]):
        self.outputs = list(outputs)
        self.nodes = ancestors(self.outputs)
        self.nx = nx.DiGraph()
        for node in self.nodes:
            self.nx.add_node(node.id, tensor=node)
            for inp in node.inputs:
                self.nx.add_edge(inp.id, node.id, kind="data")
        self._add_write_after_read_edges()

    def _add_write_after_read_edges(self) -> None:
        from .ops import REGISTRY
        readers: dict[int, list[Tensor]] = {}
        for node in self.nodes:
            for inp in node.inputs:
                readers.setdefault(inp.id, []).append(node)
        for node in self.nodes:
            opdef = REGISTRY.get(node.op)
            for k in (opdef.writes if opdef else ()):
                if k >= len(node.inputs):   # an optional state input that this node does not have
                    continue
                target = node.inputs[k]
                for reader in readers.get(target.id, ()):
                    if reader is not node:
                        self.nx.add_edge(reader.id, node.id, kind="control")

    def tensor(self, node_id: int) -> Tensor:
        return self.nx.nodes[node_id]["tensor"]

    def check_acyclic(self) -> None:
        """Raise CycleError naming the nodes of a cycle, if the graph has one (data or control edges)."""
        try:
            cycle = nx.find_cycle(self.nx)
        except nx.NetworkXNoCycle:
            return
        names = " -> ".join(f'"{self.tensor(u).name}"' for u, _ in cycle)
        raise CycleError(f"the graph has a cycle, so it has no execution order: {names}")

    def __len__(self) -> int:
        return len(self.nodes)
