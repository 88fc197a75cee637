"""tlkit.distributed on a real LocalCluster of 2 worker processes: the same features, predictions and
evaluation report as one process (same order), the model loaded once per worker, a corrupt picture
skipped and reported, and an interrupted job resumed with only the missing partitions computed."""
import os

import numpy as np
import pytest

pytest.importorskip("distributed")

from tlkit.apps.feature_file import (extract_features, load_feature_model, model_spec,  # noqa: E402
                                     read_feature_file, write_feature_file)
from tlkit.apps.inference import collect_images, evaluate_folder, load_classifier, predict_files  # noqa: E402
from tlkit.distributed import distributed_evaluation, distributed_features, distributed_predictions  # noqa: E402

BATCH = 4


def single_process_features(model_path, folder, out):
    model, meta = load_feature_model(model_spec(model_path))
    paths, feats, failures = extract_features(model, meta, collect_images([folder]), BATCH, "avg")
    write_feature_file(out, paths, [feats], failures, meta, "avg")
    return read_feature_file(out)


class Count:
    def __init__(self):
        self.updates = []

    def update(self, done):
        self.updates.append(done)


def test_features_equal_one_process_in_order(cluster, feature_model, image_folder, tmp_path):
    expected = single_process_features(feature_model, image_folder, tmp_path / "one.h5")
    bar = Count()
    done = distributed_features(cluster, [image_folder], feature_model, out=tmp_path / "dist.h5", batch_size=BATCH,
                                partition_size=BATCH, bar=bar)
    got = read_feature_file(tmp_path / "dist.h5")
    assert got["paths"] == expected["paths"] and len(got["paths"]) == 27
    assert got["features"].shape == (27, 6)
    np.testing.assert_allclose(got["features"], expected["features"], rtol=1e-6, atol=1e-6 * np.abs(
        expected["features"]).max())
    assert got["skipped"] == expected["skipped"] and [p for p, _ in got["skipped"]] == [
        str(image_folder / "bees" / "broken.jpg")]
    assert {k: got[k] for k in ("image_size", "preprocessing", "pooling")} == {
        "image_size": 16, "preprocessing": "caffe", "pooling": "avg"}
    # Both workers took part, each loaded the model once for its several partitions.
    rows = done["throughput"]
    assert len(rows) == 2 and all(r["model_loads"] == 1 and r["partitions"] >= 1 for r in rows)
    assert sum(r["partitions"] for r in rows) == 7 and sum(r["images"] for r in rows) == 28
    assert bar.updates[-1] == 28 and bar.updates == sorted(bar.updates)
    assert not (tmp_path / "dist.h5.parts").exists()  # merged, then removed


def test_predictions_and_evaluation_equal_one_process(cluster, classifier, image_folder):
    model, meta = load_classifier(classifier)
    paths = collect_images([image_folder])
    expected, expected_failures = predict_files(model, meta, paths, top=3, batch_size=BATCH)
    results, failures, rows = distributed_predictions(cluster, classifier, [image_folder], top=3, batch_size=BATCH,
                                                      partition_size=8)
    assert [p for p, _ in results] == [p for p, _ in expected]
    for (_, got), (_, want) in zip(results, expected):
        assert [c for c, _ in got] == [c for c, _ in want]
        np.testing.assert_allclose([p for _, p in got], [p for _, p in want], rtol=1e-6)
    assert failures == expected_failures and len(failures) == 1
    assert sum(r["images"] for r in rows) == 28

    want = evaluate_folder(model, meta, str(image_folder), batch_size=BATCH, verbose=0)
    got = distributed_evaluation(cluster, classifier, str(image_folder), batch_size=BATCH, partition_size=8)
    assert got["confusion"] == want["confusion"] and got["accuracy"] == pytest.approx(want["accuracy"])
    assert got["skipped_images"] == want["skipped_images"]
    assert [w["path"] for w in got["confidently_wrong"]] == [w["path"] for w in want["confidently_wrong"]]


def test_interrupted_job_resumes_with_the_missing_partitions_only(cluster, feature_model, image_folder, tmp_path,
                                                                  wait_for):
    expected = single_process_features(feature_model, image_folder, tmp_path / "one.h5")
    parts = tmp_path / "parts"

    def interrupt(summary):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distributed_features(cluster, [image_folder], feature_model, out=tmp_path / "dist.h5", batch_size=BATCH,
                             parts=parts, partition_size=BATCH, on_partition=interrupt)
    assert not (tmp_path / "dist.h5").exists()
    # A partition already running when the driver stopped runs to its end (a thread can't be stopped).
    wait_for(lambda: {p.name.split(".")[0] for p in (parts / "started").iterdir()} <= {
        p.name.split(".")[0] for p in parts.glob("part-*.npz")}, "the partitions started to finish")
    kept = sorted(p.name for p in parts.glob("part-*.npz"))
    assert len(kept) >= 1  # the finished partitions stay on disk
    # How many partitions finish before the interrupt lands depends on the machine's speed (all 7 on a
    # quiet one): drop the last finished one, as a kill mid-write would, so the resume always has work.
    (parts / kept.pop()).unlink()

    with pytest.raises(ValueError, match="--resume"):  # an earlier run's partitions are never mixed in silently
        distributed_features(cluster, [image_folder], feature_model, out=tmp_path / "dist.h5", batch_size=BATCH,
                             parts=parts, partition_size=BATCH)
    computed = []
    distributed_features(cluster, [image_folder], feature_model, out=tmp_path / "dist.h5", batch_size=BATCH,
                         parts=parts, partition_size=BATCH, resume=True, on_partition=computed.append)
    assert sorted(s["partition"] for s in computed) == [i for i in range(7) if f"part-{i:05d}.npz" not in kept]
    got = read_feature_file(tmp_path / "dist.h5")
    assert got["paths"] == expected["paths"]
    np.testing.assert_allclose(got["features"], expected["features"], rtol=1e-6, atol=1e-6 * np.abs(
        expected["features"]).max())


def test_resume_refuses_partitions_of_another_job(cluster, feature_model, image_folder, tmp_path):
    parts = tmp_path / "parts"
    with pytest.raises(KeyboardInterrupt):
        distributed_features(cluster, [image_folder], feature_model, out=tmp_path / "a.h5", batch_size=BATCH,
                             parts=parts, partition_size=BATCH, on_partition=lambda s: (_ for _ in ()).throw(
                                 KeyboardInterrupt()))
    with pytest.raises(ValueError, match="different job"):
        distributed_features(cluster, [image_folder / "ants"], feature_model, out=tmp_path / "a.h5",
                             batch_size=BATCH, parts=parts, partition_size=BATCH, resume=True)


def _worker_settings():
    import dask

    return {"profile": dask.config.get("distributed.worker.profile.enabled"),
            "tick": dask.config.get("distributed.admin.tick.interval"),
            "omp": os.environ.get("OMP_NUM_THREADS")}


def test_local_cluster_workers_run_without_the_frequent_diagnostics(feature_model, image_folder, tmp_path):
    """`--workers N` makes workers without Dask's 10 ms profiler and 20 ms tick (they take the cores the
    workers compute on), and the result is still the single-process one."""
    from tlkit.distributed import connect

    expected = single_process_features(feature_model, image_folder, tmp_path / "one.h5")
    driver_environ = dict(os.environ)
    with connect(workers=1, threads_per_worker=1) as client:
        client.wait_for_workers(1)
        environ_inside = dict(os.environ)
        settings = list(client.run(_worker_settings).values())
        distributed_features(client, [image_folder], feature_model, out=tmp_path / "dist.h5", batch_size=BATCH,
                             partition_size=BATCH)
    assert settings == [{"profile": False, "tick": "1s", "omp": "1"}]  # Dask's worker settings reach the worker
    assert environ_inside == driver_environ and dict(os.environ) == driver_environ  # and stay out of the driver
    got = read_feature_file(tmp_path / "dist.h5")
    assert got["paths"] == expected["paths"]
    np.testing.assert_allclose(got["features"], expected["features"], rtol=1e-6, atol=1e-6 * np.abs(
        expected["features"]).max())
