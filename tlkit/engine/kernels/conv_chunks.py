"""conv.py's routes as chunks shared by the threads (tlkit.utils.threads.run_chunks): each chunk
runs whole on one thread, its numba passes on that thread alone and its product on one BLAS
thread, so a layer costs one hand-off instead of three per tile, its data stays in that thread's
cache, and a thread the OS deschedules delays only the chunk it is on.

    if worth_it(flops): im2col_product(x, wmat, bias, True, True, window, 1, 1, False, tiles, y, 0, parts)
    by_jobs(n * out_h, lambda j0, j1: kernel(x, ..., j0, j1, y))         # serial kernels over job ranges
    if by_columns(m, f, flops): im2col_product_columns(x, wmat, bias, True, True, window, 1, 1, False, y, 0)
    packed_product(x2, gemm_blocks.pack(w, bias), y2, None, 0.0, np.inf)   # a 1x1 conv's product + epilogue
"""
import numpy as np

from tlkit.engine.kernels import gemm_blocks, jobs
from tlkit.engine.kernels.im2col import add_bias_relu, im2col_rows
from tlkit.utils import threads, worker_pool, workspace

# Budget of one im2col chunk: its patch and output tiles stay in one thread's cache while its
# product and bias + ReLU run.
CHUNK_BYTES = 1 << 20
# None chooses (chunks for work worth splitting, when numba's threading layer allows kernels on
# several threads at once); True / False force one route (tests take both whatever the machine).
CHUNKED = None
# Products of few rows (a batch-1 layer of 7x7 to 14x14 output pixels) are split over the threads by
# output channels instead: BLAS packs the weight matrix on every call, so each row tile packs all of
# it again, and few rows do not pay for that (ResNet50's 1x1/2 conv of 14x14x1024 -> 7x7x2048 at
# batch 1: 6.3 ms as 7 row tiles, 1.9 ms as 2 column blocks; BENCHMARKS.md, "Speed against ONNX
# Runtime"). Below COLUMN_SPLIT_ROWS rows (at 784, 28x28, row tiles were as fast or faster), in blocks
# of a multiple of COLUMN_BLOCK columns, one per thread (2 or 4 per thread measured no faster in a
# whole forward), and at least COLUMN_MIN_FLOPS: below, the hand-off costs what the second thread
# saves (MobileNetV2's 14x14 1x1 convs of ~22 MFLOPs: 0.33-0.37 ms split, 0.27-0.29 on one thread).
# COLUMNS: None chooses; True / False force.
COLUMN_SPLIT_ROWS = 256
COLUMN_BLOCK = 16
COLUMN_MIN_FLOPS = 32_000_000
COLUMNS = None


def worth_it(flops):
    """True when an im2col + BLAS conv of this many flops runs as chunks (or CHUNKED forces it)."""
    if CHUNKED is not None:
        return CHUNKED
    return flops >= threads.session_bar(threads.MIN_SPLIT_FLOPS) and threads.num_threads() > 1 and threads.chunks_can_run_numba()


def im2col_product(x, wmat, bias, has_bias, relu, window, pad_top, pad_left, direct_1x1, tiles, y, lo, parts):
    """y[..., lo:lo + F] = patches(x) @ wmat (+ bias, ReLU), one chunk per (n0, n1, r0, r1) tile of
    output rows: its patches gathered (none for a 1x1 conv: x's rows are the patches), the
    product, then bias + ReLU while the tile is in cache. y: C-contiguous (N, OH, OW, >= lo + F)."""
    _, out_h, out_w, _ = y.shape
    k, f = wmat.shape
    wide = y.reshape(-1, y.shape[3])
    x2 = x.reshape(-1, x.shape[3])
    most = max((t[1] - t[0]) * (t[3] - t[2]) for t in tiles) * out_w
    scratch = {}  # patch matrix per thread slot

    def tile(slot, i, _):
        n0, n1, r0, r1 = tiles[i]
        a = (n0 * out_h + r0) * out_w
        m = (n1 - n0) * (r1 - r0) * out_w
        if direct_1x1:
            src = x2[a:a + m]
        else:
            patches = scratch.get(slot)
            if patches is None:
                patches = scratch[slot] = np.empty((most, k), np.float32)
            im2col_rows(x, n0, n1, r0, r1, *window, pad_top, pad_left, out_w, patches)
            src = patches[:m]
        threads.product(src, wmat, wide[a:a + m, lo:lo + f])
        if has_bias or relu:
            add_bias_relu(wide[a:a + m], bias, has_bias, relu, lo)  # one chunk per thread

    threads.limit_blas()
    threads.run_chunks(range(len(tiles) + 1), tile, parts)


def by_jobs(total, call, native=None):
    """call(j0, j1) over the job range [0, total) cut into chunks shared by the threads (a
    descheduled thread then delays one chunk, not half the work), or over the whole range on the
    calling thread with one thread (or CHUNKED False). For serial nogil kernels that take a job
    range: numba's own parallel loops (parallel=True) would cost about three times their compile
    time on a cold cache."""
    parts = min(threads.num_threads(), total)
    chunked = CHUNKED if CHUNKED is not None else parts > 1
    if not chunked or total < 2:
        if total > 0:
            call(0, total)
        return
    chunks = min(total, max(parts, 1) * threads.chunks_per_thread())
    bounds = np.linspace(0, total, chunks + 1).astype(np.int64)
    def work(slot, j0, j1):
        call(int(j0), int(j1))

    work.native = native  # a poster of the range's chunks as a worker's native job (kernels/jobs.py), or None
    threads.run_chunks(bounds, work, max(parts, 1))


def by_columns(rows, columns, flops):
    """True when a product of ``rows`` x ``columns`` outputs and ``flops`` runs as column blocks shared
    by the threads (product_columns): COLUMNS forces it either way; CHUNKED forcing a route rules it out."""
    if COLUMNS is not None:
        return COLUMNS
    return (CHUNKED is None and rows < COLUMN_SPLIT_ROWS and columns >= 2 * COLUMN_BLOCK
            and flops >= threads.session_bar(COLUMN_MIN_FLOPS) and threads.num_threads() > 1)


def product_columns(src, wmat, out, epilogue=None):
    """out (rows, F) = src @ wmat with the columns cut into one block per thread, shared by the threads;
    ``epilogue(c0, c1)`` then runs on each block [c0, c1) on the thread that computed it."""
    f = wmat.shape[1]
    parts = max(threads.num_threads(), 1)
    bounds = threads.column_blocks(f, parts, COLUMN_BLOCK)

    def block(slot, c0, c1):
        threads.product(src, wmat[:, c0:c1], out[:, c0:c1])
        if epilogue is not None:
            epilogue(c0, c1)

    threads.limit_blas()
    threads.run_chunks(bounds, block, min(parts, len(bounds) - 1))


def im2col_product_columns(x, wmat, bias, has_bias, relu, window, pad_top, pad_left, direct_1x1, y, lo):
    """im2col_product's result with the product split by columns (by_columns): the patches of the
    whole output gathered once (none for a 1x1 conv), then product_columns with bias + ReLU on each
    block. y: C-contiguous (N, OH, OW, >= lo + F)."""
    n, out_h, out_w, _ = y.shape
    k, f = wmat.shape
    wide = y.reshape(-1, y.shape[3])
    patches = None
    if direct_1x1:
        src = x.reshape(-1, x.shape[3])
    else:
        src = patches = workspace.take((n * out_h * out_w, k), np.float32)
        im2col_rows(x, 0, n, 0, out_h, *window, pad_top, pad_left, out_w, patches)

    def epilogue(c0, c1):
        if has_bias or relu:
            add_bias_relu(wide, bias[c0:c1], has_bias, relu, lo + c0)

    product_columns(src, wmat, wide[:, lo:lo + f], epilogue)
    del src
    workspace.give_back([patches])


def packed_product(x2, packed, y2, r2, lo, hi, split_flops=0):
    """y2 = clip(x2 @ w + bias (+ r2), lo, hi) through gemm_blocks (``packed``: w and bias): few rows
    (by_columns) as blocks of the weight panels, one per thread; otherwise the rows cut into chunks
    shared by the threads when the product is worth splitting (worth_it, and at least split_flops
    unless CHUNKED forces it). y2 may be a column slice of a wider array; r2 (rows, F) or None."""
    rows, c = x2.shape
    flops = 2 * rows * c * packed.f
    lo, hi = np.float32(lo), np.float32(hi)
    panels = packed.panels.shape[0]
    if by_columns(rows, packed.f, flops) and panels > 1:
        parts = min(threads.num_threads(), panels)
        nr = packed.nv * packed.w

        def columns(slot, p0, p1):
            c0, c1 = p0 * nr, min(packed.f, p1 * nr)
            gemm_blocks.product_epilogue(x2, packed.columns(p0, p1), y2[:, c0:c1],
                                         None if r2 is None else r2[:, c0:c1], lo, hi)

        if worker_pool.serves_jobs():
            driver = gemm_blocks._driver(packed.mr, packed.nv, packed.w)
            columns.native = jobs.gemm_poster(driver, x2, packed, y2, r2, lo, hi, True)
        threads.run_chunks([panels * i // parts for i in range(parts + 1)], columns, parts)
        return
    blocks = -(-rows // packed.mr)  # chunks of whole row blocks
    parts = min(threads.num_threads(), blocks)
    if parts < 2 or not worth_it(flops) or (CHUNKED is None and flops < split_flops):
        gemm_blocks.product_epilogue(x2, packed, y2, r2, lo, hi)
        return

    def run(slot, a, z):
        gemm_blocks.product_epilogue(x2[a:z], packed, y2[a:z], None if r2 is None else r2[a:z], lo, hi)

    chunks = min(blocks, parts * threads.chunks_per_thread())
    if worker_pool.serves_jobs():
        run.native = jobs.gemm_poster(gemm_blocks._driver(packed.mr, packed.nv, packed.w), x2, packed, y2, r2, lo, hi,
                                      False)
    threads.run_chunks([min(rows, packed.mr * (blocks * i // chunks)) for i in range(chunks + 1)], run, parts)
