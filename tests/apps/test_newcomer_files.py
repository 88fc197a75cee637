"""Files tlkit writes respect the umask (issue 13, item 10), and the one-hot/sparse loss hint (item 11)."""
import os
import stat

import numpy as np
import pytest

from tlkit.augment.image_io import atomic_save
from tlkit.utils.io import atomic_write_bytes, atomic_write_text


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_writes_get_the_umask_mode_not_0600(tmp_path, umask_022):
    from PIL import Image

    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_bytes(tmp_path / "b.bin", b"x")
    atomic_save(Image.new("RGB", (4, 4)), tmp_path / "c.png")
    for name in ("a.txt", "b.bin", "c.png"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644, name
    os.umask(0o077)
    atomic_write_text(tmp_path / "private.txt", "x")
    assert stat.S_IMODE(os.stat(tmp_path / "private.txt").st_mode) == 0o600


def test_one_hot_targets_with_sparse_loss_get_a_hint():
    from tlkit.engine.losses import SparseCategoricalCrossentropy

    y = np.eye(2, dtype=np.float32)[[0, 1, 1]]
    p = np.full((3, 2), 0.5, np.float32)
    with pytest.raises(ValueError, match="use categorical_crossentropy, or integer labels"):
        SparseCategoricalCrossentropy()(y, p)
