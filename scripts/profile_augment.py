"""Where ImageDataGenerator's batch time goes, and the affine kernel against an older version of itself.

    python scripts/profile_augment.py                 # split: sampling + matrices, kernel, output allocation
    python scripts/profile_augment.py --old bc4684f   # also A/B the kernel against kernels.py at that commit

Workload as in bench_augment.py (224x224x3 uint8, rotation 30, shifts 0.2,
zoom 0.2, horizontal flip, one numba thread). The machine is shared, so
every variant runs interleaved in one process and the table shows medians
and minima of the repeats; judge by their ratios.
"""
import argparse
import importlib.util
import pathlib
import subprocess
import sys
import tempfile
import time

import numba
import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tlkit.augment import ImageDataGenerator, affine, kernels  # noqa: E402

AUG = dict(rotation_range=30, width_shift_range=0.2, height_shift_range=0.2, zoom_range=0.2, horizontal_flip=True)


def old_kernels(rev, folder):
    """kernels.py as it was at git revision ``rev``, imported as its own module (read-only git)."""
    text = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:tlkit/augment/kernels.py"], check=True,
                          capture_output=True, text=True).stdout
    path = pathlib.Path(folder) / "old_kernels.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("old_kernels", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--old", help="git revision whose kernels.py to A/B against")
    args = ap.parse_args()
    numba.set_num_threads(1)
    n = args.images
    x = np.random.default_rng(0).integers(0, 256, (n, 224, 224, 3)).astype(np.uint8)
    gen = ImageDataGenerator(**AUG)
    rs = np.random.RandomState(0)

    def sample_and_matrices():
        p = gen._sample_batch(rs, x.shape[1:], n)
        return affine.transform_matrices(224, 224, p["theta"], p["tx"], p["ty"], p["shear"], p["zx"], p["zy"],
                                         p["flip_horizontal"], p["flip_vertical"])

    mats = sample_and_matrices()
    out = np.empty(x.shape, np.float32)
    one, zero = np.ones(n, np.float32), np.zeros(n, np.float32)
    variants = {
        "transform_batch (all of it)": lambda: gen.transform_batch(x, rs),
        "sampling + matrices": sample_and_matrices,
        "kernel, nearest fill": lambda: kernels.warp_affine_serial(x, mats, out, 1, 1, 0.0, one, zero),
        "kernel, constant fill": lambda: kernels.warp_affine_serial(x, mats, out, 1, 0, 0.0, one, zero),
        "fresh float32 output (alloc + first touch)": lambda: np.empty(x.shape, np.float32).fill(0),
    }
    with tempfile.TemporaryDirectory() as folder:
        if args.old:
            old = old_kernels(args.old, folder)
            variants[f"old kernel {args.old}, nearest"] = lambda: old.warp_affine_serial(x, mats, out, 1, 1, 0.0, one,
                                                                                         zero)
            variants[f"old kernel {args.old}, constant"] = lambda: old.warp_affine_serial(x, mats, out, 1, 0, 0.0,
                                                                                          one, zero)
        times = {name: [] for name in variants}
        for fn in variants.values():
            fn()  # compile / warm up
        for _ in range(args.repeats):
            for name, fn in variants.items():
                t = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t) / n * 1e6)
    print(f"{n} images of 224x224x3, 1 numba thread; microseconds per image")
    print(f"{'':46s} {'median':>8s} {'min':>8s}")
    for name, ts in times.items():
        print(f"{name:46s} {np.median(ts):8.0f} {np.min(ts):8.0f}")


if __name__ == "__main__":
    main()
