"""image_dataset_from_directory end to end (list, decode, resize, batch): tlkit against Keras 3 (issue 21).

    python scripts/bench_image_dataset.py                    # hymenoptera train, 5 interleaved rounds
    python scripts/bench_image_dataset.py --folder PATH --rounds 7

Each round starts one fresh tlkit process and one fresh Keras process (the peers' venv), one after the
other, so load from elsewhere hits both alike. Each process builds the dataset with the same arguments
(224x224 bilinear, batch 32, shuffled with seed 1, int labels) and reads one whole epoch, converting
every batch to a numpy array (what `fit` consumes); the time covers building the dataset (the folder
listing) and the epoch, not the interpreter's start or the framework's import. Both use their
defaults for parallelism (tlkit's decode threads, tf.data's AUTOTUNE). The report gives each side's
median seconds per epoch and images/s, the ratio, the CPU and the load.

A third process per round times Pillow decoding every file alone on one thread per core (no resize,
no batches, no labels): the ceiling of any pipeline that decodes with Pillow, reported beside Keras.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "datasets", "hymenoptera_data", "train")
ARGS = dict(image_size=(224, 224), batch_size=32, shuffle=True, seed=1, label_mode="int")


def worker(framework, folder):
    if framework == "floor":
        return decode_floor(folder)
    if framework == "tlkit":
        sys.path.insert(0, ROOT)
        import numpy as np
        from tlkit.utils import image_dataset_from_directory
        to_numpy = np.asarray
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras
        image_dataset_from_directory = keras.utils.image_dataset_from_directory

        def to_numpy(t):
            return t.numpy()
    t = time.perf_counter()
    ds = image_dataset_from_directory(folder, verbose=False, **ARGS)
    images, checksum = 0, 0.0
    for x, y in ds:
        x = to_numpy(x)
        images += x.shape[0]
        checksum += float(x[:, ::56, ::56].mean())
    return {"seconds": time.perf_counter() - t, "images": images, "checksum": checksum}


def decode_floor(folder):
    """Seconds to decode every picture with Pillow alone, one thread per core (Pillow releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image
    paths = [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files
             if f.lower().endswith((".jpg", ".jpeg", ".png", ".bmp", ".gif"))]

    def decode(path):
        with Image.open(path) as img:
            img.convert("RGB").load()

    t = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        list(pool.map(decode, paths))
    return {"seconds": time.perf_counter() - t, "images": len(paths), "checksum": 0.0}


def measure(framework, folder, peer_python):
    python = peer_python if framework == "keras" else sys.executable
    done = subprocess.run([python, os.path.abspath(__file__), "--worker", framework, "--folder", folder],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{framework} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default=os.path.normpath(DATA))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--peer-python", default="/work/peers/bin/python")
    parser.add_argument("--worker", choices=["tlkit", "keras", "floor"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.folder)))
        return
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    from machine import header, loadavg  # the scripts' shared machine description
    before = loadavg()
    times = {"tlkit": [], "keras": [], "floor": []}
    counts = {}
    for r in range(args.rounds):
        order = ("tlkit", "keras", "floor") if r % 2 == 0 else ("keras", "tlkit", "floor")
        for framework in order:
            got = measure(framework, args.folder, args.peer_python)
            times[framework].append(got["seconds"])
            counts[framework] = got["images"]
            print(f"round {r + 1}/{args.rounds} {framework}: {got['seconds']:.2f} s, {got['images']} images",
                  flush=True)
    n = counts["tlkit"]
    a, b = statistics.median(times["tlkit"]), statistics.median(times["keras"])
    print(f"image_dataset_from_directory, {n} images of {args.folder}: tlkit {a:.2f} s ({n / a:.0f} img/s), "
          f"Keras {b:.2f} s ({n / b:.0f} img/s); tlkit is {b / a:.2f}x Keras (median of {args.rounds} rounds)")
    floor = statistics.median(times["floor"])
    print(f"Pillow decoding alone ({os.cpu_count()} threads, no resize or batches): {floor:.2f} s "
          f"({counts['floor'] / floor:.0f} img/s) = {(counts['floor'] / floor) / (n / b):.2f}x Keras: the ceiling of a Pillow-decoding pipeline")
    print(header(load_before=before))


if __name__ == "__main__":
    main()
