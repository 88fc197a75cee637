"""Native jobs of a worker's job table (tlkit/engine/kernels/jobs.py, tlkit/utils/job_table.py): each kind,
run on this thread from a posted row, computes its chunk and nothing else (outputs NaN-poisoned before,
odd sizes) as the unsplit route and a float64 numpy reference do; the session's lifecycle with the
table (no job left posted, also after an error; a job the worker never took is run by the caller;
the worker back to blocking on its inbox after a forward; a forked child's own table). Two user
threads at once: tests/engine/test_worker_session.py, with the table and without. No timings here: waits are bounded only against hangs."""
import numba
import numpy as np
import pytest
from numba import njit

from tests.engine.test_inference_buffers import numpy_conv
from tests.engine.test_inverted_residuals import reference_block, run_kernel, same_pads, weights
from tests.engine.test_worker_session import HANG, fire_model, numpy_fire
from tlkit.engine import small_steps
from tlkit.engine.kernels import conv_pool_bands, gemm_blocks, jobs, jobs_mbconv, mbconv_bands, pool, winograd
from tlkit.engine.kernels.im2col import im2col_rows
from tlkit.utils import job_table, threads, worker_pool

CLOSE = dict(rtol=1e-4, atol=1e-4)  # float32 kernels against float64; a wrong buffer is off by O(1)


@njit
def run_here(table):
    """The posted job, run on the calling thread as a worker's serve would."""
    job_table._call_job(table, job_table.ARGS)


def post_and_run(poster, lo, hi):
    table = np.zeros(64, np.int64)
    assert poster(table, lo, hi)
    assert table[job_table.STATE] == job_table.POSTED and table[job_table.FN] != 0
    run_here(table)


@pytest.mark.parametrize("by_panels", [False, True])
@pytest.mark.parametrize("residual", [False, True])
def test_a_gemm_job_computes_its_rows_or_panels_only(rng, by_panels, residual):
    m, k, f = 37, 19, 45
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, f)).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    packed = gemm_blocks.pack(w, b)
    wide = np.full((m, f + 6), np.nan, np.float32)  # y a column slice of a wider array: strided rows
    y = wide[:, 3:3 + f]
    r = rng.standard_normal((m, f)).astype(np.float32) if residual else None
    lo, hi = np.float32(-0.5), np.float32(1.5)
    expected = np.clip(x.astype(np.float64) @ w + b + (0 if r is None else r), lo, hi)
    driver = gemm_blocks._driver(packed.mr, packed.nv, packed.w)
    poster = jobs.gemm_poster(driver, x, packed, y, r, lo, hi, by_panels)
    nr = packed.nv * packed.w
    if by_panels:
        post_and_run(poster, 1, packed.panels.shape[0])
        done, untouched = (slice(None), slice(nr, f)), (slice(None), slice(0, nr))
    else:
        post_and_run(poster, 11, m)
        done, untouched = (slice(11, m), slice(None)), (slice(0, 11), slice(None))
    np.testing.assert_allclose(y[done], expected[done], **CLOSE)
    assert np.isnan(y[untouched]).all() and np.isnan(wide[:, :3]).all() and np.isnan(wide[:, 3 + f:]).all()
    unsplit = np.empty_like(y)
    gemm_blocks.product_epilogue(x, packed, unsplit, r, lo, hi)
    np.testing.assert_allclose(y[done], unsplit[done], **CLOSE)


def winograd_case(rng, pool2):
    x = rng.standard_normal((1, 13, 11, 5)).astype(np.float32)
    w = rng.standard_normal((3, 3, 5, 7)).astype(np.float32)
    b = rng.standard_normal(7).astype(np.float32)
    expected = np.maximum(numpy_conv(x, w, b, pad=1), 0)
    if pool2:  # 2x2 stride-2 'valid' max pool
        oh, ow = expected.shape[1] // 2, expected.shape[2] // 2
        expected = expected[:, :2 * oh, :2 * ow].reshape(1, oh, 2, ow, 2, 7).max(axis=(2, 4))
    return x, w, b, expected


@pytest.mark.parametrize("pool2", [False, True])
def test_a_winograd_job_of_tile_rows_computes_those_rows_only(rng, pool2):
    x, w, b, expected = winograd_case(rng, pool2)
    u = winograd.transform_filter(w)
    lo = 2
    y = np.full(expected.shape[:3] + (12,), np.nan, np.float32)  # channels [lo, lo + 7) of a wider array
    tiles_h, tiles_w = -(-13 // 4), -(-11 // 4)
    poster = jobs.winograd_poster((winograd._input_tiles, winograd._output_tiles), x, u, b, True, True, y, lo, pool2,
                                  tiles_h, tiles_w, 1, 1)
    post_and_run(poster, 1, tiles_h)  # tile rows 1.. : output rows 4.. (2.. pooled)
    first = 2 if pool2 else 4
    np.testing.assert_allclose(y[:, first:, :, lo:lo + 7], expected[:, first:], **CLOSE)
    assert np.isnan(y[:, :first]).all() and np.isnan(y[..., :lo]).all() and np.isnan(y[..., lo + 7:]).all()
    unsplit = winograd.conv3x3(x, w, u, b, 1, 1, (13, 11), True, pool2=pool2)
    np.testing.assert_allclose(y[:, first:, :, lo:lo + 7], unsplit[:, first:], **CLOSE)


@pytest.mark.parametrize("pool2", [False, True])
def test_a_winograd_job_of_output_channels_computes_those_channels_only(rng, pool2):
    x, w, b, expected = winograd_case(rng, pool2)
    u = winograd.transform_filter(w)
    tiles_h, tiles_w = -(-13 // 4), -(-11 // 4)
    v = np.empty((36, tiles_h * tiles_w, 5), np.float32)
    winograd.input_transform(x, tiles_h, 0, tiles_h, tiles_w, 1, 1, v)
    y = np.full(expected.shape, np.nan, np.float32)
    poster = jobs.winograd_poster((winograd._input_tiles, winograd._output_tiles), x, u, b, True, True, y, 0, pool2,
                                  tiles_h, tiles_w, 1, 1, v)
    post_and_run(poster, 3, 7)
    np.testing.assert_allclose(y[..., 3:], expected[..., 3:], **CLOSE)
    assert np.isnan(y[..., :3]).all()


def test_a_bands_job_computes_its_pooled_rows_only(rng):
    x = rng.standard_normal((1, 23, 21, 3)).astype(np.float32)
    w = rng.standard_normal((3, 3, 3, 33)).astype(np.float32)
    b = rng.standard_normal(33).astype(np.float32)
    conv = np.maximum(numpy_conv(x, w, b, stride=2), 0)  # (11, 10)
    expected = np.max([conv[:, i:i + 9:2, j:j + 8:2] for i in range(3) for j in range(3)], axis=0)  # (5, 4)
    y = np.full(expected.shape, np.nan, np.float32)
    wmat = np.ascontiguousarray(w.reshape(-1, 33))
    per = 2
    most = (per - 1) * 2 + 3
    poster = jobs.bands_poster((im2col_rows, conv_pool_bands.pool_band_bias_relu), x, wmat, b, True, True,
                               (3, 3, 2, 2, 1, 1), 0, 0, (11, 10), (3, 3), (2, 2), (0, 0), y, per, most)
    post_and_run(poster, 1, 3)  # bands 1 and 2: pooled rows 2 .. 4
    np.testing.assert_allclose(y[:, 2:], expected[:, 2:], **CLOSE)
    assert np.isnan(y[:, :2]).all()
    unsplit = np.empty_like(y)
    with threads_set(1):
        conv_pool_bands.conv_maxpool_bands(x, wmat, b, True, True, (3, 3, 2, 2, 1, 1), 0, 0, (11, 10), (3, 3), (2, 2),
                                           (0, 0), unsplit)
    np.testing.assert_allclose(y[:, 2:], unsplit[:, 2:], **CLOSE)


@pytest.mark.parametrize("s,k,c,e,f,res", [(1, 3, 8, 64, 8, True),    # depthwise by rows (ring kernel)
                                           (2, 3, 8, 40, 12, False),  # depthwise by tiles
                                           (1, 5, 24, None, 24, True)])  # no expand: the depthwise reads x
def test_an_inverted_residual_job_computes_its_bands_only(rng, monkeypatch, s, k, c, e, f, res):
    monkeypatch.setattr(mbconv_bands, "BAND_BYTES", 12 << 10)  # bands of a few rows: halo rows moved along
    x = rng.standard_normal((1, 15, 13, c)).astype(np.float32)
    expand, dk, db, project = weights(rng, c, e, f, k)
    zero_pads = same_pads(x.shape[1:3], k, s)
    (top, bottom), (left, right) = zero_pads
    oh, ow = (15 + top + bottom - k) // s + 1, (13 + left + right - k) // s + 1
    residual = rng.standard_normal((1, oh, ow, f)).astype(np.float32) if res else None
    expected = reference_block(x, expand, dk, db, (s, s), zero_pads, project, residual)
    ech = c if e is None else e
    pieces, expanded_floats, depthwise_floats = mbconv_bands._pieces(1, 15, 13, ech, oh, ow, s, k, 2)
    assert len(pieces) >= 3
    six, zero, inf = np.float32(6), np.float32(0), np.float32(np.inf)
    expand_bounds = None if expand is None else expand + (zero, six)
    expand_packed = None if expand is None else gemm_blocks.pack(*expand)
    out = np.full((1, oh, ow, f), np.nan, np.float32)
    poster = jobs_mbconv.mbconv_poster(x, expand_bounds, expand_packed, (dk, db, zero, six, (s, s), top, left),
                                       gemm_blocks.pack(*project), (-inf, inf), residual, out, pieces,
                                       expanded_floats, depthwise_floats)
    post_and_run(poster, 1, len(pieces))
    first = pieces[1][2]
    np.testing.assert_allclose(out[:, first:], expected[:, first:], **CLOSE)
    assert np.isnan(out[:, :first]).all()
    unsplit = run_kernel(x, expand, dk, db, (s, s), zero_pads, project, residual, parts=1)
    np.testing.assert_allclose(out[:, first:], unsplit[:, first:], **CLOSE)


def test_a_max_pool_job_computes_its_rows_only(rng):
    x = rng.standard_normal((2, 13, 11, 7)).astype(np.float32)
    y = np.full((2, 6, 5, 7), np.nan, np.float32)  # 3x3 stride 2, 'valid'
    expected = np.max([x[:, i:i + 11:2, j:j + 9:2] for i in range(3) for j in range(3)], axis=0)
    poster = jobs.pool_poster(pool.max_pool_rows_kernel, x, y, (3, 3, 2, 2, 0, 0))
    post_and_run(poster, 4, 12)  # rows numbered image-major: image 0's rows 4-5, all of image 1's
    np.testing.assert_allclose(y[0, 4:], expected[0, 4:], **CLOSE)
    np.testing.assert_allclose(y[1], expected[1], **CLOSE)
    assert np.isnan(y[0, :4]).all()
    unsplit, _ = pool.max_pool2d_forward(x, (3, 3), (2, 2), "valid", with_argmax=False)
    np.testing.assert_allclose(y[1], unsplit[1], **CLOSE)


class threads_set:
    def __init__(self, count):
        self.count = count

    def __enter__(self):
        self.before = threads.num_threads()
        threads.set_numba_threads(self.count)

    def __exit__(self, *exc):
        threads.set_numba_threads(self.before)


# ----- the session's lifecycle with the table -----

@pytest.fixture
def jobs_on(monkeypatch):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads for a session")
    monkeypatch.setattr(worker_pool, "SESSIONS", True)
    monkeypatch.setattr(worker_pool, "JOBS", True)
    monkeypatch.setitem(worker_pool._state, "backoff", 0)
    monkeypatch.setattr(worker_pool, "LATE_SPLITS", 10 ** 9)
    monkeypatch.setattr(small_steps, "SESSION_STEP_FLOPS", 0)  # every step splits in a session
    monkeypatch.setattr(small_steps, "SESSION_STEP_ELEMENTS", 0)
    monkeypatch.setattr(threads, "SESSION_SPLIT_FLOPS", 0)


def gemm_work(rng, fail_on_caller=False):
    """A run_chunks work over rows of a gemm_blocks product, with its native poster; expected result."""
    x = rng.standard_normal((50, 24)).astype(np.float32)
    w = rng.standard_normal((24, 40)).astype(np.float32)
    packed = gemm_blocks.pack(w)
    y = np.full((50, 40), np.nan, np.float32)
    lo, hi = np.float32(-np.inf), np.float32(np.inf)

    def work(slot, a, z):
        if fail_on_caller and slot == 0:
            raise RuntimeError("a step failed")
        gemm_blocks.product_epilogue(x[a:z], packed, y[a:z], None, lo, hi)

    work.native = jobs.gemm_poster(gemm_blocks._driver(packed.mr, packed.nv, packed.w), x, packed, y, None, lo, hi,
                                   False)
    return work, y, x.astype(np.float64) @ w


def assert_idle():
    """No session open, no job posted, worker 1 back to blocking on its inbox."""
    assert not worker_pool.awake()
    worker = worker_pool.get(1).workers[1]
    assert worker.jobs[job_table.STATE] == job_table.EMPTY
    assert worker.blocked.wait(HANG)


def test_a_forward_runs_native_jobs_on_the_worker_and_leaves_it_blocking(rng, jobs_on):
    model = fire_model(19)
    x = rng.standard_normal((1, 15, 13, 19)).astype(np.float32)
    expected = numpy_fire(model, x)
    worker = worker_pool.get(1).workers[1]
    served = worker.served
    for _ in range(200):  # until the worker took a job (it may be off its CPU on a busy machine)
        for buf in model._graph._free:
            buf.fill(np.nan)
        np.testing.assert_allclose(model.predict_on_batch(x), expected, **CLOSE)
        assert_idle()
        if worker.served > served:
            break
    assert worker.served > served


def test_an_error_in_the_callers_chunk_leaves_no_job_posted(rng, jobs_on):
    work, _, _ = gemm_work(rng, fail_on_caller=True)
    with pytest.raises(RuntimeError, match="a step failed"):
        with worker_pool.session(1):
            threads.run_chunks([0, 25, 50], work, 2)
    assert_idle()
    work, y, expected = gemm_work(rng)  # the pool still works
    with worker_pool.session(1):
        threads.run_chunks([0, 25, 50], work, 2)
    np.testing.assert_allclose(y, expected, **CLOSE)
    assert_idle()


def test_a_job_the_worker_never_took_is_run_by_the_caller(rng, jobs_on):
    worker = worker_pool.get(1).workers[1]
    assert worker.blocked.wait(HANG)
    work, y, expected = gemm_work(rng)
    served = worker.served
    assert worker_pool.run_posted(work, [0, 20, 50])  # no session open: the worker does not serve its table
    np.testing.assert_allclose(y, expected, **CLOSE)
    assert worker.served == served
    assert_idle()


def test_another_process_fills_tables_of_its_own(rng, jobs_on, monkeypatch):
    """A forked child sees its parent's pool: it builds its own workers, whose tables it fills; the
    parent's workers (threads the child does not have) get nothing."""
    parent = worker_pool.get(1)
    parent_worker = parent.workers[1]
    monkeypatch.setattr(parent, "pid", -1)  # as a forked child sees its parent's pool
    model = fire_model(19)
    x = rng.standard_normal((1, 15, 13, 19)).astype(np.float32)
    expected = numpy_fire(model, x)
    served, posted = parent_worker.served, parent_worker.flags[worker_pool.POSTED]
    for _ in range(3):
        np.testing.assert_allclose(model.predict_on_batch(x), expected, **CLOSE)
    own = worker_pool.get(1)
    assert own is not parent and own.workers[1].jobs is not parent_worker.jobs
    assert parent_worker.served == served and parent_worker.flags[worker_pool.POSTED] == posted
    assert parent_worker.jobs[job_table.STATE] == job_table.EMPTY
    assert_idle()
