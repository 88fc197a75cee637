"""Run by the tests with the peers' Python (Keras 3): image_dataset_from_directory and the sequence
helpers on the cases of a JSON file; results written to an .npz.

    /work/peers/bin/python keras_dataset_oracle.py cases.json results.npz
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402


def main(src, dst):
    with open(src) as f:
        cases = json.load(f)
    out = {}
    for i, case in enumerate(cases):
        if case["fn"] == "image_dataset_from_directory":
            ds = keras.utils.image_dataset_from_directory(case["directory"], verbose=False, **case["kwargs"])
            parts = ds if isinstance(ds, list) else [ds]
            for k, part in enumerate(parts):
                out[f"paths{i}_{k}"] = np.array(part.file_paths)
                out[f"names{i}_{k}"] = np.array(part.class_names or [])
                if not case["kwargs"].get("shuffle", True):
                    batch = next(iter(part))
                    x, y = (batch if isinstance(batch, tuple) else (batch, None))
                    out[f"x{i}_{k}"] = np.asarray(x)
                    if y is not None:
                        out[f"y{i}_{k}"] = np.asarray(y)
        elif case["fn"] == "pad_sequences":
            out[f"p{i}"] = keras.utils.pad_sequences(case["sequences"], **case["kwargs"])
        else:
            ds = keras.utils.timeseries_dataset_from_array(np.asarray(case["data"]), None if case["targets"] is None
                                                           else np.asarray(case["targets"]), **case["kwargs"])
            for k, batch in enumerate(ds):
                x, y = batch if isinstance(batch, tuple) else (batch, None)
                out[f"t{i}_{k}_x"] = np.asarray(x)
                if y is not None:
                    out[f"t{i}_{k}_y"] = np.asarray(y)
    np.savez(dst, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
