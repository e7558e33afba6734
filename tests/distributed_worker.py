"""One rank of a distributed test job: tests/test_distributed.py launches this file under
`mpirun -n 2 python tests/distributed_worker.py CASE OUT` and checks what the ranks wrote to OUT
(one .npz or .txt per rank) and how the job ended."""
import os
import signal
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout first
import graphgrad as gg  # noqa: E402
from graphgrad import distributed as dist  # noqa: E402
from distributed_models import mnist_cnn, mnist_mlp, small_mlp  # noqa: E402  (tests/ is the script's dir)

CASE, OUT = sys.argv[1], sys.argv[2]
# cases that must end the job get a short collective timeout, so the watchdog case ends quickly
ctx = dist.init(timeout=4.0 if CASE in ("hang", "raise", "exit") else 120.0)
RANK = ctx.rank


def mnist(n):
    (X, y), _ = gg.datasets.mnist()
    return X[:n], y[:n]


def mnist_images(n):
    (X, y), _ = gg.datasets.mnist(flatten=False)
    return X[:n].reshape(n, 1, 28, 28), y[:n]


def save_rank(**arrays):
    np.savez(os.path.join(OUT, f"rank{RANK}.npz"), **arrays)


def state_of(model, optimizer):
    """Every parameter and optimizer state array, by a stable name."""
    out = {f"p{i}": p.value for i, p in enumerate(model.parameters())}
    for i, p in enumerate(model.parameters()):
        for slot, var in optimizer.state_of(p).items():
            out[f"s{i}/{slot}"] = var.value
    out["step"] = np.array(optimizer.step_count)
    return out


def loopback_bytes() -> int:
    with open("/sys/class/net/lo/statistics/tx_bytes") as f:
        return int(f.read())


if CASE in ("equal", "equal_tcp"):
    # 20 Adam steps at global batch 64 on the MNIST MLP
    X, y = mnist(20 * 64)
    model, opt = mnist_mlp(), gg.optim.Adam(lr=1e-3)
    sent_before = loopback_bytes()
    (_, _), (Xt, yt) = gg.datasets.mnist()
    h = gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=opt, epochs=1, batch_size=64, seed=5,
               metrics=["accuracy"], verbose=0, distributed=True, validation_data=(Xt[:301], yt[:301]))
    sent = loopback_bytes() - sent_before
    program = model._gg_graphs[next(k for k in model._gg_graphs if k[0] == "train")].program
    save_rank(**state_of(model, opt), loss=np.array(h.history["loss"]), accuracy=np.array(h.history["accuracy"]),
              val=np.array([h.history["val_loss"][0], h.history["val_accuracy"][0]]),
              step_losses=h.step_losses[0], loopback_bytes=np.array(sent),
              region_bytes=np.array(program.gradient_buffer().nbytes), threads=np.array(gg.get_num_threads()))

elif CASE in ("equal_cnn", "equal_cnn64"):
    # 20 Adam steps at global batch 32 on the CNN, float32 or float64
    dtype = "float64" if CASE == "equal_cnn64" else "float32"
    X, y = mnist_images(20 * 32)
    X = X.astype(dtype)
    model, opt = mnist_cnn(dtype=dtype), gg.optim.Adam(lr=1e-3)
    h = gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=opt, epochs=1, batch_size=32, seed=5,
               metrics=["accuracy"], verbose=0, distributed=True)
    save_rank(**state_of(model, opt), step_losses=h.step_losses[0], path=np.array(h.distributed["path"]))

elif CASE == "batchnorm":
    # BatchNorm normalises by each rank's own rows; the running statistics are averaged over the
    # ranks at the end of every epoch. With lr=0 the parameters stay put, so the test can rebuild
    # each rank's running statistics in one process; then 2 epochs of Adam, ranks bit-identical
    X, y = mnist_images(6 * 20)
    frozen = mnist_cnn(batch_norm=True)
    gg.fit(frozen, X, y, loss="softmax_cross_entropy", optimizer=gg.optim.SGD(lr=0.0), epochs=1, batch_size=20,
           shuffle=False, verbose=0, distributed=True)
    model, opt = mnist_cnn(batch_norm=True), gg.optim.Adam(lr=1e-3)
    h = gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=opt, epochs=2, batch_size=20, seed=1,
               verbose=0, distributed=True)
    save_rank(**{f"frozen/b{i}": b.value for i, b in enumerate(frozen.buffers())},
              **{f"trained/{k}": v for k, v in state_of(model, opt).items()},
              **{f"trained/b{i}": b.value for i, b in enumerate(model.buffers())}, loss=np.array(h.history["loss"]))

elif CASE == "uneven":
    # float64: global batch 7 split 4 + 3, a ragged last batch of 1 row (rank 1 gets none)
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(22, 12)), rng.normal(size=(22, 3))
    model, opt = small_mlp(), gg.optim.SGD(lr=0.1, momentum=0.5)
    h = gg.fit(model, X, Y, loss="mse", optimizer=opt, epochs=2, batch_size=7, seed=2, verbose=2, distributed=True)
    gg.save(os.path.join(OUT, f"saved_by_rank{RANK}.npz"), model, opt)     # only rank 0's call writes
    save_rank(**state_of(model, opt), loss=np.array(h.history["loss"]), path=np.array(h.distributed["path"]),
              hosts=np.array(0 if ctx.cross is None else ctx.cross.Get_size()))

elif CASE == "gradient_stats":
    # float64, an uneven split (global batch 7: 4 + 3 rows, a ragged last batch of 1): GradientStats
    # every 2 steps records the reduced gradient's and the update's norms, the same on every rank
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(22, 12)), rng.normal(size=(22, 3))
    model, opt = small_mlp(), gg.optim.Adam(lr=0.01)
    stats = gg.callbacks.GradientStats(every=2)
    h = gg.fit(model, X, Y, loss="mse", optimizer=opt, epochs=2, batch_size=7, seed=2, verbose=0, distributed=True,
               callbacks=[stats])
    save_rank(**state_of(model, opt), path=np.array(h.distributed["path"]), steps=np.array(stats.stats["step"]),
              **{f"{i}/{k}": np.array(v) for i, name in enumerate(stats.names) for k, v in stats.stats[name].items()})

elif CASE == "mismatch":
    # rank 1 builds a wider hidden layer: both ranks must raise DistributedError
    X, y = mnist(256)
    model = mnist_mlp(hidden=64 if RANK == 0 else 96)
    try:
        gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=gg.optim.Adam(), batch_size=64, verbose=0,
               distributed=True)
        message = "no error"
    except gg.DistributedError as err:
        message = f"DistributedError: {err}"
    with open(os.path.join(OUT, f"rank{RANK}.txt"), "w") as f:
        f.write(message)

elif CASE == "collective_errors":
    # errors decided together: a diverging loss, and a bad class label in one rank's share
    rng = np.random.default_rng(4)
    X = rng.normal(size=(40, 12)) * 100
    Y = rng.normal(size=(40, 3)) * 100
    model, opt = small_mlp(), gg.optim.SGD(lr=1e6)
    before = [p.value for p in model.parameters()]
    lines = []
    try:
        gg.fit(model, X, Y, loss="mse", optimizer=opt, epochs=50, batch_size=8, seed=1, verbose=0, distributed=True)
        lines.append("no divergence")
    except gg.DivergenceError as err:
        finite = all(np.isfinite(p.value).all() for p in model.parameters())
        lines.append(f"DivergenceError at epoch {err.epoch} step {err.step}, finite {finite}")
    Xm, y = mnist(64)
    y = y.copy()
    y[5] = 99                           # rows 0-31 are rank 0's in the first step (no shuffle)
    try:
        gg.fit(mnist_mlp(hidden=16), Xm, y, loss="softmax_cross_entropy", optimizer=gg.optim.Adam(),
               batch_size=64, shuffle=False, verbose=0, distributed=True)
        lines.append("no error")
    except gg.GraphGradError as err:
        lines.append(f"{type(err).__name__}: {str(err).splitlines()[0]}")
    with open(os.path.join(OUT, f"rank{RANK}.txt"), "w") as f:
        f.write("\n".join(lines))

elif CASE in ("raise", "hang", "exit"):
    # rank 1 fails half a second into a long epoch: it raises, blocks forever, or dies
    X, y = mnist(4000)
    model = mnist_mlp()
    if RANK == 1:
        def fault(signum, frame):
            if CASE == "raise":
                raise RuntimeError("injected fault on rank 1")
            if CASE == "exit":
                os._exit(3)
            while True:
                time.sleep(3600)
        signal.signal(signal.SIGALRM, fault)
        signal.setitimer(signal.ITIMER_REAL, 0.5)
    gg.fit(model, X, y, loss="softmax_cross_entropy", optimizer=gg.optim.Adam(), epochs=1000, batch_size=32,
           verbose=0, distributed=True)
    print(f"rank {RANK} finished training: the fault did not stop it", flush=True)

elif CASE == "resume":
    # 2 epochs, checkpoint (rank 0 writes), load on every rank, 2 more == 4 epochs straight
    X, y = mnist(600)
    path = os.path.join(OUT, "ckpt.npz")
    straight, opt_s = mnist_mlp(hidden=32), gg.optim.Adam(lr=1e-3)
    gg.fit(straight, X, y, loss="softmax_cross_entropy", optimizer=opt_s, epochs=4, batch_size=50, seed=9,
           verbose=0, distributed=True)
    first, opt_f = mnist_mlp(hidden=32), gg.optim.Adam(lr=1e-3)
    gg.fit(first, X, y, loss="softmax_cross_entropy", optimizer=opt_f, epochs=2, batch_size=50, seed=9,
           verbose=0, distributed=True, callbacks=[gg.ModelCheckpoint(path, optimizer=opt_f)])
    dist.barrier()                      # rank 0's checkpoint is on disk before anyone reads it
    ckpt = gg.load(path)
    gg.fit(ckpt.model, X, y, loss="softmax_cross_entropy", optimizer=ckpt.optimizer, epochs=2, batch_size=50,
           seed=9, verbose=0, distributed=True)
    a, b = state_of(straight, opt_s), state_of(ckpt.model, ckpt.optimizer)
    save_rank(**{f"straight/{k}": v for k, v in a.items()}, **{f"resumed/{k}": v for k, v in b.items()},
              epochs=np.array(ckpt.model.epochs_trained), files=np.array(sorted(os.listdir(OUT))))

else:
    raise SystemExit(f"unknown case {CASE}")
