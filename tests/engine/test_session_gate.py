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
from tlkit.utils import contention, worker_pool


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
