"""The contention check (tlkit/utils/contention.py): the other processes' CPU use from the machine's idle
time and this process's CPU time, read at most once per interval. Driven by fake counters and an injected
clock: a busy neighbour and a quiet machine decide differently, the interval is honoured by the clock (no
sleeping), an unreadable or malformed /proc/stat answers "busy" and is retried only once per interval."""
import os

import pytest

from tlkit.utils import contention


class Fake:
    """Counters and a clock the test moves: ``step(wall, own_cores, other_cores)`` advances the clock by
    ``wall`` seconds while this process used ``own_cores`` and the others ``other_cores`` of 2 CPUs."""

    def __init__(self, cpus=2):
        self.cpus, self.now, self.idle_s, self.own_s, self.fail = cpus, 64.0, 5000.0, 3.0, None

    def step(self, wall, own_cores, other_cores):
        self.now += wall
        self.own_s += own_cores * wall
        self.idle_s += (self.cpus - own_cores - other_cores) * wall

    def idle(self):
        if self.fail:
            raise self.fail
        return self.idle_s

    def gauge(self, **kwargs):
        kwargs = {"machine_cpus": self.cpus, "usable": self.cpus, "interval": 0.25, **kwargs}
        return contention.Gauge(idle=self.idle, own=lambda: self.own_s, clock=lambda: self.now, **kwargs)


def test_a_busy_neighbour_and_a_quiet_machine_decide_differently():
    fake = Fake()
    gauge = fake.gauge()
    assert gauge.quiet(2) is False  # no window yet: the first read only starts one
    fake.step(0.25, own_cores=1.6, other_cores=0.05)  # alone, our worker polling: quiet
    assert gauge.quiet(2) is True
    assert gauge.others == pytest.approx(0.05)
    fake.step(0.25, own_cores=1.0, other_cores=1.0)  # a busy loop beside us
    assert gauge.quiet(2) is False
    assert gauge.quiet(1) is True  # one thread still has a core of its own
    fake.step(0.25, own_cores=0.7, other_cores=1.3)  # torch's two spinning threads
    assert gauge.quiet(2) is False
    fake.step(0.25, own_cores=1.9, other_cores=0.0)  # the neighbour gone
    assert gauge.quiet(2) is True
    assert gauge.others == pytest.approx(0.0, abs=1e-9)


def test_fewer_usable_cpus_than_the_machine_has_count():
    """Affinity to one CPU of two: an idle machine still leaves that process one core, not two."""
    fake = Fake()
    gauge = fake.gauge(usable=1)
    gauge.quiet(2)
    fake.step(0.25, own_cores=1.0, other_cores=0.0)
    assert gauge.quiet(1) is True
    assert gauge.quiet(2) is False


def test_counters_are_read_at_most_once_per_interval_by_the_clock():
    fake = Fake()
    gauge = fake.gauge(interval=0.25)
    gauge.quiet(2)
    fake.step(0.25, own_cores=1.5, other_cores=0.0)
    assert gauge.quiet(2) is True and gauge.reads == 2
    for _ in range(3):  # a neighbour starts, but within the interval the answer is the cached one
        fake.step(0.0625, own_cores=1.0, other_cores=1.0)
        assert gauge.quiet(2) is True
    assert gauge.reads == 2
    fake.step(0.0625, own_cores=1.0, other_cores=1.0)  # 0.25 s since the last read
    assert gauge.quiet(2) is False and gauge.reads == 3
    assert gauge.others == pytest.approx(1.0)  # averaged over the whole window since that read


@pytest.mark.parametrize("failure", [OSError("no /proc"), ValueError("no 'cpu' line first")])
def test_unreadable_counters_answer_busy_and_are_retried_once_per_interval(failure):
    fake = Fake()
    fake.fail = failure
    gauge = fake.gauge()
    assert gauge.quiet(2) is False
    fake.step(0.125, own_cores=1.5, other_cores=0.0)
    assert gauge.quiet(2) is False and gauge.reads == 1  # not retried within the interval
    fake.step(0.125, own_cores=1.5, other_cores=0.0)
    assert gauge.quiet(2) is False and gauge.reads == 2
    fake.fail = None  # readable again: a fresh window, then an answer
    fake.step(0.25, own_cores=1.5, other_cores=0.0)
    assert gauge.quiet(2) is False
    fake.step(0.25, own_cores=1.5, other_cores=0.0)
    assert gauge.quiet(2) is True


def test_a_forked_child_starts_a_window_of_its_own(monkeypatch):
    """A child's CPU time restarts: its parent's last read is no window for it (answer: not yet quiet)."""
    fake = Fake()
    gauge = fake.gauge()
    gauge.quiet(2)
    fake.step(0.25, own_cores=1.5, other_cores=0.0)
    assert gauge.quiet(2) is True
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)
    fake.own_s = 0.0
    fake.step(0.0625, own_cores=1.5, other_cores=0.0)
    assert gauge.quiet(2) is False
    fake.step(0.25, own_cores=1.5, other_cores=0.0)
    assert gauge.quiet(2) is True


def test_proc_stat_idle_is_idle_plus_iowait_in_seconds(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  7843317 4369 855237 7773055 226986 0 3693 21124 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
    assert contention.read_idle_seconds(str(stat)) == pytest.approx((7773055 + 226986) / contention._TICKS)
    stat.write_text("intr 1 2 3\n")
    with pytest.raises(ValueError, match="'cpu' line"):
        contention.read_idle_seconds(str(stat))
    with pytest.raises(OSError):
        contention.read_idle_seconds(str(tmp_path / "missing"))


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux's /proc/stat")
def test_the_real_counters_read():
    first = contention.read_idle_seconds()
    assert first > 0 and contention.read_idle_seconds() >= first


def test_switched_off_every_check_answers_quiet_without_reading(monkeypatch):
    fake = Fake()
    gauge = fake.gauge()
    monkeypatch.setattr(contention, "_gauge", gauge)
    monkeypatch.setattr(contention, "ENABLED", False)
    assert contention.quiet(2) is True and gauge.reads == 0
    monkeypatch.setattr(contention, "ENABLED", True)
    assert contention.quiet(2) is False and gauge.reads == 1
