"""The one place a forward decides whether to open a worker session (engine/small_steps.session) asks the
contention check (tlkit/utils/contention.py): a batch-1 inference forward opens none while other processes
keep the cores busy and one while the machine is quiet (observable: whether a session is open during a
layer's call). The check is driven by fake counters and an injected clock; no timings."""
import numba
import numpy as np
import pytest

import tlkit
from tests.engine.test_worker_session import SessionProbe
from tests.utils.test_contention import Fake
from tlkit import layers as L
from tlkit.utils import contention, session_trials, worker_pool


@pytest.fixture(autouse=True)
def sessions_on_and_checked(monkeypatch):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 numba threads for a session")
    monkeypatch.setattr(worker_pool, "SESSIONS", True)
    monkeypatch.setattr(contention, "ENABLED", True)  # tests/conftest.py turns it off for every other test
    monkeypatch.setitem(worker_pool._state, "backoff", 0)
    monkeypatch.setattr(worker_pool, "LATE_SPLITS", 10 ** 9)


def probed_model():
    x = tlkit.Input((None, None, 4))
    probe = SessionProbe(name="probe")
    y = L.Conv2D(8, 3, padding="same", activation="relu")(probe(x))
    return tlkit.Model(x, L.GlobalAveragePooling2D()(y)), probe


def test_a_forward_opens_a_session_only_while_the_machine_is_quiet(rng, monkeypatch):
    fake = Fake()
    gauge = fake.gauge(interval=0.25)
    monkeypatch.setattr(contention, "_gauge", gauge)
    model, probe = probed_model()
    xs = rng.standard_normal((1, 9, 7, 4)).astype(np.float32)
    expected = model.predict_on_batch(xs).copy()  # first read: no window yet, so no session
    fake.step(0.25, own_cores=1.0, other_cores=1.0)  # a busy neighbour
    busy = model.predict_on_batch(xs).copy()
    fake.step(0.25, own_cores=1.6, other_cores=0.02)  # the neighbour gone
    quiet = model.predict_on_batch(xs).copy()
    fake.step(0.125, own_cores=1.0, other_cores=1.0)  # within the interval: the cached answer
    cached = model.predict_on_batch(xs).copy()
    fake.step(0.125, own_cores=1.0, other_cores=1.0)  # the window now says busy
    again = model.predict_on_batch(xs).copy()
    assert probe.awake == [False, False, True, True, False]
    assert gauge.reads == 4
    for out in (busy, quiet, cached, again):
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    assert not worker_pool.awake()


def test_unreadable_counters_open_no_session(rng, monkeypatch):
    fake = Fake()
    fake.fail = OSError("no /proc/stat")
    monkeypatch.setattr(contention, "_gauge", fake.gauge(interval=0.25))
    model, probe = probed_model()
    xs = rng.standard_normal((1, 9, 7, 4)).astype(np.float32)
    for _ in range(3):
        model.predict_on_batch(xs)
        fake.step(0.25, own_cores=1.5, other_cores=0.0)
    assert probe.awake == [False, False, False]


def test_a_graph_keeps_sessions_only_while_they_are_faster(rng, monkeypatch):
    """Trials on (session_trials): the forwards alternate with and without a session, then the faster side
    runs; the durations come from a clock that reads 1 s a forward in a session and 2 s without (reversed
    for the second model)."""
    monkeypatch.setattr(contention, "ENABLED", False)  # the machine taken as quiet
    monkeypatch.setattr(session_trials, "ENABLED", True)
    monkeypatch.setattr(session_trials, "TRIAL_FORWARDS", 2)
    monkeypatch.setattr(session_trials, "KEEP_FORWARDS", 3)
    monkeypatch.setattr(session_trials, "_trials", {})
    xs = rng.standard_normal((1, 9, 7, 4)).astype(np.float32)
    for in_session, without, expected in ((1.0, 2.0, [True] * 3), (2.0, 1.0, [False] * 3)):
        model, probe = probed_model()
        now = [0.0]

        def clock():  # a forward's end: its probe's call says whether it ran in a session
            if len(probe.__dict__.get("awake", [])) > clock.forwards:
                clock.forwards += 1
                now[0] += in_session if probe.awake[-1] else without
            return now[0]
        clock.forwards = 0
        monkeypatch.setattr(session_trials, "clock", clock)
        first = model.predict_on_batch(xs).copy()
        for _ in range(4 + 3 - 1):
            np.testing.assert_allclose(model.predict_on_batch(xs), first, rtol=1e-5, atol=1e-5)
        assert probe.awake == [False, True, False, True] + expected
    assert not worker_pool.awake()
