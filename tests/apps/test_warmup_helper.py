"""The cold-start helper of `tlkit finetune` (apps/warmup.py): called last layer first, the base's layers
compile exactly the kernel specialisations its planned forward uses, so the main process then finds
each of them in numba's cache instead of compiling it again; and the helper process runs."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


SIGNATURES = """
import sys
from numba.core.registry import CPUDispatcher

def compiled():
    found = set()
    for name, module in list(sys.modules.items()):
        if name.startswith("tlkit.engine.kernels.") and module is not None:
            for obj in vars(module).values():
                if isinstance(obj, CPUDispatcher):
                    found |= {(name + "." + obj.py_func.__name__, str(sig)) for sig in obj.signatures}
    return found
"""


def test_the_reverse_calls_compile_what_the_planned_forward_then_uses():
    # A fresh interpreter: no kernel specialisation is loaded before the helper's calls.
    script = SIGNATURES + """
import numpy as np
from tlkit.apps import warmup
from tlkit.zoo import SqueezeNet
model = SqueezeNet(weights=None, input_shape=(64, 64, 3))
model.trainable = False
warmup.compile_from_the_end(model)
helper = compiled()
model.predict_on_batch(np.zeros((2, 64, 64, 3), np.float32))
print(sorted(k for k, _ in helper))
print(sorted(compiled() - helper))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=1200,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 0, done.stderr[-2000:]
    helper, left_for_the_forward = done.stdout.strip().splitlines()[-2:]
    assert left_for_the_forward == "[]"  # every specialisation the forward needs was compiled by the helper
    for kernel in ("pool_band_bias_relu", "add_bias_relu", "_output_tiles"):  # conv1 + pool1, 1x1, 3x3
        assert kernel in helper


def test_winograd_last_first_compiles_the_specialisations_a_forward_uses():
    # The helper's direct kernel calls must hit the forward's argument types, or the forward would
    # compile its own specialisations after all.
    script = SIGNATURES + """
import numpy as np
from tlkit.apps import warmup
from tlkit.engine.kernels import winograd
from tlkit.zoo import SqueezeNet, VGG16
winograd.compile_last_first()
helper = compiled()
squeezenet = SqueezeNet(weights=None, input_shape=(64, 64, 3))
squeezenet.predict_on_batch(np.zeros((2, 64, 64, 3), np.float32))
print(sorted(helper))
print(sorted(k for k in compiled() - helper if k[0].startswith("tlkit.engine.kernels.winograd.")))
print(warmup.uses_winograd(squeezenet), warmup.uses_winograd(VGG16(weights=None, input_shape=(32, 32, 3))),
      warmup.uses_winograd(SqueezeNet(weights=None, input_shape=(32, 32, 3))))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=1200,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 0, done.stderr[-2000:]
    helper, left_for_the_forward, uses = done.stdout.strip().splitlines()[-3:]
    assert left_for_the_forward == "[]"
    for kernel in ("_output_tiles", "_input_tiles", "filter_transform"):
        assert f"winograd.{kernel}'" in helper
    # 64x64 input: the fire modules' 3x3 expands run on 15x15 maps; at 32x32 on 7x7 and smaller (direct path).
    assert uses == "True True False"


def test_the_helper_process_compiles_a_base_and_an_optimizer(tmp_path):
    env = dict(os.environ, PYTHONPATH=REPO, NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "tlkit.apps.warmup", "squeezenet", "48", "adam"],
                          capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    names = {f.split("-")[0] for _, _, files in os.walk(tmp_path) for f in files if f.endswith(".nbi")}
    assert {"conv_pool_bands.pool_band_bias_relu", "im2col.add_bias_relu", "optim.adam"} <= names, names


def test_compiling_once_takes_one_lock_file_per_kernel_signature(tmp_path):
    # In a fresh interpreter with an empty cache, so the kernel really is compiled (or loaded) here.
    script = """
import os, sys
import numpy as np
from tlkit.apps import warmup
from tlkit.engine.kernels.im2col import add_bias_relu
y = np.ones((4, 3), np.float32)
with warmup.compiling_once(sys.argv[1]):
    add_bias_relu(y, np.full(3, -2.0, np.float32), True, True, 0)
print(sorted(os.listdir(sys.argv[1])), float(y.max()))
"""
    locks = tmp_path / "locks"
    locks.mkdir()
    env = dict(os.environ, PYTHONPATH=REPO, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-c", script, str(locks)], capture_output=True, text=True, env=env,
                          timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    files, y_max = done.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert float(y_max) == 0.0  # the kernel ran: relu(1 - 2)
    assert len(eval(files)) == 1  # the one signature compiled inside the block, under its lock


def test_a_cache_counts_only_where_numba_looks_for_it(tmp_path):
    # With NUMBA_CACHE_DIR set, kernels cached beside the modules (by earlier runs) do not count.
    script = """
import numpy as np
from tlkit.apps import warmup
from tlkit.engine.kernels.im2col import add_bias_relu
before = warmup.kernel_cache_present()
add_bias_relu(np.ones((4, 3), np.float32), np.zeros(3, np.float32), True, True, 0)
print(before, warmup.kernel_cache_present(), warmup.kernel_cache_present(warmup.BACKWARD_KERNELS))
"""
    env = dict(os.environ, PYTHONPATH=REPO, NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False", "True", "False"]
