"""Run by the tests with the peers' Python (Keras 3 + scipy): Keras 2's functional transforms and
image helpers on the cases of an .npz file, results written to another .npz.

    /work/peers/bin/python keras_functional_oracle.py cases.npz results.npz

A case is {"fn": name, "seed": s, "args": [...], "kwargs": {...}} applied to array x<i>, or
{"fn": "load_img", "path": ..., "kwargs": ...} / {"fn": "array_to_img", ...} for the file helpers.
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from keras.src.legacy.preprocessing import image as legacy  # noqa: E402
from keras.src.utils import image_utils  # noqa: E402


def run(case, x):
    fn = case["fn"]
    kwargs = case.get("kwargs", {})
    if fn == "load_img":
        img = image_utils.load_img(case["path"], **kwargs)
        return image_utils.img_to_array(img, **case.get("to_array", {}))
    if fn == "array_to_img":
        img = image_utils.array_to_img(x, **kwargs)
        return image_utils.img_to_array(img, **case.get("to_array", {}))
    np.random.seed(case["seed"])
    return getattr(legacy, fn)(x, *case.get("args", []), **kwargs)


def main(src, dst):
    data = np.load(src, allow_pickle=False)
    cases = json.loads(str(data["cases"]))
    out = {}
    for i, case in enumerate(cases):
        try:
            out[f"y{i}"] = np.asarray(run(case, data[f"x{i}"] if f"x{i}" in data else None))
        except Exception as e:  # the error itself is part of Keras's behaviour
            out[f"e{i}"] = f"{type(e).__name__}: {e}"
    np.savez(dst, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
