"""ImageNet networks with Keras's names and arguments, and their weight files.

    from tlkit.zoo import VGG16, SqueezeNet
    base = VGG16(include_top=False, weights="imagenet", input_shape=(224, 224, 3))
    from tlkit.zoo.vgg16 import preprocess_input, decode_predictions
"""
from tlkit.zoo import efficientnet_lite0, mobilenet_v2, resnet50, squeezenet, vgg16
from tlkit.zoo.efficientnet_lite0 import EfficientNetLite0
from tlkit.zoo.mobilenet_v2 import MobileNetV2
from tlkit.zoo.resnet50 import ResNet50
from tlkit.zoo.squeezenet import SqueezeNet
from tlkit.zoo.vgg16 import VGG16

__all__ = ["VGG16", "SqueezeNet", "EfficientNetLite0", "MobileNetV2", "ResNet50", "vgg16", "squeezenet",
           "efficientnet_lite0", "mobilenet_v2", "resnet50"]
