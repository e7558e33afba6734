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
from .ops import EXPORTS as _OP_FUNCTIONS, TOP_LEVEL as _OP_NAMES
from .runtime import Program, compile, get_num_threads, set_num_threads
from .machine import gemm_config, isa
from .viz import render, to_dot
from .summary import render_memory
from .train import Callback, EarlyStopping, History, ModelCheckpoint, evaluate, fit, predict
from .checkpoint import Checkpoint, load, save
from .lr_finder import LRFinderResult, lr_find
from . import callbacks, plots

# the op functions, from the one place they are declared (graphgrad/ops, @export)
globals().update({name: _OP_FUNCTIONS[name] for name in _OP_NAMES})

__version__ = "0.1.0"

__all__ = [
    "Tensor", "Graph", "Program", "placeholder", "variable", "constant", "grad", "gradcheck", "compile",
    "render", "to_dot", "render_memory", "set_num_threads", "get_num_threads", "optim", "schedules", "ops", "errors", "datasets",
    "distributed",
    "nn", "init", "fit", "evaluate", "predict", "History", "Callback", "EarlyStopping", "ModelCheckpoint", "save", "load", "Checkpoint", "lr_find", "LRFinderResult",
    *_OP_NAMES,   # the op functions marked @export in graphgrad/ops (gg.add, gg.relu, ...)
    "GraphGradError", "ShapeError", "FeedError", "CycleError", "GradientError", "NumericsError", "DivergenceError",
    "OptimizerError", "ModelError", "DistributedError", "ISAError", "isa", "gemm_config",
]
