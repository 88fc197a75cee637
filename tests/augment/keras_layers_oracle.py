"""Run by the tests with the peers' Python (Keras 3): Keras's preprocessing layers on the cases of an
.npz file, each with its random draw given explicitly, results written to another .npz.

    /work/peers/bin/python keras_layers_oracle.py cases.npz results.npz

A case: {"layer": class name, "config": {...}, "draw": {...} or null, "training": bool} on x<i>.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def transformation(layer, name, draw, x):
    """Keras's transformation dict for the draw the test chose (the layer's own helpers build it)."""
    n, h, w = x.shape[0], x.shape[1], x.shape[2]
    if name == "RandomRotation":
        angle = np.asarray(draw["angle"], np.float32)
        zeros, ones = np.zeros(n, np.float32), np.ones(n, np.float32)
        m = layer._compute_affine_matrix(0.5, 0.5, angle, zeros, zeros, ones, zeros, zeros, h, w)
        return {"rotation_matrix": m, "angle": angle, "image_height": h, "image_width": w, "batch_size": n}
    if name == "RandomZoom":
        return {"height_zoom": np.asarray(draw["height_zoom"], np.float32)[:, None],
                "width_zoom": np.asarray(draw["width_zoom"], np.float32)[:, None], "input_shape": x.shape}
    if name == "RandomTranslation":
        t = np.stack([np.asarray(draw["width"]) * w, np.asarray(draw["height"]) * h], 1).astype(np.float32)
        return {"translations": t, "input_shape": x.shape}
    if name == "RandomFlip":
        return {"flips": np.asarray(draw["flips"], bool).reshape(n, 1, 1, 1), "input_shape": x.shape}
    if name == "RandomContrast":
        return {"contrast_factor": np.asarray(draw["k"], np.float32).reshape(n, 1, 1, 1)}
    if name == "RandomBrightness":
        low, high = layer.value_range
        return {"rgb_delta": (np.asarray(draw["f"], np.float32) * (high - low)).reshape(n, 1, 1, 1)}
    if name == "RandomCrop":
        return (int(draw["top"]), int(draw["left"]))
    raise ValueError(name)


def main(src, dst):
    data = np.load(src, allow_pickle=False)
    cases = json.loads(str(data["cases"]))
    out = {}
    for i, case in enumerate(cases):
        x = data[f"x{i}"]
        layer = getattr(keras.layers, case["layer"])(**case["config"])
        if case["draw"] is None:
            y = layer(x, training=case["training"])
        else:
            y = layer.transform_images(x, transformation(layer, case["layer"], case["draw"], x), training=True)
        out[f"y{i}"] = keras.ops.convert_to_numpy(y)
    np.savez(dst, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
