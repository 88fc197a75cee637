"""MNIST stand-in shared by the guide ports: random 28x28 "digits" whose label says which of ten pixel
blocks is brightest, so a model can learn it (unlike pure noise)."""
import numpy as np


def mnist_like(n):
    """(uint8 images (n, 28, 28), int64 labels (n,)), the same for the same n."""
    rng = np.random.default_rng(n)
    x = rng.random((n, 784)).astype("float32") * 0.6
    y = rng.integers(0, 10, size=n)
    x[:, :780].reshape(n, 10, 78)[np.arange(n), y] += 0.4
    return (x.reshape(n, 28, 28) * 255).astype("uint8"), y
