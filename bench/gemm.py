"""GEMM throughput: graphgrad's packed GEMM (csrc/gemm.c) against numpy.matmul (OpenBLAS),
measured in the same run, on 1 and 2 threads.

Cases: square n = 64..2048 in float32 and float64; the MLP layer products (forward X·W and the
backward forms Xᵀ·dY and dY·Wᵀ) in float32. graphgrad is called through gg_gemm_* with a
workspace allocated once (as a compiled program does); NumPy gets the transposes as views, so
OpenBLAS sees the same transpose flags. Each side is timed alternately, best of several batches.

Peak: the clock is measured with a chain of dependent integer adds (one per cycle); Zen 4 does
two 256-bit FMAs per cycle per core = 32 float32 / 16 float64 FLOP per cycle per core.

Timing: 1-thread rows use the thread's CPU time (both sides run in the calling thread), which other
processes on a shared machine do not inflate; 2-thread rows use wall time, which they do: read the
load average printed with the table before trusting those.

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
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import graphgrad as gg  # noqa: E402
from graphgrad._core import ffi, lib  # noqa: E402

FLOP_PER_CYCLE = {np.float32: 32, np.float64: 16}   # per core, Zen 4 (2 × 256-bit FMA pipes)

CLOCK_C = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    long x = 0, iters = 100000000;
    struct timespec a, b;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
    for (long i = 0; i < iters; i++)
        __asm__ volatile("add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\t"
                         "add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0" : "+r"(x));
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
    printf("%f\n", iters * 8.0 / ((b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9) / 1e9);
    return 0;
}
"""


def measure_clock_ghz() -> tuple[float, str]:
    """Cycles per second of CPU time (so other processes do not dilute it) from a dependent chain of
    adds (1 cycle each); best of 3 runs."""
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src, exe = os.path.join(tmp, "clock.c"), os.path.join(tmp, "clock")
            open(src, "w").write(CLOCK_C)
            subprocess.run(["gcc", "-O2", src, "-o", exe], check=True, capture_output=True)
            return max(float(subprocess.run([exe], check=True, capture_output=True, text=True).stdout)
                       for _ in range(3)), "dependent-add chain"
    except (OSError, subprocess.CalledProcessError):
        mhz = [float(line.split(":")[1]) for line in open("/proc/cpuinfo") if line.startswith("cpu MHz")]
        return max(mhz) / 1000, "/proc/cpuinfo (nominal)"


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


def best_seconds(fn, min_batch_s: float, batches: int, clock=time.perf_counter) -> float:
    """Best per-call time over `batches` batches of enough calls to last min_batch_s."""
    fn()
    t0 = clock()
    fn()
    one = max(clock() - t0, 1e-7)
    calls = max(1, int(min_batch_s / one))
    best = float("inf")
    for _ in range(batches):
        t0 = clock()
        for _ in range(calls):
            fn()
        best = min(best, (clock() - t0) / calls)
    return best


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
    t_gg = t_np = float("inf")
    for _ in range(2):   # two passes of each side, so a noisy neighbour hits both alike
        # OpenBLAS's idle workers spin for a while after a call and would steal the core graphgrad's
        # second thread needs (and libgomp's, briefly, OpenBLAS's): let them go to sleep first
        time.sleep(0.2 if threads > 1 else 0.01)
        t_gg = min(t_gg, best_seconds(run_gg, min_batch_s, rounds, clock))
        time.sleep(0.05 if threads > 1 else 0.01)
        t_np = min(t_np, best_seconds(run_np, min_batch_s, rounds, clock))
    flop = 2.0 * m * n * k
    return {"case": name, "dtype": np.dtype(dtype).name, "m": m, "n": n, "k": k, "trans_a": ta, "trans_b": tb,
            "threads": threads, "gg_gflops": flop / t_gg / 1e9, "numpy_gflops": flop / t_np / 1e9,
            "ratio": t_np / t_gg, "rel_diff": ref_err}


def cases(quick: bool):
    out = []
    sizes = [64, 128, 256, 512] if quick else [64, 128, 256, 512, 1024, 2048]
    for dtype in (np.float32, np.float64):
        for s in sizes:
            out.append((f"square {s}", dtype, s, s, s, 0, 0, "square"))
    mlp = [(10, 784, 30), (64, 784, 128), (256, 1024, 1024)] + ([] if quick else [(1024, 1024, 1024)])
    for batch, fin, fout in mlp:
        out.append((f"X·W    ({batch}x{fin})·({fin}x{fout})", np.float32, batch, fout, fin, 0, 0, "mlp"))
        out.append((f"Xᵀ·dY  ({fin}x{batch})·({batch}x{fout})", np.float32, fin, fout, batch, 1, 0, "mlp"))
        out.append((f"dY·Wᵀ  ({batch}x{fout})·({fout}x{fin})", np.float32, batch, fin, fout, 0, 1, "mlp"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer, smaller cases")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "gemm.json"))
    args = ap.parse_args()

    blas = OpenBLAS()
    ghz, clock_how = measure_clock_ghz()
    isa = ffi.string(lib.gg_gemm_kernel_info_f32(ffi.NULL, ffi.NULL)).decode()
    env = {v: os.environ.get(v, "(unset)") for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print(f"graphgrad GEMM kernel: {isa}; NumPy {np.__version__}, OpenBLAS core {blas.corename}; "
          f"env left as is: {env}")
    print(f"clock {ghz:.2f} GHz ({clock_how}); peak/core {ghz * 32:.0f} GFLOP/s f32, {ghz * 16:.0f} f64; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs\n")

    min_batch_s, rounds = (0.02, 2) if args.quick else (0.03, 3)
    rows = []
    head = f"{'case':38} {'dtype':7} {'thr':>3} {'graphgrad':>10} {'numpy':>8} {'ratio':>6} {'%peak':>6}"
    print(head + "\n" + "-" * len(head))
    for name, dtype, m, n, k, ta, tb, group in cases(args.quick):
        for threads in args.threads:
            r = run_case(name, dtype, m, n, k, ta, tb, threads, blas, min_batch_s, rounds)
            r["group"] = group
            r["peak_fraction"] = r["gg_gflops"] / (ghz * FLOP_PER_CYCLE[dtype] * threads)
            r["numpy_peak_fraction"] = r["numpy_gflops"] / (ghz * FLOP_PER_CYCLE[dtype] * threads)
            rows.append(r)
            print(f"{name:38} {r['dtype']:7} {threads:>3} {r['gg_gflops']:10.1f} {r['numpy_gflops']:8.1f} "
                  f"{r['ratio']:6.2f} {100 * r['peak_fraction']:5.0f}%", flush=True)
            if r["rel_diff"] > (1e-3 if dtype == np.float32 else 1e-9):
                raise SystemExit(f"graphgrad and NumPy disagree on {name}: relative difference {r['rel_diff']}")

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump({"load_average_end": os.getloadavg()[0], "clock_ghz": ghz, "clock_method": clock_how,
                   "kernel": isa, "numpy": np.__version__,
                   "openblas_core": blas.corename, "env": env, "rows": rows}, f, indent=1)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}; wrote {os.path.relpath(args.out)}")


if __name__ == "__main__":
    main()
