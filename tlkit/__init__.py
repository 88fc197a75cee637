"""tlkit: Keras-compatible transfer learning and augmentation on numpy + numba."""
__version__ = "0.1.0"
