"""Stage 1: the execution order. A deterministic topological order (ties broken by node id,
i.e. creation order) over only the nodes the requested outputs need — dead-code elimination
falls out of it. networkx does the sort iteratively, so a 10,000-node chain is fine."""
from __future__ import annotations

import networkx as nx

from ..errors import CycleError
from ..graph import Graph, Tensor


def schedule(graph: Graph) -> list[Tensor]:
    """Nodes of `graph` in an order where every node comes after its inputs and after every
    reader of a variable it overwrites."""
    try:
        ids = list(nx.lexicographical_topological_sort(graph.nx, key=lambda node_id: node_id))
    except nx.NetworkXUnfeasible:
        cycle = nx.find_cycle(graph.nx)
        names = " -> ".join(f'"{graph.tensor(u).name}"' for u, _ in cycle)
        raise CycleError(f"the graph has a cycle, so it has no execution order: {names}") from None
    return [graph.tensor(i) for i in ids]
