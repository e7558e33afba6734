"""A wheel built from this tree (`pip wheel .`) holds every kernel set and, installed on its own
(away from the source tree), imports and trains with the baseline set (GRAPHGRAD_ISA=generic) —
what a user on an older x86-64 would run."""
import glob
import os
import platform
import shutil
import subprocess
import sys
import zipfile


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRAIN_SCRIPT = r"""
import numpy as np
import graphgrad as gg
assert gg.isa() == "generic", gg.isa()
assert "site" in gg.__file__, gg.__file__          # the installed wheel, not the source tree
rng = np.random.default_rng(0)
X = rng.standard_normal((256, 8)).astype("float32")
Y = (X @ rng.standard_normal((8, 1)) + 0.5).astype("float32")
model = gg.nn.Sequential(gg.nn.Dense(8, 16, activation="relu"), gg.nn.Dense(16, 1))
hist = gg.fit(model, X, Y, loss="mse", optimizer=gg.optim.Adam(lr=1e-2), epochs=20, batch_size=32, verbose=0)
first, last = hist.history["loss"][0], hist.history["loss"][-1]
assert last < 0.2 * first, (first, last)
print("trained", first, last)
"""


def _clean_env():
    """The environment without sanitizer preloads or build-flag overrides (a user's plain build)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_PRELOAD", "GRAPHGRAD_CFLAGS", "GRAPHGRAD_ISA", "PYTHONPATH")}
    return env


def _copy_source(dest):
    """The source tree without build products or caches (what a fresh clone holds)."""
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "*.so", "__pycache__", "out", ".hypothesis", ".pytest_cache",
        "results", "*.png"))


def test_a_built_wheel_trains_with_the_baseline_kernel_set(tmp_path):
    src, wheels, site = tmp_path / "src", tmp_path / "wheels", tmp_path / "site"
    _copy_source(src)
    env = _clean_env()
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "-w", str(wheels), str(src)], env=env, check=True, capture_output=True, timeout=1200)
    (wheel,) = glob.glob(str(wheels / "graphgrad-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    modules = sorted(n.split("/")[-1].split(".")[0] for n in names if n.startswith("graphgrad/_core_"))
    sets = ["avx2", "avx512", "generic"] if platform.machine().lower() in ("x86_64", "amd64") else ["generic"]
    assert modules == [f"_core_{s}" for s in sets] and "graphgrad/_core.py" in names
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(site), wheel],
                   env=env, check=True, capture_output=True, timeout=600)
    run = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT], cwd=str(tmp_path), capture_output=True, text=True,
                         env=dict(env, PYTHONPATH=str(site), GRAPHGRAD_ISA="generic"), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.startswith("trained")
