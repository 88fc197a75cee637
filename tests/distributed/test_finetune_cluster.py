"""Stage 1's feature cache of ``tlkit finetune`` on a LocalCluster of 2 worker processes: the same arrays in
the same order as one process (flips and pooling included), resumable after an interrupt, the same
training end to end; and the worker-side model cache's size limit."""
import dataclasses
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytest.importorskip("distributed")

from tlkit.apps import finetune  # noqa: E402
from tlkit.apps.cluster_features import cluster_features  # noqa: E402
from tlkit.augment import ImageDataGenerator  # noqa: E402
from tlkit.cli import main  # noqa: E402
from tlkit.distributed import distributed_flipped_features, tasks  # noqa: E402

SIZE, BATCH = 48, 4


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["circles", "stripes"]):
        (root / name).mkdir()
        for i in range(9):
            img = rng.integers(0, 255, (rng.integers(30, 60), rng.integers(30, 60), 3), dtype=np.uint8)
            img[::3, :, c] = 250
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def _config(photos, out, **kw):
    return finetune.FinetuneConfig(str(photos), base="squeezenet", weights="none", image_size=SIZE, batch_size=BATCH,
                                   out=str(out), verbose=0, workers=1, **kw)


def _iterator(photos, subset):
    gen = ImageDataGenerator(validation_split=0.25)
    return gen.flow_from_directory(photos, target_size=(SIZE, SIZE), batch_size=BATCH, shuffle=False, subset=subset,
                                   workers=0, verbose=0)


def _close(got, want):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())


@pytest.mark.parametrize("pool", ["gap", None])
def test_cached_features_equal_one_process_in_order(cluster, photos, tmp_path, pool):
    config = _config(photos, tmp_path / "run", flip="both", scheduler=cluster.scheduler.address)
    base = finetune.build_base(config)
    flips = finetune.flip_variants(config)
    for subset in ("training", "validation"):
        it = _iterator(photos, subset)
        want, want_y = finetune.compute_features(base, it, "caffe", subset, 0, flips, pool)
        with cluster_features(config, base, "caffe") as on_cluster:
            got, got_y = on_cluster.compute(it, subset, flips, pool)
        assert len(got) == len(want) == 4
        for g, w in zip(got, want):
            assert g.shape == w.shape == ((len(it.filepaths),) + ((512,) if pool else (2, 2, 512)))
            _close(g, w)
        np.testing.assert_array_equal(got_y, want_y)
        assert not (tmp_path / "run" / "feature-parts").exists()  # read, then removed


def test_interrupted_feature_job_resumes_with_the_missing_partitions_only(cluster, photos, tmp_path, wait_for):
    from tlkit.apps.cluster_features import base_spec

    config = _config(photos, tmp_path / "run")
    base = finetune.build_base(config)
    spec = base_spec(base, "caffe", SIZE, tmp_path / "model")
    it = _iterator(photos, "training")
    flips = [(False, False), (True, False)]
    want, _ = finetune.compute_features(base, it, "caffe", "training", 0, flips, "gap")
    parts = tmp_path / "parts"

    def interrupt(summary):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        distributed_flipped_features(cluster, it.filepaths, spec, flips, "avg", BATCH, str(parts),
                                     partition_size=BATCH, on_partition=interrupt)
    # A partition already running when the driver stopped runs to its end; then drop the last finished one
    # (as a kill mid-write would), so the resumed job has work whatever the machine's speed.
    wait_for(lambda: {p.name.split(".")[0] for p in (parts / "started").iterdir()} <= {
        p.name.split(".")[0] for p in parts.glob("part-*.npz")}, "the partitions started to finish")
    kept = sorted(p.name for p in parts.glob("part-*.npz"))
    (parts / kept.pop()).unlink()
    computed = []
    paths, got, failures, _ = distributed_flipped_features(cluster, it.filepaths, spec, flips, "avg", BATCH,
                                                           str(parts), resume=True, partition_size=BATCH,
                                                           on_partition=computed.append)
    count = -(-len(it.filepaths) // BATCH)
    assert sorted(s["partition"] for s in computed) == [i for i in range(count) if f"part-{i:05d}.npz" not in kept]
    assert paths == it.filepaths and failures == []
    for g, w in zip(got, want):
        _close(g, w)


def test_finetune_on_the_cluster_trains_as_one_process(cluster, photos, tmp_path):
    common = ["--base", "squeezenet", "--weights", "none", "--image-size", str(SIZE), "--batch-size", str(BATCH),
              "--head", "gap,dense:8", "--verbose", "0", "--workers", "1", "--epochs", "2", "--lr", "0.01"]
    one = CliRunner().invoke(main, ["finetune", str(photos), "--out", str(tmp_path / "one"), *common])
    assert one.exit_code == 0, one.output
    on_cluster = CliRunner().invoke(main, ["finetune", str(photos), "--out", str(tmp_path / "dask"),
                                           "--scheduler", cluster.scheduler.address, *common])
    assert on_cluster.exit_code == 0, on_cluster.output
    from tlkit.apps.api import read_history_csv

    a, b = (read_history_csv(tmp_path / name / "history.csv") for name in ("one", "dask"))
    for key in ("loss", "val_loss", "accuracy"):
        np.testing.assert_allclose(b[key], a[key], rtol=1e-4, atol=1e-5)
    assert not (tmp_path / "dask" / "feature-parts").exists()


def test_cluster_options_are_checked_first(photos, tmp_path):
    config = _config(photos, tmp_path / "run", scheduler="tcp://127.0.0.1:1", cluster_workers=2)
    with pytest.raises(ValueError, match="give one"):
        finetune.run(config)
    with pytest.raises(ValueError, match="--cluster-workers"):
        finetune.run(dataclasses.replace(config, scheduler=None, cluster_workers=0))


def test_worker_model_cache_keeps_a_limited_number_of_models(monkeypatch):
    loads = []
    monkeypatch.setattr(tasks, "_load", lambda spec: loads.append(spec["name"]) or (object(), {"name": spec["name"]}))
    monkeypatch.setattr(tasks, "_models", type(tasks._models)())
    monkeypatch.setenv("TLKIT_WORKER_MODELS", "2")
    flags = []
    for name in ["a", "b", "a", "c", "a", "b"]:
        _, meta, loaded, _ = tasks.worker_model({"kind": "file", "name": name})
        assert meta == {"name": name}
        flags.append(loaded)
    assert flags == [True, True, False, True, False, True]
    # a, b loaded; a reused; c evicts b (the least recently used); a reused; b loaded again (evicting c)
    assert loads == ["a", "b", "c", "b"]
    assert [json.loads(key)["name"] for key in tasks._models] == ["a", "b"]
    monkeypatch.setenv("TLKIT_WORKER_MODELS", "many")
    with pytest.raises(ValueError, match="TLKIT_WORKER_MODELS"):
        tasks.worker_model({"kind": "file", "name": "d"})
