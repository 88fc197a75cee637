"""Keras's sequence helpers on numpy: ``pad_sequences`` and ``timeseries_dataset_from_array``.

    >>> pad_sequences([[1, 2, 3], [4]], maxlen=2)
    array([[2, 3], [0, 4]], dtype=int32)
    >>> ds = timeseries_dataset_from_array(np.arange(10), None, sequence_length=3, batch_size=4)
    >>> ds[0]
    array([[0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 5]])
"""
import numpy as np


def pad_sequences(sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0):
    """Keras's ``pad_sequences``: a (num_samples, maxlen, ...) array, padded/truncated at the start
    ("pre") or end ("post") with ``value``."""
    if not hasattr(sequences, "__len__"):
        raise ValueError("`sequences` must be iterable.")
    lengths, sample_shape, flag = [], (), True
    for x in sequences:
        try:
            lengths.append(len(x))
            if flag and len(x):
                sample_shape = np.asarray(x).shape[1:]
                flag = False
        except TypeError as e:
            raise ValueError(f"`sequences` must be a list of iterables. Found non-iterable: {x}") from e
    maxlen = int(np.max(lengths)) if maxlen is None and lengths else (maxlen or 0)
    is_text = np.issubdtype(np.dtype(dtype), np.str_) or np.issubdtype(np.dtype(dtype), np.object_)
    if isinstance(value, str) and dtype is not object and not is_text:
        raise ValueError(f"`dtype` {dtype} is not compatible with `value`'s type: {type(value)}\n"
                         "You should set `dtype=object` for variable length strings.")
    out = np.full((len(sequences), maxlen) + tuple(sample_shape), value, dtype=dtype)
    for idx, s in enumerate(sequences):
        if not len(s):
            continue
        if truncating == "pre":
            trunc = s[-maxlen:] if maxlen else s[:0]
        elif truncating == "post":
            trunc = s[:maxlen]
        else:
            raise ValueError(f'Truncating type "{truncating}" not understood')
        trunc = np.asarray(trunc, dtype=dtype)
        if trunc.shape[1:] != sample_shape:
            raise ValueError(f"Shape of sample {trunc.shape[1:]} of sequence at position {idx} is different from "
                             f"expected shape {sample_shape}")
        if not len(trunc):
            continue
        if padding == "post":
            out[idx, :len(trunc)] = trunc
        elif padding == "pre":
            out[idx, -len(trunc):] = trunc
        else:
            raise ValueError(f'Padding type "{padding}" not understood')
    return out


def _check_index(name, value, length, low_ok=0):
    if value < low_ok:
        raise ValueError(f"`{name}` must be {'0 or greater' if low_ok == 0 else 'higher than 0'}. "
                         f"Received: {name}={value}")
    if value >= length:
        raise ValueError(f"`{name}` must be lower than the length of the data. Received: {name}={value}, for "
                         f"data of length {length}")


class TimeseriesDataset:
    """Batches of windows (and their targets): ``len()``, ``ds[i]``, one epoch per ``for``."""

    def __init__(self, data, targets, positions, sequence_length, sampling_rate, batch_size):
        self.data, self.targets, self.positions = data, targets, positions
        self.offsets = np.arange(sequence_length) * sampling_rate
        self.batch_size = batch_size

    def __len__(self):
        size = self.batch_size or 1
        return (len(self.positions) + size - 1) // size

    def __getitem__(self, idx):
        if not 0 <= idx < len(self):
            raise IndexError(f"batch {idx} of a dataset of {len(self)} batches")
        size = self.batch_size or 1
        starts = self.positions[idx * size:(idx + 1) * size]
        x = self.data[starts[:, None] + self.offsets]
        y = None if self.targets is None else self.targets[starts]
        if self.batch_size is None:
            x, y = x[0], None if y is None else y[0]
        return x if y is None else (x, y)

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def timeseries_dataset_from_array(data, targets, sequence_length, sequence_stride=1, sampling_rate=1, batch_size=128,
                                  shuffle=False, seed=None, start_index=None, end_index=None):
    """Keras's ``timeseries_dataset_from_array``: window i starts at ``start_index + p_i`` and takes
    ``sequence_length`` steps ``sampling_rate`` apart; its target is ``targets[start_index + p_i]``.
    With ``shuffle`` the windows are drawn in a random order (seeded by ``seed``); Keras's order
    also goes through TensorFlow's shuffle buffer, which is not reproduced."""
    if start_index:
        _check_index("start_index", start_index, len(data))
    if end_index:
        if start_index and end_index <= start_index:
            raise ValueError(f"`end_index` must be higher than `start_index`. Received: start_index={start_index}, "
                             f"and end_index={end_index} ")
        _check_index("end_index", end_index, len(data), low_ok=1)
    _check_index("sampling_rate", sampling_rate, len(data), low_ok=1)
    _check_index("sequence_stride", sequence_stride, len(data), low_ok=1)
    start_index = start_index or 0
    end_index = len(data) if end_index is None else end_index
    num_seqs = end_index - start_index - (sequence_length - 1) * sampling_rate
    if targets is not None:
        num_seqs = min(num_seqs, len(targets))
        targets = np.asarray(targets)[start_index:end_index]
    data = np.asarray(data)[start_index:end_index]
    positions = np.arange(0, max(num_seqs, 0), sequence_stride, dtype=np.int64)
    if shuffle:
        seed = np.random.randint(1e6) if seed is None else seed
        np.random.RandomState(seed).shuffle(positions)
    return TimeseriesDataset(data, targets, positions, sequence_length, sampling_rate, batch_size)
