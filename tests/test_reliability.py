"""Reliability: programs stepping in two threads at once, checkpoints surviving SIGKILL mid-save,
and repeated gg.fit calls that keep nothing alive. (The long soak — RSS, fds, threads over
100,000 steps — is bench/soak.py.)"""
import gc
import os
import random
import signal
import threading
import time

import numpy as np
import pytest

import graphgrad as gg


# ---- two programs, two threads ------------------------------------------------------------

def _mlp_step(seed: int, optimizer):
    """A 16-32-4 MLP train step and its data; identical for the same seed."""
    rng = np.random.default_rng(seed)
    x = gg.placeholder((None, 16), name="x")
    y = gg.placeholder((None, 4), name="y")
    w1 = gg.variable(rng.standard_normal((16, 32)) * 0.3, name="w1")
    b1 = gg.variable(np.zeros(32), name="b1")
    w2 = gg.variable(rng.standard_normal((32, 4)) * 0.3, name="w2")
    loss = gg.mse(gg.sigmoid(gg.relu(x @ w1 + b1) @ w2), y)
    step = gg.compile(loss, optimizer=optimizer)
    X = rng.standard_normal((64, 16)).astype(np.float32)
    Y = rng.random((64, 4)).astype(np.float32)
    return step, (X, Y), [w1, b1, w2]


def _train(step, data, n_steps: int, barrier=None) -> list[float]:
    X, Y = data
    if barrier is not None:
        barrier.wait()            # both threads start stepping together
    return [float(step(x=X[k % 4 * 16:(k % 4 + 1) * 16], y=Y[k % 4 * 16:(k % 4 + 1) * 16]))
            for k in range(n_steps)]


def test_one_program_called_from_two_threads_runs_one_step_at_a_time():
    """Calls from two threads take turns (C runs without the GIL): with the same batch every step is
    the same function of the variables, so 2·n concurrent steps must equal 2·n sequential ones."""
    n_steps = 200
    results = []
    for concurrent in (False, True):
        step, (X, Y), variables = _mlp_step(3, gg.optim.Adam(lr=1e-2))
        feeds = {"x": X[:16], "y": Y[:16]}
        if concurrent:
            barrier = threading.Barrier(2)

            def worker():
                barrier.wait()
                for _ in range(n_steps):
                    step(**feeds)

            threads = [threading.Thread(target=worker) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            for _ in range(2 * n_steps):
                step(**feeds)
        results.append([v.value.copy() for v in variables])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("threads_per_program", [1, 2])
def test_two_programs_in_two_threads_match_running_them_one_after_the_other(threads_per_program):
    n_steps = 300
    before = gg.get_num_threads()
    gg.set_num_threads(threads_per_program)
    try:
        def make():
            return [_mlp_step(1, gg.optim.Adam(lr=1e-2)), _mlp_step(2, gg.optim.SGD(lr=0.5, momentum=0.9))]

        sequential = make()
        want_losses = [_train(step, data, n_steps) for step, data, _ in sequential]
        want_values = [[v.value for v in variables] for _, _, variables in sequential]

        concurrent = make()
        got_losses: list = [None, None]
        barrier = threading.Barrier(2)

        def worker(k):
            step, data, _ = concurrent[k]
            got_losses[k] = _train(step, data, n_steps, barrier)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        gg.set_num_threads(before)
    for k in range(2):
        assert got_losses[k] == want_losses[k]                 # bit for bit
        for got, want in zip((v.value for v in concurrent[k][2]), want_values[k]):
            np.testing.assert_array_equal(got, want)


# ---- checkpoints under SIGKILL --------------------------------------------------------------

def _saver(path: str, model, optimizer, first: int) -> None:
    """Child process: save checkpoints first, first + 1, ... forever; checkpoint k holds k in every
    parameter."""
    try:
        for k in range(first, 10**9):
            for p in model.parameters():
                p.assign(np.full(p.shape, float(k)))
            gg.save(path, model, optimizer, version=k)
    finally:
        os._exit(0)


def test_a_checkpoint_save_killed_at_random_moments_never_breaks_the_previous_one(tmp_path):
    path = str(tmp_path / "model.npz")
    # big enough that a save takes a while (several MB), so kills land inside np.savez / fsync / rename
    model = gg.nn.Sequential(gg.nn.Dense(256, 1024, activation="relu"), gg.nn.Dense(1024, 256))
    optimizer = gg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for p in model.parameters():
        p.assign(np.zeros(p.shape))
    gg.save(path, model, optimizer, version=0)
    rng = random.Random(1234)
    last_version, kills, mid_save = 0, 0, 0
    # 40 kills, and more (with longer waits) while no save has completed or no kill has landed inside
    # one yet: on a busy disk a save's fsync can outlast the first waits
    while kills < 40 or ((last_version == 0 or mid_save == 0) and kills < 400):
        kills += 1
        pid = os.fork()
        if pid == 0:
            _saver(path, model, optimizer, last_version + 1)
        time.sleep(rng.uniform(0.0, 0.08 * (1 + kills // 40)))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        if any(name.endswith(".tmp") for name in os.listdir(tmp_path)):
            mid_save += 1          # the kill interrupted a save: its temporary file is left behind

        ck = gg.load(path)
        version = ck.metadata["version"]
        assert version >= last_version                        # the file only ever moves forward
        for p in ck.model.parameters():                       # and is one whole checkpoint
            np.testing.assert_array_equal(p.value, np.full(p.shape, float(version)))
        last_version = version
        for name in os.listdir(tmp_path):                     # clean up for the next round
            if name.endswith(".tmp"):
                os.unlink(tmp_path / name)
    assert last_version > 0          # saves did complete between kills
    assert mid_save > 0              # and some kills did land in the middle of one


# ---- nothing accumulates ----------------------------------------------------------------------

def test_repeated_fit_with_new_optimizers_keeps_nothing_alive():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 8)).astype(np.float32)
    Y = rng.standard_normal((64, 2)).astype(np.float32)
    model = gg.nn.Sequential(gg.nn.Dense(8, 8, activation="relu"), gg.nn.Dense(8, 2))

    def tensors_alive():
        gc.collect()
        return sum(isinstance(o, gg.Tensor) for o in gc.get_objects())

    gg.fit(model, X, Y, loss="mse", optimizer=gg.optim.Adam(lr=0.01), epochs=1, batch_size=32, verbose=0)
    baseline = tensors_alive()      # the model, and its cached train program with the last optimizer
    for _ in range(20):
        gg.fit(model, X, Y, loss="mse", optimizer=gg.optim.Adam(lr=0.01), epochs=1, batch_size=32, verbose=0)
    assert tensors_alive() == baseline
