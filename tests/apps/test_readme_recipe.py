"""The README's "Fine-tuning in code" recipe, run as printed on the real ants/bees photos (issue 13, item 9):
it must reach the accuracy of `tlkit finetune` (about 0.93; `test_real_squeezenet_learns_ants_and_bees`
asks 0.85 of the command), not the 0.63 the earlier recipe got."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"


def documented_recipe():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Fine-tuning in code"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_recipe_names_its_two_paths_once():
    code = documented_recipe()
    assert len(re.findall(r'^PHOTOS = ".*"', code, re.M)) == 1 and len(re.findall(r'^WEIGHTS = ".*"', code, re.M)) == 1
    assert "loss, accuracy = model.evaluate(val)" in code


def test_readme_recipe_reaches_the_command_line_accuracy(shared_data):
    photos = shared_data / "datasets" / "hymenoptera_data"
    weights = shared_data / "weights" / "squeezenet_v1.1_weights_tf_dim_ordering_tf_kernels_notop.h5"
    code = documented_recipe()
    # Only the two paths change; every other line runs as printed.
    code = re.sub(r'^PHOTOS = ".*"', f"PHOTOS = {str(photos)!r}", code, flags=re.M)
    code = re.sub(r'^WEIGHTS = ".*"', f"WEIGHTS = {str(weights)!r}", code, flags=re.M)
    namespace = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["accuracy"] >= 0.85, namespace["accuracy"]
