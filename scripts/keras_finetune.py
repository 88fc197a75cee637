"""The equivalent Keras program of `tlkit finetune --base squeezenet` (the peer in the acceptance run).

What a Keras user writes by hand today: ImageDataGenerator.flow_from_directory with the same
augmentation, SqueezeNet v1.1 built in Keras with the same ImageNet weights (by layer name),
frozen, the same head, optimizer, batch size and epochs. Run it with the peers' Python (it needs
TensorFlow and tf_keras, which tlkit never does; Keras 3.15 no longer exports ImageDataGenerator,
so code written around it runs on tf_keras, whose fit also runs as a tf.function):

    /work/peers/bin/python scripts/keras_finetune.py ../shared/data/datasets/hymenoptera_data \
        --weights ../shared/data/weights/squeezenet_v1.1_weights_tf_dim_ordering_tf_kernels_notop.h5 \
        --epochs 10 --json keras.json

Prints one line per epoch and, with --json, writes {"epoch_seconds": [...], "val_accuracy": [...], ...}.
"""
import argparse
import json
import os
import time


def squeezenet(keras, input_shape):
    layers = keras.layers

    def fire(x, name, squeeze, expand):
        s = layers.Conv2D(squeeze, 1, activation="relu", name=f"{name}/squeeze1x1")(x)
        left = layers.Conv2D(expand, 1, activation="relu", name=f"{name}/expand1x1")(s)
        right = layers.Conv2D(expand, 3, padding="same", activation="relu", name=f"{name}/expand3x3")(s)
        return layers.Concatenate(name=f"{name}/concat")([left, right])

    inp = keras.Input(input_shape)
    x = layers.Conv2D(64, 3, strides=2, activation="relu", name="conv1")(inp)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = fire(x, "fire2", 16, 64)
    x = fire(x, "fire3", 16, 64)
    x = layers.MaxPooling2D(3, strides=2, name="pool3")(x)
    x = fire(x, "fire4", 32, 128)
    x = fire(x, "fire5", 32, 128)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    for i, (s, e) in enumerate(((48, 192), (48, 192), (64, 256), (64, 256)), start=6):
        x = fire(x, f"fire{i}", s, e)
    return keras.Model(inp, x, name="squeezenet")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_dir")
    p.add_argument("--weights", required=True)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--val-split", type=float, default=0.2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--geometric", action="store_true",
                   help="also rotation 15, shifts 0.1, zoom 0.1 (tlkit finetune --rotation 15 --shift 0.1 --zoom 0.1)")
    p.add_argument("--json", help="write the per-epoch figures here")
    args = p.parse_args()

    import tensorflow as tf
    import tf_keras as keras
    from tf_keras.applications.vgg16 import preprocess_input  # caffe mode, as SqueezeNet's weights expect
    from tf_keras.preprocessing.image import ImageDataGenerator

    tf.random.set_seed(args.seed)
    size = (args.image_size, args.image_size)
    has_split = os.path.isdir(os.path.join(args.data_dir, "train"))
    train_dir = os.path.join(args.data_dir, "train") if has_split else args.data_dir
    val_dir = os.path.join(args.data_dir, "val") if has_split else args.data_dir
    split = 0.0 if has_split else args.val_split
    # tlkit's default augmentation preset (horizontal flips), spelled out; --geometric adds its options.
    augment = dict(horizontal_flip=True, fill_mode="nearest")
    if args.geometric:
        augment.update(rotation_range=15, width_shift_range=0.1, height_shift_range=0.1, zoom_range=0.1)
    train_gen = ImageDataGenerator(preprocessing_function=preprocess_input, validation_split=split, **augment)
    val_gen = ImageDataGenerator(preprocessing_function=preprocess_input, validation_split=split)
    common = dict(target_size=size, batch_size=args.batch_size, class_mode="categorical", seed=args.seed)
    train = train_gen.flow_from_directory(train_dir, subset="training" if split else None, shuffle=True, **common)
    val = val_gen.flow_from_directory(val_dir, subset="validation" if split else None, shuffle=False, **common)

    base = squeezenet(keras, size + (3,))
    base.load_weights(args.weights, by_name=True)
    base.trainable = False
    inp = keras.Input(size + (3,))
    x = base(inp, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.BatchNormalization()(x)  # tlkit's default head: gap,bn,dense:256,dropout:0.5
    x = keras.layers.Dense(256, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    out = keras.layers.Dense(train.num_classes, activation="softmax")(x)
    model = keras.Model(inp, out)
    model.compile(keras.optimizers.Adam(args.lr), "categorical_crossentropy", ["accuracy"])

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.t0)

    seconds = []
    history = model.fit(train, epochs=args.epochs, validation_data=val, callbacks=[EpochTimer()], verbose=2)
    result = {"epoch_seconds": seconds, "val_accuracy": history.history["val_accuracy"],
              "accuracy": history.history["accuracy"], "train_images": train.samples, "val_images": val.samples}
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
