"""Layers: Dense, activation layers and Sequential, the Keras/PyTorch-style way to build a model.

A layer owns its variables (created once, at construction) and, when called on a Tensor, adds
its ops to the graph and returns the output Tensor: `model(x)` builds the forward graph that
gg.fit, gg.evaluate and gg.predict compile. Every layer can describe itself as plain data
(`describe()`), which checkpoints store so that gg.load can rebuild the model.

Train and eval mode are decided when the graph is built, not when it runs: inside
`with gg.nn.training():` layers build their training graph (Dropout masks), outside it their
inference graph. gg.fit builds its step in training mode; evaluate and predict do not.
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Callable, Iterator

import numpy as np

from . import dtypes as _dt
from . import init as _init
from . import ops
from .graph import Tensor, variable

#: activation names a layer accepts: the op functions marked @export(activation=True) in graphgrad/ops
ACTIVATIONS = ops.ACTIVATIONS

_layer_ids = itertools.count()
_training = False


@contextlib.contextmanager
def training(mode: bool = True) -> Iterator[None]:
    """Graphs built inside this block are training graphs (dropout active); see the module docstring."""
    global _training
    previous, _training = _training, bool(mode)
    try:
        yield
    finally:
        _training = previous


def is_training() -> bool:
    """Whether graphs built now are training graphs."""
    return _training


def activation_function(name: str | Callable | None) -> Callable[[Tensor], Tensor]:
    """The graph function for an activation name ("relu", ...), a callable, or None / "linear"."""
    if name is None or name == "linear":
        return lambda x: x
    if callable(name):
        return name
    fn = ACTIVATIONS.get(name)
    if fn is None:
        available = ["linear", *ACTIVATIONS]
        raise ValueError(f"unknown activation {name!r}; this build has {available} (or pass a function Tensor -> Tensor)")
    return fn


def _activation_name(activation) -> str | None:
    """The name that describes `activation`, or None when it is not one of the named ones."""
    if activation is None or isinstance(activation, str):
        return activation or "linear"
    return next((name for name, fn in ACTIVATIONS.items() if fn is activation), None)


class Module:
    """Base class of layers and models: callable on a Tensor, owns variables."""

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def forward(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def parameters(self) -> list[Tensor]:
        """The trainable variables, in a fixed order (checkpoints rely on it)."""
        return []

    def buffers(self) -> list[Tensor]:
        """Non-trainable variables the module updates itself (e.g. Dropout's step counter),
        saved in checkpoints beside the parameters."""
        return []

    def describe(self) -> dict:
        """This module as plain data (see from_description); raises when it cannot be described."""
        raise TypeError(f"{type(self).__name__} cannot describe itself; checkpoints of it need "
                        "gg.load(path, model=...)")

    @property
    def dtype(self) -> np.dtype:
        params = self.parameters()
        return params[0].dtype if params else _dt.DEFAULT_FLOAT

    def __repr__(self) -> str:
        try:
            fields = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k not in ("type", "layers"))
        except TypeError:
            fields = ""
        return f"{type(self).__name__}({fields})"


class Dense(Module):
    """y = activation(x @ W + b): x is (batch, in_features), W is (in_features, out_features),
    b is (out_features,), y is (batch, out_features).

    kernel_init / bias_init: a gg.init name or a callable (shape, seed=, dtype=) -> array;
    Keras' defaults (glorot_uniform, zeros). `seed` makes the layer's initial values reproducible
    (None: graphgrad's default generator, see gg.init.seed).
    """

    def __init__(self, in_features: int, out_features: int, activation: str | Callable | None = None,
                 use_bias: bool = True, kernel_init="glorot_uniform", bias_init="zeros", seed=None,
                 dtype="float32", name: str | None = None):
        if int(in_features) <= 0 or int(out_features) <= 0:
            raise ValueError(f"Dense needs positive sizes, got in_features={in_features}, out_features={out_features}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.activation = activation
        self._activation = activation_function(activation)
        self.use_bias = bool(use_bias)
        self.name = name or f"dense{next(_layer_ids)}"
        rng = _init.generator(seed)    # one generator for both, so the bias is not a copy of the kernel's draws
        dt = _dt.as_dtype(dtype)
        self.kernel = variable(_init.get(kernel_init)((self.in_features, self.out_features), seed=rng, dtype=dt),
                               name=f"{self.name}/kernel", dtype=dt)
        self.bias = (variable(_init.get(bias_init)((self.out_features,), seed=rng, dtype=dt),
                              name=f"{self.name}/bias", dtype=dt) if self.use_bias else None)

    def forward(self, x: Tensor) -> Tensor:
        z = x @ self.kernel
        if self.bias is not None:
            z = z + self.bias
        return self._activation(z)

    def parameters(self) -> list[Tensor]:
        return [self.kernel] + ([self.bias] if self.bias is not None else [])

    def describe(self) -> dict:
        activation = _activation_name(self.activation)
        if activation is None:
            raise TypeError(f"Dense {self.name!r} uses a custom activation {self.activation!r}: it cannot be "
                            "described; load its checkpoint with gg.load(path, model=...)")
        return {"type": "Dense", "in_features": self.in_features, "out_features": self.out_features,
                "activation": activation, "use_bias": self.use_bias, "dtype": self.kernel.dtype.name,
                "name": self.name}


class Activation(Module):
    """An activation as a layer: Activation("relu"), or the named classes below."""

    def __init__(self, activation: str | Callable):
        self.activation = activation
        self._fn = activation_function(activation)

    def forward(self, x: Tensor) -> Tensor:
        return self._fn(x)

    def describe(self) -> dict:
        name = _activation_name(self.activation)
        if name is None:
            raise TypeError(f"Activation({self.activation!r}) is a custom function: it cannot be described")
        return {"type": "Activation", "activation": name}


def _named_activation(class_name: str, op_name: str):
    def __init__(self):
        Activation.__init__(self, op_name)
    return type(class_name, (Activation,), {"__init__": __init__, "__doc__": f"The {op_name} activation as a layer."})


ReLU = _named_activation("ReLU", "relu")
Sigmoid = _named_activation("Sigmoid", "sigmoid")
Tanh = _named_activation("Tanh", "tanh")
GELU = _named_activation("GELU", "gelu")
ELU = _named_activation("ELU", "elu")
Softplus = _named_activation("Softplus", "softplus")
Softmax = _named_activation("Softmax", "softmax")
LogSoftmax = _named_activation("LogSoftmax", "log_softmax")


class Dropout(Module):
    """Inverted dropout: in training graphs, each element is zeroed with probability `rate` and the
    rest scaled by 1/(1 - rate); in inference graphs it is the identity. A new mask every step:
    the layer's float64 counter advances by one each time a training step runs, and the mask is
    a pure function of (seed, counter, element), so runs are reproducible from the seed."""

    def __init__(self, rate: float = 0.5, seed: int | None = None, name: str | None = None):
        rate = float(rate)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout rate must be in [0, 1), got {rate}")
        self.rate = rate
        self.seed = int(_init.generator(seed).integers(0, 1 << 62)) if not isinstance(seed, int) else seed
        self.name = name or f"dropout{next(_layer_ids)}"
        self.counter = variable(np.float64(0.0), name=f"{self.name}/counter", dtype="float64", trainable=False)

    def forward(self, x: Tensor) -> Tensor:
        if not _training or self.rate == 0.0:
            return x
        step = ops.make("increment", [self.counter], {"amount": 1.0}, name=f"{self.name}/counter += 1")
        return x * ops.dropout_mask(x, step, self.rate, self.seed, name=f"{self.name}/mask")

    def buffers(self) -> list[Tensor]:
        return [self.counter]

    def describe(self) -> dict:
        return {"type": "Dropout", "rate": self.rate, "seed": self.seed, "name": self.name}


class Sequential(Module):
    """Layers applied one after the other: Sequential(Dense(784, 30, activation="sigmoid"), Dense(30, 10))."""

    def __init__(self, *layers: Module):
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)):
            layers = tuple(layers[0])
        for layer in layers:
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential takes layers (gg.nn.Module), got {layer!r}")
        self.layers = list(layers)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def parameters(self) -> list[Tensor]:
        return [p for layer in self.layers for p in layer.parameters()]

    def buffers(self) -> list[Tensor]:
        return [b for layer in self.layers for b in layer.buffers()]

    def describe(self) -> dict:
        return {"type": "Sequential", "layers": [layer.describe() for layer in self.layers]}

    def __getitem__(self, index: int) -> Module:
        return self.layers[index]

    def __len__(self) -> int:
        return len(self.layers)

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(layer) for layer in self.layers)
        return f"Sequential(\n  {inner}\n)"


def from_description(description: dict) -> Module:
    """Rebuild a module from describe()'s data (parameters initialised to zeros: load them next)."""
    kind = description.get("type")
    if kind == "Sequential":
        return Sequential(*[from_description(d) for d in description["layers"]])
    if kind == "Dense":
        return Dense(description["in_features"], description["out_features"], activation=description["activation"],
                     use_bias=description["use_bias"], kernel_init="zeros", bias_init="zeros",
                     dtype=description["dtype"], name=description.get("name"))
    if kind == "Activation":
        return Activation(description["activation"])
    if kind == "Dropout":
        return Dropout(description["rate"], seed=description["seed"], name=description.get("name"))
    raise ValueError(f"cannot rebuild a module of type {kind!r}")
