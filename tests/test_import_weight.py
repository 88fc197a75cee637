"""`import tlkit` (and `tlkit.zoo`, building a base, one forward) leaves out what it does not use: h5py
is loaded only when an HDF5 file is read or written, dask only by tlkit.distributed, matplotlib only
for figures, and nothing is compiled at import. Each check runs a fresh interpreter: a module
imported by another test in this process would hide a regression."""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNUSED = ["h5py", "dask", "distributed", "matplotlib", "scipy.linalg", "pandas"]


def loaded_after(code):
    """The modules of UNUSED that a fresh interpreter has loaded after running ``code``."""
    script = f"import sys, json\n{code}\nprint(json.dumps([m for m in {UNUSED!r} if m in sys.modules]))"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_tlkit_loads_no_hdf5_dask_or_plotting():
    assert loaded_after("import tlkit") == []


def test_import_tlkit_compiles_no_kernel():
    # numba's own import may load scipy's top level (it checks its version); a compiled or
    # cache-loaded kernel would also load scipy.linalg (numba's BLAS bindings).
    assert loaded_after("import tlkit, tlkit.layers, tlkit.zoo") == []


def test_a_zoo_model_built_and_run_without_a_weight_file_needs_no_h5py():
    got = loaded_after("import numpy as np\nfrom tlkit.zoo import SqueezeNet\n"
                       "m = SqueezeNet(weights=None, input_shape=(64, 64, 3))\n"
                       "m.predict_on_batch(np.zeros((1, 64, 64, 3), np.float32))")
    assert "h5py" not in got and "dask" not in got and "matplotlib" not in got


def test_keras_utils_names_from_augment_load_on_first_use():
    # keras.utils.image_dataset_from_directory & co. port by changing the import: tlkit.utils lends them
    # from tlkit.augment, which `import tlkit.utils` alone must not load.
    code = ("import sys, tlkit.utils\n"
            "assert 'tlkit.augment' not in sys.modules\n"
            "from tlkit.utils import image_dataset_from_directory\n"
            "import tlkit.augment\n"
            "names = ['image_dataset_from_directory', 'load_img', 'img_to_array', 'array_to_img', 'save_img']\n"
            "assert all(getattr(tlkit.utils, n) is getattr(tlkit.augment, n) for n in names)\n"
            "assert image_dataset_from_directory is tlkit.augment.image_dataset_from_directory")
    assert loaded_after(code) == []
