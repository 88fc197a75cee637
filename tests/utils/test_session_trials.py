"""Session trials (tlkit/utils/session_trials.py): a graph's forwards alternate with and without a worker
session until each side has TRIAL_FORWARDS, the faster median (sessions by MARGIN) then runs KEEP_FORWARDS
forwards, a winning session that slows down starts a trial at once, and busy machines or failed forwards
count for nothing. Durations come from fake clocks: no timings."""
import contextlib
import threading

import pytest

from tlkit.utils import contention, session_trials


@pytest.fixture(autouse=True)
def small_trials(monkeypatch):
    monkeypatch.setattr(session_trials, "ENABLED", True)
    monkeypatch.setattr(session_trials, "TRIAL_FORWARDS", 3)
    monkeypatch.setattr(session_trials, "KEEP_FORWARDS", 5)
    monkeypatch.setattr(session_trials, "CHECK_FORWARDS", 2)
    monkeypatch.setattr(session_trials, "_trials", {})


def run(trial, seconds, forwards):
    """``forwards`` forwards of ``trial``: seconds(opened) each; the list of whether each was in a session."""
    opened = []
    for _ in range(forwards):
        opened.append(trial.wants())
        trial.record(opened[-1], seconds(opened[-1]))
    return opened


def test_a_trial_alternates_and_the_faster_side_runs_until_the_next():
    trial = session_trials.Trial()
    faster_in_a_session = lambda opened: 1.0 if opened else 1.5  # noqa: E731
    assert run(trial, faster_in_a_session, 6) == [False, True] * 3
    assert trial.trials == 1 and trial.choice is True
    assert run(trial, faster_in_a_session, 5) == [True] * 5
    assert trial.choice is None  # KEEP_FORWARDS done: the next trial begins
    slower_in_a_session = lambda opened: 1.5 if opened else 1.0  # noqa: E731
    assert run(trial, slower_in_a_session, 6 + 5) == [False, True] * 3 + [False] * 5
    assert trial.trials == 2


def test_sessions_must_win_by_the_margin():
    trial = session_trials.Trial()
    barely = lambda opened: 0.99 if opened else 1.0  # noqa: E731
    run(trial, barely, 6)
    assert trial.choice is False  # 1% faster: under MARGIN, the workers stay asleep


def test_winning_sessions_that_slow_down_start_a_trial_at_once():
    trial = session_trials.Trial()
    run(trial, lambda opened: 1.0 if opened else 1.5, 6)
    assert run(trial, lambda opened: 1.0, 2) == [True, True] and trial.choice is True  # as fast as in the trial
    assert run(trial, lambda opened: 2.0, 2) == [True, True]  # 2x their trial median: a new trial now
    assert trial.choice is None and trial.wants() is False


class Forwards:
    """forward() driven by a fake clock (a forward takes ``fast`` seconds in a session, ``slow`` without) and
    a fake session that notes whether it was open."""

    def __init__(self, monkeypatch, fast=1.0, slow=2.0, quiet=True):
        self.now, self.opened, self.fast, self.slow, self.inside = 0.0, [], fast, slow, False
        monkeypatch.setattr(session_trials, "clock", self.clock)
        monkeypatch.setattr(contention, "quiet", lambda threads: quiet)

    def clock(self):
        return self.now

    @contextlib.contextmanager
    def session(self, workers):
        assert workers == 1
        self.inside = True
        yield
        self.inside = False

    def run(self, key, count=1):
        for _ in range(count):
            with session_trials.forward(key, 2, self.session):
                self.opened.append(self.inside)
                self.now += self.fast if self.inside else self.slow
        return self.opened


def test_each_graph_has_trials_of_its_own(monkeypatch):
    forwards = Forwards(monkeypatch)
    for _ in range(6):  # two graphs called in turn: each alternates on its own
        forwards.run("a")
        forwards.run("b")
    assert forwards.opened == [False, False, True, True] * 3
    assert session_trials.trial("a").choice is True and session_trials.trial("b").choice is True


def test_a_busy_machine_opens_no_session_and_its_forwards_count_for_nothing(monkeypatch):
    forwards = Forwards(monkeypatch, quiet=False)
    assert forwards.run("a", 8) == [False] * 8
    assert "a" not in session_trials._trials


def test_a_forward_that_raised_counts_for_nothing(monkeypatch):
    forwards = Forwards(monkeypatch)
    with pytest.raises(ValueError):
        with session_trials.forward("a", 2, forwards.session):
            raise ValueError("a layer failed")
    assert session_trials.trial("a").times == {False: [], True: []}


def test_trials_off_every_quiet_forward_opens_one(monkeypatch):
    monkeypatch.setattr(session_trials, "ENABLED", False)
    forwards = Forwards(monkeypatch)
    assert forwards.run("a", 4) == [True] * 4
    with session_trials.forward("a", 1, forwards.session):  # one thread: no worker to wake
        assert not forwards.inside


def test_the_trials_kept_stay_bounded(monkeypatch):
    monkeypatch.setattr(session_trials, "MAX_GRAPHS", 4)
    for key in range(10):
        session_trials.trial(key)
    assert len(session_trials._trials) <= 4


def test_forwards_of_one_graph_from_two_threads_keep_the_trials_whole(monkeypatch):
    """Two threads recording into one graph's trials at once: no lost or half-made trial."""
    trial = session_trials.Trial()
    errors = []

    def forwards():
        try:
            for _ in range(2000):
                opened = trial.wants()
                trial.record(opened, 1.0 if opened else 1.5)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    callers = [threading.Thread(target=forwards) for _ in range(2)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    assert not errors
    assert trial.trials >= 4000 // (2 * session_trials.TRIAL_FORWARDS + session_trials.KEEP_FORWARDS + 2)
    assert trial.choice in (None, True)  # sessions were faster in every trial
