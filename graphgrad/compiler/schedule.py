"""The execution order. A deterministic topological order over only the nodes the requested
outputs need — dead-code elimination falls out of it. Among the nodes ready to run, leaves and
updates (ops that overwrite a variable) go first, so each gradient is consumed, and its memory
freed, as soon as it exists (an optimizer's state variables, made after the gradients, must not
hold their update back); other ties are broken by node id (creation order). networkx does the sort
iteratively, so a 10,000-node chain is fine."""
from __future__ import annotations

import networkx as nx

from ..graph import Graph, Tensor
from ..ops import REGISTRY


def schedule(graph: Graph) -> list[Tensor]:
    """Nodes of `graph` in an order where every node comes after its inputs and after every
    reader of a variable it overwrites."""
    nodes = graph.nx.nodes

    def priority(node_id: int) -> tuple[int, int]:
        node = nodes[node_id]["tensor"]
        # leaves cost nothing and updates free their gradient: both as early as they can be
        return (0 if not node.inputs or REGISTRY[node.op].writes else 1, node_id)

    try:
        ids = list(nx.lexicographical_topological_sort(graph.nx, key=priority))
    except nx.NetworkXUnfeasible:
        ids = None
    if ids is None:
        graph.check_acyclic()   # raises CycleError naming the cycle (outside the except: no chained networkx error)
    return [graph.tensor(i) for i in ids]
