"""tlkit layers (Keras names, arguments and defaults; channels-last)."""
from tlkit.engine.layer import Layer
from tlkit.engine.layers.activation import Activation
from tlkit.engine.layers.batch_normalization import BatchNormalization
from tlkit.engine.layers.conv2d import Conv2D
from tlkit.engine.layers.dense import Dense
from tlkit.engine.layers.depthwise_conv2d import DepthwiseConv2D, SeparableConv2D
from tlkit.engine.layers.dropout import Dropout
from tlkit.engine.layers.global_pooling import GlobalAveragePooling2D, GlobalMaxPooling2D
from tlkit.engine.layers.input_layer import Input, InputLayer
from tlkit.engine.layers.merging import Add, Concatenate
from tlkit.engine.layers.pooling import AveragePooling2D, MaxPooling2D
from tlkit.engine.layers.relu import ReLU
from tlkit.engine.layers.reshaping import Flatten, Reshape, ZeroPadding2D

Convolution2D = Conv2D
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
SeparableConvolution2D = SeparableConv2D

__all__ = [
    "Layer", "Activation", "BatchNormalization", "Conv2D", "Dense", "Dropout", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "Input", "InputLayer", "Add", "Concatenate", "AveragePooling2D", "MaxPooling2D",
    "Flatten", "Reshape", "ZeroPadding2D", "Convolution2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
    "GlobalMaxPool2D", "DepthwiseConv2D", "SeparableConv2D", "SeparableConvolution2D", "ReLU",
]
