"""The dtypes graphgrad computes in, and their codes in the C ABI (enum gg_dtype)."""
import numpy as np

from .errors import ShapeError

FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)
INT64 = np.dtype(np.int64)
DEFAULT_FLOAT = FLOAT32

#: numpy dtype -> gg_dtype code (csrc/graphgrad.h)
C_CODES = {FLOAT32: 0, FLOAT64: 1, INT64: 2}


def as_dtype(dtype, integer_ok: bool = False) -> np.dtype:
    """Normalise a user dtype ('float32', np.float64, ...) to one graphgrad supports. int64 is
    accepted where integer_ok (placeholders and constants: class labels)."""
    dt = np.dtype(dtype if dtype is not None else DEFAULT_FLOAT)
    if dt not in C_CODES or (dt == INT64 and not integer_ok):
        labels = " (int64 for class-label placeholders and constants)" if not integer_ok else " and int64"
        raise ShapeError(f"unsupported dtype {dt}; graphgrad computes in float32 and float64{labels}")
    return dt
