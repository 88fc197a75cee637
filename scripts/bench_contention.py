"""Does tlkit share the machine fairly? Issue 16's contention bars, each process on its own.

    python scripts/bench_contention.py                 # SqueezeNet b32, ~3-5 min on 2 cores
    python scripts/bench_contention.py --model vgg16 --batch 8 --steps 6
    python scripts/bench_contention.py --tlkit-path /work/main   # the same against another checkout (A/B)
    python scripts/bench_contention.py --tlkit-env OMP_WAIT_POLICY=ACTIVE GOMP_SPINCOUNT=100000   # A/B a setting
    python scripts/bench_contention.py --batch 1 --steps 20 --seconds 4 --sessions unchecked   # worker sessions A/B
    python scripts/bench_contention.py --batch 1 --in-process    # the session modes in one process, quiet machine

Scenarios (every process is a fresh interpreter; tlkit and the peer run the same model and batch):
  solo           tlkit alone; then torch alone; then a pure-Python busy loop alone
  tlkit + tlkit  two tlkit processes        bar: each keeps >= 40% of its solo throughput
  tlkit + torch  tlkit next to torch        bar: tlkit slowed no more than torch is slowed by tlkit
  tlkit + busy   tlkit next to a busy loop  (the same comparison against a single busy thread)
How: each worker warms up (2 steps), says "ready" and waits; when all are ready the driver says
"go", every worker reports each step's duration and end time as it finishes, and once each has
reported --steps steps and run for --seconds the driver says "stop". Counted are the steps that
started and ended inside the window in which every process was stepping; throughput = batch /
mean step time of those (the total work over the total time: with three threads on two cores the
scheduler alternates which thread has a core to itself, and a median of short steps picks one regime).
--sessions sets tlkit's batch-1 worker sessions in its processes: "default" (the tree's settings),
"checked" (on, opened while ``contention.quiet`` and sessions win their trials, ``session_trials``),
"quiet" (on while ``contention.quiet``, no trials), "unchecked" (on, only the lateness back-off), "off";
each tlkit line also says in what share of its counted forwards a session was open.
"""
import argparse
import json
import os
import pathlib
import queue
import statistics
import subprocess
import sys
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
PEER_PYTHON = "/work/peers/bin/python"
sys.path.insert(0, str(SCRIPTS))

import machine  # noqa: E402

BUSY_ITERATIONS = 2_000_000  # one busy-loop "step": ~0.1 s of pure Python


# ---------------------------------------------------------------------------------------------
# workers

def set_sessions(mode):
    """Worker sessions as ``mode`` says; returns a list whose item 0 counts the sessions opened so far."""
    import contextlib

    from tlkit.utils import worker_pool

    if mode != "default":
        from tlkit.utils import contention, session_trials  # not in checkouts before them (--tlkit-path)

        worker_pool.SESSIONS = mode != "off"
        contention.ENABLED = mode in ("checked", "quiet")
        session_trials.ENABLED = mode == "checked"
    opened, session = [0], worker_pool.session

    @contextlib.contextmanager
    def counted(workers):
        with session(workers):
            opened[0] += worker_pool.awake()
            yield
    worker_pool.session = counted
    return opened


def make_step(kind, model, batch):
    import numpy as np

    x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
    if kind == "tlkit":
        import peer_models

        net = peer_models.tlkit_model(model)
        return lambda: net.predict_on_batch(x)
    if kind == "torch":
        import torch

        import peer_models

        torch.set_num_threads(machine.cores())
        net = peer_models.torch_model(model)
        xt = peer_models.torch_input(x)

        def step():
            with torch.inference_mode():
                net(xt)
        return step

    def busy():
        total = 0
        for i in range(BUSY_ITERATIONS):
            total += i
        return total
    return busy


def pin(which):
    """An experiment: tlkit's worker threads on the last CPU, and with which == "both" the caller on the first."""
    cpus = sorted(os.sched_getaffinity(0))
    for t in threading.enumerate():
        if t.name.startswith("tlkit-worker-"):
            os.sched_setaffinity(t.native_id, {cpus[-1]})
    if which == "both":
        os.sched_setaffinity(threading.get_native_id(), {cpus[0]})


def worker(kind, model, batch, sessions):
    opened = set_sessions(sessions) if kind == "tlkit" else [0]
    step = make_step(kind, model, batch)
    for _ in range(2):
        step()
    if kind == "tlkit" and os.environ.get("BENCH_PIN", "none") != "none":
        pin(os.environ["BENCH_PIN"])
    print(json.dumps({"event": "ready", "threads": machine.thread_report()}), flush=True)
    stop = threading.Event()

    def listen():
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    if sys.stdin.readline().strip() != "go":
        return
    threading.Thread(target=listen, daemon=True).start()
    while not stop.is_set():
        t0, before = time.perf_counter(), opened[0]
        step()
        # time.monotonic: one clock for every process on the machine, so the driver can find the window
        print(json.dumps({"event": "step", "seconds": time.perf_counter() - t0, "end": time.monotonic(),
                          "sessions": opened[0] - before}), flush=True)


def in_process(args):
    """Quiet-machine A/B in one process: tlkit forwards per session mode (--sessions' four), the
    modes interleaved (order reversed every other round), median ms per forward and the share in a session."""
    from tlkit.utils import contention, session_trials, worker_pool

    load_before = machine.loadavg()
    opened = set_sessions("default")
    if args.model in ("squeezenet", "vgg16"):
        step = make_step("tlkit", args.model, args.batch)
    else:  # the other bases, in one process only
        import numpy as np

        from tlkit import zoo

        net = getattr(zoo, args.model)(weights=None, input_shape=(224, 224, 3), include_top=False)
        x = np.random.default_rng(0).standard_normal((args.batch, 224, 224, 3)).astype(np.float32)
        step = lambda: net.predict_on_batch(x)  # noqa: E731
    modes = {"checked": (True, True, True), "quiet": (True, True, False), "unchecked": (True, False, False),
             "off": (False, True, True)}
    times, shares = {m: [] for m in modes}, {m: [] for m in modes}
    for _ in range(30):
        step()
    for r in range(args.rounds):
        for mode, (on, checked, trials) in list(modes.items())[::1 if r % 2 == 0 else -1]:
            worker_pool.SESSIONS, contention.ENABLED, session_trials.ENABLED = on, checked, trials
            for _ in range(10):
                step()
            before, t0 = opened[0], time.perf_counter()
            for _ in range(args.forwards):
                step()
            times[mode].append((time.perf_counter() - t0) / args.forwards * 1e3)
            shares[mode].append((opened[0] - before) / args.forwards)
    print(f"{args.model} batch {args.batch}, {args.rounds} rounds of {args.forwards} forwards; {machine.header(load_before=load_before)}")
    for mode in modes:
        print(f"  {mode:9s} median {statistics.median(times[mode]):.3f} ms/forward, in a session "
              f"{statistics.fmean(shares[mode]):.0%}; rounds {' '.join(f'{t:.2f}' for t in times[mode])}")
    cached = contention.Gauge(interval=float("inf"))
    reading = contention.Gauge(interval=0.0)
    for gauge, n in ((cached, 100_000), (reading, 5_000)):
        gauge.quiet(2)
        t0 = time.perf_counter()
        for _ in range(n):
            gauge.quiet(2)
        gauge.cost = (time.perf_counter() - t0) / n * 1e6
    print(f"  the check: {cached.cost:.2f} us cached, {reading.cost:.1f} us with a read of the counters "
          f"(one per {contention.INTERVAL:g} s)")


# ---------------------------------------------------------------------------------------------
# driver

class Proc:
    def __init__(self, kind, args):
        python = args.peer_python if kind == "torch" else sys.executable
        path = [args.tlkit_path or str(REPO), str(SCRIPTS)]
        extra = {**dict(e.split("=", 1) for e in args.tlkit_env), "BENCH_PIN": args.pin} if kind == "tlkit" else {}
        env = machine.peer_env(extra={"PYTHONPATH": os.pathsep.join(path), **extra})
        self.kind = kind
        self.proc = subprocess.Popen([python, __file__, "--worker", kind, args.model, str(args.batch), args.sessions],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.lines = queue.Queue()
        self.steps, self.ready = [], None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def wait_for(self, predicate):
        while not predicate():
            msg = self.lines.get()
            if msg is None:
                raise RuntimeError(f"{self.kind} worker exited (code {self.proc.wait()})")
            if msg["event"] == "ready":
                self.ready = msg
            else:
                self.steps.append((msg["end"] - msg["seconds"], msg["end"], msg.get("sessions", 0)))

    def send(self, word):
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()


def scenario(kinds, args):
    """Mean step seconds of each process of ``kinds``, over the steps run while all of them ran."""
    procs = [Proc(kind, args) for kind in kinds]
    try:
        for p in procs:
            p.wait_for(lambda p=p: p.ready is not None)
        go = time.monotonic()
        for p in procs:
            p.send("go")
        for p in procs:
            p.wait_for(lambda p=p: len(p.steps) >= args.steps and p.steps[-1][1] - go >= args.seconds)
        lo = max(p.steps[0][0] for p in procs)  # every process stepping from here ...
        hi = min(p.steps[-1][1] for p in procs)  # ... to here
        counted = [[(end - start, opened) for start, end, opened in p.steps if start >= lo and end <= hi]
                   for p in procs]
        if not all(counted):
            raise RuntimeError("no whole step of every process inside the common window; raise --seconds")
        for p in procs:
            p.send("stop")
        for p in procs:
            p.proc.stdin.close()
            p.proc.wait(timeout=600)
    finally:
        for p in procs:
            if p.proc.poll() is None:
                p.proc.kill()
    for p, steps in zip(procs, counted):
        opened = f", forwards in a session: {sum(o > 0 for _, o in steps) / len(steps):.0%}" if p.kind == "tlkit" else ""
        print(f"  {' + '.join(kinds):14s} {p.kind:5s} threads: {p.ready['threads']}{opened}", file=sys.stderr)
    return [statistics.fmean(seconds for seconds, _ in steps) for steps in counted]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=("squeezenet", "vgg16", "MobileNetV2", "EfficientNetLite0", "ResNet50"),
                   default="squeezenet", help="the last three with --in-process only")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="at least this many steps each process reports per scenario")
    p.add_argument("--seconds", type=float, default=5.0, help="and at least this long each process runs per scenario")
    p.add_argument("--peer-python", default=PEER_PYTHON)
    p.add_argument("--tlkit-path", help="checkout whose tlkit to measure (default: this one)")
    p.add_argument("--tlkit-env", nargs="*", default=[], metavar="KEY=VALUE",
                   help="environment for the tlkit processes only, e.g. OMP_WAIT_POLICY=ACTIVE GOMP_SPINCOUNT=100000")
    p.add_argument("--sessions", choices=("default", "checked", "quiet", "unchecked", "off"), default="default",
                   help="tlkit's batch-1 worker sessions: the tree's default; on with the contention check and trials, "
                   "with the check alone, without either; off")
    p.add_argument("--pin", choices=("none", "worker", "both"), default="none",
                   help="an experiment: after warming up, tlkit's worker threads on the last CPU (both: the caller on the first)")
    p.add_argument("--in-process", action="store_true",
                   help="instead: the session modes A/B in this one process (quiet machine), --rounds x --forwards")
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--forwards", type=int, default=200)
    p.add_argument("--write", action="store_true", help="also rewrite BENCHMARKS.md's '## Sharing the machine' section")
    p.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        kind, model, batch, sessions = args.worker
        return worker(kind, model, int(batch), sessions)
    if args.in_process:
        return in_process(args)
    has_torch = os.path.exists(args.peer_python)
    load_before = machine.loadavg()
    ips = lambda s: args.batch / s  # noqa: E731
    solo = scenario(["tlkit"], args)[0]
    pair = scenario(["tlkit", "tlkit"], args)
    busy_solo = scenario(["busy"], args)[0]
    tl_busy, busy_with = scenario(["tlkit", "busy"], args)
    rows = [f"| tlkit alone | {ips(solo):.1f} | 100% | | |",
            f"| two tlkit processes | {ips(pair[0]):.1f}, {ips(pair[1]):.1f} | "
            f"{solo / pair[0]:.0%}, {solo / pair[1]:.0%} | each >= 40% | "
            f"{'yes' if min(solo / pair[0], solo / pair[1]) >= 0.4 else 'NO'} |"]
    if has_torch:
        torch_solo = scenario(["torch"], args)[0]
        tl_torch, torch_with = scenario(["tlkit", "torch"], args)
        rows += [f"| torch alone | {ips(torch_solo):.1f} | 100% | | |",
                 f"| tlkit + torch | tlkit {ips(tl_torch):.1f}, torch {ips(torch_with):.1f} | "
                 f"tlkit {solo / tl_torch:.0%}, torch {torch_solo / torch_with:.0%} | tlkit's share >= torch's | "
                 f"{'yes' if solo / tl_torch >= torch_solo / torch_with else 'NO'} |"]
    rows += [f"| tlkit + busy loop | tlkit {ips(tl_busy):.1f} | tlkit {solo / tl_busy:.0%}, "
             f"busy loop {busy_solo / busy_with:.0%} | tlkit's share >= loop's | "
             f"{'yes' if solo / tl_busy >= busy_solo / busy_with else 'NO'} |"]
    text = (f"{args.model} base forward, batch {args.batch}, worker sessions: {args.sessions}; each scenario >= {args.steps} steps and >= {args.seconds:g} s "
            "per process, throughput from the mean step time over the window all processes ran in. "
            f"{machine.header(load_before=load_before)}\n\n"
            "| scenario | tlkit img/s | share of solo throughput | bar | met |\n|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n")
    machine.publish("## Sharing the machine", text, args.write)

if __name__ == "__main__":
    main()
