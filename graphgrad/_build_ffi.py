"""cffi builder for graphgrad._core (API mode, out-of-line).

cffi reads the declarations between the BEGIN/END CDEF markers of csrc/graphgrad.h and those
written from the op table csrc/ops.def (the opcode enum, the elementwise kernels); the C
sources are the interpreter plus every kernel file compiled once per dtype (kernels_f*.c).
Flags: -O3 -march=native -fopenmp by default, replaced by $GRAPHGRAD_CFLAGS when set
(`make asan` uses that to add the sanitizers). Never -ffast-math: it breaks exp/tanh kernels.
"""
import os
import re
import shlex

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(os.path.dirname(HERE), "csrc")
HEADER = os.path.join(CSRC, "graphgrad.h")
SOURCES = ["program.c", "kernels_f32.c", "kernels_f64.c"]
# -fno-math-errno: graphgrad never reads errno, and without it sqrt() cannot be vectorised (it is
# not -ffast-math: every IEEE rule still holds)
DEFAULT_CFLAGS = "-O3 -march=native -fopenmp -std=c11 -fno-math-errno"


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
