"""MobileNetV2's width multiplier read from the weight file: `tlkit convert` finds and records the alpha of a
torchvision state dict of any width, a file of another width gets an error naming its alpha, and the CLI's
base is built at the file's width."""
import numpy as np
import pytest
from click.testing import CliRunner

from tlkit.apps.models import build_base
from tlkit.cli import main
from tlkit.zoo import MobileNetV2
from tlkit.zoo.mobilenet_v2 import TORCHVISION_NAMES, weight_names, weight_shapes
from tlkit.zoo.weights import read_weight_file, write_safetensors

SUFFIXES = ("weight", "bias", "running_mean", "running_var")


def torchvision_state(alpha, rng, zoo_files):
    """A MobileNetV2 of width ``alpha`` without top, in torchvision's names and layouts."""
    layers = zoo_files.made_up_bn(weight_shapes(False, alpha=alpha, variant="torchvision"), rng)
    state = {}
    for name, arrays in layers.items():
        prefix = TORCHVISION_NAMES[name]
        if len(arrays) == 4:
            state.update({f"{prefix}.{s}": a for s, a in zip(SUFFIXES, arrays)})
        else:  # conv (kh, kw, in, out) -> (out, in, kh, kw); depthwise (kh, kw, c, 1) -> (c, 1, kh, kw)
            kernel = arrays[0]
            order = (2, 3, 0, 1) if kernel.shape[-1] == 1 and name.endswith("depthwise") else (3, 2, 0, 1)
            state[f"{prefix}.weight"] = np.ascontiguousarray(kernel.transpose(order))
    return state


def test_convert_finds_and_records_the_alpha_and_the_file_builds_that_width(tmp_path, rng, zoo_files):
    src = write_safetensors(tmp_path / "mobilenet_v2_050.safetensors", torchvision_state(0.5, rng, zoo_files))
    dst = tmp_path / "mobilenet_v2_050.h5"
    result = CliRunner().invoke(main, ["convert", str(src), str(dst)])
    assert result.exit_code == 0, result.output
    assert "torchvision variant, alpha 0.5)" in result.output and "MobileNetV2(alpha=0.5," in result.output
    assert read_weight_file(dst).metadata["alpha"] == 0.5
    x = rng.standard_normal((1, 40, 40, 3)).astype(np.float32)
    direct = MobileNetV2(alpha=0.5, include_top=False, weights=src, input_shape=(40, 40, 3))
    converted = MobileNetV2(alpha=0.5, include_top=False, weights=dst, input_shape=(40, 40, 3))
    assert converted.get_layer("Conv1").filters == 16 and converted.get_layer("block_16_project").filters == 160
    expected = direct.predict(x, verbose=0)
    assert np.abs(converted.predict(x, verbose=0) - expected).max() <= 1e-5 * np.abs(expected).max()
    # The CLI's base takes the file's width (its --base mobilenet_v2 has no alpha option).
    assert build_base("mobilenet_v2", dst, (40, 40, 3)).get_layer("Conv1").filters == 16
    assert build_base("mobilenet_v2", None, (40, 40, 3)).get_layer("Conv1").filters == 32


@pytest.mark.parametrize("layout", ["torchvision", "keras"])
def test_a_file_of_another_width_is_refused_naming_its_alpha(tmp_path, rng, zoo_files, layout):
    if layout == "torchvision":
        path = write_safetensors(tmp_path / "w.safetensors", torchvision_state(0.35, rng, zoo_files))
    else:
        keras = MobileNetV2(alpha=0.35, include_top=False, weights=None, input_shape=(32, 32, 3))
        path = zoo_files.write_keras2(tmp_path / "w.h5", keras,
                                      zoo_files.made_up_bn(weight_shapes(False, alpha=0.35), rng), weight_names)
    with pytest.raises(ValueError, match=r"holds MobileNetV2 weights of alpha 0.35, not 1.0: pass alpha=0.35"):
        MobileNetV2(include_top=False, weights=path)
    # A file no width fits keeps the shape-by-shape error.
    with pytest.raises(ValueError, match="does not fit MobileNetV2"):
        MobileNetV2(alpha=0.35, include_top=True, weights=path)
