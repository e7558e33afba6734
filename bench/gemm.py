"""GEMM throughput: graphgrad's packed GEMM (csrc/gemm.c) against numpy.matmul (OpenBLAS),
measured in the same run, on 1 and 2 threads.

Cases: square n = 64..2048 and the MLP layer products of bench/train_step.py (forward X·W and the
backward forms Xᵀ·dY and dY·Wᵀ), in float32 and float64. The issue's bar is graphgrad ≥ 0.95×
OpenBLAS on square 256-2048 and the MLP products; the end of the table lists the rows under it. graphgrad is called through gg_gemm_* with a
workspace allocated once (as a compiled program does); NumPy gets the transposes as views, so
OpenBLAS sees the same transpose flags. The two sides alternate batch by batch (--rounds batches
each, default 6, each at least 30 ms of calls), best batch kept.

Peak: measured, not assumed (bench/fma_peak.py): independent FMA chains in the widest registers of
each kernel set this CPU runs, on 1 and 2 threads, each thread timed by its own CPU clock. %peak is
graphgrad's rate against the peak of the kernel set it runs (gg.isa(); GRAPHGRAD_ISA=avx2 python
bench/gemm.py benchmarks another), numpy's against the best set's (OpenBLAS picks its own kernels).
The peak is measured again after the table; where that reading is higher by more than a tenth, the
first one was taken while the host slowed a core, and the JSON's %peak uses the higher one.

Timing: 1-thread rows use the thread's CPU time (both sides run in the calling thread), which other
processes on a shared machine do not inflate; 2-thread rows use wall time, which they do, so they keep the fastest single call: read the
load average printed with the table before trusting those, and the "cores" column (graphgrad's process
CPU seconds per wall second while it was timed: near 2.0 when both its threads had a core, near 1
when another process held one of them).

OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are left as the machine sets them (printed below).

    python bench/gemm.py            # the full table (a few minutes on 2 cores)
    python bench/gemm.py --quick    # fewer, smaller cases
Writes bench/results/gemm.json.
"""
from __future__ import annotations

import argparse
import ctypes
import glob
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import graphgrad as gg  # noqa: E402
from graphgrad import _core  # noqa: E402
from graphgrad._core import ffi, lib  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fma_peak import measure_peaks  # noqa: E402

PEAK_SET = {"avx512": "avx512", "avx2": "avx2", "sse2": "generic", "portable": "generic"}   # micro-kernel -> its peak loop


class OpenBLAS:
    """Sets the thread count of NumPy's OpenBLAS through its exported setter."""

    def __init__(self):
        self._set, self.corename = None, "?"
        libs = glob.glob(os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs", "*openblas*"))
        for path in libs:
            so = ctypes.CDLL(path)
            for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                         "openblas_set_num_threads"):
                if hasattr(so, name):
                    self._set = getattr(so, name)
                    break
            for name in ("scipy_openblas_get_corename64_", "openblas_get_corename64_", "openblas_get_corename"):
                if hasattr(so, name):
                    fn = getattr(so, name)
                    fn.restype = ctypes.c_char_p
                    self.corename = fn().decode()
                    break
        if self._set is None:
            raise SystemExit("bench/gemm.py: cannot find NumPy's OpenBLAS thread setter")

    def set_threads(self, n: int):
        self._set(ctypes.c_int(n))


def _ptr(arr):
    return ffi.cast("float *" if arr.dtype == np.float32 else "double *", arr.ctypes.data)


def calls_for(fn, min_batch_s: float, clock) -> int:
    """How many calls of fn (after a warm-up call) last about min_batch_s."""
    fn()
    t0 = clock()
    fn()
    return max(1, int(min_batch_s / max(clock() - t0, 1e-7)))


def wait_until_idle(window_s: float = 0.01, most_s: float = 2.0) -> None:
    """Sleep until this process's other threads stop using the CPU (under a tenth of a core over one
    window). After a call OpenBLAS's idle workers keep spinning for a number of TSC cycles (its
    THREAD_TIMEOUT): measured 0.14 s on a Sapphire Rapids with a 2.0 GHz TSC, about 2^28 cycles, where
    the fixed 0.1 s sleep this replaced left one spinning through graphgrad's next 2-thread batch and
    halved it. libgomp's idle workers spin too, briefly."""
    end = time.perf_counter() + most_s
    while time.perf_counter() < end:
        c0 = time.process_time()
        time.sleep(window_s)
        if time.process_time() - c0 < 0.1 * window_s:
            return


def batch_seconds(fn, calls: int, clock, each: bool = False) -> float:
    """Seconds per call over one batch of `calls` calls; each=True: the fastest single call of the batch."""
    if each:
        best = float("inf")
        for _ in range(calls):
            t0 = clock()
            fn()
            best = min(best, clock() - t0)
        return best
    t0 = clock()
    for _ in range(calls):
        fn()
    return (clock() - t0) / calls


def run_case(name, dtype, m, n, k, ta, tb, threads, blas, min_batch_s, rounds):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    c = np.empty((m, n), dtype)
    sfx = "f32" if dtype == np.float32 else "f64"
    nbytes = getattr(lib, f"gg_gemm_workspace_bytes_{sfx}")(m, n, k, threads)
    work = np.empty(max(nbytes, 1), np.uint8)
    gemm = getattr(lib, f"gg_gemm_{sfx}")
    pc, pa, pb, pw = _ptr(c), _ptr(a), _ptr(b), ffi.cast("void *", work.ctypes.data)
    oa, ob = (a.T if ta else a), (b.T if tb else b)
    out = np.empty((m, n), dtype)

    def run_gg():
        gemm(pc, pa, pb, m, n, k, ta, tb, 1.0, 0.0, ffi.NULL, pw, nbytes)

    def run_np():
        np.matmul(oa, ob, out=out)

    gg.set_num_threads(threads)
    blas.set_threads(threads)
    run_gg()
    run_np()
    ref_err = float(np.max(np.abs(c - out)) / (np.max(np.abs(out)) + 1e-30))
    # one thread: both sides run in this thread, so its CPU time is the honest measure even when other
    # processes share the cores; two threads: wall time (CPU time would count the waiting too)
    clock = time.thread_time if threads == 1 else time.perf_counter
    # with more threads, the fastest single call: on a shared host most calls lose a thread to another
    # process for a time slice somewhere, and the fastest call is the one where none was lost
    each = threads > 1
    t_gg = t_np = float("inf")
    wait_until_idle()
    calls_gg = calls_for(run_gg, min_batch_s, clock)
    wait_until_idle()
    calls_np = calls_for(run_np, min_batch_s, clock)
    cpu_gg = wall_gg = 0.0   # graphgrad's process CPU time per wall second: 2 when both threads ran
    for _ in range(rounds):   # the two sides alternate batch by batch, so a noisy neighbour hits both alike
        # the other side's idle workers spin for a while after a call and would take the core this
        # side's second thread needs (or share the one thread's core): let them go to sleep first
        wait_until_idle()
        c0, w0 = time.process_time(), time.perf_counter()
        t_gg = min(t_gg, batch_seconds(run_gg, calls_gg, clock, each))
        cpu_gg, wall_gg = cpu_gg + time.process_time() - c0, wall_gg + time.perf_counter() - w0
        wait_until_idle()
        t_np = min(t_np, batch_seconds(run_np, calls_np, clock, each))
    flop = 2.0 * m * n * k
    return {"case": name, "dtype": np.dtype(dtype).name, "m": m, "n": n, "k": k, "trans_a": ta, "trans_b": tb,
            "threads": threads, "gg_gflops": flop / t_gg / 1e9, "numpy_gflops": flop / t_np / 1e9,
            "ratio": t_np / t_gg, "rel_diff": ref_err, "gg_cores_used": cpu_gg / wall_gg}


def cases(quick: bool):
    out = []
    sizes = [64, 128, 256, 512] if quick else [64, 128, 256, 512, 1024, 2048]
    for dtype in (np.float32, np.float64):
        for s in sizes:
            out.append((f"square {s}", dtype, s, s, s, 0, 0, "square"))
    # the layer products of bench/train_step.py's cases a, b and c (c's first layer is 784 wide)
    mlp = [(10, 784, 30), (64, 784, 128), (256, 784, 1024), (256, 1024, 1024)] + \
        ([] if quick else [(1024, 784, 1024), (1024, 1024, 1024)])
    for dtype in (np.float32, np.float64):
        for batch, fin, fout in mlp:
            out.append((f"X·W    ({batch}x{fin})·({fin}x{fout})", dtype, batch, fout, fin, 0, 0, "mlp"))
            out.append((f"Xᵀ·dY  ({fin}x{batch})·({batch}x{fout})", dtype, fin, fout, batch, 1, 0, "mlp"))
            out.append((f"dY·Wᵀ  ({batch}x{fout})·({fout}x{fin})", dtype, batch, fin, fout, 0, 1, "mlp"))
    return out


def in_target(row) -> bool:
    """The rows the issue's bar (graphgrad >= 0.95x OpenBLAS) is about: square 256-2048 and the MLP products."""
    return row["group"] == "mlp" or (row["group"] == "square" and row["m"] >= 256)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer, smaller cases")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--only", default="", help="run only the cases whose name contains this text")
    ap.add_argument("--dtype", choices=["float32", "float64"], help="run only this dtype")
    ap.add_argument("--rounds", type=int, default=6, help="alternating timed batches per side (best kept)")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "gemm.json"))
    args = ap.parse_args()

    blas = OpenBLAS()
    cfg = gg.gemm_config()
    isa = cfg["micro_kernel"]
    runnable = [x for x in _core.supported_kernel_sets() if x != "custom"] or [PEAK_SET[isa]]
    peaks = measure_peaks(runnable, args.threads)
    env = {v: os.environ.get(v, "(unset)") for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 "?") if os.path.exists("/proc/cpuinfo") else "?"
    print(f"{model}; graphgrad kernel set {gg.isa()} (micro-kernel {isa} {cfg['mr']}x{cfg['nr']}, "
          f"KC {cfg['kc']} NB {cfg['nb']} MB {cfg['mb']} from L1d {cfg['l1d_bytes'] >> 10} KiB, L2 "
          f"{cfg['l2_bytes'] >> 10} KiB); NumPy {np.__version__}, OpenBLAS core {blas.corename}; env left as is: {env}")
    print("FMA peak, GFLOP/s float32 (float64 is half), measured with independent chains: " +
          ", ".join(f"{s} {t} thr {g:.0f}" for (s, t), g in peaks.items()) +
          f"; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n")

    def peak_of(kernel_set, dtype, threads):
        g = peaks.get((kernel_set, threads))
        return None if g is None else g / (1 if np.dtype(dtype) == np.float32 else 2)

    def set_peak_fractions(r):
        own, best = peak_of(PEAK_SET[isa], r["dtype"], r["threads"]), peak_of(runnable[0], r["dtype"], r["threads"])
        r["peak_fraction"] = r["gg_gflops"] / own if own else None
        r["numpy_peak_fraction"] = r["numpy_gflops"] / best if best else None

    min_batch_s, rounds = (0.02, 3) if args.quick else (0.03, args.rounds)
    rows = []
    head = (f"{'case':38} {'dtype':7} {'thr':>3} {'graphgrad':>10} {'numpy':>8} {'ratio':>6} {'%peak':>6} "
            f"{'np%pk':>6} {'cores':>5}")
    print(head + "\n" + "-" * len(head))
    for name, dtype, m, n, k, ta, tb, group in cases(args.quick):
        if args.only not in name or (args.dtype and np.dtype(dtype).name != args.dtype):
            continue
        for threads in args.threads:
            r = run_case(name, dtype, m, n, k, ta, tb, threads, blas, min_batch_s, rounds)
            r["group"] = group
            set_peak_fractions(r)
            rows.append(r)
            pct = lambda f: f"{100 * f:5.0f}%" if f else "    ?"   # noqa: E731
            print(f"{name:38} {r['dtype']:7} {threads:>3} {r['gg_gflops']:10.1f} {r['numpy_gflops']:8.1f} "
                  f"{r['ratio']:6.2f} {pct(r['peak_fraction'])} {pct(r['numpy_peak_fraction'])} "
                  f"{r['gg_cores_used']:5.2f}", flush=True)
            if r["rel_diff"] > (1e-3 if dtype == np.float32 else 1e-9):
                raise SystemExit(f"graphgrad and NumPy disagree on {name}: relative difference {r['rel_diff']}")

    # the peak once more, after the table: a reading taken while the host slowed a core (one run read a
    # 2-thread avx512 peak of 126 GFLOP/s where the runs around it read 225-234) would inflate %peak
    wait_until_idle()   # OpenBLAS's workers, still spinning after the last row, would share the cores
    again = measure_peaks(runnable, args.threads)
    low_peaks = {key: g for key, g in again.items() if g > 1.1 * peaks.get(key, g)}
    if low_peaks:
        print("\nFMA peak measured again after the table: " + ", ".join(
            f"{s} {t} thr {g:.0f} (before {peaks[(s, t)]:.0f})" for (s, t), g in low_peaks.items()) +
            "; the %peak columns above used the low reading, the JSON has them against the higher one")
        peaks.update(low_peaks)
        for r in rows:
            set_peak_fractions(r)

    target = [r for r in rows if in_target(r)]
    low = [r for r in target if r["ratio"] < 0.95]
    if target:
        for threads in args.threads:
            got = sorted(r["ratio"] for r in target if r["threads"] == threads)
            if got:
                print(f"\n{threads} thread(s): graphgrad / numpy over the {len(got)} target rows (square 256-2048, "
                      f"MLP products): min {got[0]:.2f}x, median {got[len(got) // 2]:.2f}x")
        print(f"target rows under 0.95x: {len(low)}" + "".join(
            f"\n  {r['case']} {r['dtype']} {r['threads']} thr: {r['ratio']:.2f}x" for r in low))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"load_average_end": os.getloadavg()[0], "cpu": model, "kernel_set": gg.isa(),
                   "gemm_config": cfg, "fma_peak_f32_gflops": {f"{s}/{t}": g for (s, t), g in peaks.items()},
                   "kernel": isa, "numpy": np.__version__,
                   "openblas_core": blas.corename, "env": env, "rows": rows}, f, indent=1)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}; wrote {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
