"""LayerNormalization, GroupNormalization, UnitNormalization, LeakyReLU, PReLU, ELU and Softmax layers
and the activations elu ... log_softmax: numpy references (always), torch (when installed), finite
differences, configs and model files."""
import math

import numpy as np
import pytest

import tlkit
from tlkit import layers as L

from gradcheck import check
from layer_checks import close, config_round_trip, forward_backward, model_file_round_trip

_ERF = np.vectorize(math.erf)


def _softplus(z):
    return np.logaddexp(0, z)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


# Independent float64 references of Keras 3's formulas.
ACTIVATION_REFERENCES = {
    "elu": lambda z: np.where(z > 0, z, np.exp(z) - 1),
    "selu": lambda z: 1.0507009873554805 * np.where(z > 0, z, 1.6732632423543772 * (np.exp(z) - 1)),
    "gelu": lambda z: 0.5 * z * (1 + _ERF(z / np.sqrt(2))),
    "silu": lambda z: z * _sigmoid(z),
    "swish": lambda z: z * _sigmoid(z),
    "leaky_relu": lambda z: np.where(z > 0, z, 0.2 * z),
    "relu6": lambda z: np.minimum(np.maximum(z, 0), 6),
    "hard_sigmoid": lambda z: np.minimum(np.maximum(z / 6 + 0.5, 0), 1),
    "hard_swish": lambda z: z * np.minimum(np.maximum(z / 6 + 0.5, 0), 1),
    "mish": lambda z: z * np.tanh(_softplus(z)),
    "log_softmax": lambda z: z - np.log(np.exp(z).sum(-1, keepdims=True)),
}


def _away_from_kinks(x):
    """Inputs at least 0.05 from the kinks (0, +-3, 6), so central differences see smooth functions."""
    for kink in (0.0, 3.0, -3.0, 6.0):
        near = np.abs(x - kink) < 0.05
        x[near] += 0.1
    return x


@pytest.mark.parametrize("name", sorted(ACTIVATION_REFERENCES))
def test_activations_match_reference_and_finite_differences(rng, name):
    x = _away_from_kinks((rng.standard_normal((4, 7)) * 3).astype(np.float32))
    fn = getattr(tlkit.activations, name)
    close(fn(x), ACTIVATION_REFERENCES[name](x.astype(np.float64)), rtol=1e-5, what=name)
    layer = L.Activation(name)
    close(layer(x), ACTIVATION_REFERENCES[name](x.astype(np.float64)), rtol=1e-5, what=name)
    check(lambda xs, training: layer(xs, training=training), [x], [])


@pytest.mark.parametrize("name", ["gelu", "mish", "selu", "hard_swish", "log_softmax"])
def test_kernel_layers_backpropagate_through_new_activations(rng, name):
    """Dense and the convolutions keep what the activation's backward needs (the input z for gelu, mish...)."""
    for layer, shape in ((L.Dense(5, activation=name), (3, 6)), (L.Conv1D(4, 3, activation=name), (2, 7, 3)),
                         (L.Conv2D(4, 3, activation=name), (2, 5, 5, 2))):
        x = rng.standard_normal(shape).astype(np.float32)
        layer(x)
        check(lambda xs, training: layer(xs, training=training), [x], layer.weights)
        assert L.Dense.from_config(L.Dense(2, activation=name).get_config()).activation == layer.activation


def test_activation_aliases_and_unknown_names():
    assert L.Dense(2, activation="swish").activation == "silu"
    assert L.Dense(2, activation=tlkit.activations.hard_swish).activation == "hard_silu"
    with pytest.raises(ValueError, match="Unknown activation 'sofmax'"):
        L.Dense(2, activation="sofmax")


def _layer_norm_reference(x, axes, gamma, beta, eps):
    mean = x.mean(axes, keepdims=True)
    var = x.var(axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _group_norm_reference(x, groups, gamma, beta, eps):
    n, c = x.shape[0], x.shape[-1]
    g = x.reshape(n, -1, groups, c // groups)
    mean = g.mean((1, 3), keepdims=True)
    var = g.var((1, 3), keepdims=True)
    return ((g - mean) / np.sqrt(var + eps)).reshape(x.shape) * gamma + beta


def _randomize(layer, rng):
    layer.set_weights([rng.standard_normal(w.shape).astype(np.float32) for w in layer.weights])


@pytest.mark.parametrize("axis, shape", [(-1, (3, 4, 6)), ([1, 2], (3, 4, 5)), (1, (2, 5, 3, 2))])
def test_layer_normalization(rng, axis, shape):
    layer = L.LayerNormalization(axis=axis)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    layer(x)
    _randomize(layer, rng)
    axes = tuple(a % len(shape) for a in ([axis] if isinstance(axis, int) else axis))
    bshape = [shape[a] if a in axes else 1 for a in range(len(shape))]
    expected = _layer_norm_reference(x.astype(np.float64), axes, layer.gamma.numpy().reshape(bshape),
                                     layer.beta.numpy().reshape(bshape), 1e-3)
    close(layer(x), expected, what="forward")
    check(lambda xs, training: layer(xs, training=training), [x], layer.weights)


def test_rms_scaling_layer_normalization(rng):
    layer = L.LayerNormalization(rms_scaling=True)
    x = rng.standard_normal((3, 6)).astype(np.float32)
    layer(x)
    _randomize(layer, rng)
    x64 = x.astype(np.float64)
    expected = x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + 1e-3) * layer.gamma.numpy()
    close(layer(x), expected, what="forward")
    check(lambda xs, training: layer(xs, training=training), [x], [layer.gamma])


@pytest.mark.parametrize("groups, shape", [(2, (3, 4, 6)), (3, (2, 4, 3, 6)), (6, (2, 5, 6)), (1, (2, 3, 4))])
def test_group_normalization(rng, groups, shape):
    layer = L.GroupNormalization(groups=groups)
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    layer(x)
    _randomize(layer, rng)
    expected = _group_norm_reference(x.astype(np.float64), groups, layer.gamma.numpy(), layer.beta.numpy(), 1e-3)
    close(layer(x), expected, what="forward")
    check(lambda xs, training: layer(xs, training=training), [x], layer.weights)


def test_unit_normalization(rng):
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    for axis in (-1, [1, 2]):
        layer = L.UnitNormalization(axis=axis)
        axes = (2,) if axis == -1 else (1, 2)
        close(layer(x), x / np.sqrt((x.astype(np.float64) ** 2).sum(axes, keepdims=True)), what="forward")
        check(lambda xs, training: layer(xs, training=training), [x], [])


def test_activation_layers_match_references(rng):
    x = _away_from_kinks(rng.standard_normal((3, 4, 5)).astype(np.float32))
    x64 = x.astype(np.float64)
    cases = [(L.LeakyReLU(), np.where(x64 > 0, x64, 0.3 * x64)),
             (L.LeakyReLU(negative_slope=0.1), np.where(x64 > 0, x64, 0.1 * x64)),
             (L.ELU(alpha=0.5), np.where(x64 > 0, x64, 0.5 * np.expm1(x64))),
             (L.Softmax(), np.exp(x64) / np.exp(x64).sum(-1, keepdims=True)),
             (L.Softmax(axis=[1, 2]), np.exp(x64) / np.exp(x64).sum((1, 2), keepdims=True))]
    for layer, expected in cases:
        close(layer(x), expected, what=type(layer).__name__)
        check(lambda xs, training: layer(xs, training=training), [x], [])
    prelu = L.PReLU(shared_axes=[1])
    prelu(x)
    _randomize(prelu, rng)
    assert prelu.alpha.shape == (1, 5)
    close(prelu(x), np.where(x64 > 0, x64, prelu.alpha.numpy() * x64), what="PReLU")
    check(lambda xs, training: prelu(xs, training=training), [x], prelu.weights)


def test_layers_equal_torch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = (rng.standard_normal((3, 5, 6)) * 2).astype(np.float32)
    cases = [
        (L.LayerNormalization(), lambda t, w: F.layer_norm(t, (6,), w[0], w[1], eps=1e-3)),
        (L.GroupNormalization(groups=3),
         lambda t, w: F.group_norm(t.permute(0, 2, 1), 3, w[0], w[1], eps=1e-3).permute(0, 2, 1)),
        (L.PReLU(shared_axes=[1]), lambda t, w: torch.where(t > 0, t, w[0] * t)),
        (L.LeakyReLU(0.25), lambda t, w: F.leaky_relu(t, 0.25)),
        (L.ELU(0.7), lambda t, w: F.elu(t, 0.7)),
        (L.Softmax(), lambda t, w: F.softmax(t, -1)),
        (L.UnitNormalization(), lambda t, w: F.normalize(t, dim=-1)),
    ]
    for layer, reference in cases:
        layer(x)
        _randomize(layer, rng)
        y, projection, (dx,), dws = forward_backward(layer, x)
        xt = torch.tensor(x, requires_grad=True)
        wt = [torch.tensor(w.numpy(), requires_grad=True) for w in layer.trainable_weights]
        yt = reference(xt, wt)
        (yt * torch.tensor(projection)).sum().backward()
        what = type(layer).__name__
        close(y, yt.detach().numpy(), what=what)
        close(dx, xt.grad.numpy(), what=what + " input gradient")
        for dw, t in zip(dws, wt):
            close(dw, t.grad.numpy(), what=what + " weight gradient")


def test_activations_equal_torch(rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = _away_from_kinks((rng.standard_normal((4, 9)) * 3).astype(np.float32))
    references = {"elu": F.elu, "selu": F.selu, "gelu": F.gelu, "silu": F.silu, "leaky_relu": lambda t: F.leaky_relu(t, 0.2),
                  "relu6": F.relu6, "hard_sigmoid": F.hardsigmoid, "hard_swish": F.hardswish, "mish": F.mish,
                  "log_softmax": lambda t: F.log_softmax(t, -1)}
    for name, reference in references.items():
        y, projection, (dx,), _ = forward_backward(L.Activation(name), x)
        xt = torch.tensor(x, requires_grad=True)
        yt = reference(xt)
        (yt * torch.tensor(projection)).sum().backward()
        close(y, yt.detach().numpy(), what=name)
        close(dx, xt.grad.numpy(), what=name + " gradient")


@pytest.mark.parametrize("factory", [
    lambda: L.LayerNormalization(axis=[1, 2], epsilon=1e-5), lambda: L.GroupNormalization(2, center=False),
    lambda: L.PReLU(shared_axes=[1, 2]), lambda: L.LeakyReLU(0.1), lambda: L.ELU(0.5), lambda: L.Softmax(axis=1),
    lambda: L.UnitNormalization(axis=[1, 2]), lambda: L.Activation("mish"),
])
def test_configs_and_model_files_round_trip(tmp_path, rng, factory):
    x = rng.standard_normal((2, 3, 4, 6)).astype(np.float32)
    layer = factory()
    layer(x)
    if layer.weights:
        _randomize(layer, rng)
    config_round_trip(layer, x)
    model_file_round_trip(tmp_path, factory(), x)


def test_group_normalization_needs_a_divisor(rng):
    with pytest.raises(ValueError, match="divisible by groups=4"):
        L.GroupNormalization(groups=4)(rng.standard_normal((2, 6)).astype(np.float32))
