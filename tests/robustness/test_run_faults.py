"""Faults around a `tlkit finetune` run, with real processes: two runs on one folder (14.10) and a full
disk (14.6). Each process is acted on when it reports a point of the run (hooked_cli.py), never after a sleep."""
import os
import subprocess

import pytest
from test_kill_and_resume import Reported, command, folder, hooked, read_history  # noqa: F401 (folder: a fixture)

import tlkit


def snapshot(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".tlkit-run.lock"}


def test_a_second_run_on_a_locked_folder_is_refused_and_a_killed_runs_lock_does_not_block(folder, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    first = Reported(hooked("hold@epoch:2", folder, out, epochs=4), env)
    try:
        first.wait_for("HOLD")  # the first run holds the folder, two epochs done
        before = snapshot(out)
        for resume in (True, False):
            second = subprocess.run(command(folder, out, resume=resume, epochs=4), capture_output=True, text=True,
                                    env=env, timeout=600)
            assert second.returncode == 1, second.stdout + second.stderr
            assert f"in use by another tlkit run (pid {first.proc.pid})" in second.stderr
            assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
            assert snapshot(out) == before
    finally:
        first.proc.kill()
        first.finish()
    assert (out / ".tlkit-run.lock").exists()  # left by the killed run, its pid dead
    third = subprocess.run(command(folder, out, resume=True, epochs=4), capture_output=True, text=True, env=env,
                           timeout=600)
    assert third.returncode == 0, third.stdout + third.stderr
    assert [int(r["epoch"]) for r in read_history(out / "history.csv")] == [1, 2, 3, 4]
    assert not (out / ".tlkit-run.lock").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of a few MB at tmp_path/disk (needs root); skipped where mounting is not permitted."""
    mounts = []

    def mount(size):
        disk = tmp_path / f"disk{len(mounts)}"
        disk.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            pytest.skip(f"can't mount a small tmpfs here: {done.stderr.strip()}")
        mounts.append(disk)
        return disk

    yield mount
    for disk in mounts:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def assert_clean_disk_full_error(returncode, stderr, out, progress_too=False):
    """Exit 1 (not 139, a segfault in libhdf5), one error line and nothing else on stderr (``progress_too``:
    the progress lines of stdout are mixed in, and the error is the last line), no temporaries, whole files."""
    assert returncode == 1, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = lines[-1:] if progress_too else lines
    assert len(errors) == 1 and errors[0].startswith("Error: no space left on device"), stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert not list(out.rglob("*.tmp")), "temporary files were left"
    for path in out.rglob("*.h5"):  # whatever model or backup is there is whole
        if path.name.endswith(".backup.h5"):
            import h5py
            h5py.File(path, "r").close()
        else:
            tlkit.models.load_model(path)


def test_a_run_folder_on_a_tiny_disk_fails_with_one_line_and_no_temporaries(folder, small_disk):
    """Issue 14.6 as reported: --out on a 3 MB tmpfs with the default head crashed libhdf5 (exit 139)."""
    out = small_disk("3m") / "run"
    cmd = command(folder, out, epochs=3)
    cmd[cmd.index("--head") + 1] = "gap,bn,dense:256,dropout:0.5"
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert_clean_disk_full_error(result.returncode, result.stderr, out)


def test_a_disk_filling_up_mid_run_keeps_the_previous_model_and_resume_finishes(folder, small_disk, tmp_path):
    disk = small_disk("64m")
    out = disk / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOOK_FILL_ROOT": str(disk)}
    run = Reported(hooked("fill@epoch:1", folder, out, epochs=4), env)
    best_digest = run.wait_for("FILLED").split()[1]  # epoch 1 saved best.h5, then the disk was filled
    output = run.finish()
    assert_clean_disk_full_error(run.proc.returncode, output, out, progress_too=True)
    import hashlib
    assert hashlib.sha256((out / "best.h5").read_bytes()).hexdigest() == best_digest  # the previous model
    os.remove(disk / "filler")  # space again: the run continues where it stopped
    done = subprocess.run(command(folder, out, resume=True, epochs=4), capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [int(r["epoch"]) for r in read_history(out / "history.csv")] == [1, 2, 3, 4]
