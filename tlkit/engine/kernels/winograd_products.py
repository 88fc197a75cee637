"""Winograd's 36 products (tiles x C) @ (C x F) through gemm_blocks' register-blocked micro-kernel
instead of BLAS, on CPUs where that is faster (``preferred``): the transformed filter's planes packed
into gemm_blocks' panels, (36, P, C, NR), by the filter transform itself (no packing pass).

    planes = pack_planes(u)                      # u (36, C, F) from winograd_filters.transform_filter
    planes = kept_planes(u)                      # the same, kept while u lives (a layer's cached filter)
    planes = planes_for(w, None)                 # transformed from the kernel w (3, 3, C, F) directly
    products(v, t, planes, m, k0, k1)            # m[k, :t] = v[k, :t] @ plane k, k0 <= k < k1
    split_products(v, t, planes, m)              # all 36, the planes shared by the threads

Why: BLAS packs its operands on every call and its kernels are tuned for large square products;
Winograd's are 36 per chunk, of a few hundred to a few thousand rows by C = 64-512 (one thread, AVX-512
Xeon, scripts/ab_winograd_products.py: 64 channels 1.5x BLAS's rate, 128 1.3x, 256 1.1x, 512 1.05x).
"""
import weakref

import numpy as np
from numba import njit

from tlkit.engine.kernels import conv_chunks, gemm_blocks, host_cpu
from tlkit.engine.kernels.intrinsics import serial_kernel
from tlkit.engine.kernels.winograd_filters import G32, g_row_values
from tlkit.utils import threads
from tlkit.utils.job_table import call_kernel, kernel_key

# None chooses (``preferred``); True / False force the route (tests take both whatever the machine).
ENABLED = None
# On this route a conv whose transformed filter is at most this size runs as whole chunks per thread
# (winograd._conv3x3_threaded: transforms and products of a run of tile rows in one core's cache), as
# the products' cost no longer grows when they are thin. VGG16 b8 (Xeon): 224x224 64 -> 64 0.56x the
# time of shared chunks, 112x112 64 -> 128 0.73x, 128 -> 128 0.77x; 56x56 128 -> 256 (4.7 MB) even,
# 512 -> 512 1.4-1.6x (every chunk reads the whole filter).
PER_THREAD_FILTER_BYTES = 3 << 20
# On this route a conv whose filter is not kept (transformed in every call) over fewer tiles than this
# goes to im2col + BLAS (winograd.few_tiles): the transform costs more than the products save (VGG16
# b1, 14x14 512 -> 512, 16 tiles: 0.54x the time through im2col; 28x28, 49 tiles: 2.1x).
MIN_TILES_UNKEPT = 32


def preferred(channels, filters):
    """Whether a Winograd conv of ``channels`` -> ``filters`` runs its products here (ENABLED forces)."""
    if ENABLED is not None:
        return ENABLED
    # At full width (two 512-bit FMA units a core: Intel Xeon) BLAS's share of a Winograd conv, its products,
    # halves and the micro-kernel's lower call cost shows; on Zen 4 (half width) the route stays BLAS.
    return host_cpu.full_width() and gemm_blocks.worth_it(channels, filters)


def per_thread(channels, filters):
    """Whether a conv on this route runs as whole chunks per thread (PER_THREAD_FILTER_BYTES)."""
    return preferred(channels, filters) and 36 * channels * filters * 4 <= PER_THREAD_FILTER_BYTES


class Planes:
    """36 (or fewer) packed planes of a transformed filter: panels (planes, P, C, NR), zero padded past F."""

    def __init__(self, panels, mr, nv, w, f):
        self.panels, self.mr, self.nv, self.w, self.f = panels, mr, nv, w, f
        # the micro-kernel adds a bias: zeros here, the output transform adds the conv's
        self.bias = None if panels is None else np.zeros(panels.shape[1] * panels.shape[3], np.float32)

    def rows(self, k0, k1):
        """Planes k0 .. k1 alone (no copy)."""
        return Planes(self.panels[k0:k1], self.mr, self.nv, self.w, self.f)


def new_planes(count, channels, filters, panels=None):
    """Planes of ``count`` planes for channels -> filters, uninitialized (or on ``panels``, reused scratch)."""
    w = gemm_blocks.lanes()
    mr, nv = gemm_blocks.block_shape(channels, filters, w)
    nr = nv * w
    shape = (count, -(-filters // nr), channels, nr)
    if panels is None:
        panels = np.empty(shape, np.float32)
    else:
        panels = panels[:int(np.prod(shape))].reshape(shape)
    return Planes(panels, mr, nv, w, filters)


def pack_planes(u):
    """u (planes, C, F) packed: each plane's columns cut into panels of NR (gemm_blocks.Packed's layout)."""
    count, ch, f = u.shape
    planes = new_planes(count, ch, f)
    p, nr = planes.panels.shape[1], planes.panels.shape[3]
    if p * nr != f:
        planes.panels[:, -1] = 0
    whole = f // nr
    planes.panels[:, :whole] = u[:, :, :whole * nr].reshape(count, ch, whole, nr).transpose(0, 2, 1, 3)
    if whole < p:
        planes.panels[:, whole, :, :f - whole * nr] = u[:, :, whole * nr:]
    return planes


_kept = {}


def kept_planes(u):
    """pack_planes(u), kept while the array u lives (a frozen layer's cached transformed filter, which is
    replaced, never written, when its kernel changes)."""
    key = (id(u), u.__array_interface__["data"][0], u.shape)
    kept = _kept.get(key)
    if kept is not None and kept[0]() is u:
        return kept[1]
    planes = pack_planes(u)
    _kept[key] = (weakref.ref(u, lambda _, key=key: _kept.pop(key, None)), planes)
    return planes


@serial_kernel
def transform_packed(w, i0, c0, c1, panels):
    """panels[6 * (i - i0) + j, f // NR, c, f % NR] = (G w[:, :, c, f] G^T)[i, j] for the rows
    i0 <= i < i0 + len(panels) // 6 of G and channels c0 <= c < c1; columns past F are zeros."""
    _, _, _, nf = w.shape
    nr = panels.shape[3]
    g = G32
    for c in range(c0, c1):
        for i in range(i0, i0 + panels.shape[0] // 6):
            g0 = g[i, 0]; g1 = g[i, 1]; g2 = g[i, 2]
            r = 6 * (i - i0)
            for p in range(panels.shape[1]):
                cols = min(nr, nf - p * nr)
                for j in range(cols):
                    t0, t1, t2, t3, t4, t5 = g_row_values(w, g0, g1, g2, c, p * nr + j)
                    panels[r, p, c, j] = t0
                    panels[r + 1, p, c, j] = t1
                    panels[r + 2, p, c, j] = t2
                    panels[r + 3, p, c, j] = t3
                    panels[r + 4, p, c, j] = t4
                    panels[r + 5, p, c, j] = t5
                for j in range(cols, nr):
                    for q in range(6):
                        panels[r + q, p, c, j] = 0


_stacked = {}


def _stacked_driver(mr, nv, w):
    """A numba kernel running gemm_blocks' driver of this block shape over a range of planes."""
    key = (mr, nv, w)
    if key not in _stacked:
        # The driver by its kernel_key (a string), not the dispatcher itself: numba's cache keys a closure on
        # its pickled cells, and a dispatcher's differ in every process, so the kernel compiled in each one.
        run_key = kernel_key(gemm_blocks.driver(Planes(None, mr, nv, w, 0)))
        no_residual = np.zeros((1, 1), np.float32)
        inf = np.float32(np.inf)

        @njit(cache=True, nogil=True)
        def stacked(v, t, panels, bias, m, k0, k1):
            for k in range(k0, k1):
                call_kernel(run_key, v[k, :t], panels[k - k0], bias, m[k, :t], no_residual, False, -inf, inf)

        _stacked[key] = stacked
    return _stacked[key]


def products(v, t, planes, m, k0=0, k1=None):
    """m[k, :t] = v[k, :t] @ (plane k - k0 of ``planes``) for k0 <= k < k1 (default: as many as planes
    holds), on the calling thread. v (36, >= t, C), m (36, >= t, F): float32, rows contiguous."""
    k1 = k0 + planes.panels.shape[0] if k1 is None else k1
    if t > 0 and k1 > k0:
        _stacked_driver(planes.mr, planes.nv, planes.w)(v, t, planes.panels, planes.bias, m, k0, k1)


def transform(w, i0, planes):
    """planes (from new_planes, 6 x rows of G) = w's transform for the rows i0 .. of G, split by channels."""
    conv_chunks.by_jobs(w.shape[2], lambda c0, c1: transform_packed(w, i0, c0, c1, planes.panels))


def planes_for(w, u):
    """The packed planes of a conv's transformed filter: u's, kept while u lives (a layer's cached
    filter), or (u None) w's transformed straight into panels."""
    if u is not None:
        return kept_planes(u)
    planes = new_planes(36, w.shape[2], w.shape[3])
    transform(w, 0, planes)
    return planes


def split_products(v, t, planes, m, k0=0):
    """products(v, t, planes, m, k0) with the planes cut into chunks shared by the threads when worth it."""
    count = planes.panels.shape[0]
    parts = min(threads.num_threads(), count)
    flops = 2 * count * t * planes.panels.shape[2] * planes.f
    if parts < 2 or flops < threads.session_bar(threads.MIN_SPLIT_FLOPS):
        products(v, t, planes, m, k0)
        return
    bounds = np.linspace(0, count, min(count, parts * threads.chunks_per_thread()) + 1).astype(int)
    threads.run_chunks(bounds, lambda slot, a, b: products(v, t, planes.rows(a, b), m, k0 + a), parts)
