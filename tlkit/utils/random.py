"""The one random generator tlkit draws from, so a seed makes whole runs repeatable."""
import random as _py_random

import numpy as np

_state = {"rng": np.random.default_rng()}


def set_random_seed(seed):
    """Seed tlkit (weight init, dropout, shuffling), numpy's legacy global and Python's `random`.

    >>> set_random_seed(42)
    """
    seed = int(seed)
    _state["rng"] = np.random.default_rng(seed)
    np.random.seed(seed % (2**32))
    _py_random.seed(seed)


def get_rng():
    """The shared ``numpy.random.Generator``."""
    return _state["rng"]


def get_state():
    """The generator's state, a JSON-able dict (saved by BackupAndRestore)."""
    return _state["rng"].bit_generator.state


def set_state(state):
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    _state["rng"] = rng
