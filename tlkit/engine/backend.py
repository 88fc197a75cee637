"""Keras's ``keras.backend`` essentials. tlkit computes in float32, channels-last, with Keras's fuzz
factor 1e-7: the setters accept those values and refuse others with a message saying so."""
from tlkit.engine import layer as _layer
from tlkit.engine.losses.crossentropy import EPSILON

_FIXED = {"floatx": "float32", "image_data_format": "channels_last", "epsilon": EPSILON}


def backend():
    """The computing backend, as Keras names it: tlkit computes on numpy arrays."""
    return "numpy"


def floatx():
    return _FIXED["floatx"]


def image_data_format():
    return _FIXED["image_data_format"]


def epsilon():
    return _FIXED["epsilon"]


def _refuse_change(what, value):
    if value != _FIXED[what]:
        raise ValueError(f"tlkit supports {what}={_FIXED[what]!r} only (got {value!r}); keep the default.")


def set_floatx(value):
    _refuse_change("floatx", str(value))


def set_image_data_format(data_format):
    _refuse_change("image_data_format", str(data_format))


def set_epsilon(value):
    _refuse_change("epsilon", float(value))


def clear_session(free_memory=True):
    """Forget the names given so far: the next Dense is "dense" again (as Keras after clear_session())."""
    _layer.reset_names()
