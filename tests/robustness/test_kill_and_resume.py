"""`tlkit finetune` killed at random moments (SIGKILL), then --resume: always finishes, nothing corrupt,
every completed epoch in the history exactly once. Ctrl-C (SIGINT) stops cleanly."""
import csv
import os
import signal
import subprocess
import sys
import time

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


def epochs_done(out):
    try:
        return len(read_history(out / "history.csv"))
    except (FileNotFoundError, StopIteration):
        return 0


def wait_for_new_epoch(out, proc, timeout=120):
    before = epochs_done(out)
    deadline = time.time() + timeout
    while proc.poll() is None and epochs_done(out) <= before and time.time() < deadline:
        time.sleep(0.02)


def read_history(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_sigkill_at_random_moments_then_resume_finishes_with_each_epoch_once(folder, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    rng = np.random.default_rng(0)
    kills = 0
    for attempt in range(5):  # killed at a random moment each time ...
        proc = subprocess.Popen(command(folder, out, resume=attempt > 0), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        if attempt == 0:
            time.sleep(rng.uniform(0.3, 1.5))  # during start-up, scanning or feature caching
        else:
            wait_for_new_epoch(out, proc)  # then somewhere in the next epoch or its saving
            time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
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
    epochs = 60  # long enough that Ctrl-C always lands mid-run
    proc = subprocess.Popen(command(folder, out, epochs=epochs), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env)
    # Wait until at least one epoch is done, then press Ctrl-C.
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "history.csv").exists():
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0].decode()
    if proc.returncode == 0:
        pytest.skip("the run finished before Ctrl-C arrived")
    assert proc.returncode == 130, output
    assert "--resume" in output and "Traceback" not in output
    done = read_history(out / "history.csv")
    assert 1 <= len(done) < epochs
    result = subprocess.run(command(folder, out, resume=True, epochs=epochs), capture_output=True, text=True,
                            env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [int(r["epoch"]) for r in read_history(out / "history.csv")] == list(range(1, epochs + 1))
