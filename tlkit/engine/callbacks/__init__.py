"""Callbacks for fit/evaluate/predict (Keras names and semantics)."""
from tlkit.engine.callbacks.callback import Callback, CallbackList
from tlkit.engine.callbacks.history import History
from tlkit.engine.callbacks.progbar_logger import ProgbarLogger

__all__ = ["Callback", "CallbackList", "History", "ProgbarLogger"]
