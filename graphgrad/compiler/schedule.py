"""The execution order. A deterministic topological order over only the nodes the requested
outputs need — dead-code elimination falls out of it. Among the nodes ready to run, leaves and
updates (ops that overwrite a variable) go first, so each gradient is consumed, and its memory
freed, as soon as it exists (an optimizer's state variables, made after the gradients, must not
hold their update back); other ties are broken by node id (creation order). networkx does the sort
iteratively, so a 10,000-node chain is fine."""
from __future__ import annotations

import networkx as nx

from ..errors import CycleError
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
        cycle = nx.find_cycle(graph.nx)
        names = " -> ".join(f'"{graph.tensor(u).name}"' for u, _ in cycle)
        raise CycleError(f"the graph has a cycle, so it has no execution order: {names}") from None
    return [graph.tensor(i) for i in ids]
