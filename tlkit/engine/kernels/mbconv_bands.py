"""An inverted-residual block (MobileNetV2's, EfficientNet-Lite's) at inference, fused over bands of
output rows: expand 1x1 (+ folded BatchNormalization, ReLU6) -> depthwise (+ BN, ReLU6) -> project 1x1
(+ BN, residual), so the expanded activations (6x the block's input) never go to memory.

    inverted_residual(x, expand, depthwise, project, residual, out)

x (N, H, W, C); expand: (w (C, E), bias (E,), lo, hi) or None (expand ratio 1: E = C, the depthwise
conv reads x; or, with ``stem=`` a stem_conv.StemRows, x is an RGB image and the stem's rows are the
expanded rows); depthwise: (k (kh, kw, E), bias (E,), lo, hi, (sh, sw), top, left) with top/left the
zero rows and columns before x (TF 'same', or an absorbed ZeroPadding2D; out's shape sets the bottom
and right ones); project: (w (E, F), bias (F,), lo, hi); residual (N, OH, OW, F) or None; out the
C-contiguous float32 (N, OH, OW, F) result. Bounds are float32 (-inf / inf: none). The expand and project
weights must not be written in place between calls (folded weights): their packing for gemm_blocks is kept.

A band is some output rows of one image (large images) or a few whole images (small ones), sized so
that its expanded input rows and depthwise output stay in a core's L2 cache: one BLAS product expands
the band's input rows, the tiled depthwise kernel (depthwise_tiles.py) runs on them, one product
projects the result straight into ``out``, each followed by its bias / clip / residual pass on the
rows while they are in cache. A thread running consecutive bands of one image moves the expanded rows
their depthwise windows share (the halo) to the buffer's front instead of recomputing them. tlkit's
threads take runs of bands as they come free (``run_chunks``). Each band costs ~30 us of Python and
kernel dispatch, so bands are as large as BAND_BYTES allows (measured: 1 MB beat 256-768 KB on
MobileNetV2's blocks, though more than one core's L2 then holds).
"""
import threading

import numpy as np

from tlkit.engine.kernels import gemm_blocks, jobs_mbconv
from tlkit.engine.kernels.depthwise_tiles import forward_tiles
from tlkit.engine.kernels.epilogue import _epilogue_serial
from tlkit.engine.kernels.stem_conv import StemRows
from tlkit.utils import worker_pool
from tlkit.utils.threads import (chunks_can_run_numba, limit_blas, num_threads, product, run_chunks,
                                 set_numba_threads)

__all__ = ["StemRows", "inverted_residual", "packings", "supported"]

# Bytes of a band's expanded input rows (its depthwise output is about as large at stride 1).
BAND_BYTES = 1 << 20
# Chunks per thread handed out by run_chunks: balance against the per-chunk hand-off.
CHUNKS_PER_THREAD = 8
# False: one thread on a one-band image goes through the bands' general path too (A/B scripts).
ONE_PIECE = True

_scratch = threading.local()  # per thread: the band buffers, reused from call to call
_NO_RESIDUAL = np.zeros((1, 1), np.float32)


def supported(kernel_shape, strides, dilation):
    """Whether the fused route runs a depthwise conv of this (kh, kw, E) kernel: the tiled kernel's
    cases (column stride 1, or 2 with a square 3x3 / 5x5 kernel; no dilation), when numba kernels may
    run on several threads at once."""
    kh, kw, _ = kernel_shape
    sh, sw = strides
    column_ok = sw == 1 or (sw == 2 and kh == kw and kw in (3, 5))
    return tuple(dilation) == (1, 1) and column_ok and sh in (1, 2) and chunks_can_run_numba()


def _buffer(name, size):
    buf = getattr(_scratch, name, None)
    if buf is None or buf.size < size:
        buf = np.empty(size, np.float32)
        setattr(_scratch, name, buf)
    return buf[:size]


def band_rows(h, w, e, oh, sh, kh):
    """Output rows per band of one image: about the most whose expanded input rows fit BAND_BYTES (at
    least 1), the image's bands made even."""
    row_bytes = 4 * w * e
    fit = max(1, min(oh, (BAND_BYTES // row_bytes - kh) // sh + 1))
    return -(-oh // -(-oh // fit))  # the same number of bands, evened out (no short last band)


def _pieces(n, h, w, e, oh, ow, sh, kh, parts):
    """([(first image, last image + 1, first output row, last output row + 1)], the most floats a
    piece's expanded rows and depthwise output take): bands of rows of one image, or groups of whole
    images when a whole image fits a band (at least CHUNKS_PER_THREAD groups a thread)."""
    rows = band_rows(h, w, e, oh, sh, kh)
    if n < parts and worker_pool.awake():  # the workers poll: a band for each, however small the image
        rows = min(rows, -(-oh // -(-parts // n)))
    if rows < oh:
        pieces = [(i, i + 1, r, min(r + rows, oh)) for i in range(n) for r in range(0, oh, rows)]
        return pieces, min(h, (rows - 1) * sh + kh) * w * e, rows * ow * e
    group = max(1, min(BAND_BYTES // (4 * h * w * e), -(-n // (parts * CHUNKS_PER_THREAD))))
    return [(i, min(i + group, n), 0, oh) for i in range(0, n, group)], group * h * w * e, group * oh * ow * e


def packings(expand, project):
    """(expand's, project's) weights packed for gemm_blocks (None: that product through BLAS), kept while
    their arrays live (gemm_blocks.pack_kept: folded weights are new arrays when a weight changes)."""
    ew, pw = None if expand is None else expand[0], project[0]
    return (None if ew is None or not gemm_blocks.worth_it(*ew.shape) else gemm_blocks.pack_kept(*expand[:2]),
            gemm_blocks.pack_kept(*project[:2]) if gemm_blocks.worth_it(*pw.shape) else None)


def _whole_image(x, expand, depthwise, project, residual, out, packed):
    """inverted_residual on one thread for one image that is a single band: the three products called
    straight, without the bands' bookkeeping (at 7x7-28x28 that cost 20-30 us a block, a sixth of a
    block's products)."""
    _, h, w, c = x.shape
    k, kb, klo, khi, (sh, sw), top, left = depthwise
    e, f = k.shape[2], out.shape[3]
    limit_blas()
    expand_packed, project_packed = packings(expand, project) if packed is None else packed
    if expand is None:
        xe = x
    else:
        ew, eb, elo, ehi = expand
        xe2 = _buffer("expanded", h * w * e).reshape(h * w, e)
        if expand_packed is not None:
            gemm_blocks.driver(expand_packed)(x.reshape(h * w, c), expand_packed.panels, expand_packed.bias, xe2,
                                              _NO_RESIDUAL, False, elo, ehi)
        else:
            product(x.reshape(h * w, c), ew, xe2)
            _epilogue_serial(xe2, eb, _NO_RESIDUAL, False, elo, ehi)
        xe = xe2.reshape(1, h, w, e)
    d = _buffer("depthwise", out.shape[1] * out.shape[2] * e).reshape(out.shape[:3] + (e,))
    before = num_threads()
    if before > 1:
        set_numba_threads(1)  # the depthwise kernel too: a split would cost more than it saves
    try:
        forward_tiles(xe, k, kb, klo, khi, sh, sw, 1, top, left, d)
    finally:
        if before > 1:
            set_numba_threads(before)
    d2, o2 = d.reshape(-1, e), out.reshape(-1, f)
    pw, pb, plo, phi = project
    r2 = _NO_RESIDUAL if residual is None else residual.reshape(-1, f)
    if project_packed is not None:
        gemm_blocks.driver(project_packed)(d2, project_packed.panels, project_packed.bias, o2, r2,
                                           residual is not None, plo, phi)
    else:
        product(d2, pw, o2)
        _epilogue_serial(o2, pb, r2, residual is not None, plo, phi)
    return out


def inverted_residual(x, expand, depthwise, project, residual, out, parts=None, stem=None, packed=None):
    """out = the block's output (see the module's docstring); parts: threads to use (None: all).
    stem: a stem_conv.StemRows computing the expanded rows from x (N, H, W, 3) instead of an expand
    product (expand None): the stem's output then never goes to memory either. packed: ``packings(expand,
    project)``, kept by the caller (at batch 1 looking them up cost ~10 us a block).
    Returns out."""
    n, h, w, c = x.shape if stem is None else stem.output_shape(x.shape)
    _, oh, ow, f = out.shape
    k, kb, klo, khi, (sh, sw), top, left = depthwise
    kh = k.shape[0]
    e = k.shape[2]
    pw, pb, plo, phi = project
    has_residual = residual is not None
    parts = num_threads() if parts is None else parts
    if parts == 1 and n == 1 and stem is None and ONE_PIECE and band_rows(h, w, e, oh, sh, kh) >= oh:
        return _whole_image(x, expand, depthwise, project, residual, out, packed)
    pieces, expanded_floats, depthwise_floats = _pieces(n, h, w, e, oh, ow, sh, kh, parts)
    parts = min(parts, len(pieces))
    limit_blas()
    expand_packed, project_packed = packings(expand, project) if packed is None else packed

    def run(slot, first, last):
        expanded = _buffer("expanded", expanded_floats)
        depthwise_out = _buffer("depthwise", depthwise_floats)
        held = None  # (image, first row, last row + 1) of the expanded rows in the buffer
        for n0, n1, r0, r1 in pieces[first:last]:
            # the input rows the band's windows read; a group of whole images takes them all, so
            # its slice of x stays contiguous
            a = max(0, r0 * sh - top) if n1 - n0 == 1 else 0
            b = min(h, (r1 - 1) * sh - top + kh) if n1 - n0 == 1 else h
            if expand is None and stem is None:
                xe = x[n0:n1, a:b]
            else:
                xe = expanded[:(n1 - n0) * (b - a) * w * e].reshape(n1 - n0, b - a, w, e)
                new = a
                if held is not None and held[0] == n0 and n1 - n0 == 1 and held[1] <= a < held[2]:
                    # the rows the previous band of this image shares with this one: moved, not recomputed
                    kept = expanded[:(held[2] - held[1]) * w * e].reshape(held[2] - held[1], w, e)
                    xe[0, :held[2] - a] = kept[a - held[1]:]
                    new = held[2]
                if new < b and stem is not None:
                    stem.rows(x, n0, n1, new, b, xe[:, new - a:])
                elif new < b:
                    ew, eb, elo, ehi = expand
                    e2 = xe[:, new - a:].reshape(-1, e)
                    if expand_packed is not None:
                        gemm_blocks.product_epilogue(x[n0:n1, new:b].reshape(-1, c), expand_packed, e2, None, elo, ehi)
                    else:
                        product(x[n0:n1, new:b].reshape(-1, c), ew, e2)
                        _epilogue_serial(e2, eb, _NO_RESIDUAL, False, elo, ehi)
                held = (n0, a, b) if n1 - n0 == 1 else None
            d = depthwise_out[:(n1 - n0) * (r1 - r0) * ow * e].reshape(n1 - n0, r1 - r0, ow, e)
            forward_tiles(xe, k, kb, klo, khi, sh, sw, 1, top + a - r0 * sh, left, d)
            o2 = out[n0:n1, r0:r1].reshape(-1, f)
            r2 = residual[n0:n1, r0:r1].reshape(-1, f) if has_residual else _NO_RESIDUAL
            if project_packed is not None:
                gemm_blocks.product_epilogue(d.reshape(-1, e), project_packed, o2, r2 if has_residual else None,
                                             plo, phi)
            else:
                product(d.reshape(-1, e), pw, o2)
                _epilogue_serial(o2, pb, r2, has_residual, plo, phi)

    if parts < 2:
        before = num_threads()
        set_numba_threads(1)  # the depthwise kernel too: a split would cost more than it saves
        try:
            run(0, 0, len(pieces))
        finally:
            set_numba_threads(before)
    else:
        chunks = min(len(pieces), parts * (1 if worker_pool.awake() else CHUNKS_PER_THREAD))
        if chunks == 2 and stem is None and worker_pool.serves_jobs():
            run.native = jobs_mbconv.mbconv_poster(
                x, expand, expand_packed, depthwise, project_packed, (plo, phi), residual, out, pieces,
                expanded_floats, depthwise_floats)
        run_chunks([len(pieces) * i // chunks for i in range(chunks + 1)], run, parts)
    return out
