"""Image augmentation: Keras's ImageDataGenerator on one fused numba kernel, streamed by threads.

    >>> from tlkit.augment import ImageDataGenerator
    >>> it = ImageDataGenerator(rotation_range=30, horizontal_flip=True).flow_from_directory("photos/")
    >>> x, y = next(it)

Or the composable form, compiled to the same single pass::

    >>> from tlkit.augment import Pipeline, RandomRotation, RandomFlip, Rescale
    >>> batch = Pipeline([RandomRotation(30), RandomFlip("horizontal"), Rescale(1 / 255)])(images, seed=0)
"""
from tlkit.augment.affine import apply_affine_transform, apply_channel_shift, flip_axis, transform_matrix
from tlkit.augment.datasets import image_dataset_from_directory
from tlkit.augment.erasing import RandomErasing
from tlkit.augment.generator import ImageDataGenerator
from tlkit.augment.image_io import ImageLoadError, array_to_img, img_to_array, list_pictures, load_img, save_img
from tlkit.augment.file_iterators import DataFrameIterator, DirectoryIterator
from tlkit.augment.folders import IMAGE_EXTENSIONS, validate_filename
from tlkit.augment.functional import (apply_brightness_shift, random_brightness, random_channel_shift,
                                      random_rotation, random_shear, random_shift, random_zoom)
from tlkit.augment.iterators import Iterator, NumpyArrayIterator
from tlkit.augment.mixing import CutMix, MixUp
from tlkit.augment.policies import AugMix, RandAugment, TrivialAugmentWide
from tlkit.augment.pipeline import (Pipeline, RandomBrightness, RandomChannelShift, RandomFlip, RandomRotation,
                                    RandomShear, RandomShift, RandomZoom, Rescale)

__all__ = [
    "ImageDataGenerator", "Iterator", "NumpyArrayIterator", "DirectoryIterator", "DataFrameIterator",
    "load_img", "img_to_array", "array_to_img", "save_img", "apply_affine_transform", "apply_channel_shift",
    "flip_axis", "transform_matrix", "ImageLoadError", "IMAGE_EXTENSIONS",
    "random_rotation", "random_shift", "random_shear", "random_zoom", "random_channel_shift", "random_brightness",
    "apply_brightness_shift", "list_pictures", "validate_filename", "image_dataset_from_directory",
    "Pipeline", "RandomRotation", "RandomShift", "RandomZoom", "RandomShear", "RandomFlip", "RandomBrightness",
    "RandomChannelShift", "Rescale", "RandAugment", "TrivialAugmentWide", "AugMix", "MixUp", "CutMix",
    "RandomErasing",
]
