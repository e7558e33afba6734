"""graphgrad — a computation-graph compiler for training neural networks, with a C core.

Build a graph of tensor ops, let gg.grad add the backward pass and an optimizer the update,
compile it, and run a whole training step — forward, backward, update — in one call into C.
"""
from . import datasets, errors, ops, optim, schedules
from .autodiff import grad
from .errors import (CycleError, DivergenceError, FeedError, GradientError, GraphGradError, NumericsError,
                     OptimizerError, ShapeError)
from .gradcheck import gradcheck
from .graph import Graph, Tensor, constant, placeholder, variable
from .ops import abs, add, div, l1, matmul, mean, mse, mul, neg, relu, sigmoid, sub, sum
from .runtime import Program, compile, get_num_threads, set_num_threads
from .viz import render, to_dot

__version__ = "0.1.0"

__all__ = [
    "Tensor", "Graph", "Program", "placeholder", "variable", "constant", "grad", "gradcheck", "compile",
    "render", "to_dot", "set_num_threads", "get_num_threads", "optim", "schedules", "ops", "errors", "datasets",
    "add", "sub", "mul", "div", "neg", "abs", "matmul", "sum", "mean", "relu", "sigmoid", "mse", "l1",
    "GraphGradError", "ShapeError", "FeedError", "CycleError", "GradientError", "NumericsError", "DivergenceError",
    "OptimizerError",
]
