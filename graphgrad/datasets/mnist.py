"""MNIST loaders.

The default is the bundled subset (data/mnist_5k.npz, 5,000 digits, 500 per class; see
data/README.md for its origin and CC BY-SA 3.0 licence), split 4,000 / 1,000 with a fixed
seed. `path=` reads the full MNIST: a folder with the four standard IDX files (gzipped or
not), or Nielsen's `mnist.pkl.gz` from "Neural Networks and Deep Learning".
"""
from __future__ import annotations

import gzip
import os
import pickle

import numpy as np

BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "mnist_5k.npz")
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}


def mnist(path: str | None = None, flatten: bool = True, test_size: int = 1000, seed: int = 0):
    """((X_train, y_train), (X_test, y_test)): X float32 in [0, 1], shape (N, 784) — or
    (N, 28, 28) with flatten=False — and y int64 labels 0-9.

    With no path: the bundled 5,000-digit subset, shuffled with `seed` and split into
    5,000 − test_size training and test_size test digits. With path: a folder holding the IDX
    files (train-images-idx3-ubyte[.gz], ...) or the file mnist.pkl.gz (its 50,000 training and
    10,000 test digits; the validation part is not returned).
    """
    if path is None:
        with np.load(BUNDLED) as data:
            images, labels = data["images"], data["labels"]
        if not 0 < test_size < len(images):
            raise ValueError(f"test_size must be between 1 and {len(images) - 1}")
        order = np.random.default_rng(seed).permutation(len(images))
        train, test = order[test_size:], order[:test_size]
        splits = ((images[train], labels[train]), (images[test], labels[test]))
    elif os.path.isdir(path):
        splits = ((_read_idx(_find(path, "train_images")), _read_idx(_find(path, "train_labels"))),
                  (_read_idx(_find(path, "test_images")), _read_idx(_find(path, "test_labels"))))
    elif path.endswith((".pkl.gz", ".pkl")):
        splits = _read_nielsen_pickle(path)
    else:
        raise FileNotFoundError(f"{path!r} is neither a folder of MNIST IDX files nor a mnist.pkl.gz file")
    return tuple((_images(x, flatten), np.asarray(y, dtype=np.int64)) for x, y in splits)


def _images(x: np.ndarray, flatten: bool) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    x = x.astype(np.float32, copy=False).reshape(len(x), 28, 28)
    return x.reshape(len(x), 784) if flatten else x


def _find(folder: str, key: str) -> str:
    stem = IDX_FILES[key]
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        candidate = os.path.join(folder, name)
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(f"no {stem}[.gz] in {folder!r}")


def _read_idx(path: str) -> np.ndarray:
    """Read an IDX file (the MNIST format: big-endian magic, dims, then the raw array)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path!r} is not an IDX file (bad magic number)")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if data[2] not in dtypes:
        raise ValueError(f"{path!r}: unknown IDX element type 0x{data[2]:02x}")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(dtypes[data[2]])
    body = data[4 + 4 * ndim:]
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(body) != expected:
        raise ValueError(f"{path!r} is truncated or corrupt: {len(body)} data bytes, expected {expected}")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def _read_nielsen_pickle(path: str):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        training, _validation, test = pickle.load(f, encoding="latin1")   # pickled by Python 2
    return (training[0], training[1]), (test[0], test[1])
