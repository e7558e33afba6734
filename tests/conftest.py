import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the checkout's graphgrad comes first

settings.register_profile("graphgrad", deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("graphgrad")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
