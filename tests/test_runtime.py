"""Program: feeds, fetches, one C call per step, and SGD training steps against NumPy."""
import numpy as np
import pytest

import graphgrad as gg
import graphgrad.runtime as runtime


class _CountingLib:
    """Wraps the cffi lib: counts every call into C."""

    def __init__(self, lib):
        self._lib, self.calls = lib, []

    def __getattr__(self, name):
        attr = getattr(self._lib, name)
        if callable(attr):
            def counted(*args):
                self.calls.append(name)
                return attr(*args)
            return counted
        return attr


def test_a_training_step_is_exactly_one_c_call(monkeypatch):
    x = gg.placeholder((None, 3), name="x")
    y = gg.placeholder((None, 1), name="y")
    w = gg.variable(np.zeros((3, 1)), name="w")
    loss = gg.mse(gg.sigmoid(x @ w), y)
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1, momentum=0.9))
    X, Y = np.ones((4, 3), np.float32), np.ones((4, 1), np.float32)
    step(x=X, y=Y)                              # first call specialises
    counting = _CountingLib(runtime.lib)
    monkeypatch.setattr(runtime, "lib", counting)
    for _ in range(5):
        step(x=X, y=Y)
    assert counting.calls == ["gg_program_run"] * 5


def test_feeds_by_name_by_placeholder_and_results_shape():
    a = gg.placeholder((2,), name="a")
    b = gg.placeholder((2,), name="b")
    f = gg.compile([a + b, a * b])
    s, p = f({a: [1, 2]}, b=np.array([3.0, 4.0]))
    np.testing.assert_allclose(s, [4, 6])
    np.testing.assert_allclose(p, [3, 8])
    single = gg.compile(a * 2.0)(a=[1.0, 2.0])
    assert isinstance(single, np.ndarray) and single.tolist() == [2.0, 4.0]


def test_scalar_result_is_a_number():
    a = gg.placeholder((3,), name="a")
    r = gg.compile(gg.sum(a))(a=[1, 2, 3])
    assert float(r) == 6.0 and np.ndim(r) == 0


def test_float64_feed_is_cast_to_a_float32_placeholder():
    a = gg.placeholder((2,), name="a")
    assert gg.compile(a * 1.0)(a=np.array([1.5, 2.5])).dtype == np.float32


def test_variables_are_updated_in_place_and_assign_keeps_programs_valid():
    w = gg.variable(np.array([1.0, 2.0]), name="w")
    x = gg.placeholder((2,), name="x")
    loss = gg.sum(w * x)
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.5))
    step(x=[1.0, 1.0])
    np.testing.assert_allclose(w.value, [0.5, 1.5])
    w.assign([10.0, 10.0])                     # same array: the compiled program sees it
    step(x=[2.0, 0.0])
    np.testing.assert_allclose(w.value, [9.0, 10.0])
    with pytest.raises(gg.ShapeError, match="shape"):
        w.assign(np.zeros(3))
    np.testing.assert_allclose(w.value, [9.0, 10.0])   # untouched by the failed assign


def _sgd_reference(w, grads_fn, steps, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
    """torch.optim.SGD's update rule, transcribed."""
    buf = None
    path = []
    for t in range(steps):
        g = grads_fn(w) + weight_decay * w
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        w = w - lr * g
        path.append(w.copy())
    return path


@pytest.mark.parametrize("kw", [dict(), dict(momentum=0.9), dict(momentum=0.8, dampening=0.3),
                                dict(momentum=0.9, nesterov=True), dict(momentum=0.5, weight_decay=0.1)])
def test_sgd_steps_match_the_published_rule(kw):
    rng = np.random.default_rng(0)
    A, b = rng.standard_normal((8, 3)), rng.standard_normal(8)
    w0 = rng.standard_normal(3)
    w = gg.variable(w0, dtype="float64")
    a_ph, b_ph = gg.placeholder((8, 3), dtype="float64"), gg.placeholder((8,), dtype="float64")
    r = gg.sum(a_ph * w, axis=1) - b_ph
    loss = gg.mean(r * r)
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.05, **kw))
    want = _sgd_reference(w0, lambda v: 2 * A.T @ (A @ v - b) / 8, 30, 0.05, **kw)
    for t in range(30):
        step({a_ph: A, b_ph: b})
        np.testing.assert_allclose(w.value, want[t], rtol=1e-12, atol=1e-12)


def test_learning_rate_is_a_runtime_scalar():
    w = gg.variable(np.array([1.0]), dtype="float64")
    opt = gg.optim.SGD(lr=0.1)
    step = gg.compile(gg.sum(w * w), optimizer=opt)
    step()
    compiled = step.plan()
    opt.lr = 0.0
    step()
    np.testing.assert_allclose(w.value, [0.8])
    assert opt.step_count == 2 and step.plan() is compiled    # the same specialisation: nothing recompiled
    with pytest.raises(ValueError):
        opt.lr = float("nan")


def test_check_numerics_names_the_first_bad_node():
    x = gg.placeholder((2,), name="x")
    bad = gg.div(1.0, x, name="reciprocal")
    f = gg.compile(gg.sum(bad), check_numerics=True)
    with pytest.raises(gg.NumericsError, match="reciprocal") as info:
        f(x=[1.0, 0.0])
    assert "test_runtime.py" in str(info.value)
    np.testing.assert_allclose(f(x=[1.0, 2.0]), 1.5)


def test_threads_setting_round_trips():
    before = gg.get_num_threads()
    gg.set_num_threads(1)
    assert gg.get_num_threads() == 1
    gg.set_num_threads(before)
    assert gg.get_num_threads() == before


def test_kernels_run_on_the_threads_the_setting_asks_for():
    """The parallel loop every kernel uses (GG_PARALLEL_FOR) runs on exactly gg.set_num_threads(n)
    threads for a large loop, more than the machine has cores too, and on one for a small loop."""
    from graphgrad._core import lib
    before = gg.get_num_threads()
    big = 1 << 20
    try:
        for n in (1, 2, 3):
            gg.set_num_threads(n)
            assert lib.gg_parallel_team_size(big) == n
            assert lib.gg_parallel_team_size(100) == 1     # below the parallel threshold: serial
    finally:
        gg.set_num_threads(before)


def test_repeated_calls_take_the_fast_path_and_still_check_new_feeds(monkeypatch):
    x = gg.placeholder((None, 2), name="x")
    f = gg.compile(gg.sum(x, axis=1))
    X = np.ones((3, 2), np.float32)
    assert f({x: X}).tolist() == [2.0, 2.0, 2.0]
    checked = []
    real_collect = runtime.Program._collect_feeds
    monkeypatch.setattr(runtime.Program, "_collect_feeds", lambda *a: checked.append(1) or real_collect(*a))
    X[:] = 2.0                                                   # same array, new contents
    assert f({x: X}).tolist() == [4.0, 4.0, 4.0]
    assert f({x: np.full((3, 2), 3.0, np.float32)}).tolist() == [6.0, 6.0, 6.0]   # a new array of the same kind
    assert checked == []                                         # both took the fast path: no feed checks
    assert f({x: np.ones((1, 2), np.float64)}).tolist() == [2.0]  # other dtype: cast on the checked path
    with pytest.raises(gg.FeedError, match=r"shape \(3, 3\)"):
        f({x: np.ones((3, 3), np.float32)})
    assert f(x=np.full((2, 2), 0.5, np.float32)).tolist() == [1.0, 1.0]   # by name
    with pytest.raises(gg.FeedError, match="unknown feed"):
        f(y=X)
    strided = np.ones((3, 4), np.float32)[:, ::2]                # not contiguous: copied, same result
    assert f({x: strided}).tolist() == [2.0, 2.0, 2.0]


def test_profile_mode_times_every_instruction_in_c():
    x = gg.placeholder((None, 8), name="x")
    w = gg.variable(np.ones((8, 4)), name="w")
    loss = gg.mean(gg.sigmoid(x @ w))
    step = gg.compile(loss, optimizer=gg.optim.SGD(lr=0.1), profile=True)
    for _ in range(5):
        step(x=np.ones((16, 8), np.float32))
    ns = step.profile_ns()
    assert ns.shape == (len(step.plan().instructions),) and (ns > 0).all()
    text = step.summary(as_text=True)
    assert "time" in text and "profile:" in text and "%" in text
    plain = gg.compile(loss)
    plain(x=np.ones((2, 8), np.float32))
    assert plain.profile_ns() is None and "profile:" not in plain.summary(as_text=True)


# ---- Program.run_steps: many steps over a data set in one C call ----------------------------

def _regression_step(optimizer, n=23, d=3, seed=0, hidden=4):
    """A two-layer regression model's training Program, its data and its variables."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    Y = (X @ rng.standard_normal((d, 1))).astype(np.float32)
    x, y = gg.placeholder((None, d), name="x"), gg.placeholder((None, 1), name="y")
    w1 = gg.variable(rng.standard_normal((d, hidden)) * 0.5, name="w1")
    w2 = gg.variable(rng.standard_normal((hidden, 1)) * 0.5, name="w2")
    pred = gg.tanh(x @ w1) @ w2
    step = gg.compile([gg.mse(pred, y), pred], optimizer=optimizer)
    return step, x, y, pred, X, Y, [w1, w2]


def test_run_steps_equals_one_call_per_batch_short_last_batch_included():
    order = np.random.default_rng(1).permutation(23).astype(np.int64)
    stepped, x, y, _, X, Y, ws = _regression_step(gg.optim.Adam(lr=0.05))
    looped, x2, y2, _, _, _, ws2 = _regression_step(gg.optim.Adam(lr=0.05))
    losses = np.zeros(5)
    assert stepped.run_steps({x: X, "y": Y}, 5, order=order, losses=losses) == 5   # 4 batches of 5, one of 3
    want = [looped(x=X[order[i:i + 5]], y=Y[order[i:i + 5]])[0] for i in range(0, 23, 5)]
    np.testing.assert_array_equal(losses, np.array(want, dtype=np.float64))
    for a, b in zip(ws, ws2):
        np.testing.assert_array_equal(a.value, b.value)
    # drop_last: the epoch is the 4 full batches
    assert stepped.run_steps({x: X, y: Y}, 5, drop_last=True) == 4


def test_run_steps_in_chunks_with_a_new_learning_rate_per_chunk():
    """What a learning-rate range test does: one step at a time, the lr changed in between."""
    opt, opt2 = gg.optim.SGD(lr=0.01), gg.optim.SGD(lr=0.01)
    chunked, x, y, _, X, Y, ws = _regression_step(opt)
    looped, *_, ws2 = _regression_step(opt2)
    lrs = [0.01 * 1.5 ** k for k in range(6)]
    losses = np.zeros(6)
    data = {x: X, y: Y}
    for k, lr in enumerate(lrs):
        opt.lr = lr
        assert chunked.run_steps(data, 4, first_step=k, n_steps=1, losses=losses[k:]) == 1
    want = []
    for k, lr in enumerate(lrs):
        opt2.lr = lr
        want.append(looped(x=X[4 * k:4 * k + 4], y=Y[4 * k:4 * k + 4])[0])
    np.testing.assert_array_equal(losses, np.array(want, dtype=np.float64))
    for a, b in zip(ws, ws2):
        np.testing.assert_array_equal(a.value, b.value)


def test_run_steps_counts_correct_predictions_and_copies_prediction_rows():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((10, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 10)
    x, y = gg.placeholder((None, 4), name="x"), gg.placeholder((None,), name="y", dtype="int64")
    logits = x @ gg.variable(rng.standard_normal((4, 3)), name="w")
    program = gg.compile([gg.softmax_cross_entropy(logits, y), logits])
    correct, losses = np.zeros(3, np.int64), np.zeros(3)
    out = np.zeros((10, 3), np.float32)
    assert program.run_steps({x: X, y: labels}, 4, losses=losses, accuracy=(logits, labels), correct=correct,
                             predictions=(logits, out)) == 3
    want_logits = program(x=X, y=labels)[1]
    np.testing.assert_array_equal(out, want_logits)
    hits = want_logits.argmax(1) == labels
    assert correct.tolist() == [hits[0:4].sum(), hits[4:8].sum(), hits[8:].sum()]
    # one-hot targets the program does not read are gathered for the count all the same
    one_hot = np.eye(3, dtype=np.float32)[labels]
    assert program.run_steps({x: X, y: labels}, None, accuracy=(logits, one_hot), correct=correct) == 1
    assert correct[0] == hits.sum()
    with pytest.raises(gg.ShapeError, match="accuracy compares predictions of 3 columns with targets of 2"):
        program.run_steps({x: X, y: labels}, 5, accuracy=(logits, one_hot[:, :2]), correct=correct)


def test_run_steps_rejects_an_out_of_range_row_index_and_steps_past_the_epoch():
    program, x, y, _, X, Y, _ = _regression_step(None, n=20)
    order = np.arange(20, dtype=np.int64)
    order[7] = 20
    losses = np.zeros(4)
    with pytest.raises(gg.GraphGradError, match="rejected its arguments") as info:
        program.run_steps({x: X, y: Y}, 5, order=order, losses=losses)
    assert info.value.steps_done == 0
    with pytest.raises(ValueError, match=r"steps \[2, 5\) are outside this epoch's 4 steps"):
        program.run_steps({x: X, y: Y}, 5, first_step=2, n_steps=3)
    with pytest.raises(ValueError, match="order must be"):
        program.run_steps({x: X, y: Y}, 5, order=np.arange(19, dtype=np.int64))
    with pytest.raises(gg.FeedError, match='missing feed for "y"'):
        program.run_steps({x: X}, 5)
    assert program.run_steps({x: X, y: Y}, 5, order=np.arange(20, dtype=np.int64), losses=losses) == 4


def test_run_steps_stops_before_the_update_of_a_step_with_a_nonfinite_loss():
    opt, opt2 = gg.optim.Adam(lr=0.01), gg.optim.Adam(lr=0.01)
    program, x, y, _, X, Y, ws = _regression_step(opt, n=12)
    looped, *_, ws2 = _regression_step(opt2, n=12)
    X[9, 0] = np.nan                         # in the third batch of 4
    losses = np.zeros(3)
    with pytest.raises(gg.DivergenceError) as info:
        program.run_steps({x: X, y: Y}, 4, losses=losses, stop_on_nonfinite=True)
    err = info.value
    assert err.steps_done == 2 and err.before_update and np.isnan(err.loss) and np.isnan(losses[2])
    for i in (0, 4):
        looped(x=X[i:i + 4], y=Y[i:i + 4])
    assert opt.step_count == opt2.step_count == 2   # the step count the failing step had advanced is put back
    for w, w2 in zip(ws, ws2):
        np.testing.assert_array_equal(w.value, w2.value)


def test_run_steps_gradient_part_then_update_part_is_one_step():
    def one_weight_step():
        rng = np.random.default_rng(5)
        X = rng.standard_normal((8, 3)).astype(np.float32)
        Y = rng.standard_normal((8, 1)).astype(np.float32)
        x, y = gg.placeholder((None, 3), name="x"), gg.placeholder((None, 1), name="y")
        w = gg.variable(rng.standard_normal((3, 1)), name="w")
        return gg.compile(gg.mse(x @ w, y), optimizer=gg.optim.SGD(lr=0.1, momentum=0.9)), x, y, w, X, Y

    split, x, y, w, X, Y = one_weight_step()
    whole, x2, y2, w2, _, _ = one_weight_step()
    losses = np.zeros(1)
    for step in range(2):
        before = w.value
        split.run_steps({x: X, y: Y}, 4, first_step=step, n_steps=1, losses=losses, part="gradients")
        np.testing.assert_array_equal(w.value, before)          # no update yet
        split.run_steps({x: X, y: Y}, 4, first_step=step, n_steps=1, part="updates")
        assert losses[0] == whole(x=X[4 * step:4 * step + 4], y=Y[4 * step:4 * step + 4])
        np.testing.assert_array_equal(w.value, w2.value)
    with pytest.raises(ValueError, match='part="gradients" runs one step'):
        split.run_steps({x: X, y: Y}, 4, part="gradients")
    with pytest.raises(ValueError, match="part must be one of"):
        split.run_steps({x: X, y: Y}, 4, part="forward")


def test_run_steps_refuses_to_split_a_step_whose_updates_run_among_its_gradients():
    program, x, y, _, X, Y, _ = _regression_step(gg.optim.SGD(lr=0.1))
    order = [ins.node.role for ins in program.plan(batch_size=4).instructions]
    first_update = order.index("update")
    assert not all(role == "update" for role in order[first_update:])   # the schedule interleaves them
    with pytest.raises(gg.GraphGradError, match="belongs to the update but runs before the last gradient"):
        program.run_steps({x: X, y: Y}, 4, n_steps=1, part="gradients")


def test_summary_prints_once_and_returns_the_text_only_when_asked(capsys):
    x = gg.placeholder((None, 3), name="x")
    w = gg.variable(np.ones((3, 2), np.float32), name="w")
    step = gg.compile(gg.mean(x @ w), optimizer=gg.optim.SGD(lr=0.1))
    step(x=np.ones((4, 3), np.float32))
    assert step.summary() is None                       # a REPL or notebook shows nothing more
    printed = capsys.readouterr().out
    assert "matmul" in printed and "FLOPs per step" in printed
    text = step.summary(as_text=True)
    assert capsys.readouterr().out == "" and text.strip() == printed.strip()


def test_program_repr_names_outputs_feeds_optimizer_and_instructions():
    x = gg.placeholder((None, 3), name="x")
    w = gg.variable(np.ones((3, 2), np.float32), name="w")
    step = gg.compile(gg.mean(x @ w, name="loss"), optimizer="adam")     # a Keras-style name
    assert type(step.optimizer) is gg.optim.Adam
    assert repr(step) == '<Program outputs "loss"; feeds "x" (None, 3) float32, optimizer Adam; not run yet>'
    step(x=np.ones((4, 3), np.float32))
    assert repr(step).endswith(f"; {len(step.plan().instructions)} instructions for feeds (4, 3)>")


def test_compile_with_an_optimizer_class_says_to_pass_an_instance():
    x = gg.placeholder((None, 3), name="x")
    w = gg.variable(np.ones((3, 2), np.float32), name="w")
    with pytest.raises(gg.errors.OptimizerError, match=r"pass an optimizer instance, e.g. gg.optim.Adam\(lr=1e-3\)"):
        gg.compile(gg.mean(x @ w), optimizer=gg.optim.Adam)


def test_run_steps_reads_the_callers_arrays_in_place_and_converts_others_each_call():
    program, x, y, _, X, Y, _ = _regression_step(None, n=8)
    losses, again = np.zeros(2), np.zeros(2)
    program.run_steps({x: X, y: Y}, 4, losses=losses)
    Y += 1.0                                                  # the same arrays, new contents
    program.run_steps({x: X, y: Y}, 4, losses=again)
    assert np.all(again != losses)
    np.testing.assert_array_equal(again, [program(x=X[:4], y=Y[:4])[0], program(x=X[4:], y=Y[4:])[0]])
    as_float64 = Y.astype(np.float64)                         # copied to float32 for the run, every run
    program.run_steps({x: X, y: as_float64}, 4, losses=losses)
    as_float64 += 1.0
    program.run_steps({x: X, y: as_float64}, 4, losses=again)
    np.testing.assert_array_equal(again, [program(x=X[:4], y=Y[:4] + 1)[0], program(x=X[4:], y=Y[4:] + 1)[0]])


def test_run_steps_writes_a_per_step_scalar_and_records_an_output():
    """step_scalar: C writes values[k] into the variable before the k-th step; record: the output's
    values after the chosen steps, across the full batches and the short last one of one call."""
    xs = gg.placeholder((None,), name="x", dtype="float64")
    scale = gg.variable(0.0, name="scale", dtype="float64", trainable=False)
    total = gg.sum(xs) * scale
    program = gg.compile([total, gg.reshape(total, (1,)) + 0.0])
    record_out = program.outputs[1]
    X = np.arange(10, dtype=np.float64)            # batches of 4: [0..3], [4..7], then [8, 9]
    values = np.array([1.0, 2.0, 3.0])
    rows = np.full((3, 1), np.nan)
    done = program.run_steps({xs: X}, 4, step_scalar=(scale, values), record=(record_out, rows, 1, 0))
    assert done == 3 and float(scale.value) == 3.0
    np.testing.assert_array_equal(rows[:, 0], [6.0 * 1, 22.0 * 2, 17.0 * 3])
    assert runtime.record_count(1, 3, 2) == 1
    some = np.full((1, 1), np.nan)
    program.run_steps({xs: X}, 4, step_scalar=(scale, values), record=(record_out, some, 2, 1))
    np.testing.assert_array_equal(some[:, 0], [22.0 * 2])        # only the step whose count 1 + 1 is even
    with pytest.raises(ValueError, match="float64 scalar variable"):
        program.run_steps({xs: X}, 4, step_scalar=(gg.variable(0.0, dtype="float64"), values))
    with pytest.raises(ValueError, match="shape \\(>= 3, 1\\)"):
        program.run_steps({xs: X}, 4, record=(record_out, np.zeros((2, 1)), 1, 0))
    with pytest.raises(ValueError, match="step_scalar values"):
        program.run_steps({xs: X}, 4, step_scalar=(scale, values[:2]))


# ---- gg_program_validate: a malformed instruction list is an error status, never a wild write ----

from graphgrad._core import ffi, lib  # noqa: E402


class _RawProgram:
    """A gg_program built by hand through the C API: `n_buffers` float32 buffers of 8 elements,
    and one instruction per (opcode, out, inputs, dims) given."""

    def __init__(self, instrs, n_buffers=3):
        self.arrays = [np.arange(8, dtype=np.float32) for _ in range(n_buffers)]
        self.buffers = ffi.new("void *[]", [ffi.cast("void *", a.ctypes.data) for a in self.arrays])
        self.instrs = ffi.new("gg_instr[]", len(instrs))
        for c, (opcode, out, inputs, dims) in zip(self.instrs, instrs):
            c.opcode, c.dtype, c.out, c.n_in, c.out_size = opcode, lib.GG_F32, out, len(inputs), 8
            for k, v in enumerate(inputs):
                getattr(c, "in")[k] = v
            for k, v in enumerate(dims):
                c.dims[k] = v
        self.prog = ffi.new("gg_program *")
        self.prog.n_instr, self.prog.instrs = len(instrs), self.instrs
        self.prog.n_buffers, self.prog.buffers = n_buffers, self.buffers

    def validate(self):
        return lib.gg_program_validate(self.prog), self.prog.failed_instr


def _pack(opcode, *refs):
    refs = list(refs) + [-1] * (3 - len(refs))
    return opcode | (refs[0] + 1) << 16 | (refs[1] + 1) << 32 | (refs[2] + 1) << 48


def _fused_dims(ops, modes=()):
    header = [8, len(ops), 0, 1, 8, 0, 0, 0]
    mode_list = list(modes) + [0] * (lib.GG_MAX_INPUTS - len(modes))
    return header + mode_list + ops


GOOD = [(lib.GG_OP_ADD, 2, [0, 1], [1, 8, 1, 1]), (lib.GG_OP_RELU, 2, [2], [8])]


def test_a_well_formed_list_validates_and_runs():
    raw = _RawProgram(GOOD + [(lib.GG_OP_FUSED, 1, [0, 2], _fused_dims([_pack(lib.GG_OP_MUL, 0, 1),
                                                                        _pack(lib.GG_OP_NEG, lib.GG_FUSED_REF_TEMP)]))])
    assert raw.validate() == (lib.GG_OK, -1)
    assert lib.gg_program_run(raw.prog) == lib.GG_OK
    x = np.arange(8, dtype=np.float32)
    np.testing.assert_array_equal(raw.arrays[2], np.maximum(x + x, 0))
    np.testing.assert_array_equal(raw.arrays[1], -(x * np.maximum(x + x, 0)))


@pytest.mark.parametrize("bad, status", [
    ((999, 2, [0], [8]), "GG_ERR_UNKNOWN_OPCODE"),                              # no row in the op table
    ((lib.GG_OP_RELU, 3, [0], [8]), "GG_ERR_BAD_BUFFER"),                      # output past the table
    ((lib.GG_OP_RELU, 2, [-1], [8]), "GG_ERR_BAD_BUFFER"),                     # -1 where the input is required
    ((lib.GG_OP_ADD, 2, [0, 7], [1, 8, 1, 1]), "GG_ERR_BAD_BUFFER"),           # input past the table
    ((lib.GG_OP_ADD, 2, [0], [1, 8, 1, 1]), "GG_ERR_BAD_INSTR"),               # too few inputs
    ((lib.GG_OP_RELU, 2, [0, 1], [8]), "GG_ERR_BAD_INSTR"),                    # more inputs than the op reads
    ((lib.GG_OP_ADD, 2, [0, 1], [11]), "GG_ERR_BAD_INSTR"),                    # rank 11: 1 + 33 dims
    ((lib.GG_OP_TRANSPOSE, 2, [0], [0, 16]), "GG_ERR_BAD_INSTR"),              # rank 16: 2 + 32 dims
    ((lib.GG_OP_SUM, 2, [0], [-1]), "GG_ERR_BAD_INSTR"),                       # negative rank
    ((lib.GG_OP_FUSED, 2, [0, 1], _fused_dims([_pack(999, 0)])), "GG_ERR_UNKNOWN_OPCODE"),
    ((lib.GG_OP_FUSED, 2, [0, 1], _fused_dims([_pack(lib.GG_OP_CLIP, 0)])), "GG_ERR_UNKNOWN_OPCODE"),  # not fusable
    ((lib.GG_OP_FUSED, 2, [0, 1], _fused_dims([_pack(lib.GG_OP_ADD, 0, 5)])), "GG_ERR_BAD_INSTR"),   # no in[5]
    ((lib.GG_OP_FUSED, 2, [0, 1], _fused_dims([_pack(lib.GG_OP_NEG, lib.GG_FUSED_REF_TEMP)])),
     "GG_ERR_BAD_INSTR"),                                                       # reads its own result
    ((lib.GG_OP_FUSED, 2, [0, 1], _fused_dims([_pack(lib.GG_OP_NEG, lib.GG_FUSED_REF_GEMM)])),
     "GG_ERR_BAD_INSTR"),                                                       # a head it does not have
    ((lib.GG_OP_FUSED, 2, [0, 1], _fused_dims([_pack(lib.GG_OP_NEG, 0, 1)])), "GG_ERR_BAD_INSTR"),   # extra ref
    ((lib.GG_OP_FUSED, 2, [0, 1], _fused_dims([])), "GG_ERR_BAD_INSTR"),       # an empty list
    ((lib.GG_OP_FUSED, 2, [0, 1], _fused_dims([_pack(lib.GG_OP_NEG, 0)], modes=[3])), "GG_ERR_BAD_INSTR"),
])
def test_a_corrupted_instruction_is_an_error_status(bad, status):
    """Each corruption of a well-formed list is reported with its status and index, and the
    buffers are untouched (validation writes nothing)."""
    raw = _RawProgram(GOOD + [bad])
    before = [a.copy() for a in raw.arrays]
    assert raw.validate() == (getattr(lib, status), len(GOOD))
    assert all(np.array_equal(a, b) for a, b in zip(raw.arrays, before))
    assert ffi.string(lib.gg_status_name(getattr(lib, status))).decode() != "an unknown status"


def test_the_fused_kernel_refuses_an_op_it_does_not_run():
    """Called directly (no validation first), gg_fused still checks its list: an unknown op is an
    error status and the output is not written."""
    x = np.arange(8, dtype=np.float32)
    out = np.full(8, 7.0, dtype=np.float32)
    ins = ffi.new("const float *[]", [ffi.cast("float *", x.ctypes.data)] + [ffi.NULL] * (lib.GG_MAX_INPUTS - 1))
    dims = ffi.new("int64_t[]", _fused_dims([_pack(lib.GG_OP_SOFTMAX, 0)]) + [0] * 8)
    attrs = ffi.new("double[]", lib.GG_MAX_ATTRS)
    status = lib.gg_fused_f32(ffi.cast("float *", out.ctypes.data), ins, dims, attrs, ffi.NULL, 0)
    assert status == lib.GG_ERR_UNKNOWN_OPCODE
    assert (out == 7.0).all()


def test_a_malformed_plan_raises_a_typed_error_naming_the_node(monkeypatch):
    """The runtime validates each specialisation once: a corrupted instruction (here an input index
    past the buffer table, injected into the lowering) is a RuntimeFailure naming the node, before
    anything runs."""
    import graphgrad.compiler as compiler
    real_lower = compiler.lower

    def corrupting_lower(steps, shapes, memory):
        instructions = real_lower(steps, shapes, memory)
        instructions[-1].inputs[0] = 10_000
        return instructions

    monkeypatch.setattr(compiler, "lower", corrupting_lower)
    a = gg.placeholder((3,), name="a")
    f = gg.compile(gg.exp(a, name="the_exp"))
    with pytest.raises(gg.errors.RuntimeFailure, match=r'instruction 0, exp node "the_exp".*buffer index'):
        f(a=np.ones(3, np.float32))
