import os
import pathlib
import subprocess

import numpy as np
import pytest


@pytest.fixture
def images():
    """Ten 12x12 RGB uint8 pictures of noise."""
    return np.random.default_rng(0).integers(0, 256, (10, 12, 12, 3)).astype(np.uint8)



@pytest.fixture
def count_warps(monkeypatch):
    """The output sizes of the warps the preprocessing layers' fusion runs, in order."""
    from tlkit.augment.layers import fusion

    calls = []
    real = fusion._warp

    def counting(images, step, parallel=True):
        calls.append(step.size)
        return real(images, step, parallel)

    monkeypatch.setattr(fusion, "_warp", counting)
    return calls


PEERS_PYTHON = "/work/peers/bin/python"


@pytest.fixture
def keras_oracle():
    """``keras_oracle(script, cases, out)``: run tests/augment/<script> with the peers' Python (Keras)
    on a cases file and return its results (an .npz); the test skips where the peers are absent."""
    if not os.path.exists(PEERS_PYTHON):
        pytest.skip("the peers venv with Keras is not installed")

    def run(script, cases, out, timeout=600):
        oracle = pathlib.Path(__file__).with_name(script)
        proc = subprocess.run([PEERS_PYTHON, str(oracle), str(cases), str(out)], capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            pytest.skip(f"Keras oracle could not run: {proc.stderr[-500:]}")
        return np.load(out)

    return run
