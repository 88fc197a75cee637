"""Worker sessions (tlkit/utils/worker_pool.session; off by default, turned on here: then opened by every
inference forward on images with more than one thread): the workers poll only while one is open (observable: the count of open
sessions, each worker's flags and its ``blocked`` event), an error inside a step ends it, sessions nest
and run from two threads at once, and forwards with every step split in a session equal the rule off
and a float64 numpy reference, recycled buffers poisoned between calls. No timings here: the waits are
bounded only against hangs."""
import threading

import numba
import numpy as np
import pytest

import tlkit
from tests.engine.test_inference_buffers import numpy_conv
from tests.engine.test_inverted_residuals import reference_block, run_kernel, same_pads, weights
from tests.engine.test_small_steps import Probe, mobile_model, numpy_mobile
from tlkit import layers as L
from tlkit.engine import small_steps
from tlkit.engine.kernels import mbconv_bands
from tlkit.engine.tape import GradientTape
from tlkit.utils import threads, worker_pool

HANG = 120  # seconds: only a hang reaches these bounds
CLOSE = dict(rtol=1e-4, atol=1e-4)  # float32 routes against float64; a wrong buffer is off by O(1)


@pytest.fixture(autouse=True)
def sessions_on(monkeypatch):
    """Sessions are off by default (worker_pool.SESSIONS): these tests turn them on."""
    monkeypatch.setattr(worker_pool, "SESSIONS", True)


@pytest.fixture(autouse=True)
def no_back_off(monkeypatch):
    """Sessions open whatever earlier tests (or a busy machine) made of the back-off (tested on its own)."""
    monkeypatch.setitem(worker_pool._state, "backoff", 0)
    monkeypatch.setattr(worker_pool, "LATE_SPLITS", 10 ** 9)


@pytest.fixture
def two_threads():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads for a session")


@pytest.fixture
def split_everything(monkeypatch):
    """In a session, every step and every route splits over the threads, however small."""
    monkeypatch.setattr(small_steps, "SESSION_STEP_FLOPS", 0)
    monkeypatch.setattr(small_steps, "SESSION_STEP_ELEMENTS", 0)
    monkeypatch.setattr(threads, "SESSION_SPLIT_FLOPS", 0)


def assert_closed():
    """No session open, and every worker back to blocking on its inbox."""
    assert not worker_pool.awake()
    pool = worker_pool.get(1)
    for worker in pool.workers[1:]:
        assert worker.flags[worker_pool.OPEN] == 0
        assert worker.blocked.wait(HANG)


def test_a_session_opens_nests_and_closes():
    pool = worker_pool.get(1)
    worker = pool.workers[1]
    assert not worker_pool.awake()
    with worker_pool.session(1):
        assert worker_pool.awake() and worker.flags[worker_pool.OPEN] == 1
        with worker_pool.session(1):
            assert worker.flags[worker_pool.OPEN] == 2
            acc = np.zeros(30, np.int64)

            def work(slot, lo, hi):
                acc[lo:hi] += 1

            threads.run_chunks([0, 7, 30], work, 2)
            assert (acc == 1).all()
        assert worker_pool.awake() and worker.flags[worker_pool.OPEN] == 1
    assert_closed()


def test_no_session_without_a_second_thread_or_when_switched_off(monkeypatch):
    with worker_pool.session(0):
        assert not worker_pool.awake()
    monkeypatch.setattr(worker_pool, "SESSIONS", False)
    with worker_pool.session(1):
        assert not worker_pool.awake()


class SessionProbe(Probe):
    """Probe that also notes whether a session is open during each call."""

    def call(self, x):
        self.awake = getattr(self, "awake", []) + [worker_pool.awake()]
        return super().call(x)


def test_a_forward_opens_a_session_and_an_error_inside_a_step_ends_it(rng, two_threads):
    x = tlkit.Input((None, None, 4))
    probe = SessionProbe(name="probe")
    y = L.Conv2D(8, 3, padding="same", activation="relu")(probe(x))
    model = tlkit.Model(x, L.GlobalAveragePooling2D()(y))
    xs = rng.standard_normal((1, 9, 7, 4)).astype(np.float32)
    model.predict_on_batch(xs)
    assert probe.awake == [True]
    assert_closed()
    probe.fail = True
    with pytest.raises(ValueError, match="on purpose"):
        model.predict_on_batch(xs)
    assert probe.awake == [True, True]
    assert_closed()
    probe.fail = False
    with GradientTape():  # a recorded forward (training) opens none
        model(xs, training=True)
    model.predict_on_batch(np.concatenate([xs] * (small_steps.SESSION_IMAGES + 1)))  # nor a larger batch
    assert probe.awake == [True, True, False, False]
    assert_closed()


def test_every_step_split_in_a_session_matches_the_rule_off_and_numpy(rng, monkeypatch, two_threads,
                                                                       split_everything):
    model = mobile_model()
    x = rng.standard_normal((1, 16, 16, 3)).astype(np.float32)
    expected = numpy_mobile(model, x.astype(np.float64))
    monkeypatch.setattr(worker_pool, "SESSIONS", False)
    off = model.predict_on_batch(x).copy()
    monkeypatch.setattr(worker_pool, "SESSIONS", True)
    model._graph.plan.alone.clear()
    for _ in range(3):
        for buf in model._graph._free:  # last call's recycled buffers: poisoned, must be overwritten
            buf.fill(np.nan)
        got = model.predict_on_batch(x)
        np.testing.assert_allclose(got, off, **CLOSE)
        np.testing.assert_allclose(got, expected, **CLOSE)
    assert_closed()


def fire_model(channels):
    """SqueezeNet's fire module on odd sizes: squeeze 1x1, expand 1x1 and 3x3 (Winograd) into one
    concatenation, then a 3x3/2 max pool."""
    x = tlkit.Input((None, None, channels))
    s = L.Conv2D(16, 1, activation="relu")(x)
    y = L.Concatenate()([L.Conv2D(24, 1, activation="relu")(s), L.Conv2D(40, 3, padding="same", activation="relu")(s)])
    model = tlkit.Model(x, L.MaxPooling2D(3, 2)(y))
    model.trainable = False
    return model


def numpy_fire(model, x):
    squeeze, expand1, expand3 = [layer for layer in model.layers if isinstance(layer, L.Conv2D)]
    s = np.maximum(numpy_conv(x, *squeeze.get_weights()), 0)
    y = np.concatenate([np.maximum(numpy_conv(s, *expand1.get_weights()), 0),
                        np.maximum(numpy_conv(s, *expand3.get_weights(), pad=1), 0)], axis=-1)
    oh, ow = (y.shape[1] - 3) // 2 + 1, (y.shape[2] - 3) // 2 + 1
    return np.max([y[:, i:i + 2 * oh:2, j:j + 2 * ow:2] for i in range(3) for j in range(3)], axis=0)


def count_splits(monkeypatch):
    """[bounds] of every run_chunks call on two threads from here on: Python chunks and those whose
    second half ran as the worker's native job (worker_pool.run_posted)."""
    splits, real, posted = [], threads._Chunks, worker_pool.run_posted

    class Counted(real):
        def __init__(self, bounds, work, cpus=None):
            super().__init__(bounds, work, cpus)
            splits.append(bounds)

    def counted_posted(work, bounds):
        ran = posted(work, bounds)
        if ran:
            splits.append(bounds)
        return ran

    monkeypatch.setattr(threads, "_Chunks", Counted)
    monkeypatch.setattr(worker_pool, "run_posted", counted_posted)
    return splits


@pytest.mark.parametrize("batch", [1, 2])
def test_a_fire_module_split_in_a_session_matches_numpy(rng, monkeypatch, two_threads, split_everything, batch):
    monkeypatch.setattr(small_steps, "SESSION_IMAGES", batch)
    model = fire_model(19)
    x = rng.standard_normal((batch, 23, 17, 19)).astype(np.float32)
    expected = numpy_fire(model, x.astype(np.float64))
    splits = count_splits(monkeypatch)
    for _ in range(3):
        for buf in model._graph._free:
            buf.fill(np.nan)
        np.testing.assert_allclose(model.predict_on_batch(x), expected, **CLOSE)
    assert len(splits) >= 3 * 4  # the three convs and the pool, each split
    monkeypatch.setattr(worker_pool, "SESSIONS", False)
    model._graph.plan.alone.clear()
    np.testing.assert_allclose(model.predict_on_batch(x), expected, **CLOSE)


@pytest.mark.parametrize("jobs", [True, False])  # the worker's job table (native chunks) or Python chunks only
def test_forwards_from_two_threads_at_once_stay_correct(rng, monkeypatch, two_threads, split_everything, jobs):
    monkeypatch.setattr(worker_pool, "JOBS", jobs)
    model = fire_model(19)
    inputs = [rng.standard_normal((1, 21, 15, 19)).astype(np.float32) for _ in range(2)]
    expected = [numpy_fire(model, x.astype(np.float64)) for x in inputs]
    start = threading.Barrier(2, timeout=HANG)
    errors, results = [], {0: [], 1: []}

    def caller(i):
        try:
            start.wait()
            for _ in range(20):
                got = model.predict_on_batch(inputs[i])
                results[i].append(bool(np.allclose(got, expected[i], **CLOSE)))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    callers = [threading.Thread(target=caller, args=(i,)) for i in range(2)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(HANG)
    assert not errors and not any(t.is_alive() for t in callers)
    assert results == {0: [True] * 20, 1: [True] * 20}
    assert_closed()


@pytest.mark.parametrize("s,k,c,e,f,res", [(1, 3, 8, 48, 8, True), (2, 3, 17, None, 9, False), (2, 5, 12, 36, 20, False)])
def test_a_batch_1_block_in_a_session_is_a_band_per_thread(rng, monkeypatch, two_threads, s, k, c, e, f, res):
    """At batch 1 a whole image fits one band; in a session it is cut into one band per thread."""
    x = rng.standard_normal((1, 13, 11, c)).astype(np.float32)
    expand, dk, db, project = weights(rng, c, e, f, k)
    zero_pads = same_pads(x.shape[1:3], k, s)
    oh = -(-13 // s)
    residual = rng.standard_normal((1, oh, -(-11 // s), f)).astype(np.float32) if res else None
    expected = reference_block(x, expand, dk, db, (s, s), zero_pads, project, residual)
    alone = run_kernel(x, expand, dk, db, (s, s), zero_pads, project, residual, 2)
    with worker_pool.session(1):
        pieces, _, _ = mbconv_bands._pieces(1, 13, 11, 48, oh, 11, s, k, 2)
        split = run_kernel(x, expand, dk, db, (s, s), zero_pads, project, residual, 2)
    assert len(pieces) == 2 and sorted(r for p in pieces for r in p[2:]) == [0, pieces[0][3], pieces[0][3], oh]
    np.testing.assert_allclose(split, expected, **CLOSE)
    np.testing.assert_allclose(split, alone, **CLOSE)
    assert_closed()


@pytest.mark.parametrize("pool2", [False, True])
def test_winograd_by_output_channels_in_a_session_matches_numpy(rng, monkeypatch, two_threads, pool2):
    """A few tiles and a wide filter: in a session each thread takes a block of output channels (one
    block not a multiple of 16), written into a channel slice of a wider output."""
    from tlkit.engine.kernels import winograd

    x = rng.standard_normal((1, 11, 9, 17)).astype(np.float32)
    w = (rng.standard_normal((3, 3, 17, 37)) / 6).astype(np.float32)
    b = rng.standard_normal(37).astype(np.float32)
    assert threads.by_output_channels(36 * 17 * 37, 36 * 9 * 17, 37) is False  # no session: tile rows
    expected = np.maximum(numpy_conv(x, w, b, pad=1), 0)
    if pool2:
        expected = expected[:, :10, :8].reshape(1, 5, 2, 4, 2, 37).max(axis=(2, 4))
    splits = count_splits(monkeypatch)
    with worker_pool.session(1):
        assert threads.by_output_channels(36 * 17 * 37, 36 * 9 * 17, 37)
        out = np.full(expected.shape[:3] + (50,), np.nan, np.float32)
        winograd.conv3x3(x, w, None, b, 1, 1, (11, 9), True, out, 5, pool2)
    assert splits == [[0, 16, 37]]
    np.testing.assert_allclose(out[..., 5:42], expected, **CLOSE)
    assert np.isnan(out[..., :5]).all() and np.isnan(out[..., 42:]).all()
    assert_closed()


def test_sessions_back_off_after_a_forward_that_waited_on_a_late_worker(monkeypatch):
    """A session whose caller waited on a descheduled worker in LATE_SPLITS splits is followed by
    BACKOFF_FORWARDS sessions that do not open (the steps run as without a session), then they open again."""
    monkeypatch.setattr(worker_pool, "BACKOFF_FORWARDS", 3)
    monkeypatch.setattr(worker_pool, "LATE_SPLITS", 2)
    with worker_pool.session(1):
        worker_pool.note_late(False)
        for _ in range(worker_pool.LATE_SPLITS - 1):
            worker_pool.note_late(True)
    with worker_pool.session(1):  # one late split short: no back-off
        assert worker_pool.awake()
        for _ in range(worker_pool.LATE_SPLITS):
            worker_pool.note_late(True)
    opened = []
    for _ in range(4):
        with worker_pool.session(1):
            opened.append(worker_pool.awake())
    assert opened == [False, False, False, True]
    assert_closed()
