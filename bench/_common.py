"""Shared by the bench scripts: thread pinning before NumPy/torch load, timing, result files."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "GRAPHGRAD_NUM_THREADS")


def pin_threads(n: int) -> None:
    """Set every thread knob before numpy / torch / graphgrad are imported in this process."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)


def pin_cores(n: int) -> list[int]:
    """Restrict this process to the first n cores it may run on (before any runtime starts its thread
    pools: XLA and TensorFlow size theirs from the cores they see and ignore the thread variables).
    Returns the cores it now runs on."""
    if not hasattr(os, "sched_getaffinity"):
        return []
    cores = sorted(os.sched_getaffinity(0))
    if 0 < n < len(cores):
        os.sched_setaffinity(0, cores[:n])
        cores = cores[:n]
    return cores


def time_per_call(fn, min_time: float = 1.0, min_calls: int = 10, warmup: int = 3) -> float:
    """Seconds per call: the best of several timed batches of calls (after a warm-up)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    start = time.perf_counter()
    fn()
    single = time.perf_counter() - start
    calls = max(1, int(0.2 / max(single, 1e-9)))
    deadline = time.perf_counter() + min_time
    runs = 0
    while time.perf_counter() < deadline or runs * calls < min_calls:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
        runs += 1
    return best


def run_worker(script: str, args: list[str], threads: int, timeout: float = 600) -> dict | None:
    """Run `script --worker ...` in a fresh process limited to `threads` threads and cores; it prints one
    JSON line."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        env[var] = str(threads)
    # pinned to `threads` cores too: some runtimes' thread pools (XLA's, TensorFlow's) ignore the thread
    # variables, and a "1-thread" run must not spread over every core
    cores = sorted(os.sched_getaffinity(0))[:threads] if hasattr(os, "sched_getaffinity") else []
    pin = (lambda: os.sched_setaffinity(0, cores)) if cores and len(cores) < os.cpu_count() else None
    proc = subprocess.run([sys.executable, script, "--worker", *args, "--threads", str(threads)],
                          capture_output=True, text=True, env=env, timeout=timeout, preexec_fn=pin)
    for line in reversed(proc.stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    sys.stderr.write(proc.stderr[-2000:])
    return None


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def write_json(name: str, payload: dict) -> str:
    os.makedirs(RESULTS, exist_ok=True)
    path = os.path.join(RESULTS, name)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
    return path


def torch_available() -> bool:
    """Whether PyTorch is installed (without importing it here: workers import what they use)."""
    import importlib.util
    return importlib.util.find_spec("torch") is not None
