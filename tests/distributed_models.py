"""The models the distributed tests train, built the same way by the MPI worker and by the
single-process reference in test_distributed.py (no MPI here)."""
import graphgrad as gg


def mnist_mlp(dtype="float32", hidden=128):
    return gg.nn.Sequential(gg.nn.Dense(784, hidden, activation="relu", kernel_init="he_normal", seed=0, dtype=dtype),
                            gg.nn.Dense(hidden, 10, seed=1, dtype=dtype))


def small_mlp(dtype="float64"):
    return gg.nn.Sequential(gg.nn.Dense(12, 16, activation="tanh", seed=0, dtype=dtype),
                            gg.nn.Dense(16, 3, seed=1, dtype=dtype))


def mnist_cnn(batch_norm=False, dtype="float32"):
    """Keras' mnist_convnet, narrower (8 and 16 filters) and without its dropout (whose masks are
    per rank): Conv2D-ReLU-MaxPool-Conv2D-ReLU-MaxPool-Flatten-Dense; batch_norm puts a BatchNorm
    after each convolution."""
    nn = gg.nn

    def block(c_in, c_out, k):
        if batch_norm:
            return [nn.Conv2D(c_in, c_out, 3, use_bias=False, seed=k), nn.BatchNorm(c_out), nn.ReLU(), nn.MaxPool2D(2)]
        return [nn.Conv2D(c_in, c_out, 3, activation="relu", seed=k, dtype=dtype), nn.MaxPool2D(2)]
    return nn.Sequential(*block(1, 8, 1), *block(8, 16, 2), nn.Flatten(), nn.Dense(16 * 5 * 5, 10, seed=3, dtype=dtype))
