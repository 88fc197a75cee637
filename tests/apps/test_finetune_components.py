"""The pieces of `tlkit finetune` that stand alone: folder layout, head spec, report, plots, run folder."""
import json

import numpy as np
import pytest
from PIL import Image

from tlkit.apps import finetune, head, plots, report
from tlkit.apps.dataset import DataFolderError, find_layout


def touch_images(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.new("RGB", (4, 4)).save(folder / n)


def test_layouts_class_folders_and_train_val(tmp_path):
    touch_images(tmp_path / "flat" / "cats", ["a.jpg"])
    touch_images(tmp_path / "flat" / "dogs", ["b.png"])
    (tmp_path / "flat" / ".hidden").mkdir()
    layout = find_layout(tmp_path / "flat")
    assert layout["classes"] == ["cats", "dogs"] and layout["val"] is None
    for split in ("train", "validation"):
        touch_images(tmp_path / "split" / split / "ants", ["a.jpg"])
        touch_images(tmp_path / "split" / split / "bees", ["b.jpg"])
    layout = find_layout(tmp_path / "split")
    assert layout["train"].endswith("train") and layout["val"].endswith("validation")


@pytest.mark.parametrize("setup, message", [
    (lambda p: p.mkdir(), "is empty"),
    (lambda p: touch_images(p / "only", ["a.jpg"]), "only one class"),
    (lambda p: (touch_images(p / "a", ["a.jpg"]), (p / "b").mkdir(), (p / "b" / "notes.txt").write_text("x")),
     "hold no images"),
    (lambda p: (touch_images(p / "train" / "a", ["a.jpg"]), touch_images(p / "train" / "b", ["b.jpg"]),
                touch_images(p / "val" / "a", ["a.jpg"]), touch_images(p / "val" / "c", ["c.jpg"])), "differ"),
])
def test_folder_mistakes_get_actionable_errors(tmp_path, setup, message):
    data = tmp_path / "data"
    setup(data)
    with pytest.raises(DataFolderError, match=message):
        find_layout(data)


def test_head_spec_builds_the_layers_it_names():
    model = head.build_head((7, 7, 16), 3, "gap, dense:32, dropout:0.25, bn")
    kinds = [type(l).__name__ for l in model.layers]
    assert kinds == ["GlobalAveragePooling2D", "Dense", "Dropout", "BatchNormalization", "Dense"]
    assert model.layers[1].units == 32 and model.layers[2].rate == 0.25 and model.output_shape == (None, 3)
    assert [type(l).__name__ for l in head.build_head((7, 7, 16), 2, "dense:8").layers][0] == "GlobalAveragePooling2D"
    for bad, why in (("dense:0", "positive"), ("dropout:1.5", "rate"), ("conv:3", "Unknown"), ("gap:2", "no value")):
        with pytest.raises(ValueError, match=why):
            head.parse_head(bad)


def test_classification_report_against_hand_counts():
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 1, 1, 2, 2]
    rep = report.classification_report(y_true, y_pred, ["a", "b", "c"])
    assert rep["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert rep["accuracy"] == pytest.approx(4 / 6)
    assert rep["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8),
                                     "support": 3}
    assert rep["per_class"]["b"]["precision"] == 0.5 and rep["per_class"]["c"]["recall"] == 1.0
    text = report.format_report(rep)
    assert "accuracy: 0.6667" in text and "confusion matrix" in text
    assert report.markdown_table(rep).count("\n") == 4


def test_plots_are_png_files_with_content(tmp_path):
    history = {"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.8, 0.7], "accuracy": [0.5, 0.7, 0.8],
               "val_accuracy": [0.4, 0.6, 0.65], "stage": [1, 1, 2]}
    plots.plot_curves(history, tmp_path / "curves.png")
    plots.plot_confusion(np.array([[5, 1], [2, 7]]), ["ants", "bees"], tmp_path / "confusion.png")
    for name in ("curves.png", "confusion.png"):
        with Image.open(tmp_path / name) as im:
            assert im.format == "PNG" and im.width >= 200 and im.height >= 200
            assert len(np.unique(np.asarray(im.convert("RGB")).reshape(-1, 3), axis=0)) > 10  # drawn, not blank


def test_history_csv_has_each_epoch_once_across_stages(tmp_path):
    stage1 = finetune.combine_histories(None, {"loss": [1.0, 0.5], "accuracy": [0.5, 0.8]}, 1)
    both = finetune.combine_histories(stage1, {"loss": [0.4], "accuracy": [0.9], "val_loss": [0.6]}, 2)
    finetune.write_history_csv(tmp_path / "history.csv", both)
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert lines[0] == "epoch,stage,accuracy,loss,val_loss"
    assert lines[1:] == ["1,1,0.5,1.0,", "2,1,0.8,0.5,", "3,2,0.9,0.4,0.6"]  # epochs from 1, as on the console


def test_run_folder_refuses_foreign_and_different_runs(tmp_path):
    config = finetune.FinetuneConfig(data_dir=str(tmp_path), out=str(tmp_path / "run"), epochs=2)
    state = finetune.prepare_run_dir(config)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["settings"] == state["settings"]
    # A run with a completed epoch (its backup) is worth keeping; one without is not (test_run_lifecycle.py).
    (tmp_path / "run" / "backup" / "stage1").mkdir(parents=True)
    (tmp_path / "run" / "backup" / "stage1" / "latest.backup.h5").write_bytes(b"one epoch")
    with pytest.raises(finetune.RunDirError, match="--resume"):
        finetune.prepare_run_dir(config)
    other = finetune.FinetuneConfig(data_dir=str(tmp_path), out=str(tmp_path / "run"), epochs=3, resume=True)
    with pytest.raises(finetune.RunDirError, match="epochs: was 2, now 3"):
        finetune.prepare_run_dir(other)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "thesis.docx").write_text("precious")
    with pytest.raises(finetune.RunDirError, match="not empty"):
        finetune.prepare_run_dir(finetune.FinetuneConfig(data_dir=str(tmp_path), out=str(tmp_path / "foreign")))
    with pytest.raises(finetune.RunDirError, match="no run to resume"):
        finetune.prepare_run_dir(finetune.FinetuneConfig(data_dir=str(tmp_path), out=str(tmp_path / "new"),
                                                         resume=True))


def test_unfreeze_top_by_count_and_by_name():
    import tlkit
    from tlkit import layers as L

    base = tlkit.Sequential([tlkit.Input((8, 8, 3)), L.Conv2D(2, 3, name="c1"), L.MaxPooling2D(name="p1"),
                             L.Conv2D(2, 1, name="c2"), L.Conv2D(2, 1, name="c3")])
    base.trainable = False
    assert finetune.unfreeze_top(base, layers=2) == ["c2", "c3"]
    assert [l.trainable for l in base.layers] == [False, False, True, True]
    assert finetune.unfreeze_top(base, from_layer="p1") == ["c2", "c3"]
    with pytest.raises(ValueError, match="no layer 'block9'"):
        finetune.unfreeze_top(base, from_layer="block9")
    with pytest.raises(ValueError, match="only 3 layers"):
        finetune.unfreeze_top(base, layers=5)


def test_monitoring_summary_per_stage_and_gradient_warnings_in_the_report():
    from tlkit.apps import run_report

    history = {"stage": [1, 1, 2], "data_time": [1.0, 3.0, 2.0], "compute_time": [3.0, 5.0, 6.0],
               "memory_peak_mb": [100.0, 120.0, 300.0], "cpu_percent": [150.0, 170.0, 190.0],
               "images_per_sec": [10.0, 20.0, 5.0]}
    message = "GradientMonitor: exploding gradients in layer 'predictions': ..."
    summary = run_report.monitoring_summary(history, [message])
    assert summary["stage1"] == {"peak_memory_mb": 120.0, "mean_cpu_percent": 160.0, "images_per_second": 15.0,
                                 "data_seconds": 4.0, "compute_seconds": 8.0, "data_fraction": pytest.approx(1 / 3)}
    assert summary["stage2"]["peak_memory_mb"] == 300.0 and summary["gradient_warnings"] == [message]
    lines = "\n".join(run_report._monitoring_markdown(summary))
    assert "- stage 1: peak memory 120 MB, mean CPU 160%" in lines and "(33% data)" in lines
    assert f"## Gradient warnings\n\n- {message}" in lines
    assert [run_report.gradient_group(n) for n in ("block5_conv1", "fire9/squeeze1x1", "head_dense_0",
                                                   "predictions")] == ["block5", "fire9", "head", "head"]
