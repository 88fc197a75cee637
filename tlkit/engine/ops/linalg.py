"""Products: matmul, einsum (with its general vjp), tensordot and dot, as in ``keras.ops``."""
import string

import numpy as np

from tlkit.engine.ops.core import primitive, unbroadcast, value_of
from tlkit.engine.ops.math_ops import multiply


def _matmul_vjp(g, y, a, b):
    a, b = np.asarray(a), np.asarray(b)
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = g
    if a.ndim == 1:
        g2 = np.expand_dims(g2, -2)
    if b.ndim == 1:
        g2 = np.expand_dims(g2, -1)
    ga = g2 @ np.swapaxes(b2, -1, -2)
    gb = np.swapaxes(a2, -1, -2) @ g2
    ga = unbroadcast(ga, a2.shape).reshape(a.shape)
    gb = unbroadcast(gb, b2.shape).reshape(b.shape)
    return ga, gb


matmul = primitive("matmul", np.matmul, _matmul_vjp)


def _explicit(subscripts, shapes):
    """einsum subscripts with '...' spelled out and the output made explicit."""
    subscripts = subscripts.replace(" ", "")
    ins, _, out = subscripts.partition("->")
    ins = ins.split(",")
    used = set("".join(ins).replace(".", ""))
    spare = [c for c in string.ascii_letters if c not in used]
    n_ell = max((len(s) - len(t.replace("...", "")) for t, s in zip(ins, shapes) if "..." in t), default=0)
    ell = "".join(spare[:n_ell])
    full = []
    for t, s in zip(ins, shapes):
        if "..." in t:
            k = len(s) - len(t.replace("...", ""))
            t = t.replace("...", ell[n_ell - k:])
        full.append(t)
    if "->" not in subscripts:
        counts = {c: "".join(full).count(c) for c in set("".join(full))}
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    else:
        out = out.replace("...", ell)
    return full, out


def _einsum_forward(*operands, subscripts):
    return np.asarray(np.einsum(subscripts, *operands))


def _einsum_vjp(g, y, *operands, subscripts):
    ins, out = _explicit(subscripts, [np.shape(o) for o in operands])
    grads = []
    for i, (sub, op) in enumerate(zip(ins, operands)):
        if len(set(sub)) != len(sub):
            raise NotImplementedError(f"einsum: no gradient for operand {i} with a repeated index ({sub!r}, a "
                                      "diagonal or trace); take the diagonal with other ops first.")
        others = [(s, o) for j, (s, o) in enumerate(zip(ins, operands)) if j != i]
        available = set(out).union(*[set(s) for s, _ in others])
        target = "".join(c for c in sub if c in available)
        spec = ",".join([out] + [s for s, _ in others]) + "->" + target
        gi = np.einsum(spec, g, *[o for _, o in others])
        shape = np.shape(op)
        # Indices summed inside this operand alone: the gradient is the same along them.
        full_shape = [shape[k] if c in available else 1 for k, c in enumerate(sub)]
        gi = np.broadcast_to(gi.reshape(full_shape), shape)
        grads.append(np.ascontiguousarray(gi))
    return tuple(grads)


_einsum = primitive("einsum", _einsum_forward, _einsum_vjp)


def einsum(subscripts, *operands):
    return _einsum(*operands, subscripts=subscripts)


def tensordot(x1, x2, axes=2):
    a_nd, b_nd = np.ndim(value_of(x1)), np.ndim(value_of(x2))
    if isinstance(axes, (int, np.integer)):
        a_axes, b_axes = list(range(a_nd - axes, a_nd)), list(range(axes))
    else:
        a_axes, b_axes = ([axes[0]] if np.isscalar(axes[0]) else list(axes[0]),
                          [axes[1]] if np.isscalar(axes[1]) else list(axes[1]))
    a_axes, b_axes = [a % a_nd for a in a_axes], [b % b_nd for b in b_axes]
    letters = iter(string.ascii_letters)
    a_sub = [next(letters) for _ in range(a_nd)]
    b_sub = [next(letters) for _ in range(b_nd)]
    for a, b in zip(a_axes, b_axes):
        b_sub[b] = a_sub[a]
    out = [c for k, c in enumerate(a_sub) if k not in a_axes] + [c for k, c in enumerate(b_sub) if k not in b_axes]
    return einsum(f"{''.join(a_sub)},{''.join(b_sub)}->{''.join(out)}", x1, x2)


def dot(x1, x2):
    """numpy's dot: products of scalars, inner products, matrix products, and N-D as sum over the last
    axis of x1 and the second-to-last of x2."""
    a_nd, b_nd = np.ndim(value_of(x1)), np.ndim(value_of(x2))
    if a_nd == 0 or b_nd == 0:
        return multiply(x1, x2)
    if b_nd == 1 or (a_nd <= 2 and b_nd == 2):
        return matmul(x1, x2)
    return tensordot(x1, x2, axes=([a_nd - 1], [b_nd - 2]))


def vdot(x1, x2):
    from tlkit.engine.ops.shape_ops import reshape

    return matmul(reshape(x1, (-1,)), reshape(x2, (-1,)))
