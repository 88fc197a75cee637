"""Keras's batch iterators (arrays, folders, tables), prepared ahead in background threads.

    >>> it = ImageDataGenerator(horizontal_flip=True).flow(x, y, batch_size=32, seed=1, workers=2)
    >>> len(it)                    # batches per epoch
    >>> x_batch, y_batch = next(it)
    >>> it[3]                      # batch 3 of the current epoch (Sequence access)
    >>> it.on_epoch_end()          # next epoch: a new shuffle for it[i]

Batch ``b`` of epoch ``e`` depends only on (seed, e, b): its sample order comes
from the epoch's permutation and its random transforms from a RandomState
seeded with (seed, e, b). So the same seed gives the same batches whatever the
number of workers, and ``workers=0`` computes them in the caller's thread.
``next()`` walks epoch after epoch, reshuffling at each wrap as Keras does;
``it[i]`` serves the epoch that ``on_epoch_end()`` advances.

An iterator asks its ``augmenter`` (an ImageDataGenerator, a Pipeline, or anything with the same
two members) for nothing else than:
- ``transform_batch(images, rng)``: an (N, H, W, C) uint8 or float batch, augmented with draws
  from the RandomState ``rng``, in the augmenter's layout and dtype;
- ``validation_split``: the fraction that ``subset="validation"`` takes (0: no split).
"""
import collections
import os
import threading
import warnings
import weakref

import numpy as np

from tlkit.augment import folders, image_io
from tlkit.augment.prefetch import WorkerPool


def default_workers():
    return max(1, min(4, os.cpu_count() or 1))


class Iterator:
    """Base class: ordering, seeding, ``len``/``[i]``/``next`` and the prefetch."""

    white_list_formats = folders.IMAGE_EXTENSIONS

    def __init__(self, n, batch_size, shuffle, seed, workers=None, max_queue_size=None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.n = int(n)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        # Without a seed, draw one from numpy's global state, so np.random.seed still makes runs repeatable.
        self._base_seed = int(seed) % 2**32 if seed is not None else int(np.random.randint(2**31 - 1))
        self.epoch = 0
        self.batch_index = 0
        self.total_batches_seen = 0
        self.workers = default_workers() if workers is None else int(workers)
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = prepare batches in the calling thread), got {workers}.")
        self.max_queue_size = max_queue_size or 2 * max(1, self.workers)
        self.lock = threading.Lock()
        self._orders = {}
        self._stream = [0, 0]  # (epoch, batch) of the next batch next() schedules
        self._pending = collections.deque()
        self._pool = None

    # ----- order and seeds -----
    def _order(self, epoch):
        order = self._orders.get(epoch)
        if order is None:
            if self.shuffle:
                order = np.random.RandomState([self._base_seed, epoch, 0x5EED]).permutation(self.n)
            else:
                order = np.arange(self.n)
            if len(self._orders) > 4:
                self._orders.pop(min(self._orders))
            self._orders[epoch] = order
        return order

    @property
    def index_array(self):
        return self._order(self.epoch)

    def _make_batch(self, epoch, b, order):
        index_array = order[b * self.batch_size:(b + 1) * self.batch_size]
        rs = np.random.RandomState([self._base_seed, epoch, b])
        return self._get_batches_of_transformed_samples(index_array, rs)

    # ----- Keras's iterator protocol -----
    def __len__(self):
        return (self.n + self.batch_size - 1) // self.batch_size

    def __getitem__(self, idx):
        if idx < 0:
            idx += len(self)
        if not 0 <= idx < len(self):
            raise ValueError(f"Asked to retrieve element {idx}, but the Sequence has length {len(self)}")
        self.total_batches_seen += 1
        return self._make_batch(self.epoch, idx, self._order(self.epoch))

    def on_epoch_end(self):
        """Move ``it[i]`` to the next epoch (a new shuffle)."""
        self.epoch += 1

    def start_epoch(self, epoch):
        """Serve ``epoch`` from its first batch, by ``next()`` and ``it[i]`` alike: a run resumed at a
        later epoch then sees the same shuffles and transforms as one that never stopped."""
        with self.lock:
            upcoming = self._pending[0][:2] if self._pending else tuple(self._stream)
            if upcoming != (epoch, 0):  # else the batches prepared ahead are the right ones
                self._pending.clear()
                self._stream = [epoch, 0]
                self.batch_index = 0
            self.epoch = epoch

    def reset(self):
        """Restart ``next()`` at the first batch of a fresh epoch."""
        with self.lock:
            self._pending.clear()
            if self._stream[1] != 0:
                self._stream = [self._stream[0] + 1, 0]
            self.batch_index = 0

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()

    def _advance(self):
        epoch, b = self._stream
        order = self._order(epoch)
        self._stream = [epoch + 1, 0] if b + 1 >= len(self) else [epoch, b + 1]
        return epoch, b, order

    def next(self):
        """The next batch; prepared ahead by the worker threads."""
        if len(self) == 0:
            raise ValueError("This iterator has no samples to make batches from.")
        with self.lock:
            self.total_batches_seen += 1
            if self.workers == 0:
                args = self._advance()
                b, job = args[1], None
            else:
                if self._pool is None:
                    self._pool = WorkerPool(self.workers)
                    weakref.finalize(self, self._pool.close)
                while len(self._pending) < self.max_queue_size:
                    self._schedule()
                _, b, job = self._pending.popleft()
                self._schedule()
            self.batch_index = (b + 1) % len(self)
        return self._make_batch(*args) if job is None else job.result()

    def _schedule(self):
        epoch, b, order = self._advance()
        self._pending.append((epoch, b, self._pool.submit(self._make_batch, epoch, b, order)))

    def close(self):
        """Stop the worker threads (they also stop when the iterator is garbage collected)."""
        with self.lock:
            self._pending.clear()
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    def _get_batches_of_transformed_samples(self, index_array, rs):
        raise NotImplementedError

    @property
    def image_data_generator(self):
        """Keras's name for the augmenter."""
        return self.augmenter

    # ----- shared by all iterators -----
    def _save_batch(self, batch_x, index_array, rs):
        for i, j in enumerate(index_array):
            img = image_io.array_to_img(batch_x[i], self.data_format, scale=True)
            name = f"{self.save_prefix}_{j}_{rs.randint(10**7)}.{self.save_format}"
            image_io.atomic_save(img, os.path.join(self.save_to_dir, name),
                                 "jpeg" if self.save_format in ("jpg", "jpeg") else self.save_format)


def mix_labels(augmenter, images, labels, rs):
    """An augmenter's batch mixing (Pipeline's MixUp / CutMix: soft labels), after the labels are known."""
    if augmenter is None or not getattr(augmenter, "mixes_labels", False):
        return images, labels
    return augmenter.mix(images, labels, rs)


def check_subset(subset):
    if subset is not None and subset not in {"training", "validation"}:
        raise ValueError(f'Invalid subset name: {subset}; expected "training" or "validation".')


class NumpyArrayIterator(Iterator):
    """Batches of augmented images from an array (``ImageDataGenerator.flow``)."""

    def __init__(self, x, y, augmenter, batch_size=32, shuffle=False, sample_weight=None, seed=None,
                 data_format="channels_last", save_to_dir=None, save_prefix="", save_format="png", subset=None,
                 ignore_class_split=False, dtype="float32", workers=None):
        self.dtype = dtype or "float32"
        if isinstance(x, (tuple, list)):
            misc = x[1] if isinstance(x[1], list) else [x[1]]
            x_misc = [np.asarray(m) for m in misc]
            x = x[0]
            for m in x_misc:
                if len(x) != len(m):
                    raise ValueError("All of the arrays in `x` should have the same length. Found a pair with: "
                                     f"len(x[0]) = {len(x)}, len(x[?]) = {len(m)}")
        else:
            x_misc = []
        x = np.asarray(x)
        if y is not None and len(x) != len(y):
            raise ValueError("`x` (images tensor) and `y` (labels) should have the same length. Found: "
                             f"x.shape = {x.shape}, y.shape = {np.asarray(y).shape}")
        if sample_weight is not None and len(x) != len(sample_weight):
            raise ValueError("`x` (images tensor) and `sample_weight` should have the same length. Found: "
                             f"x.shape = {x.shape}, sample_weight.shape = {np.asarray(sample_weight).shape}")
        check_subset(subset)
        if subset is not None:
            split_idx = int(len(x) * augmenter.validation_split)
            if (y is not None and not ignore_class_split
                    and not np.array_equal(np.unique(y[:split_idx]), np.unique(y[split_idx:]))):
                raise ValueError("Training and validation subsets have different number of classes after the "
                                 "split. If your numpy arrays are sorted by the label, you might want to shuffle "
                                 "them.")
            part = slice(None, split_idx) if subset == "validation" else slice(split_idx, None)
            x = x[part]
            x_misc = [m[part] for m in x_misc]
            y = None if y is None else y[part]
            sample_weight = None if sample_weight is None else np.asarray(sample_weight)[part]
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
            x = x.astype(self.dtype)
        # Kept in its own dtype (uint8 stays uint8): the kernel reads it straight into float32.
        self.x = x
        self.x_misc = x_misc
        if self.x.ndim != 4:
            raise ValueError(f"Input data in `NumpyArrayIterator` should have rank 4. You passed an array with "
                             f"shape {self.x.shape}")
        channels_axis = 3 if data_format == "channels_last" else 1
        if self.x.shape[channels_axis] not in {1, 3, 4}:
            warnings.warn(f'NumpyArrayIterator is set to use the data format convention "{data_format}" (channels '
                          f'on axis {channels_axis}), i.e. expected either 1, 3, or 4 channels on axis '
                          f'{channels_axis}. However, it was passed an array with shape {self.x.shape} '
                          f'({self.x.shape[channels_axis]} channels).')
        self.y = None if y is None else np.asarray(y)
        self.sample_weight = None if sample_weight is None else np.asarray(sample_weight)
        self.augmenter = augmenter
        self.data_format = data_format
        self.save_to_dir, self.save_prefix, self.save_format = save_to_dir, save_prefix, save_format
        super().__init__(len(self.x), batch_size, shuffle, seed, workers)

    def _get_batches_of_transformed_samples(self, index_array, rs):
        images = self.x[index_array]
        if self.data_format == "channels_first":
            images = images.transpose(0, 2, 3, 1)
        batch_x = self.augmenter.transform_batch(images, rs)
        if self.save_to_dir:
            self._save_batch(batch_x, index_array, rs)
        misc = [m[index_array] for m in self.x_misc]
        first = batch_x if not misc else [batch_x] + misc
        if self.y is None:
            return first
        batch_x, batch_y = mix_labels(self.augmenter, batch_x, self.y[index_array], rs)
        first = batch_x if not misc else [batch_x] + misc
        if self.sample_weight is None:
            return first, batch_y
        return first, batch_y, self.sample_weight[index_array]
