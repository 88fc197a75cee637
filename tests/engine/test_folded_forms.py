"""A frozen conv's BatchNormalization fold (conv_epilogue.Fold): the routes' kept forms (gemm_blocks packings,
Winograd filters) stand for the folded kernel, which is let go; outputs against numpy float64 at batch sizes
that take different routes (the kernel folded again when a route needs it), and the layers' own weights
unchanged by forwards: get_weights, set_weights, and training after a forward see the true weights."""
import numpy as np

import tlkit
from tlkit import layers as L
from tlkit.engine.kernels import gemm_blocks


def conv_ref(x, w, b, strides, padding):
    """float64 NHWC correlation with TF 'same' padding."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    kh, kw, _, f = w.shape
    s = strides[0]
    if padding == "same":
        oh, ow = -(-x.shape[1] // s), -(-x.shape[2] // s)
        ph, pw = max((oh - 1) * s + kh - x.shape[1], 0), max((ow - 1) * s + kw - x.shape[2], 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    oh, ow = (x.shape[1] - kh) // s + 1, (x.shape[2] - kw) // s + 1
    y = np.zeros((x.shape[0], oh, ow, f))
    for i in range(kh):
        for j in range(kw):
            y += x[:, i:i + s * oh:s, j:j + s * ow:s] @ w[i, j]
    return y + (0 if b is None else b)


def block(rng, size=14, channels=32):
    """ResNet's bottleneck: 1x1 -> BN -> ReLU, 3x3 -> BN -> ReLU, 1x1 -> BN -> Add -> ReLU, and a 1x1/2
    shortcut conv -> BN beside a 3x3 one."""
    inp = tlkit.Input((size, size, channels))
    convs = [L.Conv2D(channels, 1), L.Conv2D(channels, 3, padding="same"), L.Conv2D(channels, 1),
             L.Conv2D(channels, 1, strides=2)]
    bns = [L.BatchNormalization() for _ in convs]
    h = L.ReLU()(bns[0](convs[0](inp)))
    h = L.ReLU()(bns[1](convs[1](h)))
    out = L.ReLU()(L.Add()([bns[2](convs[2](h)), inp]))
    model = tlkit.Model(inp, [out, bns[3](convs[3](out))])
    for layer in bns:
        n = layer.gamma.shape[0]
        layer.set_weights([rng.uniform(0.5, 2, n), rng.standard_normal(n), rng.standard_normal(n) * 0.1,
                           rng.uniform(0.5, 2, n)])
    return model, convs, bns


def reference(x, convs, bns):
    def conv_bn(i, v):
        g, beta, mean, var = bns[i].get_weights()
        kernel, bias = convs[i].get_weights()
        y = conv_ref(v, kernel, bias, convs[i].strides, convs[i].padding)
        return (y - mean) / np.sqrt(var + bns[i].epsilon) * g + beta

    h = np.maximum(conv_bn(0, x), 0)
    h = np.maximum(conv_bn(1, h), 0)
    out = np.maximum(conv_bn(2, h) + x, 0)
    return out, conv_bn(3, out)


def check(model, x, convs, bns):
    got = model.predict_on_batch(x)
    for g, w in zip(got, reference(x, convs, bns)):
        np.testing.assert_allclose(np.asarray(g), w, rtol=2e-4, atol=2e-4 * max(1.0, float(np.abs(w).max())))


def test_forms_stand_for_the_folded_kernel_at_every_batch_and_weights_stay_true():
    rng = np.random.default_rng(3)
    model, convs, bns = block(rng)
    model.trainable = False
    own = [c.get_weights() for c in convs + bns]
    x1 = rng.standard_normal((1, 14, 14, 32)).astype(np.float32)
    x4 = rng.standard_normal((4, 14, 14, 32)).astype(np.float32)  # 64 Winograd tiles: the 3x3 conv's Winograd
    for x in (x1, x1, x4, x4, x1):
        check(model, x, convs, bns)
    for layer, weights in zip(convs + bns, own):  # forwards never write the layers' weights
        for got, want in zip(layer.get_weights(), weights):
            np.testing.assert_array_equal(got, want)
    if gemm_blocks.worth_it(32, 32):  # the 1x1 convs' forward reads their packing alone
        for conv in (convs[0], convs[2]):
            fold = conv._folded_cache
            assert fold.kernel is None and "packed" in fold.forms
    # set_weights and assign are seen at the next call, the kept forms dropped with their fold
    convs[1].set_weights([w * 1.5 for w in convs[1].get_weights()])
    convs[2].kernel.assign(rng.standard_normal(convs[2].kernel.shape).astype(np.float32) * 0.2)
    bns[0].set_weights([w * 0.9 if i == 0 else w for i, w in enumerate(bns[0].get_weights())])
    for x in (x1, x4):
        check(model, x, convs, bns)


def test_training_after_frozen_forwards_sees_the_true_weights():
    """Forwards while frozen, then a training step: the gradient step starts from the layers' own weights,
    and the next frozen forward folds the trained weights."""
    rng = np.random.default_rng(4)
    model, convs, bns = block(rng, size=8, channels=16)
    model.trainable = False
    x = rng.standard_normal((2, 8, 8, 16)).astype(np.float32)
    for _ in range(2):
        check(model, x, convs, bns)
    before = [w.copy() for w in convs[2].get_weights()]
    model.trainable = True
    model.compile(optimizer=tlkit.optimizers.SGD(0.01), loss="mse")
    targets = [np.zeros((2, 8, 8, 16), np.float32), np.zeros((2, 4, 4, 16), np.float32)]
    model.train_on_batch(x, targets)
    after = convs[2].get_weights()
    assert not np.allclose(after[0], before[0])  # trained from the true weights
    model.trainable = False
    for _ in range(2):
        check(model, x, convs, bns)


def test_depthwise_and_inverted_residual_folds_follow_training():
    """An inverted-residual block (1x1 -> BN -> ReLU6, depthwise 3x3 -> BN -> ReLU6, 1x1 -> BN, + input):
    frozen forwards keep its folds and kept block arguments; a training step writes the weights and BN's
    moving statistics in place (bumping their versions), so the next frozen forward matches a fresh copy of
    the trained model, not the folds from before training."""
    rng = np.random.default_rng(5)
    inp = tlkit.Input((10, 10, 16))
    h = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(48, 1, use_bias=False)(inp)))
    h = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False)(h)))
    out = L.Add()([L.BatchNormalization()(L.Conv2D(16, 1, use_bias=False)(h)), inp])
    model = tlkit.Model(inp, out)
    model.set_weights([w + rng.uniform(0.1, 0.5, w.shape).astype(np.float32) if w.ndim == 1 else w
                       for w in model.get_weights()])
    x1 = rng.standard_normal((1, 10, 10, 16)).astype(np.float32)
    x2 = rng.standard_normal((2, 10, 10, 16)).astype(np.float32)
    model.trainable = False
    before = [model.predict_on_batch(x) for x in (x1, x1, x2, x2)]
    model.trainable = True
    model.compile(optimizer=tlkit.optimizers.SGD(0.05), loss="mse")
    for _ in range(2):  # BN in training mode: its moving statistics move too
        model.train_on_batch(x2, np.zeros_like(x2))
    model.trainable = False
    fresh = tlkit.models.clone_model(model)
    fresh.set_weights(model.get_weights())
    fresh.trainable = False
    for x, old in ((x1, before[0]), (x2, before[2])):
        got, want = np.asarray(model.predict_on_batch(x)), np.asarray(fresh.predict_on_batch(x))
        assert np.abs(want - np.asarray(old)).max() > 1e-2  # training moved the outputs
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(want).max())))
