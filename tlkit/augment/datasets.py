"""``image_dataset_from_directory``: Keras 3's arguments and file order, decoded by worker threads.

    >>> train, val = image_dataset_from_directory("photos/", validation_split=0.2, subset="both", seed=1,
    ...                                           image_size=(224, 224))
    >>> train.class_names, len(train.file_paths)
    >>> model.fit(train, validation_data=val, epochs=5)

Files are listed, shuffled and split exactly as Keras does (same seed, same training and
validation files); pictures are resized as Keras's ``Resizing`` layer does (half-pixel bilinear or
nearest, on the warp kernel). Unreadable files are skipped and reported (``.skipped``). The result
is a sequence of (images, labels) batches for ``fit``: ``len()``, ``ds[i]``, and one epoch per
``for batch in ds`` (prepared ahead by worker threads); each epoch reshuffles when ``shuffle``.
"""
import os
import warnings

import numpy as np

from tlkit.augment import image_io
from tlkit.augment.folders import image_files
from tlkit.augment.iterators import Iterator
from tlkit.augment.layers.fusion import run_layers
from tlkit.augment.layers.geometric import Resizing

ALLOWLIST_FORMATS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
LABEL_MODES = ("int", "categorical", "binary", None)


def _check_arguments(labels, label_mode, class_names, color_mode, image_size, interpolation, validation_split,
                     subset, shuffle, seed, crop_to_aspect_ratio, pad_to_aspect_ratio):
    if labels not in ("inferred", None) and not isinstance(labels, (list, tuple)):
        raise ValueError("`labels` argument should be a list/tuple of integer labels, of the same size as the "
                         "number of image files in the target directory. If you wish to infer the labels from the "
                         'subdirectory names in the target directory, pass `labels="inferred"`. If you wish to get '
                         f"a dataset that only contains images (no labels), pass `labels=None`. Received: {labels}")
    if class_names and labels != "inferred":
        raise ValueError(f'You can only pass `class_names` if `labels="inferred"`. Received: labels={labels}, and '
                         f"class_names={class_names}")
    if label_mode not in LABEL_MODES:
        raise ValueError('`label_mode` argument must be one of "int", "categorical", "binary", or None. '
                         f"Received: label_mode={label_mode}")
    if color_mode not in image_io.CHANNELS:
        raise ValueError(f'`color_mode` must be one of {{"rgb", "rgba", "grayscale"}}. Received: color_mode={color_mode}')
    if not (isinstance(image_size, (tuple, list)) and len(image_size) == 2):
        raise ValueError(f"Invalid `image_size` value. Expected a tuple of 2 integers. Received: image_size={image_size}")
    if interpolation not in ("bilinear", "nearest"):
        raise ValueError(f"Argument `interpolation` should be one of ('bilinear', 'nearest') in tlkit (its resize "
                         f"runs on the warp kernel). Received: interpolation={interpolation}")
    if crop_to_aspect_ratio and pad_to_aspect_ratio:
        raise ValueError("Only one of `pad_to_aspect_ratio`, `crop_to_aspect_ratio` can be set to `True`.")
    if validation_split and not 0 < validation_split < 1:
        raise ValueError(f"`validation_split` must be between 0 and 1, received: {validation_split}")
    if (validation_split or subset) and not (validation_split and subset):
        raise ValueError("If `subset` is set, `validation_split` must be set, and inversely.")
    if subset not in ("training", "validation", "both", None):
        raise ValueError(f'`subset` must be either "training", "validation" or "both", received: {subset}')
    if validation_split and shuffle and seed is None:
        raise ValueError("If using `validation_split` and shuffling the data, you must provide a `seed` argument, "
                         "to make sure that there is no overlap between the training and validation subset.")


def index_directory(directory, labels, class_names, shuffle, seed, follow_links, verbose):
    """Keras's listing: (file paths, integer labels or None, class names), shuffled as Keras shuffles."""
    directory = os.fspath(directory)
    if labels == "inferred":
        subdirs = sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
        if class_names is not None:
            if not set(class_names).issubset(subdirs):
                raise ValueError("The `class_names` passed did not match the names of the subdirectories of the "
                                 f"target directory. Expected: {subdirs} (or a subset of it), but received: "
                                 f"class_names={class_names}")
            subdirs = list(class_names)
        paths, found = [], []
        for index, name in enumerate(subdirs):
            listed = image_files(os.path.join(directory, name), follow_links, ALLOWLIST_FORMATS)
            paths += listed
            found += [index] * len(listed)
        found = np.asarray(found, np.int32)
    else:
        subdirs = None
        paths = image_files(directory, follow_links, ALLOWLIST_FORMATS)
        if labels is not None:
            if len(labels) != len(paths):
                raise ValueError("Expected the lengths of `labels` to match the number of files in the target "
                                 f"directory. len(labels) is {len(labels)} while we found {len(paths)} files in "
                                 f"directory {directory}.")
            subdirs = [str(v) for v in sorted(set(labels))]
        found = None if labels is None else np.asarray(labels)
    if verbose:
        print(f"Found {len(paths)} files." if labels is None else
              f"Found {len(paths)} files belonging to {len(subdirs)} classes.")
    if shuffle:
        seed = np.random.randint(1e6) if seed is None else seed
        order = np.random.RandomState(seed).permutation(len(paths))  # Keras's rng.shuffle, one permutation
        paths = [paths[i] for i in order]
        if found is not None:
            found = found[order]
    return paths, found, subdirs


def _split(paths, labels, validation_split, subset, verbose):
    if not validation_split:
        return paths, labels
    num_val = int(validation_split * len(paths))
    if subset == "training":
        if verbose:
            print(f"Using {len(paths) - num_val} files for training.")
        keep = slice(0, len(paths) - num_val)
    else:
        if verbose:
            print(f"Using {num_val} files for validation.")
        keep = slice(len(paths) - num_val, len(paths))
    return paths[keep], None if labels is None else labels[keep]


class ImageDataset:
    """Batches of (images, labels) from files: ``class_names``, ``file_paths``, ``skipped``."""

    def __init__(self, paths, labels, class_names, label_mode, color_mode, image_size, batch_size, shuffle, seed,
                 interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio, data_format, verbose, workers=None):
        good, bad = image_io.scan_images(paths, verbose=int(verbose))
        if bad:
            warnings.warn(f"Skipped {len(bad)} unreadable image file(s): "
                          + "; ".join(f"{p} ({r})" for p, r in bad[:5]) + (" ..." if len(bad) > 5 else "")
                          + ". The list is in the dataset's .skipped attribute.", stacklevel=3)
            keep = np.isin(np.asarray(paths, dtype=object), np.asarray(good, dtype=object))
            labels = None if labels is None else labels[keep]
        self.skipped = bad
        self.file_paths = list(good)
        self.class_names = class_names
        self.labels, self.label_mode = labels, label_mode
        self.color_mode, self.image_size = color_mode, (int(image_size[0]), int(image_size[1]))
        self.data_format = data_format or "channels_last"
        self._resize = Resizing(*self.image_size, interpolation=interpolation,
                                crop_to_aspect_ratio=crop_to_aspect_ratio, pad_to_aspect_ratio=pad_to_aspect_ratio)
        self.batch_size = batch_size
        self._batches = _FileBatches(self, len(self.file_paths), batch_size or 1, shuffle, seed, workers)
        self._epoch = 0

    def load(self, j):
        """Picture j, decoded and resized as Keras does: float32 (H, W, C)."""
        img = image_io.decode(self.file_paths[j], self.color_mode)
        return run_layers(img[None], [self._resize], False, parallel=False)[0]

    def _labels_of(self, index_array):
        y = self.labels[index_array]
        if self.label_mode == "int":
            return y.astype(np.int32)
        if self.label_mode == "binary":
            return y.astype(np.float32).reshape(-1, 1)
        return np.eye(len(self.class_names), dtype=np.float32)[y]

    def batch(self, index_array):
        x = np.stack([self.load(int(j)) for j in index_array]) if len(index_array) else \
            np.empty((0,) + self.image_size + (image_io.CHANNELS[self.color_mode],), np.float32)
        if self.data_format == "channels_first":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        if self.batch_size is None:
            x = x[0]
        if self.labels is None or self.label_mode is None:
            return x
        y = self._labels_of(np.asarray(index_array, np.intp))
        return x, (y[0] if self.batch_size is None else y)

    def __len__(self):
        return len(self._batches)

    def __getitem__(self, idx):
        it = self._batches
        if idx == 0:
            it.start_epoch(self._epoch)  # the batches prepared ahead are this epoch's
        if it.epoch == self._epoch and it.batch_index == idx and idx < len(it):
            return it.next()
        return it._make_batch(self._epoch, idx, it._order(self._epoch))

    def on_epoch_end(self):
        self._epoch += 1

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]
        self.on_epoch_end()


class _FileBatches(Iterator):
    def __init__(self, dataset, n, batch_size, shuffle, seed, workers):
        self.dataset = dataset
        super().__init__(n, batch_size, shuffle, seed, workers)

    def _get_batches_of_transformed_samples(self, index_array, rs):
        return self.dataset.batch(index_array)


def image_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None,
                                 color_mode="rgb", batch_size=32, image_size=(256, 256), shuffle=True, seed=None,
                                 validation_split=None, subset=None, interpolation="bilinear", follow_links=False,
                                 crop_to_aspect_ratio=False, pad_to_aspect_ratio=False, data_format=None,
                                 verbose=True):
    """Keras 3's ``image_dataset_from_directory``; ``subset="both"`` returns [training, validation]."""
    _check_arguments(labels, label_mode, class_names, color_mode, image_size, interpolation, validation_split,
                     subset, shuffle, seed, crop_to_aspect_ratio, pad_to_aspect_ratio)
    if labels is None:
        label_mode = None
    paths, found, names = index_directory(directory, labels, class_names, shuffle, seed, follow_links, verbose)
    if label_mode == "binary" and len(names) != 2:
        raise ValueError(f'When passing `label_mode="binary"`, there must be exactly 2 class_names. Received: '
                         f"class_names={names}")
    subsets = ["training", "validation"] if subset == "both" else [subset]
    datasets = []
    for part in subsets:
        p, y = _split(paths, found, validation_split, part, verbose)
        if not p:
            which = f"{part} " if part else ""
            raise ValueError(f"No {which}images found in directory {directory}. Allowed formats: {ALLOWLIST_FORMATS}")
        datasets.append(ImageDataset(p, y, names, label_mode, color_mode, image_size, batch_size, shuffle, seed,
                                     interpolation, crop_to_aspect_ratio, pad_to_aspect_ratio, data_format, verbose))
    return datasets if subset == "both" else datasets[0]
