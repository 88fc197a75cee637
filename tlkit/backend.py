"""``tlkit.backend``: Keras's backend essentials (floatx, image_data_format, epsilon, clear_session)."""
from tlkit.engine.backend import (backend, clear_session, epsilon, floatx, image_data_format,  # noqa: F401
                                  set_epsilon, set_floatx, set_image_data_format)

__all__ = ["backend", "clear_session", "epsilon", "floatx", "image_data_format", "set_epsilon", "set_floatx",
           "set_image_data_format"]
