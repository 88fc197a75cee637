"""The engine. Loading it loads ``tlkit.engine.ops``, which gives Tensor and Variable their
differentiable operators, and ``tlkit.engine.random`` (the seed helpers, reachable as an attribute);
numpy only: nothing compiles at import."""
from tlkit.engine import ops, random  # noqa: F401
