"""A worker's job table: chunks handed to a worker thread as native calls, so that it never takes the GIL
during a ``worker_pool.session``.

Why: a worker running a Python chunk waits for the GIL, which the caller holds until its own kernel
releases it, and a thread waiting for the GIL sleeps on a futex: chunks started 15-40 us after the
caller's (BENCHMARKS.md, "Batch 1: both threads on every step"). Here the worker stays in one nogil
numba call (``serve``) for the whole session: it polls its table, runs the job posted there, marks it
done, and returns to Python only when a Python job is posted, the session ends or it polled SPIN_US
without a job.

A job is one row of int64s (``Worker.jobs``): STATE, then FN, the address of a numba ``cfunc``
``void(int64*)`` (kernels/jobs.py; taken at run time, so this loop stays cacheable), then its
arguments (buffer addresses as ints, sizes, the chunk's range; floats stored through a float64 view),
which the cfunc reads through the pointer it is given. One job at a time per worker: the caller
posts (STATE EMPTY -> POSTED, a store-release), runs its own chunk, then either takes the job back
(compare-and-swap POSTED -> EMPTY: the worker never started it, e.g. it was blocked or off its CPU;
the caller runs it itself) or waits until the worker marked it DONE. So no job is ever left posted,
also when the caller's own chunk raised. Addresses are written per process, per call: a table never
outlives the process that filled it (a forked child builds its own pool).

    state = post_xxx(worker.jobs, ...)     # kernels/jobs.py: fills the row, STATE = POSTED
    ... the caller's own chunk ...
    if finish(worker.jobs, spins):         # True: taken back, the caller runs the chunk itself

A job's cfunc is loaded from numba's cache by every process after the first: numba keys a closure's cache
entry on its cells' pickled bytes, and a numba dispatcher pickles with a random per-process id. So a cfunc
closes over no kernel: it closes over the kernel's key (``kernel_key``, the same string in every process)
and calls it as ``call_kernel(key, *args)``, resolved while the cfunc compiles.
"""
import functools
import hashlib
import pathlib
import sys

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from tlkit.utils.spin import YIELD_EVERY, _load_acquire, _pause, _store_release, int64_slot, slot_pointer

# Row layout: the job's state, its cfunc's address, then its arguments (ROW - ARGS int64s at most).
STATE, FN, ARGS, ROW = 0, 1, 2, 48
EMPTY, POSTED, TAKEN, DONE = 0, 1, 2, 3


@intrinsic
def _compare_swap(typingctx, table, index, expected, value):
    """table[index] = value if it was expected (sequentially consistent); whether it was."""
    if not int64_slot(table, index):
        return None

    def codegen(context, builder, signature, args):
        pointer = slot_pointer(context, builder, signature.args[0], args[0], args[1])
        old = context.cast(builder, args[2], signature.args[2], types.int64)
        new = context.cast(builder, args[3], signature.args[3], types.int64)
        pair = builder.cmpxchg(pointer, old, new, "seq_cst", "seq_cst")
        return builder.extract_value(pair, 1)

    return types.boolean(table, index, expected, value), codegen


@intrinsic
def _call_job(typingctx, table, index):
    """Calls the cfunc whose address is table[FN] with a pointer to table[index] (its arguments)."""
    if not int64_slot(table, index):
        return None

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        i64 = ir.IntType(64)
        function_type = ir.FunctionType(ir.VoidType(), [i64.as_pointer()])
        address = builder.load(builder.gep(array.data, [ir.Constant(i64, FN)]))
        builder.call(builder.inttoptr(address, function_type.as_pointer()), [builder.gep(array.data, [args[1]])])
        return context.get_dummy_value()

    return types.none(table, index), codegen


@njit(cache=True, nogil=True)
def serve(flags, table, posted, open_, parked, opened, seen, spins, every=YIELD_EVERY):
    """A worker's session loop: flags[parked] = seen (it holds no GIL from here on), then runs every job
    posted in ``table`` until flags[posted] != seen (a Python job), flags[open_] == 0 (the sessions
    ended) or ``spins`` polls without a job since the last one or the last session opened (flags[opened]
    counts them). Returns the number of jobs it ran."""
    _store_release(flags, parked, seen)
    ran = 0
    i = 0
    sessions = _load_acquire(flags, opened)
    while i < spins:
        if _load_acquire(flags, posted) != seen or _load_acquire(flags, open_) == 0:
            break
        if _load_acquire(flags, opened) != sessions:
            sessions = _load_acquire(flags, opened)
            i = 0
        if _load_acquire(table, STATE) == POSTED and _compare_swap(table, STATE, POSTED, TAKEN):
            _call_job(table, ARGS)
            _store_release(table, STATE, DONE)
            ran += 1
            i = 0
            continue
        _pause(i, every)
        i += 1
    return ran


@njit(cache=True, nogil=True)
def finish(table, every=YIELD_EVERY):
    """The caller's end of a posted job: True when it took the job back (the worker had not started it:
    the caller runs the chunk itself), False once the worker marked it done. The table is EMPTY after."""
    if _compare_swap(table, STATE, POSTED, EMPTY):
        return True
    i = 0
    while _load_acquire(table, STATE) != DONE:  # started: the worker runs it without the GIL to its end
        _pause(i, every)
        i += 1
    _store_release(table, STATE, EMPTY)
    return False


def _pointer_at(numba_type, llvm_type):
    @intrinsic
    def pointer(typingctx, address):
        """The pointer at an integer address."""
        if not isinstance(address, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            return builder.inttoptr(args[0], llvm_type.as_pointer())

        return types.CPointer(numba_type)(address), codegen
    return pointer


# The float32 / int64 pointer at an integer address (a job's buffers).
float32_pointer = _pointer_at(types.float32, ir.FloatType())
int64_pointer = _pointer_at(types.int64, ir.IntType(64))


@intrinsic
def float64_pointer(typingctx, pointer):
    """An int64 pointer read as a float64 one (a job's float arguments)."""
    if not isinstance(pointer, types.CPointer):
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType().as_pointer())

    return types.CPointer(types.float64)(pointer), codegen


@intrinsic
def store_posted(typingctx, table):
    """table[STATE] = POSTED with release ordering: the row's arguments are visible before it."""
    if not int64_slot(table):
        return None

    def codegen(context, builder, signature, args):
        pointer = slot_pointer(context, builder, signature.args[0], args[0], ir.Constant(ir.IntType(64), STATE))
        builder.store_atomic(ir.Constant(ir.IntType(64), POSTED), pointer, ordering="release", align=8)
        return context.get_dummy_value()

    return types.none(table), codegen


_kernels = {}  # kernel_key -> numba dispatcher, for call_kernel's typing


@functools.cache
def _sources_stamp(folder):
    """The sizes and modification times of the .py files in ``folder``, hashed."""
    digest = hashlib.sha256()
    for path in sorted(pathlib.Path(folder).glob("*.py")):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def kernel_key(kernel):
    """A name of the numba dispatcher ``kernel`` that is the same in every process that makes it: its module,
    qualified name, closure cells (a kernel made by a factory: ints, floats, bools, strings only) and a stamp
    of the sources of its package, so that a job cached against other kernel sources is not loaded
    (numba stamps only the cfunc's own file). Registered for ``call_kernel``."""
    function = kernel.py_func
    cells = tuple(cell.cell_contents for cell in function.__closure__ or ())
    if not all(type(c) in (int, float, bool, str) for c in cells):
        raise TypeError(f"{function.__qualname__} closes over values with no stable name: {cells!r}")
    folder = pathlib.Path(sys.modules[function.__module__].__file__).parent
    key = f"{function.__module__}:{function.__qualname__}{cells if cells else ''}@{_sources_stamp(folder)}"
    _kernels.setdefault(key, kernel)
    return key


def call_kernel(key, *args):
    """In a job's cfunc: kernel(*args), ``key`` a kernel_key closed over (a compile-time string)."""
    raise NotImplementedError("call_kernel is called from numba-compiled code only")


@overload(call_kernel, prefer_literal=True)
def _call_kernel(key, *args):
    if not isinstance(key, types.StringLiteral):
        return None
    kernel = _kernels[key.literal_value]

    def call(key, *args):
        return kernel(*args)
    return call


__all__ = ["ARGS", "call_kernel", "kernel_key", "DONE", "EMPTY", "POSTED", "ROW", "STATE", "TAKEN", "finish", "float32_pointer",
           "float64_pointer", "int64_pointer", "serve", "store_posted"]
