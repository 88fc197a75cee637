"""What a benchmark table must say about the machine it ran on, for scripts/bench*.py and profile_layers.py.

    header()               # "CPU: AMD EPYC (lscpu), 2 cores; load 0.12 0.30 0.41; numpy sgemm 317 GFLOP/s"
    sgemm_gflops()         # this process's BLAS rate on a large float32 product
    thread_report()        # threadpoolctl's view of this process (BLAS/OpenMP libraries, threads, kernel)
    peak_rss_mb()          # this process's peak resident set (VmHWM), the memory figure of every table
    peer_env()             # the environment to start a benchmark process with (see below)

OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: some machines set them because old OpenBLAS builds crash or
compute wrong results on their CPU; they also pin a current numpy/torch to a slower kernel. For
benchmarks (only) ``peer_env`` drops both together, and every worker reports the kernel its BLAS
then picked (threadpoolctl's 'architecture'), so a pinned or odd kernel shows in the output.
OMP_WAIT_POLICY is dropped as well: peers run on their own defaults (tlkit sets its own at import).
"""
import os
import subprocess
import sys
import time


# A 1-minute load average above this, on any core count, means something else ran during the benchmark.
LOADED = 0.5


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "n/a"


def sgemm_gflops(n=2048, repeats=5):
    """Best-of rate of an n x n float32 product through numpy (whatever BLAS it loaded)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = np.random.default_rng(1).standard_normal((n, n)).astype(np.float32)
    out = np.empty((n, n), np.float32)
    np.dot(a, b, out=out)
    best = min(timed(lambda: np.dot(a, b, out=out)) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def torch_sgemm_gflops(n=2048, repeats=5):
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def timed(fn):
    """Seconds one call of fn takes."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_seconds(fn, repeats=5):
    """The fastest of ``repeats`` calls after one warm-up call."""
    fn()
    return min(timed(fn) for _ in range(repeats))


def thread_report():
    """[{library, api, threads, architecture}] for every threadpool loaded in this process."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"library": "threadpoolctl not installed"}]
    return [{"library": os.path.basename(p.get("filepath", "")), "api": p.get("internal_api"),
             "threads": p.get("num_threads"), "architecture": p.get("architecture", "")}
            for p in threadpool_info()]


def peak_rss_mb():
    """This process's peak resident set, MB: VmHWM, the high-water mark of its own address space.
    Not getrusage's ru_maxrss: Linux carries the pre-exec address space's peak into it, so a worker
    would report at least the RSS of the driver that spawned it (a driver holding 600 MB made every
    worker read 600)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peer_env(base=None, extra=None):
    """A copy of the environment for a benchmark worker: OPENBLAS_CORETYPE/L2_SIZE dropped together."""
    env = dict(os.environ if base is None else base)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    env.pop("OMP_WAIT_POLICY", None)  # peers on their own defaults; tlkit sets its own at import
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.update(extra or {})
    return env


def header(sgemm=None, torch_sgemm=None, load_before=None):
    """One line for a table: CPU, cores, load now and before the run, BLAS rates. A benchmark loads
    the machine itself, so the LOADED verdict reads the load from before it started."""
    load_before = load_before or loadavg()
    parts = [f"CPU: {cpu_model()} (lscpu), {cores()} cores", f"load average before {load_before}, after {loadavg()}"]
    if sgemm:
        parts.append(f"numpy sgemm {sgemm:.0f} GFLOP/s")
    if torch_sgemm:
        parts.append(f"torch sgemm {torch_sgemm:.0f} GFLOP/s")
    if float(load_before.split()[0]) > LOADED:
        parts.append(f"**LOADED** (1-min load > {LOADED}): other work shared the cores, these figures are unreliable")
    return "; ".join(parts)


def publish(section, text, write):
    """Print a result; with ``write``, also put it under ``section`` in BENCHMARKS.md with its command."""
    print(text)
    if write:
        from acceptance_finetune import write_section

        script = os.path.relpath(sys.argv[0], os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        command = " ".join(["python", script] + [a for a in sys.argv[1:] if a != "--write"])
        write_section(section, f"Command: `{command}`\n\n{text.rstrip()}\n")
