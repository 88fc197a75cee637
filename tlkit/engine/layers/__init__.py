"""tlkit layers (Keras names, arguments and defaults; channels-last)."""
from tlkit.engine.layer import Layer
from tlkit.engine.layers.activation import Activation
from tlkit.engine.layers.batch_normalization import BatchNormalization
from tlkit.engine.layers.conv2d import Conv2D
from tlkit.engine.layers.dense import Dense
from tlkit.engine.layers.dropout import Dropout
from tlkit.engine.layers.embedding import Embedding
from tlkit.engine.layers.global_pooling import GlobalAveragePooling2D, GlobalMaxPooling2D
from tlkit.engine.layers.input_layer import Input, InputLayer
from tlkit.engine.layers.masking import Masking
from tlkit.engine.layers.merging import Add, Concatenate, add, concatenate
from tlkit.engine.layers.pooling import AveragePooling2D, MaxPooling2D
from tlkit.engine.layers.pooling1d_masked import GlobalAveragePooling1D
from tlkit.engine.layers.recurrent_layers import GRU, LSTM, SimpleRNN
from tlkit.engine.layers.reshaping import Flatten, Reshape, ZeroPadding2D
from tlkit.engine.layers.rnn_wrappers import Bidirectional, RepeatVector, TimeDistributed

Convolution2D = Conv2D
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
GlobalAvgPool1D = GlobalAveragePooling1D

__all__ = [
    "Layer", "Activation", "BatchNormalization", "Conv2D", "Dense", "Dropout", "GlobalAveragePooling2D",
    "GlobalMaxPooling2D", "Input", "InputLayer", "Add", "Concatenate", "AveragePooling2D", "MaxPooling2D",
    "Flatten", "Reshape", "ZeroPadding2D", "Convolution2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D",
    "GlobalMaxPool2D", "add", "concatenate",
    # recurrent and sequence layers
    "LSTM", "GRU", "SimpleRNN", "Bidirectional", "TimeDistributed", "RepeatVector", "Embedding", "Masking",
    "GlobalAveragePooling1D", "GlobalAvgPool1D",
]
