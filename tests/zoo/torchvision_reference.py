"""torchvision's MobileNetV2 (width 1.0) and ResNet50 (v1.5) written out from its published architecture,
independently of tlkit: the state dict's key names and shapes, random weights in that layout, a float64
numpy forward pass (CI has no torch), and the same networks as torch modules (an optional oracle).

Both run NCHW, as torch does; every convolution pads (k - 1) // 2 pixels on every side, as torchvision's.
"""
import collections

import numpy as np

# torchvision.models.mobilenetv2: (expand ratio t, channels c, repeats n, first stride s).
MOBILENET_V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                        (6, 320, 1, 1))
# torchvision.models.resnet50: (planes, blocks, first stride) of layer1..layer4.
RESNET50_LAYERS = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))


class Conv:
    """One convolution + BatchNorm (+ activation) of the network: its keys and geometry."""

    def __init__(self, conv, bn, cin, cout, k, stride=1, groups=1, act=None):
        self.conv, self.bn, self.cin, self.cout, self.k, self.stride, self.groups, self.act = (
            conv, bn, cin, cout, k, stride, groups, act)


def mobilenet_v2_blocks():
    """[(convs of the block, residual?)]: the stem, the 17 inverted residual blocks, the last 1x1."""
    blocks, cin, index = [([Conv("features.0.0", "features.0.1", 3, 32, 3, 2, act="relu6")], False)], 32, 1
    for t, c, n, s in MOBILENET_V2_SETTING:
        for i in range(n):
            stride, hidden, p = s if i == 0 else 1, cin * t, f"features.{index}.conv"
            convs = [Conv(f"{p}.0.0", f"{p}.0.1", cin, hidden, 1, act="relu6")] if t != 1 else []
            j = len(convs)
            convs.append(Conv(f"{p}.{j}.0", f"{p}.{j}.1", hidden, hidden, 3, stride, hidden, "relu6"))
            convs.append(Conv(f"{p}.{j + 1}", f"{p}.{j + 2}", hidden, c, 1))
            blocks.append((convs, stride == 1 and cin == c))
            cin, index = c, index + 1
    blocks.append(([Conv("features.18.0", "features.18.1", cin, 1280, 1, act="relu6")], False))
    return blocks


def resnet50_blocks():
    """[(convs of the main path, downsample convs or None)], after the stem (conv1, bn1, maxpool)."""
    blocks, cin = [], 64
    for layer, (planes, count, stride) in enumerate(RESNET50_LAYERS, start=1):
        for b in range(count):
            p, s = f"layer{layer}.{b}", stride if b == 0 else 1
            main = [Conv(f"{p}.conv1", f"{p}.bn1", cin, planes, 1, act="relu"),
                    Conv(f"{p}.conv2", f"{p}.bn2", planes, planes, 3, s, act="relu"),  # v1.5: the stride here
                    Conv(f"{p}.conv3", f"{p}.bn3", planes, 4 * planes, 1)]
            down = [Conv(f"{p}.downsample.0", f"{p}.downsample.1", cin, 4 * planes, 1, s)] if b == 0 else None
            blocks.append((main, down))
            cin = 4 * planes
    return blocks


RESNET50_STEM = Conv("conv1", "bn1", 3, 64, 7, 2, act="relu")


def _all_convs(arch):
    if arch == "mobilenet_v2":
        return [c for convs, _ in mobilenet_v2_blocks() for c in convs]
    return [RESNET50_STEM] + [c for main, down in resnet50_blocks() for c in main + (down or [])]


def state_dict_layout(arch, classes=1000):
    """[(key, shape)] in torchvision's state dict order (num_batches_tracked included)."""
    layout = []
    for c in _all_convs(arch):
        layout.append((f"{c.conv}.weight", (c.cout, c.cin // c.groups, c.k, c.k)))
        layout += [(f"{c.bn}.{s}", (c.cout,)) for s in ("weight", "bias", "running_mean", "running_var")]
        layout.append((f"{c.bn}.num_batches_tracked", ()))
    top, features = ("classifier.1", 1280) if arch == "mobilenet_v2" else ("fc", 2048)
    if classes:
        layout += [(f"{top}.weight", (classes, features)), (f"{top}.bias", (classes,))]
    return layout


def random_state_dict(arch, rng, classes=1000):
    """Random weights in torchvision's layout: He-scaled kernels, BatchNorm statistics away from 1 and 0
    (so a wrong epsilon or a mixed-up statistic shows), a counter for num_batches_tracked."""
    state = collections.OrderedDict()
    for key, shape in state_dict_layout(arch, classes):
        if key.endswith("num_batches_tracked"):
            state[key] = np.array(10, np.int64)
            continue
        if len(shape) == 4:
            value = rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[1:]))
        elif key.endswith("running_var"):
            value = rng.uniform(0.5, 2.0, shape)
        elif key.endswith(".weight") and len(shape) == 1:
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) == 2:
            value = rng.standard_normal(shape) * 0.05
        else:
            value = rng.normal(0, 0.1, shape)
        state[key] = value.astype(np.float32)
    return state


def conv2d(x, weight, stride, groups):
    """NCHW convolution with (k - 1) // 2 zeros on every side, as torch.nn.Conv2d(padding=(k - 1) // 2)."""
    n, cin, h, w = x.shape
    cout, per_group, k, _ = weight.shape
    if groups not in (1, cin) or (groups == cin and cout != cin):
        raise NotImplementedError("plain and depthwise (multiplier 1) convolutions only")
    pad = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    weight = weight.astype(np.float64)
    out = np.zeros((n, cout, ho, wo))
    for i in range(k):
        for j in range(k):
            patch = xp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            if groups == 1:
                out += np.matmul(weight[:, :, i, j], patch.reshape(n, cin, ho * wo)).reshape(out.shape)
            else:
                out += patch * weight[:, 0, i, j][None, :, None, None]
    return out


def _conv_bn(x, c, state):
    z = conv2d(x, state[f"{c.conv}.weight"], c.stride, c.groups)
    gamma, beta, mean, var = (state[f"{c.bn}.{s}"].astype(np.float64)[None, :, None, None]
                              for s in ("weight", "bias", "running_mean", "running_var"))
    z = (z - mean) / np.sqrt(var + 1e-5) * gamma + beta
    if c.act == "relu6":
        return np.clip(z, 0, 6)
    return np.maximum(z, 0) if c.act == "relu" else z


def numpy_forward(arch, state, x, include_top=True):
    """torchvision's forward pass in float64 on NCHW ``x``: the logits, or the last feature map."""
    x = np.asarray(x, np.float64)
    if arch == "mobilenet_v2":
        for convs, residual in mobilenet_v2_blocks():
            y = x
            for c in convs:
                y = _conv_bn(y, c, state)
            x = x + y if residual else y
        top = "classifier.1"
    else:
        x = _conv_bn(x, RESNET50_STEM, state)
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)  # MaxPool2d(3, 2, padding=1)
        ho, wo = (x.shape[2] - 1) // 2 + 1, (x.shape[3] - 1) // 2 + 1
        x = np.max([xp[:, :, i:i + 2 * ho - 1:2, j:j + 2 * wo - 1:2] for i in range(3) for j in range(3)], axis=0)
        for main, down in resnet50_blocks():
            y = x
            for c in main:
                y = _conv_bn(y, c, state)
            x = np.maximum(y + (_conv_bn(x, down[0], state) if down else x), 0)
        top = "fc"
    if not include_top:
        return x
    pooled = x.mean(axis=(2, 3))
    return pooled @ state[f"{top}.weight"].T.astype(np.float64) + state[f"{top}.bias"]


def torch_module(arch, classes=1000):
    """The network as torch modules named as torchvision's (nn.Sequential indices included), eval mode."""
    from torch import nn

    def conv_bn_act(cin, cout, k, stride=1, groups=1, act=nn.ReLU6):
        return nn.Sequential(nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(cout), act(inplace=True))

    class InvertedResidual(nn.Module):
        def __init__(self, cin, cout, stride, t):
            super().__init__()
            hidden = cin * t
            layers = [conv_bn_act(cin, hidden, 1)] if t != 1 else []
            layers += [conv_bn_act(hidden, hidden, 3, stride, hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                       nn.BatchNorm2d(cout)]
            self.conv, self.residual = nn.Sequential(*layers), stride == 1 and cin == cout

        def forward(self, x):
            return x + self.conv(x) if self.residual else self.conv(x)

    class MobileNetV2(nn.Module):
        def __init__(self):
            super().__init__()
            features, cin = [conv_bn_act(3, 32, 3, 2)], 32
            for t, c, n, s in MOBILENET_V2_SETTING:
                for i in range(n):
                    features.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                    cin = c
            features.append(conv_bn_act(cin, 1280, 1))
            self.features = nn.Sequential(*features)
            self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

        def forward(self, x):
            return self.classifier(self.features(x).mean((2, 3)))

    class Bottleneck(nn.Module):
        def __init__(self, cin, planes, stride):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
            self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes)
            self.conv3, self.bn3 = nn.Conv2d(planes, 4 * planes, 1, bias=False), nn.BatchNorm2d(4 * planes)
            self.relu = nn.ReLU(inplace=True)
            self.downsample = None
            if stride != 1 or cin != 4 * planes:
                self.downsample = nn.Sequential(nn.Conv2d(cin, 4 * planes, 1, stride, bias=False),
                                                nn.BatchNorm2d(4 * planes))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.relu(self.bn2(self.conv2(out)))
            out = self.bn3(self.conv3(out))
            return self.relu(out + (self.downsample(x) if self.downsample is not None else x))

    class ResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
            self.relu, self.maxpool = nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)
            cin = 64
            for layer, (planes, count, stride) in enumerate(RESNET50_LAYERS, start=1):
                blocks = []
                for b in range(count):
                    blocks.append(Bottleneck(cin, planes, stride if b == 0 else 1))
                    cin = 4 * planes
                setattr(self, f"layer{layer}", nn.Sequential(*blocks))
            self.fc = nn.Linear(2048, classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(x.mean((2, 3)))

    return (MobileNetV2() if arch == "mobilenet_v2" else ResNet50()).eval()
