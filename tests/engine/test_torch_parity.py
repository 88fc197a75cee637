"""A whole small network against PyTorch with the same weights: outputs and every gradient."""
import numpy as np
import pytest

import tlkit
from tlkit import layers as L
from tlkit.engine.tape import GradientTape

torch = pytest.importorskip("torch")
F = torch.nn.functional


def test_small_network_matches_torch(rng):
    inp = tlkit.Input((9, 9, 3))
    x = L.Conv2D(6, 3, strides=1, padding="same", activation="relu", name="c1")(inp)   # symmetric pad 1
    x = L.MaxPooling2D(3, strides=2, name="p1")(x)                                     # 9 -> 4
    sq = L.Conv2D(4, 1, activation="relu", name="sq")(x)
    e1 = L.Conv2D(3, 1, activation="relu", name="e1")(sq)
    e3 = L.Conv2D(3, 3, padding="same", activation="relu", name="e3")(sq)
    x = L.Concatenate(name="cat")([e1, e3])
    x = L.AveragePooling2D(2, name="p2")(x)
    x = L.Flatten(name="flat")(x)
    out = L.Dense(5, name="logits")(x)
    model = tlkit.Model(inp, out)

    xb = rng.standard_normal((3, 9, 9, 3)).astype(np.float32)
    dy = rng.standard_normal((3, 5)).astype(np.float32)
    with GradientTape() as tape:
        tape.watch(xb)
        y = model(xb, training=True)
    wgrads, (dx,) = tape.backprop([y], [dy], sources=[xb])

    def conv_w(name):
        k, b = model.get_layer(name).get_weights()
        return (torch.tensor(k.transpose(3, 2, 0, 1), requires_grad=True), torch.tensor(b, requires_grad=True))

    params = {n: conv_w(n) for n in ("c1", "sq", "e1", "e3")}
    dk, db = model.get_layer("logits").get_weights()
    params["logits"] = (torch.tensor(dk, requires_grad=True), torch.tensor(db, requires_grad=True))
    tx = torch.tensor(xb.transpose(0, 3, 1, 2), requires_grad=True)
    t = F.relu(F.conv2d(tx, *params["c1"], padding=1))
    t = F.max_pool2d(t, 3, 2)
    t = F.relu(F.conv2d(t, *params["sq"]))
    t = torch.cat([F.relu(F.conv2d(t, *params["e1"])), F.relu(F.conv2d(t, *params["e3"], padding=1))], dim=1)
    t = F.avg_pool2d(t, 2)
    t = t.permute(0, 2, 3, 1).reshape(3, -1)  # channels-last flatten, as tlkit/Keras do
    ty = t @ params["logits"][0] + params["logits"][1]
    ty.backward(torch.tensor(dy))

    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-5)
    for name, (tk, tb) in params.items():
        layer = model.get_layer(name)
        gk = wgrads[id(layer.kernel)][1]
        gb = wgrads[id(layer.bias)][1]
        want_k = tk.grad.numpy() if name == "logits" else tk.grad.numpy().transpose(2, 3, 1, 0)
        np.testing.assert_allclose(gk, want_k, rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(gb, tb.grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)
