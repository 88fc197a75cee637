"""`tlkit finetune` killed at chosen moments (SIGKILL), then --resume: always finishes, nothing corrupt,
every completed epoch in the history exactly once. Ctrl-C (SIGINT) stops cleanly."""
import csv
import os
import queue
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

EPOCHS = 12


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for c, name in enumerate(("circles", "stripes")):
        (root / name).mkdir()
        for i in range(16):
            img = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
            if c:
                img[::4] = 220
            else:
                yy, xx = np.mgrid[:40, :40]
                img[(yy - 20) ** 2 + (xx - 20) ** 2 < 120] = 220
            Image.fromarray(img).save(root / name / f"{i}.jpg")
    return root


def command(folder, out, resume=False, epochs=EPOCHS):
    cmd = [sys.executable, "-m", "tlkit.cli", "finetune", str(folder), "--base", "squeezenet", "--weights", "none",
           "--image-size", "48", "--batch-size", "8", "--epochs", str(epochs), "--head", "gap,dense:16",
           "--out", str(out), "--verbose", "2", "--workers", "1"]
    return cmd + (["--resume"] if resume else [])


HOOKED_CLI = os.path.join(os.path.dirname(__file__), "hooked_cli.py")


class Reported:
    """A subprocess whose stdout lines are collected by a thread, so the test can wait for what it reports."""

    def __init__(self, cmd, env):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        self.lines = queue.Queue()
        self.output = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, prefix, timeout=600):
        """The first line starting with ``prefix``; fails if the process ends first. (The timeout only
        stops a hung test; nothing waits on it.)"""
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                self.proc.wait()
                pytest.fail(f"the run ended (exit {self.proc.returncode}) before reporting {prefix!r}:\n"
                            + "".join(self.output[-30:]))
            if line.startswith(prefix):
                return line.strip()

    def finish(self, timeout=600):
        """Wait for the process to end; its whole output."""
        self.proc.wait(timeout=timeout)
        self.reader.join(timeout=timeout)
        return "".join(self.output)


def hooked(hooks, folder, out, resume=False, epochs=EPOCHS):
    """The command with test hooks (tests/robustness/hooked_cli.py): the run stops at a known point."""
    return [sys.executable, HOOKED_CLI, hooks] + command(folder, out, resume, epochs)[3:]


def read_history(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# Where each SIGKILL lands, as the run reports it (hooked_cli.py holds the run there): start-up; mid-save of
# a backup (temporary written, not renamed); mid-epoch; between a backup and history.csv; mid-save of
# stage1.h5 after the last epoch. Epochs count from 1 as fit counts them, so after each kill the resumed
# run reaches the next point: kill 2 leaves 2 epochs backed up, kill 3 leaves 3, kill 4 leaves 5.
KILL_POINTS = ["hold@features", "hold@replace:latest.backup.h5:3", "hold@batch:4:2",
               "hold@replace:history.csv:2", "hold@replace:stage1.h5:1"]


def test_sigkill_at_known_moments_then_resume_finishes_with_each_epoch_once(folder, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kills = 0
    for attempt, point in enumerate(KILL_POINTS):  # killed at a known moment each time ...
        run = Reported(hooked(point, folder, out, resume=attempt > 0), env)
        run.wait_for("HOLD")
        run.proc.send_signal(signal.SIGKILL)
        kills += 1
        run.proc.wait()
        if "replace:" in point:  # it really died mid-save: the temporary is there, the rename never came
            assert list(out.rglob(f".{point.split(':')[1]}.*.tmp")), point
        # Whatever was on disk when it died must be readable.
        import tlkit
        for name in ("best.h5", "stage1.h5"):
            if (out / name).exists():
                tlkit.models.load_model(out / name)
        if (out / "report.json").exists():
            break
    result = subprocess.run(command(folder, out, resume=True), capture_output=True, text=True, env=env,
                            timeout=300)  # ... then left to finish
    assert result.returncode == 0, result.stdout + result.stderr
    assert kills >= 3, "the run finished before it could be killed: make the run longer"
    history = read_history(out / "history.csv")
    assert [int(r["epoch"]) for r in history] == list(range(1, EPOCHS + 1))  # counted from 1, as on the console
    assert all(r["stage"] == "1" for r in history)
    import tlkit
    model = tlkit.models.load_model(out / "model.h5")
    assert model.metadata["classes"] == ["circles", "stripes"]
    assert not list(out.rglob("*.tmp*")), "a temporary file was left behind"


def test_sigint_stops_cleanly_and_resume_continues(folder, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    epochs = 6
    # Ctrl-C once the run reports its second epoch done (it holds there until the signal comes).
    run = Reported(hooked("hold@epoch:2", folder, out, epochs=epochs), env)
    run.wait_for("HOLD")
    run.proc.send_signal(signal.SIGINT)
    output = run.finish()
    assert run.proc.returncode == 130, output
    assert "--resume" in output and "Traceback" not in output
    done = read_history(out / "history.csv")
    assert 1 <= len(done) < epochs
    result = subprocess.run(command(folder, out, resume=True, epochs=epochs), capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [int(r["epoch"]) for r in read_history(out / "history.csv")] == list(range(1, epochs + 1))
