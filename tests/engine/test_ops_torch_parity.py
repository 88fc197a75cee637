"""tlkit.ops values and gradients against PyTorch (optional oracle: skipped without torch)."""
import numpy as np
import pytest

import tlkit
from tlkit import ops

torch = pytest.importorskip("torch")
F = torch.nn.functional
R = np.random.default_rng(3)

CASES = {
    "gelu_exact": (lambda a: ops.gelu(a, approximate=False), lambda a: F.gelu(a), [(4, 5)]),
    "gelu_tanh": (ops.gelu, lambda a: F.gelu(a, approximate="tanh"), [(4, 5)]),
    "silu": (ops.silu, F.silu, [(4, 5)]),
    "log_softmax": (lambda a: ops.log_softmax(a, axis=0), lambda a: F.log_softmax(a, dim=0), [(4, 5)]),
    "softmax": (ops.softmax, lambda a: F.softmax(a, dim=-1), [(3, 6)]),
    "logsumexp": (lambda a: ops.logsumexp(a, axis=1), lambda a: torch.logsumexp(a, 1), [(3, 6)]),
    "einsum": (lambda a, b: ops.einsum("bij,bjk->bik", a, b), lambda a, b: torch.einsum("bij,bjk->bik", a, b),
               [(2, 3, 4), (2, 4, 5)]),
    "norm": (lambda a: ops.norm(a, axis=-1), lambda a: torch.linalg.vector_norm(a, dim=-1), [(3, 4)]),
    "std": (lambda a: ops.std(a, axis=0), lambda a: torch.std(a, dim=0, unbiased=False), [(5, 3)]),
    "cumsum": (lambda a: ops.cumsum(a, axis=1), lambda a: torch.cumsum(a, 1), [(3, 4)]),
    "normalize": (lambda a: ops.normalize(a), lambda a: F.normalize(a, dim=-1, eps=0), [(3, 4)]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_torch(name):
    mine, theirs, shapes = CASES[name]
    xs = [R.standard_normal(s) for s in shapes]
    with tlkit.GradientTape() as tape:
        for x in xs:
            tape.watch(x)
        out = mine(*xs)
        proj = R.standard_normal(out.shape)
        grads = tape.gradient(ops.sum(out * proj), xs)
    txs = [torch.tensor(x, requires_grad=True) for x in xs]
    tout = theirs(*txs)
    (tout * torch.tensor(proj)).sum().backward()
    np.testing.assert_allclose(out, tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    for g, t in zip(grads, txs):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_conv_and_pools_match_torch():
    x = R.standard_normal((2, 8, 7, 3)).astype(np.float32)
    w = (R.standard_normal((3, 3, 3, 4)) * 0.3).astype(np.float32)
    with tlkit.GradientTape(persistent=True) as tape:
        tape.watch([x, w])
        y = ops.conv(x, w, strides=2, padding="valid")
        p = ops.max_pool(y, 2, strides=1)
        a = ops.average_pool(y, 2, strides=1)
        loss = ops.sum(p * p) + ops.sum(a)
    gx, gw = tape.gradient(loss, [x, w])
    tx = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    tw = torch.tensor(w.transpose(3, 2, 0, 1), requires_grad=True)
    ty = F.conv2d(tx, tw, stride=2)
    tl = (F.max_pool2d(ty, 2, stride=1) ** 2).sum() + F.avg_pool2d(ty, 2, stride=1).sum()
    tl.backward()
    np.testing.assert_allclose(y, ty.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gw, tw.grad.numpy().transpose(2, 3, 1, 0), rtol=1e-4, atol=1e-4)
