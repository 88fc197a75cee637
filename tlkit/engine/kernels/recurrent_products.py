"""The products of recurrent.py's passes: the per-step products of its time loops, h_prev @ R forward
and dz @ R.T backward, for the rows of one batch block, step after step on the same weights; and the
products over a whole sequence's rows (the input projection, dx), shared by the threads.

    product = StepProduct(recurrent_kernel, rows)    # once a pass: the weights packed (or padded)
    product(h_prev, rec)                             # rec = h_prev @ recurrent_kernel
    product.add(dz, carry_h, scratch)                # carry_h += dz @ recurrent_kernel
    added = sequence_product(x2, kernel, gates2, bias)   # gates2 = x2 @ kernel (+ bias when added)
    threads.matmul_tn(h2, dz2, d_kernel, per_thread=weight_grad_chunks())   # its chunks a thread on this CPU

With float32 weights of a shape gemm_blocks' micro-kernel runs faster than BLAS (``gemm_blocks.worth_it``),
the weights are packed once a pass and every step runs the micro-kernel (the sum added in its epilogue):
BLAS packs the whole recurrent kernel again on every step's product, which for a block of few rows is a
large part of its work (LSTM(256), 32-sample blocks on both threads, 100 steps: forward 22.0 -> 18.8 ms,
backward 22.9 -> 17.5). Its block shape is chosen for the block's rows too (``block_shape``). Otherwise
BLAS, on a copy of the weights with longer rows when theirs are a multiple of ALIASED_ROW_BYTES long
(``padded``). The sequence-long products take the same micro-kernel where it is worth it, as rows cut
into chunks shared by the threads (``conv_chunks.packed_product``; LSTM(256)'s 6400 x 128 @ 128 x 1024
projection 10.5 -> 8.5 ms on 2 threads, its dx 9.7 -> 8.1).
"""
import numpy as np

from tlkit.engine.kernels import conv_chunks, gemm_blocks, host_cpu
from tlkit.utils import threads

# BLAS's per-step product reads a copy of the recurrent kernel with ROW_PAD more elements a row
# (``padded``) when its rows are a multiple of ALIASED_ROW_BYTES long (measured: LSTM(256)'s 4 KB rows
# faster padded; GRU(256)'s 3 KB and LSTM(200)'s 3.2 KB rows not).
ROW_PAD = 64
ALIASED_ROW_BYTES = 4096
_INF = np.float32(np.inf)
# Chunks a thread in the weight gradients' products (``threads.matmul_tn``, cut along the steps) where
# AVX-512 runs at full width: one, as each chunk's BLAS call is short there and its start and its add pass
# show (LSTM(256)'s layer step -1.5 ms); elsewhere threads.CHUNKS_PER_THREAD, for the balance when a core
# is taken (one a thread read only ~0.5% faster on half-width AVX-512).
FULL_WIDTH_GRAD_CHUNKS = 1


def padded(a, pad=ROW_PAD):
    """A copy of 2-D ``a`` whose rows lie ``pad`` elements further apart than a's (a view of a wider
    buffer), for BLAS, which packs the recurrent kernel on every step's product: with rows a multiple of
    4 KB apart (1024 float32 gate columns, i.e. LSTM(256)) the packing's reads fall into a few cache
    sets, and a batch block's product of few rows is the slower for it (100 steps of 32 x 256 @ 256 x
    1024 on both threads at once: 32-34 ms with the kernel's own rows, 25-29 padded)."""
    out = np.empty((a.shape[0], a.shape[1] + pad), a.dtype)[:, :a.shape[1]]
    out[...] = a
    return out


def block_shape(rows, k, f, w=None, cpu=None):
    """gemm_blocks' block shape (MR, NV) for products of ``rows`` rows on (K, F) weights: the one of
    gemm_blocks.SHAPES computing the fewest padded rows x padded columns (a block's rows past the
    product's are computed and dropped) weighed by its speed on the CPU (gemm_blocks.speed), then the
    first in that order (fewer rows: see SHAPES)."""
    w = gemm_blocks.lanes(cpu) if w is None else w
    shapes = gemm_blocks.SHAPES[w]

    def work(shape):
        mr, nr = shape[0], shape[1] * w
        return -(-rows // mr) * mr * (-(-f // nr) * nr) / gemm_blocks.speed(shape, w, cpu)

    return min(shapes, key=lambda s: (work(s), shapes.index(s)))


class StepProduct:
    """Products x @ w for x of at most ``rows`` rows (one batch block's), w (K, F) fixed for a pass."""

    def __init__(self, w, rows):
        k, f = w.shape
        self.packed = None
        if w.dtype == np.float32 and rows > 0 and gemm_blocks.worth_it(k, f):
            self.packed = gemm_blocks.pack(w, None, shape=block_shape(rows, k, f))
            self.run = gemm_blocks.driver(self.packed)
            self.w = None
        else:
            self.w = padded(w) if f * w.itemsize % ALIASED_ROW_BYTES == 0 else w

    def __call__(self, x, y):
        """y = x @ w; x and y 2-D with contiguous rows."""
        p = self.packed
        if p is None:
            np.matmul(x, self.w, out=y)
        else:
            self.run(x, p.panels, p.bias, y, y, False, -_INF, _INF)

    def add(self, x, y, scratch):
        """y += x @ w (``scratch``: an array of y's shape BLAS writes the product into first)."""
        p = self.packed
        if p is None:
            np.matmul(x, self.w, out=scratch)
            y += scratch
        else:
            self.run(x, p.panels, p.bias, y, y, True, -_INF, _INF)


def weight_grad_chunks(cpu=None):
    """Chunks a thread for ``threads.matmul_tn``'s weight gradients on the CPU (``cpu``: a host_cpu pair)."""
    return FULL_WIDTH_GRAD_CHUNKS if host_cpu.full_width(cpu) else threads.CHUNKS_PER_THREAD


def sequence_product(x2, w, out2, bias=None):
    """out2 = x2 @ w (+ bias) for x2 (rows, K) over a whole sequence, shared by the threads: through
    gemm_blocks with w packed and the bias added in its epilogue when worth it (float32), else BLAS
    (``threads.matmul``) without the bias. Returns whether the bias was added."""
    k, f = w.shape
    if out2.dtype == np.float32 and x2.dtype == np.float32 and gemm_blocks.worth_it(k, f):
        conv_chunks.packed_product(x2, gemm_blocks.pack(w, bias), out2, None, -np.inf, np.inf)
        return bias is not None
    threads.matmul(x2, w, out2)
    return False
