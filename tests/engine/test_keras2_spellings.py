"""Keras 2 spellings real code still uses: fit_generator / evaluate_generator / predict_generator, ``lr=`` on
optimizers, ``keras.utils.Sequence`` / ``PyDataset`` subclasses (and re-iterable loaders) given to fit,
evaluate and predict."""
import warnings

import numpy as np
import pytest

import tlkit
from tlkit import layers as L


def data(n=96):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 5)).astype("float32")
    return x, (x @ rng.normal(size=(5, 1))).astype("float32")


def model(lr=0.05):
    m = tlkit.Sequential([tlkit.Input((5,)), L.Dense(1)])
    m.compile(optimizer=tlkit.optimizers.SGD(learning_rate=lr), loss="mse")
    return m


class Batches(tlkit.utils.PyDataset):
    """The guide's ExamplePyDataset, recording what fit asks of it."""

    def __init__(self, x, y, batch_size, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size
        self.asked, self.epochs_begun, self.epochs_ended = [], 0, 0

    def __len__(self):
        return int(np.ceil(len(self.x) / float(self.batch_size)))

    def __getitem__(self, idx):
        self.asked.append(idx)
        batch_x = self.x[idx * self.batch_size:(idx + 1) * self.batch_size]
        batch_y = self.y[idx * self.batch_size:(idx + 1) * self.batch_size]
        return batch_x, batch_y

    def on_epoch_begin(self):
        self.epochs_begun += 1

    def on_epoch_end(self):
        self.epochs_ended += 1


def test_generator_methods_warn_and_run_fit_evaluate_predict():
    x, y = data()

    def batches():
        while True:
            for i in range(0, len(x), 16):
                yield x[i:i + 16], y[i:i + 16]

    m = model()
    with pytest.warns(UserWarning, match=r"`Model.fit_generator` is deprecated .* use `Model.fit`"):
        history = m.fit_generator(batches(), steps_per_epoch=6, epochs=4, verbose=0)
    assert len(history.history["loss"]) == 4 and history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    with pytest.warns(UserWarning, match="evaluate_generator"):
        loss = m.evaluate_generator(batches(), steps=6)
    assert np.isclose(loss, m.evaluate(x, y, verbose=0), rtol=1e-5)
    with pytest.warns(UserWarning, match="predict_generator"):
        predictions = m.predict_generator((x[i:i + 16] for i in range(0, len(x), 16)), steps=6)
    np.testing.assert_allclose(predictions, m.predict(x, verbose=0), rtol=1e-6)


def test_lr_is_learning_rate_with_keras2s_warning():
    with pytest.warns(FutureWarning, match="The `lr` argument is deprecated, use `learning_rate` instead."):
        adam = tlkit.optimizers.Adam(lr=0.01)
    assert np.isclose(float(adam.learning_rate), 0.01)
    with pytest.warns(FutureWarning):
        sgd = tlkit.optimizers.SGD(lr=0.5, momentum=0.9)
    assert np.isclose(float(sgd.learning_rate), 0.5) and sgd.momentum == 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isclose(float(tlkit.optimizers.RMSprop(learning_rate=0.2).learning_rate), 0.2)
    with pytest.raises(ValueError, match="not recognized"):
        tlkit.optimizers.Adam(lr_rate=0.1)


@pytest.mark.parametrize("shuffle", [True, False])
def test_py_dataset_in_fit_evaluate_predict(shuffle):
    x, y = data()
    train = Batches(x, y, batch_size=16, workers=4)
    assert train.workers == 4 and train.num_batches == 6
    m = model()
    history = m.fit(train, epochs=3, shuffle=shuffle, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert (train.epochs_begun, train.epochs_ended) == (3, 3)
    epochs = [train.asked[i:i + 6] for i in range(0, 18, 6)]
    assert all(sorted(e) == list(range(6)) for e in epochs)  # every batch once per epoch
    if shuffle:
        assert any(e != list(range(6)) for e in epochs)
    else:
        assert all(e == list(range(6)) for e in epochs)
    evaluation = Batches(x, y, batch_size=32)
    assert np.isclose(m.evaluate(evaluation, verbose=0), m.evaluate(x, y, verbose=0), rtol=1e-5)
    assert evaluation.asked == [0, 1, 2]
    np.testing.assert_allclose(m.predict(Batches(x, y, batch_size=40), verbose=0), m.predict(x, verbose=0),
                               rtol=1e-6)  # predict keeps the order (and takes the x of (x, y))
    assert tlkit.utils.Sequence is tlkit.utils.PyDataset


def test_a_py_dataset_must_define_its_batches():
    class Empty(tlkit.utils.PyDataset):
        pass

    with pytest.raises(NotImplementedError, match="must define __len__"):
        model().fit(Empty(), verbose=0)


def test_torch_dataloader_batches_train():
    torch = pytest.importorskip("torch")
    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)),
                                         batch_size=16, shuffle=True)
    m = model()
    history = m.fit(loader, epochs=4, verbose=0)  # re-iterated each epoch
    assert len(history.history["loss"]) == 4 and history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    assert np.isclose(m.evaluate(loader, verbose=0), m.evaluate(x, y, verbose=0), rtol=1e-4)
