"""Small inference steps run on the calling thread alone (tlkit/engine/small_steps.py): which steps
(their work from the output shape and the 4-D kernels), that the thread count is 1 inside such a
step and restored after (an error too), decided again when the input shape changes, and that the
outputs equal the layers called one by one, the rule switched off and a float64 numpy reference,
with the recycled buffers poisoned between calls. Calls that record on a tape keep the normal route."""
import numba
import numpy as np
import pytest

import tlkit
from tests.engine.test_inference_buffers import numpy_conv, plain_run
from tlkit import layers as L
from tlkit.engine import small_steps
from tlkit.engine.tape import GradientTape
from tlkit.utils import threads, worker_pool

CLOSE = dict(rtol=1e-4, atol=1e-4)  # float32 routes against float64; a wrong buffer is off by O(1)


class Probe(L.Layer):
    """Identity that notes tlkit's thread count during each of its calls."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def call(self, x):
        self.seen.append(threads.num_threads())
        if getattr(self, "fail", False):
            raise ValueError("probe failed on purpose")
        return x * 1.0

    def compute_output_shape(self, input_shape):
        return input_shape


@pytest.fixture
def two_threads():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads to tell one thread from all")


def test_work_counts_the_kernels_multiply_adds_per_output_pixel():
    conv = L.Conv2D(32, 3, strides=2)
    conv.build((None, 20, 20, 8))
    assert small_steps.step_work(conv, (2, 9, 9, 32)) == (2 * 2 * 81 * 9 * 8 * 32, 2 * 81 * 32)
    depthwise = L.DepthwiseConv2D(5, depth_multiplier=2)
    depthwise.build((None, 20, 20, 8))
    assert small_steps.step_work(depthwise, (1, 16, 16, 16)) == (2 * 256 * 25 * 16, 256 * 16)
    separable = L.SeparableConv2D(12, 3)
    separable.build((None, 20, 20, 8))
    assert small_steps.step_work(separable, (1, 18, 18, 12))[0] == 2 * 324 * (9 * 8 + 8 * 12)
    pool = L.MaxPooling2D()
    pool.build((None, 20, 20, 8))
    assert small_steps.step_work(pool, (3, 10, 10, 8)) == (0, 2400)


def test_only_small_image_steps_run_alone(monkeypatch):
    x = tlkit.Input((None, None, 16))
    conv = L.Conv2D(16, 3, padding="same")
    y = L.GlobalAveragePooling2D()(conv(x))
    model = tlkit.Model(x, y)
    conv_node, gap_node = model._graph.nodes
    monkeypatch.setattr(small_steps, "SMALL_STEP_FLOPS", 2 * 16 * 16 * 9 * 16 * 16 + 1)
    monkeypatch.setattr(small_steps, "WINOGRAD_ALONE_TILES", 0)  # the FLOPs bar on its own (see below)
    cache = {}
    assert small_steps.runs_alone(cache, conv_node, ((1, 16, 16, 16),))
    assert not small_steps.runs_alone(cache, conv_node, ((1, 17, 16, 16),))  # one pixel row over the bar
    assert not small_steps.runs_alone(cache, gap_node, ((1, 4, 4, 16),))  # a 2-D output keeps its own rules
    assert not small_steps.runs_alone(cache, conv_node, ((1, 16, 16),))  # no image: the layer's call raises
    monkeypatch.setattr(small_steps, "ENABLED", False)
    assert not small_steps.runs_alone({}, conv_node, ((1, 16, 16, 16),))


def probe_model():
    x = tlkit.Input((None, None, 4))
    probe = Probe(name="probe")
    y = L.Conv2D(8, 3, padding="same", activation="relu")(probe(x))
    return tlkit.Model(x, L.GlobalAveragePooling2D()(y)), probe


def test_a_small_step_runs_on_one_thread_and_the_count_comes_back(rng, monkeypatch, two_threads):
    model, probe = probe_model()
    before = threads.num_threads()
    model.predict_on_batch(rng.standard_normal((1, 8, 8, 4)).astype(np.float32))
    assert probe.seen == [1] and threads.num_threads() == before
    # A larger input of the same graph is decided again: over the bar, every thread.
    monkeypatch.setattr(small_steps, "SMALL_STEP_ELEMENTS", 1000)
    model.predict_on_batch(rng.standard_normal((1, 32, 32, 4)).astype(np.float32))
    model.predict_on_batch(rng.standard_normal((1, 8, 8, 4)).astype(np.float32))
    assert probe.seen == [1, before, 1] and threads.num_threads() == before
    probe.fail = True
    with pytest.raises(ValueError, match="on purpose"):
        model.predict_on_batch(rng.standard_normal((1, 8, 8, 4)).astype(np.float32))
    assert threads.num_threads() == before


def test_recorded_calls_keep_the_normal_route(rng, monkeypatch, two_threads):
    model, probe = probe_model()
    asked = []
    real = small_steps.runs_alone
    monkeypatch.setattr(small_steps, "runs_alone", lambda cache, node, shapes: asked.append(node.layer) or
                        real(cache, node, shapes))
    x = rng.standard_normal((1, 8, 8, 4)).astype(np.float32)
    with GradientTape():
        model(x, training=True)
    conv = model.layers[2]
    assert conv not in asked  # the trainable conv recorded: its own call, every thread
    assert probe in asked  # the weightless probe's input needs no gradient: plain inference


def mobile_model():
    """conv+BN+ReLU6, depthwise, a residual Add, padding and pooling, at small sizes."""
    x = tlkit.Input((16, 16, 3))
    y = L.Conv2D(16, 3, padding="same", use_bias=False)(x)
    y = L.ReLU(6.0)(L.BatchNormalization()(y))
    z = L.DepthwiseConv2D(3, padding="same", use_bias=False)(y)
    z = L.BatchNormalization()(z)
    z = L.Conv2D(16, 1, use_bias=False)(L.ReLU(6.0)(z))
    y = L.Add()([y, L.BatchNormalization()(z)])
    y = L.MaxPooling2D()(L.ZeroPadding2D(((0, 1), (0, 1)))(y))
    model = tlkit.Model(x, L.Conv2D(8, 3)(y))
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                               rng.standard_normal(beta.shape).astype(np.float32) * 0.1,
                               rng.standard_normal(mean.shape).astype(np.float32) * 0.1,
                               rng.uniform(0.5, 1.5, var.shape).astype(np.float32)])
    model.trainable = False
    return model


def numpy_mobile(model, x):
    """mobile_model in float64 numpy, layer by layer."""
    conv1, bn1, relu1, dw, bn2, relu2, conv2, bn3, _, _, _, conv3 = [
        layer for layer in model.layers if not isinstance(layer, L.InputLayer)]

    def bn(layer, y):
        gamma, beta, mean, var = (w.astype(np.float64) for w in layer.get_weights())
        return (y - mean) / np.sqrt(var + layer.epsilon) * gamma + beta

    y = np.clip(bn(bn1, numpy_conv(x, conv1.get_weights()[0], 0, pad=1)), 0, 6)
    k = dw.get_weights()[0].astype(np.float64)
    yp = np.pad(y, ((0, 0), (1, 1), (1, 1), (0, 0)))
    z = sum(yp[:, i:i + 16, j:j + 16] * k[i, j, :, 0] for i in range(3) for j in range(3))
    z = np.clip(bn(bn2, z), 0, 6)
    y = y + bn(bn3, numpy_conv(z, conv2.get_weights()[0], 0))
    y = np.pad(y, ((0, 0), (0, 1), (0, 1), (0, 0)))
    y = y[:, :16, :16].reshape(y.shape[0], 8, 2, 8, 2, 16).max(axis=(2, 4))  # a 2x2/2 valid pool of 17x17
    return numpy_conv(y, *conv3.get_weights())


@pytest.mark.parametrize("batch", [1, 3])
def test_outputs_match_the_layers_one_by_one_the_rule_off_and_numpy(rng, monkeypatch, batch):
    model = mobile_model()
    x = rng.standard_normal((batch, 16, 16, 3)).astype(np.float32)
    expected = numpy_mobile(model, x.astype(np.float64))
    np.testing.assert_allclose(plain_run(model._graph, [x])[0], expected, **CLOSE)
    monkeypatch.setattr(small_steps, "ENABLED", False)
    off = model.predict_on_batch(x).copy()
    monkeypatch.setattr(small_steps, "ENABLED", True)
    for bar in (0, 10 ** 12):  # no step alone, every image step alone
        monkeypatch.setattr(small_steps, "SMALL_STEP_FLOPS", bar)
        monkeypatch.setattr(small_steps, "SMALL_STEP_ELEMENTS", bar)
        model._graph.plan.alone.clear()
        for _ in range(2):
            for buf in model._graph._free:  # last call's recycled buffers: poisoned, must be overwritten
                buf.fill(np.nan)
            got = model.predict_on_batch(x)
            np.testing.assert_allclose(got, off, **CLOSE)
            np.testing.assert_allclose(got, expected, **CLOSE)


def test_the_per_shape_caches_stay_bounded(rng, monkeypatch):
    monkeypatch.setattr(small_steps, "MAX_CACHED_SHAPES", 3)
    model, probe = probe_model()
    for size in range(4, 12):  # a new image size each call
        x = rng.standard_normal((1, size, size, 4)).astype(np.float32)
        np.testing.assert_allclose(model.predict_on_batch(x), plain_run(model._graph, [x])[0], **CLOSE)
    plan = model._graph.plan
    assert 0 < len(plan.alone) <= 3 and 0 < len(plan.out_shapes) <= 3


def test_few_tile_winograd_convs_run_alone_above_the_flops_bar():
    """A 3x3 conv that Winograd would cut into per-thread tile rows runs alone under
    WINOGRAD_ALONE_TILES tiles, whatever its FLOPs; more tiles, another route or the rule at 0 do not."""
    x = tlkit.Input((None, None, 32))
    model = tlkit.Model(x, L.Conv2D(128, 3, padding="same")(x))
    (node,) = model._graph.nodes
    shape = (1, 27, 27, 32)  # 49 tiles, 54 MFLOPs: over SMALL_STEP_FLOPS
    assert small_steps.step_work(node.layer, shape[:3] + (128,))[0] > small_steps.SMALL_STEP_FLOPS
    assert small_steps.runs_alone({}, node, (shape,))
    assert not small_steps.runs_alone({}, node, ((8, 27, 27, 32),))  # 392 tiles
    assert not small_steps.runs_alone({}, node, ((1, 64, 64, 32),))  # 256 tiles
    strided = tlkit.Model(x, L.Conv2D(128, 3, strides=2, padding="same")(x))
    assert not small_steps.runs_alone({}, strided._graph.nodes[0], ((1, 54, 54, 32),))  # not Winograd
    wide = tlkit.Input((None, None, 512))
    deep = tlkit.Model(wide, L.Conv2D(512, 3, padding="same")(wide))  # wide tile rows: shared chunks instead
    assert not small_steps.runs_alone({}, deep._graph.nodes[0], ((1, 14, 14, 512),))
    assert small_steps.WINOGRAD_ALONE_TILES > 49
    x64 = tlkit.Input((None, None, 64))
    big = tlkit.Model(x64, L.Conv2D(128, 3, padding="same")(x64))  # tile rows, 49 tiles, but 108 MFLOPs
    assert small_steps.few_winograd_tile_rows(big._graph.nodes[0].layer, (1, 27, 27, 64), (1, 27, 27, 128))
    assert not small_steps.runs_alone({}, big._graph.nodes[0], ((1, 27, 27, 64),))


@pytest.mark.parametrize("tiles", [0, 256])
def test_a_few_tile_winograd_conv_alone_hands_nothing_off_and_computes_the_same(rng, monkeypatch, two_threads,
                                                                               tiles):
    monkeypatch.setattr(small_steps, "WINOGRAD_ALONE_TILES", tiles)
    monkeypatch.setattr(worker_pool, "SESSIONS", False)  # the rule with the worker asleep (a session splits)
    x = tlkit.Input((27, 27, 32))
    conv = L.Conv2D(128, 3, padding="same", activation="relu")
    model = tlkit.Model(x, conv(x))
    model.trainable = False
    handed_off, real = [], threads.run_chunks

    def counted(bounds, work, parts, pin=False):
        handed_off.append(parts)
        return real(bounds, work, parts, pin)

    monkeypatch.setattr(threads, "run_chunks", counted)
    xs = rng.standard_normal((1, 27, 27, 32)).astype(np.float32)
    kernel, bias = conv.get_weights()
    expected = np.maximum(numpy_conv(xs.astype(np.float64), kernel, bias, pad=1), 0)
    for _ in range(2):
        np.testing.assert_allclose(model.predict_on_batch(xs), expected, **CLOSE)
    if tiles:
        assert handed_off == []  # alone: every kernel on this thread
    else:
        assert handed_off and max(handed_off) > 1  # the rule off: Winograd's tile rows over the threads
