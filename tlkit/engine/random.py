"""The engine's old name for tlkit.utils.random (the one random generator tlkit draws from), kept
for code that imports it from here; new code imports tlkit.utils.random."""
from tlkit.utils.random import get_rng, get_state, set_random_seed, set_state  # noqa: F401
