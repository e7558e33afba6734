"""The MNIST loaders (bundled subset, IDX files gzipped or not, Nielsen's pickle) and the
synthetic regression data."""
import gzip
import pickle
import struct

import numpy as np
import pytest

import graphgrad as gg


def test_bundled_subset_split_and_ranges():
    (X, y), (Xt, yt) = gg.datasets.mnist()
    assert X.shape == (4000, 784) and Xt.shape == (1000, 784)
    assert X.dtype == np.float32 and y.dtype == np.int64
    assert 0.0 <= X.min() and X.max() <= 1.0 and X.max() == 1.0
    assert set(np.unique(y)) == set(range(10)) and set(np.unique(yt)) == set(range(10))
    (X2, y2), _ = gg.datasets.mnist()
    np.testing.assert_array_equal(y, y2)          # fixed seed: the same split every time
    (_, y3), _ = gg.datasets.mnist(seed=1)
    assert not np.array_equal(y, y3)
    (Xi, _), _ = gg.datasets.mnist(flatten=False)
    assert Xi.shape == (4000, 28, 28)


def _write_idx(path, array, gz):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_files(tmp_path, gz):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (6, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 6).astype(np.uint8)
    suffix = ".gz" if gz else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", imgs, gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, gz)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", imgs[:2], gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels[:2], gz)
    (X, y), (Xt, yt) = gg.datasets.mnist(path=str(tmp_path))
    np.testing.assert_allclose(X, imgs.reshape(6, 784) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    assert Xt.shape == (2, 784) and yt.tolist() == labels[:2].tolist()


def test_truncated_idx_file_is_reported(tmp_path):
    imgs = np.zeros((3, 28, 28), np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte", imgs, False)
    data = (tmp_path / "train-images-idx3-ubyte").read_bytes()
    (tmp_path / "train-images-idx3-ubyte").write_bytes(data[:-10])
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        _write_idx(tmp_path / name, np.zeros(3, np.uint8) if "labels" in name else imgs, False)
    with pytest.raises(ValueError, match="truncated"):
        gg.datasets.mnist(path=str(tmp_path))


def test_nielsen_pickle(tmp_path):
    rng = np.random.default_rng(1)
    part = lambda n: (rng.random((n, 784)).astype(np.float32), rng.integers(0, 10, n))  # noqa: E731
    training, validation, test = part(5), part(2), part(3)
    path = tmp_path / "mnist.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump((training, validation, test), f)
    (X, y), (Xt, yt) = gg.datasets.mnist(path=str(path))
    np.testing.assert_array_equal(X, training[0])
    np.testing.assert_array_equal(yt, test[1])
    assert X.dtype == np.float32 and y.dtype == np.int64


def test_regression_data():
    X, y = gg.datasets.regression(200, n_features=2, noise=0.0, seed=3)
    assert X.shape == (200, 2) and y.shape == (200, 1) and X.dtype == np.float32
    np.testing.assert_allclose(y[:, 0], X @ np.array([0.5, 1.0]) + 0.5, rtol=1e-5, atol=1e-6)
    Xs, ys = gg.datasets.regression(50, n_features=1, kind="sine", seed=0)
    assert np.allclose(X, gg.datasets.regression(200, n_features=2, noise=0.0, seed=3)[0])
    with pytest.raises(ValueError):
        gg.datasets.regression(kind="cubic")
