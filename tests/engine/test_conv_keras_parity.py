"""The new convolution, pooling, resizing, normalization and activation layers against Keras 3 itself, with the same weights.

Keras runs in the peers' Python (TLKIT_PEERS_PYTHON, default /work/peers/bin/python); the test skips
without it. The numpy references in test_conv_layers.py / test_spatial_layers.py run everywhere.
"""
import os
import subprocess

import numpy as np
import pytest

from tlkit import layers as L

from layer_checks import close

PEERS_PYTHON = os.environ.get("TLKIT_PEERS_PYTHON", "/work/peers/bin/python")

KERAS_SIDE = r'''
import os, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import keras
data = np.load(sys.argv[1], allow_pickle=False)
out = {}
for key in sorted(k for k in data.files if k.startswith("x_")):
    name = key[2:]
    spec = eval(str(data["spec_" + name]), {"keras": keras})  # the test's own literal, e.g. keras.layers.Conv1D(...)
    x = data[key]
    spec.build(x.shape)
    weights = [data[f"w_{name}_{i}"] for i in range(int(data["n_" + name]))]
    if weights:
        spec.set_weights(weights)
    out[name] = np.asarray(spec(x))
np.savez(sys.argv[2], **out)
'''

CASES = {
    "conv1d_causal": ("Conv1D(5, 3, padding='causal', dilation_rate=2)", (2, 12, 3)),
    "conv1d_same_strided": ("Conv1D(4, 4, strides=2, padding='same')", (2, 11, 3)),
    "conv3d_same": ("Conv3D(4, (2, 3, 3), strides=(2, 2, 1), padding='same')", (2, 5, 6, 5, 3)),
    "conv2d_groups": ("Conv2D(6, 3, padding='same', groups=3)", (2, 6, 7, 6)),
    "conv2dt_same": ("Conv2DTranspose(4, 3, strides=2, padding='same')", (2, 5, 4, 3)),
    "conv2dt_output_padding": ("Conv2DTranspose(4, 4, strides=2, padding='same', output_padding=1)", (2, 4, 5, 3)),
    "conv2dt_valid": ("Conv2DTranspose(4, 2, strides=3)", (2, 4, 3, 3)),
    "conv1dt_same": ("Conv1DTranspose(4, 3, strides=2, padding='same')", (2, 6, 3)),
    "maxpool3d_same": ("MaxPooling3D(3, strides=2, padding='same')", (2, 5, 6, 7, 2)),
    "avgpool3d_same": ("AveragePooling3D(3, strides=2, padding='same')", (2, 5, 6, 7, 2)),
    "avgpool1d_same": ("AveragePooling1D(3, strides=2, padding='same')", (2, 9, 2)),
    "upsampling_bilinear": ("UpSampling2D((2, 3), interpolation='bilinear')", (2, 4, 5, 2)),
    "cropping2d": ("Cropping2D(((1, 0), (2, 1)))", (2, 5, 6, 2)),
    "zeropadding3d": ("ZeroPadding3D(((0, 1), (2, 0), (1, 1)))", (1, 2, 3, 4, 2)),
    "layer_norm": ("LayerNormalization(axis=[1, 2])", (2, 3, 4)),
    "group_norm": ("GroupNormalization(groups=2)", (2, 3, 4, 6)),
    "unit_norm": ("UnitNormalization()", (2, 5)),
    "prelu": ("PReLU(shared_axes=[1])", (2, 3, 4)),
    "leaky_relu_layer": ("LeakyReLU()", (2, 7)),
    "elu_layer": ("ELU(0.5)", (2, 7)),
    "softmax_layer": ("Softmax(axis=1)", (2, 4, 3)),
    **{f"activation_{name}": (f"Activation('{name}')", (3, 8)) for name in (
        "elu", "selu", "gelu", "silu", "swish", "leaky_relu", "relu6", "hard_sigmoid", "hard_swish", "mish",
        "log_softmax")},
}


def test_layers_equal_keras(tmp_path, rng):
    if not os.path.exists(PEERS_PYTHON):
        pytest.skip(f"no Keras: {PEERS_PYTHON} is absent")
    arrays, ours = {}, {}
    for name, (spec, shape) in CASES.items():
        layer = eval(spec, {**vars(L)})  # the same literal, with tlkit's layers
        x = (rng.standard_normal(shape) * 3).astype(np.float32)
        ours[name] = layer(x)
        weights = [rng.standard_normal(w.shape).astype(np.float32) for w in layer.weights]
        if weights:
            layer.set_weights(weights)
            ours[name] = layer(x)
        arrays.update({f"x_{name}": x, f"spec_{name}": np.array("keras.layers." + spec), f"n_{name}": len(weights)})
        arrays.update({f"w_{name}_{i}": w for i, w in enumerate(weights)})
    np.savez(tmp_path / "in.npz", **arrays)
    script = tmp_path / "keras_side.py"
    script.write_text(KERAS_SIDE)
    done = subprocess.run([PEERS_PYTHON, str(script), str(tmp_path / "in.npz"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    theirs = np.load(tmp_path / "out.npz")
    for name in CASES:
        close(ours[name], theirs[name], what=name)
