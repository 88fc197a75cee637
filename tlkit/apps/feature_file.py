"""``tlkit features``: a model's outputs for every image of a folder, in one HDF5 feature file.

The model is a base by name (any of ``tlkit models``, + ``--weights``) or a tlkit model file.
The file holds, in the order of the images: ``features`` (float32, one row per image read),
``paths`` (UTF-8), ``skipped_paths`` / ``skipped_reasons`` (images that could not be read) and
attributes saying which model, weights, image size, preprocessing and pooling made them.
The single-process path here and ``tlkit.distributed`` write it with the same function.
"""
import os

import numpy as np

from tlkit.apps.models import BASES, build_base

POOLINGS = ("avg", "max", "none")
FORMAT = "tlkit-features"


def model_spec(model, weights="imagenet", image_size=224):
    """A small, picklable description of the feature model: what a worker needs to load it, and an
    identity (a model file's size and modification time) so a changed file is loaded again."""
    if model in BASES:
        return {"kind": "base", "base": model, "weights": str(weights), "image_size": int(image_size)}
    path = os.path.abspath(model)
    if not os.path.isfile(path):
        raise ValueError(f"--base {model!r} is neither a base ({', '.join(BASES)}) nor a model file.")
    st = os.stat(path)
    return {"kind": "file", "path": path, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def load_feature_model(spec):
    """(model, meta) for a ``model_spec``; meta has image_size, preprocessing, model and weights."""
    if spec["kind"] == "file":
        from tlkit.apps.inference import load_classifier

        model, meta = load_classifier(spec["path"])
        return model, {"image_size": meta["image_size"], "preprocessing": meta["preprocessing"],
                       "model": spec["path"], "weights": spec["path"]}
    weights = None if spec["weights"] in ("None", "none") else spec["weights"]
    size = spec["image_size"]
    base = build_base(spec["base"], weights, (size, size, 3))
    return base, {"image_size": size, "preprocessing": getattr(base, "preprocessing", "caffe"),
                  "model": spec["base"], "weights": spec["weights"]}


def pooled(outputs, pooling):
    """Global pooling of a batch of feature maps (N, H, W, C) -> (N, C); other outputs as they are."""
    if pooling == "none" or outputs.ndim != 4:
        return outputs
    return outputs.mean(axis=(1, 2)) if pooling == "avg" else outputs.max(axis=(1, 2))


def flipped_outputs(model, x, preprocessing, flips, pooling):
    """[float32 pooled outputs of ``model`` for each (horizontal, vertical) flip of the batch ``x``]
    (pixels, (N, H, W, C)); ``x`` itself is left as it is."""
    from tlkit.zoo.preprocessing import preprocess_input

    outs = []
    for across, down in flips:
        v = np.array(x[:, ::-1 if down else 1, ::-1 if across else 1], np.float32)
        out = np.asarray(model.predict_on_batch(preprocess_input(v, preprocessing, inplace=True)))
        outs.append(np.asarray(pooled(out, pooling), np.float32))
    return outs


def extract_features(model, meta, paths, batch_size=32, pooling="avg", progress=None, flips=None):
    """(paths read, float32 features in their order, [(path, reason)] skipped); ``progress``: anything
    with ``update(done)``, told the number of images handled. With ``flips`` [(horizontal, vertical)],
    the features of each flip of each image: (N, len(flips), ...)."""
    from tlkit.apps.inference import load_batch

    done, chunks, failures = [], [], []
    for start in range(0, len(paths), batch_size):
        x, ok, failed = load_batch(paths[start:start + batch_size], meta["image_size"])
        failures += failed
        if x is not None:
            outs = flipped_outputs(model, x, meta["preprocessing"], flips or [(False, False)], pooling)
            chunks.append(np.stack(outs, axis=1) if flips else outs[0])
            done += ok
        if progress is not None:
            progress.update(min(start + batch_size, len(paths)))
    if not chunks:
        return done, np.zeros((0,), np.float32), failures
    return done, np.concatenate(chunks), failures


def write_feature_file(path, paths, feature_chunks, failures, meta, pooling):
    """Write the feature file atomically. ``feature_chunks``: an iterable of arrays whose rows, in
    order, belong to ``paths`` (one array, or one per partition read as they are written)."""
    import h5py

    from tlkit.utils.io import atomic_h5_file

    chunks = iter(feature_chunks)
    first = next(chunks, None)
    if first is None or not len(paths):
        raise ValueError(f"none of the images could be read ({len(failures)} skipped): nothing to write to {path}.")
    text = h5py.string_dtype("utf-8")
    with atomic_h5_file(path) as f:
        f.attrs.update({"format": FORMAT, "model": meta["model"], "weights": str(meta["weights"]),
                        "image_size": meta["image_size"], "preprocessing": meta["preprocessing"],
                        "pooling": pooling})
        data = f.create_dataset("features", (len(paths),) + first.shape[1:], np.float32)
        row = 0
        for chunk in _chain(first, chunks):
            data[row:row + len(chunk)] = chunk
            row += len(chunk)
        if row != len(paths):
            raise RuntimeError(f"{path}: {row} feature rows for {len(paths)} images; nothing was written.")
        f.create_dataset("paths", data=[str(p) for p in paths], dtype=text)
        f.create_dataset("skipped_paths", data=[str(p) for p, _ in failures], dtype=text)
        f.create_dataset("skipped_reasons", data=[str(r) for _, r in failures], dtype=text)


def _chain(first, rest):
    yield first
    yield from rest


def read_feature_file(path):
    """{"features", "paths", "skipped": [(path, reason)], and the attributes} of a feature file."""
    import h5py

    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path} is not a tlkit feature file (write one with `tlkit features`).")
        out = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        out["features"] = f["features"][()]
        out["paths"] = [p.decode("utf-8") for p in f["paths"][()]]
        out["skipped"] = [(p.decode("utf-8"), r.decode("utf-8"))
                          for p, r in zip(f["skipped_paths"][()], f["skipped_reasons"][()])]
    return out
