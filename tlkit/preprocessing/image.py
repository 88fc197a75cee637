"""``tlkit.preprocessing.image``: Keras 2's ``keras.preprocessing.image``, served by ``tlkit.augment``.

    >>> from tlkit.preprocessing.image import ImageDataGenerator, load_img, img_to_array, random_rotation
"""
from tlkit.augment import (DataFrameIterator, DirectoryIterator, ImageDataGenerator, Iterator,  # noqa: F401
                           NumpyArrayIterator, apply_affine_transform, apply_brightness_shift, apply_channel_shift,
                           array_to_img, flip_axis, img_to_array, list_pictures, load_img, random_brightness,
                           random_channel_shift, random_rotation, random_shear, random_shift, random_zoom, save_img,
                           validate_filename)

__all__ = [
    "ImageDataGenerator", "Iterator", "NumpyArrayIterator", "DirectoryIterator", "DataFrameIterator",
    "apply_affine_transform", "apply_brightness_shift", "apply_channel_shift", "array_to_img", "flip_axis",
    "img_to_array", "list_pictures", "load_img", "random_brightness", "random_channel_shift", "random_rotation",
    "random_shear", "random_shift", "random_zoom", "save_img", "validate_filename",
]
