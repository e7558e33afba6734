"""Synthetic regression data with a seed, for examples and tests."""
from __future__ import annotations

import numpy as np


def regression(n_samples: int = 1000, n_features: int = 1, noise: float = 0.1, kind: str = "linear",
               seed: int = 0):
    """(X, y): X float32 (n_samples, n_features) uniform in [-1, 1]; y float32 (n_samples, 1).

    kind="linear": y = X·w + b + noise with w = 1, 2, …, n_features scaled by 1/n_features and b = 0.5;
    kind="sine": y = sin(π·x₁) + 0.5·x₂·… (a non-linear target) + noise.
    """
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n_samples, n_features))
    if kind == "linear":
        w = np.arange(1, n_features + 1) / n_features
        y = X @ w + 0.5
    elif kind == "sine":
        y = np.sin(np.pi * X[:, 0]) + 0.5 * X[:, 1:].sum(axis=1)
    else:
        raise ValueError(f'kind must be "linear" or "sine", got {kind!r}')
    y = y + noise * rng.standard_normal(n_samples)
    return X.astype(np.float32), y.reshape(-1, 1).astype(np.float32)
