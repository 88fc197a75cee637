import numpy as np
import pytest


@pytest.fixture
def images():
    """Ten 12x12 RGB uint8 pictures of noise."""
    return np.random.default_rng(0).integers(0, 256, (10, 12, 12, 3)).astype(np.uint8)
