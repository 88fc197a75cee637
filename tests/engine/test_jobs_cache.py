"""The job table's cfuncs come from numba's cache in every process after the first (tlkit/utils/job_table.py,
``kernel_key`` / ``call_kernel``): a second process runs each kind of job (computing its chunk right) without
compiling any of them; the kernels' keys are the same in every process and change with their closure cells
and their package's sources."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO
from tests.engine.test_jobs import run_here
from tlkit.engine.kernels import depthwise_rows, gemm_blocks, jobs, pool
from tlkit.utils import job_table

# Runs one job of each kind (their tests in test_jobs.py: the chunk against a float64 numpy reference),
# then prints each job cfunc's closure (the kernels' keys) and whether it was loaded from the cache.
PROBE = """
import json
import numpy as np
import pytest
import test_jobs as t
from tlkit.engine.kernels import jobs
rng = np.random.default_rng(0)
t.test_a_gemm_job_computes_its_rows_or_panels_only(rng, False, True)
t.test_a_winograd_job_of_tile_rows_computes_those_rows_only(rng, True)
t.test_a_bands_job_computes_its_pooled_rows_only(rng)
t.test_a_max_pool_job_computes_its_rows_only(rng)
with pytest.MonkeyPatch.context() as mp:
    t.test_an_inverted_residual_job_computes_its_bands_only(rng, mp, 1, 3, 8, 64, 8, True)
    t.test_an_inverted_residual_job_computes_its_bands_only(rng, mp, 2, 3, 8, 40, 12, False)
print(json.dumps(sorted([f._pyfunc.__qualname__, [c.cell_contents for c in f._pyfunc.__closure__], f.cache_hits]
                        for f in jobs._made.values())))
"""


def run_probe():
    paths = [str(REPO), str(REPO / "tests" / "engine"), os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_every_kind_of_job_from_the_cache():
    """The first process compiles the jobs (or loads them, when this tree's cache already has them); the
    second loads every one: numba keyed none of them on anything of the process that compiled it."""
    first = run_probe()
    second = run_probe()
    kinds = {name.split(".")[0] for name, _, _ in second}
    assert kinds == {"_gemm_job", "_winograd_job", "_bands_job", "_pool_job", "_mbconv_job"}
    assert [cells for _, cells, _ in second] == [cells for _, cells, _ in first]
    assert [name for name, _, hits in second if hits != 1] == []


def test_a_kernel_key_names_a_kernel_the_same_way_each_time_and_finds_it():
    run = gemm_blocks._driver(6, 4, 16)
    key = job_table.kernel_key(run)
    assert key == job_table.kernel_key(gemm_blocks._driver(6, 4, 16))
    assert key.startswith("tlkit.engine.kernels.gemm_blocks:_new_driver.<locals>.run(")
    assert key != job_table.kernel_key(gemm_blocks._driver(8, 3, 16))  # another block shape, another key
    assert job_table._kernels[key] is run
    plain = job_table.kernel_key(pool.max_pool_rows_kernel)
    assert plain.split("@")[0] == "tlkit.engine.kernels.pool:max_pool_rows_kernel"
    assert plain.split("@")[1] == key.split("@")[1] == job_table.kernel_key(depthwise_rows._rows_wide).split("@")[1]


def test_a_kernel_closing_over_an_object_has_no_key():
    from numba import njit

    table = np.zeros(3)

    @njit
    def reads(i):
        return table[i]

    with pytest.raises(TypeError, match="no stable name"):
        job_table.kernel_key(reads)


def test_the_sources_stamp_changes_with_a_source_file(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    before = job_table._sources_stamp.__wrapped__(tmp_path)
    assert job_table._sources_stamp.__wrapped__(tmp_path) == before
    (tmp_path / "a.py").write_text("x = 22\n")
    assert job_table._sources_stamp.__wrapped__(tmp_path) != before


def test_a_job_calls_the_kernel_its_key_names(rng):
    """call_kernel in a cfunc runs the kernel the key names: two drivers' keys, two products' results."""
    x = rng.standard_normal((9, 5)).astype(np.float32)
    w = rng.standard_normal((5, 20)).astype(np.float32)
    for shape in ((6, 2), (12, 1)):
        packed = gemm_blocks.pack(w, None, None, shape)
        y = np.full((9, 20), np.nan, np.float32)
        poster = jobs.gemm_poster(gemm_blocks._driver(packed.mr, packed.nv, packed.w), x, packed, y, None,
                                  np.float32(-np.inf), np.float32(np.inf), False)
        table = np.zeros(64, np.int64)
        assert poster(table, 0, 9)
        run_here(table)
        np.testing.assert_allclose(y, x.astype(np.float64) @ w, rtol=1e-4, atol=1e-4)
