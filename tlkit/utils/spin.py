"""Bounded waits without the GIL, for tlkit's threads during a ``worker_pool.session``: a worker's wait
for its next job (``wait_for_job``) and a caller's for the end of its chunks (``wait_for_end``), each
returning as soon as what it waits for happened or after a number of polls (``polls(microseconds)``).
The polls run in native code (numba, nogil), so other Python threads run meanwhile.

Why: a thread that blocks (a lock, a queue) lets its CPU go idle, and waking an idle CPU of a virtual
machine costs tens of microseconds (60-110 us measured for a lock ping-pong after the peer slept
300 us, 5-25 us back to back), as long as many of tlkit's steps at batch 1 take. During one forward
(``worker_pool.session``) a worker polls for its next job and the caller for its chunks' end for a
short while, then blocks as before, so an idle tlkit process uses no CPU. Each poll is an atomic load
(never hoisted out of the loop) followed by the CPU's spin-wait hint (x86 ``pause``, ARM ``yield``),
which leaves the core's resources to a sibling thread.

Imported on first use (numba loads at the first pool, not at tlkit's import).
"""
import os
import platform
import time

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

# The spin-wait hint as an LLVM intrinsic: (name, its arguments).
_HINT = {"x86_64": ("llvm.x86.sse2.pause", ()), "amd64": ("llvm.x86.sse2.pause", ()),
         "aarch64": ("llvm.aarch64.hint", (1,)), "arm64": ("llvm.aarch64.hint", (1,))}.get(platform.machine().lower())

# A waiting thread gives its CPU to any other runnable thread every this many polls (sched_yield; POSIX):
# a busy neighbour, or the tlkit thread it waits for sharing its core, runs instead of the polls.
YIELD_EVERY = 64
_YIELDS = os.name == "posix"

# Runs of the polls' calibration (``polls``), the fastest kept.
CALIBRATION_RUNS = 8

_state = {"polls_per_us": None}


def int64_slot(array, index=types.int64):
    """The typing rule of an atomic access: an int64 array and an integer index into it."""
    return isinstance(array, types.Array) and array.dtype == types.int64 and isinstance(index, types.Integer)


def slot_pointer(context, builder, array_type, array, index):
    """The LLVM pointer to array[index] (an int64 array, ``index`` an LLVM integer)."""
    return builder.gep(context.make_array(array_type)(context, builder, array).data, [index])


@intrinsic
def _load_acquire(typingctx, flags, index):
    """flags[index] read with acquire ordering: reloaded from memory on every call."""
    if not int64_slot(flags, index):
        return None

    def codegen(context, builder, signature, args):
        pointer = slot_pointer(context, builder, signature.args[0], args[0], args[1])
        return builder.load_atomic(pointer, ordering="acquire", align=8)

    return types.int64(flags, index), codegen


@intrinsic
def _spin_hint(typingctx):
    """The CPU's spin-wait hint, or nothing on a CPU without one."""
    def codegen(context, builder, signature, args):
        if _HINT is not None:
            name, immediates = _HINT
            hint = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [ir.IntType(32)] * len(immediates)), name)
            builder.call(hint, [ir.Constant(ir.IntType(32), v) for v in immediates])
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def _yield_cpu(typingctx):
    """sched_yield(): the CPU to another runnable thread, if any (nothing where there is no such call)."""
    def codegen(context, builder, signature, args):
        if _YIELDS:
            call = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), "sched_yield")
            builder.call(call, [])
        return context.get_dummy_value()

    return types.none(), codegen


@njit(inline="always")
def _pause(i, every):
    """One poll's pause: the spin-wait hint, and every ``every`` polls the CPU to a runnable thread."""
    if i % every == every - 1:
        _yield_cpu()
    else:
        _spin_hint()


@intrinsic
def _store_release(typingctx, flags, index, value):
    """flags[index] = value with release ordering."""
    if not int64_slot(flags, index):
        return None

    def codegen(context, builder, signature, args):
        pointer = slot_pointer(context, builder, signature.args[0], args[0], args[1])
        builder.store_atomic(context.cast(builder, args[2], signature.args[2], types.int64), pointer,
                             ordering="release", align=8)
        return context.get_dummy_value()

    return types.none(flags, index, value), codegen


@njit(cache=True, nogil=True)
def wait_for_job(flags, posted, seen, open_, parked, spins, every=YIELD_EVERY):
    """A worker's wait between jobs: flags[parked] = seen (it holds no GIL from here on), then polls
    until flags[posted] != seen or flags[open_] == 0 (True), or ``spins`` polls (False)."""
    _store_release(flags, parked, seen)
    for i in range(spins):
        if _load_acquire(flags, posted) != seen or _load_acquire(flags, open_) == 0:
            return True
        _pause(i, every)
    return False


@njit(cache=True, nogil=True)
def wait_for_end(job, worker, parked, spins, every=YIELD_EVERY):
    """A caller's wait for its chunks: until job[0] != 0 (the last chunk done) and either the worker
    never started the job (job[1] == 0) or it is back in its wait (worker[parked] >= job[2]), so that
    the caller takes the GIL back without meeting it; or ``spins`` polls."""
    for i in range(spins):
        if _load_acquire(job, 0) != 0 and (_load_acquire(job, 1) == 0 or _load_acquire(worker, parked) >= job[2]):
            return True
        _pause(i, every)
    return False


def polls(microseconds):
    """How many polls of these waits take ``microseconds`` on this CPU (the hint's latency differs
    tenfold between CPUs), at least 1. Measured once, the fastest of CALIBRATION_RUNS runs of ~0.1 ms:
    a run during which the thread lost its CPU (another tlkit thread busy on it at the first session)
    read 4x too few polls a microsecond, and the waits timed out 4x too early."""
    if _state["polls_per_us"] is None:
        flags = np.zeros(3, np.int64)
        flags[1] = 1  # open, nothing posted: every poll runs
        wait_for_job(flags, 0, 0, 1, 2, 10)  # compiled or loaded from the cache before timing
        count, fastest = 2_000, 0.0
        for _ in range(CALIBRATION_RUNS):
            start = time.perf_counter()
            wait_for_job(flags, 0, 0, 1, 2, count)
            fastest = max(fastest, count / max((time.perf_counter() - start) * 1e6, 1e-3))
        _state["polls_per_us"] = max(1.0, fastest)
    return max(1, int(microseconds * _state["polls_per_us"]))
