"""Data sets: MNIST (a bundled 5,000-digit subset, or the full set from files you give) and
synthetic regression problems."""
from .mnist import mnist
from .synthetic import regression

__all__ = ["mnist", "regression"]
