"""The benchmark models, built the same way in tlkit, torch, Keras 3 and ONNX Runtime, with the same weights.

tlkit writes its (random) conv weights and one reference input/output to an .npz (``dump``); each
peer process builds its model from that file (``torch_model``, ``keras_model``, ``onnx_session``)
and compares its output on the reference input with tlkit's (``agreement``), so every figure comes
with a check that all frameworks computed the same network.

Models: "vgg16" (VGG16 convolutional base, Keras's layer names) and "squeezenet" (SqueezeNet v1.1
base, the keras-squeezenet layer names; 'valid' max pools, which match torchvision's ceil mode at
224x224). Layouts: weights as Keras stores them, (kh, kw, in, out); torch gets (out, in, kh, kw).
Peers import only what they need: this file never imports tlkit at module level.
"""
import os

import numpy as np

VGG_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))
SQUEEZE_FIRES = ((2, 16, 64), (3, 16, 64), "pool3", (4, 32, 128), (5, 32, 128), "pool5",
                 (6, 48, 192), (7, 48, 192), (8, 64, 256), (9, 64, 256))


# ---------------------------------------------------------------------------------------------
# tlkit side

def tlkit_model(name, size=224):
    from tlkit.zoo import SqueezeNet, VGG16

    build = {"vgg16": VGG16, "squeezenet": SqueezeNet}[name]
    kwargs = {"include_top": False} if name == "vgg16" else {}
    return build(weights=None, input_shape=(size, size, 3), **kwargs)


def conv_weights(model):
    """[(layer name, kernel, bias)] of every Conv2D, in model order (a fire module: squeeze, 1x1, 3x3)."""
    out = []
    for layer in model.layers:
        if type(layer).__name__ == "Conv2D":
            kernel, bias = layer.get_weights()
            out.append((layer.name, kernel, bias))
    return out


def dump(model, path, batch=2, size=224):
    """Write the model's conv weights, a reference input and tlkit's output on it to ``path``."""
    x = np.random.default_rng(1).standard_normal((batch, size, size, 3)).astype(np.float32)
    y = np.asarray(model.predict_on_batch(x))
    arrays = {"x": x, "y": y, "names": np.array([n for n, _, _ in conv_weights(model)])}
    for i, (_, kernel, bias) in enumerate(conv_weights(model)):
        arrays[f"w{i}"], arrays[f"b{i}"] = kernel, bias
    np.savez(path, **arrays)


def load(path):
    """(names, [(kernel, bias)], x, y) from a ``dump`` file."""
    data = np.load(path)
    names = [str(n) for n in data["names"]]
    return names, [(data[f"w{i}"], data[f"b{i}"]) for i in range(len(names))], data["x"], data["y"]


def agreement(y, reference):
    """max |y - ref| / max |ref|: ~1e-6..1e-4 for the same network in float32, ~1 for a different one."""
    y = np.asarray(y, np.float32).reshape(reference.shape)
    return float(np.abs(y - reference).max() / max(np.abs(reference).max(), 1e-12))


# ---------------------------------------------------------------------------------------------
# torch

def torch_model(name, weights=None):
    """The model as a channels_last nn.Module in eval mode; ``weights`` from ``load`` (else random)."""
    import torch
    from torch import nn

    class Fire(nn.Module):
        def __init__(self, cin, squeeze, expand):
            super().__init__()
            self.squeeze = nn.Conv2d(cin, squeeze, 1)
            self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
            self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

        def forward(self, x):
            s = torch.relu(self.squeeze(x))
            return torch.cat([torch.relu(self.expand1x1(s)), torch.relu(self.expand3x3(s))], 1)

    layers = []
    if name == "vgg16":
        channels = 3
        for filters, convs in VGG_BLOCKS:
            for _ in range(convs):
                layers += [nn.Conv2d(channels, filters, 3, padding=1), nn.ReLU(inplace=True)]
                channels = filters
            layers.append(nn.MaxPool2d(2, 2))
    else:
        layers += [nn.Conv2d(3, 64, 3, stride=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2)]
        channels = 64
        for spec in SQUEEZE_FIRES:
            if isinstance(spec, str):
                layers.append(nn.MaxPool2d(3, 2))
            else:
                _, squeeze, expand = spec
                layers.append(Fire(channels, squeeze, expand))
                channels = 2 * expand
    model = nn.Sequential(*layers)
    if weights is not None:
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for conv, (kernel, bias) in zip(convs, weights, strict=True):
                conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
                conv.bias.copy_(torch.from_numpy(bias))
    return model.eval().to(memory_format=torch.channels_last)


def torch_input(x):
    """NHWC numpy -> NCHW channels_last tensor (the same memory order as tlkit's)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).contiguous(
        memory_format=torch.channels_last)


def torch_output(y):
    return y.detach().permute(0, 2, 3, 1).numpy()


# ---------------------------------------------------------------------------------------------
# Keras 3

def keras_model(name, names=None, weights=None, size=224):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    if name == "vgg16":
        model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(size, size, 3))
    else:
        model = _keras_squeezenet(keras, size)
    if weights is not None:
        for layer_name, (kernel, bias) in zip(names, weights, strict=True):
            model.get_layer(layer_name.replace("/", "_")).set_weights([kernel, bias])  # Keras 3 refuses '/'
    return model


def _keras_squeezenet(keras, size):
    layers = keras.layers
    inp = keras.Input((size, size, 3))
    x = layers.Conv2D(64, 3, strides=2, activation="relu", name="conv1")(inp)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for spec in SQUEEZE_FIRES:
        if isinstance(spec, str):
            x = layers.MaxPooling2D(3, strides=2, name=spec)(x)
            continue
        index, squeeze, expand = spec
        s = layers.Conv2D(squeeze, 1, activation="relu", name=f"fire{index}_squeeze1x1")(x)
        left = layers.Conv2D(expand, 1, activation="relu", name=f"fire{index}_expand1x1")(s)
        right = layers.Conv2D(expand, 3, padding="same", activation="relu", name=f"fire{index}_expand3x3")(s)
        x = layers.Concatenate(name=f"fire{index}_concat")([left, right])
    return keras.Model(inp, x, name="squeezenet")


# ---------------------------------------------------------------------------------------------
# ONNX Runtime (the model exported from the torch module)

def onnx_session(name, weights, batch, path, size=224, threads=None):
    """Export the torch model to ``path`` (NCHW input, fixed batch) and open it with every graph
    optimization and intra-op threads = cores."""
    import onnxruntime as ort
    import torch

    model = torch_model(name, weights).to(memory_format=torch.contiguous_format)
    with torch.inference_mode():
        torch.onnx.export(model, (torch.zeros(batch, 3, size, size),), path, dynamo=False,
                          opset_version=ONNX_OPSET, input_names=["x"], output_names=["y"])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count()
    options.inter_op_num_threads = 1
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


# The newest opset torch's exporter writes (torch 2.13: 23); ONNX Runtime 1.32 runs it.
ONNX_OPSET = 23


def conv_shapes(name, size=224):
    """[(conv layer name, multiply-adds x 2 per image)] of the model at size x size, in order."""
    out = []
    if name == "vgg16":
        s, cin = size, 3
        for block, (filters, convs) in enumerate(VGG_BLOCKS, start=1):
            for i in range(1, convs + 1):
                out.append((f"block{block}_conv{i}", 2 * s * s * 9 * cin * filters))
                cin = filters
            s //= 2
        return out
    pooled = lambda s: (s - 3) // 2 + 1  # noqa: E731 - 3x3 stride-2 'valid'
    s = (size - 3) // 2 + 1
    out.append(("conv1", 2 * s * s * 9 * 3 * 64))
    s, cin = pooled(s), 64
    for spec in SQUEEZE_FIRES:
        if isinstance(spec, str):
            s = pooled(s)
            continue
        index, squeeze, expand = spec
        out += [(f"fire{index}/squeeze1x1", 2 * s * s * cin * squeeze),
                (f"fire{index}/expand1x1", 2 * s * s * squeeze * expand),
                (f"fire{index}/expand3x3", 2 * s * s * 9 * squeeze * expand)]
        cin = 2 * expand
    return out
