"""The command line's manners (issue 13, items 2 and 6): --help works everywhere, every mistake is one
`Error:` line with exit code 1, and every finetune/augment option is checked before any work starts."""
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tlkit import cli
from tlkit.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALL_COMMANDS = ("finetune", "predict", "evaluate", "summary", "convert", "augment", "models", "features")


def one_error_line(result):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, (result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Usage:" not in result.output and "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (tmp_path / "photos" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "photos" / name / f"{i}.png")
    return tmp_path / "photos"


def test_every_command_is_registered_including_the_optional_ones():
    assert set(ALL_COMMANDS) == set(main.commands)


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_help_of_every_command_exits_0(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: main {command}") and "Error" not in result.output


def test_help_and_version_of_the_real_program_exit_0():
    env = {**os.environ, "PYTHONPATH": REPO}
    for args in (["finetune", "--help"], ["augment", "-h"], ["--help"], ["--version"], []):
        done = subprocess.run([sys.executable, "-m", "tlkit.cli", *args], capture_output=True, text=True, env=env,
                              timeout=120)
        assert done.returncode == 0 and done.stdout and not done.stderr, (args, done.stderr)


@pytest.mark.parametrize("args, names", [
    (["finetune", "no/such/folder"], "DATA_DIR"),
    (["finetune", "{photos}", "--epochs", "0"], "--epochs"),
    (["finetune", "{photos}", "--brightness", "1,2,3"], "--brightness"),
    (["finetune", "{photos}", "--no-such-option"], "--no-such-option"),
    (["predict"], "MODEL_PATH"),
    (["nosuchcommand"], "nosuchcommand"),
])
def test_click_usage_errors_have_the_same_one_line_style(photos, args, names):
    result = CliRunner().invoke(main, [a.format(photos=photos) for a in args])
    line = one_error_line(result)
    assert names in line and "--help" in line  # says what is wrong and where to look


@pytest.mark.parametrize("args, names", [
    (["--fine-tune-layers", "3"], "--fine-tune-epochs"),
    (["--fine-tune-from", "fire9/squeeze1x1"], "--fine-tune-epochs"),
    (["--fine-tune-from", "nosuchlayer", "--fine-tune-epochs", "1"], "nosuchlayer"),
    (["--fine-tune-layers", "99", "--fine-tune-epochs", "1"], "--fine-tune-layers 99"),
    (["--brightness", "1.5"], "--brightness"),
    (["--brightness", "abc"], "--brightness"),
    (["--brightness", "1.3,0.7"], "--brightness"),
    (["--weights", "missing.h5"], "file not found"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--lr", "-1"], "--lr"),
    (["--fine-tune-lr", "nan"], "--fine-tune-lr"),
    (["--fine-tune-lr", "0"], "--fine-tune-lr"),
    (["--zoom", "-0.1"], "--zoom"),
    (["--rotation", "nan"], "--rotation"),
    (["--shift", "inf"], "--shift"),
])
def test_finetune_options_are_checked_before_any_work(photos, tmp_path, monkeypatch, args, names):
    from tlkit.apps import finetune

    monkeypatch.setattr(finetune, "find_layout", lambda *a: pytest.fail("the data folder was read"))
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["finetune", str(photos), "--base", "squeezenet", "--weights", "none",
                                       "--out", str(out), *args])
    assert names in one_error_line(result)
    assert not out.exists()


@pytest.mark.parametrize("args, names", [
    (["--rotation", "nan"], "--rotation"), (["--zoom", "-1"], "--zoom"), (["--brightness", "1.5"], "--brightness"),
    (["--brightness", "abc"], "--brightness"), (["--channel-shift", "nan"], "--channel-shift"),
    (["--out", "grid.gif"], "--out"),
])
def test_augment_options_are_checked_the_same_way(photos, tmp_path, args, names):
    result = CliRunner().invoke(main, ["augment", str(photos / "a" / "0.png"), "--out", str(tmp_path / "g.png"), *args])
    assert names in one_error_line(result)


def test_one_mapping_from_flags_to_the_generator(tmp_path):
    from tlkit.apps import finetune
    from tlkit.apps.iterators import augmentation_arguments
    from tlkit.augment.options import generator_arguments, parse_brightness

    assert parse_brightness("0.2") == pytest.approx((0.8, 1.2)) and parse_brightness("0.5,1.5") == (0.5, 1.5)
    assert parse_brightness([0.9, 1.1]) == (0.9, 1.1) and parse_brightness(None) is None
    config = finetune.FinetuneConfig(str(tmp_path), rotation=10, shift=0.1, zoom=0.2, shear=5, flip="both",
                                     brightness=(0.8, 1.2), fill_mode="reflect")
    want = {"rotation_range": 10.0, "width_shift_range": 0.1, "height_shift_range": 0.1, "zoom_range": 0.2,
            "shear_range": 5.0, "fill_mode": "reflect", "horizontal_flip": True, "vertical_flip": True,
            "brightness_range": [0.8, 1.2], "channel_shift_range": 0.0}
    assert augmentation_arguments(config) == want
    assert generator_arguments(10, 0.1, 0.2, 5, "both", "0.8,1.2", "reflect") == want
    for bad in (dict(rotation=math.nan), dict(zoom=-0.5), dict(flip="sideways"), dict(brightness="2")):
        with pytest.raises(ValueError):
            generator_arguments(**bad)


def test_python_api_checks_options_the_same_way(photos, tmp_path):
    import tlkit

    for options, names in ((dict(lr=float("nan")), "--lr"), (dict(fine_tune_layers=2), "--fine-tune-epochs"),
                           (dict(brightness="abc"), "--brightness"), (dict(weights=str(tmp_path / "x.h5")),
                                                                      "file not found")):
        with pytest.raises((ValueError, FileNotFoundError), match=names):
            tlkit.finetune(photos, out=tmp_path / "run", base="squeezenet", verbose=0,
                           **{"weights": "none", **options})
        assert not (tmp_path / "run").exists()
    with pytest.raises(TypeError, match="unknown option"):
        tlkit.finetune(photos, out=tmp_path / "run", learning_rate=0.1)


def test_a_broken_tlkit_import_is_raised_not_hidden(monkeypatch):
    import importlib

    saved = dict(main.commands)
    real = importlib.import_module

    def failing(name, missing):
        def imp(module, *a):
            if module == "tlkit.zoo.cli":
                raise ModuleNotFoundError(f"No module named '{missing}'", name=missing)
            return real(module, *a)
        return imp

    try:
        monkeypatch.setattr(importlib, "import_module", failing(None, "tlkit.zoo.weights.gone"))
        with pytest.raises(ModuleNotFoundError, match="tlkit.zoo.weights.gone"):
            cli._register_optional_commands()
        # A missing third-party package: the command stays, and says what to install.
        monkeypatch.setattr(importlib, "import_module", failing(None, "somepackage"))
        cli._register_optional_commands()
        result = CliRunner().invoke(main, ["convert", "a", "b"])
        assert "pip install somepackage" in one_error_line(result)
    finally:
        main.commands.clear()
        main.commands.update(saved)
