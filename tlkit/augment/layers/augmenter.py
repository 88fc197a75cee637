"""Preprocessing layers as an iterator's augmenter: the Keras 3 way of augmenting, fed by tlkit's
folder iterators (``flow_from_directory``), one fused run of the layers per batch.

    >>> augmenter = LayerAugmenter([RandomFlip("horizontal"), RandomRotation(0.05)], validation_split=0.2)
    >>> it = DirectoryIterator("photos/", augmenter, target_size=(224, 224), subset="training")

``from_flags`` maps the augmentation flags of `tlkit finetune` (Keras 2's generator arguments) onto
Keras 3's layers: flips (one layer per axis: independent draws, as the generator), RandomRotation,
RandomTranslation, RandomZoom (both axes drawn apart, as zoom_range), with the flag's fill mode.
Shear and multiplicative brightness have no Keras 3 layer of that meaning; two draw-only steps give
the generator's maths inside the same run (shear folds into the warp, brightness follows it).
"""
import numpy as np

from tlkit.augment import kernels
from tlkit.augment.file_iterators import DirectoryIterator
from tlkit.augment.layers.base import current_rng, draws_from
from tlkit.augment.layers.fusion import ArrayStep, GeometricStep, run_layers
from tlkit.augment.layers.geometric import FILL_MODES, RandomFlip, RandomRotation, RandomTranslation, RandomZoom


class KerasShear:
    """Keras 2's shear_range: an angle from [-degrees, degrees] per image, about the centre."""

    def __init__(self, degrees, fill_mode="nearest", fill_value=0.0):
        self.degrees, self.fill = float(degrees), (FILL_MODES[fill_mode], float(fill_value))

    def draw(self, n, h, w, training):
        if not training:
            return None
        s = np.deg2rad(current_rng(None).uniform(-self.degrees, self.degrees, n))
        core = np.zeros((n, 2, 2))
        core[:, 0, 0], core[:, 1, 0], core[:, 1, 1] = np.cos(s), -np.sin(s), 1.0
        centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
        mats = np.concatenate([core, (centre - core @ centre)[..., None]], -1)
        return GeometricStep(mats, (h, w), self.fill, 1)


class KerasBrightness:
    """Keras 2's brightness_range: a factor from (low, high) per image, through Keras's 8-bit rounding."""

    def __init__(self, low, high):
        self.low, self.high = float(low), float(high)

    def draw(self, n, h, w, training):
        if not training:
            return None
        factor = current_rng(None).uniform(self.low, self.high, n).astype(np.float32)
        none = np.full(n, np.nan, np.float32)
        return ArrayStep(lambda x: kernels.adjust_intensity(x, none, factor, x.shape[-1] == 4))


class LayerAugmenter:
    """The iterators' augmenter protocol (``transform_batch(images, rng)``, ``validation_split``)
    over a list of preprocessing layers (or draw-only steps), applied as one fused run."""

    data_format = "channels_last"

    def __init__(self, layers, validation_split=0.0, dtype="float32"):
        if validation_split and not 0 < validation_split < 1:
            raise ValueError(f"validation_split must be strictly between 0 and 1, got {validation_split}.")
        self.layers, self.validation_split, self.dtype = list(layers), validation_split, dtype

    def transform_batch(self, images, rng, parallel=False):
        """The batch through the layers, drawing from a generator seeded by the iterator's ``rng``."""
        with draws_from(np.random.default_rng(rng.randint(0, 2 ** 31 - 1))):
            out = run_layers(images, self.layers, True, parallel)
        return out.astype(self.dtype, copy=False)

    def flow_from_directory(self, directory, target_size=(256, 256), batch_size=32, shuffle=True, seed=None,
                            **kwargs):
        """Batches from a folder of class subfolders, as ``ImageDataGenerator.flow_from_directory``."""
        return DirectoryIterator(directory, self, target_size=target_size, batch_size=batch_size, shuffle=shuffle,
                                 seed=seed, dtype=self.dtype, **kwargs)

    @classmethod
    def from_flags(cls, arguments, validation_split=0.0):
        """Layers for ImageDataGenerator keyword arguments as ``options.generator_arguments`` returns them."""
        a = {"rotation_range": 0.0, "width_shift_range": 0.0, "height_shift_range": 0.0, "zoom_range": 0.0,
             "shear_range": 0.0, "horizontal_flip": False, "vertical_flip": False, "brightness_range": None,
             "fill_mode": "nearest", "channel_shift_range": 0.0, **arguments}
        if a["channel_shift_range"]:
            raise ValueError("LayerAugmenter: channel shifts have no preprocessing layer; use ImageDataGenerator.")
        fill = {"fill_mode": a["fill_mode"], "interpolation": "bilinear"}
        layers = [RandomFlip(mode) for mode, on in (("horizontal", a["horizontal_flip"]),
                                                    ("vertical", a["vertical_flip"])) if on]
        if a["rotation_range"]:
            layers.append(RandomRotation(a["rotation_range"] / 360.0, **fill))
        if a["width_shift_range"] or a["height_shift_range"]:
            layers.append(RandomTranslation(a["height_shift_range"], a["width_shift_range"], **fill))
        if a["shear_range"]:
            layers.append(KerasShear(a["shear_range"], a["fill_mode"]))
        if a["zoom_range"]:
            z = a["zoom_range"]
            layers.append(RandomZoom((-z, z), (-z, z), **fill))
        if a["brightness_range"] is not None:
            layers.append(KerasBrightness(*a["brightness_range"]))
        return cls(layers, validation_split)
