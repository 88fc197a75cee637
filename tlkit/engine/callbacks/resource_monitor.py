"""ResourceMonitor: CPU, memory, throughput and the data/compute split of each epoch, in the epoch logs.

>>> model.fit(x, y, epochs=5, callbacks=[ResourceMonitor(), CSVLogger("log.csv"), TensorBoard("logs")])

The keys join the epoch logs, so History, CSVLogger and TensorBoard placed after it record them and the
progress bar prints them at each epoch's end:

    cpu_percent       process CPU time / wall time x 100 (200 = two cores busy)
    memory_rss_mb     resident memory at the epoch's end; memory_peak_mb: the largest so far
    images_per_sec    training samples / training time (data + compute) of the epoch
    data_time         seconds waiting for batches (reading, decoding, augmenting)
    compute_time      seconds in the training steps (forward, backward, update)
    epoch_time        the whole epoch, validation included
    cpu_core<i>_percent   with per_core=True and /proc/stat: machine-wide busy percentage of core i

Data time is measured between the end of one step and the start of the next (the batch fetch), compute
time between a step's begin and end hooks.
"""
import time

from tlkit.engine.callbacks.callback import Callback
from tlkit.utils import resources

MB = 1024.0 * 1024.0


class ResourceMonitor(Callback):
    """Adds resource usage to the epoch logs (see the module docstring). ``clock`` is for tests."""

    def __init__(self, per_core=False, clock=time.perf_counter):
        super().__init__()
        self.per_core = per_core
        self.clock = clock
        self.epochs = []  # the values of each epoch, as added to the logs

    def on_epoch_begin(self, epoch, logs=None):
        now = self.clock()
        self._epoch_start = self._last_batch_end = now
        self._cpu_start, self._real_start = resources.process_cpu_seconds(), time.perf_counter()
        self._cores_start = resources.core_times() if self.per_core else None
        self._data = self._compute = 0.0
        self._samples = 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self._batch_start = self.clock()
        self._data += self._batch_start - self._last_batch_end

    def on_train_batch_end(self, batch, logs=None):
        self._last_batch_end = self.clock()
        self._compute += self._last_batch_end - self._batch_start
        # The loss tracker is weighted by batch sizes: its count is this epoch's samples so far.
        trackers = getattr(self.model, "_loss_trackers", None)
        if trackers:
            self._samples = float(trackers[0].count)

    def on_epoch_end(self, epoch, logs=None):
        wall = self.clock() - self._epoch_start
        real_wall = time.perf_counter() - self._real_start
        train_time = self._data + self._compute
        values = {
            "data_time": self._data,
            "compute_time": self._compute,
            "epoch_time": wall,
            "images_per_sec": self._samples / train_time if train_time > 0 else 0.0,
        }
        if real_wall > 0:
            values["cpu_percent"] = 100.0 * (resources.process_cpu_seconds() - self._cpu_start) / real_wall
        rss, peak = resources.rss_bytes(), resources.peak_rss_bytes()
        if rss is not None:
            values["memory_rss_mb"] = rss / MB
        if peak is not None:
            values["memory_peak_mb"] = max(peak, rss or 0) / MB
        cores = resources.core_percent(self._cores_start, resources.core_times()) if self.per_core else None
        for i, percent in enumerate(cores or []):
            values[f"cpu_core{i}_percent"] = percent
        self.epochs.append(values)
        if logs is not None:
            logs.update(values)
