"""cffi builders for graphgrad's C core: one extension module per kernel set (API mode, out-of-line).

cffi reads the declarations between the BEGIN/END CDEF markers of csrc/graphgrad.h and those
written from the op table csrc/ops.def (the opcode enum, the elementwise kernels); the C sources
are the interpreter, csrc/cpu.c and every kernel file compiled once per dtype (kernels_f*.c). The whole core is compiled once per instruction-set level, so a build (or a
wheel) runs on any x86-64 and still uses the widest vectors the CPU has:

    graphgrad._core_avx512   -march=x86-64-v4  (AVX-512 F/BW/CD/DQ/VL)
    graphgrad._core_avx2     -march=x86-64-v3  (AVX2, FMA, BMI2)
    graphgrad._core_generic  -march=x86-64-v2  (SSE4.2; on other machines: no -m flags at all)

graphgrad/_core.py loads one of them at import (the best the CPU and OS support, or
$GRAPHGRAD_ISA). All share -O3 -fopenmp -std=c11 -fno-math-errno; never -ffast-math (it breaks the
exp/tanh kernels). $GRAPHGRAD_CFLAGS replaces all of that with one module, graphgrad._core_custom,
compiled with exactly those flags (`make asan` adds the sanitizers that way; -march=native is the
fastest build for one machine) and used as it is.

Each module compiles its own small wrapper files (build/isa_sources/<set>_*.c, each one
`#include`s a csrc/ file), so the modules' object files never share a name in build_temp and
setuptools can build them in parallel (setup.py turns build_ext's parallel mode on).
"""
import glob
import os
import platform
import re
import shlex

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CSRC = os.path.join(ROOT, "csrc")
HEADER = os.path.join(CSRC, "graphgrad.h")
SOURCES = ["program.c", "cpu.c", "kernels_f32.c", "kernels_f64.c"]
# -fno-math-errno: graphgrad never reads errno, and without it sqrt() cannot be vectorised (it is
# not -ffast-math: every IEEE rule still holds)
# -fvisibility=hidden: the core's functions are called only from inside its own module, so two
# loaded kernel sets (the baseline asked about the CPU) never resolve a call into each other
COMMON_CFLAGS = ["-O3", "-fopenmp", "-std=c11", "-fno-math-errno", "-fvisibility=hidden"]
# the kernel sets, best first: name -> the -march level it is compiled for (x86-64 only)
X86_LEVELS = {"avx512": "x86-64-v4", "avx2": "x86-64-v3", "generic": "x86-64-v2"}


OP_TABLE = os.path.join(CSRC, "ops.def")

# the kernel prototypes of the op table's elementwise rows ({n}: the row's name, {t}: the C type,
# {s}: the suffix), the same signatures the macros at the end of csrc/graphgrad.h declare to C
ROW_PROTOTYPES = {
    "GG_BINARY": "void gg_{n}_{s}({t} *out, const {t} *a, const {t} *b, int32_t rank, const int64_t *shape, "
                 "const int64_t *stride_a, const int64_t *stride_b);",
    "GG_UNARY": "void gg_{n}_{s}({t} *out, const {t} *x, int64_t n);",
    "GG_UNARY_P": "void gg_{n}_{s}({t} *out, const {t} *x, int64_t n, double p);",
    "GG_UNARY_PQ": "void gg_{n}_{s}({t} *out, const {t} *x, int64_t n, double p, double q);",
    "GG_BACKWARD": "void gg_{n}_{s}({t} *dx, const {t} *s, const {t} *dy, int64_t n);",
    "GG_BACKWARD_P": "void gg_{n}_{s}({t} *dx, const {t} *s, const {t} *dy, int64_t n, double p);",
    "GG_BACKWARD_PQ": "void gg_{n}_{s}({t} *dx, const {t} *s, const {t} *dy, int64_t n, double p, double q);",
    "GG_LOSS_BACKWARD": "void gg_{n}_{s}({t} *dp, const {t} *p, const {t} *y, const {t} *dout, int64_t n, "
                        "double scale);",
}
ROW_MACROS = tuple(ROW_PROTOTYPES) + ("GG_OP",)


def _split_arguments(text: str) -> list[str]:
    """The comma-separated arguments of a macro call's inside, commas inside parentheses kept."""
    args, depth, current = [], 0, []
    for ch in text:
        if ch == "," and depth == 0:
            args.append("".join(current).strip())
            current = []
            continue
        depth += ch == "("
        depth -= ch == ")"
        current.append(ch)
    args.append("".join(current).strip())
    return args


def read_op_table(path: str = OP_TABLE) -> list[tuple[str, list[str]]]:
    """The rows of csrc/ops.def: (row macro, its arguments) in order; arguments[0:3] are the enum
    suffix, the opcode and the name."""
    text = re.sub(r"/\*.*?\*/", " ", open(path, encoding="utf-8").read(), flags=re.S)
    rows, pos = [], 0
    for match in re.finditer(r"\b(GG_[A-Z_]+)\s*\(", text):
        if match.start() < pos:
            continue
        if match.group(1) not in ROW_MACROS:
            raise ValueError(f"{path}: unknown row macro {match.group(1)}")
        depth, end = 1, match.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        rows.append((match.group(1), _split_arguments(text[match.end():end - 1])))
        pos = end
    return rows


def op_table_cdef(path: str = OP_TABLE) -> str:
    """The opcode enum and the elementwise kernels' prototypes, as plain declarations for cffi."""
    rows = read_op_table(path)
    enum = ",\n".join(f"    GG_OP_{args[0]} = {int(args[1])}" for _, args in rows)
    lines = [f"enum gg_opcode {{\n{enum}\n}};"]
    for macro, args in rows:
        if macro in ROW_PROTOTYPES:
            lines += [ROW_PROTOTYPES[macro].format(n=args[2], t=t, s=sfx) for t, sfx in (("float", "f32"), ("double", "f64"))]
    return "\n".join(lines) + "\n"


def read_cdef(path: str = HEADER) -> str:
    """What cffi's cdef parses: the plain-declaration part of the header, then the declarations
    written from the op table."""
    text = open(path, encoding="utf-8").read()
    body = text.split("/* BEGIN CDEF */", 1)[1].split("/* END CDEF */", 1)[0]
    return body + op_table_cdef()


def is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def kernel_sets() -> dict[str, list[str]]:
    """The modules this build makes: kernel-set name -> its compiler flags."""
    custom = os.environ.get("GRAPHGRAD_CFLAGS")
    if custom is not None:
        return {"custom": shlex.split(custom)}
    if not is_x86_64():
        return {"generic": list(COMMON_CFLAGS)}
    return {name: COMMON_CFLAGS + [f"-march={level}"] for name, level in X86_LEVELS.items()}


def _wrapper_sources(name: str) -> list[str]:
    """One tiny file per csrc/ source for kernel set `name`, so each module's objects are its own."""
    folder = os.path.join(ROOT, "build", "isa_sources")
    os.makedirs(folder, exist_ok=True)
    paths = []
    for source in SOURCES:
        # not named like its source: `#include "x.c"` looks in the including file's folder first
        path = os.path.join(folder, f"{name}_{source}")
        text = f'/* generated by graphgrad/_build_ffi.py: {source} for the "{name}" kernel set */\n' \
               f'#include "{source}"\n'
        if not os.path.exists(path) or open(path, encoding="utf-8").read() != text:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        paths.append(os.path.relpath(path))
    return paths


def make_builder(name: str, flags: list[str]) -> FFI:
    builder = FFI()
    builder.cdef(read_cdef())
    builder.set_source(
        f"graphgrad._core_{name}",
        '#include "graphgrad.h"',
        sources=_wrapper_sources(name),
        include_dirs=[os.path.relpath(CSRC)],
        # the wrappers #include every csrc/ file: an edit to any of them (or to the op table) rebuilds
        depends=sorted(os.path.relpath(p) for p in glob.glob(os.path.join(CSRC, "*.[ch]")) + [OP_TABLE]),
        extra_compile_args=flags,
        extra_link_args=[f for f in flags if f.startswith(("-fopenmp", "-fsanitize"))],
        libraries=["m"],
    )
    return builder


# setup.py's cffi_modules names these: "graphgrad/_build_ffi.py:ffibuilder_<set>"
for _name, _flags in kernel_sets().items():
    globals()[f"ffibuilder_{_name}"] = make_builder(_name, _flags)

if __name__ == "__main__":
    for _name in kernel_sets():
        globals()[f"ffibuilder_{_name}"].compile(verbose=True)
