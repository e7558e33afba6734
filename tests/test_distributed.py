"""Data-parallel training over MPI. The jobs run `mpirun -n 2 python tests/distributed_worker.py CASE
OUT` with a timeout; this process never initialises MPI itself. Some run as two simulated hosts
on loopback with the TCP transport only (no shared memory); see docs/distributed.md."""
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import graphgrad as gg
from graphgrad import distributed as dist

from distributed_models import mnist_cnn, small_mlp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "distributed_worker.py")
JOB_TIMEOUT = 180          # seconds: a job that runs past it is a failure (a hang)

#: MPICH settings that make two ranks on one machine talk like two hosts: every peer is "remote"
#: (no shared memory, no CMA), over libfabric's TCP provider on the loopback interface
MPICH_TCP_ONLY = {"MPIR_CVAR_NOLOCAL": "1", "MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp",
                  "FI_TCP_IFACE": "lo", "MPIR_CVAR_CH4_CMA_ENABLE": "0"}
#: the same for Open MPI: TCP and self transports only, on loopback; root needs the allow flags
OPEN_MPI_TCP_ONLY = {"OMPI_MCA_btl": "tcp,self", "OMPI_MCA_btl_tcp_if_include": "lo", "OMPI_MCA_pml": "ob1"}


def find_mpirun() -> str | None:
    """The mpirun beside this Python (a venv's, where pip's mpich wheel puts it), else on PATH."""
    for name in ("mpirun", "mpiexec"):
        beside = os.path.join(os.path.dirname(sys.executable), name)
        if os.access(beside, os.X_OK):
            return beside
    return shutil.which("mpirun") or shutil.which("mpiexec")


def _launcher() -> tuple[str, bool]:
    """(mpirun path, whether it is Open MPI's)."""
    path = find_mpirun()
    assert path, "mpirun not found: `make test` installs it (pip install mpi4py mpich)"
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    return path, "Open MPI" in version or "OpenRTE" in version


def mpirun(case: str, out, ranks: int = 2, tcp: bool = False, script: list[str] | None = None,
           env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """Run the worker's `case` (or `script`: a file and its arguments) on `ranks` ranks; returns the
    finished process (stdout and stderr as text)."""
    path, open_mpi = _launcher()
    cmd = [path, "-n", str(ranks)]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env_extra or {}))
    env.pop("GRAPHGRAD_NUM_THREADS", None)      # each rank picks cores / ranks on its host
    if open_mpi:
        cmd.append("--oversubscribe")           # MPICH's hydra oversubscribes without being asked
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        if tcp:
            env.update(OPEN_MPI_TCP_ONLY)
    elif tcp:
        env.update(MPICH_TCP_ONLY)
        hosts = os.path.join(str(out), "hosts")   # two host names for loopback, one slot each
        with open(hosts, "w") as f:
            f.write("localhost:1\n127.0.0.1:1\n")
        cmd += ["-launcher", "fork", "-f", hosts]
    cmd += [sys.executable] + (script or [WORKER, case, str(out)])
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT)


def ranks_of(out, n=2):
    return [dict(np.load(os.path.join(str(out), f"rank{r}.npz"))) for r in range(n)]


def mnist_mlp(hidden=128):
    return gg.nn.Sequential(gg.nn.Dense(784, hidden, activation="relu", kernel_init="he_normal", seed=0),
                            gg.nn.Dense(hidden, 10, seed=1))


def state_of(model, optimizer):
    out = {f"p{i}": p.value for i, p in enumerate(model.parameters())}
    for i, p in enumerate(model.parameters()):
        for slot, var in optimizer.state_of(p).items():
            out[f"s{i}/{slot}"] = var.value
    return out


# ---- the compiled step in two halves (no MPI) ----------------------------------------------

def _mlp_step(split: bool, optimizer):
    rng = np.random.default_rng(0)
    x, y = gg.placeholder((None, 8), name="x"), gg.placeholder((None, 3), name="y")
    W1 = gg.variable(rng.normal(size=(8, 16)).astype(np.float32), name="W1")
    b1 = gg.variable(np.zeros(16, np.float32), name="b1")
    W2 = gg.variable(rng.normal(size=(16, 3)).astype(np.float32), name="W2")
    loss = gg.mse(gg.sigmoid(gg.relu(x @ W1 + b1) @ W2), y)
    return gg.compile(loss, optimizer=optimizer, split_gradients=split), [W1, b1, W2]


@pytest.mark.parametrize("make_optimizer", [lambda: gg.optim.SGD(lr=0.1), lambda: gg.optim.Adam(lr=1e-2, clip_norm=0.5)])
def test_split_gradients_step_equals_the_plain_step(make_optimizer):
    X = np.random.default_rng(1).normal(size=(32, 8)).astype(np.float32)
    Y = np.random.default_rng(2).random((32, 3)).astype(np.float32)
    plain, v0 = _mlp_step(False, make_optimizer())
    split, v1 = _mlp_step(True, make_optimizer())
    for _ in range(4):
        assert plain(x=X, y=Y) == split(x=X, y=Y)
    data = {"x": X, "y": Y}
    for _ in range(3):                  # the two parts, one after the other, are the step too
        plain(x=X, y=Y)
        losses = np.zeros(1)
        split.run_steps(data, 32, n_steps=1, losses=losses, part="gradients")
        split.run_steps(data, 32, n_steps=1, part="updates")
    for a, b in zip(v0, v1):
        np.testing.assert_array_equal(a.value, b.value)


def test_gradient_region_layout():
    step, variables = _mlp_step(True, gg.optim.SGD(lr=0.1))
    X = np.random.default_rng(1).normal(size=(4, 8)).astype(np.float32)
    Y = np.zeros((4, 3), np.float32)
    region = step.gradient_buffer(4)
    plan = step.plan(batch_size=4)
    instrs = plan.instructions
    # the updates run after the last gradient: a trailing run of update instructions
    roles = [i.node.role == "update" for i in instrs]
    first_update = roles.index(True)
    assert all(roles[first_update:]) and not any(roles[:first_update])
    # one gradient per variable, in the optimizer's variable order, each at a 64-byte boundary, packed
    updated = [u.inputs[0] for u in step.graph.outputs[1:] if u.op != "increment"]
    grads = step.gradient_nodes
    assert [plan.shapes[g.id] for g in grads] == [v.shape for v in updated]
    bufs = [plan.memory.buffers[plan.memory.buffer_of[g.id]] for g in grads]
    assert all(b.kind == "gradient" for b in bufs)
    offsets, sizes = [b.offset for b in bufs], [b.size for b in bufs]
    assert offsets == [sum(sizes[:k]) for k in range(len(grads))] and all(o % 64 == 0 for o in offsets)
    assert region.nbytes == plan.memory.gradient_bytes + 4 * region.itemsize and region.ctypes.data % 64 == 0
    # after the gradient part the region holds exactly the gradients gg.grad computes, zeros between
    reference = gg.compile(gg.grad(step.outputs[0], updated))(x=X, y=Y)
    step.run_steps({"x": X, "y": Y}, 4, n_steps=1, part="gradients")
    expected = np.zeros_like(region)
    for ref, off in zip(reference, offsets):
        expected[off // 4: off // 4 + ref.size] = ref.ravel()
    np.testing.assert_array_equal(region, expected)
    # the plain-SGD GEMM-update fusion is off: each weight gradient is its own matmul
    assert not any(i.fused and i.node.role == "update" for i in instrs)
    with pytest.raises(gg.GraphGradError, match="split_gradients=True"):
        _mlp_step(False, gg.optim.SGD(lr=0.1))[0].gradient_buffer(4)


def _first(part):
    return part if isinstance(part, int) else part[0]


def test_placed_memory_and_a_split_update_part_equal_the_plain_step():
    """What the shared-memory path builds on: the gradient region and the variables moved into
    memory the caller gives, and the update part run as two subsets (one variable's update cut in
    two pieces), give the plain step's bits."""
    X = np.random.default_rng(1).normal(size=(16, 8)).astype(np.float32)
    Y = np.random.default_rng(2).random((16, 3)).astype(np.float32)
    plain, v0 = _mlp_step(True, gg.optim.Adam(lr=1e-2))
    split, v1 = _mlp_step(True, gg.optim.Adam(lr=1e-2))
    data = {"x": X, "y": Y}
    region = split.gradient_buffer(16)
    outside = np.zeros(region.size + 16, np.float32)
    start = (-outside.ctypes.data) % 64 // 4
    placed = split.place_gradients(16, outside[start:start + region.size])
    assert placed.ctypes.data == outside[start:].ctypes.data
    W1 = v1[0]
    W1_elsewhere = W1.value.copy()
    split.place_variables(16, {W1: W1_elsewhere})
    ops = [i.node.op for i in split.update_instructions(16)]
    assert ops == ["increment"] + ["adam_update"] * 3
    w1, others = None, []
    for position, ins in enumerate(split.update_instructions(16)[1:], 1):
        if ins.node.inputs[0] is W1:
            w1 = position
        else:
            others.append(position)
    for _ in range(3):
        plain.run_steps(data, 16, n_steps=1, part="gradients")
        plain.run_steps(data, 16, n_steps=1, part="updates")
        split.run_steps(data, 16, n_steps=1, part="gradients")
        # the counter and W1's first 48 elements (of 128) with b1; then the rest of W1, and W2
        split.run_steps(data, 16, n_steps=1, part="updates", only=sorted([0, (w1, 0, 48), others[0]], key=_first))
        split.run_steps(data, 16, n_steps=1, part="updates", only=sorted([(w1, 48, 128), others[1]], key=_first))
        np.testing.assert_array_equal(placed[:-4], plain.gradient_buffer(16)[:-4])
    # W1 lives in W1_elsewhere while placed: its update went there, W1.data kept its start value
    np.testing.assert_array_equal(W1_elsewhere, v0[0].value)
    assert not np.array_equal(W1.value, v0[0].value)
    for a, b in zip(v0[1:], v1[1:]):
        np.testing.assert_array_equal(a.value, b.value)
    # the step counter (position 0) ran once per step, in the first subset
    assert split.update_instructions(16)[0].node.inputs[0].value == 3
    split.place_gradients(16, None)
    split.place_variables(16, {W1: None})
    with pytest.raises(ValueError, match="must name an optimizer update"):
        split.run_steps(data, 16, n_steps=1, part="updates", only=((0, 0, 1),))      # the step counter
    with pytest.raises(ValueError, match="must name an optimizer update"):
        split.run_steps(data, 16, n_steps=1, part="updates", only=((w1, 0, 129),))
    with pytest.raises(ValueError, match="only= picks update instructions"):
        split.run_steps(data, 16, n_steps=1, part="gradients", only=(0,))
    record = (split.outputs[0], np.zeros((1, 1)), 1, 0)     # (refused before the record itself is checked)
    with pytest.raises(ValueError, match="record= reads statistics of every update"):
        split.run_steps(data, 16, n_steps=1, part="updates", only=(0,), record=record)
    with pytest.raises(ValueError, match='pass it to part="updates"'):
        split.run_steps(data, 16, n_steps=1, part="gradients", record=record)
    with pytest.raises(ValueError, match="64-byte-aligned"):
        split.place_gradients(16, outside[start + 1:start + 1 + region.size])


def test_share_splits_every_batch_exactly():
    for rows in range(0, 40):
        for n in (1, 2, 3, 8):
            parts = [dist.share(rows, n, r) for r in range(n)]
            assert sum(c for _, c in parts) == rows
            assert [o for o, _ in parts] == [sum(c for _, c in parts[:r]) for r in range(n)]
            assert max(c for _, c in parts) - min(c for _, c in parts) <= 1


def test_distributed_without_mpi4py_says_what_to_install(monkeypatch):
    assert dist._context is None               # this process never joined an MPI job
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    X, y = np.zeros((8, 784), np.float32), np.zeros(8, np.int64)
    with pytest.raises(gg.DistributedError, match="pip install mpi4py mpich"):
        gg.fit(mnist_mlp(16), X, y, loss="softmax_cross_entropy", verbose=0, distributed=True)
    # and graphgrad itself imports without mpi4py
    code = "import sys; sys.modules['mpi4py'] = None; import graphgrad; print(graphgrad.distributed.size())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr


# ---- jobs under mpirun -n 2 --------------------------------------------------------------------

def _reference_equal_case():
    """1 process, global batch 64, 20 Adam steps: what the 2-rank job must match."""
    (X, y), _ = gg.datasets.mnist()
    X, y = X[:20 * 64], y[:20 * 64]
    (_, _), (Xt, yt) = gg.datasets.mnist()
    model, opt = mnist_mlp(), gg.optim.Adam(lr=1e-3)
    h = gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=opt, epochs=1, batch_size=64, seed=5,
               metrics=["accuracy"], verbose=0, validation_data=(Xt[:301], yt[:301]))
    return state_of(model, opt), h


#: the bound after 20 Adam steps at lr 1e-3, float32, for every parameter and state array:
#: max |2 ranks - 1 process| <= ARRAY_RTOL * max |1 process|. The 2-rank run sums two half-batch
#: GEMMs where the 1-process run does one, so gradients differ in their last bits (~1e-7 relative);
#: Adam divides by sqrt(v), which enlarges that where a gradient is near zero (MNIST's border
#: pixels). Measured: 2.7e-6 on the first weight matrix, <= 3.4e-7 on every other array.
ARRAY_RTOL = 1e-5


@pytest.mark.parametrize("tcp", [False, True], ids=["shared-memory", "two-hosts-tcp"])
def test_two_ranks_equal_one_process(tmp_path, tcp):
    job = mpirun("equal_tcp" if tcp else "equal", tmp_path, tcp=tcp)
    assert job.returncode == 0, job.stdout + job.stderr
    r0, r1 = ranks_of(tmp_path)
    ref, h = _reference_equal_case()
    for key, value in ref.items():
        np.testing.assert_array_equal(r0[key], r1[key], err_msg=f"ranks differ in {key}")   # bit-identical
        assert np.abs(r0[key] - value).max() <= ARRAY_RTOL * np.abs(value).max(), key
    assert int(r0["step"]) == 20
    np.testing.assert_allclose(r0["step_losses"], h.step_losses[0], rtol=1e-5)
    assert float(r0["accuracy"][0]) == pytest.approx(h.history["accuracy"][0], abs=1e-12)
    # validation (301 rows: shards of 151 and 150, reduced weighted by size) matches 1 process
    np.testing.assert_array_equal(r0["val"], r1["val"])
    assert float(r0["val"][0]) == pytest.approx(h.history["val_loss"][0], rel=1e-5)
    assert float(r0["val"][1]) == pytest.approx(h.history["val_accuracy"][0], abs=1e-12)
    assert int(r0["threads"]) == max(1, len(os.sched_getaffinity(0)) // 2)    # ranks x threads <= cores
    if tcp:
        # the traffic went over loopback TCP: at least one region's worth per step left this host's "NIC"
        assert int(r0["loopback_bytes"]) >= 20 * int(r0["region_bytes"])


#: the CNN's bounds after 20 Adam steps at lr 1e-3, max |2 ranks - 1 process| <= bound x max |1 process|
#: per array, (parameters, optimizer state). float64: the data-parallel arithmetic itself (two
#: half-batch sums instead of one) differs in the last bits only; measured 6.6e-16 at most.
#: float32: those last-bit differences flip ReLU and max-pool ties (MNIST's many exact zeros) within
#: 20 steps and Adam carries the flips on; measured 1.9e-3 on the parameters, 1.5e-2 on Adam's
#: m (the second convolution's), the step losses within 3.8e-6 relative.
CNN_BOUNDS = {"float64": (1e-12, 1e-12), "float32": (1e-2, 5e-2)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_two_ranks_equal_one_process_on_themnist_cnn(tmp_path, dtype):
    job = mpirun("equal_cnn64" if dtype == "float64" else "equal_cnn", tmp_path)
    assert job.returncode == 0, job.stdout + job.stderr
    r0, r1 = ranks_of(tmp_path)
    assert str(r0["path"]) == "shared memory"       # the host-local path, on its own ranks' gradients
    (X, y), _ = gg.datasets.mnist(flatten=False)
    X = X.reshape(-1, 1, 28, 28).astype(dtype)
    model, opt = mnist_cnn(dtype=dtype), gg.optim.Adam(lr=1e-3)
    h = gg.fit(model, X[:20 * 32], y[:20 * 32], loss="softmax_cross_entropy", optimizer=opt, epochs=1,
               batch_size=32, seed=5, metrics=["accuracy"], verbose=0)
    for key, value in state_of(model, opt).items():
        np.testing.assert_array_equal(r0[key], r1[key], err_msg=f"ranks differ in {key}")
        bound = CNN_BOUNDS[dtype][0 if key.startswith("p") else 1]
        assert np.abs(r0[key] - value).max() <= bound * np.abs(value).max(), key
    assert int(r0["step"]) == 20
    np.testing.assert_allclose(r0["step_losses"], h.step_losses[0], rtol=1e-5 if dtype == "float32" else 1e-12)


def test_batchnorm_running_statistics_are_the_mean_over_ranks(tmp_path):
    job = mpirun("batchnorm", tmp_path)
    assert job.returncode == 0, job.stdout + job.stderr
    r0, r1 = ranks_of(tmp_path)
    for key in r0:
        np.testing.assert_array_equal(r0[key], r1[key], err_msg=f"ranks differ in {key}")
    # each rank's running statistics, rebuilt in one process from its own rows (10 of every 20,
    # lr 0 so the weights stay put), averaged: what the job holds
    (X, y), _ = gg.datasets.mnist(flatten=False)
    X, y = X[:120].reshape(120, 1, 28, 28), y[:120]
    alone = []
    for r in range(2):
        rows = np.concatenate([np.arange(k * 20 + 10 * r, k * 20 + 10 * r + 10) for k in range(6)])
        model = mnist_cnn(batch_norm=True)
        gg.fit(model, X[rows], y[rows], loss="softmax_cross_entropy", optimizer=gg.optim.SGD(lr=0.0), epochs=1,
               batch_size=10, shuffle=False, verbose=0)
        alone.append([b.value for b in model.buffers()])
    assert len(alone[0]) == 4 and len([k for k in r0 if k.startswith("trained/b")]) == 4
    for i, (a, b) in enumerate(zip(*alone)):
        assert not np.array_equal(a, b)                 # the ranks did move them apart
        # the same C arithmetic on the same rows, then (a + b) / 2 in float32: bit for bit
        np.testing.assert_array_equal(r0[f"frozen/b{i}"], (a + b) * np.float32(0.5))
    assert np.isfinite(r0["loss"]).all() and r0["loss"][1] < r0["loss"][0]


def _uneven_in_one_process():
    """The "uneven" worker case trained in this one process: the reference its ranks must equal."""
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(22, 12)), rng.normal(size=(22, 3))
    model, opt = small_mlp(), gg.optim.SGD(lr=0.1, momentum=0.5)
    h = gg.fit(model, X, Y, loss="mse", optimizer=opt, epochs=2, batch_size=7, seed=2, verbose=0)
    return model, opt, h


@pytest.mark.parametrize("tcp", [False, True], ids=["shared-memory", "two-hosts-tcp"])
def test_uneven_split_gives_the_exact_mean_gradient(tmp_path, tcp):
    job = mpirun("uneven", tmp_path, tcp=tcp)
    assert job.returncode == 0, job.stdout + job.stderr
    r0, r1 = ranks_of(tmp_path)
    model, opt, h = _uneven_in_one_process()
    for key, value in state_of(model, opt).items():
        np.testing.assert_array_equal(r0[key], r1[key])
        # float64: 8 steps (4/3-row shares, a 1/0-row last batch) agree to rounding; a mean of the two
        # ranks' means instead of the sample-weighted sum would be off by ~1e-2
        np.testing.assert_allclose(r0[key], value, rtol=1e-12, atol=1e-14, err_msg=key)
    np.testing.assert_allclose(r0["loss"], h.history["loss"], rtol=1e-12)
    # rank 0 alone logs (verbose=2: one line per epoch) and writes checkpoints
    assert [l.split(" - ")[0] for l in job.stderr.splitlines() if l.startswith("epoch ")] == ["epoch 1/2", "epoch 2/2"]
    assert sorted(f for f in os.listdir(str(tmp_path)) if f.startswith("saved_by")) == ["saved_by_rank0.npz"]


def test_gradient_stats_record_the_reduced_gradient_on_every_rank(tmp_path):
    job = mpirun("gradient_stats", tmp_path)
    assert job.returncode == 0, job.stdout + job.stderr
    r0, r1 = ranks_of(tmp_path)
    assert str(r0["path"]) == "flat allreduce"      # the statistics read every gradient
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(22, 12)), rng.normal(size=(22, 3))
    model, opt = small_mlp(), gg.optim.Adam(lr=0.01)
    stats = gg.callbacks.GradientStats(every=2)
    gg.fit(model, X, Y, loss="mse", optimizer=opt, epochs=2, batch_size=7, seed=2, verbose=0, callbacks=[stats])
    np.testing.assert_array_equal(r0["steps"], stats.stats["step"])
    assert len(stats.stats["step"]) == 4           # steps 2, 4, 6, 8 of 2 epochs x 4 steps
    for i, name in enumerate(stats.names):      # (by position: layer names count up per process)
        for k, v in stats.stats[name].items():
            np.testing.assert_array_equal(r0[f"{i}/{k}"], r1[f"{i}/{k}"], err_msg=f"ranks differ in {name}/{k}")
            np.testing.assert_allclose(r0[f"{i}/{k}"], v, rtol=1e-12, err_msg=f"{name}/{k}")
    for key, value in state_of(model, opt).items():
        np.testing.assert_allclose(r0[key], value, rtol=1e-12, atol=1e-14, err_msg=key)


def test_hierarchical_path_over_two_simulated_hosts_of_two_ranks(tmp_path):
    """4 ranks as 2 hosts x 2 (GRAPHGRAD_DIST_HOST_RANKS=2): each host sums through its shared
    window, then each rank allreduces its range with its peer on the other host. Global batch 7
    is 2+2+2+1 rows; the last batch's 1 row is rank 0's alone."""
    job = mpirun("uneven", tmp_path, ranks=4, env_extra={"GRAPHGRAD_DIST_HOST_RANKS": "2"})
    assert job.returncode == 0, job.stdout + job.stderr
    ranks = ranks_of(tmp_path, 4)
    assert all(str(r["path"]) == "shared memory" and int(r["hosts"]) == 2 for r in ranks)
    model, opt, h = _uneven_in_one_process()
    for key, value in state_of(model, opt).items():
        for r in ranks[1:]:
            np.testing.assert_array_equal(ranks[0][key], r[key], err_msg=key)
        np.testing.assert_allclose(ranks[0][key], value, rtol=1e-12, atol=1e-14, err_msg=key)
    np.testing.assert_allclose(ranks[0]["loss"], h.history["loss"], rtol=1e-12)


def test_different_models_raise_the_typed_error_on_every_rank(tmp_path):
    job = mpirun("mismatch", tmp_path)
    assert job.returncode == 0, job.stdout + job.stderr
    for r in range(2):
        text = open(os.path.join(str(tmp_path), f"rank{r}.txt")).read()
        assert text.startswith("DistributedError: ranks [1] differ from rank 0 in their model graph"), text
        assert "(784, 64)" in text and "(784, 96)" in text


def test_divergence_and_a_failing_step_raise_on_every_rank(tmp_path):
    job = mpirun("collective_errors", tmp_path)
    assert job.returncode == 0, job.stdout + job.stderr
    r0, r1 = (open(os.path.join(str(tmp_path), f"rank{r}.txt")).read().splitlines() for r in range(2))
    # the same DivergenceError everywhere, before the update: the variables stay finite
    assert r0[0] == r1[0] and r0[0].startswith("DivergenceError at epoch") and r0[0].endswith("finite True")
    # the bad label is in rank 0's share: it raises the FeedError, rank 1 learns of it from the allreduce
    assert r0[1].startswith("FeedError: ") and "class label is outside" in r0[1]
    assert r1[1] == ("DistributedError: 1 other rank(s) failed at epoch 1, step 1 (each raises its own error "
                     "there); no update was made")


@pytest.mark.parametrize("fault", ["raise", "exit", "hang"])
def test_a_failing_rank_ends_the_job(tmp_path, fault):
    started = time.monotonic()
    job = mpirun(fault, tmp_path)
    elapsed = time.monotonic() - started
    assert job.returncode != 0, job.stdout + job.stderr
    assert "finished training" not in job.stdout
    assert elapsed < JOB_TIMEOUT
    if fault == "raise":
        assert "injected fault on rank 1" in job.stderr
        assert "rank 1 of 2 ends the job" in job.stderr
    if fault == "hang":
        # a watchdog gave up on a collective: rank 0's (rank 1 never joined it), or rank 1's own when the
        # fault struck while it was inside one — usually a step's (the shared-memory path's two barriers,
        # the flat path's allreduce), but on a loaded machine fit's set-up can outlast the 0.5 s timer, and
        # then it is one of the checks before training
        assert re.search(r"of 2 ends the job: waited more than 4 s in \w", job.stderr), job.stderr


@pytest.mark.parametrize("tcp", [False, True], ids=["shared-memory", "two-hosts-tcp"])
def test_checkpoint_and_resume_equal_an_uninterrupted_run(tmp_path, tcp):
    job = mpirun("resume", tmp_path, tcp=tcp)
    assert job.returncode == 0, job.stdout + job.stderr
    r0, r1 = ranks_of(tmp_path)
    keys = [k.split("/", 1)[1] for k in r0 if k.startswith("straight/")]
    assert len(keys) > 4
    for key in keys:
        np.testing.assert_array_equal(r0[f"straight/{key}"], r0[f"resumed/{key}"], err_msg=key)
        np.testing.assert_array_equal(r0[f"resumed/{key}"], r1[f"resumed/{key}"], err_msg=key)
    assert int(r0["epochs"]) == 4
    assert "ckpt.npz" in list(r0["files"])     # one checkpoint, written by rank 0 (no stray temp files)
    assert not [f for f in r0["files"] if f.endswith(".tmp")]


def test_the_distributed_example_runs_on_two_ranks(tmp_path):
    example = os.path.join(ROOT, "examples", "mnist_distributed.py")
    job = mpirun("", tmp_path, script=[example, "--quick", "--verbose", "0", "--out", str(tmp_path)])
    assert job.returncode == 0, job.stdout + job.stderr
    lines = [l for l in job.stdout.splitlines() if "test accuracy" in l]
    assert len(lines) == 1 and lines[0].startswith("2 ranks x "), job.stdout     # rank 0 alone prints
    accuracy = float(lines[0].split("test accuracy ")[1].split("%")[0]) / 100
    assert accuracy > 0.85
    ckpt = gg.load(os.path.join(str(tmp_path), "mnist_distributed.npz"))
    assert ckpt.epochs_trained == 2 and ckpt.step == 2 * -(-4000 // 64)
