"""Graph clean-up passes, each a function Graph -> Graph that leaves the results unchanged.

- `cse`: common-subexpression elimination (same op, same inputs, same attrs -> one node; equal
  constants -> one constant).
- `fold_constants`: every node that depends only on constants is computed once, at compile
  time, by the C kernels themselves (a small Program over the constant subgraph), and becomes a
  constant — so folded results are bit for bit what the step would have computed. The compiler
  does not import the runtime: the runtime registers that evaluator here when it is imported
  (`register_constant_evaluator`), and a caller may hand fold_constants another one.
- `simplify`: algebraic identities: x*1, 1*x, x/1, x+0, 0+x, x-0 -> x; x*0 -> 0 only where x is
  finite by construction (IEEE: Inf*0 is NaN); -(-x) -> x; transpose(transpose(x)) -> x when the
  permutations cancel; relu_backward(x, dy) reads relu(x) instead of x (same mask, lets x die
  early and the matmul+bias+relu fuse); relu_backward(r, max_pool2d_backward(r, g)) with r = relu(x)
  is one max_pool2d_backward(r, g) that passes the gradient only where the window's maximum is not
  <= 0 (the mask is the same: the gradient sits only at the arg-max, and relu_backward's mask r <= 0
  holds there exactly when it holds for the maximum). The sum over an image's axes of such a
  max_pool2d_backward(r, g) is the sum of relu_backward(max_pool2d(r), g): every window that passes
  puts its gradient on one element, so the totals are those of the pooled tensor (a convolution's
  bias gradient then reads a quarter of the data for 2×2 pools). Likewise the weight gradient of a
  first layer with at most 9 taps in all (channels · kh · kw, e.g. 3×3 on one channel) through such a pool is
  conv2d_pooled_weight_grad(x, r, g) (each passing pooled gradient times the patch under its
  window's arg-max), so the input-sized gradient is not made when nothing else reads it. These two
  add the same terms as before in another order (rounding may differ in the last bits). Never when
  x is a variable (see `rewrite`).

A pass never mutates the user's Tensors: it builds new nodes for whatever changed (and for
everything downstream of a change) and returns a new Graph over the new outputs; outputs keep
their positions, so outputs[i] of the result computes what outputs[i] of the input did.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from ..graph import Graph, Tensor
from ..ops import REGISTRY
from .schedule import schedule

GraphPass = Callable[[Graph], Graph]
#: computes the values of some nodes of a constant subgraph: nodes -> one array per node
ConstantEvaluator = Callable[[list[Tensor]], list[np.ndarray]]

_constant_evaluator: ConstantEvaluator | None = None


def register_constant_evaluator(evaluate: ConstantEvaluator) -> None:
    """Set the evaluator fold_constants uses by default (graphgrad.runtime registers the C
    interpreter's when it is imported, so that the compiler never imports the runtime)."""
    global _constant_evaluator
    _constant_evaluator = evaluate


# ---- the rewriting engine shared by the passes -------------------------------------------

def _clone(node: Tensor, inputs: list[Tensor]) -> Tensor:
    """A copy of `node` reading `inputs` (same op, attrs, static shape, dtype, name, role, source)."""
    new = Tensor(node.op, inputs, node.attrs, node.shape, node.dtype, name=node.name, data=node.data,
                 trainable=node.trainable, source=node.source)
    new.role = node.role
    return new


def _remade(like: Tensor, op: str, inputs: list[Tensor], attrs: dict) -> Tensor:
    """A node of `op` that stands for `like` (same static shape, dtype, name, role and source)."""
    new = Tensor(op, inputs, attrs, like.shape, like.dtype, name=like.name, source=like.source)
    new.role = like.role
    return new


def _constant_like(node: Tensor, value: np.ndarray) -> Tensor:
    """A constant holding `value` that stands for `node` (keeps its name, role and source)."""
    data = np.array(value, dtype=node.dtype, order="C", copy=True)
    data.flags.writeable = False
    new = Tensor("constant", (), {}, data.shape, node.dtype, name=node.name, data=data, source=node.source)
    new.role = node.role
    return new


def _topological(graph: Graph) -> list[Tensor]:
    """The graph's nodes in an order where inputs come first: id order, which is topological for
    every graph built through the API (inputs are created before their readers; a pass's new
    nodes after theirs); otherwise the scheduler's order (which reports a cycle)."""
    nodes = graph.nodes
    if all(i.id < n.id for n in nodes for i in n.inputs):
        return nodes
    return schedule(graph)


def rewrite(graph: Graph, rule: Callable[[Tensor], Tensor | None]) -> Graph:
    """Walk `graph` inputs-first; give each node its (rewritten) inputs, then ask `rule` for a
    replacement (None: keep). Returns `graph` itself when nothing changed."""
    replaced: dict[int, Tensor] = {}
    changed = False
    for node in _topological(graph):
        inputs = [replaced.get(i.id, i) for i in node.inputs]
        current = node if all(a is b for a, b in zip(inputs, node.inputs)) else _clone(node, inputs)
        better = rule(current)
        # a variable never stands in for a computed value: its readers would then read it when
        # they run, and an update can overwrite it before that (or two updates could each need
        # to run first: v0 -= lr*(1*v1); v1 -= lr*(1*v0))
        if better is not None and better is not current and (better.op != "variable" or current.op == "variable"):
            current = better
        if current is not node:
            replaced[node.id] = current
            changed = True
    if not changed:
        return graph
    return Graph([replaced.get(old.id, old) for old in graph.outputs])


def _is_pure(node: Tensor) -> bool:
    """An op node that only computes its output (no variable it overwrites)."""
    opdef = REGISTRY[node.op]
    return opdef.opcode is not None and not opdef.writes


# ---- CSE ------------------------------------------------------------------------------------

def _attrs_key(attrs: dict) -> str:
    # repr keeps -0.0 apart from 0.0 and is stable for the bools, floats, strings and tuples attrs hold
    return repr(sorted(attrs.items()))


def cse(graph: Graph) -> Graph:
    """Common-subexpression elimination: nodes with the same op, inputs and attrs are computed
    once; constants with the same dtype, shape and bytes are one constant. Placeholders,
    variables and updates are never merged."""
    seen: dict[tuple, Tensor] = {}

    def rule(node: Tensor) -> Tensor | None:
        if node.op == "constant":
            key = ("constant", node.dtype.str, node.data.shape, node.data.tobytes())
        elif _is_pure(node):
            key = (node.op, tuple(i.id for i in node.inputs), _attrs_key(node.attrs), node.dtype.str)
        else:
            return None
        first = seen.setdefault(key, node)
        return first if first is not node else None

    return rewrite(graph, rule)


# ---- constant folding -------------------------------------------------------------------------

def fold_constants(graph: Graph, evaluate: ConstantEvaluator | None = None) -> Graph:
    """Compute every node that depends only on constants once, now, with the C kernels (so the
    result is exactly what the step would compute), and replace it by a constant. `evaluate`
    computes the values (default: the one the runtime registered, which runs the interpreter)."""
    order = _topological(graph)
    foldable: set[int] = set()
    for node in order:
        if _is_pure(node) and node.inputs and all(i.op == "constant" or i.id in foldable for i in node.inputs):
            foldable.add(node.id)
    if not foldable:
        return graph
    # only the values something else reads (or that are fetched) need computing
    frontier_ids = {o.id for o in graph.outputs if o.id in foldable}
    for node in order:
        if node.id not in foldable:
            frontier_ids.update(i.id for i in node.inputs if i.id in foldable)
    frontier = [n for n in order if n.id in frontier_ids]
    evaluate = evaluate or _constant_evaluator
    if evaluate is None:
        raise RuntimeError("fold_constants has no evaluator: import graphgrad (its runtime registers one) "
                           "or pass evaluate=")
    values = evaluate(frontier)
    folded = {n.id: _constant_like(n, v) for n, v in zip(frontier, values)}
    return rewrite(graph, lambda node: folded.get(node.id))


# ---- algebraic identities ---------------------------------------------------------------------

def _uniform_value(node: Tensor) -> float | None:
    """The value every element of `node` has when that is known at compile time: a constant
    whose elements are all equal, or the broadcast (expand, not a mean) of such a scalar."""
    if node.op == "constant":
        data = node.data
        if data.size and np.all(data == data.flat[0]):
            return float(data.flat[0])
        return None
    if node.op == "expand" and not node.attrs.get("mean") and node.inputs[0].op == "constant":
        return _uniform_value(node.inputs[0])
    return None


def _is_finite_by_construction(node: Tensor) -> bool:
    """Whether node's elements are finite whatever the inputs (so node * 0 is exactly 0)."""
    if node.op == "constant":
        return bool(np.all(np.isfinite(node.data)))
    return node.op == "sign"   # sign(NaN) is 0 in the C kernel


def _zeros_for(node: Tensor, like: Tensor) -> Tensor:
    """Zeros standing for `node` (whose shape `like` has)."""
    if None not in node.shape:
        return _constant_like(node, np.zeros(node.shape, dtype=node.dtype))
    zero = _constant_like(node, np.zeros((), dtype=node.dtype))
    new = Tensor("expand", [zero, like], {"axes": tuple(range(len(node.shape))), "keepdims": False, "mean": False},
                 node.shape, node.dtype, name=node.name, source=node.source)
    new.role = node.role
    return new


def _permutation(node: Tensor) -> tuple | None:
    perm = node.attrs.get("axes", node.attrs.get("perm"))
    rank = len(node.shape)
    if perm is None:
        return tuple(reversed(range(rank)))
    return tuple(int(p) % rank for p in perm) if rank else ()


def simplify(graph: Graph) -> Graph:
    """Algebraic identities that leave every value unchanged (see the module docstring)."""
    relu_of: dict[int, Tensor] = {}   # relu's input id -> the relu node

    def same(node: Tensor, x: Tensor) -> bool:
        """x can stand for node: same static shape and dtype (no broadcasting hidden in node)."""
        return x.shape == node.shape and x.dtype == node.dtype

    def rule(node: Tensor) -> Tensor | None:
        op, ins = node.op, node.inputs
        if op == "relu":
            relu_of.setdefault(ins[0].id, node)
        if op in ("add", "sub", "mul", "div"):
            a, b = ins
            va, vb = _uniform_value(a), _uniform_value(b)
            if op == "mul":
                if vb == 1.0 and same(node, a):
                    return a
                if va == 1.0 and same(node, b):
                    return b
                if vb == 0.0 and same(node, a) and _is_finite_by_construction(a):
                    return _zeros_for(node, a)
                if va == 0.0 and same(node, b) and _is_finite_by_construction(b):
                    return _zeros_for(node, b)
            elif op == "div" and vb == 1.0 and same(node, a):
                return a
            elif op in ("add", "sub") and vb == 0.0 and same(node, a):
                return a
            elif op == "add" and va == 0.0 and same(node, b):
                return b
        elif op == "neg" and ins[0].op == "neg":
            return ins[0].inputs[0]
        elif op == "transpose" and ins[0].op == "transpose":
            inner, outer = _permutation(ins[0]), _permutation(node)
            x = ins[0].inputs[0]
            if inner is not None and outer is not None and all(inner[p] == k for k, p in enumerate(outer)) \
                    and same(node, x):
                return x
        elif op == "relu_backward":
            r = ins[0] if ins[0].op == "relu" else relu_of.get(ins[0].id)
            pool = ins[1]
            if r is not None and pool.op == "max_pool2d_backward" and pool.inputs[0] is r \
                    and not pool.attrs.get("positive"):
                return _remade(pool, "max_pool2d_backward", [r, pool.inputs[1]], {**pool.attrs, "positive": True})
            if r is not None and ins[0].op != "relu":
                # x > 0 exactly where relu(x) > 0 (NaN and -0 included), so the mask is the same
                return _clone(node, [r, ins[1]])
        elif op == "conv2d_weight_grad" and ins[1].op == "max_pool2d_backward" and ins[1].attrs.get("positive") \
                and ins[0].shape[1] * node.attrs["kernel"][0] * node.attrs["kernel"][1] <= 9:
            # a small first layer (c·kh·kw <= 9): each passing pooled gradient times the patch under
            # its window's arg-max, without the input-sized gradient in between
            attrs = {**node.attrs, "pool": _pool_attrs(ins[1])}
            return _remade(node, "conv2d_pooled_weight_grad", [ins[0], *ins[1].inputs], attrs)
        elif op == "sum" and ins[0].op == "max_pool2d_backward" and ins[0].attrs.get("positive") \
                and not node.attrs["mean"] and {2, 3} <= set(node.attrs["axes"]):
            return _clone(node, [_pooled_gradient(ins[0])])
        return None

    def _pool_attrs(pool_backward: Tensor) -> dict:
        """The forward max_pool2d's attrs of a max_pool2d_backward (its own, less the positive flag)."""
        return {k: v for k, v in pool_backward.attrs.items() if k != "positive"}

    def _pooled_gradient(pool_backward: Tensor) -> Tensor:
        """relu_backward(max_pool2d(r), g) for max_pool2d_backward(r, g) with the positive flag: the
        same values before they are scattered to the arg-max (a bias gradient's sum over the image
        then reads the pooled tensor, not the input-sized one; cse merges the max_pool2d with the
        forward's)."""
        r, g = pool_backward.inputs
        pooled = Tensor("max_pool2d", [r], _pool_attrs(pool_backward), g.shape, r.dtype, source=pool_backward.source)
        pooled.role = r.role
        masked = Tensor("relu_backward", [pooled, g], {}, g.shape, g.dtype, source=pool_backward.source)
        masked.role = pool_backward.role
        return masked

    return rewrite(graph, rule)


# ---- the pass list -----------------------------------------------------------------------------

#: the graph passes by name, in the order gg.compile runs them by default; "fuse" names the
#: fusion stage (compiler/fusion.py), which runs per shape specialisation, not on the Graph
GRAPH_PASSES: dict[str, GraphPass] = {"fold_constants": fold_constants, "simplify": simplify, "cse": cse}
ALL_PASSES = ("fold_constants", "simplify", "cse", "fuse")


def resolve_passes(passes: Iterable | None) -> tuple[list[GraphPass], bool]:
    """gg.compile's `passes` argument -> (graph passes to run in order, whether to fuse).
    None means every pass; entries are names from ALL_PASSES or Graph -> Graph functions."""
    if passes is None:
        passes = ALL_PASSES
    if isinstance(passes, str):
        passes = [passes]
    graph_passes, fuse = [], False
    for p in passes:
        if p == "fuse":
            fuse = True
        elif isinstance(p, str):
            if p not in GRAPH_PASSES:
                raise ValueError(f"unknown compiler pass {p!r}; the passes are {list(ALL_PASSES)}")
            graph_passes.append(GRAPH_PASSES[p])
        elif callable(p):
            graph_passes.append(p)
        else:
            raise TypeError(f"a compiler pass is a name from {list(ALL_PASSES)} or a Graph -> Graph function, "
                            f"got {p!r}")
    return graph_passes, fuse


def run_passes(graph: Graph, graph_passes: list[GraphPass]) -> Graph:
    for p in graph_passes:
        graph = p(graph)
        if not isinstance(graph, Graph):
            raise TypeError(f"compiler pass {getattr(p, '__name__', p)!r} must return a Graph")
    return graph
