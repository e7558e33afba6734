"""The C core: one of the compiled kernel-set modules, chosen once at import.

graphgrad/_build_ffi.py compiles the whole core once per kernel set — graphgrad._core_avx512,
_core_avx2 and _core_generic on x86-64 (only _core_generic elsewhere; only _core_custom when
GRAPHGRAD_CFLAGS was set at build time). This module loads the best set the CPU and the OS can
run, asking the baseline module (which loads on any x86-64) through gg_cpu_supports, or the
set GRAPHGRAD_ISA names. Everything else imports `ffi` and `lib` from here; ISA says which set
they are (gg.isa()).
"""
from __future__ import annotations

import importlib
import importlib.machinery
import os

from .errors import ISAError

KERNEL_SETS = ("avx512", "avx2", "generic")   # best first
CUSTOM = "custom"                              # a GRAPHGRAD_CFLAGS build: one module, used as it is


def _module_name(kernel_set: str) -> str:
    return f"{__package__}._core_{kernel_set}"


# this package's own directory: where its kernel-set modules are looked for
_PACKAGE_DIR = [os.path.dirname(os.path.abspath(__file__))]


def built_kernel_sets() -> list[str]:
    """The kernel-set modules this installation holds, best first. Looked up in this package's own
    directory only: an editable install of another checkout puts a finder on sys.meta_path that
    would lend this one any module it lacks (a sanitizer build's _core_custom, say)."""
    return [s for s in (CUSTOM,) + KERNEL_SETS
            if importlib.machinery.PathFinder.find_spec(_module_name(s), _PACKAGE_DIR) is not None]


def supported_kernel_sets() -> list[str]:
    """The built kernel sets this CPU and OS can run, best first (a custom build counts as runnable:
    it was made for this machine)."""
    built = built_kernel_sets()
    if "generic" not in built:
        return [s for s in built if s == CUSTOM]
    probe = importlib.import_module(_module_name("generic")).lib
    return [s for s in built if s == CUSTOM or probe.gg_cpu_supports(s.encode()) == 1]


def choose_kernel_set(requested: str | None) -> str:
    """The set to load: `requested` (GRAPHGRAD_ISA) when it can run here, else the best one."""
    built = built_kernel_sets()
    if not built:
        raise ISAError("graphgrad's C core is not built: run `python setup.py build_ext --inplace` "
                       "or `pip install .` in the source tree")
    supported = supported_kernel_sets()
    if not requested:
        if not supported:
            raise ISAError(f"this CPU can run none of the built kernel sets {built} "
                           "(the baseline needs x86-64-v2: SSE4.2 and POPCNT)")
        return supported[0]
    if requested not in KERNEL_SETS + (CUSTOM,):
        raise ISAError(f"GRAPHGRAD_ISA={requested!r} is not a kernel set: use one of "
                       f"{', '.join(KERNEL_SETS)} (this machine can run {', '.join(supported) or 'none'})")
    if requested not in built:
        how = ("this build was made with GRAPHGRAD_CFLAGS, which makes one module, 'custom'"
               if CUSTOM in built else "rebuild without GRAPHGRAD_CFLAGS to get every kernel set")
        raise ISAError(f"GRAPHGRAD_ISA={requested!r}: that kernel set was not built (built: {', '.join(built)}; {how})")
    if requested not in supported:
        raise ISAError(f"GRAPHGRAD_ISA={requested!r}: this CPU or its OS cannot run that kernel set "
                       f"(it can run {', '.join(supported) or 'none'})")
    return requested


ISA = choose_kernel_set(os.environ.get("GRAPHGRAD_ISA", "").strip().lower() or None)
_module = importlib.import_module(_module_name(ISA))
ffi = _module.ffi
lib = _module.lib
