"""Coverage-guided fuzzing of everything that reads files from strangers (not part of CI).

    pip install atheris                                    # the fuzzer (libFuzzer for Python)
    python scripts/fuzz.py --target safetensors --seconds 300
    python scripts/fuzz.py --all --seconds 120 --write     # each target in turn; RELIABILITY.md table

Targets: safetensors, torch (the restricted unpickler, inside a torch.save zip), torch_legacy (the
same unpickler behind PyTorch's pre-1.6 flat layout: header records, storage keys, counts), keras_h5
(through h5py), model_h5 (tlkit.models.load_model: config JSON + weights), image (tlkit's image
loader), and two structure-aware targets whose input bytes choose the attack rather than being
the file: torch_views (many tensor views of one storage, any offsets, sizes and strides: the
reader must stay within 4x the storage bytes) and model_shapes (a model.h5 whose weight
datasets declare any shape, chunked or not, written or not: load_model must refuse a wrong or
unbacked shape before reading it). Each target starts from seed files written here, lets atheris mutate them, and
treats as a crash anything other than the clear error the reader is documented to raise
(WeightFileError / ModelFileError / the loader's error) - a MemoryError, a hang, a segfault, an
IndexError from deep inside, or a pickle that runs code (the marker file the torch payload
would create must never appear).

Each target runs in its own subprocess (`--worker`), so a segfault in a C library is counted,
not fatal, and the figures (executions, distinct coverage-increasing inputs, crashes) are
parsed from libFuzzer's output.
"""
import argparse
import io
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import zipfile

REPO = pathlib.Path(__file__).resolve().parents[1]
TARGETS = ("safetensors", "torch", "torch_legacy", "keras_h5", "model_h5", "image", "torch_views", "model_shapes")
MARKER = pathlib.Path(tempfile.gettempdir()) / "tlkit_fuzz_pwned"


# ---------------------------------------------------------------------------------------------
# seeds: small valid files of each kind

def seed_files(target, folder):
    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    if target == "safetensors":
        from tlkit.zoo.weights import write_safetensors

        write_safetensors(folder / "a.safetensors", {"w": rng.standard_normal((3, 4)).astype(np.float32),
                                                     "b": np.arange(5, dtype=np.int64)}, metadata={"k": "v"})
    elif target == "torch":
        valid = torch_zip({"w": [1.0, 2.0, 3.0, 4.0], "b": [[1.0], [2.0]]})
        if valid is not None:
            (folder / "a.pt").write_bytes(valid)
        (folder / "evil.pt").write_bytes(torch_zip_evil())
    elif target == "torch_legacy":
        valid = torch_zip({"w": [1.0, 2.0, 3.0, 4.0], "b": [[1.0], [2.0]]}, legacy=True)
        if valid is not None:
            (folder / "a.pth").write_bytes(valid)
        (folder / "evil.pth").write_bytes(torch_legacy_evil())
    elif target == "keras_h5":
        from tlkit.zoo.weights import write_keras_h5

        write_keras_h5(folder / "a.h5", [("conv/1", [("k:0", rng.standard_normal((3, 3, 2, 4)).astype(np.float32)),
                                                     ("b:0", np.zeros(4, np.float32))]), ("pool", [])])
    elif target == "model_h5":
        import tlkit
        from tlkit import layers as L

        model = tlkit.Sequential([tlkit.Input((4, 4, 2)), L.Conv2D(2, 3), L.Flatten(), L.Dense(2)])
        model.compile("adam", "mse")
        model.save(folder / "m.h5")
    elif target in ("torch_views", "model_shapes"):  # the bytes drive a FuzzedDataProvider
        for i in range(4):
            (folder / f"r{i}").write_bytes(rng.integers(0, 256, 64 * (i + 1), dtype=np.uint8).tobytes())
    elif target == "image":
        from PIL import Image

        img = Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8))
        img.save(folder / "a.jpg", quality=80)
        img.save(folder / "a.png")
        img.convert("P").save(folder / "p.gif")
        img.convert("CMYK").save(folder / "c.jpg")
        Image.fromarray(rng.integers(0, 65535, (8, 8), dtype=np.uint16)).save(folder / "i16.png")


def torch_zip(tensors, legacy=False):
    """A real torch.save file (zip, or legacy) when torch is importable (it only writes the seed), else None."""
    try:
        import torch
    except ImportError:
        return None
    buf = io.BytesIO()
    torch.save({k: torch.tensor(v) for k, v in tensors.items()}, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def _evil_pickle():
    """A pickle that would create MARKER through os.system if it were ever run."""
    return (b"\x80\x02cos\nsystem\nq\x00X" + len(f"touch {MARKER}").to_bytes(4, "little") +
            f"touch {MARKER}".encode() + b"q\x01\x85q\x02Rq\x03.")


def torch_legacy_evil():
    """PyTorch's legacy header records (magic number, protocol 1001, sys info), then the hostile pickle."""
    import pickle

    header = [pickle.dumps(v, protocol=2) for v in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})]
    return b"".join(header) + _evil_pickle() + pickle.dumps([], protocol=2)


def torch_zip_evil():
    """A torch-like zip whose pickle would create MARKER if it were ever run."""
    payload = _evil_pickle()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/version", "3\n")
    return out.getvalue()


def _pickle_int(value):
    raw = value.to_bytes(value.bit_length() // 8 + 1, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw  # LONG1: any size


def _pickle_text(text):
    raw = text.encode()
    return b"X" + len(raw).to_bytes(4, "little") + raw  # BINUNICODE


def torch_views_zip(numel, views):
    """A torch.save-like zip: one float32 storage of ``numel`` zeros (deflated, so the file stays
    small) and ``views`` = [(offset, size, stride)] tensors on it, pickled as torch does."""
    storage = (b"((" + _pickle_text("storage") + b"ctorch\nFloatStorage\n" + _pickle_text("0") + _pickle_text("cpu")
               + _pickle_int(numel) + b"tQ")[1:]  # MARK ... TUPLE BINPERSID
    body = b"\x80\x02}("
    for i, (offset, size, stride) in enumerate(views):
        body += (_pickle_text(f"t{i}") + b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + _pickle_int(offset)
                 + b"(" + b"".join(map(_pickle_int, size)) + b"t(" + b"".join(map(_pickle_int, stride)) + b"t"
                 + b"\x89ccollections\nOrderedDict\n)RtR")
    body += b"u."
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", body)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", bytes(4 * numel))
        z.writestr("archive/version", "3\n")
    return out.getvalue()


# ---------------------------------------------------------------------------------------------
# the fuzz targets (run inside the worker)

def make_target(target):
    import numpy as np

    from tlkit.engine.saving.hdf5 import ModelFileError
    from tlkit.zoo.weights import WeightFileError, read_weight_file

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tlkit_fuzz_"))
    path = tmp / "input"

    if target == "image":
        from tlkit.augment import image_io

        expected = (image_io.ImageLoadError,)

        def run(data):
            path.write_bytes(data)
            image_io.load_img(path, target_size=(16, 16))
    elif target == "model_h5":
        import tlkit

        expected = (ModelFileError, WeightFileError)

        def run(data):
            path.write_bytes(data)
            tlkit.models.load_model(path)
    elif target == "torch_views":
        import atheris

        from tlkit.zoo.weights.torch_pickle import SLACK_BYTES, VIEW_AMPLIFICATION

        expected = (WeightFileError,)

        def run(data):
            fdp = atheris.FuzzedDataProvider(data)
            numel = fdp.ConsumeIntInRange(1, 1 << 20)
            views = []
            for _ in range(fdp.ConsumeIntInRange(1, 3000)):
                ndim = fdp.ConsumeIntInRange(0, 3)
                views.append((fdp.ConsumeIntInRange(0, numel), [fdp.ConsumeIntInRange(0, numel) for _ in range(ndim)],
                              [fdp.ConsumeIntInRange(0, numel) for _ in range(ndim)]))
            path.write_bytes(torch_views_zip(numel, views))
            total = sum(a.nbytes for a in read_weight_file(path, format="torch").tensors.values())
            if total > VIEW_AMPLIFICATION * 4 * numel + SLACK_BYTES:
                raise RuntimeError(f"{total} tensor bytes read from a {4 * numel}-byte storage")
    elif target == "model_shapes":
        import atheris
        import h5py

        import tlkit
        from tlkit import layers as L

        expected = (ModelFileError,)
        base = tmp / "base.h5"
        model = tlkit.Sequential([tlkit.Input((4, 4, 2)), L.Conv2D(2, 3, name="conv"), L.Flatten(), L.Dense(2, name="d")])
        model.compile("adam", "mse")
        model.save(base)
        datasets = ["model_weights/conv/kernel", "model_weights/conv/bias", "model_weights/d/kernel",
                    "model_weights/d/bias"]

        def run(data):
            fdp = atheris.FuzzedDataProvider(data)
            path.write_bytes(base.read_bytes())
            with h5py.File(path, "r+") as f:
                for name in datasets:
                    if not fdp.ConsumeBool():
                        continue
                    shape = tuple(fdp.ConsumeIntInRange(0, 1 << fdp.ConsumeIntInRange(0, 31))
                                  for _ in range(fdp.ConsumeIntInRange(0, 4)))
                    chunked = bool(shape) and all(shape) and fdp.ConsumeBool()
                    group, leaf = name.rsplit("/", 1)
                    del f[group][leaf]
                    try:
                        ds = f[group].create_dataset(leaf, shape=shape, dtype="float32",
                                                     chunks=tuple(1 for _ in shape) if chunked else None,
                                                     compression="gzip" if chunked and fdp.ConsumeBool() else None)
                        size = int(np.prod(shape, dtype=np.int64)) if shape else 1
                        if fdp.ConsumeBool() and size <= 4096:
                            ds[...] = np.ones(shape, np.float32)
                    except (ValueError, OSError, MemoryError):  # HDF5 won't make it: not the reader's input
                        if leaf in f[group]:
                            del f[group][leaf]
                        f[group].create_dataset(leaf, data=np.zeros(3, np.float32))
            loaded = tlkit.models.load_model(path)
            for got, want in zip(loaded.get_weights(), model.get_weights()):
                if got.shape != want.shape:
                    raise RuntimeError(f"loaded a weight of shape {got.shape} where the model has {want.shape}")
    else:
        fmt = {"keras_h5": "keras_h5", "safetensors": "safetensors", "torch": "torch", "torch_legacy": "torch"}[target]
        expected = (WeightFileError,)

        def run(data):
            path.write_bytes(data)
            read_weight_file(path, format=fmt)

    def one_input(data):
        try:
            run(data)
        except expected:
            pass
        if MARKER.exists():
            raise RuntimeError("a pickle ran code: the marker file exists")

    return one_input


def worker(target, seconds, corpus):
    import atheris

    with atheris.instrument_imports():
        import tlkit.zoo.weights  # noqa: F401  (instrument the readers for coverage guidance)
        if target == "image":
            import tlkit.augment.image_io  # noqa: F401
        if target in ("model_h5", "model_shapes"):
            import tlkit.engine.saving.hdf5  # noqa: F401
    MARKER.unlink(missing_ok=True)
    fn = make_target(target)
    atheris.Setup([sys.argv[0], f"-max_total_time={seconds}", "-rss_limit_mb=4096", "-timeout=20",
                   "-print_final_stats=1",
                   f"-artifact_prefix={pathlib.Path(corpus).parent}/", str(corpus)], fn)
    atheris.Fuzz()


def run_target(target, seconds):
    with tempfile.TemporaryDirectory() as tmp:
        corpus = pathlib.Path(tmp) / "corpus"
        seed_files(target, corpus)
        proc = subprocess.run([sys.executable, __file__, "--worker", target, "--seconds", str(seconds),
                               "--corpus", str(corpus)], capture_output=True, text=True,
                              env=dict(os.environ, PYTHONPATH=os.pathsep.join(  # this checkout's tlkit
                                  [str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])))
        log = proc.stdout + proc.stderr
        execs = _stat(log, r"stat::number_of_executed_units:\s+(\d+)")
        corpus_size = len(list(corpus.iterdir()))
        crashed = proc.returncode != 0
        crash = ""
        if crashed:
            lines = [l for l in log.splitlines() if "Error" in l or "==" in l or "Traceback" in l]
            crash = lines[-1][:200] if lines else f"exit code {proc.returncode}"
        return {"target": target, "seconds": seconds, "executions": execs, "corpus": corpus_size,
                "crashes": int(crashed), "crash": crash, "marker_created": MARKER.exists()}


def _stat(log, pattern):
    found = re.findall(pattern, log)
    return int(found[-1]) if found else None


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", choices=TARGETS)
    p.add_argument("--all", action="store_true")
    p.add_argument("--seconds", type=int, default=60)
    p.add_argument("--write", action="store_true", help="rewrite the fuzzing table in RELIABILITY.md")
    p.add_argument("--worker", choices=TARGETS, help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args.worker, args.seconds, args.corpus)
    targets = TARGETS if args.all else [args.target or p.error("give --target or --all")]
    rows = []
    for t in targets:
        row = run_target(t, args.seconds)
        print(json.dumps(row), flush=True)
        rows.append(row)
    table = ["| target | seconds | inputs executed | corpus (coverage-increasing) | crashes | code run from a pickle |",
             "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        table.append(f"| {r['target']} | {r['seconds']} | {r['executions']} | {r['corpus']} | {r['crashes']}"
                     f"{' (' + r['crash'] + ')' if r['crash'] else ''} | {'YES' if r['marker_created'] else 'no'} |")
    text = "\n".join(table)
    print(text)
    if args.write:
        path = REPO / "RELIABILITY.md"
        doc = path.read_text() if path.exists() else ""
        begin, end = "<!-- fuzz-table -->", "<!-- /fuzz-table -->"
        block = f"{begin}\nCommand: `python scripts/fuzz.py {' '.join(a for a in sys.argv[1:] if a != '--write')}`\n\n{text}\n{end}"
        doc = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda m: block, doc, flags=re.S) if begin in doc \
            else doc.rstrip("\n") + "\n\n" + block + "\n"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(doc)
        os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
