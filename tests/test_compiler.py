"""The compiler stages: schedule (topological, deterministic, only what is needed, writes after
reads), the graph passes (CSE, constant folding, algebraic identities), fusion, the liveness
memory plan, and lowering — each pass shown on a small graph and checked against compiling
without it on random graphs."""
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import graphgrad as gg
from graphgrad.compiler import build_plan, cse, fold_constants, schedule, simplify
from graphgrad.graph import Graph, ancestors
from graphgrad.ops import REGISTRY

import conv_reference as cref


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
    _check_memory_plan(plan)
    assert all(b.offset % 64 == 0 for b in plan.memory.buffers if b.kind == "arena")


def test_lowering_gives_one_instruction_per_op_node():
    x, y, *_, loss = _mlp()
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1), passes=[])
    plan = step.plan(batch_size=4)
    op_nodes = [n for n in plan.order if n.op not in ("placeholder", "variable", "constant")]
    assert [i.node for i in plan.instructions] == op_nodes
    # each product's dims are (M, N, K, trans_a, trans_b) of its operands' concrete shapes
    products = [i for i in plan.instructions if i.node.op == "matmul"]
    assert len(products) == 5     # two forward, three backward (dh, dw2, dw1)
    for ins in products:
        a = plan.shapes[ins.node.inputs[0].id]
        m, k = a[::-1] if ins.node.attrs["trans_a"] else a
        n = plan.shapes[ins.node.id][1]
        assert ins.dims[:5] == [m, n, k, int(ins.node.attrs["trans_a"]), int(ins.node.attrs["trans_b"])]
        assert ins.out_size == m * n
    assert [4, 3, 4, 0, 0] in [i.dims[:5] for i in products] and [4, 2, 3, 0, 0] in [i.dims[:5] for i in products]


def test_a_bias_add_keeps_two_axes_with_a_zero_stride_on_the_broadcast_one():
    x = gg.placeholder((None, 5), name="x")
    b = gg.variable(np.ones(5), name="b")
    plan = gg.compile(x + b, passes=[]).plan(batch_size=3)
    (add,) = plan.instructions
    # rank 2, shape (3, 5), x's strides (5, 1), b's (0, 1)
    assert add.dims == [2, 3, 5, 5, 1, 0, 1]


def test_specialisation_per_batch_size_is_cached():
    x, y, *_, loss = _mlp()
    f = gg.compile(loss)
    plans = []
    for batch in (4, 7, 4, 7, 4):
        f(x=np.ones((batch, 4)), y=np.ones((batch, 2)))
        plans.append(f.plan())           # the specialisation that just ran
    assert plans[0] is plans[2] is plans[4] and plans[1] is plans[3] and plans[0] is not plans[1]
    assert [p.shapes[x.id] for p in plans[:2]] == [(4, 4), (7, 4)]


def test_summary_lists_instructions_and_totals(capsys):
    *_, loss = _mlp()
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1))
    text = step.summary(batch_size=16, as_text=True)
    assert "matmul" in text and "sgd_update" in text and "FLOPs per step" in text
    plan = step.plan(batch_size=16)
    assert f"instructions: {len(plan.instructions)}" in text
    # the first matmul, (16, 4) @ (4, 3) = 2*16*4*3 = 384 FLOPs, with its relu (48) in one instruction
    assert "432" in text


# ---- helpers --------------------------------------------------------------------------------

def _check_memory_plan(plan):
    """No two arena buffers that are alive at the same step share bytes, except an output that
    took over the block of an input dying at that very step (in place); every instruction reads
    live buffers; fetched outputs stay alive to the end."""
    mem = plan.memory
    arena = [(k, b) for k, b in enumerate(mem.buffers) if b.kind == "arena"]
    for k, b in arena:
        assert b.offset >= 0 and b.offset % 64 == 0 and b.offset + b.size <= mem.arena_bytes
        assert 0 <= b.first <= b.last <= mem.n_steps
        if b.inplace_of >= 0:   # only a same-size input is overwritten in place (never a broadcast one)
            assert mem.buffers[b.inplace_of].nbytes == b.nbytes
    for i, (ka, a) in enumerate(arena):
        for kb, b in arena[i + 1:]:
            live_together = a.first <= b.last and b.first <= a.last
            overlap = a.offset < b.offset + b.size and b.offset < a.offset + a.size
            if live_together and overlap:
                assert (b.inplace_of == ka and b.first == a.last) or (a.inplace_of == kb and a.first == b.last), \
                    (a.node, b.node)
    for k, ins in enumerate(plan.instructions):
        out = mem.buffers[ins.out]
        if out.kind == "arena":
            assert out.first == k
        for i in ins.inputs:
            if i >= 0 and mem.buffers[i].kind == "arena":
                assert mem.buffers[i].first < k <= mem.buffers[i].last
    for o in plan.outputs:
        buf = mem.buffers[mem.buffer_of[o.id]]
        if buf.kind == "arena":
            assert buf.last == mem.n_steps


def _structure(tensors):
    """Everything a pass could mutate in the user's nodes."""
    return [(n.id, n.op, tuple(i.id for i in n.inputs), repr(sorted(n.attrs.items())), n.shape, n.name)
            for n in ancestors(tensors)]


def _ops_of(graph):
    return sorted(n.op for n in graph.nodes)


def _bias_mlp(activation=gg.relu, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    x = gg.placeholder((None, 5), name="x", dtype=dtype)
    y = gg.placeholder((None, 3), name="y", dtype=dtype)
    w1 = gg.variable(rng.normal(size=(5, 4)), name="w1", dtype=dtype)
    b1 = gg.variable(rng.normal(size=4), name="b1", dtype=dtype)
    w2 = gg.variable(rng.normal(size=(4, 3)), name="w2", dtype=dtype)
    b2 = gg.variable(rng.normal(size=3), name="b2", dtype=dtype)
    loss = gg.mse(gg.sigmoid(activation(x @ w1 + b1) @ w2 + b2), y)
    return x, y, [w1, b1, w2, b2], loss


# ---- the graph passes, one at a time --------------------------------------------------------

def test_cse_merges_repeated_subexpressions_and_equal_constants():
    x = gg.placeholder((3,), name="x")
    a = gg.sigmoid(x * 2.0)
    b = gg.sigmoid(x * 2.0)          # the same computation, built twice
    out = a + b
    before = _structure([out])
    graph = cse(Graph([out]))
    assert _ops_of(graph) == ["add", "constant", "mul", "placeholder", "sigmoid"]
    add = graph.outputs[0]
    assert add.inputs[0] is add.inputs[1]
    assert _structure([out]) == before       # the user's nodes are untouched
    feed = {x: np.array([-1.0, 0.5, 3.0])}
    assert np.array_equal(gg.compile(out, passes=["cse"])(feed), gg.compile(out, passes=[])(feed))


def test_cse_keeps_different_attrs_and_never_merges_leaves():
    x = gg.placeholder((3, 3), name="x")
    v1, v2 = gg.variable(np.ones(3)), gg.variable(np.ones(3))   # equal values, two variables
    rows, cols, rows_again = gg.sum(x, axis=0), gg.sum(x, axis=1), gg.sum(x, axis=0)
    out = (rows + cols) * rows_again + v1 * v2
    graph = cse(Graph([out]))
    sums = [n for n in graph.nodes if n.op == "sum"]
    assert len(sums) == 2 and {n.attrs["axes"] for n in sums} == {(0,), (1,)}
    assert len([n for n in graph.nodes if n.op == "variable"]) == 2


def test_fold_constants_computes_constant_subgraphs_with_the_c_kernels():
    x = gg.placeholder((3,), name="x")
    c = gg.constant([0.1, -2.0, 7.0])
    scale = gg.sigmoid(c * 3.0) - gg.mean(c)          # only constants: computed at compile time
    out = x * scale
    graph = fold_constants(Graph([out]))
    assert _ops_of(graph) == ["constant", "mul", "placeholder"]
    folded = next(n for n in graph.nodes if n.op == "constant")
    # the value is the interpreter's own, bit for bit
    assert np.array_equal(folded.data, gg.compile(scale, passes=[])({}))
    feed = {x: np.array([1.0, 2.0, 3.0])}
    assert np.array_equal(gg.compile(out, passes=["fold_constants"])(feed), gg.compile(out, passes=[])(feed))
    # a fully constant output is fetched as the folded constant
    assert np.array_equal(gg.compile(scale)({}), gg.compile(scale, passes=[])({}))


def test_simplify_removes_identities():
    x = gg.placeholder((None, 3), name="x")
    one, zero = gg.constant(1.0), gg.constant(0.0)
    y = ((x * 1.0) / 1.0 + 0.0) - zero
    y = one * (zero + y)
    y = -(-y)
    graph = simplify(Graph([gg.sigmoid(y)]))
    assert _ops_of(graph) == ["placeholder", "sigmoid"]


def test_simplify_cancels_transpose_of_transpose():
    x = gg.placeholder((2, 3, 4), name="x")
    back = gg.transpose(gg.transpose(x, (2, 0, 1)), (1, 2, 0))      # the inverse permutation
    twice = gg.transpose(gg.transpose(x, (2, 0, 1)), (2, 0, 1))     # not the inverse: kept
    graph = simplify(Graph([gg.sigmoid(back), twice]))
    assert graph.outputs[0].inputs[0].op == "placeholder"
    assert [n.op for n in ancestors([graph.outputs[1]])].count("transpose") == 2
    feed = {x: np.arange(24.0).reshape(2, 3, 4)}
    for a, b in zip(gg.compile([back, twice])(feed), gg.compile([back, twice], passes=[])(feed)):
        assert np.array_equal(a, b)


def test_simplify_keeps_identities_that_would_change_a_shape_or_a_nan():
    x = gg.placeholder((3,), name="x")
    widened = x * gg.constant(np.ones((2, 3)))   # broadcasting: x*1 has a bigger shape than x
    graph = simplify(Graph([widened]))
    assert "mul" in _ops_of(graph)
    times_zero = x * 0.0                          # Inf * 0 is NaN: not 0
    assert "mul" in _ops_of(simplify(Graph([times_zero])))
    inf = np.array([np.inf, -1.0, np.nan], dtype=np.float32)
    assert np.isnan(gg.compile(times_zero)({x: inf})[0])
    # but sign(x) is always finite, so sign(x) * 0 is exactly 0
    s0 = gg.ops.sign(x) * 0.0
    assert _ops_of(simplify(Graph([s0]))) == ["constant"]
    assert gg.compile(s0)({x: inf}).tolist() == [0.0, 0.0, 0.0]


def test_simplify_points_relu_backward_at_the_relu_output():
    x = gg.placeholder((None, 4), name="x")
    w = gg.variable(np.eye(4), name="w")
    h = gg.relu(x @ w)
    gw = gg.grad(gg.sum(h), w)
    graph = simplify(Graph([gw]))
    back = next(n for n in graph.nodes if n.op == "relu_backward")
    assert back.inputs[0].op == "relu"
    feed = {x: np.array([[1.0, -2.0, 0.0, -0.0], [np.nan, 3.0, -1.0, 2.0]], dtype=np.float32)}
    assert np.array_equal(gg.compile(gw, passes=["simplify"])(feed), gg.compile(gw, passes=[])(feed), equal_nan=True)


@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 2, 1), (2, 1, 0)])
def test_simplify_sums_a_pooled_relus_gradient_before_the_scatter(kernel, stride, padding, rng):
    """A conv -> ReLU -> max-pool bias gradient sums the pooled gradient (relu_backward of the pooled
    values), not the input-sized scatter; overlapping windows (stride 1) and padding included."""
    x = gg.placeholder((None, 3, 8, 9), name="x")
    w = gg.variable(rng.standard_normal((4, 3, 3, 3)) * 0.3, name="w")
    b = gg.variable(rng.standard_normal(4) * 0.3, name="b")
    pooled = gg.max_pool2d(gg.relu(gg.conv2d(x, w, b)), kernel, stride=stride, padding=padding)
    g = rng.standard_normal((2, 4) + pooled.shape[2:])
    gw, gb = gg.grad(gg.sum(pooled * gg.constant(g)), [w, b])
    graph = simplify(Graph([gb]))
    total = next(n for n in graph.nodes if n.op == "sum" and n.shape == (4,))
    assert total.inputs[0].op == "relu_backward" and total.inputs[0].inputs[0].op == "max_pool2d"
    feed = {x: rng.standard_normal((2, 3, 8, 9))}
    want = np.asarray(gg.compile([gw, gb], passes=[])(feed)[1], dtype=np.float64)
    xs = feed[x].astype(np.float64)
    y = np.maximum(cref.conv2d(xs, w.value.astype(np.float64), b.value.astype(np.float64), 1, 0, 1), 0)
    dy = cref.max_pool2d_backward(y, g, kernel, stride, padding, positive=True)
    np.testing.assert_allclose(gg.compile(gb)(feed), dy.sum(axis=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gg.compile(gb)(feed), want, rtol=1e-5, atol=1e-5)


def test_a_variable_never_stands_in_for_a_computed_value():
    x = gg.placeholder((None, 2), name="x")
    w = gg.variable(np.ones((2, 1)), name="w")
    loss = gg.mean((x @ w) * 1.0)
    for passes in (None, []):
        w.assign(np.ones((2, 1)))
        step = gg.compile([loss, w * 1.0], optimizer=gg.optim.SGD(lr=0.5), passes=passes)
        _, fetched = step(x=np.ones((4, 2)))
        assert np.array_equal(fetched, np.ones((2, 1)))       # not the updated w
        assert not np.array_equal(w.value, np.ones((2, 1)))
    # each update reads the other variable times 1: with the product replaced by the variable,
    # neither update could run first
    v0, v1 = gg.variable(2.0, name="v0"), gg.variable(3.0, name="v1")
    step = gg.compile(v0 * v1 + 0.5, optimizer=gg.optim.SGD(lr=0.1))
    step()
    assert (float(v0.value), float(v1.value)) == (np.float32(2.0) - np.float32(0.1) * np.float32(3.0),
                                                  np.float32(3.0) - np.float32(0.1) * np.float32(2.0))


def test_passes_argument():
    x = gg.placeholder((2,), name="x")
    out = (x * 1.0) + gg.constant(0.0)
    assert len(gg.compile(out, passes=[]).plan().instructions) == 2
    simplified = gg.compile(out)
    assert simplified.plan().instructions == []                  # x*1 + 0 -> x: fetched from the feed
    assert simplified(x=np.array([1.5, -0.0])).tolist() == [1.5, 0.0]
    seen = []

    def my_pass(graph):
        seen.append(len(graph))
        return graph
    gg.compile(out, passes=[my_pass, "simplify"])
    assert seen == [5]    # x, 1.0, x*1, 0.0, the add
    with pytest.raises(ValueError, match="unknown compiler pass"):
        gg.compile(out, passes=["nope"])
    with pytest.raises(TypeError):
        gg.compile(out, passes=[lambda g: None])


def test_a_placeholder_the_passes_made_unneeded_is_still_a_feed():
    x = gg.placeholder((2,), name="x")
    y = gg.placeholder((2,), name="y")
    out = gg.ops.sign(x) * 0.0 + y          # sign(x) * 0 -> 0: x is no longer read
    f = gg.compile(out)
    assert all(n.op != "placeholder" or n is y for n in f.order)
    assert f(x=np.array([np.inf, 1.0]), y=np.array([1.0, 2.0])).tolist() == [1.0, 2.0]
    with pytest.raises(gg.FeedError, match='"x"'):
        f(y=np.array([1.0, 2.0]))


def test_passes_never_mutate_user_tensors():
    x, y, params, loss = _bias_mlp()
    opt = gg.optim.SGD(lr=0.1)
    updates = opt.minimize(loss)
    before = _structure([loss] + updates)
    gg.compile([loss, *updates])
    assert _structure([loss] + updates) == before


# ---- random graphs: every pass leaves the results unchanged -------------------------------------

def _random_graph(seed: int):
    """A random graph over a (None, 4) input, with matmuls, bias adds, activations, products,
    reductions, repeated subexpressions, identities and constant subgraphs; fetches the loss,
    gradients and one intermediate."""
    rng = np.random.default_rng(seed)
    dtype = "float64" if seed % 2 else "float32"
    x = gg.placeholder((None, 4), name="x", dtype=dtype)
    t = gg.placeholder((None, 4), name="t", dtype=dtype)
    w = gg.variable(rng.normal(size=(4, 4)) * 0.5, name="w", dtype=dtype)
    b = gg.variable(rng.normal(size=4), name="b", dtype=dtype)
    c = gg.constant(rng.normal(size=4), dtype=dtype)
    pool = [x]
    for _ in range(int(rng.integers(3, 12))):
        a = pool[int(rng.integers(len(pool)))]
        other = pool[int(rng.integers(len(pool)))]
        kind = int(rng.integers(0, 15))
        new = [lambda: a @ w,
               lambda: a + b,
               lambda: gg.relu(a),
               lambda: gg.sigmoid(a),
               lambda: a * other,
               lambda: a - c if rng.random() < 0.5 else c * a,
               lambda: ((a * 1.0) / 1.0 + 0.0) * gg.constant(1.0, dtype=dtype),
               lambda: gg.sigmoid(a) + gg.sigmoid(a),
               lambda: a + gg.sigmoid(c * 2.0),
               lambda: -(-a) if rng.random() < 0.5 else abs(a),
               lambda: gg.sum(a, axis=1, keepdims=True) * a,
               lambda: a / (abs(other) + 1.0),
               lambda: gg.tanh(a) * gg.exp(-abs(other)),
               lambda: gg.leaky_relu(a, 0.1) + gg.elu(other) if rng.random() < 0.5 else gg.softplus(a),
               lambda: gg.sqrt(abs(a) + 1.0) - gg.log(abs(other) + 2.0)][kind]()
        pool.append(new)
    loss = gg.mse(gg.sigmoid(pool[-1]), t)
    grads = gg.grad(loss, [w, b], unconnected="zero")
    outputs = [loss, *grads, pool[int(rng.integers(len(pool)))]]
    feeds = {x: rng.normal(size=(3, 4)), t: rng.random(size=(3, 4))}
    return outputs, feeds, dtype


PASS_CONFIGS = [["cse"], ["fold_constants"], ["simplify"], ["fuse"], None]


@settings(max_examples=30)
@given(st.integers(0, 2**31 - 1))
@example(51108)      # once: an in-place write over a broadcast input
@example(3286572)    # once: a matmul joining a group after an elementwise member
def test_every_pass_leaves_random_graph_results_unchanged(seed):
    outputs, feeds, dtype = _random_graph(seed)
    reference = gg.compile(outputs, passes=[])(feeds)
    for passes in PASS_CONFIGS:
        program = gg.compile(outputs, passes=passes)
        results = program(feeds)
        _check_memory_plan(program.plan())
        for r, ref in zip(results, reference):
            if passes is None or "fuse" in passes:
                # fusion runs each op's own arithmetic; allow for a GEMM that blocks differently
                tol = 1e-5 if dtype == "float32" else 1e-12
                np.testing.assert_allclose(r, ref, rtol=tol, atol=tol)
            else:
                assert np.array_equal(r, ref, equal_nan=True), passes


# ---- fusion ----------------------------------------------------------------------------------

def test_fusion_groups_matmul_bias_activation_and_backward_chains():
    x, y, params, loss = _bias_mlp()
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1))
    plan = step.plan(batch_size=8)
    groups = [[m.op for m in ins.members] for ins in plan.instructions if ins.fused]
    assert ["matmul", "add", "relu"] in groups
    assert ["matmul", "add", "sigmoid"] in groups
    assert ["mse_backward", "sigmoid_backward"] in groups
    assert ["matmul", "relu_backward"] in groups       # dh = dz·w2ᵀ, then the relu mask, in cache
    unfused = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1), passes=[]).plan(batch_size=8)
    assert len(plan.instructions) < len(unfused.instructions)
    # every op node is computed by exactly one instruction
    members = [m for ins in plan.instructions for m in ins.members]
    assert len(members) == len({m.id for m in members})


@pytest.mark.parametrize("activation", [gg.relu, gg.sigmoid])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_training_matches_unfused(activation, dtype):
    results = []
    for passes in (None, []):
        x, y, params, loss = _bias_mlp(activation, seed=3, dtype=dtype)
        step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.5, momentum=0.9), passes=passes)
        rng = np.random.default_rng(0)
        losses = [step(x=rng.normal(size=(40, 5)), y=rng.random((40, 3))) for _ in range(4)]
        results.append((losses, [p.value for p in params]))
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=tol)
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def test_bias_and_activation_run_in_the_gemm_epilogue():
    from graphgrad._core import lib
    x, y, params, loss = _bias_mlp(gg.sigmoid)
    plan = gg.compile(loss).plan(batch_size=8)
    heads = [ins for ins in plan.instructions if [m.op for m in ins.members][:2] == ["matmul", "add"]]
    assert len(heads) == 2
    for ins in heads:   # a plain GEMM with its bias buffer and activation, not an interpreted op list
        assert ins.opcode == lib.GG_OP_MATMUL and ins.inputs[2] >= 0
        assert ins.dims[5] == lib.GG_ACT_SIGMOID


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_plain_sgd_runs_inside_its_gradient_gemm_with_the_same_bits(dtype):
    from graphgrad._core import lib
    results = []
    for passes in (None, []):
        x, y, params, loss = _bias_mlp(gg.sigmoid, seed=4, dtype=dtype)
        opt = gg.optim.SGD(lr=0.5)
        step = gg.compile(loss, optimizer=opt, passes=passes)
        rng = np.random.default_rng(1)
        losses = []
        for k in range(5):
            opt.lr = 0.5 / (k + 1)   # the lr is read at run time: a schedule needs no recompile
            losses.append(step(x=rng.normal(size=(24, 5)), y=rng.random((24, 3))))
        results.append((losses, [p.value.copy() for p in params]))
        if passes is None:
            plan = step.plan(batch_size=24)
            fused = [ins for ins in plan.instructions if [m.op for m in ins.members] == ["matmul", "sgd_update"]]
            assert sorted(ins.node.inputs[0].name for ins in fused) == ["w1", "w2"]
            for ins in fused:   # the GEMM writes the weight: no gradient buffer, no update pass
                assert ins.opcode == lib.GG_OP_MATMUL
                assert ins.out == plan.memory.buffer_of[ins.node.inputs[0].id]
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("optimizer, fetch_gradient", [
    (lambda: gg.optim.SGD(lr=0.1, momentum=0.9), False),
    (lambda: gg.optim.SGD(lr=0.1, weight_decay=1e-3), False),
    (lambda: gg.optim.SGD(lr=0.1, clip_norm=1.0), False),
    (lambda: gg.optim.Adam(lr=0.1), False),
    (lambda: gg.optim.SGD(lr=0.1), True),
])
def test_sgd_stays_a_separate_update_when_the_gradient_is_needed_elsewhere(optimizer, fetch_gradient):
    x, y, params, loss = _bias_mlp()
    outputs = [loss] + ([gg.grad(loss, [params[0]])[0]] if fetch_gradient else [])
    plan = gg.compile(outputs, optimizer=optimizer()).plan(batch_size=8)
    w1_update = [ins for ins in plan.instructions if ins.node.op.endswith("_update") and ins.node.inputs[0] is params[0]]
    assert len(w1_update) == 1 and not w1_update[0].fused


def test_check_numerics_names_the_op_inside_what_would_be_a_fused_chain():
    x = gg.placeholder((None, 3), name="x")
    y = gg.sigmoid(gg.log(x, name="logx") * 2.0)
    assert any(i.fused for i in gg.compile(y).plan(batch_size=2).instructions)
    f = gg.compile(y, check_numerics=True)
    assert not any(i.fused for i in f.plan(batch_size=2).instructions)
    with pytest.raises(gg.NumericsError, match='"logx"'):
        f(x=np.array([[1.0, 0.0, 2.0], [1.0, 1.0, 1.0]]))


def test_fusion_never_moves_a_read_past_an_update():
    x = gg.placeholder((None, 3), name="x")
    w = gg.variable(np.ones(3), name="w")
    loss = gg.sum(x * w)
    probe = gg.sigmoid(w * 2.0)   # reads w; fetched alongside the training step
    step = gg.compile([loss, probe], optimizer=gg.optim.SGD(lr=1.0))
    _, got = step(x=np.ones((2, 3)))
    assert np.allclose(got, 1 / (1 + np.exp(-2.0)))


# ---- memory ----------------------------------------------------------------------------------

def test_memory_plan_reuses_memory_and_runs_in_place():
    x, y, params, loss = _bias_mlp(gg.sigmoid)
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1), passes=["fold_constants", "simplify", "cse"])
    plan = step.plan(batch_size=64)
    _check_memory_plan(plan)
    mem = plan.memory
    assert mem.arena_bytes < mem.naive_bytes
    assert any(b.inplace_of >= 0 for b in mem.buffers)
    # variables, feeds and optimizer state never live in the arena
    for b in mem.buffers:
        if b.node.op in ("placeholder", "variable", "constant"):
            assert b.kind != "arena"


@settings(max_examples=25)
@given(st.integers(0, 2**31 - 1), st.sampled_from([None, []]))
def test_memory_plan_random_graphs_never_overlap_live_buffers(seed, passes):
    outputs, feeds, _ = _random_graph(seed)
    program = gg.compile(outputs, optimizer=None, passes=passes)
    program(feeds)
    _check_memory_plan(program.plan())


def test_deep_mlp_training_step_arena_peak(capsys):
    rng = np.random.default_rng(0)
    sizes = [64] + [128] * 6 + [10]
    x = gg.placeholder((None, sizes[0]), name="x")
    y = gg.placeholder((None, sizes[-1]), name="y")
    h = x
    for k, (m, n) in enumerate(zip(sizes, sizes[1:])):
        w = gg.variable(rng.normal(size=(m, n)) * np.sqrt(2 / m), name=f"w{k}")
        b = gg.variable(np.zeros(n), name=f"b{k}")
        h = x @ w + b if h is x else gg.relu(h) @ w + b
    loss = gg.mse(gg.sigmoid(h), y)
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1, momentum=0.9))
    plan = step.plan(batch_size=64)
    _check_memory_plan(plan)
    mem = plan.memory
    with capsys.disabled():
        print(f"\n[deep MLP {'-'.join(map(str, sizes))}, batch 64, SGD step] {len(plan.instructions)} instructions; "
              f"arena peak {mem.arena_bytes / 2**10:.0f} KiB vs naive {mem.naive_bytes / 2**10:.0f} KiB "
              f"({mem.arena_bytes / mem.naive_bytes:.2f}x)")
    assert mem.arena_bytes <= 0.5 * mem.naive_bytes


# ---- reading the plan --------------------------------------------------------------------------

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_summary_lists_fused_members_arena_offsets_and_totals():
    x, y, params, loss = _bias_mlp()
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1))
    text = step.summary(batch_size=32, as_text=True)
    plan = step.plan(batch_size=32)
    assert "matmul+add+relu" in text and "fused: matmul#" in text and "in place" in text
    assert f"instructions: {len(plan.instructions)} ({sum(i.fused for i in plan.instructions)} fused" in text
    assert f"FLOPs per step: {plan.flops():,}" in text
    # the fused first layer: 2*32*5*4 (matmul) + 32*4 (bias) + 32*4 (relu) FLOPs
    assert f"{2 * 32 * 5 * 4 + 2 * 32 * 4:,}" in text
    assert plan.flops() == gg.compile(loss, passes=[]).plan(batch_size=32).flops() + sum(
        plan.instruction_flops(i) for i in plan.instructions if i.node.role == "update" or
        any(m.role == "backward" for m in i.members))
    assert "peak" in text and "naive sum of intermediates" in text


def test_plan_json_is_stable_and_complete():
    import json
    texts = []
    for _ in range(2):   # two builds of the same model: different node ids, the same JSON
        x, y, params, loss = _bias_mlp(gg.sigmoid)
        step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1, momentum=0.9))
        texts.append(step.plan_json(batch_size=8))
    assert texts[0] == texts[1]
    plan = json.loads(texts[0])
    assert plan["totals"]["instructions"] == len(plan["instructions"])
    assert plan["totals"]["arena_peak_bytes"] <= plan["totals"]["naive_bytes"]
    first = plan["instructions"][0]
    assert first["member_ops"] == ["matmul", "add", "sigmoid"] and first["fused"]
    assert first["arena_offset"] == 0 and first["arena_size"] == 256   # (8, 4) float64
    arena = [b for b in plan["buffers"] if b["kind"] == "arena"]
    assert all(b["offset"] % 64 == 0 and b["first_step"] <= b["last_step"] for b in arena)
    assert {b["node"] for b in plan["buffers"] if b["kind"] == "state"} >= {"w1", "b1", "w2", "b2"}


def test_render_plan_and_memory_pictures(tmp_path):
    from graphgrad.summary import plan_dot
    x, y, params, loss = _bias_mlp()
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1))
    step(x=np.ones((16, 5)), y=np.zeros((16, 3)))
    path = step.render(str(tmp_path / "plan.png"), plan=True)
    assert open(path, "rb").read().startswith(PNG_MAGIC)
    source = plan_dot(step.plan()).source
    assert source.count("subgraph cluster_") == sum(i.fused for i in step.plan().instructions)
    assert "arena @0" in source and "writes w1" in source
    graph_png = step.render(str(tmp_path / "graph.png"))           # the graph, as before
    assert open(graph_png, "rb").read().startswith(PNG_MAGIC)
    mem_png = gg.render_memory(step, str(tmp_path / "memory.png"))
    assert open(mem_png, "rb").read().startswith(PNG_MAGIC)


# every fusable op with one input and a public function, from the registry
FUSABLE_UNARY = [(name, gg.ops.EXPORTS[name]) for name, opdef in REGISTRY.items()
                 if opdef.fusion is not None and len(opdef.fusion) == 1 and name in gg.ops.EXPORTS]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,fn", FUSABLE_UNARY, ids=[n for n, _ in FUSABLE_UNARY])
def test_each_fused_op_computes_the_same_bits_as_its_own_kernel(name, fn, dtype):
    """A chain (forward and backward) through each fusable op gives the same bits fused and unfused
    (out of the domain of log and sqrt too: NaN compares equal to NaN here)."""
    rng = np.random.default_rng(5)
    x = gg.placeholder((None, 37), name="x", dtype=dtype)
    w = gg.variable(rng.normal(size=37), name="w", dtype=dtype)
    out = fn(x * w) * 1.5 - 0.25
    loss = gg.mean((gg.sigmoid(out) - 0.3) * out)
    gw = gg.grad(loss, w)
    fused = gg.compile([out, gw], passes=["fuse"])
    plain = gg.compile([out, gw], passes=[])
    feed = {x: np.concatenate([rng.normal(size=(50, 37)) * 3, [[0.0] * 36 + [-0.0]]])}
    assert any(ins.fused for ins in fused.plan(batch_size=51).instructions)
    for a, b in zip(fused(feed), plain(feed)):
        assert np.array_equal(a, b, equal_nan=True)


def _fusable_cases():
    """(op name, case index) for every op the registry marks fusable, one case each from op_cases."""
    from op_cases import OP_CASES
    cases = [(name, OP_CASES[name][0]) for name, opdef in REGISTRY.items() if opdef.fusion is not None]
    assert {name for name, _ in cases} == {n for n, d in REGISTRY.items() if d.fusion is not None}
    return cases


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,case", _fusable_cases(), ids=[n for n, _ in _fusable_cases()])
def test_every_fusable_op_gives_the_same_bits_fused_and_alone(name, case, dtype):
    """Each op the registry marks fusable, run inside a fused list (its inputs made by a fused
    multiply, its output consumed by one) and as its own instruction: the same bits, NaN included."""
    from graphgrad.compiler.fusion import input_mode
    rng = np.random.default_rng(11)
    out_shape = np.broadcast_shapes(*case.shapes)
    # an input broadcast in a way the fused loop cannot read (not a scalar or a row) gets the full shape
    shapes = [s if input_mode(tuple(s), out_shape) is not None else out_shape for s in case.shapes]
    arrays = []
    for k, shape in enumerate(shapes):
        a = rng.standard_normal(shape) * 2
        prep = case.prepare[k] if k < len(case.prepare) else None
        arrays.append(np.asarray(prep(a) if prep else a, dtype=dtype))
    arrays[0].flat[0] = np.nan if arrays[0].size > 1 else arrays[0].flat[0]   # NaN goes through the same way
    phs = [gg.placeholder(a.shape, name=f"in{k}", dtype=dtype) for k, a in enumerate(arrays)]
    scales = [gg.variable(np.full(a.shape, 1.25), name=f"s{k}", dtype=dtype) for k, a in enumerate(arrays)]
    out = case.build(*[p * s for p, s in zip(phs, scales)]) * 0.75
    fused = gg.compile(out, passes=["fuse"])
    plain = gg.compile(out, passes=[])
    feed = dict(zip(phs, arrays))
    groups = [[m.op for m in ins.members] for ins in fused.plan().instructions if ins.fused]
    assert any(name in g for g in groups), f"{name} was not fused: {groups}"
    assert not any(ins.fused for ins in plain.plan().instructions)
    got, want = fused(feed), plain(feed)
    assert got.dtype == want.dtype and np.array_equal(got, want, equal_nan=True)
