"""TensorBoard: event files for ``tensorboard --logdir``, with keras.callbacks.TensorBoard's arguments and tags.

Written with tensorboardX (an optional extra: ``pip install tlkit[tensorboard]``), which writes the event
protocol with only numpy and protobuf: no TensorFlow or torch needed.

>>> model.fit(x, y, validation_data=(xv, yv), callbacks=[TensorBoard("logs", histogram_freq=1, update_freq=10)])
$ tensorboard --logdir logs

Layout and tags as Keras: ``log_dir/train`` holds ``epoch_<metric>`` (step = epoch, from 0),
``epoch_learning_rate`` and, with ``update_freq=N``, ``batch_<metric>`` every N global batches (step =
batch count, from 1); ``log_dir/validation`` holds ``epoch_<metric>`` of the ``val_`` logs and
``evaluation_<metric>_vs_iterations`` (step = optimizer iterations). Every ``histogram_freq`` epochs:
``<weight path>/histogram`` of each weight (``dense/kernel/histogram``) and ``<weight path>/gradient`` of
the gradient of the epoch's last step. ``write_graph`` writes the model's config as Keras's conceptual
graph ("graph_keras_model"), which TensorBoard's Graphs tab draws. Any scalar another callback put in
the epoch logs before this one (ResourceMonitor's, for instance) is written too.

Not supported, accepted for compatibility with a warning: ``write_images``, ``embeddings_freq`` and
``profile_batch`` (tlkit's numba kernels have no TensorBoard profiler trace).
"""
import json
import numbers
import os
import time
import warnings

from tlkit.engine.callbacks.callback import Callback


def _tag(variable):
    # Variable names are Keras weight paths ("dense/kernel"); ":" is not allowed in a tag.
    return variable.name.replace(":", "_")


def _summary_writer_class():
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        raise ImportError("TensorBoard logging needs tensorboardX: pip install 'tlkit[tensorboard]' "
                          "(or pip install tensorboardX).") from None
    return SummaryWriter


class TensorBoard(Callback):
    """keras.callbacks.TensorBoard with the same arguments and defaults (see the module docstring)."""

    def __init__(self, log_dir="logs", histogram_freq=0, write_graph=True, write_images=False,
                 write_steps_per_second=False, update_freq="epoch", profile_batch=0, embeddings_freq=0,
                 embeddings_metadata=None):
        super().__init__()
        self._writer_class = _summary_writer_class()
        if not (update_freq in ("batch", "epoch") or (isinstance(update_freq, int) and update_freq > 0)):
            raise ValueError(f"update_freq must be 'batch', 'epoch' or a positive integer; got {update_freq!r}.")
        if not isinstance(histogram_freq, int) or histogram_freq < 0:
            raise ValueError(f"histogram_freq must be an integer >= 0; got {histogram_freq!r}.")
        for name, value in (("write_images", write_images), ("embeddings_freq", embeddings_freq),
                            ("profile_batch", profile_batch)):
            if value:
                warnings.warn(f"TensorBoard({name}={value!r}) is not supported by tlkit and is ignored.",
                              stacklevel=2)
        self.log_dir = os.fspath(log_dir)
        self.histogram_freq = histogram_freq
        self.write_graph = write_graph
        self.write_images = write_images
        self.write_steps_per_second = write_steps_per_second
        self.update_freq = 1 if update_freq == "batch" else update_freq
        self.profile_batch = profile_batch
        self.embeddings_freq = embeddings_freq
        self.embeddings_metadata = embeddings_metadata
        self._writers = {}
        self._global_train_batch = 0

    def _writer(self, which):
        if which not in self._writers:
            self._writers[which] = self._writer_class(os.path.join(self.log_dir, which), flush_secs=30)
        return self._writers[which]

    def _scalars(self, which, prefix, logs, step):
        writer = self._writer(which)
        for name, value in logs.items():
            if isinstance(value, numbers.Real):
                writer.add_scalar(f"{prefix}{name}", float(value), global_step=step)

    def _learning_rate(self):
        optimizer = getattr(self.model, "optimizer", None)
        return None if optimizer is None else float(optimizer.learning_rate)

    # ----- hooks -----
    def on_train_begin(self, logs=None):
        self._global_train_batch = 0
        if self.write_graph:
            self._write_keras_graph()

    def on_epoch_begin(self, epoch, logs=None):
        self._histogram_epoch = bool(self.histogram_freq) and epoch % self.histogram_freq == 0
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            optimizer.keep_last_gradients = self._histogram_epoch
        self._epoch_start = time.perf_counter()
        self._epoch_start_iterations = optimizer.iterations if optimizer is not None else 0

    def on_train_batch_begin(self, batch, logs=None):
        self._global_train_batch += 1
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        step = self._global_train_batch
        if self.update_freq == "epoch" or step % self.update_freq:
            return
        values = dict(logs or {})
        if "learning_rate" not in values and self._learning_rate() is not None:
            values["learning_rate"] = self._learning_rate()
        if self.write_steps_per_second:
            values["steps_per_second"] = 1.0 / max(time.perf_counter() - self._batch_start, 1e-9)
        self._scalars("train", "batch_", values, step)

    def on_test_end(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and logs:
            for name, value in logs.items():
                if isinstance(value, numbers.Real):
                    self._writer("validation").add_scalar(f"evaluation_{name}_vs_iterations", float(value),
                                                          global_step=optimizer.iterations)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train_logs = {k: v for k, v in logs.items() if not k.startswith("val_")}
        if "learning_rate" not in train_logs and self._learning_rate() is not None:
            train_logs["learning_rate"] = self._learning_rate()
        if self.write_steps_per_second:
            steps = self.model.optimizer.iterations - self._epoch_start_iterations
            train_logs["steps_per_second"] = steps / max(time.perf_counter() - self._epoch_start, 1e-9)
        self._scalars("train", "epoch_", train_logs, epoch)
        val_logs = {k[len("val_"):]: v for k, v in logs.items() if k.startswith("val_")}
        if val_logs:
            self._scalars("validation", "epoch_", val_logs, epoch)
        if self._histogram_epoch:
            self._write_histograms(epoch)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            optimizer.keep_last_gradients, optimizer.last_gradients = False, {}
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

    # ----- histograms and graph -----
    def _write_histograms(self, epoch):
        writer = self._writer("train")
        for variable in self.model.weights:
            writer.add_histogram(f"{_tag(variable)}/histogram", variable.value, global_step=epoch)
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            variables = optimizer.variables
            for index, gradient in optimizer.last_gradients.items():
                writer.add_histogram(f"{_tag(variables[index])}/gradient", gradient, global_step=epoch)
            optimizer.last_gradients = {}

    def _write_keras_graph(self):
        """The model config as a "graph_keras_model" summary: the Keras conceptual graph TensorBoard draws."""
        from tensorboardX.proto import summary_pb2, tensor_pb2  # noqa: imported with tensorboardX above
        from tlkit.engine.saving.config import serialize_layer

        try:
            config = json.dumps(serialize_layer(self.model))
        except Exception as error:  # a subclassed model without get_config has no graph to show
            warnings.warn(f"TensorBoard: the model graph was not written ({error}).", stacklevel=2)
            return
        metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="graph_keras_model", content=b"1"))
        tensor = tensor_pb2.TensorProto(dtype=7, string_val=[config.encode()])  # 7: DT_STRING
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="keras", metadata=metadata, tensor=tensor)])
        writer = self._writer("train")
        writer._get_file_writer().add_summary(summary, global_step=0)
