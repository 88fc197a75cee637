"""Input preprocessing of the ImageNet networks: 'caffe' (Keras VGG16/SqueezeNet), 'torch' and 'lite'
(EfficientNet-Lite)."""
import numpy as np

CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
TORCH_MEAN_RGB = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_STD_RGB = np.array([0.229, 0.224, 0.225], np.float32)
LITE_MEAN, LITE_STD = np.float32(127.0), np.float32(128.0)  # Google's efficientnet-lite builder
MODES = ("caffe", "torch", "lite", "tf")


def preprocess_input(x, mode="caffe", inplace=False):
    """RGB images in [0, 255] (any batch shape, channels last) -> network input.

    'caffe': RGB->BGR, minus the ImageNet mean per channel, no scaling (Keras's VGG16).
    'torch': /255, minus mean, divided by std, RGB (torchvision's models).
    'lite': (x - 127) / 128, RGB (EfficientNet-Lite).
    'tf': x / 127.5 - 1, RGB (Keras's MobileNetV2).
    The caller's array is left alone unless ``inplace=True`` (and it is float32).
    """
    if mode not in MODES:
        raise ValueError(f"Unknown preprocessing mode {mode!r}; use one of {MODES}.")
    x = np.asarray(x)
    if x.shape[-1] != 3:
        raise ValueError(f"preprocess_input expects RGB images with 3 channels last, got shape {x.shape}.")
    if inplace and x.dtype == np.float32:
        out = x
    else:
        out = x.astype(np.float32, copy=True)
    if mode == "caffe":
        out[...] = out[..., ::-1]
        out -= CAFFE_MEAN_BGR
    elif mode == "lite":
        out -= LITE_MEAN
        out /= LITE_STD
    elif mode == "tf":
        out /= np.float32(127.5)
        out -= np.float32(1)
    else:
        out /= 255.0
        out -= TORCH_MEAN_RGB
        out /= TORCH_STD_RGB
    return out
