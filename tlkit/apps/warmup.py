"""Compile (or load from numba's disk cache) the kernels a model needs before a progress bar starts
its clock: the first ETA then measures the work, and a cold start says what the wait is.

On a cold cache `tlkit finetune` compiles in two processes at once. This one runs the base forward
from its first layer (in a thread, while the folder is scanned); a helper process
(``python -m tlkit.apps.warmup BASE SIZE OPTIMIZER``) calls the same layers from the last one
backwards (a base with Winograd convs: their kernels first, last kernel first), then trains a tiny
head with the run's optimizer. Each saves what it compiles to numba's
cache, and numba looks a kernel up there before compiling it; a lock file per kernel signature makes
the one that comes second wait for the first instead of compiling it again. So the two meet in the
middle and every kernel is compiled once. (Threads cannot share the work: numba compiles one kernel
at a time per process.)
"""
import concurrent.futures
import contextlib
import glob
import hashlib
import os
import shutil
import tempfile
import threading
import subprocess
import sys
import time

import numpy as np

# Index-file names of the kernels only training needs (the backward passes): if none is cached,
# the first training step through the base compiles them.
BACKWARD_KERNELS = ("adjoint", "backward", "col2im")


def kernel_cache_present(names=("",)):
    """Whether numba's on-disk cache holds an index file (``*.nbi``) of tlkit's engine kernels whose
    name contains one of ``names``, in the folder numba itself uses for them ($NUMBA_CACHE_DIR when
    set, else beside the modules or numba's user-wide cache when that is not writable)."""
    from tlkit.engine.kernels import im2col

    try:
        folder = im2col.add_bias_relu._cache._cache_path  # numba's own choice (not a public attribute)
    except AttributeError:
        folder = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(os.path.dirname(im2col.__file__), "__pycache__")
    return any(glob.glob(os.path.join(glob.escape(folder), f"*{name}*.nbi")) for name in names)


def warm_up(model, say):
    """Run ``model`` once on a single blank input; ``say`` a line first on a cold start. Once per model."""
    if getattr(model, "_tlkit_warmed_up", False):
        return
    cold = not kernel_cache_present()
    if cold:
        say("compiling kernels (once; later runs load them from the cache)...")
    start = time.time()
    shape = tuple(model.input_shape[1:])
    model(np.zeros((1,) + shape, np.float32), training=False)
    model._tlkit_warmed_up = True
    if cold:
        say(f"compiled in {time.time() - start:.0f} s")


class BackgroundWarmUp:
    """``warm_up(model, say)`` in a thread, and on a cold cache the helper process from the start::

        with BackgroundWarmUp(base_name, image_size, optimizer) as warming:   # the helper starts
            model = ...                  # build the base meanwhile
            warming.start(model, say)    # this process's own warm-up, in a thread
            ...                          # scan the folders meanwhile
            warming.wait()               # re-raises what the warm-up raised
        ...
        warming.stop()                   # ends the helper if it still runs (e.g. at the end of the job)

    Leaving the block with an exception stops the helper too. The helper compiles the optimizer's
    kernel after the block, without locks (this process compiles nothing of the base any more).
    """

    def __init__(self, base_name, image_size, optimizer):
        self.helper = self.locks = self._future = None
        if not kernel_cache_present():
            self.locks = tempfile.mkdtemp(prefix="tlkit-compile-")
            self.helper = start_helper(base_name, image_size, optimizer, self.locks)
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tlkit-warmup")

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if kind is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)  # an unfinished compile ends on its own
            self.stop()
        elif self.locks is not None:
            shutil.rmtree(self.locks, ignore_errors=True)

    def start(self, model, say):
        self._future = self._pool.submit(self._warm_up, model, say)

    def _warm_up(self, model, say):
        with compiling_once(self.locks if self.helper is not None else None):
            warm_up(model, say)

    def wait(self):
        try:
            self._future.result()
        finally:
            self._pool.shutdown(wait=True)

    def stop(self):
        if self.helper is not None and self.helper.poll() is None:
            self.helper.terminate()  # numba writes cache files whole (temporary file, then rename)
            self.helper.wait()
        if self.locks is not None:
            shutil.rmtree(self.locks, ignore_errors=True)


def start_helper(base_name, image_size, optimizer, locks):
    """The helper process (see the module's docstring), or None with a single core."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores < 2:
        return None
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # holds tlkit/
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    return subprocess.Popen([sys.executable, "-m", "tlkit.apps.warmup", base_name, str(image_size), optimizer, locks],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


@contextlib.contextmanager
def compiling_once(lock_dir):
    """While inside, this thread compiles (or loads) a tlkit kernel signature only while holding the
    lock file of that signature in ``lock_dir``: a process reaching a signature another process is
    compiling waits, then loads the result from numba's cache. Nothing changes with lock_dir None
    or where file locks do not exist."""
    try:
        import fcntl
    except ImportError:
        fcntl = None
    if lock_dir is None or fcntl is None:
        yield
        return
    from numba.core.dispatcher import Dispatcher

    original, owner = Dispatcher.compile, threading.get_ident()

    def compile(dispatcher, sig):
        name = f"{dispatcher.py_func.__module__}.{dispatcher.py_func.__qualname__}"
        if threading.get_ident() != owner or not name.startswith("tlkit.engine.kernels."):
            return original(dispatcher, sig)
        key = hashlib.sha1(f"{name} {sig}".encode()).hexdigest()[:20]
        try:
            lock = open(os.path.join(lock_dir, key), "a")
        except OSError:  # the other process is done with the locks and removed them
            return original(dispatcher, sig)
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            return original(dispatcher, sig)

    Dispatcher.compile = compile
    try:
        yield
    finally:
        Dispatcher.compile = original


def compile_from_the_end(model):
    """Call ``model``'s layers one by one on blank inputs, last layer first, the way its inference
    plan calls them (a conv fused with the pool after it is called with it): this compiles the
    kernels the forward needs, in the reverse order of the forward itself."""
    graph = model._graph
    fused = graph.plan.fused
    computed_with_producer = {id(consumer) for consumer, _ in fused.values()}
    for node in reversed(graph.nodes):
        if id(node) in computed_with_producer:
            continue
        args = [np.zeros((1,) + tuple(t.shape[1:]), np.float32) for t in node.inputs]
        kwargs = dict(node.kwargs)
        if id(node) in fused:
            consumer, keyword = fused[id(node)]
            kwargs[keyword] = consumer.layer
        node.layer(args if node.input_structure else args[0], training=False, **kwargs)


def uses_winograd(model):
    """Whether one of ``model``'s convolutions takes the Winograd route (3x3, stride 1, enough channels)."""
    from tlkit.engine.kernels import winograd

    for node in model._graph.nodes:
        kernel, layer = getattr(node.layer, "kernel", None), node.layer
        if (kernel is not None and len(kernel.shape) == 4 and len(node.inputs) == 1
                and winograd.applicable(tuple(node.inputs[0].shape), tuple(kernel.shape),
                                        getattr(layer, "strides", (1, 1)), getattr(layer, "dilation_rate", (1, 1)))):
            return True
    return False


def compile_optimizer(name):
    """One step of a tiny dense head with optimizer ``name``: compiles its update kernel."""
    from tlkit.engine import optimizers
    from tlkit.engine.layers import Dense
    from tlkit.engine.layers.input_layer import Input
    from tlkit.engine.sequential import Sequential

    head = Sequential([Input((8,)), Dense(2, activation="softmax")])
    head.compile(optimizers.get(name), "categorical_crossentropy")
    head.train_on_batch(np.zeros((2, 8), np.float32), np.eye(2, dtype=np.float32))


def main(argv):
    """The helper process: ``python -m tlkit.apps.warmup BASE SIZE OPTIMIZER [LOCK_DIR]``."""
    from tlkit.apps.models import factory

    base_name, size, optimizer = argv[0], int(argv[1]), argv[2]
    base = factory(base_name)(include_top=False, weights=None, input_shape=(size, size, 3))
    base.trainable = False
    with compiling_once(argv[3] if len(argv) > 3 else None):
        if uses_winograd(base):  # the longest compile: split with the main process (winograd.compile_last_first)
            from tlkit.engine.kernels import winograd

            winograd.compile_last_first()
        compile_from_the_end(base)
    compile_optimizer(optimizer)


if __name__ == "__main__":
    main(sys.argv[1:])
