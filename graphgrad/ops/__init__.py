"""graphgrad's ops, one family per module; each op is declared once as an OpDef (registry.py)."""
from . import leaves  # noqa: F401  (registers the leaf ops)
from .activations import elu, gelu, leaky_relu, relu, sigmoid, softplus, tanh
from .elementwise import (abs, add, clip, div, equal, exp, log, maximum, maximum_mask, minimum, mul, neg, pow, sign,
                          sqrt, sub)
from .linalg import matmul
from .losses import binary_cross_entropy, huber, l1, mse, softmax_cross_entropy
from .reduce import log_softmax, max, mean, softmax, sum, unbroadcast, zeros_like
from .shape import broadcast_to, concat, getitem, reshape, transpose
from .random import dropout_mask
from .registry import REGISTRY, Lowered, OpDef, make
from . import updates  # noqa: F401  (registers the optimizer update ops)

__all__ = ["REGISTRY", "OpDef", "Lowered", "make", "add", "sub", "mul", "div", "neg", "abs", "sign", "matmul",
           "sum", "mean", "relu", "sigmoid", "mse", "l1", "unbroadcast", "zeros_like",
           "pow", "exp", "log", "sqrt", "maximum", "minimum", "maximum_mask", "equal", "clip",
           "reshape", "transpose", "broadcast_to", "concat", "getitem", "max",
           "leaky_relu", "elu", "gelu", "tanh", "softplus", "softmax", "log_softmax",
           "huber", "binary_cross_entropy", "softmax_cross_entropy", "dropout_mask"]
