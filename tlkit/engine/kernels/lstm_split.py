"""LSTM time loops with the units split over the threads (recurrent.py sets up the sequences and calls
these when ``use_unit_blocks`` says so).

Why: cutting the batch over the threads (recurrent.py's ``batch_blocks``) has each thread multiply its
rows by the whole (units, 4 units) recurrent kernel at every step, which BLAS repacks on every call and
which, with the step's other arrays, does not stay in a core's cache. Here each thread owns a block of
units, i.e. a quarter of the gate columns of each gate (lstm_columns.py's unit-block order): its slice of
the recurrent kernel is half the size, it does its gate maths for the whole batch, and the threads wait
for each other once a step (each step needs the whole previous state), on flags they spin on briefly,
then yield the core. The gate columns of the input projection, the gate sequences and the gate gradients
stay in unit-block order; ``unpermute`` puts the weight gradients back into Keras's order.
"""
import os
import time

import numpy as np

from tlkit.engine.kernels import lstm_columns as cols
from tlkit.utils import threads

# Recurrent product flops per step below which a step is too short for a wait between threads.
MIN_STEP_FLOPS = 4_000_000
# Unit blocks start at multiples of this (whole cache lines of float32 for each thread).
UNIT_ALIGN = 16
# Flag reads before a waiting thread yields its core (a few tens of microseconds).
SPINS = 20_000
_yield = getattr(os, "sched_yield", lambda: time.sleep(0))


def unit_blocks(units, parts=None):
    """Bounds of the units' blocks, one per thread, at multiples of UNIT_ALIGN (fewer when units are few)."""
    parts = threads.num_threads() if parts is None else int(parts)
    edges = [0] + [int(round(units * k / parts / UNIT_ALIGN)) * UNIT_ALIGN for k in range(1, parts)] + [units]
    return np.asarray(sorted(set(edges)), np.intp)


def gate_permutation(units, bounds):
    """perm such that ``gates_blocks = gates_keras[..., perm]`` for blocks of units bounds[k]:bounds[k+1]."""
    perm = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        for gate in range(4):
            perm.extend(range(gate * units + lo, gate * units + hi))
    return np.asarray(perm, np.intp)


def use_unit_blocks(n, units, recurrent_dropout):
    """True when the unit split pays: two or more threads, steps long enough, not already on a worker of
    tlkit's pool (the other blocks could then wait for a thread that never comes)."""
    return (recurrent_dropout is None and threads.num_threads() >= 2 and not threads.in_pool_thread()
            and 8 * n * units * units >= MIN_STEP_FLOPS and len(unit_blocks(units)) > 2)


def unpermute(grad, perm):
    """A gradient whose last axis is in unit-block order, in Keras's order."""
    return np.take(grad, np.argsort(perm), axis=-1)  # a gather: faster than scattering into perm


def _run_blocks(bounds, body):
    """body(k, lo, hi) for each block of units, all at once (one thread each); a block that fails makes
    the others stop waiting for it."""
    parts = len(bounds) - 1
    flags = np.zeros(parts * cols.FLAG_STRIDE, np.int64)
    failed = []

    def wait_others(k, count):
        while not cols.wait_for(flags, k, count, SPINS):
            if failed:
                raise RuntimeError("another block of the recurrent layer's units failed; see its error")
            _yield()

    def work(slot, k, _):
        try:
            body(k, int(bounds[k]), int(bounds[k + 1]), flags, wait_others)
        except BaseException:
            failed.append(k)
            raise

    threads.limit_blas()
    threads.run_chunks(np.arange(parts + 1), work, parts)


def forward(gates, recurrent_kernel, bias, h, c, out, m, zero_out, act, ract, perm, bounds):
    """The time loop. ``gates`` (T, B, 4u) holds the input projection in unit-block order and becomes the
    activated gates; ``bias`` is in unit-block order; h, c (T+1, B, u) hold the initial states in [0]."""
    n = h.shape[1]

    def body(k, lo, hi, flags, wait_others):
        block = np.ascontiguousarray(recurrent_kernel[:, perm[4 * lo:4 * hi]])  # this thread's columns
        rec = np.empty((n, 4 * (hi - lo)), gates.dtype)
        for t in range(gates.shape[0]):
            threads.product(h[t], block, rec)
            if not cols.forward_step(gates[t], rec, bias, c[t], h[t], out[t - 1] if t else zero_out, m[t], act,
                                     ract, c[t + 1], h[t + 1], out[t], lo, hi, flags, k, t + 1, SPINS):
                wait_others(k, t + 1)

    _run_blocks(bounds, body)


def backward(d_out, zeros, carry_o, carry_h, carry_c, gates, c, m, act, ract, dz, recurrent_kernel, perm, bounds):
    """Backward through time: dz (T, B, 4u) gets the gate gradients in unit-block order; the carries
    (B, u) end as the gradients into the initial states (carry_h complete, the recurrent path included)."""
    n = carry_h.shape[0]

    def body(k, lo, hi, flags, wait_others):
        block_t = np.ascontiguousarray(recurrent_kernel[lo:hi][:, perm].T)  # (4u, hi - lo)
        back = np.zeros((n, hi - lo), dz.dtype)
        t_len = gates.shape[0]
        for done, t in enumerate(range(t_len - 1, -1, -1)):
            if not cols.backward_step(zeros if d_out is None else d_out[t], back, carry_o, carry_h, carry_c,
                                      gates[t], c[t + 1], c[t], m[t], act, ract, dz[t], lo, hi, flags, k, done + 1,
                                      SPINS):
                wait_others(k, done + 1)
            threads.product(dz[t], block_t, back)
        carry_h[:, lo:hi] += back

    _run_blocks(bounds, body)
