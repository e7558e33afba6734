"""Typed errors. Each message names what the user needs to fix the problem: the op, the node,
the shapes or dtypes involved, and the line of user code that created the node."""


class GraphGradError(Exception):
    """Base class of every error graphgrad raises on purpose."""


class ShapeError(GraphGradError, ValueError):
    """An op was given inputs whose shapes (or dtypes) it cannot combine."""


class FeedError(GraphGradError, ValueError):
    """A program was called with a missing, unknown or mis-shaped feed."""


class CycleError(GraphGradError):
    """The graph has a cycle, so no execution order exists."""


class GradientError(GraphGradError):
    """A gradient was asked for that cannot be built (unconnected input, non-scalar output, ...)."""


class OptimizerError(GraphGradError, ValueError):
    """An optimizer or schedule was misconfigured: a bad learning rate or hyperparameter, no
    variables to update, a variable listed twice, a fixed hyperparameter changed after compiling."""


class ModelError(GraphGradError, ValueError):
    """A model cannot be used as asked: it has no parameters (the learning tools need some)."""


class NumericsError(GraphGradError, FloatingPointError):
    """check_numerics mode: an instruction produced NaN or Inf."""


class DivergenceError(GraphGradError, FloatingPointError):
    """Training stopped because the loss became NaN or Inf."""


class GradcheckError(GraphGradError, AssertionError):
    """gg.gradcheck: autodiff and finite differences disagree."""


class DistributedError(GraphGradError):
    """Distributed training cannot go on: mpi4py or MPI is missing, the ranks built different
    models or hold different data, or another rank failed. Raised alike on every rank."""


class RuntimeFailure(GraphGradError, RuntimeError):
    """The C interpreter returned an error status it should never return for a valid program."""


class ISAError(GraphGradError, ImportError):
    """GRAPHGRAD_ISA names a kernel set that does not exist, was not built, or that this CPU (or its
    OS) cannot run; raised when graphgrad is imported."""


def describe_node(node) -> str:
    """'op node "name" (created at file:line)' for messages."""
    where = f" (created at {node.source})" if getattr(node, "source", None) else ""
    return f'{node.op} node "{node.name}"{where}'


def invalid_program(instructions, index: int, reason: str) -> RuntimeFailure:
    """The error for an instruction list the C core refused to run (gg_program_validate): which
    instruction, the node it computes, and why. A compiled program never has one: it is a bug."""
    what = describe_node(instructions[index].node) if 0 <= index < len(instructions) else "the program header"
    return RuntimeFailure(f"the compiled program is malformed at instruction {index}, {what}: {reason}. "
                          "This is a bug in graphgrad; please report it with the program's plan_json()")
