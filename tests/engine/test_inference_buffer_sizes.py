"""The inference plan's recycled buffers serve any output that fits in them, so a chain of layers
holds about its largest input + output pair, not one buffer per distinct activation shape; a
concatenation built in a recycled (larger) buffer still takes its inputs in place. Checked against
the layers called one by one."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine.kernels import conv

from tests.engine.test_inference_buffers import plain_run


@pytest.fixture
def rng():
    return np.random.default_rng(5)


def shrinking_chain():
    """VGG-like: every conv's output is smaller than the one before, all shapes distinct."""
    inp = tlkit.Input((16, 16, 3))
    x = L.Conv2D(12, 3, padding="same", activation="relu")(inp)     # 16x16x12 = 3072 per image
    x = L.Conv2D(10, 3, padding="same", activation="relu")(x)       # 2560
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)  # 8x8x8 = 512
    x = L.Conv2D(6, 3, padding="same", activation="relu")(x)        # 384
    x = L.Conv2D(4, 3, padding="same", activation="relu")(x)        # 256
    return tlkit.Model(inp, L.Conv2D(2, 1)(x))


def test_a_chain_holds_its_largest_input_and_output_pair_not_every_shape(rng):
    model = shrinking_chain()
    graph = model._graph
    for batch in (3, 3, 2):  # the later calls recycle the earlier calls' buffers
        x = rng.standard_normal((batch, 16, 16, 3)).astype(np.float32)
        np.testing.assert_allclose(model.predict_on_batch(x), plain_run(graph, [x])[0], rtol=1e-4, atol=1e-4)
    held = sorted(len(b) for b in graph._free)
    # Pooled outputs per image: 3072, 2560, 512, 384, 256 (the last conv's output is returned, not
    # pooled). One buffer per shape would hold 6784 floats per image; two buffers suffice.
    assert len(held) == 2
    assert sum(held) == 3 * (3072 + 2560), held


def test_a_concatenation_in_a_recycled_larger_buffer_is_written_in_place(rng, monkeypatch):
    inp = tlkit.Input((8, 8, 3))
    big = L.Conv2D(32, 3, padding="same", activation="relu")(inp)   # 2048 per image, recycled later
    s = L.Conv2D(4, 1, activation="relu")(big)
    cat = L.Concatenate()([L.Conv2D(5, 1, activation="relu")(s), L.Conv2D(6, 3, padding="same")(s)])
    model = tlkit.Model(inp, L.Conv2D(3, 1)(cat))
    graph = model._graph
    assert len(graph.plan.slices) == 2
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    model.predict_on_batch(x)
    copies = []
    original = conv.conv2d_forward

    def spy(*args, **kwargs):  # a channel slice that the kernel cannot write in place is copied in
        out = kwargs.get("out")
        if out is not None and not out.flags.c_contiguous:
            copies.append(conv._channels_of(out)[0] is None)
        return original(*args, **kwargs)

    monkeypatch.setattr(conv, "conv2d_forward", spy)
    np.testing.assert_allclose(model.predict_on_batch(x), plain_run(graph, [x])[0], rtol=1e-4, atol=1e-4)
    assert copies == [False, False]  # both expand convs wrote straight into the concatenation


def test_a_channel_slice_of_a_flat_buffer_view_is_written_in_place(rng):
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    flat = np.full(2 * 6 * 6 * 10 + 7, 5.0, np.float32)  # longer than the view, as a recycled buffer is
    whole = flat[:2 * 6 * 6 * 10].reshape(2, 6, 6, 10)
    out = whole[..., 3:7]
    got = conv.conv2d_forward(x, w, padding="same", out=out)
    assert got.base is flat or np.shares_memory(got, flat)
    np.testing.assert_allclose(whole[..., 3:7], conv.conv2d_forward(x, w, padding="same"), rtol=1e-5, atol=1e-5)
    assert (whole[..., :3] == 5).all() and (whole[..., 7:] == 5).all() and (flat[-7:] == 5).all()
