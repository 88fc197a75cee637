"""The gradients of winograd.conv3x3. The weight gradient: the adjoint of its forward. With M[k] = V[k] @ U[k] and
y = A^T M A per tile, dL/dU[k] = sum over tiles of V[k]^T @ (A dy_t A^T)[k], then dw = G^T dU G: 36
products (C x tiles) @ (tiles x F), 4x fewer flops than the im2col product, same transforms of x.

The input gradient: another Winograd conv (``conv3x3_backward_input``).

    dw = conv3x3_backward_weights(x, dy, 1, 1)
    dx = conv3x3_backward_input(dy, w, 1, 1, x.shape[1:3])
"""
import numpy as np
from numba import njit, prange

from tlkit.engine.kernels import winograd
from tlkit.engine.kernels.winograd import CHUNK_BYTES, MIN_TILES, input_transform
from tlkit.engine.kernels.winograd_filters import filter_transform, filter_transform_adjoint
from tlkit.utils import workspace
from tlkit.utils.threads import matmul


@njit(cache=True, nogil=True, parallel=True)
def output_transform_adjoint(dy, tile_rows, tr0, tiles_h, tiles_w, dm):
    """dm[:, t, f] = A dy_t A^T, dy_t the 4x4 block of dy under tile t (zeros past the edges)."""
    _, oh, ow, f = dy.shape
    for job in prange(tile_rows):
        img = (tr0 + job) // tiles_h
        tr = (tr0 + job) % tiles_h
        e = np.zeros((4, 4, f), np.float32)
        s = np.empty((6, 4, f), np.float32)
        for tc in range(tiles_w):
            t = job * tiles_w + tc
            rows = min(4, oh - tr * 4)
            cols = min(4, ow - tc * 4)
            if rows < 4 or cols < 4:
                e[:] = 0.0
            for i in range(rows):
                for j in range(cols):
                    for c in range(f):
                        e[i, j, c] = dy[img, tr * 4 + i, tc * 4 + j, c]
            for j in range(4):  # s = A e (along rows)
                for c in range(f):
                    e0 = e[0, j, c]; e1 = e[1, j, c]; e2 = e[2, j, c]; e3 = e[3, j, c]
                    s[0, j, c] = e0
                    s[1, j, c] = e0 + e1 + e2 + e3
                    s[2, j, c] = e0 - e1 + e2 - e3
                    s[3, j, c] = e0 + 2.0 * e1 + 4.0 * e2 + 8.0 * e3
                    s[4, j, c] = e0 - 2.0 * e1 + 4.0 * e2 - 8.0 * e3
                    s[5, j, c] = e3
            for i in range(6):  # dm = s A^T (along columns)
                for c in range(f):
                    e0 = s[i, 0, c]; e1 = s[i, 1, c]; e2 = s[i, 2, c]; e3 = s[i, 3, c]
                    dm[i * 6 + 0, t, c] = e0
                    dm[i * 6 + 1, t, c] = e0 + e1 + e2 + e3
                    dm[i * 6 + 2, t, c] = e0 - e1 + e2 - e3
                    dm[i * 6 + 3, t, c] = e0 + 2.0 * e1 + 4.0 * e2 + 8.0 * e3
                    dm[i * 6 + 4, t, c] = e0 - 2.0 * e1 + 4.0 * e2 - 8.0 * e3
                    dm[i * 6 + 5, t, c] = e3


def conv3x3_backward_weights(x, dy, pad_top, pad_left):
    """dw (3, 3, C, F) of the conv3x3 above, given x (N, H, W, C) and dy = dL/dy (N, OH, OW, F)."""
    n, _, _, ch = x.shape
    _, oh, ow, f = dy.shape
    tiles_h, tiles_w = -(-oh // 4), -(-ow // 4)
    total_rows = n * tiles_h
    rows_per_chunk = max(CHUNK_BYTES // (36 * tiles_w * (ch + f) * 4), -(-MIN_TILES // tiles_w))
    rows_per_chunk = min(rows_per_chunk, total_rows)
    # Scratch reused between calls (workspace): fresh, du alone (36 x C x F, 38 MB at 512 x 512) would
    # cost its page faults and zeroing each call, a quarter of the call at 14x14x512, batch 8.
    v = workspace.take((36, rows_per_chunk * tiles_w, ch), np.float32)
    dm = workspace.take((36, rows_per_chunk * tiles_w, f), np.float32)
    du = workspace.take((36, ch, f), np.float32)
    part = None if rows_per_chunk == total_rows else workspace.take(du.shape, np.float32)
    for r0 in range(0, total_rows, rows_per_chunk):
        rows = min(rows_per_chunk, total_rows - r0)
        t = rows * tiles_w
        input_transform(x, rows, r0, tiles_h, tiles_w, pad_top, pad_left, v)
        output_transform_adjoint(dy, rows, r0, tiles_h, tiles_w, dm)
        vt = v[:, :t].transpose(0, 2, 1)
        if r0 == 0:
            matmul(vt, dm[:, :t], du)
        else:
            matmul(vt, dm[:, :t], part)
            du += part
    dw = np.empty((3, 3, ch, f), np.float32)
    filter_transform_adjoint(du, dw)
    workspace.give_back([v, dm, du, part])
    return dw


def conv3x3_backward_input(dy, w, pad_top, pad_left, out_hw):
    """dx (N, H, W, C) given dy (N, OH, OW, F) and the forward's kernel w (3, 3, C, F): the 'full'
    correlation of dy with w rotated 180 degrees and in/out swapped, a Winograd conv padded by
    (pad_top, pad_left) (2 - the forward's) with out_hw = (H, W). Its transformed filter
    G w_rot G^T is, plane by plane, the transpose of G w[::-1, ::-1] G^T: that is computed whole from
    a copy of w with its taps reversed (plane copies; transposing w instead strides across rows),
    into pooled buffers (no fresh 38 MB at 512 x 512), and multiplied as a transposed view (BLAS
    reads it in place)."""
    w_rev = workspace.take(w.shape, np.float32)
    np.copyto(w_rev, w[::-1, ::-1])
    u = workspace.take((36,) + w.shape[2:], np.float32)
    filter_transform(w_rev, 0, u)
    dx = winograd.conv3x3(dy, None, u.transpose(0, 2, 1), None, pad_top, pad_left, out_hw, False)
    workspace.give_back([u, w_rev])
    return dx
