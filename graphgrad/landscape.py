"""The loss landscape: a model's loss along a line and over a plane in weight space.

- `loss_line`: the loss on the straight line θ(α) = θ_start + α·(θ_end − θ_start), from the initial
  to the trained weights (Goodfellow, Vinyals & Saxe 2015, "Qualitatively characterizing neural
  network optimization problems"), or between two trained models.
- `loss_plane`: the loss on the plane θ(α, β) = θ* + α·δ + β·η around the trained weights θ*, with δ
  and η random directions normalised per filter (Li, Xu, Taylor, Studer & Goldstein 2018,
  "Visualizing the loss landscape of neural nets"), so that the picture's scale means the same for
  every layer whatever its weights' size.

Both evaluate every point with ONE compiled program (`LossSurface`): the loss graph is built once
with each parameter W replaced by C + a·D1 + b·D2 (a graph substitution), where C, D1, D2 are
non-trainable variables holding the centre and the two directions and a, b are scalar variables.
A point is then two scalar writes and one call into C; moving to another line or plane writes the
C/D variables. The model's own variables are never touched. a and b have the model's dtype
(graphgrad's ops do not mix dtypes), so coordinates are float32 for a float32 model; at a = b = 0
the substituted weights equal C bit for bit.

Filter normalisation (Li et al. §4): a direction is drawn from a standard normal, then each filter
d_j is rescaled to the norm of the same filter θ_j of the centre: d_j ← d_j · ‖θ_j‖ / ‖d_j‖. A
filter is one output unit: a column of a Dense kernel (graphgrad lays kernels out (in, out)), a
slice along the first axis of a 3-D or 4-D (out, in, ...) convolution kernel. Vectors (biases)
get a zero direction by default (Li et al.'s choice; bias="filter" normalises them as one filter).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from .errors import ModelError, ShapeError
from .graph import Tensor, placeholder, variable


def _parameters(model) -> list[Tensor]:
    from .train import _check_model
    _check_model(model)
    params = model.parameters()
    if not params:
        raise ModelError(f"{type(model).__name__} has no parameters: there is no weight space to explore")
    return params


def parameter_values(source, params: Sequence[Tensor], what: str = "values") -> list[np.ndarray]:
    """`source` as one array per parameter, checked against `params` (shapes, count): a model of
    the same architecture, a list of arrays in model.parameters() order, or a dict by name."""
    from .nn import Module
    if isinstance(source, Module):
        source = [p.data for p in source.parameters()]
    elif isinstance(source, dict):
        missing = [p.name for p in params if p.name not in source]
        if missing:
            raise ShapeError(f"{what}: no value for parameters {missing} (the dict has {sorted(source)})")
        source = [source[p.name] for p in params]
    source = list(source)
    if len(source) != len(params):
        raise ShapeError(f"{what}: {len(source)} arrays for a model with {len(params)} parameters "
                         f"({[p.name for p in params]})")
    values = []
    for p, value in zip(params, source):
        arr = np.asarray(value)
        if arr.shape != p.shape:
            raise ShapeError(f'{what}: parameter "{p.name}" has shape {p.shape}, the value given for it {arr.shape}')
        values.append(np.array(arr, dtype=p.dtype))
    return values


def _filters(arr: np.ndarray) -> np.ndarray:
    """arr as (filters, weights per filter): a Dense (in, out) kernel's columns, a conv (out, ...)
    kernel's slices along its first axis (a copy for the kernel, so it can be scaled in place)."""
    return arr.T.copy() if arr.ndim == 2 else arr.reshape(arr.shape[0], -1).copy()


def filter_normalized_direction(centre: Sequence[np.ndarray], seed=None, bias: str = "zero") -> list[np.ndarray]:
    """A random direction in weight space, one array per parameter of `centre`, each filter scaled
    to the norm of the centre's filter (see the module docstring). bias: "zero" or "filter"."""
    if bias not in ("zero", "filter"):
        raise ValueError(f'bias must be "zero" or "filter", got {bias!r}')
    rng = np.random.default_rng(seed)
    direction = []
    for theta in centre:
        theta = np.asarray(theta)
        d = rng.standard_normal(theta.shape)
        if theta.ndim <= 1:
            if bias == "zero":
                d = np.zeros(theta.shape)
            else:
                d = d * (np.linalg.norm(theta) / max(np.linalg.norm(d), 1e-30))
        else:
            d_filters = _filters(d)
            d_filters *= (np.linalg.norm(_filters(theta), axis=1)
                          / np.maximum(np.linalg.norm(d_filters, axis=1), 1e-30))[:, None]
            d = d_filters.T if theta.ndim == 2 else d_filters.reshape(theta.shape)
        direction.append(d.astype(theta.dtype))
    return direction


def substitute(output: Tensor, replacements: dict[Tensor, Tensor]) -> Tensor:
    """A copy of the graph of `output` in which every node that is a key of `replacements` is
    replaced by its value (and everything downstream of it rebuilt); the original is untouched."""
    from .compiler.passes import rewrite
    from .graph import Graph
    by_id = {old.id: new for old, new in replacements.items()}
    graph = rewrite(Graph([output]), lambda node: by_id.get(node.id))
    return graph.outputs[0]


class LossSurface:
    """The model's loss at θ = C + a·D1 + b·D2 on fixed data (X, Y), one compiled program for every
    point. `set_plane(centre, d1, d2)` chooses the plane (arrays per parameter), `loss(a, b)` is
    one C call. X is evaluated as one batch, in eval mode (no dropout)."""

    def __init__(self, model, X, Y, loss: str | Callable = "mse"):
        from .nn import training
        from .runtime import Program
        from .train import _prepare, loss_function
        self.params = _parameters(model)
        X, Y = _prepare(model, X, Y)
        self.X, self.Y = X, Y
        dtype = model.dtype
        self.x = placeholder((None,) + X.shape[1:], name="x", dtype=dtype)
        self.y = placeholder((None,) + Y.shape[1:], name="y", dtype=Y.dtype)
        with training(False):
            pred = model(self.x)
        loss_t = loss_function(loss)(pred, self.y)
        if not isinstance(loss_t, Tensor) or loss_t.shape != ():
            raise ShapeError(f"the loss must be a scalar Tensor, got {loss_t!r}")
        self.a = variable(0.0, name="landscape/a", dtype=dtype, trainable=False)
        self.b = variable(0.0, name="landscape/b", dtype=dtype, trainable=False)
        # per parameter: the centre and the two directions, variables the program reads
        self.planes = [tuple(variable(p.data if k == 0 else np.zeros(p.shape), name=f"{p.name}/{what}", dtype=dtype,
                                      trainable=False) for k, what in enumerate(("centre", "d1", "d2")))
                       for p in self.params]
        replacements = {p: c + self.a * d1 + self.b * d2 for p, (c, d1, d2) in zip(self.params, self.planes)}
        self.loss_tensor = substitute(loss_t, replacements)
        self.program = Program(self.loss_tensor)
        self._feeds = {self.x: X, self.y: Y}

    def set_plane(self, centre: Sequence[np.ndarray], d1: Sequence[np.ndarray], d2: Sequence[np.ndarray] | None = None):
        """θ(a, b) = centre + a·d1 + b·d2 from now on (d2 None: zero, a line)."""
        d1 = parameter_values(d1, self.params, "direction 1")
        d2 = [np.zeros(p.shape, p.dtype) for p in self.params] if d2 is None else parameter_values(d2, self.params, "direction 2")
        centre = parameter_values(centre, self.params, "centre")
        for variables, values in zip(self.planes, zip(centre, d1, d2)):
            for var, value in zip(variables, values):
                var.assign(value)

    def loss(self, a: float, b: float = 0.0) -> float:
        """The loss at θ = centre + a·d1 + b·d2: two scalar writes and one C call."""
        self.a.data[...] = a
        self.b.data[...] = b
        return float(self.program(self._feeds))


@dataclass
class LossLine:
    """The loss along θ(α) = start + α·(end − start): α = 0 is `start`, α = 1 is `end`."""
    alphas: np.ndarray
    losses: np.ndarray
    start_label: str = "initial"
    end_label: str = "trained"
    seconds: float = 0.0


@dataclass
class LossPlane:
    """losses[i, j] is the loss at θ* + alphas[j]·δ + betas[i]·η (rows follow β, as contour wants)."""
    alphas: np.ndarray
    betas: np.ndarray
    losses: np.ndarray
    directions: tuple = field(repr=False, default=())
    seconds: float = 0.0


def _grid(lo: float, hi: float, steps: int, what: str) -> np.ndarray:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 2:
        raise ValueError(f"{what} needs steps >= 2 points, got {steps!r}")
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"{what} needs a range lo < hi, got [{lo}, {hi}]")
    return np.linspace(lo, hi, int(steps))


def loss_line(model, X, Y, loss: str | Callable = "mse", start=None, end=None, steps: int = 25,
              margin: float = 0.25, surface: LossSurface | None = None, start_label: str = "initial",
              end_label: str = "trained") -> LossLine:
    """The loss along the straight line from `start` to `end` (default: the model's current
    weights), for α in [−margin, 1 + margin]. start / end: a model of the same architecture, a
    list of arrays in model.parameters() order, or a dict by parameter name."""
    import time
    params = _parameters(model)
    if start is None:
        raise ValueError("loss_line needs start= (e.g. the initial weights: [p.value for p in model.parameters()] "
                         "saved before training, or another trained model)")
    alphas = _grid(-float(margin), 1.0 + float(margin), steps, "loss_line")
    surface = surface or LossSurface(model, X, Y, loss)
    start = parameter_values(start, params, "start")
    end = parameter_values(model if end is None else end, params, "end")
    surface.set_plane(start, [e - s for s, e in zip(start, end)])
    t0 = time.perf_counter()
    losses = np.array([surface.loss(a) for a in alphas])
    return LossLine(alphas, losses, start_label, end_label, time.perf_counter() - t0)


def loss_plane(model, X, Y, loss: str | Callable = "mse", centre=None, directions=None, steps: int = 21,
               span: float = 1.0, seed=0, bias: str = "zero", surface: LossSurface | None = None) -> LossPlane:
    """The loss on a steps×steps grid over [−span, span]² of the plane centre + α·δ + β·η.
    centre: default the model's current (trained) weights. directions: a pair (δ, η), each one
    array per parameter; default two filter-normalised random directions drawn from `seed`."""
    import time
    params = _parameters(model)
    grid = _grid(-float(span), float(span), steps, "loss_plane")
    centre = parameter_values(model if centre is None else centre, params, "centre")
    if directions is None:
        rng = np.random.default_rng(seed)
        directions = tuple(filter_normalized_direction(centre, rng, bias) for _ in range(2))
    else:
        directions = tuple(directions)
        if len(directions) != 2:
            raise ShapeError(f"directions must be a pair (δ, η), got {len(directions)} of them")
        directions = tuple(parameter_values(d, params, f"direction {k + 1}") for k, d in enumerate(directions))
    surface = surface or LossSurface(model, X, Y, loss)
    surface.set_plane(centre, *directions)
    t0 = time.perf_counter()
    losses = np.array([[surface.loss(a, b) for a in grid] for b in grid])
    return LossPlane(grid, grid.copy(), losses, directions, time.perf_counter() - t0)


@dataclass
class Landscape:
    """What gg.viz.loss_landscape computed and drew."""
    plane: LossPlane
    line: LossLine | None
    paths: list = field(default_factory=list)
