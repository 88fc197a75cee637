"""Whether the machine has the cores a batch-1 worker session needs: how busy the other processes are.

A worker session (``worker_pool.session``) keeps tlkit's worker polling between the steps of a forward.
Alone on the machine that makes batch-1 forwards faster; beside another busy process it takes the core
the neighbour needs, and a worker the scheduler keeps off its CPU makes every split step wait
(BENCHMARKS.md, "Sharing the machine": with sessions tlkit kept 37% of its solo throughput beside torch,
79% beside a busy loop whose share was 94%). So a forward opens a session only while the other
processes leave it the cores: ``quiet(threads)``.

How: the CPU time the other processes used over the last window of at least INTERVAL seconds, from the
machine's idle time (``/proc/stat``'s first line: idle + iowait) and this process's own CPU time
(``time.process_time``; our polling worker is our own, so the answer does not depend on whether
sessions were open). Read at most once per INTERVAL and cached: a check between reads is a clock read
and a comparison. A neighbour that is runnable all the time (a busy loop, torch's spinning threads,
a second tlkit process) uses about a core; a quiet machine's background uses a few percent of one.
Where ``/proc/stat`` cannot be read (not Linux, a sandbox) the answer is "busy": forwards then run
without sessions, as tlkit did before them.

    contention.quiet(2)    # True while other processes leave 2 cores free (within SLACK)
"""
import os
import threading
import time

# Seconds between two reads of the counters: the window the others' CPU use is averaged over. The
# counters tick in hundredths of a second per CPU, so a 0.2 s window on 2 CPUs reads within ~0.1 core.
INTERVAL = 0.2
# Cores the other processes may use on average beyond what the session leaves free (a quiet machine's
# background, the counters' resolution), yet the session still opens; a busy neighbour uses ~1 core.
SLACK = 0.5
# False: every check answers "quiet" (sessions then opened whatever the load; A/B scripts and tests).
ENABLED = True
# Ticks per second of /proc/stat's counters.
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def read_idle_seconds(path="/proc/stat"):
    """Seconds every CPU of the machine spent idle (or waiting for I/O) since boot, summed."""
    with open(path, "rb") as f:
        fields = f.readline().split()
    if fields[:1] != [b"cpu"] or len(fields) < 6:
        raise ValueError(f"{path}: no 'cpu' line first")
    return (int(fields[4]) + int(fields[5])) / _TICKS


def usable_cpus():
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class Gauge:
    """The other processes' CPU use over the last window, read at most once per ``interval``. The readers
    and the clock are arguments so that tests drive them: ``idle()`` -> the machine's idle CPU seconds,
    ``own()`` -> this process's CPU seconds, ``clock()`` -> wall seconds."""

    def __init__(self, idle=read_idle_seconds, own=time.process_time, clock=time.monotonic,
                 machine_cpus=None, usable=None, interval=None):
        self.idle, self.own, self.clock = idle, own, clock
        self.machine_cpus = machine_cpus or os.cpu_count() or 1
        self.usable = usable or usable_cpus()
        self.interval = INTERVAL if interval is None else interval
        self.sample = None  # (wall, pid, (idle, own) or None when unreadable) of the last read
        self.others = None  # cores the other processes used over the last window; None: unknown
        self.reads = 0  # counter reads so far (observable by tests)
        self._lock = threading.Lock()

    def quiet(self, threads):
        """Whether the other processes left ``threads`` cores free over the last window (within SLACK)."""
        if self._stale(self.clock()):
            with self._lock:
                now = self.clock()
                if self._stale(now):  # not read meanwhile by another thread
                    self._read(now)
        others = self.others
        if others is None:
            return False
        return min(self.machine_cpus - others, self.usable) >= threads - SLACK

    def _stale(self, now):
        sample = self.sample
        return sample is None or now - sample[0] >= self.interval or sample[1] != os.getpid()

    def _read(self, now):
        self.reads += 1
        try:
            counters = (self.idle(), self.own())
        except (OSError, ValueError, IndexError):
            counters = None
        last, self.sample = self.sample, (now, os.getpid(), counters)
        if counters is None or last is None or last[1] != os.getpid() or last[2] is None or now <= last[0]:
            self.others = None  # no window yet: a first read, a forked child's, a failed one
            return
        wall = now - last[0]
        busy = self.machine_cpus - (counters[0] - last[2][0]) / wall  # cores in use, ours included
        self.others = max(0.0, busy - (counters[1] - last[2][1]) / wall)


_gauge = Gauge()


def quiet(threads):
    """Whether a forward on ``threads`` threads may keep them all busy: the other processes left that
    many cores free over the last window (False where that cannot be read)."""
    return not ENABLED or _gauge.quiet(threads)
