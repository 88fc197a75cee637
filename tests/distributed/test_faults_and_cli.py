"""A worker process killed mid-partition: its partition is computed again elsewhere and every image
is in the output exactly once. The CLI on a cluster gives what it gives in one process; without
dask, `import tlkit` and the single-process path never import it, and asking for a cluster is a
one-line error."""
import os
import re
import signal
import subprocess
import sys
import threading

import cloudpickle
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("distributed")

from tlkit.apps.feature_file import read_feature_file  # noqa: E402
from tlkit.cli import main  # noqa: E402
from tlkit.distributed import distributed_features  # noqa: E402

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the hook below runs on a worker
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def hold_after_first_batch(marker_folder):
    """On the worker it runs on: after the first batch of its next partition, write held.<pid> and
    block until the process is killed (mid-partition: the partition's result is not written)."""
    from tlkit.distributed import tasks

    def update(self, done):
        with open(os.path.join(marker_folder, f"held.{os.getpid()}"), "w"):
            pass
        threading.Event().wait()

    tasks.EventProgress.update = update
    return os.getpid()


def test_killed_worker_mid_partition_every_image_once(cluster, feature_model, image_folder, tmp_path, wait_for):
    markers = tmp_path / "markers"
    markers.mkdir()
    victim = sorted(cluster.scheduler_info()["workers"])[0]
    pid = cluster.run(hold_after_first_batch, str(markers), workers=[victim])[victim]
    outcome, summaries = {}, []

    def job():
        try:
            outcome["done"] = distributed_features(cluster, [image_folder], feature_model, out=tmp_path / "f.h5",
                                                   batch_size=2, partition_size=4, parts=tmp_path / "parts",
                                                   on_partition=summaries.append)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = e

    driver = threading.Thread(target=job)
    driver.start()
    wait_for((markers / f"held.{pid}").exists, "the worker to report its first batch")
    held = [int(p.name.split(".")[0].split("-")[1]) for p in (tmp_path / "parts" / "started").glob(f"*.{pid}")]
    assert len(held) == 1
    os.kill(pid, signal.SIGKILL)
    driver.join(timeout=300)
    assert not driver.is_alive() and "error" not in outcome, outcome.get("error")
    got = read_feature_file(tmp_path / "f.h5")
    images = sorted(str(p) for p in image_folder.rglob("*.png"))
    assert got["paths"] == images and len(set(got["paths"])) == 27  # every image, exactly once, in order
    assert [p for p, _ in got["skipped"]] == [str(image_folder / "bees" / "broken.jpg")]
    assert np.isfinite(got["features"]).all() and got["features"].shape == (27, 6)
    # Each partition finished once, the held one in another worker process.
    assert sorted(s["partition"] for s in summaries) == list(range(7))
    assert [s["pid"] for s in summaries if s["partition"] == held[0]] != [pid]


def test_cli_predict_on_cluster_matches_one_process(cluster, classifier, image_folder):
    address = cluster.scheduler.address
    runner = CliRunner()
    env = {"TLKIT_PROGRESS": "0"}
    one = runner.invoke(main, ["predict", classifier, str(image_folder), "--format", "csv", "--top", "2",
                              "--batch-size", "4"], env=env,
                        standalone_mode=False)
    many = runner.invoke(main, ["predict", classifier, str(image_folder), "--format", "csv", "--top", "2",
                                "--batch-size", "4", "--scheduler", address], env=env, standalone_mode=False)
    assert one.exception is None and many.exception is None, (one.exception, many.exception)
    assert many.stdout == one.stdout and one.stdout.count("\n") == 1 + 27 * 2
    assert "skipped" in many.stderr and "broken.jpg" in many.stderr
    # Per-worker throughput: one line for each worker that got partitions (how the scheduler spreads
    # 7 partitions over 2 workers depends on their speed), together covering all 28 images.
    lines = [line for line in many.stderr.splitlines() if "images/s" in line]
    assert 1 <= len(lines) <= 2
    assert sum(int(re.search(r": (\d+) images in", line).group(1)) for line in lines) == 28


def test_cli_features_on_cluster_matches_one_process(cluster, feature_model, image_folder, tmp_path):
    runner = CliRunner()
    env = {"TLKIT_PROGRESS": "0"}
    for out, extra in (("one.h5", []), ("many.h5", ["--scheduler", cluster.scheduler.address])):
        r = runner.invoke(main, ["features", str(image_folder), "--base", feature_model, "--batch-size", "4",
                                 "--out", str(tmp_path / out)] + extra, env=env, standalone_mode=False)
        assert r.exception is None, r.exception
        assert "27 image(s)" in r.stdout and "1 skipped" in r.stdout
    one, many = read_feature_file(tmp_path / "one.h5"), read_feature_file(tmp_path / "many.h5")
    assert one["paths"] == many["paths"]
    np.testing.assert_allclose(many["features"], one["features"], rtol=1e-6, atol=1e-6 * np.abs(one["features"]).max())


NO_DASK = """
import sys
{block}
from tlkit.cli import main
try:
    main(["features", {folder!r}, "--base", {model!r}, "--out", {out!r}], standalone_mode=False)
    main(["predict", {classifier!r}, {folder!r}, "--format", "csv"], standalone_mode=False)
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed"))
    print("LOADED", loaded, file=sys.stderr)
"""


def test_single_machine_path_never_imports_dask(feature_model, classifier, image_folder, tmp_path):
    code = NO_DASK.format(block="", folder=str(image_folder), model=feature_model, out=str(tmp_path / "f.h5"),
                          classifier=classifier)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT, "TLKIT_PROGRESS": "0"})
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stderr
    assert read_feature_file(tmp_path / "f.h5")["features"].shape == (27, 6)


def test_cluster_without_dask_is_a_one_line_error(classifier, image_folder):
    blocked = "import sys; sys.modules['distributed'] = None; sys.modules['dask'] = None"
    code = f"{blocked}\nfrom tlkit.cli import main\nmain(['predict', {classifier!r}, {str(image_folder)!r}, " \
           "'--workers', '2'])"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": ROOT})
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install tlkit[dask]" in lines[0], r.stderr


def test_cli_evaluate_on_a_local_cluster_of_workers_matches_one_process(classifier, image_folder, tmp_path):
    runner = CliRunner()
    outputs = []
    for extra in ([], ["--workers", "2"]):
        r = runner.invoke(main, ["evaluate", classifier, str(image_folder), "--batch-size", "4",
                                 "--confusion", str(tmp_path / "confusion.png")] + extra,
                          env={"TLKIT_PROGRESS": "0"}, standalone_mode=False)
        assert r.exception is None, r.exception
        outputs.append(r.stdout[r.stdout.index("class "):])  # one process draws its bar on stdout first
        assert "1 unreadable image(s) skipped" in r.stderr
    assert outputs[1] == outputs[0] and "accuracy:" in outputs[0]


@pytest.mark.parametrize("args, message", [
    (["--parts", "somewhere"], "--parts and --resume go with --scheduler or --workers"),
    (["--resume"], "--parts and --resume go with --scheduler or --workers"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "either --scheduler"),
])
def test_cluster_options_misused_are_one_line_errors(classifier, image_folder, args, message):
    r = CliRunner().invoke(main, ["predict", classifier, str(image_folder)] + args)
    assert r.exit_code == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
