"""Pooling 1D/3D, global pooling, UpSampling1D/2D, ZeroPadding1D/2D/3D and Cropping1D/2D: forward and
backward against numpy references (always) and torch (when installed), finite differences, configs."""
import numpy as np
import pytest

from tlkit import layers as L
from tlkit.engine.kernels.geometry import output_size, pads

from gradcheck import check
from layer_checks import close, config_round_trip, forward_backward, model_file_round_trip


def reference_pool(x, kind, size, strides, padding):
    """TF pooling in float64: windows clipped to the real cells (max of them, or their mean)."""
    rank = x.ndim - 2
    out = [output_size(n, k, s, padding) for n, k, s in zip(x.shape[1:-1], size, strides)]
    before = [pads(n, k, s, padding)[0] for n, k, s in zip(x.shape[1:-1], size, strides)]
    y = np.zeros([x.shape[0]] + out + [x.shape[-1]])
    for idx in np.ndindex(*out):
        window = tuple(slice(max(i * s - b, 0), min(i * s - b + k, n))
                       for i, s, b, k, n in zip(idx, strides, before, size, x.shape[1:-1]))
        cells = x[(slice(None),) + window].reshape(x.shape[0], -1, x.shape[-1])
        y[(slice(None),) + idx] = cells.max(1) if kind == "max" else cells.mean(1)
    assert rank == len(out)
    return y


POOL_CASES = [
    (lambda: L.MaxPooling1D(3, strides=2, padding="same"), (2, 11, 4)),
    (lambda: L.AveragePooling1D(2), (2, 9, 4)),
    (lambda: L.AveragePooling1D(3, strides=1, padding="same"), (2, 7, 3)),
    (lambda: L.MaxPooling3D((2, 3, 2), strides=(1, 2, 2)), (2, 5, 7, 6, 3)),
    (lambda: L.MaxPooling3D(3, strides=2, padding="same"), (1, 5, 6, 7, 2)),
    (lambda: L.AveragePooling3D(3, strides=2, padding="same"), (1, 5, 6, 7, 2)),
    (lambda: L.AveragePooling3D(), (2, 4, 6, 4, 3)),
]


@pytest.mark.parametrize("factory, shape", POOL_CASES)
def test_poolings_match_numpy_reference_and_finite_differences(rng, factory, shape):
    layer = factory()
    x = rng.standard_normal(shape).astype(np.float32)
    kind = "max" if "Max" in type(layer).__name__ else "avg"
    close(layer(x), reference_pool(x, kind, layer.pool_size, layer.strides, layer.padding), what="forward")
    assert layer.compute_output_shape((None,) + shape[1:])[1:] == layer(x).shape[1:]
    check(lambda xs, training: layer(xs, training=training), [x], [])


@pytest.mark.parametrize("factory, shape", [
    (lambda: L.MaxPooling1D(3, strides=2), (2, 11, 4)),
    (lambda: L.AveragePooling1D(2), (2, 9, 4)),
    (lambda: L.MaxPooling3D(2), (2, 4, 6, 6, 3)),
    (lambda: L.AveragePooling3D((2, 3, 2), strides=(2, 1, 2)), (2, 5, 7, 6, 3)),
])
def test_poolings_forward_and_backward_equal_torch(rng, factory, shape):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    layer = factory()
    x = rng.standard_normal(shape).astype(np.float32)
    y, projection, (dx,), _ = forward_backward(layer, x)
    rank = layer.rank
    xt = torch.tensor(x).permute(0, rank + 1, *range(1, rank + 1)).requires_grad_()
    name = ("max" if "Max" in type(layer).__name__ else "avg") + f"_pool{rank}d"
    back = (0,) + tuple(range(2, rank + 2)) + (1,)
    yt = getattr(F, name)(xt, layer.pool_size, layer.strides).permute(*back)
    (yt * torch.tensor(projection)).sum().backward()
    close(y, yt.detach().numpy(), what="forward")
    close(dx, xt.grad.permute(*back).numpy(), what="input gradient")


@pytest.mark.parametrize("cls, shape", [
    (L.GlobalAveragePooling1D, (2, 7, 3)), (L.GlobalMaxPooling1D, (2, 7, 3)),
    (L.GlobalAveragePooling3D, (2, 3, 4, 5, 3)), (L.GlobalMaxPooling3D, (2, 3, 4, 5, 3)),
])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_poolings_of_any_rank(rng, cls, shape, keepdims):
    layer = cls(keepdims=keepdims)
    x = rng.standard_normal(shape).astype(np.float32)
    axes = tuple(range(1, len(shape) - 1))
    expected = x.max(axes, keepdims=keepdims) if "Max" in cls.__name__ else x.mean(axes, keepdims=keepdims)
    close(layer(x), expected, what="forward")
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + expected.shape[1:]
    check(lambda xs, training: layer(xs, training=training), [x], [])


def reference_bilinear(x, scale):
    """Half-pixel-centre bilinear resize of (N, H, W, C) by integer factors, cell by cell."""
    n, h, w, c = x.shape
    out = np.zeros((n, h * scale[0], w * scale[1], c))

    def source(o, s, size):
        p = max((o + 0.5) / s - 0.5, 0.0)
        lo = min(int(np.floor(p)), size - 1)
        return lo, min(lo + 1, size - 1), p - lo
    for i in range(h * scale[0]):
        r0, r1, fr = source(i, scale[0], h)
        for j in range(w * scale[1]):
            c0, c1, fc = source(j, scale[1], w)
            out[:, i, j] = ((1 - fr) * ((1 - fc) * x[:, r0, c0] + fc * x[:, r0, c1])
                            + fr * ((1 - fc) * x[:, r1, c0] + fc * x[:, r1, c1]))
    return out


@pytest.mark.parametrize("factory, shape", [
    (lambda: L.UpSampling1D(3), (2, 5, 3)),
    (lambda: L.UpSampling2D((2, 3)), (2, 4, 3, 2)),
    (lambda: L.UpSampling2D((2, 3), interpolation="bilinear"), (2, 4, 3, 2)),
    (lambda: L.UpSampling2D(4, interpolation="bilinear"), (1, 3, 5, 2)),
])
def test_upsampling_matches_reference_and_finite_differences(rng, factory, shape):
    layer = factory()
    x = rng.standard_normal(shape).astype(np.float32)
    if layer.interpolation == "bilinear":
        expected = reference_bilinear(x, layer.size)
    else:
        expected = x
        for axis, s in enumerate(layer.size, start=1):
            expected = np.repeat(expected, s, axis=axis)
    close(layer(x), expected, what="forward")
    check(lambda xs, training: layer(xs, training=training), [x], [])


@pytest.mark.parametrize("mode", ["nearest", "bilinear"])
def test_upsampling2d_forward_and_backward_equal_torch(rng, mode):
    torch = pytest.importorskip("torch")
    layer = L.UpSampling2D((2, 3), interpolation=mode)
    x = rng.standard_normal((2, 5, 4, 3)).astype(np.float32)
    y, projection, (dx,), _ = forward_backward(layer, x)
    xt = torch.tensor(x).permute(0, 3, 1, 2).requires_grad_()
    kwargs = {"align_corners": False} if mode == "bilinear" else {}
    yt = torch.nn.functional.interpolate(xt, scale_factor=(2, 3), mode=mode, **kwargs).permute(0, 2, 3, 1)
    (yt * torch.tensor(projection)).sum().backward()
    close(y, yt.detach().numpy(), what="forward")
    close(dx, xt.grad.permute(0, 2, 3, 1).numpy(), what="input gradient")


@pytest.mark.parametrize("factory, shape, window", [
    (lambda: L.ZeroPadding1D(2), (2, 5, 3), None),
    (lambda: L.ZeroPadding1D((1, 3)), (2, 5, 3), None),
    (lambda: L.ZeroPadding2D(((1, 2), (0, 3))), (2, 4, 3, 2), None),
    (lambda: L.ZeroPadding3D((1, 0, 2)), (1, 2, 3, 4, 2), None),
    (lambda: L.ZeroPadding3D(((0, 1), (2, 0), (1, 1))), (1, 2, 3, 4, 2), None),
    (lambda: L.Cropping1D((1, 2)), (2, 6, 3), (slice(1, 4),)),
    (lambda: L.Cropping1D(1), (2, 6, 3), (slice(1, 5),)),
    (lambda: L.Cropping2D(((1, 0), (2, 1))), (2, 5, 6, 2), (slice(1, 5), slice(2, 5))),
    (lambda: L.Cropping2D((1, 2)), (2, 5, 6, 2), (slice(1, 4), slice(2, 4))),
])
def test_padding_and_cropping(tmp_path, rng, factory, shape, window):
    layer = factory()
    x = rng.standard_normal(shape).astype(np.float32)
    y = layer(x)
    if window is None:
        expected = np.pad(x, ((0, 0),) + layer.padding + ((0, 0),))
    else:
        expected = x[(slice(None),) + window]
    np.testing.assert_array_equal(y, expected)
    assert layer.compute_output_shape((None,) + shape[1:]) == (None,) + y.shape[1:]
    check(lambda xs, training: layer(xs, training=training), [x], [])
    config_round_trip(layer, x)


def test_shape_layers_save_in_model_files(tmp_path, rng):
    x = rng.standard_normal((2, 8, 3)).astype(np.float32)
    model_file_round_trip(tmp_path, L.Cropping1D((1, 2)), x)
    x3 = rng.standard_normal((2, 4, 4, 4, 3)).astype(np.float32)
    model_file_round_trip(tmp_path, L.MaxPooling3D(2, padding="same"), x3)
    for layer in (L.UpSampling2D(2, interpolation="bilinear"), L.GlobalMaxPooling1D(keepdims=True),
                  L.AveragePooling1D(3, padding="same"), L.ZeroPadding3D(1)):
        config_round_trip(layer, x3 if layer.rank == 3 else x if layer.rank == 1 else x3[:, 0])


@pytest.mark.parametrize("make, message", [
    (lambda: L.ZeroPadding2D(((1, 2, 3), (0, 1))), "padding"),
    (lambda: L.Cropping1D(-1), "cropping"),
    (lambda: L.UpSampling2D(2, interpolation="bicubic"), "interpolation"),
    (lambda: L.MaxPooling3D((2, 2)), "pool_size"),
])
def test_bad_arguments_get_clear_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_cropping_everything_is_refused(rng):
    with pytest.raises(ValueError, match="Crop less"):
        L.Cropping1D((3, 3))(rng.standard_normal((1, 6, 2)).astype(np.float32))
