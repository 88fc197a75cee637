"""Cold start: what the first `tlkit finetune` pays in numba compilation, and what it compiles.

    python scripts/bench_cold_start.py                 # SqueezeNet, random weights, 8 images per class
    python scripts/bench_cold_start.py --base vgg16 --per-class 4

Runs `tlkit finetune DIR --base squeezenet --weights none --epochs 1` on a small folder copied from
--data (default: ../shared/data/datasets/hymenoptera_data/train), twice: with NUMBA_CACHE_DIR an
empty temporary folder (every kernel compiles), then again on that now-warm cache. The difference is
the compile time. Every compiled specialisation leaves one .nbc file in the cache: they are counted
per kernel, and kernels with more than one specialisation (one per distinct argument types) listed.
"""
import argparse
import collections
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import machine  # noqa: E402


def small_folder(src, dst, per_class):
    for cls in sorted(p for p in pathlib.Path(src).iterdir() if p.is_dir()):
        (dst / cls.name).mkdir(parents=True)
        for img in sorted(cls.iterdir())[:per_class]:
            shutil.copy(img, dst / cls.name / img.name)


def finetune(data, out, cache, base, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(REPO), NUMBA_CACHE_DIR=str(cache), **(env_extra or {}))
    cmd = [sys.executable, "-m", "tlkit.cli", "finetune", str(data), "--base", base, "--weights", "none",
           "--epochs", "1", "--batch-size", "8", "--out", str(out), "--verbose", "0"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"finetune failed:\n{done.stderr[-2000:]}")
    return seconds


def specialisations(cache):
    """{module.function: number of compiled specialisations} from the cache's .nbc files."""
    counts = collections.Counter()
    for f in pathlib.Path(cache).rglob("*.nbc"):
        m = re.match(r"(.+?)-\d+\.py\d+\.\d+\.nbc$", f.name)
        counts[m.group(1) if m else f.name] += 1
    return counts


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "datasets" / "hymenoptera_data" / "train"))
    p.add_argument("--base", choices=("squeezenet", "vgg16"), default="squeezenet")
    p.add_argument("--per-class", type=int, default=8)
    p.add_argument("--write", action="store_true", help="also rewrite BENCHMARKS.md's '## Cold start' section")
    args = p.parse_args()
    load_before = machine.loadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        small_folder(args.data, tmp / "data", args.per_class)
        cache = tmp / "numba-cache"
        cache.mkdir()
        cold = finetune(tmp / "data", tmp / "run1", cache, args.base)
        counts = specialisations(cache)
        warm = finetune(tmp / "data", tmp / "run2", cache, args.base)
    multi = {k: v for k, v in counts.items() if v > 1}
    text = (f"{machine.header(load_before=load_before)}\n\n"
            f"| first `tlkit finetune --base {args.base} --weights none --epochs 1` ({args.per_class} images per class) "
            f"| seconds |\n|---|---:|\n| empty numba cache | {cold:.1f} |\n| warm cache | {warm:.1f} |\n"
            f"| compile time (difference) | {cold - warm:.1f} |\n\n"
            f"Compiled: {sum(counts.values())} specialisations of {len(counts)} kernels; with more than one: "
            + (", ".join(f"{k} x{v}" for k, v in sorted(multi.items())) or "none") + "\n")
    machine.publish("## Cold start", text, args.write)

if __name__ == "__main__":
    main()
