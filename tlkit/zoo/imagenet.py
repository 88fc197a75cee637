"""The 1000 ImageNet classes and ``decode_predictions``, as in ``keras.applications``.

The class index ships with tlkit (Keras's ``imagenet_class_index.json``, byte for byte), so
decoding never needs the network::

    preds = model.predict(images)          # (n, 1000) softmax scores
    decode_predictions(preds, top=3)[0]
    # [('n02123045', 'tabby', 0.61), ('n02123159', 'tiger_cat', 0.22), ('n02124075', 'Egyptian_cat', 0.09)]
"""
import functools
import json
from importlib import resources

import numpy as np

NUM_CLASSES = 1000


@functools.cache
def imagenet_class_index():
    """``{"0": ["n01440764", "tench"], ..., "999": ["n15075141", "toilet_tissue"]}``."""
    text = resources.files("tlkit.zoo").joinpath("data/imagenet_class_index.json").read_text(encoding="utf-8")
    return json.loads(text)


def decode_predictions(preds, top=5):
    """Per image, the ``top`` classes as ``(class_id, class_name, score)``, highest score first.

    ``preds``: array of shape (samples, 1000).
    """
    preds = np.asarray(preds)
    if preds.ndim != 2 or preds.shape[1] != NUM_CLASSES:
        raise ValueError(
            "`decode_predictions` expects a batch of predictions (i.e. a 2D array of shape "
            f"(samples, {NUM_CLASSES})). Received array with shape: {preds.shape}"
        )
    index = imagenet_class_index()
    results = []
    for pred in preds:
        best = pred.argsort()[-top:][::-1]
        result = [(*index[str(i)], pred[i]) for i in best]
        result.sort(key=lambda item: item[2], reverse=True)
        results.append(result)
    return results
