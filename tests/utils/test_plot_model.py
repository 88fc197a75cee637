"""utils.plot_model: Keras's signature, a picture of the layer graph drawn with matplotlib."""
import numpy as np
import pytest
from PIL import Image

import tlkit
from tlkit import layers as L


def branching_model():
    inp = tlkit.Input((8, 8, 3), name="img")
    x = L.Conv2D(4, 3, padding="same", activation="relu")(inp)
    y = L.Conv2D(4, 3, padding="same")(x)
    merged = L.add([x, y])  # a residual connection skips a row
    flat = L.GlobalAveragePooling2D()(merged)
    return tlkit.Model(inp, [L.Dense(2, name="a")(flat), L.Dense(3, name="b")(flat)])


def picture(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


def test_pictures_follow_the_graph(tmp_path):
    tall = tmp_path / "graph.png"
    tlkit.utils.plot_model(branching_model(), tall, show_shapes=True, show_layer_activations=True,
                           show_trainable=True, show_dtype=True)
    short = tmp_path / "chain.png"
    tlkit.utils.plot_model(tlkit.Sequential([tlkit.Input((4,)), L.Dense(3), L.Dense(2)]), short)
    wide = tmp_path / "wide.png"
    tlkit.utils.plot_model(tlkit.Sequential([tlkit.Input((4,)), L.Dense(3), L.Dense(2)]), wide, rankdir="LR")
    graph, chain, lr = picture(tall), picture(short), picture(wide)
    assert graph.shape[0] > chain.shape[0]  # six rows of layers against two
    assert lr.shape[1] > lr.shape[0] and chain.shape[0] > chain.shape[1] * 0.6  # LR lays the chain sideways
    for pixels in (graph, chain, lr):
        assert (pixels < 128).mean() > 0.002  # boxes, text and arrows were drawn
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.png", "graph.png", "wide.png"]


def test_bad_arguments_say_what_to_do(tmp_path):
    model = tlkit.Sequential([tlkit.Input((4,)), L.Dense(3)])
    with pytest.raises(ValueError, match="'TB' or 'LR'"):
        tlkit.utils.plot_model(model, tmp_path / "m.png", rankdir="BT")
    with pytest.raises(ValueError, match=r"use a \.png"):
        tlkit.utils.plot_model(model, tmp_path / "m.dot")
    with pytest.raises(ValueError, match="no layers yet"):
        tlkit.utils.plot_model(tlkit.Sequential(), tmp_path / "m.png")
