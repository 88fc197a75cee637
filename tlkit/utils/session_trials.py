"""Whether a forward opens a worker session: only while the machine is quiet (``contention.quiet``) and
sessions are measured faster for that graph now.

Why measure: a session is meant to make a batch-1 forward faster, yet it depends on the CPU and the moment.
With the sessions of 2026-11-27 a quiet SqueezeNet b1 forward took 5.5-5.9 ms in a session against 5.25 ms
without on an AMD EPYC, and in some stretches of seconds 8-12 ms in a session while it stayed at 5.3-6.1
without and the other processes used under 0.1 core (BENCHMARKS.md, "Sharing the machine"). So each graph
runs trials: TRIAL_FORWARDS forwards with and as many without, alternated; sessions win when their median
is MARGIN faster. The winner then runs KEEP_FORWARDS forwards before the next trial, sooner when sessions
won and a run of CHECK_FORWARDS of them is SLOWER over their trial median. Forwards while the machine is
busy open no session and are not counted (a busy machine's times say nothing of a quiet one's).

    with session_trials.forward(key, threads, worker_pool.session):   # around one forward of a graph
        ...
"""
import contextlib
import statistics
import threading
import time

from tlkit.utils import contention

TRIAL_FORWARDS = 8  # forwards in a session in a trial, and as many without
KEEP_FORWARDS = 256  # forwards the winner runs before the next trial
CHECK_FORWARDS = 16  # with sessions winning, their median over this many forwards ...
SLOWER = 0.15  # ... this much over their trial median starts a trial at once
MARGIN = 0.02  # sessions win when their median is this much under the median without
# False: every quiet forward opens a session (no trials; the A/B scripts and tests take both sides).
ENABLED = True
MAX_GRAPHS = 64  # trials kept at most (one per graph and input shape)


class Trial:
    """One graph's trials: ``wants()`` says whether its next forward opens a session, ``record`` takes
    how long a forward took and whether it was in one."""

    def __init__(self):
        self.times = {False: [], True: []}  # this trial's forward seconds, without and with a session
        self.choice = None  # None: in a trial; else whether sessions won the last one
        self.left = 0  # forwards the choice still runs
        self.expected = 0.0  # the sessions' median in the trial they won
        self.recent = []
        self.trials = 0  # trials finished (observable by tests)
        self._lock = threading.Lock()  # forwards of one graph from several threads at once

    def wants(self):
        if self.choice is not None:
            return self.choice
        return len(self.times[True]) < len(self.times[False])  # alternate, the first without

    def record(self, opened, seconds):
        with self._lock:
            self._record(opened, seconds)

    def _record(self, opened, seconds):
        if self.choice is None:
            self.times[opened].append(seconds)
            if min(len(self.times[False]), len(self.times[True])) >= TRIAL_FORWARDS:
                with_, without = statistics.median(self.times[True]), statistics.median(self.times[False])
                self.choice = with_ < without * (1 - MARGIN)
                self.expected, self.left, self.recent = with_, KEEP_FORWARDS, []
                self.times = {False: [], True: []}
                self.trials += 1
            return
        self.left -= 1
        if self.choice:
            self.recent.append(seconds)
            if len(self.recent) >= CHECK_FORWARDS:
                if statistics.median(self.recent) > self.expected * (1 + SLOWER):
                    self.left = 0  # sessions slowed down: try both again now
                self.recent = []
        if self.left <= 0:
            self.choice = None


_trials = {}
_lock = threading.Lock()
clock = time.perf_counter  # the forwards' clock (tests drive their own)


def trial(key):
    """The trials of graph ``key`` (kept for at most MAX_GRAPHS keys)."""
    found = _trials.get(key)
    if found is None:
        with _lock:
            if len(_trials) >= MAX_GRAPHS:
                _trials.clear()
            found = _trials.setdefault(key, Trial())
    return found


@contextlib.contextmanager
def forward(key, threads, open_session):
    """One forward of graph ``key`` on ``threads`` threads, in a session (``open_session(threads - 1)``)
    while the machine is quiet and, for this graph, sessions win their trials; timed for the trials."""
    if threads < 2 or not contention.quiet(threads):
        yield
        return
    if not ENABLED:
        with open_session(threads - 1):
            yield
        return
    this = trial(key)
    opened = this.wants()
    started = clock()
    with open_session(threads - 1) if opened else contextlib.nullcontext():
        yield
    this.record(opened, clock() - started)  # not reached when the forward raised
