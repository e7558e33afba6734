"""Initialisers: functions (shape, ..., seed) -> a NumPy array to hand to gg.variable.

Weights are laid out (fan_in, fan_out), as Dense uses them (x @ W). The scaled families follow
PyTorch's definitions (plain, untruncated normals):

    he / kaiming     normal std = sqrt(2 / fan_in)              uniform limit = sqrt(6 / fan_in)
    xavier / glorot  normal std = sqrt(2 / (fan_in + fan_out))  uniform limit = sqrt(6 / (fan_in + fan_out))
    lecun            normal std = sqrt(1 / fan_in)              uniform limit = sqrt(3 / fan_in)

`seed` is an int (reproducible), a numpy Generator (drawn from), or None: draw from graphgrad's
default generator, which gg.init.seed(n) resets — so a whole model is reproducible from one call.
"""
from __future__ import annotations

import math

import numpy as np

from . import dtypes as _dt

_default_rng = np.random.default_rng()


def seed(value: int) -> None:
    """Reset the generator used by initialisers called with seed=None."""
    global _default_rng
    _default_rng = np.random.default_rng(value)


def generator(seed: int | np.random.Generator | None = None) -> np.random.Generator:
    """The generator an initialiser draws from for this `seed` argument."""
    if seed is None:
        return _default_rng
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of `shape`: (in, out) for a matrix, both n for a vector; for
    higher ranks the layout is (*receptive field, in, out), as a (3, 3, in, out) conv kernel."""
    shape = tuple(int(d) for d in shape)
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def _finish(values: np.ndarray, dtype) -> np.ndarray:
    return np.asarray(values, dtype=_dt.as_dtype(dtype))


def zeros(shape, dtype="float32", seed=None) -> np.ndarray:
    """All zeros (the usual bias initialiser). `seed` is accepted and unused, like every initialiser's."""
    return np.zeros(shape, dtype=_dt.as_dtype(dtype))


def ones(shape, dtype="float32", seed=None) -> np.ndarray:
    """All ones."""
    return np.ones(shape, dtype=_dt.as_dtype(dtype))


def normal(shape, std: float = 1.0, mean: float = 0.0, seed=None, dtype="float32") -> np.ndarray:
    """Independent N(mean, std²) entries (std=1: the initialisation of Nielsen's book)."""
    return _finish(mean + std * generator(seed).standard_normal(shape), dtype)


def uniform(shape, low: float = -0.05, high: float = 0.05, seed=None, dtype="float32") -> np.ndarray:
    """Independent U(low, high) entries."""
    return _finish(generator(seed).uniform(low, high, size=shape), dtype)


def he_normal(shape, seed=None, dtype="float32") -> np.ndarray:
    """N(0, 2/fan_in): keeps the activations' variance through ReLU layers (He et al., 2015)."""
    return normal(shape, std=math.sqrt(2.0 / fans(shape)[0]), seed=seed, dtype=dtype)


def he_uniform(shape, seed=None, dtype="float32") -> np.ndarray:
    """U(±sqrt(6/fan_in)): the uniform twin of he_normal (same variance)."""
    limit = math.sqrt(6.0 / fans(shape)[0])
    return uniform(shape, -limit, limit, seed=seed, dtype=dtype)


def xavier_normal(shape, seed=None, dtype="float32") -> np.ndarray:
    """N(0, 2/(fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = fans(shape)
    return normal(shape, std=math.sqrt(2.0 / (fan_in + fan_out)), seed=seed, dtype=dtype)


def xavier_uniform(shape, seed=None, dtype="float32") -> np.ndarray:
    """U(±sqrt(6/(fan_in + fan_out))) (Glorot & Bengio, 2010; Keras' default for Dense)."""
    fan_in, fan_out = fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return uniform(shape, -limit, limit, seed=seed, dtype=dtype)


def lecun_normal(shape, seed=None, dtype="float32") -> np.ndarray:
    """N(0, 1/fan_in) (LeCun et al., 1998; the one SELU networks need)."""
    return normal(shape, std=math.sqrt(1.0 / fans(shape)[0]), seed=seed, dtype=dtype)


def lecun_uniform(shape, seed=None, dtype="float32") -> np.ndarray:
    """U(±sqrt(3/fan_in)): the uniform twin of lecun_normal."""
    limit = math.sqrt(3.0 / fans(shape)[0])
    return uniform(shape, -limit, limit, seed=seed, dtype=dtype)


glorot_normal = xavier_normal
glorot_uniform = xavier_uniform
kaiming_normal = he_normal
kaiming_uniform = he_uniform

#: the initialisers layers accept by name
BY_NAME = {
    "zeros": zeros, "ones": ones, "normal": normal, "uniform": uniform,
    "he_normal": he_normal, "he_uniform": he_uniform, "kaiming_normal": he_normal, "kaiming_uniform": he_uniform,
    "xavier_normal": xavier_normal, "xavier_uniform": xavier_uniform,
    "glorot_normal": xavier_normal, "glorot_uniform": xavier_uniform,
    "lecun_normal": lecun_normal, "lecun_uniform": lecun_uniform,
}


def get(initialiser):
    """An initialiser from its name or itself (any callable (shape, seed=, dtype=) -> array)."""
    if callable(initialiser):
        return initialiser
    try:
        return BY_NAME[initialiser]
    except (KeyError, TypeError):
        raise ValueError(f"unknown initialiser {initialiser!r}; use one of {sorted(BY_NAME)} or a callable "
                         "(shape, seed=None, dtype='float32') -> array") from None
