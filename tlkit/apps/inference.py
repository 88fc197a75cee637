"""tlkit predict / evaluate / summary: using a model.h5 written by tlkit finetune."""
import os

import numpy as np

from tlkit.apps import report as report_mod
from tlkit.apps.dataset import class_folders
from tlkit.augment.folders import image_files


def load_classifier(path):
    """(model, metadata) with the class names, image size and preprocessing recorded at training."""
    from tlkit.engine.saving.model_files import load_model

    model = load_model(path, compile=False)
    meta = dict(getattr(model, "metadata", {}) or {})
    shape = model.input_shape
    meta.setdefault("image_size", shape[1] if shape and shape[1] else 224)
    meta.setdefault("preprocessing", "caffe")
    n_out = model.output_shape[-1]
    meta.setdefault("classes", [str(i) for i in range(n_out)])
    _check_metadata(meta, path)
    if len(meta["classes"]) != n_out:
        raise ValueError(f"{path}: the model has {n_out} outputs but its metadata names {len(meta['classes'])} "
                         "classes.")
    return model, meta


def _check_metadata(meta, path):
    """The fields predict relies on have the types tlkit writes (an edited file may not)."""
    from tlkit.engine.saving.errors import ModelFileError

    size, classes = meta["image_size"], meta["classes"]
    if isinstance(size, bool) or not isinstance(size, int) or not 0 < size <= 16384:
        raise ModelFileError(path, f"its metadata gives image_size {size!r:.60}, not a positive whole number",
                             "Save the model again with tlkit finetune")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise ModelFileError(path, f"its metadata gives classes {classes!r:.60}, not a list of names",
                             "Save the model again with tlkit finetune")
    if not isinstance(meta["preprocessing"], str):
        raise ModelFileError(path, f"its metadata gives preprocessing {meta['preprocessing']!r:.60}, not a name",
                             "Save the model again with tlkit finetune")


def collect_images(paths):
    """Image files from files and folders (recursively, each real folder once), sorted, hidden files
    left out, FIFOs and devices in folders never opened (see ``tlkit.augment.folders``)."""
    found, seen = [], set()
    for p in paths:
        p = os.fspath(p)
        if os.path.isdir(p):
            found += image_files(p, follow_links=True, seen=seen)
        elif os.path.exists(p):
            found.append(p)
        else:
            raise FileNotFoundError(f"No such file or folder: {p}")
    return found


def require_images(paths):
    """``collect_images(paths)``; an error saying what to give when they hold no image."""
    found = collect_images(paths)
    if not found:
        raise ValueError("No images found in the given paths: give picture files or folders holding them.")
    return found


def load_batch(paths, size):
    """(images decoded at size x size, or None; the paths read; [(path, reason)] unreadable)."""
    from tlkit.augment import img_to_array, load_img

    arrays, ok, failed = [], [], []
    for p in paths:
        try:
            arrays.append(img_to_array(load_img(p, target_size=(size, size))))
            ok.append(p)
        except Exception as e:  # an unreadable image is reported, never fatal
            reason = str(e)
            reason = reason[len(p) + 2:] if reason.startswith(f"{p}: ") else f"{type(e).__name__}: {reason}"
            failed.append((p, reason))
    return (np.stack(arrays) if arrays else None), ok, failed


def predict_files(model, meta, paths, top=1, batch_size=32, progress=None):
    """[(path, [(class, probability), ...])], [(path, reason)] for images that couldn't be read.

    ``progress``: a Progbar (or anything with ``update(done)``) told the number of images handled."""
    from tlkit.zoo.preprocessing import preprocess_input

    results, failures = [], []
    top = max(1, min(top, len(meta["classes"])))
    for start in range(0, len(paths), batch_size):
        x, ok, failed = load_batch(paths[start:start + batch_size], meta["image_size"])
        failures += failed
        if x is not None:
            probs = model.predict_on_batch(preprocess_input(x, meta["preprocessing"], inplace=True))
            for p, row in zip(ok, probs):
                order = np.argsort(-row)[:top]
                results.append((p, [(meta["classes"][i], float(row[i])) for i in order]))
        if progress is not None:
            progress.update(min(start + batch_size, len(paths)))
    return results, failures


def labelled_images(data_dir, known):
    """[(path, class index)] of DATA_DIR/class/* images, checked against the model's class names."""
    classes = class_folders(data_dir, "evaluation")
    unknown = [c for c in classes if c not in known]
    if unknown:
        raise ValueError(f"{data_dir} has class folders the model doesn't know: {unknown}. The model's classes: "
                         f"{known}.")
    return [(p, known.index(c)) for c in classes for p in collect_images([os.path.join(data_dir, c)])]


def evaluate_folder(model, meta, data_dir, batch_size=32, verbose=1):
    """Accuracy, per-class report and confusion matrix on DATA_DIR/class/* images."""
    from tlkit.utils.progbar import Progbar

    items = labelled_images(data_dir, meta["classes"])
    bar = Progbar(len(items), verbose=verbose, unit_name="image")
    results, failures = predict_files(model, meta, [p for p, _ in items], top=1, batch_size=batch_size,
                                      progress=bar)
    return evaluation_report(items, results, failures, meta["classes"])


def evaluation_report(items, results, failures, known):
    """The evaluation report of top-1 ``results`` [(path, [(class, probability)])] on labelled ``items``."""
    label_of = dict(items)
    y_true, y_pred, confidence, scored = [], [], [], []
    for path, ranked in results:
        scored.append(path)
        y_true.append(label_of[path])
        y_pred.append(known.index(ranked[0][0]))
        confidence.append(ranked[0][1])
    rep = report_mod.classification_report(y_true, y_pred, known)
    rep["skipped_images"] = [{"path": p, "reason": r} for p, r in failures]
    rep["most_confused"] = report_mod.most_confused(rep["confusion"], known)
    rep["confidently_wrong"] = report_mod.confidently_wrong(scored, y_true, y_pred, confidence, known)
    return rep
