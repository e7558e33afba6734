"""graphgrad — a computation-graph compiler for training neural networks, with a C core.

Build a graph of tensor ops, let gg.grad add the backward pass and an optimizer the update,
compile it, and run a whole training step — forward, backward, update — in one call into C.
"""
from . import datasets, distributed, errors, init, nn, ops, optim, schedules
from . import onnx  # noqa: F401  (the onnx package itself is imported only when gg.onnx is used)
from .autodiff import grad
from .errors import (CycleError, DistributedError, DivergenceError, FeedError, GradientError, GraphGradError,
                     ISAError, ModelError, NumericsError, OptimizerError, ShapeError)
from .gradcheck import gradcheck
from .graph import Graph, Tensor, constant, placeholder, variable
from .ops import abs, add, div, l1, matmul, mean, mse, mul, neg, relu, sigmoid, sub, sum
from .ops import (binary_cross_entropy, broadcast_to, clip, concat, elu, exp, gelu, huber, leaky_relu, log,
                  log_softmax, max, maximum, minimum, pow, reshape, softmax, softmax_cross_entropy, softplus, sqrt,
                  tanh, transpose)
from .runtime import Program, compile, get_num_threads, set_num_threads
from .machine import gemm_config, isa
from .viz import render, to_dot
from .summary import render_memory
from .train import Callback, EarlyStopping, History, ModelCheckpoint, evaluate, fit, predict
from .checkpoint import Checkpoint, load, save
from .lr_finder import LRFinderResult, lr_find
from . import callbacks, plots

__version__ = "0.1.0"

__all__ = [
    "Tensor", "Graph", "Program", "placeholder", "variable", "constant", "grad", "gradcheck", "compile",
    "render", "to_dot", "render_memory", "set_num_threads", "get_num_threads", "optim", "schedules", "ops", "errors", "datasets",
    "distributed",
    "nn", "init", "fit", "evaluate", "predict", "History", "Callback", "EarlyStopping", "ModelCheckpoint", "save", "load", "Checkpoint", "lr_find", "LRFinderResult",
    "add", "sub", "mul", "div", "neg", "abs", "matmul", "sum", "mean", "relu", "sigmoid", "mse", "l1",
    "pow", "exp", "log", "sqrt", "maximum", "minimum", "clip", "reshape", "transpose", "broadcast_to", "concat",
    "max", "leaky_relu", "elu", "gelu", "tanh", "softplus", "softmax", "log_softmax", "huber",
    "binary_cross_entropy", "softmax_cross_entropy",
    "GraphGradError", "ShapeError", "FeedError", "CycleError", "GradientError", "NumericsError", "DivergenceError",
    "OptimizerError", "ModelError", "DistributedError", "ISAError", "isa", "gemm_config",
]
