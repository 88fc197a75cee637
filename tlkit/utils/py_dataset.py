"""``keras.utils.PyDataset`` (and Keras 2's ``Sequence``, the same thing): a dataset of whole batches that
``fit``/``evaluate``/``predict`` index as ``ds[i]`` for ``i < len(ds)``, calling ``on_epoch_begin`` and
``on_epoch_end`` around each pass; ``fit(shuffle=True)`` visits the batches in a new order each epoch.

``workers``, ``use_multiprocessing`` and ``max_queue_size`` are accepted as Keras's: tlkit reads the
batches in the training thread (its own kernels already use the cores)."""


class PyDataset:
    def __init__(self, workers=1, use_multiprocessing=False, max_queue_size=10):
        self._workers = workers
        self._use_multiprocessing = use_multiprocessing
        self._max_queue_size = max_queue_size

    @property
    def workers(self):
        return getattr(self, "_workers", 1)

    @property
    def use_multiprocessing(self):
        return getattr(self, "_use_multiprocessing", False)

    @property
    def max_queue_size(self):
        return getattr(self, "_max_queue_size", 10)

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__(index) returning one batch.")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must define __len__() (the number of batches).")

    @property
    def num_batches(self):
        return len(self)

    def on_epoch_begin(self):
        """Called before each pass over the batches."""

    def on_epoch_end(self):
        """Called after each pass over the batches."""


Sequence = PyDataset
