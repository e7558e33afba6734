"""Layers: Dense, Conv2D, pooling, BatchNorm, Flatten, Dropout, activation layers and Sequential,
the Keras/PyTorch-style way to build a model.

A layer owns its variables (created once, at construction) and, when called on a Tensor, adds
its ops to the graph and returns the output Tensor: `model(x)` builds the forward graph that
gg.fit, gg.evaluate and gg.predict compile. Every layer can describe itself as plain data
(`describe()`), which checkpoints store so that gg.load can rebuild the model.

Train and eval mode are decided when the graph is built, not when it runs: inside
`with gg.nn.training():` layers build their training graph (Dropout masks), outside it their
inference graph. gg.fit builds its step in training mode; evaluate and predict do not. Dropout
masks and BatchNorm's batch statistics (and the update of its running statistics, inside the
step) exist only in training graphs; inference graphs use no mask and the running statistics.

Convolutional layers take NCHW input and hold (out, in, kh, kw) weights, as PyTorch and ONNX.
`model.summary(input_shape)` prints each layer's output shape and parameter count, as Keras.
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


def _kernel_pair(value, what: str) -> tuple[int, int]:
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                                  for v in items):
        raise ValueError(f"{what} must be a positive int or a pair of them, got {value!r}")
    return int(items[0]), int(items[1])


class Conv2D(Module):
    """y = activation(conv2d(x, W, b)): x is (batch, in_channels, H, W), W is (out_channels,
    in_channels, kh, kw), b is (out_channels,), y is (batch, out_channels, OH, OW).

    stride, dilation: int or pair; padding: int, pair, "valid" or "same". kernel_init / bias_init as
    for Dense (Keras' defaults, glorot_uniform and zeros); the fans are the kernel's:
    fan_in = in_channels·kh·kw, fan_out = out_channels·kh·kw (a callable initialiser is asked for
    shape (kh, kw, in_channels, out_channels), whose fans gg.init computes so, and the result is
    transposed to graphgrad's layout). The bias and a ReLU run inside the convolution's GEMM.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 activation: str | Callable | None = None, use_bias: bool = True, kernel_init="glorot_uniform",
                 bias_init="zeros", seed=None, dtype="float32", name: str | None = None):
        if int(in_channels) <= 0 or int(out_channels) <= 0:
            raise ValueError(f"Conv2D needs positive channel counts, got in_channels={in_channels}, "
                             f"out_channels={out_channels}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _kernel_pair(kernel_size, "Conv2D kernel_size")
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.activation = activation
        self._activation = activation_function(activation)
        self.use_bias = bool(use_bias)
        self.name = name or f"conv{next(_layer_ids)}"
        rng = _init.generator(seed)
        dt = _dt.as_dtype(dtype)
        kh, kw = self.kernel_size
        kernel = _init.get(kernel_init)((kh, kw, self.in_channels, self.out_channels), seed=rng, dtype=dt)
        self.kernel = variable(np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1))), name=f"{self.name}/kernel",
                               dtype=dt)
        self.bias = (variable(_init.get(bias_init)((self.out_channels,), seed=rng, dtype=dt),
                              name=f"{self.name}/bias", dtype=dt) if self.use_bias else None)

    def forward(self, x: Tensor) -> Tensor:
        z = ops.conv2d(x, self.kernel, self.bias, stride=self.stride, padding=self.padding, dilation=self.dilation,
                       name=self.name)
        return self._activation(z)

    def parameters(self) -> list[Tensor]:
        return [self.kernel] + ([self.bias] if self.bias is not None else [])

    def describe(self) -> dict:
        activation = _activation_name(self.activation)
        if activation is None:
            raise TypeError(f"Conv2D {self.name!r} uses a custom activation {self.activation!r}: it cannot be "
                            "described; load its checkpoint with gg.load(path, model=...)")
        plain = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731  (JSON has no tuples)
        return {"type": "Conv2D", "in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": plain(self.stride), "padding": plain(self.padding),
                "dilation": plain(self.dilation), "activation": activation, "use_bias": self.use_bias,
                "dtype": self.kernel.dtype.name, "name": self.name}


class _Pool2D(Module):
    op = ""

    def __init__(self, pool_size=2, stride=None, padding=0, name: str | None = None):
        self.pool_size = _kernel_pair(pool_size, f"{type(self).__name__} pool_size")
        self.stride, self.padding = stride, padding
        self.name = name or f"{self.op.split('_')[0]}pool{next(_layer_ids)}"

    def forward(self, x: Tensor) -> Tensor:
        return getattr(ops, self.op)(x, self.pool_size, self.stride, self.padding, name=self.name)

    def describe(self) -> dict:
        plain = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
        return {"type": type(self).__name__, "pool_size": list(self.pool_size), "stride": plain(self.stride),
                "padding": plain(self.padding), "name": self.name}


class MaxPool2D(_Pool2D):
    """The maximum of each pool_size window (stride: default pool_size; padding with -inf)."""
    op = "max_pool2d"


class AvgPool2D(_Pool2D):
    """The mean of each pool_size window (padding counted as zeros, as PyTorch's default)."""
    op = "avg_pool2d"


class _OpLayer(Module):
    """A layer with no parameters that applies one op (`op`, a graphgrad.ops function) to its input."""
    op = ""
    prefix = ""

    def __init__(self, name: str | None = None):
        self.name = name or f"{self.prefix}{next(_layer_ids)}"

    def forward(self, x: Tensor) -> Tensor:
        return getattr(ops, self.op)(x, name=self.name)

    def describe(self) -> dict:
        return {"type": type(self).__name__, "name": self.name}


class GlobalAvgPool2D(_OpLayer):
    """(batch, C, H, W) -> (batch, C): each channel's mean over the image."""
    op, prefix = "global_avg_pool2d", "globalavgpool"


class Flatten(_OpLayer):
    """(batch, d1, d2, ...) -> (batch, d1·d2·...), in C order (NCHW: as PyTorch and ONNX flatten)."""
    op, prefix = "flatten", "flatten"


class BatchNorm(Module):
    """Batch normalisation over the channels of (batch, C, H, W) input or the features of (batch, C):
    y = (x - mean) / sqrt(var + eps) · gamma + beta. Training graphs use the batch's statistics and
    move the running ones towards them (running = (1 - momentum)·running + momentum·batch, the
    variance unbiased, as PyTorch), inside the compiled step; inference graphs use the running
    statistics. gamma and beta are trained; running_mean and running_var are buffers (saved in
    checkpoints, never trained)."""

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, dtype="float32",
                 name: str | None = None):
        if int(num_features) <= 0:
            raise ValueError(f"BatchNorm needs a positive num_features, got {num_features}")
        self.num_features, self.momentum, self.eps = int(num_features), float(momentum), float(eps)
        self.name = name or f"batchnorm{next(_layer_ids)}"
        dt = _dt.as_dtype(dtype)
        c = self.num_features
        self.gamma = variable(np.ones(c), name=f"{self.name}/gamma", dtype=dt)
        self.beta = variable(np.zeros(c), name=f"{self.name}/beta", dtype=dt)
        self.running_mean = variable(np.zeros(c), name=f"{self.name}/running_mean", dtype=dt, trainable=False)
        self.running_var = variable(np.ones(c), name=f"{self.name}/running_var", dtype=dt, trainable=False)

    def forward(self, x: Tensor) -> Tensor:
        return ops.batch_norm(x, self.gamma, self.beta, self.running_mean, self.running_var, training=_training,
                              momentum=self.momentum, eps=self.eps, name=self.name)

    def parameters(self) -> list[Tensor]:
        return [self.gamma, self.beta]

    def buffers(self) -> list[Tensor]:
        return [self.running_mean, self.running_var]

    def describe(self) -> dict:
        return {"type": "BatchNorm", "num_features": self.num_features, "momentum": self.momentum, "eps": self.eps,
                "dtype": self.gamma.dtype.name, "name": self.name}


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

    def summary(self, input_shape=None, print_fn=print, as_text: bool = False) -> str | None:
        """Each layer's output shape and parameter count, as Keras' model.summary(): printed with
        print_fn and None returned (so a notebook shows it once), as Program.summary() does;
        as_text=True returns the table instead of printing it. input_shape: one example's shape, e.g.
        (1, 28, 28) (default: (in_features,) when the first layer is a Dense). Output shapes are those of
        an inference graph."""
        if input_shape is None:
            first = self.layers[0] if self.layers else None
            if not isinstance(first, Dense):
                raise ValueError("summary(input_shape=...) needs one example's shape, e.g. (1, 28, 28), "
                                 "when the first layer is not a Dense")
            input_shape = (first.in_features,)
        from .graph import placeholder
        x = placeholder((None,) + tuple(input_shape), name="input", dtype=self.dtype)
        rows = []
        with training(False):
            for layer in self.layers:
                x = layer(x)
                count = sum(int(np.prod(p.shape)) for p in layer.parameters())
                label = f"{getattr(layer, 'name', type(layer).__name__.lower())} ({type(layer).__name__})"
                rows.append((label, "(" + ", ".join("None" if d is None else str(d) for d in x.shape) + ")", count))
        trainable = sum(r[2] for r in rows)
        frozen = sum(int(np.prod(b.shape)) for b in self.buffers() if b.dtype.kind == "f" and b.ndim > 0)
        width = max([28] + [len(r[0]) + 2 for r in rows])
        rule = "=" * (width + 36)
        lines = [rule, f"{'Layer (type)':<{width}}{'Output Shape':<24}{'Param #':>12}", rule]
        lines += [f"{label:<{width}}{shape:<24}{count:>12,}" for label, shape, count in rows]
        lines += [rule, f"Total params: {trainable + frozen:,}", f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {frozen:,}", rule]
        text = "\n".join(lines)
        if as_text:
            return text
        print_fn(text)
        return None

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
    if kind == "Conv2D":
        pair = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731
        return Conv2D(description["in_channels"], description["out_channels"], tuple(description["kernel_size"]),
                      stride=pair(description["stride"]), padding=pair(description["padding"]),
                      dilation=pair(description["dilation"]), activation=description["activation"],
                      use_bias=description["use_bias"], kernel_init="zeros", bias_init="zeros",
                      dtype=description["dtype"], name=description.get("name"))
    if kind in ("MaxPool2D", "AvgPool2D"):
        pair = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731
        return {"MaxPool2D": MaxPool2D, "AvgPool2D": AvgPool2D}[kind](
            tuple(description["pool_size"]), pair(description["stride"]), pair(description["padding"]),
            name=description.get("name"))
    if kind == "GlobalAvgPool2D":
        return GlobalAvgPool2D(name=description.get("name"))
    if kind == "Flatten":
        return Flatten(name=description.get("name"))
    if kind == "BatchNorm":
        return BatchNorm(description["num_features"], momentum=description["momentum"], eps=description["eps"],
                         dtype=description["dtype"], name=description.get("name"))
    raise ValueError(f"cannot rebuild a module of type {kind!r}")
