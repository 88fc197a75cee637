"""Turns what fit/evaluate/predict receive (arrays, dicts, iterators) into batches."""
import math

import numpy as np

from tlkit.utils.py_dataset import PyDataset
from tlkit.utils.random import get_rng


def _leaves(struct):
    if struct is None:
        return []
    if isinstance(struct, dict):
        return list(struct.values())
    if isinstance(struct, (list, tuple)):
        return list(struct)
    return [struct]


def _map(struct, fn):
    if struct is None:
        return None
    if isinstance(struct, dict):
        return {k: fn(v) for k, v in struct.items()}
    if isinstance(struct, (list, tuple)):
        return [fn(v) for v in struct]
    return fn(struct)


def is_batch_source(x):
    """True for iterators, sequences (PyDataset, augmentation iterators) and iterables with a length
    (a PyTorch DataLoader) that yield whole batches."""
    if isinstance(x, (np.ndarray, list, tuple, dict, str)) or x is None:
        return False
    return hasattr(x, "__next__") or hasattr(x, "__len__") and (hasattr(x, "__getitem__") or hasattr(x, "__iter__"))


class ArrayBatches:
    """Mini-batches of in-memory arrays, shuffled per epoch with tlkit's seeded generator."""

    def __init__(self, x, y=None, sample_weight=None, batch_size=32, shuffle=False):
        leaves = _leaves(x) + _leaves(y) + _leaves(sample_weight)
        leaves = [np.asarray(a) for a in leaves]
        sizes = {len(a) for a in leaves}
        if len(sizes) != 1:
            raise ValueError(
                "Data cardinality is ambiguous: x, y and sample_weight must have the same number of samples. "
                f"Received sizes {sorted(sizes)}."
            )
        self.x = _map(x, np.asarray)
        self.y = _map(y, np.asarray)
        self.sample_weight = _map(sample_weight, np.asarray)
        self.num_samples = sizes.pop()
        if self.num_samples == 0:
            raise ValueError("Expected input data to be non-empty.")
        if batch_size is None:
            batch_size = 32
        if not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.steps = math.ceil(self.num_samples / self.batch_size)

    def epoch(self):
        order = get_rng().permutation(self.num_samples) if self.shuffle else None
        for step in range(self.steps):
            sl = slice(step * self.batch_size, (step + 1) * self.batch_size)
            idx = order[sl] if order is not None else sl
            take = (lambda a: a[idx])
            yield _map(self.x, take), _map(self.y, take), _map(self.sample_weight, take)

    def on_epoch_end(self):
        pass


class SourceBatches:
    """Batches from an iterator, a Keras-style Sequence or a re-iterable (DataLoader) yielding x, (x, y) or
    (x, y, sample_weight). A PyDataset's batches come in a new order each epoch when ``shuffle``."""

    def __init__(self, source, steps=None, shuffle=False):
        self.source = source
        if steps is None:
            if not hasattr(source, "__len__"):
                raise ValueError("When x is a generator without len(), pass steps_per_epoch (or steps).")
            steps = len(source)
        self.steps = int(steps)
        if self.steps <= 0:
            raise ValueError(f"The data source yields no batches (steps={self.steps}); is the folder or array empty?")
        self._sequence = hasattr(source, "__getitem__") and not hasattr(source, "__next__")
        self._reiterable = not self._sequence and not hasattr(source, "__next__")  # a new pass per epoch
        self._iter = None if self._sequence or self._reiterable else iter(source)
        self._shuffle = shuffle and isinstance(source, PyDataset)

    def epoch(self):
        if self._sequence:
            if hasattr(self.source, "on_epoch_begin"):
                self.source.on_epoch_begin()
            order = get_rng().permutation(self.steps) if self._shuffle else range(self.steps)
            for index in order:
                yield unpack(self.source[int(index)])
            return
        batches = iter(self.source) if self._reiterable else self._iter
        for _ in range(self.steps):
            try:
                batch = next(batches)
            except StopIteration:
                return  # a DataLoader may hold fewer batches than steps_per_epoch asked for
            yield unpack(batch)

    def on_epoch_end(self):
        if self._sequence and hasattr(self.source, "on_epoch_end"):
            self.source.on_epoch_end()


def unpack(batch):
    """(x, y, sample_weight) of one batch; a list is a tuple (as Keras 3 reads a DataLoader's [x, y]), and
    tensors of other frameworks (torch) become numpy arrays."""
    if isinstance(batch, list):
        batch = tuple(batch)
    batch = tuple(_map(part, _as_numpy) for part in batch) if isinstance(batch, tuple) else _map(batch, _as_numpy)
    if isinstance(batch, tuple):
        if len(batch) == 1:
            return batch[0], None, None
        if len(batch) == 2:
            return batch[0], batch[1], None
        if len(batch) == 3:
            return batch
        raise ValueError(f"A data source must yield x, (x, y) or (x, y, sample_weight); got a tuple of {len(batch)}.")
    return batch, None, None


def _as_numpy(value):
    if not isinstance(value, np.ndarray) and hasattr(value, "__array__") and hasattr(value, "numpy"):
        return np.asarray(value)
    return value


def make_batches(x, y=None, sample_weight=None, batch_size=None, steps=None, shuffle=False):
    if is_batch_source(x):
        if y is not None:
            raise ValueError("`y` argument is not supported when x is an iterator/generator: it yields (x, y) itself.")
        if sample_weight is not None:
            raise ValueError("`sample_weight` is not supported when x is an iterator: yield (x, y, sample_weight).")
        return SourceBatches(x, steps, shuffle)
    if x is None:
        raise ValueError("No data: pass x (arrays, a dict of arrays or an iterator of batches).")
    batches = ArrayBatches(x, y, sample_weight, batch_size, shuffle)
    if steps is not None:
        batches.steps = min(int(steps), batches.steps)
    return batches


def split_validation(x, y, sample_weight, validation_split):
    """Keras's rule: the LAST fraction of the arrays, taken before any shuffling."""
    if is_batch_source(x):
        raise ValueError("`validation_split` is only supported for arrays; for iterators pass validation_data "
                         "(e.g. ImageDataGenerator(validation_split=...) with subset='validation').")
    if not 0 < validation_split < 1:
        raise ValueError(f"validation_split must be in (0, 1), got {validation_split}.")
    n = len(_leaves(x)[0])
    cut = int(n * (1.0 - validation_split))
    if cut == 0 or cut == n:
        raise ValueError(f"validation_split={validation_split} leaves no training or no validation samples "
                         f"out of {n}.")
    head = lambda a: np.asarray(a)[:cut]
    tail = lambda a: np.asarray(a)[cut:]
    return ((_map(x, head), _map(y, head), _map(sample_weight, head)),
            (_map(x, tail), _map(y, tail), _map(sample_weight, tail)))


def class_weight_to_sample_weight(y, class_weight):
    """Per-sample weights from ``{class_index: weight}`` for integer or one-hot targets."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] > 1:
        labels = y.argmax(axis=1)
    else:
        labels = np.round(y.reshape(len(y), -1)[:, 0]).astype(np.int64)
    table = {int(k): float(v) for k, v in class_weight.items()}
    missing = set(np.unique(labels).tolist()) - set(table)
    if missing:
        raise ValueError(f"class_weight has no entry for class(es) {sorted(missing)}; give a weight for every class.")
    return np.array([table[int(c)] for c in labels], np.float32)


class ClassWeighted:
    """Wraps a batch iterator so each batch carries class-weight sample weights."""

    def __init__(self, source, class_weight):
        self.source, self.class_weight = source, class_weight
        self._it = None

    def __len__(self):
        return len(self.source)

    def __iter__(self):
        return self

    def __next__(self):
        if self._it is None:
            self._it = iter(self.source) if hasattr(self.source, "__next__") else _cycle(self.source)
        batch = next(self._it)
        x, y, sw = unpack(batch)
        cw = class_weight_to_sample_weight(y, self.class_weight)
        return x, y, cw if sw is None else np.asarray(sw) * cw


def _cycle(sequence):
    while True:
        for i in range(len(sequence)):
            yield sequence[i]
        if hasattr(sequence, "on_epoch_end"):
            sequence.on_epoch_end()
