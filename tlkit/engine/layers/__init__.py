"""tlkit layers (Keras names, arguments and defaults; channels-last)."""
from tlkit.engine.layer import Layer
from tlkit.engine.layers.activation import Activation
from tlkit.engine.layers.activation_layers import ELU, LeakyReLU, PReLU, Softmax
from tlkit.engine.layers.batch_normalization import BatchNormalization
from tlkit.engine.layers.conv2d import Conv2D
from tlkit.engine.layers.convolutional import Conv1D, Conv1DTranspose, Conv2DTranspose, Conv3D
from tlkit.engine.layers.dense import Dense
from tlkit.engine.layers.depthwise_conv2d import DepthwiseConv2D, SeparableConv2D
from tlkit.engine.layers.dropout import Dropout
from tlkit.engine.layers.elementwise_merging import (Average, Dot, Maximum, Minimum, Multiply, Subtract, average, dot,
                                                     maximum, minimum, multiply, subtract)
from tlkit.engine.layers.embedding import Embedding
from tlkit.engine.layers.global_pooling import (GlobalAveragePooling2D, GlobalAveragePooling3D, GlobalMaxPooling1D,
                                                GlobalMaxPooling2D, GlobalMaxPooling3D)
from tlkit.engine.layers.input_layer import Input, InputLayer
from tlkit.engine.layers.masking import Masking
from tlkit.engine.layers.merging import Add, Concatenate, add, concatenate
from tlkit.engine.layers.noise import (ActivityRegularization, GaussianDropout, GaussianNoise, SpatialDropout1D,
                                       SpatialDropout2D)
from tlkit.engine.layers.normalization import GroupNormalization, LayerNormalization, UnitNormalization
from tlkit.engine.layers.padding import Cropping1D, Cropping2D, ZeroPadding1D, ZeroPadding2D, ZeroPadding3D
from tlkit.engine.layers.permute import Permute
from tlkit.engine.layers.pooling import AveragePooling2D, MaxPooling2D
from tlkit.engine.layers.pooling1d_masked import GlobalAveragePooling1D
from tlkit.engine.layers.pooling_nd import AveragePooling1D, AveragePooling3D, MaxPooling1D, MaxPooling3D
from tlkit.engine.layers.relu import ReLU
from tlkit.engine.layers.recurrent_layers import GRU, LSTM, SimpleRNN
from tlkit.engine.layers.reshaping import Flatten, Reshape
from tlkit.engine.layers.rnn_wrappers import Bidirectional, RepeatVector, TimeDistributed
from tlkit.engine.layers.upsampling import UpSampling1D, UpSampling2D

Convolution2D = Conv2D
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
Convolution1D = Conv1D
SeparableConvolution2D = SeparableConv2D
Convolution3D = Conv3D
Convolution1DTranspose = Conv1DTranspose
Convolution2DTranspose = Conv2DTranspose
MaxPool1D = MaxPooling1D
MaxPool3D = MaxPooling3D
AvgPool1D = AveragePooling1D
AvgPool3D = AveragePooling3D
GlobalAvgPool1D = GlobalAveragePooling1D
GlobalAvgPool3D = GlobalAveragePooling3D
GlobalMaxPool1D = GlobalMaxPooling1D
GlobalMaxPool3D = GlobalMaxPooling3D

__all__ = [
    "Layer", "Activation", "BatchNormalization", "Conv2D", "Dense", "Dropout", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "Input", "InputLayer", "Add", "Concatenate", "AveragePooling2D", "MaxPooling2D",
    "Flatten", "Reshape", "ZeroPadding2D", "Convolution2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
    "GlobalMaxPool2D", "add", "concatenate",
    "DepthwiseConv2D", "SeparableConv2D", "SeparableConvolution2D", "ReLU",
    # recurrent and sequence layers
    "LSTM", "GRU", "SimpleRNN", "Bidirectional", "TimeDistributed", "RepeatVector", "Embedding", "Masking",
    # convolutions, poolings, padding and resizing beyond 2-D
    "Conv1D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Convolution1D", "Convolution3D",
    "Convolution1DTranspose", "Convolution2DTranspose", "MaxPooling1D", "MaxPooling3D", "AveragePooling1D",
    "AveragePooling3D", "MaxPool1D", "MaxPool3D", "AvgPool1D", "AvgPool3D", "GlobalAveragePooling1D",
    "GlobalAveragePooling3D", "GlobalMaxPooling1D", "GlobalMaxPooling3D", "GlobalAvgPool1D", "GlobalAvgPool3D",
    "GlobalMaxPool1D", "GlobalMaxPool3D", "UpSampling1D", "UpSampling2D", "ZeroPadding1D", "ZeroPadding3D",
    "Cropping1D", "Cropping2D",
    # normalization and activation layers
    "LayerNormalization", "GroupNormalization", "UnitNormalization", "LeakyReLU", "PReLU", "ELU", "Softmax",
    # reshaping, merging and regularization layers
    "Permute", "Multiply", "Subtract", "Average", "Maximum", "Minimum", "Dot", "SpatialDropout1D",
    "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "ActivityRegularization",
    # functional forms of the merging layers
    "multiply", "maximum", "minimum", "average", "subtract", "dot",
]
