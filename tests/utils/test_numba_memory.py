"""tlkit.utils.numba_memory: LLVM's code pages handed back after numba compiles or loads a kernel, and
scipy's BLAS bindings kept out of numba's import-time check, while every jitted function still runs
and computes right (np.dot inside a jitted function included). Each check runs a fresh interpreter:
the settings act once per process, at `import tlkit`."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAS_SCIPY = importlib.util.find_spec("scipy") is not None

SCRIPT = r"""
import json, sys
import numpy as np
import tlkit
from numba import njit
from numba.core import event
from tlkit.utils import numba_memory

def code_kb():
    ranges = numba_memory.llvm_code_ranges()
    kb, inside = 0, False
    for line in open("/proc/self/smaps"):
        if line[0] in "0123456789abcdef" and "-" in line.split()[0]:
            start = int(line.split()[0].split("-")[0], 16)
            inside = any(start == a for a, _ in ranges)
        elif inside and line.startswith("Rss:"):
            kb += int(line.split()[1])
    return kb, len(ranges)

@njit
def axpy(a, x, y):
    return a * x + y

if "--scipy-first" in sys.argv:
    import scipy.linalg  # noqa: F401  (the user's own, before tlkit's first kernel)
x = np.arange(5.0)
got = {"axpy": axpy(2.0, x, x).tolist()}
got["code_kb"], got["code_mappings"] = code_kb()
got["scipy_linalg_loaded"] = "scipy.linalg" in sys.modules
from numba.np import arraymath
got["numba_blas_check"] = arraymath._HAVE_BLAS
listeners = sum(len(event._registered[k]) for k in ("numba:compile", "numba:compiler_lock", "numba:llvm_lock"))
numba_memory.install()
got["listeners_added_by_second_install"] = sum(
    len(event._registered[k]) for k in ("numba:compile", "numba:compiler_lock", "numba:llvm_lock")) - listeners
got["installed"] = numba_memory._state["installed"]
if "--dot" in sys.argv:
    @njit
    def product(a, b):
        return np.dot(a, b)
    a = np.arange(6.0).reshape(2, 3)
    b = np.arange(12.0).reshape(3, 4)
    got["dot_error"] = float(np.abs(product(a, b) - a @ b).max())
    x = np.arange(7.0)
    got["axpy_after"] = axpy(3.0, x, x).tolist()
print(json.dumps(got))
"""


def run(setting, *args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TLKIT_NUMBA_MEMORY", None)
    if setting is not None:
        env["TLKIT_NUMBA_MEMORY"] = setting
    done = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, env=env,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise on /proc/self/smaps's mappings: Linux only")
def test_llvm_code_pages_handed_back_and_scipy_kept_out_while_kernels_still_compute():
    on = run(None, "--dot")
    keep = run("keep")
    assert on["axpy"] == keep["axpy"] == [0.0, 3.0, 6.0, 9.0, 12.0]
    assert on["installed"] and not keep["installed"]
    assert on["listeners_added_by_second_install"] == 0
    assert on["code_mappings"] >= 1  # libllvmlite's code found
    # After a compilation, LLVM's code is no longer resident (it is with the setting off).
    assert on["code_kb"] < keep["code_kb"] / 4, (on["code_kb"], keep["code_kb"])
    # A compile after the pages were handed back runs LLVM again from the page cache, and computes right.
    assert on["axpy_after"] == [3.0 * i + i for i in range(7)]
    if HAS_SCIPY:
        assert not on["scipy_linalg_loaded"] and not on["numba_blas_check"]
        assert keep["scipy_linalg_loaded"] and keep["numba_blas_check"]
        assert on["dot_error"] < 1e-12  # np.dot in a jitted function imports scipy's BLAS as usual


@pytest.mark.skipif(not HAS_SCIPY, reason="scipy not installed")
def test_scipy_loaded_before_the_first_kernel_keeps_numbas_blas_check():
    got = run(None, "--scipy-first")
    assert got["installed"] and got["numba_blas_check"]
    assert got["axpy"] == [0.0, 3.0, 6.0, 9.0, 12.0]
