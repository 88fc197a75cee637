"""tlkit's version, in a module of its own so that any part of tlkit can read it without importing
the top-level package (keep it equal to pyproject.toml's)."""
__version__ = "0.1.0"
