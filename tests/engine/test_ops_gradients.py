"""Every differentiable op's vector-Jacobian product against central finite differences (float64)."""
import numpy as np
import pytest

from tests.engine.gradcheck import analytic, numeric
from tlkit import ops

R = np.random.default_rng(0)


def away_from_zero(*shape):
    """Values with |x| in [0.3, 1.3]: no kinks of abs/relu/max within a finite-difference step."""
    return R.choice([-1.0, 1.0], size=shape) * R.uniform(0.3, 1.3, size=shape)


def positive(*shape):
    return R.uniform(0.5, 2.0, size=shape)


def distinct(*shape):
    """Entries at least 0.01 apart (no ties for max/sort)."""
    return R.permutation(np.arange(int(np.prod(shape))) * 0.05 - 1.0).reshape(shape)


def check_op(fn, *inputs, rtol=1e-6, atol=1e-8, eps=1e-6):
    inputs = [np.array(x, np.float64) for x in inputs]
    out = np.asarray(fn(*inputs))
    projection = R.standard_normal(out.shape)
    grads, _ = analytic(lambda xs: fn(*xs) if len(inputs) > 1 else fn(xs), inputs, [], projection)
    for i, (x, g) in enumerate(zip(inputs, grads)):
        assert g is not None, f"no gradient for input {i}"
        assert np.shape(g) == x.shape, f"gradient of input {i} has shape {np.shape(g)}, input {x.shape}"
        idx, num = numeric(lambda: np.asarray(fn(*inputs), np.float64), x, projection, eps=eps, max_entries=40)
        np.testing.assert_allclose(np.asarray(g).reshape(-1)[idx], num, rtol=rtol,
                                   atol=atol + 1e-6 * np.abs(num).max(), err_msg=f"gradient of input {i}")


A, B = (3, 4), (4, 5)
CASES = {
    "add_broadcast": (lambda a, b: ops.add(a, b), [away_from_zero(3, 4), away_from_zero(4)]),
    "subtract": (lambda a, b: ops.subtract(a, b), [away_from_zero(3, 1), away_from_zero(1, 4)]),
    "multiply": (lambda a, b: ops.multiply(a, b), [away_from_zero(2, 3, 4), away_from_zero(3, 1)]),
    "divide": (lambda a, b: ops.divide(a, b), [away_from_zero(3, 4), positive(4)]),
    "power": (lambda a, b: ops.power(a, b), [positive(3, 4), away_from_zero(3, 4)]),
    "power_scalar": (lambda a: ops.power(a, 3), [away_from_zero(3, 4)]),
    "maximum": (lambda a, b: ops.maximum(a, b), [distinct(3, 4), distinct(3, 4) + 0.013]),
    "minimum": (lambda a, b: ops.minimum(a, b), [distinct(3, 4), distinct(4) + 0.017]),
    "negative": (ops.negative, [away_from_zero(5)]),
    "exp": (ops.exp, [away_from_zero(3, 4)]),
    "expm1": (ops.expm1, [away_from_zero(3, 4)]),
    "log": (ops.log, [positive(3, 4)]),
    "log1p": (ops.log1p, [positive(3, 4)]),
    "sqrt": (ops.sqrt, [positive(3, 4)]),
    "rsqrt": (ops.rsqrt, [positive(3, 4)]),
    "square": (ops.square, [away_from_zero(3, 4)]),
    "abs": (ops.abs, [away_from_zero(3, 4)]),
    "sin_cos": (lambda a: ops.sin(a) * ops.cos(a), [away_from_zero(6)]),
    "tanh": (ops.tanh, [away_from_zero(3, 4)]),
    "sigmoid": (ops.sigmoid, [away_from_zero(3, 4) * 3]),
    "softplus": (ops.softplus, [away_from_zero(3, 4) * 3]),
    "relu": (ops.relu, [away_from_zero(3, 4)]),
    "leaky_relu": (lambda a: ops.leaky_relu(a, 0.1), [away_from_zero(3, 4)]),
    "gelu_tanh": (ops.gelu, [away_from_zero(3, 4) * 2]),
    "gelu_exact": (lambda a: ops.gelu(a, approximate=False), [away_from_zero(3, 4) * 2]),
    "erf": (ops.erf, [away_from_zero(3, 4)]),
    "silu": (ops.silu, [away_from_zero(3, 4) * 2]),
    "softmax": (lambda a: ops.softmax(a, axis=1), [away_from_zero(2, 5, 3)]),
    "log_softmax": (ops.log_softmax, [away_from_zero(4, 6) * 3]),
    "clip": (lambda a: ops.clip(a, -0.8, 0.9), [away_from_zero(5, 4) * 1.5]),
    "where": (lambda a, b: ops.where(np.arange(4) % 2 == 0, a, b), [away_from_zero(3, 4), away_from_zero(3, 1)]),
    "sum_axis": (lambda a: ops.sum(a, axis=(0, 2)), [away_from_zero(2, 3, 4)]),
    "sum_keepdims": (lambda a: ops.sum(a, axis=1, keepdims=True), [away_from_zero(2, 3, 4)]),
    "mean": (lambda a: ops.mean(a, axis=-1), [away_from_zero(3, 4)]),
    "mean_all": (ops.mean, [away_from_zero(3, 4)]),
    "max": (lambda a: ops.max(a, axis=1), [distinct(3, 4)]),
    "min_all": (ops.min, [distinct(3, 4)]),
    "logsumexp": (lambda a: ops.logsumexp(a, axis=0), [away_from_zero(3, 4)]),
    "var": (lambda a: ops.var(a, axis=0), [away_from_zero(5, 3)]),
    "std": (lambda a: ops.std(a, axis=1, keepdims=True), [away_from_zero(3, 6)]),
    "cumsum": (lambda a: ops.cumsum(a, axis=1), [away_from_zero(3, 4)]),
    "cumsum_flat": (ops.cumsum, [away_from_zero(3, 4)]),
    "reshape": (lambda a: ops.reshape(a, (4, -1)), [away_from_zero(2, 3, 2)]),
    "transpose": (lambda a: ops.transpose(a, (2, 0, 1)) * np.arange(3)[:, None, None], [away_from_zero(2, 4, 3)]),
    "expand_squeeze": (lambda a: ops.squeeze(ops.expand_dims(a, 1), 1) * 2, [away_from_zero(3, 4)]),
    "broadcast_to": (lambda a: ops.broadcast_to(a, (3, 4)), [away_from_zero(4)]),
    "concatenate": (lambda a, b: ops.concatenate([a, b, a], axis=1), [away_from_zero(2, 3), away_from_zero(2, 1)]),
    "stack": (lambda a, b: ops.stack([a, b], axis=-1), [away_from_zero(2, 3), away_from_zero(2, 3)]),
    "split": (lambda a: ops.split(a, [1, 3], axis=1)[1] * ops.split(a, 2, axis=0)[0][:, 1:3], [away_from_zero(2, 4)]),
    "getitem_slices": (lambda a: ops.convert_to_tensor(a)[1:, ::2, None], [away_from_zero(3, 4)]),
    "getitem_fancy": (lambda a: ops.getitem(a, (np.array([0, 2, 0]), slice(1, None))), [away_from_zero(3, 4)]),
    "getitem_mask": (lambda a: ops.getitem(a, np.arange(12).reshape(3, 4) % 3 == 0), [away_from_zero(3, 4)]),
    "take": (lambda a: ops.take(a, np.array([[1, 0], [1, 2]]), axis=1), [away_from_zero(3, 4)]),
    "take_flat": (lambda a: ops.take(a, np.array([5, 5, 0])), [away_from_zero(3, 4)]),
    "take_along_axis": (lambda a: ops.take_along_axis(a, np.array([[0, 0], [2, 1], [3, 3]]), axis=1),
                        [away_from_zero(3, 4)]),
    "sort": (lambda a: ops.sort(a, axis=0) * np.arange(4), [distinct(3, 4)]),
    "top_k": (lambda a: ops.top_k(a, 2)[0], [distinct(3, 5)]),
    "cast": (lambda a: ops.cast(ops.multiply(a, 2), "float64"), [away_from_zero(3)]),
    "matmul": (ops.matmul, [away_from_zero(*A), away_from_zero(*B)]),
    "matmul_batched": (ops.matmul, [away_from_zero(2, 3, 4), away_from_zero(4, 2)]),
    "matmul_vector": (ops.matmul, [away_from_zero(4), away_from_zero(2, 4, 3)]),
    "dot_matrix": (ops.dot, [away_from_zero(*A), away_from_zero(*B)]),
    "dot_nd": (ops.dot, [away_from_zero(2, 3, 4), away_from_zero(5, 4, 2)]),
    "tensordot": (lambda a, b: ops.tensordot(a, b, axes=([1, 2], [0, 1])), [away_from_zero(2, 3, 4),
                                                                           away_from_zero(3, 4, 5)]),
    "einsum": (lambda a, b: ops.einsum("bij,jk->bik", a, b), [away_from_zero(2, 3, 4), away_from_zero(4, 5)]),
    "einsum_ellipsis_sum": (lambda a, b: ops.einsum("...i,i", a, b), [away_from_zero(2, 3, 4), away_from_zero(4)]),
    "einsum_inner_sum": (lambda a: ops.einsum("ij->i", a), [away_from_zero(3, 4)]),
    "moments": (lambda a: ops.moments(a, axes=[0, 1])[0] * 3 + ops.moments(a, axes=[0, 1])[1],
                [away_from_zero(2, 3, 4)]),
    "norm_vector": (lambda a: ops.norm(a, axis=-1), [away_from_zero(3, 4)]),
    "norm_fro": (ops.norm, [away_from_zero(3, 4)]),
    "norm_l1": (lambda a: ops.norm(a, ord=1, axis=0), [away_from_zero(3, 4)]),
    "norm_p3": (lambda a: ops.norm(a, ord=3, axis=1), [away_from_zero(3, 4)]),
    "norm_matrix_inf": (lambda a: ops.norm(a, ord=np.inf), [distinct(3, 4)]),
    "normalize": (lambda a: ops.normalize(a, axis=-1), [away_from_zero(3, 4)]),
    "normalize_l1": (lambda a: ops.normalize(a, axis=0, order=1), [away_from_zero(3, 4)]),
    "categorical_crossentropy": (lambda p: ops.categorical_crossentropy(np.eye(4)[[0, 2, 3]], p),
                                 [positive(3, 4)]),
    "categorical_crossentropy_logits": (
        lambda z: ops.categorical_crossentropy(np.eye(4)[[0, 2, 3]], z, from_logits=True), [away_from_zero(3, 4)]),
    "sparse_categorical_crossentropy": (
        lambda z: ops.sparse_categorical_crossentropy(np.array([1, 0, 3]), z, from_logits=True),
        [away_from_zero(3, 4)]),
    "binary_crossentropy": (lambda p: ops.binary_crossentropy(np.array([0.0, 1.0, 1.0]), p),
                            [R.uniform(0.1, 0.9, 3)]),
    "binary_crossentropy_logits": (lambda z: ops.binary_crossentropy(np.array([0.0, 1.0, 0.3]), z, from_logits=True),
                                   [away_from_zero(3) * 3]),
    "convert_to_tensor": (lambda a: ops.convert_to_tensor(a) * 3, [away_from_zero(3)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_op_gradient_matches_finite_differences(name):
    fn, inputs = CASES[name]
    check_op(fn, *inputs)


def float32_check(fn, x, rtol=2e-2):
    """The numba kernels compute in float32: a coarser step and tolerance."""
    x = x.astype(np.float32)
    out = np.asarray(fn(x))
    projection = R.standard_normal(out.shape).astype(np.float32)
    (g,), _ = analytic(fn, [x], [], projection)
    idx, num = numeric(lambda: np.asarray(fn(x), np.float64), x, projection, eps=2e-3, max_entries=40)
    np.testing.assert_allclose(np.asarray(g).reshape(-1)[idx], num, rtol=rtol, atol=2e-3 * max(1, np.abs(num).max()))


@pytest.mark.parametrize("strides,padding,dilation", [(1, "valid", 1), (2, "same", 1), (1, "same", 2)])
def test_conv_gradients(strides, padding, dilation):
    x = R.standard_normal((2, 7, 6, 3)).astype(np.float32)
    w = R.standard_normal((3, 3, 3, 4)).astype(np.float32) * 0.3
    float32_check(lambda a: ops.conv(a, w, strides=strides, padding=padding, dilation_rate=dilation), x)
    float32_check(lambda k: ops.conv(x, k, strides=strides, padding=padding, dilation_rate=dilation), w)


def test_cast_to_float32_and_back():
    float32_check(lambda a: ops.cast(ops.cast(a, "float64") * 3, "float32"), away_from_zero(3, 4))


@pytest.mark.parametrize("op", [ops.max_pool, ops.average_pool])
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_pool_gradients(op, padding):
    x = distinct(2, 5, 7, 3).astype(np.float32)
    float32_check(lambda a: op(a, pool_size=2, strides=2, padding=padding), x)
    float32_check(lambda a: op(a, pool_size=(3, 2), strides=1, padding=padding), x)


def test_non_differentiable_ops_give_values_and_no_gradient():
    x = np.array([[0.2, -1.5, 3.0], [1.0, 0.0, -2.0]])
    np.testing.assert_array_equal(ops.argmax(x, axis=1), [2, 0])
    np.testing.assert_array_equal(ops.argmin(x), 5)
    np.testing.assert_array_equal(ops.sign(x), np.sign(x))
    np.testing.assert_array_equal(ops.one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    assert ops.one_hot(np.array([1]), 3).dtype == np.float32
    values, indices = ops.top_k(x, 2)
    np.testing.assert_array_equal(indices, [[2, 0], [0, 1]])
    np.testing.assert_array_equal(values, [[3.0, 0.2], [1.0, 0.0]])
    np.testing.assert_array_equal(ops.greater(x, 0), x > 0)
    assert ops.zeros((2, 3)).dtype == np.float32 and ops.ones_like(x).dtype == np.float64
    np.testing.assert_array_equal(ops.full_like(x, 7.0), np.full_like(x, 7.0))
    assert ops.shape(x) == (2, 3)
    import tlkit
    with tlkit.GradientTape() as tape:
        tape.watch(x)
        y = ops.sum(ops.stop_gradient(x) * 2 + ops.cast(ops.argmax(x, axis=1), "float64")[:, None])
    assert tape.gradient(y, x) is None


def test_forward_values_match_numpy():
    x, y = away_from_zero(3, 4), away_from_zero(4, 2)
    np.testing.assert_allclose(ops.matmul(x, y), x @ y)
    np.testing.assert_allclose(ops.einsum("ij,jk->ik", x, y), x @ y)
    np.testing.assert_allclose(ops.softmax(x), np.exp(x) / np.exp(x).sum(-1, keepdims=True))
    np.testing.assert_allclose(ops.log_softmax(x), np.log(np.exp(x) / np.exp(x).sum(-1, keepdims=True)))
    np.testing.assert_allclose(ops.std(x, axis=0), x.std(axis=0))
    np.testing.assert_allclose(ops.norm(x, ord=1), np.linalg.norm(x, ord=1))
    np.testing.assert_allclose(ops.norm(x, ord=-np.inf, axis=0), np.linalg.norm(x, ord=-np.inf, axis=0))
    np.testing.assert_allclose(ops.gelu(x, approximate=False),
                               0.5 * x * (1 + np.vectorize(__import__("math").erf)(x / np.sqrt(2))))
    np.testing.assert_allclose(ops.logsumexp(x, axis=1), np.log(np.exp(x).sum(1)))
    np.testing.assert_allclose(ops.sparse_categorical_crossentropy(np.array([1, 0, 3]), x, from_logits=True),
                               -np.log(np.exp(x) / np.exp(x).sum(-1, keepdims=True))[[0, 1, 2], [1, 0, 3]])
    xs = R.standard_normal((1, 4, 4, 1)).astype(np.float32)
    np.testing.assert_allclose(ops.max_pool(xs, 2), xs.reshape(1, 2, 2, 2, 2, 1).max(axis=(2, 4)), rtol=1e-6)
    np.testing.assert_allclose(ops.average_pool(xs, 2), xs.reshape(1, 2, 2, 2, 2, 1).mean(axis=(2, 4)), rtol=1e-6)
