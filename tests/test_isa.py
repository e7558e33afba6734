"""Kernel sets (graphgrad/_core.py): every set this CPU runs gives a training step's numbers within
float tolerance of a float64 NumPy reference and of each other; GRAPHGRAD_ISA forces a set and a
bad or unrunnable one is a typed error; the baseline module holds no AVX/AVX-512 instruction and
the AVX2 one no AVX-512 instruction (so they load on CPUs without them)."""
import json
import os
import re
import subprocess
import sys
import importlib.machinery
import importlib.util

import numpy as np
import pytest

import graphgrad as gg
from graphgrad import _core

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One step of a 2-layer MLP (matmul + bias + tanh in the GEMM epilogue's neighbourhood, a fused
# elementwise chain, softmax cross-entropy), its gradients, then three Adam steps; printed as JSON.
STEP_SCRIPT = r"""
import json, sys
import numpy as np
import graphgrad as gg
dtype = sys.argv[1]
rng = np.random.default_rng(7)
X = rng.standard_normal((70, 37)).astype(dtype)
Y = np.eye(10, dtype=dtype)[rng.integers(0, 10, 70)]
W1 = gg.variable(rng.standard_normal((37, 300)).astype(dtype) * 0.2, name="W1", dtype=dtype)
b1 = gg.variable(rng.standard_normal(300).astype(dtype) * 0.1, name="b1", dtype=dtype)
W2 = gg.variable(rng.standard_normal((300, 10)).astype(dtype) * 0.1, name="W2", dtype=dtype)
x = gg.placeholder((None, 37), dtype=dtype, name="x")
y = gg.placeholder((None, 10), dtype=dtype, name="y")
h = gg.tanh(x @ W1 + b1) * 0.5 + gg.sigmoid(x @ W1) * 0.25
loss = gg.softmax_cross_entropy(h @ W2, y)
grads = gg.grad(loss, [W1, b1, W2])
out = gg.compile([loss] + grads)(x=X, y=Y)
step = gg.compile(loss, optimizer=gg.optim.Adam(lr=1e-2))
for _ in range(3):
    step(x=X, y=Y)
print(json.dumps({"isa": gg.isa(), "loss": float(out[0]), "grads": [g.tolist() for g in out[1:]],
                  "trained": [v.value.tolist() for v in (W1, b1, W2)]}))
"""


def run_kernel_set(kernel_set: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, GRAPHGRAD_ISA=kernel_set, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", STEP_SCRIPT, *args], env=env, capture_output=True, text=True,
                          timeout=300)


def numpy_step(dtype):
    """The same forward and gradients in float64 NumPy (the reference)."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((70, 37)).astype(dtype).astype(np.float64)
    labels = rng.integers(0, 10, 70)
    Y = np.eye(10)[labels]
    W1 = (rng.standard_normal((37, 300)).astype(dtype) * 0.2).astype(dtype).astype(np.float64)
    b1 = (rng.standard_normal(300).astype(dtype) * 0.1).astype(dtype).astype(np.float64)
    W2 = (rng.standard_normal((300, 10)).astype(dtype) * 0.1).astype(dtype).astype(np.float64)
    z = X @ W1
    t = np.tanh(z + b1)
    s = 1 / (1 + np.exp(-z))
    h = 0.5 * t + 0.25 * s
    logits = h @ W2
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = X.shape[0]
    loss = -(Y * logp).sum() / n
    dlogits = (np.exp(logp) - Y) / n
    dW2 = h.T @ dlogits
    dh = dlogits @ W2.T
    dpre_t = dh * 0.5 * (1 - t ** 2)
    dz = dpre_t + dh * 0.25 * s * (1 - s)
    return loss, [X.T @ dz, dpre_t.sum(axis=0), dW2]


def _close(got, want, rtol, atol, what):
    got, want = np.asarray(got), np.asarray(want)
    err = np.max(np.abs(got - want) / (atol + rtol * np.abs(want)))
    assert err <= 1, f"{what}: off by {err:.2f}x the tolerance (rtol {rtol}, atol {atol})"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_runnable_kernel_set_matches_numpy_and_the_others(dtype):
    sets = _core.supported_kernel_sets()
    assert sets, "no kernel set runs on this machine"
    rtol, atol = (2e-4, 2e-6) if dtype == "float32" else (1e-10, 1e-13)
    loss_ref, grads_ref = numpy_step(dtype)
    results = {}
    for kernel_set in sets:
        proc = run_kernel_set(kernel_set, dtype)
        assert proc.returncode == 0, f"GRAPHGRAD_ISA={kernel_set}: {proc.stderr[-2000:]}"
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        assert res["isa"] == kernel_set
        _close(res["loss"], loss_ref, rtol, atol, f"{kernel_set} loss")
        for g, ref, name in zip(res["grads"], grads_ref, ("dW1", "db1", "dW2")):
            _close(g, ref, rtol, atol * 10, f"{kernel_set} {name}")
        results[kernel_set] = res
    # across sets: the GEMM sums in a different order per micro-kernel (tile and KC differ), so
    # float32 results differ in the last bits; after three Adam steps the weights still agree
    best = results[sets[0]]
    for kernel_set, res in results.items():
        for got, want in zip(res["grads"], best["grads"]):
            _close(got, want, rtol, atol * 10, f"{kernel_set} vs {sets[0]} gradients")
        for got, want in zip(res["trained"], best["trained"]):
            _close(got, want, rtol, atol * 10, f"{kernel_set} vs {sets[0]} trained weights")


def test_an_unknown_or_unrunnable_kernel_set_is_a_typed_error():
    with pytest.raises(gg.ISAError, match="not a kernel set"):
        _core.choose_kernel_set("sse9")
    supported = _core.supported_kernel_sets()
    for kernel_set in _core.KERNEL_SETS:
        if kernel_set in supported:
            assert _core.choose_kernel_set(kernel_set) == kernel_set
        else:
            with pytest.raises(gg.ISAError, match="cannot run|was not built"):
                _core.choose_kernel_set(kernel_set)
    # at import time, through the environment: the process reports the typed error, it does not crash
    proc = run_kernel_set("avx1024", "float32")
    assert proc.returncode == 1 and "graphgrad.errors.ISAError" in proc.stderr and "not a kernel set" in proc.stderr


def test_isa_reports_the_loaded_set():
    assert gg.isa() == _core.ISA
    assert gg.isa() in _core.built_kernel_sets()
    if not os.environ.get("GRAPHGRAD_ISA"):
        assert gg.isa() == _core.supported_kernel_sets()[0]   # the best one this machine runs
    cfg = gg.gemm_config()
    assert cfg["kernel_set"] == gg.isa() and cfg["kc"] > 0 and cfg["nb"] % cfg["nr"] == 0 and cfg["mb"] % cfg["mr"] == 0


def _disassembly(kernel_set: str) -> str:
    path = importlib.util.find_spec(f"graphgrad._core_{kernel_set}").origin
    return subprocess.run(["objdump", "-d", "--no-show-raw-insn", path], capture_output=True, text=True,
                          check=True).stdout


WIDE = {"zmm": re.compile(r"%zmm\d|%k[1-7]\b"), "ymm": re.compile(r"%ymm\d")}


def test_baseline_modules_hold_no_wider_instructions():
    """The generic module (which also answers gg_cpu_supports) must load and run on a CPU without
    AVX, and the AVX2 one on a CPU without AVX-512: no ymm/zmm/opmask register anywhere in their code."""
    built = _core.built_kernel_sets()
    if "avx2" not in built:
        # a GRAPHGRAD_CFLAGS build ("custom") or a machine that is not x86-64 ("generic"): one module
        assert built in (["custom"], ["generic"])
        return
    generic = _disassembly("generic")
    assert not WIDE["zmm"].search(generic) and not WIDE["ymm"].search(generic)
    avx2 = _disassembly("avx2")
    assert not WIDE["zmm"].search(avx2)
    assert WIDE["ymm"].search(avx2) and "vfmadd" in avx2      # and it is what its name says
    assert WIDE["zmm"].search(_disassembly("avx512"))


def test_kernel_sets_are_looked_for_in_this_package_only(monkeypatch):
    """An editable install of another checkout adds a finder to sys.meta_path that resolves any
    graphgrad module this checkout lacks from that one (a sanitizer build's _core_custom, say):
    the kernel sets listed are exactly the extension modules in this package's directory."""
    class OtherCheckout:
        def find_spec(self, fullname, path=None, target=None):
            if fullname.startswith("graphgrad._core_"):
                return importlib.util.spec_from_loader(fullname, loader=None)
            return None

    monkeypatch.setattr(sys, "meta_path", sys.meta_path + [OtherCheckout()])
    package = os.path.dirname(_core.__file__)
    here = [s for s in (_core.CUSTOM,) + _core.KERNEL_SETS
            if any(os.path.exists(os.path.join(package, f"_core_{s}{suffix}"))
                   for suffix in importlib.machinery.EXTENSION_SUFFIXES)]
    assert _core.built_kernel_sets() == here
    assert _core.CUSTOM in here or _core.CUSTOM not in _core.supported_kernel_sets()
