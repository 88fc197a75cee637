"""Permute, Flatten on any rank, Multiply, Subtract, Average, Maximum, Minimum, Dot, SpatialDropout1D/2D,
GaussianNoise, GaussianDropout and ActivityRegularization: numpy references, torch (when installed),
finite differences, configs and model files."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L

from gradcheck import check
from layer_checks import close, config_round_trip, forward_backward


def _fn(layer):
    return lambda xs, training: layer(xs, training=training)


@pytest.mark.parametrize("cls, reference", [
    (L.Multiply, lambda xs: xs[0] * xs[1] * xs[2]),
    (L.Average, lambda xs: (xs[0] + xs[1] + xs[2]) / 3),
    (L.Maximum, lambda xs: np.maximum(np.maximum(xs[0], xs[1]), xs[2])),
    (L.Minimum, lambda xs: np.minimum(np.minimum(xs[0], xs[1]), xs[2])),
])
def test_elementwise_merges(rng, cls, reference):
    # distinct values 0.05 apart, so no max/min is within a finite-difference step of a tie
    values = rng.permutation(np.arange(-90, 90) * 0.05).astype(np.float32)
    xs = [values[i * 60:(i + 1) * 60].reshape(3, 4, 5) for i in range(3)]
    layer = cls()
    close(layer(xs), reference([x.astype(np.float64) for x in xs]), what=cls.__name__)
    check(_fn(layer), xs, [])
    a = tlkit.Input((4, 5))
    b = tlkit.Input((1, 5))  # broadcasts, as Keras's merges do
    assert cls()([a, b]).shape == (None, 4, 5)


def test_subtract_takes_exactly_two_inputs(rng):
    a, b = (rng.standard_normal((3, 4)).astype(np.float32) for _ in range(2))
    close(L.Subtract()([a, b]), a - b, what="Subtract")
    check(_fn(L.Subtract()), [a, b], [])
    with pytest.raises(ValueError, match="exactly 2 inputs"):
        L.Subtract()([a, b, a])


@pytest.mark.parametrize("axes, sa, sb, einsum", [
    (1, (3, 5), (3, 5), "bi,bi->b"),
    ((2, 1), (3, 4, 5), (3, 5, 6), "bij,bjk->bik"),
    ((2, 2), (3, 4, 5), (3, 6, 5), "bij,bkj->bik"),
    (-1, (3, 4, 5), (3, 5), "bij,bj->bi"),
])
@pytest.mark.parametrize("normalize", [False, True])
def test_dot(rng, axes, sa, sb, einsum, normalize):
    a, b = rng.standard_normal(sa).astype(np.float32), rng.standard_normal(sb).astype(np.float32)
    layer = L.Dot(axes=axes, normalize=normalize)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if normalize:
        ia, ib = [axes, axes] if isinstance(axes, int) else axes
        a64 = a64 / np.linalg.norm(a64, axis=ia, keepdims=True)
        b64 = b64 / np.linalg.norm(b64, axis=ib, keepdims=True)
    expected = np.einsum(einsum, a64, b64)
    expected = expected[:, None] if expected.ndim == 1 else expected
    close(layer([a, b]), expected, what="Dot")
    assert layer.compute_output_shape([(None,) + sa[1:], (None,) + sb[1:]]) == (None,) + expected.shape[1:]
    check(_fn(layer), [a, b], [])
    config_round_trip(layer, [a, b])


def test_permute_and_flatten_of_any_rank(rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    layer = L.Permute((3, 1, 2))
    np.testing.assert_array_equal(layer(x), x.transpose(0, 3, 1, 2))
    assert layer.compute_output_shape((None, 3, 4, 5)) == (None, 5, 3, 4)
    check(_fn(layer), [x], [])
    config_round_trip(layer, x)
    for shape in ((2, 3), (2, 3, 4, 5, 2), (4,)):
        y = rng.standard_normal(shape).astype(np.float32)
        np.testing.assert_array_equal(L.Flatten()(y), y.reshape(shape[0], -1))
    with pytest.raises(ValueError, match="consecutive and start from 1"):
        L.Permute((0, 1))


def test_spatial_dropout_drops_whole_channels(rng):
    x = rng.uniform(1, 2, (8, 6, 5, 16)).astype(np.float32)
    layer = L.SpatialDropout2D(0.5, seed=3)
    np.testing.assert_array_equal(layer(x), x)  # inference: identity
    y = np.asarray(layer(x, training=True))
    ratio = y / x
    np.testing.assert_allclose(ratio, ratio[:, :1, :1, :] * np.ones_like(ratio), rtol=1e-5)  # one value per (sample, channel)
    assert set(np.unique(np.round(ratio, 5))) == {0.0, 2.0}
    dropped = (ratio[:, 0, 0, :] == 0).mean()
    assert 0.25 < dropped < 0.75
    seq = rng.uniform(1, 2, (6, 9, 12)).astype(np.float32)
    layer1 = L.SpatialDropout1D(0.3, seed=1)
    r = np.asarray(layer1(seq, training=True)) / seq
    np.testing.assert_allclose(r, r[:, :1, :] * np.ones_like(r), rtol=1e-5)
    config_round_trip(layer1, seq)


def test_noise_layers_gradients_use_the_same_noise(rng):
    """Backward multiplies by exactly the noise the forward drew (checked against the tape's forward)."""
    x = rng.standard_normal((4, 7)).astype(np.float32)
    for layer in (L.SpatialDropout1D(0.4, seed=2), L.GaussianDropout(0.3, seed=2), L.GaussianNoise(0.5, seed=2)):
        inp = x[:, :, None].repeat(3, -1) if isinstance(layer, L.SpatialDropout1D) else x
        y, projection, (dx,), _ = forward_backward(layer, inp)
        if isinstance(layer, L.GaussianNoise):
            close(dx, projection, what="GaussianNoise gradient")  # additive: identity gradient
            assert (y - inp).std() == pytest.approx(0.5, rel=0.3)  # seeded noise: deterministic
        else:
            noise = y / inp
            close(dx, projection * noise, what=type(layer).__name__ + " gradient")
        np.testing.assert_array_equal(layer(inp), inp)  # inference: identity
        config_round_trip(layer, inp)


def test_gaussian_dropout_noise_statistics(rng):
    x = np.ones((200, 500), np.float32)
    y = np.asarray(L.GaussianDropout(0.2, seed=0)(x, training=True))
    assert y.mean() == pytest.approx(1.0, abs=0.01)
    assert y.std() == pytest.approx(np.sqrt(0.2 / 0.8), rel=0.02)


def test_activity_regularization_adds_keras3_penalty_to_the_loss(rng):
    x = rng.standard_normal((4, 3)).astype(np.float32)
    layer = L.ActivityRegularization(l1=0.1, l2=0.01)
    y = layer(x)
    np.testing.assert_array_equal(y, x)
    expected = (0.1 * np.abs(x).sum() + 0.01 * (x ** 2).sum()) / 4  # Keras 3 divides by the batch size
    (penalty,) = layer.losses
    assert float(np.asarray(penalty)) == pytest.approx(expected, rel=1e-5)
    config_round_trip(layer, x)
    # The penalty's gradient flows back into the layer's input (so into the weights before it).
    with tlkit.GradientTape() as tape:
        tape.watch(x)
        layer(x, training=True)
        (penalty,) = layer.losses
    grad = np.asarray(tape.gradient(penalty, x))
    close(grad, (0.1 * np.sign(x) + 0.02 * x) / 4, what="penalty gradient")


def test_merges_equal_torch(rng):
    torch = pytest.importorskip("torch")
    a, b = rng.standard_normal((3, 4, 5)).astype(np.float32), rng.standard_normal((3, 5, 6)).astype(np.float32)
    y, projection, (da, db), _ = forward_backward(L.Dot(axes=(2, 1)), [a, b])
    at, bt = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    (torch.bmm(at, bt) * torch.tensor(projection)).sum().backward()
    close(da, at.grad.numpy(), what="Dot gradient a")
    close(db, bt.grad.numpy(), what="Dot gradient b")
    c = rng.standard_normal((3, 4, 5)).astype(np.float32)
    y, projection, (da, dc), _ = forward_backward(L.Maximum(), [a, c])
    at, ct = torch.tensor(a, requires_grad=True), torch.tensor(c, requires_grad=True)
    (torch.maximum(at, ct) * torch.tensor(projection)).sum().backward()
    close(da, at.grad.numpy(), what="Maximum gradient")
    close(dc, ct.grad.numpy(), what="Maximum gradient")


def test_merge_layers_in_a_saved_functional_model(tmp_path, rng):
    a, b = tlkit.Input((4,)), tlkit.Input((4,))
    d = L.Dense(4)
    merged = L.Concatenate()([L.Multiply()([d(a), b]), L.Subtract()([a, b]), L.Average()([a, b]),
                              L.Maximum()([a, b]), L.Minimum()([a, b]), L.Dot(axes=1, normalize=True)([a, b])])
    out = L.Permute((2, 1))(L.Reshape((1, -1))(merged))
    model = tlkit.Model([a, b], out)
    xs = [rng.standard_normal((3, 4)).astype(np.float32) for _ in range(2)]
    expected = model.predict(xs, verbose=0)
    model.save(tmp_path / "m.h5")
    loaded = tlkit.models.load_model(tmp_path / "m.h5")
    np.testing.assert_allclose(loaded.predict(xs, verbose=0), expected, rtol=1e-6)
