"""data_adapter: what fit/evaluate/predict make of arrays, dicts, iterators and Sequences."""
import numpy as np
import pytest

from tlkit.engine import data_adapter as da
from tlkit.utils.random import set_random_seed


def epoch_indices(batches):
    return np.concatenate([x[:, 0] for x, _, _ in batches.epoch()])


def test_array_batches_cover_every_sample_once_in_a_seeded_order():
    x = np.arange(10, dtype=np.float32)[:, None]
    y = np.arange(10) * 2
    batches = da.make_batches(x, y, batch_size=4, shuffle=True)
    assert batches.steps == 3
    sizes = [len(bx) for bx, _, _ in batches.epoch()]
    assert sizes == [4, 4, 2]
    for bx, by, bw in batches.epoch():  # x and y stay aligned, no weights given
        np.testing.assert_array_equal(by, bx[:, 0] * 2)
        assert bw is None
    set_random_seed(5)
    first = epoch_indices(batches)
    set_random_seed(5)
    again = epoch_indices(batches)
    assert sorted(first) == list(range(10)) and np.array_equal(first, again)
    assert not np.array_equal(first, np.arange(10))  # shuffled: seed 5 draws a non-identity order
    plain = da.make_batches(x, y, batch_size=4)
    np.testing.assert_array_equal(epoch_indices(plain), np.arange(10))


def test_dicts_of_arrays_are_batched_leaf_by_leaf_and_steps_cap_the_epoch():
    x = {"a": np.zeros((6, 2)), "b": np.arange(6)}
    batches = da.make_batches(x, batch_size=2, steps=2)
    got = list(batches.epoch())
    assert len(got) == 2
    np.testing.assert_array_equal(got[1][0]["b"], [2, 3])


@pytest.mark.parametrize("kwargs, message", [
    (dict(x=np.zeros((4, 1)), y=np.zeros(3)), "cardinality"),
    (dict(x=np.zeros((0, 1))), "non-empty"),
    (dict(x=np.zeros((4, 1)), batch_size=0), "batch_size"),
    (dict(x=None), "No data"),
    (dict(x=iter([np.zeros(1)]), y=np.zeros(1)), "`y` argument is not supported"),
    (dict(x=iter([np.zeros(1)]), sample_weight=np.zeros(1)), "sample_weight"),
    (dict(x=(b for b in [np.zeros(1)])), "steps_per_epoch"),
])
def test_bad_data_is_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        da.make_batches(**kwargs)


def test_a_sequence_is_indexed_and_told_when_an_epoch_ends():
    class Seq:
        def __init__(self):
            self.epochs = 0

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return np.full((2, 1), i + 10 * self.epochs), np.full(2, i)

        def on_epoch_end(self):
            self.epochs += 1

    seq = Seq()
    batches = da.make_batches(seq)
    assert [int(x[0, 0]) for x, _, _ in batches.epoch()] == [0, 1, 2]
    batches.on_epoch_end()
    assert [int(x[0, 0]) for x, _, _ in batches.epoch()] == [10, 11, 12]


def test_a_generator_runs_on_across_epochs_for_the_steps_asked():
    gen = ((np.full((1, 1), i), np.zeros(1)) for i in range(100))
    batches = da.make_batches(gen, steps=2)
    assert [int(x[0, 0]) for x, _, _ in batches.epoch()] == [0, 1]
    assert [int(x[0, 0]) for x, _, _ in batches.epoch()] == [2, 3]


def test_unpack_takes_x_or_x_y_or_x_y_weights():
    x, y, w = np.zeros(1), np.ones(1), np.full(1, 2.0)
    assert da.unpack(x)[0] is x and da.unpack(x)[1:] == (None, None)
    assert da.unpack((x,))[0] is x
    assert da.unpack((x, y))[1] is y and da.unpack((x, y))[2] is None
    assert da.unpack((x, y, w))[2] is w
    with pytest.raises(ValueError, match="tuple of 4"):
        da.unpack((x, y, w, w))


def test_validation_split_takes_the_last_fraction_before_shuffling():
    x = np.arange(10)[:, None]
    (tx, ty, tw), (vx, vy, vw) = da.split_validation(x, np.arange(10), None, 0.2)
    np.testing.assert_array_equal(tx[:, 0], np.arange(8))
    np.testing.assert_array_equal(vy, [8, 9])
    assert tw is None and vw is None
    with pytest.raises(ValueError, match="no training or no validation"):
        da.split_validation(np.zeros((3, 1)), None, None, 0.9)
    with pytest.raises(ValueError, match="only supported for arrays"):
        da.split_validation(iter([]), None, None, 0.5)


def test_class_weight_becomes_per_sample_weights():
    table = {0: 1.0, 1: 3.0}
    np.testing.assert_array_equal(da.class_weight_to_sample_weight(np.array([1, 0, 1]), table), [3, 1, 3])
    one_hot = np.eye(2)[[0, 1, 1]]
    np.testing.assert_array_equal(da.class_weight_to_sample_weight(one_hot, table), [1, 3, 3])
    with pytest.raises(ValueError, match=r"no entry for class\(es\) \[2\]"):
        da.class_weight_to_sample_weight(np.array([2, 0]), table)
