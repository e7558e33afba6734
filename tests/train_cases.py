"""Small data sets and models shared by the training, layer and checkpoint tests."""
import numpy as np

import graphgrad as gg


def regression_data(n=96, d=4, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    w = rng.standard_normal((d, 1))
    Y = np.tanh(X @ w) + 0.5
    return X.astype(dtype), Y.astype(dtype)


def classification_data(n=120, d=5, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    X = rng.standard_normal((n, d)) + 2.0 * np.eye(classes, d)[labels]
    return X.astype(np.float32), labels


def mlp(d=4, hidden=8, out=1, seed=0, dtype="float32", activation="sigmoid"):
    return gg.nn.Sequential(gg.nn.Dense(d, hidden, activation=activation, seed=seed, dtype=dtype),
                            gg.nn.Dense(hidden, out, seed=seed + 1, dtype=dtype))


def params(model):
    return [p.value for p in model.parameters()]


def numpy_forward(model, X):
    h = X.astype(np.float64)
    for layer in model.layers:
        h = h @ layer.kernel.value + layer.bias.value
        if layer.activation == "sigmoid":
            h = 1 / (1 + np.exp(-h))
        elif layer.activation == "relu":
            h = np.maximum(h, 0)
    return h


def from_reference(seed, counter, rate, n):
    from op_cases import dropout_mask_reference
    return dropout_mask_reference((n,), seed, counter, rate).astype(np.float32)


def dropout_mlp(seed=0):
    return gg.nn.Sequential(gg.nn.Dense(4, 16, activation="relu", seed=seed), gg.nn.Dropout(0.25, seed=seed + 7),
                            gg.nn.Dense(16, 1, seed=seed + 1))
