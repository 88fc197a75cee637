"""What a run writes and says (issue 13, items 4, 7, 8, 11 and the extras): every model file names its
classes; stage 2 is announced and reported; one truth about the kept weights; predict's exit codes,
messages and progress; `tlkit models`; the `tlkit.finetune` API."""
import csv
import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

import tlkit
from tlkit.apps import warmup
from tlkit.cli import main
from tests.apps.test_finetune import SMALL, make_folder

VERBOSE_SMALL = [a if a != "0" or SMALL[i - 1] != "--verbose" else "2" for i, a in enumerate(SMALL)]


@pytest.fixture(scope="module")
def two_stage_run(tmp_path_factory):
    """Stage 1 with early stopping, then stage 2 on the top 3 layers, console at one line per epoch,
    run as on a cold start (no kernel cache)."""
    root = tmp_path_factory.mktemp("stages")
    data = make_folder(root / "photos", per_class=10)
    patch = pytest.MonkeyPatch()
    patch.setattr(warmup, "kernel_cache_present", lambda *names: False)
    try:
        result = CliRunner().invoke(main, ["finetune", str(data), "--out", str(root / "run"), "--epochs", "4",
                                           "--no-augment", "--early-stopping", "2", "--fine-tune-layers", "3",
                                           "--fine-tune-epochs", "2", "--fine-tune-lr", "1e-3", *VERBOSE_SMALL])
    finally:
        patch.undo()
    assert result.exit_code == 0, result.output
    return data, root / "run", result.output


def read_history(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def test_every_model_file_of_a_run_names_its_classes(two_stage_run):
    data, run, _ = two_stage_run
    runner = CliRunner()
    picture = str(sorted((data / "stripes").glob("*.jpg"))[0])
    for name in ("best.h5", "stage1.h5", "model.h5"):
        model = tlkit.models.load_model(run / name)
        assert model.metadata["classes"] == ["circles", "stripes"] and model.metadata["preprocessing"] == "caffe"
        result = runner.invoke(main, ["predict", str(run / name), picture])
        assert result.exit_code == 0, result.output
        assert re.search(r"\s(circles|stripes) [01]\.\d{3}$", result.output.strip()), result.output
        result = runner.invoke(main, ["evaluate", str(run / name), str(data), "--confusion", str(run / f"{name}.png")])
        assert result.exit_code == 0 and "accuracy:" in result.output, result.output


def test_stage_two_is_announced_reported_and_drawn(two_stage_run):
    _, run, console = two_stage_run
    rows = read_history(run)
    n1 = sum(r["stage"] == "1" for r in rows)
    assert [r["stage"] for r in rows] == ["1"] * n1 + ["2", "2"]
    first = n1 + 1
    assert "Stage 1: training the head on the frozen squeezenet base" in console
    assert (f"Stage 2 (from epoch {first}): unfreezing 3 layers from fire9/squeeze1x1 (fire9/squeeze1x1, "
            "fire9/expand1x1, fire9/expand3x3)") in console
    assert console.index("Stage 1:") < console.index("Stage 2") < console.index("Done.")
    report = json.loads((run / "report.json").read_text())
    stage1, stage2 = report["stages"]
    assert (stage1["first_epoch"], stage1["epochs"]) == (1, n1)
    assert (stage2["first_epoch"], stage2["epochs"]) == (first, 2)
    assert stage2["layers"] == ["fire9/squeeze1x1", "fire9/expand1x1", "fire9/expand3x3"]
    md = (run / "report.md").read_text()
    assert f"stage 2: epochs {first}-{first + 1}, trained the head and 3 base layers: fire9/squeeze1x1" in md


def test_one_truth_about_the_kept_weights(two_stage_run):
    """Console, report.json, report.md and history.csv name the same epoch for model.h5, and best.h5 holds
    the epoch with the highest val_accuracy of the whole run."""
    _, run, console = two_stage_run
    report = json.loads((run / "report.json").read_text())
    rows = read_history(run)
    kept = report["kept_weights"]
    val = [float(r["val_accuracy"]) for r in rows]
    first = report["stages"][1]["first_epoch"]
    # Early stopping watched stage 2 too: its best epoch (by val_accuracy, the first of equals) was restored.
    assert kept["epoch"] == first + int(np.argmax(val[first - 1:])) and "early stopping" in kept["reason"]
    assert [int(r["epoch"]) for r in rows if r["kept"] == "1"] == [kept["epoch"]]
    assert f"model.h5 holds the weights of epoch {kept['epoch']}: {kept['reason']}." in console
    assert f"model.h5 holds the weights of epoch {kept['epoch']}: {kept['reason']}" in (run / "report.md").read_text()
    assert f"Done. Accuracy of model.h5 (epoch {kept['epoch']})" in console
    assert report["best"]["epoch"] == int(np.argmax(val)) + 1 == report["best_epoch"]
    assert report["best"]["value"] == pytest.approx(max(val))
    # model.h5 evaluated on the validation images gives the history's value of the kept epoch.
    assert report["accuracy"] == pytest.approx(val[kept["epoch"] - 1], abs=1 / report["val_images"] + 1e-9)


def test_early_stopping_keeps_the_best_epoch_everywhere(tmp_path):
    data = make_folder(tmp_path / "photos", per_class=10)
    result = CliRunner().invoke(main, ["finetune", str(data), "--out", str(tmp_path / "run"), "--epochs", "8",
                                       "--no-augment", "--early-stopping", "1", *VERBOSE_SMALL])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    rows = read_history(tmp_path / "run")
    val = [float(r["val_accuracy"]) for r in rows]
    best = int(np.argmax(val)) + 1
    kept = report["kept_weights"]
    # Early stopping watches the same value as best.h5 and the report: the kept epoch is the best one.
    assert kept["epoch"] == best == report["best"]["epoch"] and kept["monitor"] == "val_accuracy"
    assert "early stopping" in kept["reason"] and f"epoch {best}" in kept["reason"]
    assert [int(r["epoch"]) for r in rows if r["kept"] == "1"] == [best]
    assert f"model.h5 holds the weights of epoch {best}" in result.output
    assert report["accuracy"] == pytest.approx(val[best - 1], abs=1 / report["val_images"] + 1e-9)


def test_console_says_found_once_and_compiling_before_the_first_progress(two_stage_run):
    _, _, console = two_stage_run
    found = [line for line in console.splitlines() if line.startswith("Found ")]
    assert found == ["Found 16 images belonging to 2 classes.", "Found 4 images belonging to 2 classes."]
    compiling = console.index("compiling kernels (once")
    assert compiling < console.index("Caching base features") and compiling < console.index("Stage 1:")
    # Stage 2's first step compiles the backward kernels: said once, after the stage's title.
    assert console.count("compiles the backward kernels (once") == 1
    assert console.index("Stage 2") < console.index("compiles the backward kernels") < console.index("Done.")


def test_run_report_shows_the_mistakes(two_stage_run):
    _, run, _ = two_stage_run
    report = json.loads((run / "report.json").read_text())
    cm = np.array(report["confusion"])
    off = cm.sum() - np.trace(cm)
    assert sum(p["count"] for p in report["most_confused"]) == off
    assert len(report["confidently_wrong"]) == off
    probs = [w["probability"] for w in report["confidently_wrong"]]
    assert probs == sorted(probs, reverse=True) and all(w["true"] != w["predicted"] for w in report["confidently_wrong"])
    assert (run / "misclassified.png").is_file()


def test_predict_on_no_picture_fails_and_names_the_file(two_stage_run, tmp_path):
    data, run, _ = two_stage_run
    bad = tmp_path / "notanimage.jpg"
    bad.write_text("just some text")
    result = CliRunner().invoke(main, ["predict", str(run / "model.h5"), str(bad), "--format", "json"])
    assert result.exit_code == 1 and "[]" not in result.stdout
    assert f"skipped {bad}: not a picture" in result.stderr and "BytesIO" not in result.output
    assert result.stderr.strip().splitlines()[-1].startswith("Error: none of the 1 file(s)")
    good = sorted((data / "circles").glob("*.jpg"))[0]
    result = CliRunner().invoke(main, ["predict", str(run / "model.h5"), str(good), str(bad)])
    assert result.exit_code == 0 and "1 picture(s) predicted, 1 skipped." in result.stderr


def test_predict_reports_progress_over_the_pictures(two_stage_run):
    from tlkit.apps.inference import collect_images, load_classifier, predict_files

    data, run, _ = two_stage_run
    model, meta = load_classifier(run / "model.h5")
    paths = collect_images([data])

    class Seen:
        done = []

        def update(self, n):
            self.done.append(n)

    results, _ = predict_files(model, meta, paths, batch_size=6, progress=Seen())
    assert len(results) == 20 and Seen.done == [6, 12, 18, 20]


def test_models_command_lists_bases_sizes_parameters_and_layers(tmp_path, monkeypatch):
    from tlkit.zoo import SqueezeNet

    monkeypatch.setenv("TLKIT_HOME", str(tmp_path))
    result = CliRunner().invoke(main, ["models", "--format", "json"])
    assert result.exit_code == 0, result.output
    infos = {i["base"]: i for i in json.loads(result.output)}
    assert {"vgg16", "squeezenet", "efficientnet_lite0"} <= set(infos)
    base = SqueezeNet(include_top=False, weights=None, input_shape=(64, 64, 3))
    assert infos["squeezenet"]["parameters"] == base.count_params()
    assert infos["squeezenet"]["layers"] == [l.name for l in base.layers[1:]]
    assert "block5_conv1" in infos["vgg16"]["layers"] and infos["vgg16"]["parameters"] == 14714688
    assert infos["vgg16"]["imagenet_weights_offline"] is False
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"x")
    result = CliRunner().invoke(main, ["models"])
    assert result.exit_code == 0 and "yes (cached)" in result.output and "fire9/squeeze1x1" in result.output


def test_python_api_returns_history_report_and_paths(tmp_path):
    data = make_folder(tmp_path / "photos", per_class=6)
    result = tlkit.finetune(data, out=tmp_path / "run", base="squeezenet", weights="none", image_size=48,
                            batch_size=8, head="gap,dense:16", epochs=2, augment=False, verbose=0, workers=1)
    assert result.history["epoch"] == [1, 2] and len(result.history["val_accuracy"]) == 2
    assert result.report == json.loads((tmp_path / "run" / "report.json").read_text())
    assert result.accuracy == result.report["accuracy"]
    for name in ("model", "best", "stage1", "history", "curves", "confusion", "report_md"):
        assert result.paths[name].startswith(str(tmp_path / "run")), name
    assert tlkit.models.load_model(result.paths["model"]).metadata["classes"] == ["circles", "stripes"]


def test_monitoring_is_recorded_per_epoch_and_summarised_in_the_report(two_stage_run):
    _, run, _ = two_stage_run
    rows = read_history(run)
    stage1 = [r for r in rows if r["stage"] == "1"]
    stage2 = [r for r in rows if r["stage"] == "2"]
    for r in rows:
        assert float(r["grad_norm/head"]) > 0 and float(r["memory_peak_mb"]) >= float(r["memory_rss_mb"]) > 0
        assert float(r["images_per_sec"]) > 0 and float(r["compute_time"]) > 0 and float(r["data_time"]) >= 0
    # The base's block trains (and so has a gradient norm) in stage 2 only, at stage 2's learning rate.
    assert all(r["grad_norm/fire9"] == "" for r in stage1)
    assert all(float(r["grad_norm/fire9"]) > 0 for r in stage2)
    assert all(float(r["learning_rate"]) == pytest.approx(1e-3) for r in stage2)
    report = json.loads((run / "report.json").read_text())
    monitoring = report["monitoring"]
    assert monitoring["gradient_warnings"] == []  # a healthy run
    for stage, stage_rows in (("stage1", stage1), ("stage2", stage2)):
        m = monitoring[stage]
        assert m["peak_memory_mb"] == pytest.approx(max(float(r["memory_peak_mb"]) for r in stage_rows))
        assert m["data_seconds"] == pytest.approx(sum(float(r["data_time"]) for r in stage_rows))
        assert 0 <= m["data_fraction"] <= 1 and m["mean_cpu_percent"] >= 0
    md = (run / "report.md").read_text()
    assert "## Resources" in md and "- stage 2: peak memory" in md and "## Gradient warnings\n\n- none" in md
