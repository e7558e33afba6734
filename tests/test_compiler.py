"""The compiler stages: schedule (topological, deterministic, only what is needed, writes after
reads), memory plan, and lowering."""
import numpy as np
import pytest

import graphgrad as gg
from graphgrad.compiler import build_plan, schedule
from graphgrad.graph import Graph


def _mlp():
    x = gg.placeholder((None, 4), name="x")
    y = gg.placeholder((None, 2), name="y")
    w1 = gg.variable(np.ones((4, 3)) * 0.1, name="w1")
    w2 = gg.variable(np.ones((3, 2)) * 0.1, name="w2")
    loss = gg.mse(gg.sigmoid(gg.relu(x @ w1) @ w2), y)
    return x, y, w1, w2, loss


def test_schedule_is_a_topological_order_and_deterministic():
    *_, loss = _mlp()
    opt = gg.optim.SGD(lr=0.1, momentum=0.9)
    updates = opt.minimize(loss)
    graph = Graph([loss] + updates)
    order = schedule(graph)
    position = {n.id: i for i, n in enumerate(order)}
    for u, v in graph.nx.edges:
        assert position[u] < position[v]
    assert [n.id for n in schedule(Graph([loss] + updates))] == [n.id for n in order]


def test_schedule_keeps_only_what_outputs_need():
    x = gg.placeholder((3,))
    used = x * 2.0
    unused = gg.sigmoid(x)  # noqa: F841 (dead code)
    order = schedule(Graph([used]))
    assert all(n.op != "sigmoid" for n in order)
    assert {n.op for n in order} == {"placeholder", "constant", "mul"}


def test_updates_run_after_every_reader_of_their_variable():
    x, y, w1, w2, loss = _mlp()
    updates = gg.optim.SGD(lr=0.1).minimize(loss)
    order = schedule(Graph([loss] + updates))
    position = {n.id: i for i, n in enumerate(order)}
    for upd in updates:
        var = upd.inputs[0]
        readers = [n for n in order if var in n.inputs and n is not upd]
        assert readers and all(position[r.id] < position[upd.id] for r in readers)


def test_ten_thousand_node_chain_compiles_and_runs():
    x = gg.placeholder((2,), dtype="float64")
    y = x
    for _ in range(10_000):
        y = -y
    assert gg.compile(y)({x: np.array([1.0, -2.0])}).tolist() == [1.0, -2.0]


def test_cycle_is_reported():
    a = gg.placeholder((2,), name="a")
    b = gg.neg(a, name="b")
    c = gg.neg(b, name="c")
    b.inputs = (c,)   # force a cycle into the graph
    with pytest.raises(gg.CycleError, match='"b"'):
        gg.compile(c)


def test_memory_plan_buffers_do_not_overlap_and_are_aligned():
    x, y, *_, loss = _mlp()
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1))
    plan = step.plan(batch_size=8)
    arena = sorted((b.offset, b.offset + b.nbytes) for b in plan.memory.buffers if b.kind == "arena")
    assert all(start % 64 == 0 for start, _ in arena)
    assert all(end <= nxt for (_, end), (nxt, _) in zip(arena, arena[1:]))
    assert arena[-1][1] <= plan.memory.arena_bytes


def test_lowering_gives_one_instruction_per_op_node():
    x, y, *_, loss = _mlp()
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1))
    plan = step.plan(batch_size=4)
    op_nodes = [n for n in plan.order if n.op not in ("placeholder", "variable", "constant")]
    assert [i.node for i in plan.instructions] == op_nodes
    # a (B, N) + (N,) bias add keeps two axes with a zero stride on the broadcast one
    bias_free = [i for i in plan.instructions if i.node.op == "matmul"]
    assert all(i.dims[:3] for i in bias_free)


def test_specialisation_per_batch_size_is_cached():
    x, y, *_, loss = _mlp()
    f = gg.compile(loss)
    for batch in (4, 7, 4, 7, 4):
        f(x=np.ones((batch, 4)), y=np.ones((batch, 2)))
    assert len(f._executables) == 2


def test_summary_lists_instructions_and_totals(capsys):
    *_, loss = _mlp()
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1))
    text = step.summary(batch_size=16)
    assert "matmul" in text and "sgd_update" in text and "FLOPs per step" in text
    plan = step.plan(batch_size=16)
    assert f"instructions: {len(plan.instructions)}" in text
    # the first matmul: (16, 4) @ (4, 3) = 2*16*4*3 FLOPs
    assert "384" in text
