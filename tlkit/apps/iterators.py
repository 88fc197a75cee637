"""tlkit finetune's image iterators: augmented training batches, the same images plain (for cached base
outputs) and the validation images, from the folder layout the run found."""
from tlkit.augment.options import generator_arguments


def augmentation_arguments(config):
    if not config.augment:
        return {}
    return generator_arguments(config.rotation, config.shift, config.zoom, config.shear, config.flip,
                               config.brightness, config.fill_mode)


def make_iterators(config, layout):
    from tlkit.augment import ImageDataGenerator
    from tlkit.augment.layers.augmenter import LayerAugmenter

    split = config.val_split if layout["val"] is None else 0.0
    size = (config.image_size, config.image_size)
    common = dict(target_size=size, classes=layout["classes"], class_mode="categorical",
                  batch_size=config.batch_size, seed=config.seed, workers=config.workers,
                  verbose=1 if config.verbose else 0)
    train_gen = LayerAugmenter.from_flags(augmentation_arguments(config), validation_split=split)
    plain_gen = ImageDataGenerator(validation_split=split)
    train = train_gen.flow_from_directory(layout["train"], shuffle=True, subset="training" if split else None,
                                          **common)
    # The same images again, unshuffled: "Found N images" was already said for them.
    train_plain = plain_gen.flow_from_directory(layout["train"], shuffle=False,
                                                subset="training" if split else None, **{**common, "verbose": 0})
    if layout["val"] is not None:
        val = plain_gen.flow_from_directory(layout["val"], shuffle=False, **common)
    elif split:
        val = plain_gen.flow_from_directory(layout["train"], shuffle=False, subset="validation", **common)
    else:
        val = None
    return train, train_plain, val
