"""gg.init: the initialisers' published variances, seeds and dtypes."""
import numpy as np
import pytest

import graphgrad as gg


@pytest.mark.parametrize("name, std", [
    ("he_normal", np.sqrt(2 / 400)), ("xavier_normal", np.sqrt(2 / 600)), ("glorot_normal", np.sqrt(2 / 600)),
    ("lecun_normal", np.sqrt(1 / 400)), ("he_uniform", np.sqrt(2 / 400)), ("xavier_uniform", np.sqrt(2 / 600)),
    ("glorot_uniform", np.sqrt(2 / 600)), ("lecun_uniform", np.sqrt(1 / 400))])
def test_scaled_initialisers_have_their_published_variance(name, std):
    w = getattr(gg.init, name)((400, 200), seed=0)
    assert w.shape == (400, 200) and w.dtype == np.float32
    assert abs(w.std() / std - 1) < 0.02 and abs(w.mean()) < 0.05 * std
    if name.endswith("uniform"):       # bounded by sqrt(3) standard deviations
        assert np.abs(w).max() <= np.sqrt(3) * std * (1 + 1e-6)


def test_initialisers_are_reproducible_with_a_seed_and_dtype():
    a = gg.init.he_normal((30, 20), seed=7)
    np.testing.assert_array_equal(a, gg.init.he_normal((30, 20), seed=7))
    assert not np.array_equal(a, gg.init.he_normal((30, 20), seed=8))
    assert gg.init.normal((3, 2), std=0.5, seed=0, dtype="float64").dtype == np.float64
    np.testing.assert_array_equal(gg.init.zeros((2, 3)), np.zeros((2, 3)))
    gg.init.seed(3)
    first = gg.init.xavier_uniform((5, 5))
    gg.init.seed(3)
    np.testing.assert_array_equal(first, gg.init.xavier_uniform((5, 5)))
    n = gg.init.normal((200000,), std=0.25, mean=1.0, seed=1)
    assert abs(n.std() - 0.25) < 0.005 and abs(n.mean() - 1.0) < 0.005
    assert gg.init.fans((784, 30)) == (784, 30) and gg.init.fans((3, 3, 16, 32)) == (144, 288)
    with pytest.raises(ValueError, match="unknown initialiser"):
        gg.init.get("he_nromal")
