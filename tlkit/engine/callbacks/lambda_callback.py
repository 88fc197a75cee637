"""LambdaCallback: a callback made of plain functions."""
from tlkit.engine.callbacks.callback import Callback


class LambdaCallback(Callback):
    """Each argument replaces the hook of that name; any other hook can be given by keyword.

    >>> LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]),
    ...                on_train_batch_begin=lambda batch, logs: None,
    ...                on_test_end=lambda logs: print("validated"))

    Signatures are the hooks': ``on_epoch_*(epoch, logs)``, ``on_train_*(logs)``,
    ``on_*_batch_*(batch, logs)``.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        # Any other hook by keyword (on_test_end=..., the Keras 2 on_batch_end=...: the base
        # class's on_train_batch_end calls it).
        self.__dict__.update(kwargs)
        named = {"on_epoch_begin": on_epoch_begin, "on_epoch_end": on_epoch_end, "on_train_begin": on_train_begin,
                 "on_train_end": on_train_end, "on_train_batch_begin": on_train_batch_begin,
                 "on_train_batch_end": on_train_batch_end}
        for hook, function in named.items():
            if function is not None:
                setattr(self, hook, function)
