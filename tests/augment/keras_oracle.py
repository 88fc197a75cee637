"""Run by the tests with the peers' Python (keras + scipy): Keras's apply_transform and
get_random_transform on the cases in an .npz file, results written to another .npz.

    /work/peers/bin/python keras_oracle.py cases.npz results.npz
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
from keras.src.legacy.preprocessing.image import ImageDataGenerator  # noqa: E402


def main(src, dst):
    data = np.load(src, allow_pickle=False)
    cases = json.loads(str(data["cases"]))
    out = {}
    for i, case in enumerate(cases):
        gen = ImageDataGenerator(**case["generator"])
        x = data[f"x{i}"]
        if "params" in case:
            out[f"y{i}"] = gen.apply_transform(x.astype("float32"), case["params"])
        else:
            out[f"p{i}"] = json.dumps({k: (None if v is None else float(v))
                                       for k, v in gen.get_random_transform(x.shape, case["seed"]).items()})
    np.savez(dst, **out)


if __name__ == "__main__":
    main(*sys.argv[1:])
