import os
import pathlib
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("TLKIT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data():
    """Path to ../shared/data; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed_tlkit():
    """Every test starts from the same tlkit RNG state, whatever ran before it (reproducible weights)."""
    from tlkit.utils import random as tlkit_random

    tlkit_random.set_random_seed(1234)


@pytest.fixture(autouse=True)
def _sessions_whatever_the_load(monkeypatch):
    """Batch-1 forwards open worker sessions by tlkit's settings alone, not by how busy the test machine is
    or how fast they were (tlkit/utils/contention.py, session_trials.py; their own tests drive them with fake
    counters and clocks)."""
    from tlkit.utils import contention, session_trials

    monkeypatch.setattr(contention, "ENABLED", False)
    monkeypatch.setattr(session_trials, "ENABLED", False)


# --- memory bombs: a subprocess with a capped address space ------------------------------------


_LIMIT = """
import resource
def _vm_bytes():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
_cap = _vm_bytes() + {headroom_mb} * 2**20
resource.setrlimit(resource.RLIMIT_AS, (_cap, _cap))
"""


def run_bounded(setup, attack, headroom_mb=600, timeout=600):
    """Run ``setup`` (imports, file making), then cap the address space at what it uses plus
    ``headroom_mb`` (None: no cap) and run ``attack``. Returns the CompletedProcess (text output);
    a program still running after ``timeout`` seconds (a hang) raises subprocess.TimeoutExpired."""
    limit = _LIMIT.format(headroom_mb=headroom_mb) if headroom_mb is not None else ""
    program = textwrap.dedent(setup) + limit + textwrap.dedent(attack)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture
def bounded_python():
    """``bounded_python.run(setup, attack, headroom_mb=600, timeout=600)`` (see ``run_bounded``)."""
    return types.SimpleNamespace(run=run_bounded)
