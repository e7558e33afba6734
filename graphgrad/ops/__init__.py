"""graphgrad's ops, one family per module; each op is declared once as an OpDef (registry.py)."""
from . import leaves  # noqa: F401  (registers the leaf ops)
from .activations import relu, sigmoid
from .elementwise import abs, add, div, mul, neg, sign, sub
from .linalg import matmul
from .losses import l1, mse
from .reduce import mean, sum, unbroadcast, zeros_like
from .registry import REGISTRY, Lowered, OpDef, make
from . import updates  # noqa: F401  (registers the optimizer update ops)

__all__ = ["REGISTRY", "OpDef", "Lowered", "make", "add", "sub", "mul", "div", "neg", "abs", "sign", "matmul",
           "sum", "mean", "relu", "sigmoid", "mse", "l1", "unbroadcast", "zeros_like"]
