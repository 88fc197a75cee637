"""Conv1D, Conv3D, Conv1DTranspose, Conv2DTranspose and grouped Conv2D: forward and backward against
a numpy reference (always) and torch (when installed), finite differences, configs and model files."""
import numpy as np
import pytest

from tlkit import layers as L
from tlkit.engine.kernels.geometry import pads

from gradcheck import check
from layer_checks import close, config_round_trip, forward_backward, model_file_round_trip


def reference_conv(x, w, strides, padding, dilation, groups=1):
    """Direct channels-last convolution in float64: one product per kernel offset and group."""
    rank = x.ndim - 2
    ks = w.shape[:rank]
    pad = [pads(n, k, s, padding, d) for n, k, s, d in zip(x.shape[1:-1], ks, strides, dilation)]
    xp = np.pad(x.astype(np.float64), [(0, 0)] + pad + [(0, 0)])
    out = [(xp.shape[1 + i] - (ks[i] - 1) * dilation[i] - 1) // strides[i] + 1 for i in range(rank)]
    cg, fg = x.shape[-1] // groups, w.shape[-1] // groups
    y = np.zeros([x.shape[0]] + out + [w.shape[-1]])
    for off in np.ndindex(*ks):
        window = tuple(slice(o * d, o * d + (n - 1) * s + 1, s) for o, d, n, s in zip(off, dilation, out, strides))
        patch = xp[(slice(None),) + window]
        for g in range(groups):
            y[..., g * fg:(g + 1) * fg] += patch[..., g * cg:(g + 1) * cg] @ w[off][:, g * fg:(g + 1) * fg]
    return y


def reference_conv_transpose(x, w, strides, out_spatial, padding, dilation):
    """Every input cell scatters kernel-weighted copies; then the TF 'same'/'valid' crop to out_spatial."""
    rank = x.ndim - 2
    ks = w.shape[:rank]
    full = [(n - 1) * s + (k - 1) * d + 1 for n, s, k, d in zip(x.shape[1:-1], strides, ks, dilation)]
    size = [max(f, o + pads(o, k, s, padding, d)[0]) for f, o, k, s, d in zip(full, out_spatial, ks, strides,
                                                                                dilation)]
    y = np.zeros([x.shape[0]] + size + [w.shape[-2]])
    for off in np.ndindex(*ks):
        dest = tuple(slice(o * d, o * d + (n - 1) * s + 1, s) for o, d, n, s in zip(off, dilation, x.shape[1:-1],
                                                                                   strides))
        y[(slice(None),) + dest] += x.astype(np.float64) @ w[off].T
    crop = tuple(slice(pads(o, k, s, padding, d)[0], pads(o, k, s, padding, d)[0] + o)
                 for o, k, s, d in zip(out_spatial, ks, strides, dilation))
    return y[(slice(None),) + crop]


def _layer_fn(layer):
    return lambda xs, training: layer(xs, training=training)


CONV_CASES = [
    (lambda: L.Conv1D(6, 3, padding="causal", dilation_rate=2), (2, 13, 4)),
    (lambda: L.Conv1D(6, 4, strides=2, padding="same", activation="relu"), (2, 15, 4)),
    (lambda: L.Conv1D(6, 3, groups=2, padding="valid"), (2, 10, 4)),
    (lambda: L.Conv3D(5, (2, 3, 3), strides=(2, 1, 2), padding="same"), (2, 5, 6, 7, 3)),
    (lambda: L.Conv3D(4, 3, dilation_rate=(2, 1, 1), groups=2, activation="tanh"), (1, 7, 5, 5, 4)),
    (lambda: L.Conv2D(6, 3, strides=2, padding="same", groups=3), (2, 7, 8, 6)),
]


@pytest.mark.parametrize("factory, shape", CONV_CASES)
def test_convolutions_match_numpy_reference_and_finite_differences(rng, factory, shape):
    layer = factory()
    x = rng.standard_normal(shape).astype(np.float32)
    y = layer(x)
    padding = "valid" if layer.padding == "valid" else layer.padding
    if padding == "causal":  # 'causal' = the kernel's span of zeros before the sequence, then 'valid'
        span = (layer.kernel_size[0] - 1) * layer.dilation_rate[0]
        z = reference_conv(np.pad(x, ((0, 0), (span, 0), (0, 0))), layer.kernel.value, layer.strides, "valid",
                           layer.dilation_rate, layer.groups)
    else:
        z = reference_conv(x, layer.kernel.value, layer.strides, padding, layer.dilation_rate, layer.groups)
    z = z + layer.bias.value
    expected = {"relu": np.maximum(z, 0), "tanh": np.tanh(z)}.get(layer.activation, z)
    close(y, expected, what="forward")
    assert layer.kernel.shape == layer.kernel_size + (shape[-1] // layer.groups, layer.filters)
    check(_layer_fn(layer), [x], layer.weights)


TRANSPOSE_CASES = [
    (lambda: L.Conv2DTranspose(4, 3, strides=2, padding="same"), (2, 5, 6, 3)),
    (lambda: L.Conv2DTranspose(4, (3, 2), strides=(2, 3), padding="valid", activation="sigmoid"), (2, 4, 3, 3)),
    (lambda: L.Conv2DTranspose(3, 4, strides=2, padding="same", output_padding=1), (1, 4, 5, 2)),
    (lambda: L.Conv2DTranspose(3, 3, padding="same", dilation_rate=2), (1, 6, 5, 2)),
    (lambda: L.Conv1DTranspose(5, 3, strides=2, padding="same"), (2, 7, 3)),
    (lambda: L.Conv1DTranspose(5, 2, strides=3, padding="valid"), (2, 6, 3)),
]


@pytest.mark.parametrize("factory, shape", TRANSPOSE_CASES)
def test_transposed_convolutions_match_numpy_reference_and_finite_differences(rng, factory, shape):
    layer = factory()
    x = rng.standard_normal(shape).astype(np.float32)
    y = layer(x)
    out_spatial = layer.compute_output_shape(shape)[1:-1]
    z = reference_conv_transpose(x, layer.kernel.value, layer.strides, out_spatial, layer.padding,
                                 layer.dilation_rate) + layer.bias.value
    expected = 1 / (1 + np.exp(-z)) if layer.activation == "sigmoid" else z
    close(y, expected, what="forward")
    assert layer.kernel.shape == layer.kernel_size + (layer.filters, shape[-1])  # Keras: (spatial..., out, in)
    check(_layer_fn(layer), [x], layer.weights)


def test_keras_output_lengths_of_transposed_convolutions():
    assert L.Conv2DTranspose(1, 3, strides=2, padding="same").compute_output_shape((None, 5, 6, 1)) == (None, 10, 12, 1)
    assert L.Conv2DTranspose(1, 3, strides=2).compute_output_shape((None, 5, 6, 1)) == (None, 11, 13, 1)
    assert L.Conv2DTranspose(1, 2, strides=3).compute_output_shape((None, 5, 6, 1)) == (None, 15, 18, 1)
    assert L.Conv1DTranspose(1, 4, strides=2, padding="same", output_padding=1).compute_output_shape(
        (None, 5, 1)) == (None, 9, 1)


def _torch_conv(torch, layer, xt, wt):
    F = torch.nn.functional
    rank = layer.rank
    perm = (rank + 1, rank) + tuple(range(rank))
    w = wt.permute(*perm)
    if type(layer).__name__.endswith("Transpose"):
        fn = [F.conv_transpose1d, F.conv_transpose2d][rank - 1]
        return fn(xt, w, stride=layer.strides, dilation=layer.dilation_rate)
    fn = [F.conv1d, F.conv2d, F.conv3d][rank - 1]
    if layer.padding == "causal":
        xt = F.pad(xt, ((layer.kernel_size[0] - 1) * layer.dilation_rate[0], 0))
    padding = "same" if layer.padding == "same" else 0
    return fn(xt, w, stride=layer.strides, padding=padding, dilation=layer.dilation_rate, groups=layer.groups)


@pytest.mark.parametrize("factory, shape", [
    (lambda: L.Conv1D(8, 5, padding="causal", dilation_rate=3), (3, 20, 6)),
    (lambda: L.Conv1D(8, 3, strides=2), (3, 21, 6)),
    (lambda: L.Conv3D(6, 3, padding="same", groups=2), (2, 5, 6, 7, 4)),
    (lambda: L.Conv3D(6, (3, 2, 3), strides=(2, 2, 1)), (2, 7, 6, 7, 4)),
    (lambda: L.Conv2D(8, 3, padding="same", groups=4), (2, 9, 9, 8)),
    (lambda: L.Conv2DTranspose(5, 3, strides=2), (2, 5, 6, 3)),
    (lambda: L.Conv1DTranspose(5, 4, strides=2), (2, 7, 3)),
])
def test_convolutions_forward_and_backward_equal_torch(rng, factory, shape):
    torch = pytest.importorskip("torch")
    layer = factory()
    x = rng.standard_normal(shape).astype(np.float32)
    layer(x)
    layer.bias.assign(rng.standard_normal(layer.bias.shape).astype(np.float32))
    y, projection, (dx,), (dw, db) = forward_backward(layer, x)
    rank = layer.rank
    to_first = (0, rank + 1) + tuple(range(1, rank + 1))
    xt = torch.tensor(x).permute(*to_first).requires_grad_()
    wt = torch.tensor(layer.kernel.numpy()).requires_grad_()
    bt = torch.tensor(layer.bias.numpy()).requires_grad_()
    back = (0,) + tuple(range(2, rank + 2)) + (1,)
    yt = _torch_conv(torch, layer, xt, wt).permute(*back) + bt
    (yt * torch.tensor(projection)).sum().backward()
    close(y, yt.detach().numpy(), what="forward")
    close(dx, xt.grad.permute(*back).numpy(), what="input gradient")
    close(dw, wt.grad.numpy(), what="kernel gradient")
    close(db, bt.grad.numpy(), what="bias gradient")


@pytest.mark.parametrize("factory, shape", [
    (lambda: L.Conv1D(4, 3, padding="causal"), (2, 9, 3)),
    (lambda: L.Conv3D(4, 2, groups=1, use_bias=False), (2, 4, 4, 4, 2)),
    (lambda: L.Conv2D(4, 3, groups=2, padding="same"), (2, 6, 6, 4)),
    (lambda: L.Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=1), (2, 4, 4, 3)),
    (lambda: L.Conv1DTranspose(4, 3, strides=2), (2, 6, 3)),
])
def test_convolution_configs_and_model_files_round_trip(tmp_path, rng, factory, shape):
    layer = factory()
    x = rng.standard_normal(shape).astype(np.float32)
    layer(x)
    config_round_trip(layer, x)
    model_file_round_trip(tmp_path, factory(), x)


@pytest.mark.parametrize("make, message", [
    (lambda: L.Conv2D(6, 3, groups=4), "groups"),
    (lambda: L.Conv1D(4, 3, padding="full"), "padding must be 'valid' or 'same' or 'causal'"),
    (lambda: L.Conv2D(4, 3, padding="causal"), "padding must be 'valid' or 'same'"),
    (lambda: L.Conv2DTranspose(4, 3, strides=2, output_padding=2), "output_padding"),
    (lambda: L.Conv3D(4, (3, 3)), "kernel_size"),
])
def test_bad_convolution_arguments_get_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_input_channels_must_divide_into_groups(rng):
    with pytest.raises(ValueError, match="divisible by groups=2"):
        L.Conv1D(4, 3, groups=2)(rng.standard_normal((1, 8, 3)).astype(np.float32))


@pytest.mark.parametrize("padding, dilation", [("valid", 1), ("same", 2), ("causal", 3)])
def test_wide_conv1d_winograd_route_matches_reference(rng, monkeypatch, padding, dilation):
    """Conv1D over >= winograd1d.MIN_CHANNELS channels takes the Winograd route (short sequences too)."""
    from tlkit.engine.kernels import winograd1d
    monkeypatch.setattr(winograd1d, "MAX_WASTE", 10.0)
    taken = []
    monkeypatch.setattr(winograd1d, "conv1d", lambda *a, _run=winograd1d.conv1d: taken.append(1) or _run(*a))
    layer = L.Conv1D(5, 3, padding=padding, dilation_rate=dilation)
    x = rng.standard_normal((3, 17, winograd1d.MIN_CHANNELS)).astype(np.float32)
    y = layer(x)
    assert taken
    if padding == "causal":
        x_ref, padding = np.pad(x, ((0, 0), (2 * dilation, 0), (0, 0))), "valid"
    else:
        x_ref = x
    close(y, reference_conv(x_ref, layer.kernel.value, (1,), padding, (dilation,)) + layer.bias.value,
          what="forward")
    check(_layer_fn(layer), [x], layer.weights)


def test_conv1d_stack_learns_an_order_dependent_label(rng):
    """A time-series model (Conv1D stack, pooling, global pooling) beats chance where the label depends
    on the order of the steps: does the sequence rise (second half above the first) or fall?"""
    import tlkit
    n, steps = 256, 24
    slope = rng.choice([-1.0, 1.0], n)
    x = (slope[:, None] * np.linspace(-1, 1, steps)[None] + rng.normal(0, 0.7, (n, steps)))[..., None]
    y = (slope > 0).astype(np.float32)
    model = tlkit.Sequential([tlkit.Input((steps, 1)), L.Conv1D(8, 5, padding="causal", activation="relu"),
                              L.MaxPooling1D(2), L.Conv1D(8, 3, strides=2, activation="tanh"),
                              L.GlobalMaxPooling1D(), L.Dense(1, activation="sigmoid")])
    model.compile(optimizer=tlkit.optimizers.Adam(0.02), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x[:192].astype(np.float32), y[:192], epochs=30, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x[192:].astype(np.float32), y[192:], verbose=0)
    assert accuracy > 0.8, accuracy
