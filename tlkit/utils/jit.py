"""``njit`` for tlkit's kernels: numba's, with LLVM's SLP vectorizer on while tlkit's kernels compile.

Why: numba leaves the SLP (straight-line) vectorizer off by default (numba PR #8852, after
miscompilations in older LLVM releases); tlkit's kernels keep several output pixels or channel
lanes in local variables per loop step (Winograd transforms, depthwise windows, fused epilogues),
which only SLP turns into vector instructions. With it, the whole-network forwards measured
faster (BENCHMARKS.md, "Numba's SLP vectorizer"); every tlkit test runs on the code it produces.

Only tlkit's kernels change: the flag is set while one of them compiles (under numba's compiler
lock, so no other thread's compile sees it) and restored after, so a user's own numba code keeps
numba's default. A user's NUMBA_SLP_VECTORIZE, when set, wins for tlkit's kernels too.
Cached kernels were compiled the way they were; a new tlkit version rewrites its files, which
makes numba compile them again.

    from tlkit.utils.jit import njit

    @njit(cache=True, nogil=True)
    def kernel(...): ...
"""
import os

import numba
from numba.core.compiler_lock import global_compiler_lock

SLP_ENV = "NUMBA_SLP_VECTORIZE"


def njit(*args, **options):
    """``numba.njit(*args, **options)`` whose compiles run with the SLP vectorizer (see the module doc)."""
    if args and callable(args[0]):
        return _with_slp(numba.njit(**options)(args[0]))
    return lambda function: _with_slp(numba.njit(*args, **options)(function))


def _with_slp(dispatcher):
    compile_plain = dispatcher.compile

    def compile_with_slp(signature):
        with global_compiler_lock:
            if SLP_ENV in os.environ:  # the user's choice
                return compile_plain(signature)
            numba.core.config.reload_config()  # a changed NUMBA_* variable is read now, not inside the compile
            before = numba.config.SLP_VECTORIZE
            numba.config.SLP_VECTORIZE = 1
            try:
                return compile_plain(signature)
            finally:
                numba.config.SLP_VECTORIZE = before

    # numba's dispatcher compiles through this attribute, both on a call from Python and when another
    # kernel calls it.
    dispatcher.compile = compile_with_slp
    return dispatcher
