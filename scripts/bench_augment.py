"""Augmentation speed, side by side: tlkit vs Keras, albumentations and Pillow.

    python scripts/bench_augment.py            # print the table
    python scripts/bench_augment.py --write    # also update the Augmentation section of BENCHMARKS.md

Workload: 224x224x3 uint8 images, rotation 30 + width/height shift 0.2 + zoom
0.2 + horizontal flip, nearest-edge fill, float32 out; images per second on one
core (every one-thread figure pinned to the same core, ``--cpu``, with
os.sched_setaffinity) and on all cores. Then flow_from_directory end to end (decode + resize + augment +
batch) on ../shared/data/datasets/hymenoptera_data/train. The peers run in a
subprocess with /work/peers/bin/python (``--peer-python``) when it exists;
timings are noisy on a shared machine, so tlkit and the peers run in turn
(--rounds) and the table gives medians and the range of the per-round ratios.
"""
import argparse
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "datasets" / "hymenoptera_data" / "train"
AUG = dict(rotation_range=30, width_shift_range=0.2, height_shift_range=0.2, zoom_range=0.2, horizontal_flip=True)
SIZE = 224
BATCH = 32


def images(n):
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.uint8)


def stream_rate(iterator, batch, min_time=3.0):
    """Images per second drawn from a prefetching iterator over >= min_time of steady state: one
    warm-up epoch first, then a long run, so the batches its queue already held are a rounding
    error rather than the whole measurement."""
    for _ in range(len(iterator)):
        next(iterator)
    drawn, t = 0, time.perf_counter()
    while time.perf_counter() - t < min_time:
        next(iterator)
        drawn += batch
    return drawn / (time.perf_counter() - t)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class pinned:
    """Run the block on one core only (the one-thread figures of every library share it)."""

    def __init__(self, cpu):
        self.cpu = cpu

    def __enter__(self):
        self.saved = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {self.cpu})

    def __exit__(self, *exc):
        os.sched_setaffinity(0, self.saved)
        return False


def rate(fn, count, min_time=1.0):
    """Images per second: best of repeated timed runs (after one warm-up)."""
    fn()
    best, spent = float("inf"), 0.0
    while spent < min_time or best == float("inf"):
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        best, spent = min(best, dt), spent + dt
    return count / best


# ----- tlkit (main python) -----
def bench_tlkit(n, cores, cpu):
    import numba
    import numpy as np

    sys.path.insert(0, str(REPO))
    from tlkit.augment import ImageDataGenerator

    x = images(n)
    gen = ImageDataGenerator(**AUG)
    rs = np.random.RandomState(0)
    numba.set_num_threads(1)
    # Batches of BATCH as fit() draws them (a 64-image float32 batch would sit above glibc's mmap
    # threshold and pay fresh page faults on every call, which no user pays).

    def batches():
        for i in range(0, n, BATCH):
            gen.transform_batch(x[i:i + BATCH], rs)  # dropped at once, as a training loop would

    with pinned(cpu):
        one = rate(batches, n)
    numba.set_num_threads(cores)
    it = gen.flow(x, batch_size=BATCH, shuffle=True, seed=0, workers=cores)
    allc = stream_rate(it, BATCH)
    it.close()
    out = {"transform_1": one, "transform_all": allc}
    if DATA.is_dir():
        def directory():
            d = ImageDataGenerator(**AUG).flow_from_directory(DATA, target_size=(SIZE, SIZE), batch_size=32,
                                                              seed=0, workers=cores)
            for _ in range(len(d)):
                next(d)
            d.close()
            return d.samples

        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):
            count = directory()
            out["directory"] = rate(directory, count, min_time=0.0)
    return out


# ----- peers (run inside /work/peers/bin/python) -----
def bench_peers(n, cores, cpu):
    import numpy as np

    x = images(n)
    out = {}
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        from keras.src.legacy.preprocessing.image import ImageDataGenerator

        gen = ImageDataGenerator(**AUG)
        xf = x[:16].astype(np.float32)
        with pinned(cpu):
            out["keras_1"] = rate(lambda: [gen.random_transform(im) for im in xf], len(xf))
        if DATA.is_dir():
            import contextlib
            import io

            def directory():
                d = ImageDataGenerator(**AUG).flow_from_directory(str(DATA), target_size=(SIZE, SIZE),
                                                                  batch_size=32, seed=0)
                for _ in range(len(d)):
                    next(d)
                return d.samples

            with contextlib.redirect_stdout(io.StringIO()):
                count = directory()
                out["keras_directory"] = rate(directory, count, min_time=0.0)
    except ImportError:
        pass
    try:
        import albumentations as A
        import cv2

        # BORDER_REPLICATE is Keras's default fill_mode 'nearest', which tlkit runs too: the same work.
        t = A.Compose([A.Affine(rotate=(-30, 30), translate_percent=(-0.2, 0.2), scale=(0.8, 1.2),
                                border_mode=cv2.BORDER_REPLICATE, p=1.0),
                       A.HorizontalFlip(p=0.5)])

        def run():  # uint8 in, float32 out, as tlkit's generator gives
            for im in x:
                t(image=im)["image"].astype(np.float32)

        cv2.setNumThreads(1)
        with pinned(cpu):
            out["albumentations_1"] = rate(run, n)
        # All cores as a data loader would use them: one Python thread per core, each running
        # single-threaded OpenCV (which releases the GIL), over its share of the images.
        from concurrent.futures import ThreadPoolExecutor

        def one(im):
            return t(image=im)["image"].astype(np.float32)

        with ThreadPoolExecutor(cores) as pool:
            out["albumentations_all"] = rate(lambda: list(pool.map(one, x)), n)
    except ImportError:
        pass
    try:
        import math

        from PIL import Image

        rng = np.random.default_rng(0)

        def run():
            for im in x:
                t = math.radians(rng.uniform(-30, 30))
                z = rng.uniform(0.8, 1.2)
                c, s = math.cos(t) * z, math.sin(t) * z
                cx = cy = SIZE / 2
                dx, dy = rng.uniform(-0.2, 0.2, 2) * SIZE
                m = (c, -s, cx - c * cx + s * cy + dx, s, c, cy - s * cx - c * cy + dy)
                img = Image.fromarray(im).transform((SIZE, SIZE), Image.Transform.AFFINE, m,
                                                    Image.Resampling.BILINEAR)
                if rng.random() < 0.5:
                    img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                np.asarray(img, dtype=np.float32)

        with pinned(cpu):
            out["pillow_1"] = rate(run, n)
    except ImportError:
        pass
    return out


def table(rounds, cores, command, cpu, load):
    """Medians over the rounds; ratios are of the medians, with the range of per-round ratios."""
    r = {k: statistics.median(x[k] for x in rounds if k in x) for k in set().union(*rounds)}

    def cell(key):
        return f"{r[key]:,.0f}" if key in r else "n/a"

    def ratio(a, b):
        if a not in r or b not in r:
            return "n/a"
        each = sorted(x[a] / x[b] for x in rounds if a in x and b in x)
        spread = f" ({each[0]:.1f}-{each[-1]:.1f})" if len(each) > 1 else ""
        return f"{r[a] / r[b]:.1f}x{spread}"

    lines = [
        f"Command: `{command}` ({cpu_model()}, {cores} cores, Python {platform.python_version()}; load average "
        f"{load[0]:.1f} before, {load[1]:.1f} after). Images per second, higher is better; ratios are tlkit / "
        f"peer from the same round. One-thread figures: every library pinned to core {cpu}.",
        "",
        f"Random affine (rotation 30, shifts 0.2, zoom 0.2, horizontal flip), {SIZE}x{SIZE}x3 uint8 in, float32 out:",
        "",
        "| implementation | 1 thread | all cores | tlkit 1 thread vs it |",
        "|---|---:|---:|---:|",
        f"| tlkit ImageDataGenerator (fused numba pass) | {cell('transform_1')} | {cell('transform_all')} | 1.0x |",
        f"| Keras ImageDataGenerator.random_transform (scipy) | {cell('keras_1')} | n/a | "
        f"{ratio('transform_1', 'keras_1')} |",
        f"| albumentations Affine + HorizontalFlip (OpenCV) | {cell('albumentations_1')} | "
        f"{cell('albumentations_all')} | {ratio('transform_1', 'albumentations_1')} |",
        f"| Pillow Image.transform(AFFINE, BILINEAR) | {cell('pillow_1')} | n/a | "
        f"{ratio('transform_1', 'pillow_1')} |",
        "",
        "All cores: tlkit = `flow(...)` iterator with one worker thread per core (the streaming path), "
        "albumentations = one Python thread per core over the images, OpenCV single-threaded in each. "
        "tlkit, Keras and albumentations fill with the nearest edge pixel (Keras's default); Pillow has "
        "no such mode and fills black.",
        "",
        "flow_from_directory end to end (decode + resize + augment + batch of 32), hymenoptera_data/train:",
        "",
        "| implementation | images/s |",
        "|---|---:|",
        f"| tlkit (workers = {cores}) | {cell('directory')} |",
        f"| Keras | {cell('keras_directory')} |",
        f"| ratio | {ratio('directory', 'keras_directory')} |",
    ]
    return "\n".join(lines)


def write_section(text):
    path = REPO / "BENCHMARKS.md"
    body = path.read_text() if path.exists() else "# Benchmarks\n"
    section = "## Augmentation\n\n" + text + "\n"
    start = body.find("## Augmentation")
    if start < 0:
        body = body.rstrip("\n") + "\n\n" + section
    else:
        end = body.find("\n## ", start + 1)
        body = body[:start] + section + ("" if end < 0 else body[end:])
    tmp = path.with_name(".BENCHMARKS.md.tmp")
    tmp.write_text(body)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--peer-python", default="/work/peers/bin/python")
    ap.add_argument("--rounds", type=int, default=3, help="tlkit and peers measured in turn this many times")
    ap.add_argument("--cpu", type=int, default=0, help="the core every one-thread measurement is pinned to")
    ap.add_argument("--write", action="store_true", help="update the Augmentation section of BENCHMARKS.md")
    ap.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer:
        print(json.dumps(bench_peers(args.images, args.cores, args.cpu)))
        return
    print(f"CPU: {cpu_model()}", flush=True)
    load_before = os.getloadavg()[0]
    rounds = []
    for _ in range(args.rounds):  # tlkit and the peers in turn, so a slow spell hits both
        results = bench_tlkit(args.images, args.cores, args.cpu)
        if os.path.exists(args.peer_python):
            proc = subprocess.run([args.peer_python, __file__, "--peer", "--images", str(args.images),
                                   "--cores", str(args.cores), "--cpu", str(args.cpu)], capture_output=True,
                                  text=True)
            if proc.returncode == 0:
                results.update(json.loads(proc.stdout.strip().splitlines()[-1]))
            else:
                print("peer run failed:\n" + proc.stderr[-3000:], file=sys.stderr)
        rounds.append(results)
        print(f"round {len(rounds)}: " + ", ".join(f"{k} {results[k]:,.0f}" for k in sorted(results)), flush=True)
    command = " ".join(["python scripts/bench_augment.py"] + sys.argv[1:])
    text = table(rounds, args.cores, command, args.cpu, (load_before, os.getloadavg()[0]))
    print(text)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
