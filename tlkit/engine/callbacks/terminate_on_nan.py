"""TerminateOnNaN: stop training as soon as a batch loss is NaN or infinite."""
import math

from tlkit.engine.callbacks.callback import Callback


class TerminateOnNaN(Callback):
    """Stop ``fit`` after the first batch whose loss is NaN/inf (printing which batch).

    >>> model.fit(x, y, epochs=10, callbacks=[TerminateOnNaN()])
    Batch 3: Invalid loss, terminating training

    ``raise_error=True`` raises a RuntimeError there instead (Keras 3.10+).
    """

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch, logs=None):  # the name Keras uses; on_train_batch_end calls it
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        if self.raise_error:
            raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: {loss}. "
                               "Terminating training immediately.")
        print(f"Batch {batch}: Invalid loss, terminating training", flush=True)
        self.model.stop_training = True
