"""An inverted-residual block's bands (mbconv_bands.inverted_residual) as a native job of a worker's job
table (tlkit/utils/job_table.py; the other kinds and the conventions: kernels/jobs.py).

The job runs the worker's run of bands as the Python chunk does: per band, expand the input rows it
needs through gemm_blocks (those it shares with the previous band of the image moved, not recomputed),
the depthwise kernel, the projection (+ residual) through gemm_blocks straight into ``out``. Only blocks
whose products both go through gemm_blocks and with no stem rows (``stem=``) have a poster.
"""
import numpy as np
from numba import carray, cfunc, njit

from tlkit.engine.kernels import gemm_blocks
from tlkit.engine.kernels.depthwise_rows import _rows_narrow, _rows_wide, takes_rows, wide_blocks
from tlkit.engine.kernels.depthwise_tiles import _forward_tiles
from tlkit.engine.kernels.jobs import _JOB, _address, _carve, _once, worker_scratch
from tlkit.utils.job_table import ARGS, FN, call_kernel, float32_pointer, float64_pointer, int64_pointer, kernel_key, \
    store_posted

_MBCONV_ARGS = 41


@njit(inline="always")
def _block(address, offset, rows, cols):
    """Rows [offset / cols ...) of a C-contiguous float32 array at ``address``, as (rows, cols)."""
    return carray(float32_pointer(address + 4 * offset), (rows, cols))


def _mbconv_job(expand_run_key, project_run_key, depthwise_key, by_rows):
    @cfunc(_JOB, cache=True)
    def job(pointer):
        a = carray(pointer, _MBCONV_ARGS)
        fa = carray(float64_pointer(pointer), _MBCONV_ARGS)
        h, w, c, e, f, oh, ow = a[2], a[3], a[4], a[10], a[23], a[27], a[28]
        has_expand, has_res = a[5] != 0, a[24] != 0
        kh, sh, sw, top, left = a[12], a[15], a[16], a[17], a[18]
        k = carray(float32_pointer(a[11]), (kh, a[13], e))
        kb = carray(float32_pointer(a[14]), (e,))
        e_panels = carray(float32_pointer(a[6]), (a[7], c, a[8]))
        e_bias = carray(float32_pointer(a[9]), (a[7] * a[8],))
        p_panels = carray(float32_pointer(a[19]), (a[20], e, a[21]))
        p_bias = carray(float32_pointer(a[22]), (a[20] * a[21],))
        pieces = carray(int64_pointer(a[29]), (a[31], 4))
        elo, ehi, klo, khi = np.float32(fa[34]), np.float32(fa[35]), np.float32(fa[36]), np.float32(fa[37])
        plo, phi = np.float32(fa[38]), np.float32(fa[39])
        expanded, free = _carve(a[40], a[32])
        depthwise_out = _carve(free, a[33])[0]
        x_flat = carray(float32_pointer(a[0]), (a[1] * h * w * c,))
        held0, held1, held2 = -1, 0, 0  # image, first row, last row + 1 of the expanded rows held
        for i in range(a[30], a[31]):
            n0, n1, r0, r1 = pieces[i, 0], pieces[i, 1], pieces[i, 2], pieces[i, 3]
            images = n1 - n0
            lo_row = max(0, r0 * sh - top) if images == 1 else 0
            hi_row = min(h, (r1 - 1) * sh - top + kh) if images == 1 else h
            if has_expand:
                xe = expanded[:images * (hi_row - lo_row) * w * e].reshape(images, hi_row - lo_row, w, e)
                new = lo_row
                if held0 == n0 and images == 1 and held1 <= lo_row < held2:
                    kept = expanded[:(held2 - held1) * w * e].reshape(held2 - held1, w, e)
                    xe[0, :held2 - lo_row] = kept[lo_row - held1:]
                    new = held2
                if new < hi_row:
                    rows = images * (hi_row - new) * w
                    x2 = x_flat[((n0 * h + new) * w) * c:((n0 * h + new) * w) * c + rows * c].reshape(rows, c)
                    skip = (new - lo_row) * w * e  # xe[:, new - lo_row:], contiguous (one image, or new == lo_row)
                    e2 = expanded[skip:skip + rows * e].reshape(rows, e)
                    call_kernel(expand_run_key, x2, e_panels, e_bias, e2, e2, False, elo, ehi)
                held0, held1, held2 = (n0, lo_row, hi_row) if images == 1 else (-1, 0, 0)
            else:
                start = (n0 * h + lo_row) * w * c
                xe = x_flat[start:start + images * (hi_row - lo_row) * w * c].reshape(images, hi_row - lo_row, w, c)
            d = depthwise_out[:images * (r1 - r0) * ow * e].reshape(images, r1 - r0, ow, e)
            if by_rows:  # forward_rows's bands on one thread; a band's output is never large enough to stream
                bands = 1 if images >= 2 else min(r1 - r0, 2)
                call_kernel(depthwise_key, xe, k, kb, klo, khi, 1, top + lo_row - r0 * sh, left, bands, d, d.reshape(-1), 0,
                            False)
            else:
                call_kernel(depthwise_key, xe, k, kb, klo, khi, sh, sw, 1, top + lo_row - r0 * sh, left, d)
            rows = images * (r1 - r0) * ow
            offset = ((n0 * oh + r0) * ow) * f
            o2 = _block(a[26], offset, rows, f)
            r2 = _block(a[25], offset, rows, f) if has_res else o2
            call_kernel(project_run_key, d.reshape(rows, e), p_panels, p_bias, o2, r2, has_res, plo, phi)

    return job


@njit(cache=True)
def post_mbconv(table, fn, x, e_panels, e_bias, has_expand, k, kb, strides, top, left, p_panels, p_bias, residual,
                has_res, out, pieces, first, last, expanded_floats, depthwise_floats, bounds, worker_scratch):
    """Writes an inverted-residual job over pieces [first, last) in ``table`` and posts it (arrays
    C-contiguous; bounds: float64 (elo, ehi, klo, khi, plo, phi))."""
    a = table[ARGS:]
    fa = table.view(np.float64)[ARGS:]
    table[FN] = fn
    a[0], a[1], a[2], a[3], a[4] = _address(x), x.shape[0], x.shape[1], x.shape[2], x.shape[3]
    a[5], a[6], a[7], a[8], a[9], a[10] = has_expand, _address(e_panels), e_panels.shape[0], e_panels.shape[2], \
        _address(e_bias), k.shape[2]
    a[11], a[12], a[13], a[14], a[15], a[16] = _address(k), k.shape[0], k.shape[1], _address(kb), strides[0], strides[1]
    a[17], a[18] = top, left
    a[19], a[20], a[21], a[22], a[23] = _address(p_panels), p_panels.shape[0], p_panels.shape[2], _address(p_bias), \
        out.shape[3]
    a[24], a[25], a[26], a[27], a[28] = has_res, _address(residual), _address(out), out.shape[1], out.shape[2]
    a[29], a[30], a[31], a[32], a[33] = _address(pieces), first, last, expanded_floats, depthwise_floats
    for i in range(6):
        fa[34 + i] = bounds[i]
    a[40] = _address(worker_scratch)
    store_posted(table)


def mbconv_poster(x, expand, expand_packed, depthwise, project_packed, project_bounds, residual, out, pieces,
                  expanded_floats, depthwise_floats):
    """A poster of inverted_residual's chunks: pieces [lo, hi) of ``pieces``, the depthwise conv by the
    route depthwise_tiles.forward_tiles takes. None when a product is not through gemm_blocks or an
    array is not C-contiguous float32."""
    driver = gemm_blocks._driver
    k, kb, klo, khi, strides, top, left = depthwise
    arrays = (x, k, kb, out) + (() if residual is None else (residual,))
    if project_packed is None or (expand is not None and expand_packed is None) or \
            not all(a.dtype == np.float32 and a.flags.c_contiguous for a in arrays):
        return None
    project_run = driver(project_packed.mr, project_packed.nv, project_packed.w)
    expand_run = project_run if expand is None else driver(expand_packed.mr, expand_packed.nv, expand_packed.w)
    by_rows = bool(takes_rows(k.shape, strides[0], strides[1], out.shape[:3] + (k.shape[2],)))
    depthwise_kernel = (_rows_wide if wide_blocks(out.shape[2]) else _rows_narrow) if by_rows else _forward_tiles
    fn = _once(("mbconv", expand_run, project_run, depthwise_kernel, by_rows),
               lambda: _mbconv_job(kernel_key(expand_run), kernel_key(project_run), kernel_key(depthwise_kernel),
                                   by_rows)).address
    e_packed = project_packed if expand is None else expand_packed
    bounds = np.array([-np.inf, np.inf] if expand is None else expand[2:4], np.float64)
    bounds = np.concatenate([bounds, [klo, khi], project_bounds]).astype(np.float64)
    table_pieces = np.array(pieces, np.int64).reshape(-1, 4)
    res = out if residual is None else residual
    scratch = worker_scratch(expanded_floats + depthwise_floats + 32)

    def post(table, first, last):
        post_mbconv(table, fn, x, e_packed.panels, e_packed.bias, expand is not None, k, kb, strides, top, left,
                    project_packed.panels, project_packed.bias, res, residual is not None, out, table_pieces, first,
                    last, expanded_floats, depthwise_floats, bounds, scratch)
        return True
    return post
