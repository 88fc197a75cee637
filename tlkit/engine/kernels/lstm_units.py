"""LSTM time loops with the units split over the threads, each thread's whole loop one numba call
(lstm_unit_loops.py); recurrent.py sets up the sequences and calls these when ``use_unit_blocks`` says so.

Why: cutting the batch over the threads (recurrent.py's ``batch_blocks``) has each thread multiply its
rows by the whole (units, 4 units) recurrent kernel at every step, which with the step's other arrays
does not stay in a core's cache. Here each thread owns a block of units, i.e. the same share of the gate
columns of each gate: its slice of the recurrent kernel is half the size (for 2 threads) and stays in
its core's cache, and it runs the gate maths of its units for the whole batch. The threads wait for
each other once a step inside the numba loops, with no return to Python (a return per step takes the
GIL turn by turn, which ate the whole gain when tried). A wait spins a bounded number of reads, then
returns here to yield the core (``SPINS``, ``_pause``), so a loaded machine is not burnt.

The per-step products are numba's ``np.dot``, which calls scipy's BLAS: without scipy (``available()``
is False) recurrent.py keeps its batch split. The gate columns of the input projection, the gate
sequences and the gate gradients are in unit-block order; ``unpermute`` puts the weight gradients back
into Keras's order.
"""
import os
import threading
import time

import numpy as np

from tlkit.engine.kernels import lstm_unit_loops as loops
from tlkit.utils import threads

# Recurrent product flops per step (8 B u^2) below which a step is too short for a wait between threads.
MIN_STEP_FLOPS = 4_000_000
# Unit blocks start at multiples of this (whole cache lines of float32 for each thread).
UNIT_ALIGN = 16
# Flag reads before a waiting thread returns to yield its core (some tens of microseconds).
SPINS = 20_000
# Yields in a row (the other thread made no progress) before a waiting thread sleeps instead.
YIELDS_BEFORE_SLEEP = 16
SLEEP_S = 50e-6
_yield = getattr(os, "sched_yield", lambda: time.sleep(0))
_state = {"available": None}


def available():
    """True when numba's np.dot can run, i.e. scipy's BLAS imports; that BLAS (loaded now, maybe after
    tlkit limited the others) is then held to one thread too (``threads.limit_blas``)."""
    if _state["available"] is None:
        try:
            import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot calls it)
        except ImportError:
            _state["available"] = False
        else:
            threads.limit_blas(new_libraries=True)
            _state["available"] = True
    return _state["available"]


def unit_blocks(units, parts):
    """Bounds of the units' blocks, ``parts`` of them, at multiples of UNIT_ALIGN (fewer when units are few)."""
    edges = [0] + [int(round(units * k / parts / UNIT_ALIGN)) * UNIT_ALIGN for k in range(1, parts)] + [units]
    return np.asarray(sorted(set(edges)), np.intp)


def use_unit_blocks(n, units, recurrent_dropout):
    """The number of unit blocks when the split pays, else 0: two or more threads, steps long enough,
    no recurrent dropout, scipy present, and not already on a worker of tlkit's pool (the other blocks
    could then wait for a thread that never comes)."""
    parts = threads.num_threads()
    if (recurrent_dropout is not None or parts < 2 or 8 * n * units * units < MIN_STEP_FLOPS
            or threads.in_pool_thread() or len(unit_blocks(units, parts)) <= 2 or not available()):
        return 0
    return parts


def gate_permutation(units, bounds):
    """perm such that ``gates_blocks = gates_keras[..., perm]`` for blocks of units bounds[k]:bounds[k+1]."""
    perm = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        for gate in range(4):
            perm.extend(range(gate * units + lo, gate * units + hi))
    return np.asarray(perm, np.intp)


def unpermute(grad, perm):
    """A gradient whose last axis is in unit-block order, in Keras's order."""
    return np.take(grad, np.argsort(perm), axis=-1)  # a gather: faster than scattering into perm


def _run_blocks(bounds, loop, done):
    """For each block k of units, on its own thread: ``loop(k, lo, hi, flags, start)`` from start 0 until
    it returns ``done``; between calls the thread yields (or, when the other made no progress for a
    while, sleeps briefly). A block that fails makes the others stop waiting for it."""
    parts = len(bounds) - 1
    flags = np.zeros(parts * loops.FLAG_STRIDE, np.int64)
    failed = threading.Event()

    def work(slot, k, _):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        try:
            step, idle = 0, 0
            while True:
                reached = loop(k, lo, hi, flags, step)
                if reached == done:
                    return
                if failed.is_set():
                    raise RuntimeError("another block of the recurrent layer's units failed; see its error")
                idle = idle + 1 if reached == step else 0
                _yield() if idle < YIELDS_BEFORE_SLEEP else time.sleep(SLEEP_S)
                step = reached
        except BaseException:
            failed.set()
            raise

    threads.limit_blas()
    threads.run_chunks(np.arange(parts + 1), work, parts)


def forward(gates, recurrent_kernel, bias, h, c, out, m, zero_out, act, ract, perm, bounds):
    """The time loop. ``gates`` (T, B, 4u) holds the input projection in unit-block order and becomes the
    activated gates; ``bias`` is in unit-block order; h, c (T+1, B, u) hold the initial states in [0]."""
    n = h.shape[1]
    blocks = [None] * (len(bounds) - 1)

    def loop(k, lo, hi, flags, start):
        if blocks[k] is None:  # on its own thread: its (u, 4w) columns of the kernel, a (B, 4w) scratch
            blocks[k] = (np.ascontiguousarray(recurrent_kernel[:, perm[4 * lo:4 * hi]]),
                         np.empty((n, 4 * (hi - lo)), gates.dtype))
        block, rec = blocks[k]
        return loops.forward_loop(gates, block, bias[4 * lo:4 * hi], h, c, out, m, zero_out, act, ract, rec, lo, hi,
                                  flags, k, start, SPINS)

    _run_blocks(bounds, loop, gates.shape[0])


def backward(d_out, carry_o, carry_h, carry_c, gates, c, m, act, ract, dz, recurrent_kernel, perm, bounds):
    """Backward through time: dz (T, B, 4u) gets the gate gradients in unit-block order; the carries
    (B, u) end as the gradients into the initial states (carry_h complete, the recurrent path included).
    ``d_out``: the output sequence's gradient (T, B, u), C-contiguous, or None."""
    n = carry_h.shape[0]
    has_d_out = d_out is not None
    d_seq = d_out if has_d_out else np.zeros((1,) + carry_h.shape, dz.dtype)
    blocks = [None] * (len(bounds) - 1)

    def loop(k, lo, hi, flags, start):
        if blocks[k] is None:  # (4u, w): these units' rows of the kernel, transposed; a (B, w) scratch
            blocks[k] = (np.ascontiguousarray(recurrent_kernel[lo:hi][:, perm].T), np.empty((n, hi - lo), dz.dtype))
        block_t, back = blocks[k]
        return loops.backward_loop(d_seq, has_d_out, carry_o, carry_h, carry_c, gates, c, m, act, ract, dz, block_t,
                                   back, lo, hi, flags, k, start, SPINS)

    _run_blocks(bounds, loop, gates.shape[0] + 1)
