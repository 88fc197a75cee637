"""Keras's iterators over image files: a folder of class subfolders (``flow_from_directory``) and
a table of file names (``flow_from_dataframe``). Files are decoded in the worker threads; an
unreadable one is skipped and listed in ``skipped``. Ordering, seeding and prefetch: iterators.py.
"""
import os
import threading
import warnings

import numpy as np

from tlkit.augment import folders, image_io
from tlkit.augment.iterators import Iterator, check_subset, mix_labels


class BatchFromFilesMixin:
    """Decoding, substitution of unreadable files, labels: what folder and table iterators share."""

    def set_processing_attrs(self, augmenter, target_size, color_mode, data_format, save_to_dir,
                             save_prefix, save_format, subset, interpolation, keep_aspect_ratio):
        self.augmenter = augmenter
        self.target_size = tuple(int(v) for v in target_size)
        self.keep_aspect_ratio = keep_aspect_ratio
        if color_mode not in {"rgb", "rgba", "grayscale"}:
            raise ValueError(f'Invalid color mode: {color_mode}; expected "rgb", "rgba", or "grayscale".')
        if interpolation not in image_io.INTERPOLATIONS:
            raise ValueError(f"Invalid interpolation method {interpolation} specified. Supported methods are "
                             f"{', '.join(image_io.INTERPOLATIONS)}")
        self.color_mode = color_mode
        self.data_format = data_format
        channels = image_io.CHANNELS[color_mode]
        self.image_shape = self.target_size + (channels,) if data_format == "channels_last" \
            else (channels,) + self.target_size
        self.save_to_dir, self.save_prefix, self.save_format = save_to_dir, save_prefix, save_format
        self.interpolation = interpolation
        check_subset(subset)
        split = 0.0 if augmenter is None else augmenter.validation_split
        if subset is not None and not split:
            raise ValueError(f'subset="{subset}" needs a validation_split in the generator (e.g. '
                             'ImageDataGenerator(validation_split=0.2)).')
        self.split = None if subset is None else ((0, split) if subset == "validation" else (split, 1))
        self.subset = subset
        self.skipped = []
        self._bad = set()
        self._bad_lock = threading.Lock()

    def _drop_unreadable(self, keep):
        """Scan the files (header + end) and drop unreadable ones, reporting them once."""
        good, bad = image_io.scan_images(self._filepaths, verbose=self.verbose)
        if bad:
            bad_set = {p for p, _ in bad}
            keep([p not in bad_set for p in self._filepaths])
            self.skipped.extend(bad)
            listing = "; ".join(f"{p} ({r})" for p, r in bad[:5]) + (" ..." if len(bad) > 5 else "")
            warnings.warn(f"Skipped {len(bad)} unreadable image file(s): {listing}. The list is in "
                          f"the iterator's .skipped attribute.", stacklevel=3)

    def _load(self, j):
        """Decode sample j; an unreadable file is replaced by the next readable sample (same batch size)."""
        for _ in range(self.n):
            path = self._filepaths[j]
            if path not in self._bad:
                try:
                    return j, image_io.decode(path, self.color_mode, self.target_size, self.interpolation,
                                              self.keep_aspect_ratio)
                except image_io.ImageLoadError as e:
                    with self._bad_lock:
                        if path not in self._bad:
                            self._bad.add(path)
                            self.skipped.append((path, str(e)))
                            warnings.warn(f"Skipped an unreadable image: {e} Its place in the batch goes to the "
                                          "next readable image.")
            j = (j + 1) % self.n
        raise image_io.ImageLoadError("None of the images of this iterator can be read.")

    def _get_batches_of_transformed_samples(self, index_array, rs):
        used = []
        images = np.empty((len(index_array),) + self.target_size + (image_io.CHANNELS[self.color_mode],), np.uint8)
        for i, j in enumerate(index_array):
            j, images[i] = self._load(int(j))
            used.append(j)
        index_array = np.asarray(used, dtype=np.intp)
        if self.augmenter is not None:
            batch_x = self.augmenter.transform_batch(images, rs)
        else:
            batch_x = images.astype(self.dtype)
            if self.data_format == "channels_first":
                batch_x = np.ascontiguousarray(batch_x.transpose(0, 3, 1, 2))
        if self.save_to_dir:
            self._save_batch(batch_x, index_array, rs)
        if self.class_mode == "input":
            batch_y = batch_x.copy()
        elif self.class_mode in {"binary", "sparse"}:
            batch_y = np.asarray([self.classes[j] for j in index_array], dtype=self.dtype)
        elif self.class_mode == "categorical":
            batch_y = np.zeros((len(batch_x), len(self.class_indices)), dtype=self.dtype)
            for i, j in enumerate(index_array):
                batch_y[i, self.classes[j]] = 1.0
        elif self.class_mode == "multi_output":
            batch_y = [target[index_array] for target in self.labels]
        elif self.class_mode == "raw":
            batch_y = self.labels[index_array]
        else:
            return batch_x
        batch_x, batch_y = mix_labels(self.augmenter, batch_x, batch_y, rs)
        if self.sample_weight is None:
            return batch_x, batch_y
        return batch_x, batch_y, self.sample_weight[index_array]

    @property
    def filepaths(self):
        return self._filepaths


class DirectoryIterator(BatchFromFilesMixin, Iterator):
    """Batches from a folder with one subfolder per class (``flow_from_directory``).

    Unreadable files (empty, truncated, not pictures) are found when the
    folder is scanned (with a progress bar when that takes more than a
    second), left out and listed in ``skipped`` [(path, reason)].
    ``verbose=0`` (a tlkit addition) prints nothing.
    """

    allowed_class_modes = {"categorical", "binary", "sparse", "input", None}

    def __init__(self, directory, augmenter, target_size=(256, 256), color_mode="rgb", classes=None,
                 class_mode="categorical", batch_size=32, shuffle=True, seed=None, data_format=None,
                 save_to_dir=None, save_prefix="", save_format="png", follow_links=False, subset=None,
                 interpolation="nearest", keep_aspect_ratio=False, dtype=None, workers=None, verbose=1):
        data_format = data_format or "channels_last"
        self.verbose = verbose
        self.set_processing_attrs(augmenter, target_size, color_mode, data_format, save_to_dir,
                                  save_prefix, save_format, subset, interpolation, keep_aspect_ratio)
        directory = os.fspath(directory)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"flow_from_directory: {directory} is not a folder. Give a folder holding one "
                                    "subfolder of images per class.")
        self.directory = directory
        if class_mode not in self.allowed_class_modes:
            raise ValueError(f"Invalid class_mode: {class_mode}; expected one of: {self.allowed_class_modes}")
        self.class_mode = class_mode
        self.dtype = dtype or "float32"
        if not classes:
            classes = folders.subfolders(directory)
        self.num_classes = len(classes)
        self.class_indices = dict(zip(classes, range(len(classes))))
        filenames, labels = [], []
        for name in classes:
            folder = os.path.join(directory, name)
            found = folders.image_files(folder, follow_links, self.white_list_formats)
            if self.split:
                found = found[int(self.split[0] * len(found)):int(self.split[1] * len(found))]
            filenames += [os.path.join(name, os.path.relpath(p, folder)) for p in found]
            labels += [self.class_indices[name]] * len(found)
        self.filenames = filenames
        self.classes = np.asarray(labels, dtype="int32")
        self._filepaths = [os.path.join(directory, f) for f in filenames]

        def keep(mask):
            self.filenames = [f for f, k in zip(self.filenames, mask) if k]
            self._filepaths = [f for f, k in zip(self._filepaths, mask) if k]
            self.classes = self.classes[np.asarray(mask, bool)]

        self._drop_unreadable(keep)
        self.samples = len(self.filenames)
        if verbose:
            print(f"Found {self.samples} images belonging to {self.num_classes} classes.")
        super().__init__(self.samples, batch_size, shuffle, seed, workers)

    @property
    def labels(self):
        return self.classes

    @property
    def sample_weight(self):
        return None


def _columns(table, names):
    """Columns of a pandas DataFrame or a dict of sequences, as lists (pandas is never imported here)."""
    if isinstance(table, dict):
        cols = {k: list(v) for k, v in table.items()}
    elif hasattr(table, "columns") and hasattr(table, "__getitem__"):
        cols = {k: list(table[k]) for k in table.columns}
    else:
        raise TypeError(f"dataframe must be a pandas DataFrame or a dict of columns, not {type(table).__name__}.")
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise ValueError(f"All columns must have the same length; got lengths {sorted(lengths)}.")
    for name in names:
        if name not in cols:
            raise KeyError(f"Column {name!r} is not in the table (columns: {list(cols)}).")
    return cols


class DataFrameIterator(BatchFromFilesMixin, Iterator):
    """Batches from a table of file names and labels (``flow_from_dataframe``).

    ``dataframe`` is a pandas DataFrame or a dict of columns, e.g.
    ``{"filename": ["a.jpg", "b.jpg"], "class": ["cat", "dog"]}``.
    """

    allowed_class_modes = {"binary", "categorical", "input", "multi_output", "raw", "sparse", None}
    # Keras's list: a table naming .gif or .webp files gets them dropped, as in Keras.
    white_list_formats = folders.KERAS_IMAGE_EXTENSIONS

    def __init__(self, dataframe, directory=None, augmenter=None, x_col="filename", y_col="class",
                 weight_col=None, target_size=(256, 256), color_mode="rgb", classes=None, class_mode="categorical",
                 batch_size=32, shuffle=True, seed=None, data_format="channels_last", save_to_dir=None,
                 save_prefix="", save_format="png", subset=None, interpolation="nearest", keep_aspect_ratio=False,
                 dtype="float32", validate_filenames=True, workers=None, verbose=1):
        self.verbose = verbose
        self.set_processing_attrs(augmenter, target_size, color_mode, data_format, save_to_dir,
                                  save_prefix, save_format, subset, interpolation, keep_aspect_ratio)
        self.directory = os.fspath(directory) if directory else ""
        self.class_mode = class_mode
        self.dtype = dtype or "float32"
        if class_mode not in self.allowed_class_modes:
            raise ValueError(f"Invalid class_mode: {class_mode}; expected one of: {self.allowed_class_modes}")
        if class_mode == "multi_output" and not isinstance(y_col, list):
            raise TypeError(f'If class_mode="{class_mode}", y_col must be a list. Received {type(y_col).__name__}.')
        labelled = class_mode is not None and class_mode != "input"
        y_names = (y_col if isinstance(y_col, list) else [y_col]) if labelled else []
        cols = _columns(dataframe, [x_col] + y_names + ([weight_col] if weight_col else []))
        names = cols[x_col]
        ys = [cols[c] for c in y_names]
        y = ys[0] if ys and not isinstance(y_col, list) else None
        self._check_params(names, y, cols.get(weight_col) if weight_col else None, classes)
        rows = list(range(len(names)))
        if validate_filenames:
            ok = [i for i in rows if folders.validate_filename(os.path.join(self.directory, names[i]),
                                                                self.white_list_formats)]
            if len(ok) < len(rows):
                warnings.warn(f'Found {len(rows) - len(ok)} invalid image filename(s) in x_col="{x_col}". These '
                              "filename(s) will be ignored.")
            rows = ok
        if class_mode not in ("input", "multi_output", "raw", None):
            rows, labels_of, classes = self._filter_classes(rows, y, classes, y_col)
            self.class_indices = dict(zip(classes, range(len(classes))))
            self.num_classes = len(classes)
        if self.split:
            rows = rows[int(self.split[0] * len(rows)):int(self.split[1] * len(rows))]
        self.filenames = [names[i] for i in rows]
        self._filepaths = [os.path.join(self.directory, f) for f in self.filenames]
        if class_mode not in ("input", "multi_output", "raw", None):
            self.classes = [self._class_index(labels_of[i]) for i in rows]
        self._rows = rows
        self._cols = cols
        self._y_col, self._weight_col = y_col, weight_col

        def keep(mask):
            self._rows = [r for r, k in zip(self._rows, mask) if k]
            self.filenames = [f for f, k in zip(self.filenames, mask) if k]
            self._filepaths = [f for f, k in zip(self._filepaths, mask) if k]
            if hasattr(self, "classes"):
                self.classes = [c for c, k in zip(self.classes, mask) if k]

        self._drop_unreadable(keep)
        rows = self._rows
        self._sample_weight = np.asarray([cols[weight_col][i] for i in rows]) if weight_col else None
        if class_mode == "multi_output":
            self._targets = [np.array([cols[c][i] for i in rows]) for c in y_col]
        elif class_mode == "raw":
            if isinstance(y_col, list):
                self._targets = np.array([[cols[c][i] for c in y_col] for i in rows])
            else:
                self._targets = np.array([cols[y_col][i] for i in rows])
        if hasattr(self, "classes") and self.classes and not isinstance(self.classes[0], list):
            self.classes = np.asarray(self.classes, dtype="int32")
        self.samples = len(self.filenames)
        validated = "validated" if validate_filenames else "non-validated"
        if verbose:
            classes_part = "" if class_mode in ("input", "multi_output", "raw", None) else \
                f" belonging to {self.num_classes} classes"
            print(f"Found {self.samples} {validated} image filenames{classes_part}.")
        super().__init__(self.samples, batch_size, shuffle, seed, workers)

    def _check_params(self, names, y, weights, classes):
        if not all(isinstance(v, str) for v in names):
            raise TypeError("All values in column x_col must be strings.")
        if self.class_mode in {"binary", "sparse"} and not all(isinstance(v, str) for v in y):
            raise TypeError(f'If class_mode="{self.class_mode}", y_col column values must be strings.')
        if self.class_mode == "binary":
            count = len(set(classes)) if classes else len(set(y))
            if count != 2:
                raise ValueError(f'If class_mode="binary" there must be 2 classes. Found {count} classes.')
        if self.class_mode == "categorical" and not all(isinstance(v, (str, list, tuple)) for v in y):
            raise TypeError(f'If class_mode="{self.class_mode}", y_col column values must be type string, list '
                            "or tuple.")
        if classes and self.class_mode in {"input", "multi_output", "raw", None}:
            warnings.warn(f'`classes` will be ignored given the class_mode="{self.class_mode}"')
        if weights is not None and not np.issubdtype(np.asarray(weights).dtype, np.number):
            raise TypeError("Column weight_col must be numeric.")

    @staticmethod
    def _filter_classes(rows, y, classes, y_col):
        def keep_known(label):
            if isinstance(label, (list, tuple)):
                return [c for c in label if c in wanted] or None
            if isinstance(label, str):
                return label if label in wanted else None
            raise TypeError(f"Expect string, list or tuple but found {type(label)} in {y_col} column ")

        labels_of = {}
        if classes:
            classes = list(dict.fromkeys(classes))
            wanted = set(classes)
            for i in rows:
                labels_of[i] = keep_known(y[i])
        else:
            found = set()
            for i in rows:
                found.update(y[i] if isinstance(y[i], (list, tuple)) else [y[i]])
                labels_of[i] = y[i]
            classes = sorted(found)
        rows = [i for i in rows if labels_of[i] is not None]
        return rows, labels_of, classes

    def _class_index(self, label):
        if isinstance(label, (list, tuple)):
            return [self.class_indices[c] for c in label]
        return self.class_indices[label]

    @property
    def labels(self):
        return self._targets if self.class_mode in {"multi_output", "raw"} else self.classes

    @property
    def sample_weight(self):
        return self._sample_weight
