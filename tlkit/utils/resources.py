"""What the process uses, from the standard library (os.times, resource, /proc): CPU time, resident
memory and its peak, per-core busy time. Each reader returns None where the platform lacks the source.

psutil would add Windows/macOS per-process RSS, but everything tlkit reports is available without a
compiled dependency on Linux, and peak memory and CPU time everywhere ``resource`` exists.
"""
import os
import sys

try:
    import resource
except ImportError:  # Windows
    resource = None


def process_cpu_seconds():
    """User + system CPU seconds of this process (all its threads) so far."""
    t = os.times()
    return t.user + t.system


def rss_bytes():
    """Resident memory now (Linux /proc), else None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def peak_rss_bytes():
    """Largest resident memory of the process so far, else None."""
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB


def core_times():
    """[(busy jiffies, total jiffies)] per core, machine-wide (/proc/stat), else None."""
    try:
        with open("/proc/stat") as f:
            lines = [line.split() for line in f if line.startswith("cpu") and line[3].isdigit()]
    except OSError:
        return None
    out = []
    for fields in lines:
        values = [int(v) for v in fields[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        out.append((sum(values) - idle, sum(values)))
    return out or None


def core_percent(before, after):
    """Busy percentage of each core between two :func:`core_times` readings."""
    if before is None or after is None or len(before) != len(after):
        return None
    return [100.0 * (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0 for (b0, t0), (b1, t1) in zip(before, after)]
