"""Finite-difference checks of tlkit's backward passes (float32 engine, central differences)."""
import numpy as np

from tlkit.engine.tape import GradientTape


def analytic(fn, inputs, weights, projection):
    """dL/dinputs and dL/dweights of L = sum(fn(inputs) * projection), via the tape."""
    with GradientTape() as tape:
        for x in inputs:
            tape.watch(x)
        out = fn(inputs if len(inputs) > 1 else inputs[0])
    wgrads, xgrads = tape.backprop([out], [projection], sources=inputs)
    return xgrads, [wgrads.get(id(v), (v, np.zeros_like(v.value)))[1] for v in weights]


def numeric(fn, array, projection, eps=1e-2, max_entries=60, rng=None):
    """Central differences on up to ``max_entries`` random entries of ``array`` (modified in place)."""
    rng = rng or np.random.default_rng(0)
    flat = array.reshape(-1)
    idx = rng.choice(flat.size, size=min(max_entries, flat.size), replace=False)
    out = np.zeros(len(idx))
    for k, i in enumerate(idx):
        old = flat[i]
        flat[i] = old + eps
        up = float((fn().astype(np.float64) * projection).sum())
        flat[i] = old - eps
        down = float((fn().astype(np.float64) * projection).sum())
        flat[i] = old
        out[k] = (up - down) / (2 * eps)
    return idx, out


def check(fn, inputs, weights, training=False, rtol=2e-2, atol=2e-3, eps=2e-3, seed=0):
    """Assert the tape's gradients of every input and weight match central differences."""
    rng = np.random.default_rng(seed)
    inputs = [np.ascontiguousarray(x, np.float32) for x in inputs]
    call = lambda xs: fn(xs, training)
    out = call(inputs if len(inputs) > 1 else inputs[0])
    projection = rng.standard_normal(np.shape(out)).astype(np.float32)
    xgrads, wgrads = analytic(call, inputs, weights, projection)
    targets = [(f"input {i}", x, g) for i, (x, g) in enumerate(zip(inputs, xgrads))]
    targets += [(v.name, v.value, g) for v, g in zip(weights, wgrads)]
    for name, array, grad in targets:
        assert grad is not None, f"no gradient for {name}"
        again = lambda: call(inputs if len(inputs) > 1 else inputs[0])
        idx, num = numeric(again, array, projection, eps=eps, rng=rng)
        ana = np.asarray(grad, np.float64).reshape(-1)[idx]
        np.testing.assert_allclose(ana, num, rtol=rtol, atol=atol * max(1.0, np.abs(num).max()),
                                   err_msg=f"gradient of {name}")
