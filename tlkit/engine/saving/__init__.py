"""Saving and loading models and weights (HDF5, Keras 2 layout)."""
