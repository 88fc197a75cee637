"""``ImageDataGenerator``: Keras's class, names, defaults and semantics, on one fused kernel.

    >>> from tlkit.augment import ImageDataGenerator
    >>> datagen = ImageDataGenerator(rotation_range=30, width_shift_range=0.2,
    ...                              height_shift_range=0.2, zoom_range=0.2,
    ...                              horizontal_flip=True, rescale=1 / 255)
    >>> it = datagen.flow_from_directory("photos/", target_size=(224, 224))
    >>> x, y = next(it)

Per image, rotation, shift, shear, zoom and flips become one 2x3 matrix
(``affine.transform_matrix``) and a whole batch is resampled by one numba
pass from uint8 (or float) straight into float32; rescale rides along in the
same pass when nothing non-linear (channel shift, brightness,
preprocessing_function) comes in between. Random parameters are drawn exactly
as Keras draws them: ``get_random_transform(shape, seed)`` returns Keras's
values for the same seed.
"""
import warnings

import numpy as np

from tlkit.augment import affine, kernels
from tlkit.augment.file_iterators import DataFrameIterator, DirectoryIterator
from tlkit.augment.iterators import NumpyArrayIterator


def _shift_amount(rs, spec, size):
    """Keras's width/height_shift_range sampling: int -> whole pixels, float -> uniform, list -> choice."""
    if isinstance(spec, (bool, np.bool_)):
        spec = float(spec)
    if isinstance(spec, (int, np.integer)) or isinstance(spec, (list, tuple, np.ndarray)):
        value = rs.choice(spec) * rs.choice([-1, 1])
    else:
        value = rs.uniform(-spec, spec)
    if np.max(spec) < 1:
        value *= size
    return value


_PARAMETERS = ("theta", "tx", "ty", "shear", "zx", "zy", "flip_horizontal", "flip_vertical",
               "channel_shift_intensity", "brightness")


class ImageDataGenerator:
    """Keras's ImageDataGenerator (keras-preprocessing 1.1 / tf.keras), much faster.

    Arguments, defaults and errors are Keras's. ``interpolation_order`` may be
    0 or 1 (tlkit's kernel has no spline orders).
    """

    def __init__(self, featurewise_center=False, samplewise_center=False, featurewise_std_normalization=False,
                 samplewise_std_normalization=False, zca_whitening=False, zca_epsilon=1e-6, rotation_range=0,
                 width_shift_range=0.0, height_shift_range=0.0, brightness_range=None, shear_range=0.0,
                 zoom_range=0.0, channel_shift_range=0.0, fill_mode="nearest", cval=0.0, horizontal_flip=False,
                 vertical_flip=False, rescale=None, preprocessing_function=None, data_format=None,
                 validation_split=0.0, interpolation_order=1, dtype=None):
        data_format = data_format or "channels_last"
        dtype = dtype or "float32"
        self.featurewise_center = featurewise_center
        self.samplewise_center = samplewise_center
        self.featurewise_std_normalization = featurewise_std_normalization
        self.samplewise_std_normalization = samplewise_std_normalization
        self.zca_whitening = zca_whitening
        self.zca_epsilon = zca_epsilon
        self.rotation_range = rotation_range
        self.width_shift_range = width_shift_range
        self.height_shift_range = height_shift_range
        self.shear_range = shear_range
        self.channel_shift_range = channel_shift_range
        self.fill_mode = fill_mode
        self.cval = cval
        self.horizontal_flip = horizontal_flip
        self.vertical_flip = vertical_flip
        self.rescale = rescale
        self.preprocessing_function = preprocessing_function
        self.dtype = dtype
        self.interpolation_order = interpolation_order
        affine.check_fill_mode(fill_mode)
        affine.check_order(interpolation_order)

        if data_format not in {"channels_last", "channels_first"}:
            raise ValueError('`data_format` should be `"channels_last"` (channel after row and column) or '
                             f'`"channels_first"` (channel before row and column). Received: {data_format}')
        self.data_format = data_format
        if data_format == "channels_first":
            self.channel_axis, self.row_axis, self.col_axis = 1, 2, 3
        else:
            self.channel_axis, self.row_axis, self.col_axis = 3, 1, 2
        if validation_split and not 0 < validation_split < 1:
            raise ValueError(f"`validation_split` must be strictly between 0 and 1.  Received: {validation_split}")
        self.validation_split = validation_split

        self.mean = None
        self.std = None
        self.zca_whitening_matrix = None

        if isinstance(zoom_range, (float, int)):
            self.zoom_range = [1 - zoom_range, 1 + zoom_range]
        elif len(zoom_range) == 2 and all(isinstance(v, (float, int)) for v in zoom_range):
            self.zoom_range = [zoom_range[0], zoom_range[1]]
        else:
            raise ValueError(f"`zoom_range` should be a float or a tuple or list of two floats. Received: {zoom_range}")
        if zca_whitening:
            if not featurewise_center:
                self.featurewise_center = True
                warnings.warn("This ImageDataGenerator specifies `zca_whitening`, which overrides setting of "
                              "`featurewise_center`.")
            if featurewise_std_normalization:
                self.featurewise_std_normalization = False
                warnings.warn("This ImageDataGenerator specifies `zca_whitening` which overrides setting of"
                              "`featurewise_std_normalization`.")
        if featurewise_std_normalization and not featurewise_center:
            self.featurewise_center = True
            warnings.warn("This ImageDataGenerator specifies `featurewise_std_normalization`, which overrides "
                          "setting of `featurewise_center`.")
        if samplewise_std_normalization and not samplewise_center:
            self.samplewise_center = True
            warnings.warn("This ImageDataGenerator specifies `samplewise_std_normalization`, which overrides "
                          "setting of `samplewise_center`.")
        if brightness_range is not None:
            if not isinstance(brightness_range, (tuple, list, np.ndarray)) or len(brightness_range) != 2:
                raise ValueError(f"`brightness_range should be tuple or list of two floats. Received: "
                                 f"{brightness_range}")
        self.brightness_range = brightness_range

    # ----- random parameters and single images (Keras's API) -----
    def _sample(self, rs, img_shape):
        """One image's parameters, drawn from ``rs`` in Keras's order (same values for the same seed)."""
        rows, cols = img_shape[self.row_axis - 1], img_shape[self.col_axis - 1]
        theta = rs.uniform(-self.rotation_range, self.rotation_range) if self.rotation_range else 0
        tx = _shift_amount(rs, self.height_shift_range, rows) if np.any(self.height_shift_range) else 0
        ty = _shift_amount(rs, self.width_shift_range, cols) if np.any(self.width_shift_range) else 0
        shear = rs.uniform(-self.shear_range, self.shear_range) if self.shear_range else 0
        if self.zoom_range[0] == 1 and self.zoom_range[1] == 1:
            zx, zy = 1, 1
        else:
            zx, zy = rs.uniform(self.zoom_range[0], self.zoom_range[1], 2)
        flip_h = bool(rs.random_sample() < 0.5) and bool(self.horizontal_flip)
        flip_v = bool(rs.random_sample() < 0.5) and bool(self.vertical_flip)
        shift = rs.uniform(-self.channel_shift_range, self.channel_shift_range) if self.channel_shift_range != 0 \
            else None
        brightness = rs.uniform(self.brightness_range[0], self.brightness_range[1]) \
            if self.brightness_range is not None else None
        return {"theta": theta, "tx": tx, "ty": ty, "shear": shear, "zx": zx, "zy": zy,
                "flip_horizontal": flip_h, "flip_vertical": flip_v,
                "channel_shift_intensity": shift, "brightness": brightness}

    def get_random_transform(self, img_shape, seed=None):
        """Random parameters for one image of shape ``img_shape``, as Keras draws them."""
        return self._sample(np.random.RandomState(seed) if seed is not None else np.random, img_shape)

    def _uniform_draws(self, rows, cols):
        """Keras's per-image draws as (name, low, high, factor) when every one is a plain uniform, else None.

        ``rs.uniform(low, high)`` is ``low + (high - low) * rs.random_sample()``, so a batch can take all its
        doubles in one call and still get, bit for bit, the values of the image-by-image loop.
        """
        draws = []
        if self.rotation_range:
            draws.append(("theta", -self.rotation_range, self.rotation_range, 1.0))
        for name, spec, size in (("tx", self.height_shift_range, rows), ("ty", self.width_shift_range, cols)):
            if not np.any(spec):
                continue
            if isinstance(spec, (bool, np.bool_)):
                spec = float(spec)
            if isinstance(spec, (int, np.integer, list, tuple, np.ndarray)):
                return None  # rs.choice: a variable number of draws per image
            draws.append((name, -spec, spec, size if spec < 1 else 1.0))
        if self.shear_range:
            draws.append(("shear", -self.shear_range, self.shear_range, 1.0))
        if not (self.zoom_range[0] == 1 and self.zoom_range[1] == 1):
            draws += [("zx", self.zoom_range[0], self.zoom_range[1], 1.0),
                      ("zy", self.zoom_range[0], self.zoom_range[1], 1.0)]
        draws += [("flip_horizontal", 0.0, 1.0, 1.0), ("flip_vertical", 0.0, 1.0, 1.0)]
        if self.channel_shift_range != 0:
            draws.append(("channel_shift_intensity", -self.channel_shift_range, self.channel_shift_range, 1.0))
        if self.brightness_range is not None:
            draws.append(("brightness", self.brightness_range[0], self.brightness_range[1], 1.0))
        return draws

    def _sample_batch(self, rs, img_shape, n):
        """Parameters of ``n`` images as arrays, drawn from ``rs`` exactly as ``n`` calls of ``_sample`` would."""
        rows, cols = img_shape[self.row_axis - 1], img_shape[self.col_axis - 1]
        draws = self._uniform_draws(rows, cols)
        if draws is None:
            params = [self._sample(rs, img_shape) for _ in range(n)]
            out = {k: np.array([np.nan if p[k] is None else p[k] for p in params], np.float64) for k in _PARAMETERS}
        else:
            u = rs.random_sample(n * len(draws)).reshape(n, len(draws)) if n else np.empty((0, len(draws)))
            out = {"theta": np.zeros(n), "tx": np.zeros(n), "ty": np.zeros(n), "shear": np.zeros(n),
                   "zx": np.ones(n), "zy": np.ones(n), "channel_shift_intensity": np.full(n, np.nan),
                   "brightness": np.full(n, np.nan)}
            for j, (name, low, high, factor) in enumerate(draws):
                out[name] = (low + (high - low) * u[:, j]) * factor
            out["flip_horizontal"] = (out["flip_horizontal"] < 0.5) & bool(self.horizontal_flip)
            out["flip_vertical"] = (out["flip_vertical"] < 0.5) & bool(self.vertical_flip)
        return out

    def _matrix(self, p, h, w):
        return affine.transform_matrix(h, w, p.get("theta", 0), p.get("tx", 0), p.get("ty", 0), p.get("shear", 0),
                                       p.get("zx", 1), p.get("zy", 1), bool(p.get("flip_horizontal", False)),
                                       bool(p.get("flip_vertical", False)))

    def apply_transform(self, x, transform_parameters):
        """One image through the given parameters (Keras's ``apply_transform``)."""
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"apply_transform expects one 3D image, got shape {x.shape}.")
        hwc = x.transpose(1, 2, 0) if self.data_format == "channels_first" else x
        out = self._warp(hwc[None], [transform_parameters], out_dtype=None)
        if out is None:
            return x
        out = out[0]
        return np.ascontiguousarray(out.transpose(2, 0, 1)) if self.data_format == "channels_first" else out

    def random_transform(self, x, seed=None):
        """One image through fresh random parameters."""
        return self.apply_transform(x, self.get_random_transform(np.shape(x), seed))

    # ----- batches (what the iterators call) -----
    def _warp(self, images, params, scale=None, out_dtype="float32"):
        """(N, H, W, C) images through per-image parameters; None when nothing changes them."""
        n, h, w, c = images.shape
        mats = np.stack([self._matrix(p, h, w) for p in params]) if n else np.empty((0, 2, 3))
        shifts = np.array([np.nan if p.get("channel_shift_intensity") is None else p["channel_shift_intensity"]
                           for p in params], np.float32)
        brightness = np.array([np.nan if p.get("brightness") is None else p["brightness"] for p in params],
                              np.float32)
        return self._warp_batch(images, mats, shifts, brightness, scale, out_dtype)

    def _warp_batch(self, images, mats, shifts, brightness, scale=None, out_dtype="float32"):
        """(N, H, W, C) images through (N, 2, 3) matrices, then channel shifts and brightness (NaN: none)."""
        n, h, w, c = images.shape
        identity = np.array_equal(mats, np.broadcast_to([[1.0, 0, 0], [0, 1, 0]], mats.shape))
        intensity = not (np.isnan(shifts).all() and np.isnan(brightness).all())
        if identity and not intensity and scale is None:
            if out_dtype is None:
                return None
            return images.astype(np.float32)
        if identity:
            out = images.astype(np.float32)
            if scale is not None:
                out *= np.float32(scale)
        else:
            s = np.full(n, 1.0 if scale is None else scale, np.float32)
            out = affine.warp(images, mats, self.fill_mode, self.cval, self.interpolation_order, s,
                              np.zeros(n, np.float32))
        if intensity:
            kernels.adjust_intensity(out, shifts, brightness, c == 4)
        return out

    def transform_batch(self, images, rng):
        """A batch (N, H, W, C) of uint8 or float images to the generator's layout and dtype, augmented
        with parameters drawn from the RandomState ``rng`` as Keras draws them image by image (all at
        once when it can). What the iterators call."""
        n, h, w = images.shape[:3]
        shape = images.shape[1:]
        if self.data_format == "channels_first":
            shape = (shape[2], shape[0], shape[1])
        p = self._sample_batch(rng, shape, n)
        mats = affine.transform_matrices(h, w, p["theta"], p["tx"], p["ty"], p["shear"], p["zx"], p["zy"],
                                         p["flip_horizontal"], p["flip_vertical"]) if n else np.empty((0, 2, 3))
        fused = bool(self.rescale) and self.preprocessing_function is None \
            and self.channel_shift_range == 0 and self.brightness_range is None
        out = self._warp_batch(images, mats, p["channel_shift_intensity"].astype(np.float32),
                               p["brightness"].astype(np.float32), scale=self.rescale if fused else None)
        if self.data_format == "channels_first":
            out = np.ascontiguousarray(out.transpose(0, 3, 1, 2))
        out = self._standardize_batch(out, rescaled=fused)
        return out.astype(self.dtype, copy=False)

    def _standardize_batch(self, x, rescaled=False):
        if self.preprocessing_function:
            for i in range(len(x)):  # Keras calls it image by image
                x[i] = self.preprocessing_function(x[i])
        if self.rescale and not rescaled:
            x *= self.rescale
        axes = tuple(range(1, x.ndim))
        if self.samplewise_center:
            x -= np.mean(x, axis=axes, keepdims=True)
        if self.samplewise_std_normalization:
            x /= np.std(x, axis=axes, keepdims=True) + 1e-6
        return self._featurewise(x)

    def _featurewise(self, x):
        if self.featurewise_center:
            if self.mean is not None:
                x -= self.mean
            else:
                warnings.warn("This ImageDataGenerator specifies `featurewise_center`, but it hasn't been fit on "
                              "any training data. Fit it first by calling `.fit(numpy_data)`.")
        if self.featurewise_std_normalization:
            if self.std is not None:
                x /= self.std + 1e-6
            else:
                warnings.warn("This ImageDataGenerator specifies `featurewise_std_normalization`, but it hasn't "
                              "been fit on any training data. Fit it first by calling `.fit(numpy_data)`.")
        if self.zca_whitening:
            if self.zca_whitening_matrix is not None:
                flat = x.reshape(-1, np.prod(x.shape[-3:]))
                x = np.reshape(flat @ self.zca_whitening_matrix, x.shape)
            else:
                warnings.warn("This ImageDataGenerator specifies `zca_whitening`, but it hasn't been fit on any "
                              "training data. Fit it first by calling `.fit(numpy_data)`.")
        return x

    def standardize(self, x):
        """Keras's ``standardize``: preprocessing_function, rescale, sample- then feature-wise (in place)."""
        if self.preprocessing_function:
            x = self.preprocessing_function(x)
        if self.rescale:
            x *= self.rescale
        if self.samplewise_center:
            x -= np.mean(x, keepdims=True)
        if self.samplewise_std_normalization:
            x /= np.std(x, keepdims=True) + 1e-6
        return self._featurewise(x)

    def fit(self, x, augment=False, rounds=1, seed=None):
        """Feature-wise statistics (mean, std, ZCA) from sample data, as Keras."""
        x = np.asarray(x, dtype=self.dtype)
        if x.ndim != 4:
            raise ValueError("Input to `.fit()` should have rank 4. Got array with shape: " + str(x.shape))
        if x.shape[self.channel_axis] not in {1, 3, 4}:
            warnings.warn(f'Expected input to be images (as Numpy array) following the data format convention '
                          f'"{self.data_format}" (channels on axis {self.channel_axis}), i.e. expected either 1, 3 '
                          f'or 4 channels on axis {self.channel_axis}. However, it was passed an array with shape '
                          f'{x.shape} ({x.shape[self.channel_axis]} channels).')
        rs = np.random.RandomState(seed) if seed is not None else np.random
        x = np.copy(x)
        if self.rescale:
            x *= self.rescale
        if augment:
            hwc = x.transpose(0, 2, 3, 1) if self.data_format == "channels_first" else x
            shape = x.shape[1:]
            parts = []
            for _ in range(rounds):
                params = [self._sample(rs, shape) for _ in range(len(x))]
                out = self._warp(hwc, params)
                parts.append(out.transpose(0, 3, 1, 2) if self.data_format == "channels_first" else out)
            x = np.concatenate(parts).astype(self.dtype, copy=False)
        bshape = [1, 1, 1]
        bshape[self.channel_axis - 1] = x.shape[self.channel_axis]
        if self.featurewise_center:
            self.mean = np.reshape(np.mean(x, axis=(0, self.row_axis, self.col_axis)), bshape)
            x -= self.mean
        if self.featurewise_std_normalization:
            self.std = np.reshape(np.std(x, axis=(0, self.row_axis, self.col_axis)), bshape)
            x /= self.std + 1e-6
        if self.zca_whitening:
            n = len(x)
            u, s, _ = np.linalg.svd(np.reshape(x, (n, -1)).T, full_matrices=False)
            s_inv = np.sqrt(n) / (s + self.zca_epsilon)
            self.zca_whitening_matrix = (u * s_inv).dot(u.T)

    # ----- iterators -----
    def flow(self, x, y=None, batch_size=32, shuffle=True, sample_weight=None, seed=None, save_to_dir=None,
             save_prefix="", save_format="png", ignore_class_split=False, subset=None, workers=None):
        """Augmented batches from arrays (a ``NumpyArrayIterator``)."""
        return NumpyArrayIterator(x, y, self, batch_size=batch_size, shuffle=shuffle, sample_weight=sample_weight,
                                  seed=seed, data_format=self.data_format, save_to_dir=save_to_dir,
                                  save_prefix=save_prefix, save_format=save_format,
                                  ignore_class_split=ignore_class_split, subset=subset, dtype=self.dtype,
                                  workers=workers)

    def flow_from_directory(self, directory, target_size=(256, 256), color_mode="rgb", classes=None,
                            class_mode="categorical", batch_size=32, shuffle=True, seed=None, save_to_dir=None,
                            save_prefix="", save_format="png", follow_links=False, subset=None,
                            interpolation="nearest", keep_aspect_ratio=False, workers=None, verbose=1):
        """Augmented batches from a folder with one subfolder per class (a ``DirectoryIterator``).

        ``workers`` (threads preparing batches ahead) and ``verbose`` (0: no scan progress bar, no
        "Found ..." line) are tlkit additions."""
        return DirectoryIterator(directory, self, target_size=target_size, color_mode=color_mode, classes=classes,
                                 class_mode=class_mode, data_format=self.data_format, batch_size=batch_size,
                                 shuffle=shuffle, seed=seed, save_to_dir=save_to_dir, save_prefix=save_prefix,
                                 save_format=save_format, follow_links=follow_links, subset=subset,
                                 interpolation=interpolation, keep_aspect_ratio=keep_aspect_ratio, dtype=self.dtype,
                                 workers=workers, verbose=verbose)

    def flow_from_dataframe(self, dataframe, directory=None, x_col="filename", y_col="class", weight_col=None,
                            target_size=(256, 256), color_mode="rgb", classes=None, class_mode="categorical",
                            batch_size=32, shuffle=True, seed=None, save_to_dir=None, save_prefix="",
                            save_format="png", subset=None, interpolation="nearest", validate_filenames=True,
                            keep_aspect_ratio=False, workers=None, verbose=1, **kwargs):
        """Augmented batches from a table of file names (pandas DataFrame or dict of columns)."""
        for old in ("has_ext", "sort", "drop_duplicates"):
            if old in kwargs:
                warnings.warn(f"{old} is deprecated and ignored.", DeprecationWarning)
        if class_mode == "other":
            warnings.warn('`class_mode="other"` is deprecated, please use `class_mode="raw"`.', DeprecationWarning)
            class_mode = "raw"
        return DataFrameIterator(dataframe, directory, self, x_col=x_col, y_col=y_col, weight_col=weight_col,
                                 target_size=target_size, color_mode=color_mode, classes=classes,
                                 class_mode=class_mode, data_format=self.data_format, batch_size=batch_size,
                                 shuffle=shuffle, seed=seed, save_to_dir=save_to_dir, save_prefix=save_prefix,
                                 save_format=save_format, subset=subset, interpolation=interpolation,
                                 keep_aspect_ratio=keep_aspect_ratio, validate_filenames=validate_filenames,
                                 dtype=self.dtype, workers=workers, verbose=verbose)
