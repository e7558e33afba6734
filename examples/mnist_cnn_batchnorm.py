"""mnist_convnet with batch normalisation: Conv2D(32, 3)-BatchNorm-ReLU-MaxPool(2)-Conv2D(64, 3)-
BatchNorm-ReLU-MaxPool(2)-Flatten-Dropout(0.5)-Dense(10), Adam 1e-3, batch 128, 15 epochs.

Training normalises each batch by its own statistics and moves the running statistics towards
them inside the compiled step; evaluation and prediction normalise by the running statistics
(saved in the checkpoint it writes). Same pictures as examples/mnist_cnn.py."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mnist_cnn  # noqa: E402


def main(argv=None):
    return mnist_cnn.main(argv, batch_norm=True)


if __name__ == "__main__":
    main()
