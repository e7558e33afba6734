"""cffi builder for graphgrad._core (API mode, out-of-line).

cffi reads the declarations between the BEGIN/END CDEF markers of csrc/graphgrad.h; the C
sources are the interpreter plus every kernel file compiled once per dtype (kernels_f*.c).
Flags: -O3 -march=native -fopenmp by default, replaced by $GRAPHGRAD_CFLAGS when set
(`make asan` uses that to add the sanitizers). Never -ffast-math: it breaks exp/tanh kernels.
"""
import os
import shlex

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(os.path.dirname(HERE), "csrc")
HEADER = os.path.join(CSRC, "graphgrad.h")
SOURCES = ["program.c", "kernels_f32.c", "kernels_f64.c"]
# -fno-math-errno: graphgrad never reads errno, and without it sqrt() cannot be vectorised (it is
# not -ffast-math: every IEEE rule still holds)
DEFAULT_CFLAGS = "-O3 -march=native -fopenmp -std=c11 -fno-math-errno"


def read_cdef(path: str = HEADER) -> str:
    """The plain-declaration part of the header that cffi's cdef can parse."""
    text = open(path, encoding="utf-8").read()
    body = text.split("/* BEGIN CDEF */", 1)[1].split("/* END CDEF */", 1)[0]
    return body


def compile_flags() -> list[str]:
    return shlex.split(os.environ.get("GRAPHGRAD_CFLAGS", DEFAULT_CFLAGS))


ffibuilder = FFI()
ffibuilder.cdef(read_cdef())
_flags = compile_flags()
ffibuilder.set_source(
    "graphgrad._core",
    '#include "graphgrad.h"',
    sources=[os.path.relpath(os.path.join(CSRC, s)) for s in SOURCES],
    include_dirs=[os.path.relpath(CSRC)],
    extra_compile_args=_flags,
    extra_link_args=[f for f in _flags if f.startswith(("-fopenmp", "-fsanitize"))],
    libraries=["m"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
