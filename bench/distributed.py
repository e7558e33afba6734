"""Data-parallel training on this machine: samples/s of gg.fit for case c (784-1024-1024-10 ReLU,
Adam, batch 256 and 1024) and the CNN (Keras' mnist_convnet, batch 128) as 1 process x 1 thread, 1 process
x 2 threads and 2 MPI ranks x 1 thread (mpirun -n 2, gg.fit(..., distributed=True), the global
batch split in two); the allreduce time per step; the scaling efficiency (2 ranks x 1 thread
against twice 1 process x 1 thread); the Python cost per distributed step; and, for the model's
gradient size, a ring-allreduce cost model for N hosts on 10/25/100 Gbit/s links.

    python bench/distributed.py            # or --quick; writes bench/results/distributed.json

Each configuration runs in fresh processes, --rounds times, alternating with the others; its number
is the best of --repeats timed epochs per launch (after a warm-up epoch) over the launches, since
other work on the machine only slows runs down.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _common  # noqa: E402

CASES = {
    "c256": dict(kind="mlp", sizes=[784, 1024, 1024, 10], batch=256, steps=24),
    "c1024": dict(kind="mlp", sizes=[784, 1024, 1024, 10], batch=1024, steps=8),
    "cnn": dict(kind="cnn", batch=128, steps=8),          # Keras' mnist_convnet at its batch size
    "tiny": dict(kind="mlp", sizes=[8, 8, 2], batch=8, steps=4000),    # Python's cost per step
}
#: link speeds for the cost model, Gbit/s, and the latency assumed per ring message (seconds)
LINKS_GBIT = (10, 25, 100)
LINK_LATENCY = 10e-6


def _model(case):
    import graphgrad as gg
    if case["kind"] == "cnn":       # Keras' mnist_convnet (examples/mnist_cnn.py, bench/conv_step.py's case d)
        nn = gg.nn
        return nn.Sequential(nn.Conv2D(1, 32, 3, activation="relu", seed=1), nn.MaxPool2D(2),
                             nn.Conv2D(32, 64, 3, activation="relu", seed=2), nn.MaxPool2D(2), nn.Flatten(),
                             nn.Dropout(0.5, seed=0), nn.Dense(1600, 10, seed=3))
    s = case["sizes"]
    return gg.nn.Sequential(*[gg.nn.Dense(a, b, activation="relu" if i < len(s) - 2 else None, seed=i)
                              for i, (a, b) in enumerate(zip(s, s[1:]))])


def worker(name: str, distributed: bool, repeats: int) -> dict:
    import numpy as np
    import graphgrad as gg
    case = CASES[name]
    if distributed:
        ctx = gg.distributed.init(threads=int(os.environ.get("GRAPHGRAD_NUM_THREADS", 1)))
    model = _model(case)
    rng = np.random.default_rng(0)
    n = case["batch"] * case["steps"]
    shape = (n, 1, 28, 28) if case["kind"] == "cnn" else (n, case["sizes"][0])
    X = rng.random(shape, dtype=np.float32)
    y = rng.integers(0, 10 if case["kind"] == "cnn" else case["sizes"][-1], n)
    opt = gg.optim.Adam(lr=1e-4)
    fit = dict(loss="softmax_cross_entropy", optimizer=opt, batch_size=case["batch"], seed=0, verbose=0,
               distributed=distributed)
    gg.fit(model, X[:case["batch"] * 2], y[:case["batch"] * 2], epochs=1, **fit)     # compile, warm up
    best, profile = 0.0, {}
    for _ in range(repeats):
        h = gg.fit(model, X, y, epochs=1, **fit)
        if h.samples_per_second[0] > best:
            best = h.samples_per_second[0]
            if distributed:     # seconds per step in each phase (this rank's; rank 0 reports)
                profile = {f"{k.replace('_seconds', '')}_per_step": v[0] / case["steps"]
                           for k, v in h.distributed.items() if k.endswith("_seconds")}
                profile["path"] = h.distributed["path"]
    program = next(g.program for k, g in model._gg_graphs.items() if k[0] == "train")
    grad_bytes = (program.gradient_buffer().nbytes if program.gradient_nodes else
                  sum(p.value.nbytes for p in model.parameters()))
    out = {"samples_per_s": best, "seconds_per_step": case["batch"] / best, "gradient_bytes": grad_bytes}
    if distributed:
        out.update(profile, ranks=ctx.size, threads=ctx.threads)
        if ctx.rank != 0:
            return {}
    return out


def launch(name: str, ranks: int, threads: int, distributed: bool, repeats: int, timeout: float = 600,
           env_extra: dict | None = None):
    """One configuration in fresh processes: its worker's JSON (rank 0's), or None."""
    env = dict(os.environ, **(env_extra or {}))
    for var in _common.THREAD_VARS:
        env[var] = str(threads)
    cmd = [sys.executable, __file__, "--worker", name, "--repeats", str(repeats)]
    if distributed:
        cmd.append("--distributed")
    if ranks > 1:
        beside = os.path.join(os.path.dirname(sys.executable), "mpirun")   # a venv's (pip's mpich wheel)
        launcher = beside if os.access(beside, os.X_OK) else shutil.which("mpirun") or shutil.which("mpiexec")
        if launcher is None:
            return {"error": "mpirun not found (pip install mpi4py mpich)"}
        cmd = [launcher, "-n", str(ranks)] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}


def pieces(iterations: int) -> dict:
    """The 2-rank step's pieces for case c at batch 256, timed in one process, 1 thread, round-robin
    (so load hits them alike; each is its minimum over the iterations): the 1-process step at 256
    rows, a rank's forward+backward at 128 rows, the whole Adam update and each rank's half
    (run_steps(only=...)), and one rank's slice sum (np.add + the 1/2 multiply over half the
    region). The projected 2-rank step is 128-row forward+backward + slice sum + the larger update
    half + two barriers (~30 us)."""
    import time
    import numpy as np
    import graphgrad as gg
    from graphgrad import distributed as dist, train
    gg.set_num_threads(1)
    s = CASES["c256"]["sizes"]
    graphs = [train._build(_model(CASES["c256"]), "train", (s[0],), (), np.int64, "softmax_cross_entropy",
                           gg.optim.Adam(lr=1e-5), False, split_gradients=split) for split in (False, True)]
    rng = np.random.default_rng(0)
    X, y = rng.random((256 * 8, s[0]), dtype=np.float32), rng.integers(0, s[-1], 256 * 8)
    plain, split = [(g.program, {g.x: X, g.y: y}) for g in graphs]
    only, ranges, _, _ = dist._SharedMemoryStep._update_owners(split[0], 128, 2)
    G = split[0].gradient_buffer(128).size - 4
    a, b = np.ones(G, np.float32), np.ones(G, np.float32)
    lo, hi = ranges[1]
    loss = np.zeros(1)
    runs = {"step at 256 rows": lambda k: plain[0].run_steps(plain[1], 256, first_step=k, n_steps=1, losses=loss),
            "forward+backward at 128 rows": lambda k: split[0].run_steps(split[1], 128, first_step=k, n_steps=1,
                                                                        losses=loss, part="gradients"),
            "Adam, whole region": lambda k: split[0].run_steps(split[1], 128, first_step=k, n_steps=1, part="updates"),
            "Adam, rank 0's half": lambda k: split[0].run_steps(split[1], 128, first_step=k, n_steps=1,
                                                                part="updates", only=only[0]),
            "Adam, rank 1's half": lambda k: split[0].run_steps(split[1], 128, first_step=k, n_steps=1,
                                                                part="updates", only=only[1]),
            "slice sum (half region)": lambda k: (np.add(a[lo:hi], b[lo:hi], out=a[lo:hi]),
                                                  np.multiply(a[lo:hi], 0.5, out=a[lo:hi]))}
    best = {name: float("inf") for name in runs}
    for it in range(iterations):
        for name, run in runs.items():
            t = time.perf_counter()
            run(it % 8)
            best[name] = min(best[name], time.perf_counter() - t)
    two = (best["forward+backward at 128 rows"] + best["slice sum (half region)"]
           + max(best["Adam, rank 0's half"], best["Adam, rank 1's half"]) + 30e-6)
    return {"seconds": best, "projected_two_rank_step_s": two,
            "projected_efficiency": best["step at 256 rows"] / (2 * two)}


def ring_model(gradient_bytes: int, seconds_per_sample: float, batch: int) -> list[dict]:
    """Ring allreduce over N hosts: each host sends and receives 2 (N-1)/N of the gradient bytes in
    2 (N-1) messages, so t = 2 (N-1)/N * bytes / bandwidth + 2 (N-1) * latency. The compute of a
    step shrinks to batch / N samples per host (at this machine's 2-thread speed); efficiency =
    compute / (compute + allreduce), with no overlap of the two (graphgrad does not overlap them)."""
    rows = []
    for hosts in (2, 4, 8, 16, 64):
        compute = seconds_per_sample * batch / hosts
        for gbit in LINKS_GBIT:
            t = 2 * (hosts - 1) / hosts * gradient_bytes / (gbit * 1e9 / 8) + 2 * (hosts - 1) * LINK_LATENCY
            rows.append({"hosts": hosts, "gbit": gbit, "allreduce_s": t, "compute_s": compute,
                         "efficiency": compute / (compute + t)})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", default=None)
    parser.add_argument("--distributed", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)   # (set by _common-style launchers)
    parser.add_argument("--quick", action="store_true", help="c256 and the CNN, 2 repeats, 1 round")
    parser.add_argument("--cases", nargs="+", default=None, choices=["c256", "c1024", "cnn"],
                        help="the cases to run (default: all; --quick: c256 and cnn)")
    parser.add_argument("--rounds", type=int, default=2, help="launches of each configuration (the best counts)")
    parser.add_argument("--host-samples-per-s", type=float, default=None,
                        help="the cost model's compute speed of one host on case c256 (default: this machine's "
                             "best measured)")
    parser.add_argument("--pieces", type=int, default=0, metavar="N",
                        help="only time the 2-rank step's pieces in one process, N round-robin iterations")
    args = parser.parse_args()
    if args.pieces:
        print(f"load average {os.getloadavg()[0]:.1f}; case c, 1 thread, minimum of {args.pieces} round-robin runs:")
        r = pieces(args.pieces)
        for name, t in r["seconds"].items():
            print(f"  {name:<30} {t * 1e3:7.2f} ms")
        print(f"projected 2-rank step {r['projected_two_rank_step_s'] * 1e3:.2f} ms, efficiency "
              f"{r['projected_efficiency']:.2f} (the 1-process step / twice the projected 2-rank step)")
        return
    if args.worker:
        try:
            result = worker(args.worker, args.distributed, args.repeats)
            import graphgrad as gg
            if result and gg.distributed.is_main():   # rank 0 (or the only process) reports; the others stay quiet
                print(json.dumps(result), flush=True)
        except Exception as err:  # noqa: BLE001  (reported in the table, not fatal to the others)
            print(json.dumps({"error": f"{type(err).__name__}: {err}"[:200]}))
        return

    repeats = 2 if args.quick else args.repeats
    if args.quick:
        args.rounds = 1
    names = args.cases or (["c256", "cnn"] if args.quick else ["c256", "c1024", "cnn"])
    # the 2-rank rows: graphgrad's default (shared-memory reduction, sharded update) and the flat
    # path (one MPI Allreduce of the whole region, the whole update on every rank)
    configs = [("1 proc x 1 thread", 1, 1, False, {}), ("1 proc x 2 threads", 1, 2, False, {}),
               ("2 ranks x 1 thread", 2, 1, True, {}),
               ("2 ranks, MPI allreduce", 2, 1, True, {"GRAPHGRAD_DIST_SHM": "0"})]
    machine = _common.machine()
    machine["load_average"] = os.getloadavg()
    print(f"CPU: {machine['cpu']}, {machine['cores']} cores, load average {machine['load_average'][0]:.1f} "
          "(other work on the cores slows every configuration; the 2-rank one most)")
    results = {"machine": machine, "cases": {}, "overhead": {}, "cost_model": {}}
    print(f"{'case':<7} {'configuration':<22} {'samples/s':>11} {'ms/step':>9} {'allreduce ms/step':>18} "
          f"{'Python us/step':>15}")
    for name in names:
        row = {}
        for _ in range(args.rounds):      # configurations alternate, so a burst of load hits them alike
            for label, ranks, threads, distributed, extra in configs:
                r = launch(name, ranks, threads, distributed, repeats, env_extra=extra)
                if "error" in r or r.get("samples_per_s", 0) > row.get(label, {}).get("samples_per_s", -1):
                    row[label] = r
        for label, ranks, threads, distributed, extra in configs:
            r = row[label]
            if "error" in r:
                print(f"{name:<7} {label:<22} {r['error']}")
                continue
            ar = f"{r['allreduce_per_step'] * 1e3:.2f}" if "allreduce_per_step" in r else "-"
            py = f"{r['python_per_step'] * 1e6:.0f}" if "python_per_step" in r else "-"
            print(f"{name:<7} {label:<22} {r['samples_per_s']:>11,.0f} {r['seconds_per_step'] * 1e3:>9.2f} "
                  f"{ar:>18} {py:>15}")
        one = row.get("1 proc x 1 thread", {})
        for label in ("2 ranks x 1 thread", "2 ranks, MPI allreduce"):
            two = row.get(label, {})
            if "samples_per_s" in one and "samples_per_s" in two:
                eff = row[f"scaling_efficiency ({label})"] = two["samples_per_s"] / (2 * one["samples_per_s"])
                print(f"{name:<7} scaling efficiency, {label} / twice 1 proc x 1 thread: {eff:.2f}   (target >= 0.9)")
        two = row.get("2 ranks x 1 thread", {})
        if "gradients_per_step" in two:     # where rank 0's step goes
            print(f"{name:<7} 2-rank step profile (rank 0, {two['path']}), ms/step: forward+backward on its half "
                  f"{two['gradients_per_step'] * 1e3:.2f}, reduction {two['allreduce_per_step'] * 1e3:.2f}, its "
                  f"share of the update {two['update_per_step'] * 1e3:.2f}, Python {two['python_per_step'] * 1e3:.2f}")
        results["cases"][name] = row

    # Python's cost per step: a model so small that C takes almost nothing, 1 rank, plain vs distributed
    plain = launch("tiny", 1, 1, False, repeats)
    dist1 = launch("tiny", 1, 1, True, repeats)
    if "samples_per_s" in plain and "samples_per_s" in dist1:
        extra = dist1["seconds_per_step"] - plain["seconds_per_step"]
        results["overhead"] = {"plain_step_s": plain["seconds_per_step"], "distributed_step_s": dist1["seconds_per_step"],
                               "extra_per_step_s": extra, "python_outside_c_s": dist1["python_per_step"],
                               "allreduce_1_rank_s": dist1["allreduce_per_step"]}
        print(f"\nPython per distributed step (8-8-2 MLP, batch 8, 1 rank): a step takes "
              f"{dist1['seconds_per_step'] * 1e6:.1f} us against {plain['seconds_per_step'] * 1e6:.1f} us in plain "
              f"gg.fit (+{extra * 1e6:.1f} us: two C calls instead of part of one, the weight/tail writes, the "
              f"1-rank allreduce {dist1['allreduce_per_step'] * 1e6:.1f} us, and the loop)")
    dist2 = launch("tiny", 2, 1, True, repeats)
    if "samples_per_s" in dist2:
        results["overhead"]["two_ranks_shared_memory"] = dist2
        print(f"the same on 2 ranks ({dist2['path']}): a step takes {dist2['seconds_per_step'] * 1e6:.1f} us: "
              f"gradient part {dist2['gradients_per_step'] * 1e6:.1f} us, reduction {dist2['allreduce_per_step'] * 1e6:.1f} "
              f"us (two barriers, the slice sums, the tail), update part {dist2['update_per_step'] * 1e6:.1f} us, "
              f"loop {dist2['python_per_step'] * 1e6:.1f} us")

    base = results["cases"].get("c256", {})
    speeds = [base.get(k, {}).get("samples_per_s", 0) for k in ("1 proc x 1 thread", "1 proc x 2 threads")]
    speed = args.host_samples_per_s or max(speeds)
    grad = base.get("2 ranks x 1 thread", {}).get("gradient_bytes")
    if speed and grad:
        rows = ring_model(grad, 1 / speed, 256)
        results["cost_model"] = {"gradient_bytes": grad, "latency_s": LINK_LATENCY, "host_samples_per_s": speed,
                                 "rows": rows}
        print(f"\nring allreduce cost model, case c (gradient region {grad / 1e6:.2f} MB), global batch 256, "
              f"each host computing {speed:,.0f} samples/s (--host-samples-per-s), {LINK_LATENCY * 1e6:.0f} us "
              "per message")
        print(f"{'hosts':>5} " + " ".join(f"{f'{g} Gbit/s: ms  eff':>21}" for g in LINKS_GBIT) + f" {'compute ms':>11}")
        for hosts in sorted({r["hosts"] for r in rows}):
            cells = [r for r in rows if r["hosts"] == hosts]
            print(f"{hosts:>5} " + " ".join(f"{r['allreduce_s'] * 1e3:>15.2f} {r['efficiency']:>5.2f}" for r in cells)
                  + f" {cells[0]['compute_s'] * 1e3:>11.2f}")
    print(f"\nwrote {_common.write_json('distributed.json', results)}")


if __name__ == "__main__":
    main()
