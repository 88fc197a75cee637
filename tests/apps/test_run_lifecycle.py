"""The life of a `tlkit finetune` run folder (issues 13.5, 14.7-14.9, 14.11, 14.12): failed starts block
nothing, a resume continues only the same run and a refused one changes no file, a damaged run.json is a
one-line error, a diverging run records no NaN model, and a resumed run equals an uninterrupted one."""
import csv
import json
import os
import pathlib

import numpy as np
import pytest
from click.testing import CliRunner
from test_finetune import SMALL, make_folder

import tlkit
from tlkit.apps import finetune, run_dir
from tlkit.cli import main


def finetune_cli(data, out, *args):
    return CliRunner().invoke(main, ["finetune", str(data), "--out", str(out), *SMALL, *args])


def snapshot(folder):
    """Every file under ``folder`` with its bytes: what a refused command must leave as it was."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def interrupt_after_epoch(monkeypatch, n):
    """Ctrl-C as the run finishes epoch ``n`` (1-based) of stage 1, after its files are written."""
    from tlkit.engine.callbacks import Callback

    class CtrlC(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == n:
                raise KeyboardInterrupt

    run_callbacks = finetune._run_callbacks
    monkeypatch.setattr(finetune, "_run_callbacks", lambda *a: run_callbacks(*a) + [CtrlC()])


def error_lines(result):
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


# ----- 13.5: a run that fails before its first epoch blocks nothing -----
@pytest.mark.parametrize("bad", [["--base", "vgg16", "--weights", "missing.h5"], ["--head", "dense:-3"]])
def test_a_run_failing_before_its_first_epoch_does_not_block_a_fresh_start(tmp_path, bad):
    data, out = make_folder(tmp_path / "photos", per_class=6), tmp_path / "run"
    failed = finetune_cli(data, out, "--epochs", "1", *bad)
    assert failed.exit_code == 1 and "Traceback" not in failed.output
    assert not (out / "run.json").exists()
    result = finetune_cli(data, out, "--epochs", "1")
    assert result.exit_code == 0, result.output
    assert (out / "model.h5").is_file()


def test_a_killed_run_without_a_completed_epoch_is_started_afresh(tmp_path):
    data, out = make_folder(tmp_path / "photos", per_class=6), tmp_path / "run"
    # What a run killed during start-up leaves: run.json, classes.json, a temporary, no backup.
    run_dir.prepare(finetune.FinetuneConfig(str(data), out=str(out), base="vgg16", epochs=5))
    (out / "classes.json").write_text("[]")
    (out / ".best.h5.abc.tmp").write_bytes(b"half")
    for args in (["--resume"], []):  # with other settings, resumed or not: it starts over
        result = finetune_cli(data, out, "--epochs", "1", *args)
        assert result.exit_code == 0, result.output
        state = json.loads((out / "run.json").read_text())
        assert state["settings"]["base"] == "squeezenet" and state["finished"]
        assert not list(out.rglob("*.tmp"))
        (out / "run.json").write_text(json.dumps({**state, "finished": False, "stage1_done": False}))
        (out / "history.csv").unlink()


# ----- 14.8, 14.9: the class list is part of the run; a refused resume changes nothing -----
@pytest.mark.parametrize("interrupted", [False, True])
def test_resume_with_another_class_list_is_refused_and_changes_no_file(tmp_path, monkeypatch, interrupted):
    data, out = make_folder(tmp_path / "photos", per_class=6, classes=("ants", "bees")), tmp_path / "run"
    if interrupted:
        with monkeypatch.context() as m:
            interrupt_after_epoch(m, 1)
            assert finetune_cli(data, out, "--epochs", "3").exit_code == 130
    else:
        assert finetune_cli(data, out, "--epochs", "2").exit_code == 0
    before = snapshot(out)
    os.rename(data / "ants", data / "zants")  # the class order changes: bees would become class 0
    result = finetune_cli(data, out, "--epochs", "3" if interrupted else "2", "--resume")
    assert result.exit_code == 1 and error_lines(result) and "classes changed" in result.output
    assert snapshot(out) == before
    os.rename(data / "zants", data / "ants")
    make_folder(data / "wasps", per_class=6, classes=(".",))  # a class added
    result = finetune_cli(data, out, "--epochs", "3" if interrupted else "2", "--resume")
    assert result.exit_code == 1 and "classes changed" in result.output
    assert snapshot(out) == before  # classes.json too
    assert json.loads((out / "classes.json").read_text()) == ["ants", "bees"]


# ----- 14.11: a damaged run.json -----
@pytest.mark.parametrize("content", [b"{}", b"\x00garbage\xff", b"[1, 2]", b'{"settings": 5, "stage1_done": false, '
                                     b'"finished": false}', b'{"settings": {}, "stage1_done": "no", "finished": 0}'])
@pytest.mark.parametrize("resume", [True, False])
def test_a_damaged_run_json_is_a_one_line_error(tmp_path, content, resume):
    data, out = make_folder(tmp_path / "photos", per_class=4), tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_bytes(content)
    result = finetune_cli(data, out, "--epochs", "1", *(["--resume"] if resume else []))
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(error_lines(result)) == 1 and "run.json is damaged" in result.output
    assert snapshot(out) == {pathlib.Path("run.json"): content}


# ----- 14.7: a run whose loss turns non-finite -----
def test_a_diverging_run_stops_clearly_and_records_no_nan_model(tmp_path):
    data, out = make_folder(tmp_path / "photos", per_class=8), tmp_path / "run"
    result = finetune_cli(data, out, "--epochs", "3", "--optimizer", "sgd", "--lr", "1e30")
    assert result.exit_code == 1, result.output
    assert error_lines(result) and "diverged" in error_lines(result)[0] and "--lr" in error_lines(result)[0]
    assert not (out / "model.h5").exists()
    for path in out.rglob("*.h5") if out.exists() else []:
        model = tlkit.models.load_model(path)
        assert all(np.isfinite(w).all() for w in model.get_weights()), path


def test_nan_weights_with_a_finite_loss_stop_the_run_before_anything_saves_them():
    from tlkit import layers as L

    model = tlkit.Sequential([tlkit.Input((3,)), L.Dense(2)])
    guard = run_dir.finite_guard(lr=0.1)
    guard.set_model(model)
    guard.on_epoch_begin(0)
    guard.on_train_batch_end(0, {"loss": 0.5})
    guard.on_epoch_end(0, {"loss": 0.5, "val_accuracy": 0.5})  # all finite: nothing happens
    model.layers[-1].kernel.assign(np.full((3, 2), np.nan))
    with pytest.raises(run_dir.TrainingDiverged, match="the weights"):
        guard.on_epoch_end(0, {"loss": 0.5, "val_accuracy": 0.5})
    with pytest.raises(run_dir.TrainingDiverged, match="not saved"):
        run_dir.require_finite_weights(model, "the final model")
    with pytest.raises(run_dir.TrainingDiverged, match="batch 3"):
        guard.on_train_batch_end(2, {"loss": float("inf")})


# ----- 14.12: a resumed run equals an uninterrupted one -----
def read_history(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("options", [["--rotation", "10"], ["--augment"]], ids=["augmented", "cached-flips"])
def test_a_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch, options):
    data = make_folder(tmp_path / "photos", per_class=10)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert finetune_cli(data, straight, "--epochs", "4", *options).exit_code == 0
    with monkeypatch.context() as m:
        interrupt_after_epoch(m, 2)
        assert finetune_cli(data, resumed, "--epochs", "4", *options).exit_code == 130
    result = finetune_cli(data, resumed, "--epochs", "4", "--resume", *options)
    assert result.exit_code == 0, result.output
    a, b = read_history(straight / "history.csv"), read_history(resumed / "history.csv")
    assert len(a) == len(b) == 4
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose([float(r[key]) for r in b], [float(r[key]) for r in a], rtol=1e-5, atol=1e-6,
                                   err_msg=key)
    for w_a, w_b in zip(tlkit.models.load_model(straight / "model.h5").get_weights(),
                        tlkit.models.load_model(resumed / "model.h5").get_weights()):
        np.testing.assert_allclose(w_b, w_a, rtol=1e-5, atol=1e-6)


def test_images_that_fail_to_decode_after_the_scan_are_reported_and_not_counted(tmp_path, monkeypatch):
    from tlkit.augment import image_io

    data, out = make_folder(tmp_path / "photos", per_class=10), tmp_path / "run"
    late = data / "circles" / "z_late.jpg"  # last in its class: in the training subset
    late.write_bytes((data / "circles" / "0.jpg").read_bytes())
    decode = image_io.decode

    def failing_decode(path, *args, **kwargs):  # the file broke after the scan (replaced, disk error...)
        if str(path).endswith("z_late.jpg"):
            raise image_io.ImageLoadError(f"{path}: broken after the scan")
        return decode(path, *args, **kwargs)

    monkeypatch.setattr(image_io, "decode", failing_decode)
    result = finetune_cli(data, out, "--epochs", "1", "--no-augment")
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert [s["path"] for s in report["skipped_images"]] == [str(late)]
    assert report["train_images"] == 17 - 1 and report["val_images"] == 4  # Keras's split of 21 images


def test_a_class_name_with_a_newline_keeps_tables_one_line_per_row(tmp_path):
    data, out = make_folder(tmp_path / "photos", per_class=6, classes=("ants\nqueen", "bees")), tmp_path / "run"
    result = finetune_cli(data, out, "--epochs", "1")
    assert result.exit_code == 0, result.output
    md = (out / "report.md").read_text()
    assert "| ants\\nqueen | " in md and not any(line.startswith("queen") for line in md.splitlines())
    images = sorted((data / "ants\nqueen").glob("*.jpg"))
    result = CliRunner().invoke(main, ["predict", str(out / "model.h5"), *map(str, images)])
    assert result.exit_code == 0, result.output
    rows = result.output.splitlines()
    assert len(rows) == len(images) and all(row.startswith(str(data)) for row in rows)
    assert all("ants\\nqueen" in row or "bees" in row for row in rows)
    result = CliRunner().invoke(main, ["predict", str(out / "model.h5"), str(images[0]), "--format", "json"])
    assert json.loads(result.output)[0]["predictions"][0]["class"] in ("ants\nqueen", "bees")  # data unescaped


def test_an_out_folder_inside_the_data_folder_is_refused(tmp_path):
    data = make_folder(tmp_path / "photos", per_class=4)
    before = snapshot(data)
    for out in (data / "run", data / "circles" / "run"):
        result = finetune_cli(data, out, "--epochs", "1")
        assert result.exit_code == 1 and "inside the data folder" in result.output
        assert snapshot(data) == before and not out.exists()
