import hashlib
import json
from importlib import resources

import numpy as np
import pytest

from tlkit.zoo.imagenet import decode_predictions, imagenet_class_index

# The md5 keras.applications checks when it downloads imagenet_class_index.json.
KERAS_CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


def test_class_index_is_keras_file_byte_for_byte():
    raw = resources.files("tlkit.zoo").joinpath("data/imagenet_class_index.json").read_bytes()
    assert hashlib.md5(raw).hexdigest() == KERAS_CLASS_INDEX_MD5


def test_class_index_content():
    index = imagenet_class_index()
    assert sorted(index, key=int) == [str(i) for i in range(1000)]
    wnids = [index[str(i)][0] for i in range(1000)]
    assert len(set(wnids)) == 1000
    assert wnids == sorted(wnids)  # Keras's index is ordered by WordNet id
    assert index["0"] == ["n01440764", "tench"]
    assert index["999"] == ["n15075141", "toilet_tissue"]
    assert index["281"] == ["n02123045", "tabby"]


def reference_decode(preds, top):
    index = json.loads(resources.files("tlkit.zoo").joinpath("data/imagenet_class_index.json").read_text())
    out = []
    for row in preds:
        order = sorted(range(1000), key=lambda i: -row[i])[:top]
        out.append([(index[str(i)][0], index[str(i)][1], row[i]) for i in order])
    return out


@pytest.mark.parametrize("top", [1, 5, 1000])
def test_decode_predictions_matches_reference(rng, top):
    preds = rng.random((3, 1000)).astype(np.float32)  # distinct values: a unique ranking
    got = decode_predictions(preds, top=top)
    expected = reference_decode(preds, top)
    assert len(got) == 3
    for got_row, expected_row in zip(got, expected):
        assert len(got_row) == top
        assert all(isinstance(item, tuple) and len(item) == 3 for item in got_row)
        assert [item[:2] for item in got_row] == [item[:2] for item in expected_row]
        np.testing.assert_array_equal([item[2] for item in got_row], [item[2] for item in expected_row])
        scores = [item[2] for item in got_row]
        assert scores == sorted(scores, reverse=True)


def test_decode_predictions_one_hot():
    preds = np.zeros((2, 1000), np.float32)
    preds[0, 999] = 1.0
    preds[1, 281] = 0.9
    preds[1, 0] = 0.1
    got = decode_predictions(preds, top=2)
    assert got[0][0][:2] == ("n15075141", "toilet_tissue")
    assert got[1] == [("n02123045", "tabby", pytest.approx(0.9)), ("n01440764", "tench", pytest.approx(0.1))]


@pytest.mark.parametrize("shape", [(1000,), (2, 10), (1, 1000, 1)])
def test_decode_predictions_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"\(samples, 1000\)"):
        decode_predictions(np.zeros(shape))
