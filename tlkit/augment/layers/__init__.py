"""Keras 3's image preprocessing layers, on tlkit's fused warp (``tlkit.layers`` exports them).

    >>> model = tlkit.Sequential([tlkit.Input((224, 224, 3)), RandomFlip("horizontal"), RandomRotation(0.1),
    ...                           RandomZoom(0.2), RandomContrast(0.2), Rescaling(1 / 255), ...])

Active only with ``training=True`` (the random ones), saved and loaded with the model. Inside a
model, adjacent flips, rotations, zooms, translations, crops and resizes resample once per batch,
and contrast/brightness after them fold into one pass (see ``base`` and ``fusion``).
"""
from tlkit.augment.layers.color import Normalization, RandomBrightness, RandomContrast, Rescaling
from tlkit.augment.layers.erasing import RandomErasing
from tlkit.augment.layers.mixing import CutMix, MixUp
from tlkit.augment.layers.policies import AugMix, RandAugment, TrivialAugmentWide
from tlkit.augment.layers.geometric import (CenterCrop, RandomCrop, RandomFlip, RandomRotation, RandomTranslation,
                                            RandomZoom, Resizing)
from tlkit.engine.registry import register_model_class

__all__ = ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation", "RandomCrop", "CenterCrop", "Resizing",
           "RandomContrast", "RandomBrightness", "Rescaling", "Normalization", "RandomErasing",
           "MixUp", "CutMix", "RandAugment", "TrivialAugmentWide", "AugMix"]

# Model files name these classes: loading one must find them (configs are data; only listed classes load).
for _name in __all__:
    register_model_class(globals()[_name], _name)
