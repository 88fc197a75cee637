"""Keras 3 as an optional test oracle: a script run in the peers' Python (TLKIT_PEERS_PYTHON, default
/work/peers/bin/python), in a subprocess; the calling test is skipped when that Python or Keras is absent."""
import os
import subprocess

import pytest

PEERS_PYTHON = os.environ.get("TLKIT_PEERS_PYTHON", "/work/peers/bin/python")


def run_keras(script, folder):
    """Run ``script`` (Python source) with ``folder`` as its argv[1]; it reads and writes its files there."""
    if not os.path.exists(PEERS_PYTHON):
        pytest.skip(f"Keras's Python ({PEERS_PYTHON}) is absent")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    run = subprocess.run([PEERS_PYTHON, "-c", script, str(folder)], capture_output=True, text=True, env=env,
                         timeout=600)
    if run.returncode != 0 and "No module named" in run.stderr:
        pytest.skip("Keras is not installed in the peers' Python")
    assert run.returncode == 0, run.stderr[-3000:]
