"""Memory numba's runtime holds that tlkit's forwards never use, given back (issue 16's bar: the peak
resident memory of each forward no higher than the best peer's).

    numba_memory.install()        # once per process, at `import tlkit`; TLKIT_NUMBA_MEMORY=keep: off

1. LLVM's machine code. libllvmlite.so is all of LLVM (~170 MB of file); every page of it that runs
   stays in the process's resident set: ~36 MB at `import numba` (LLVM's static initialisers), ~45 MB
   more while numba compiles its runtime's own functions at the first kernel, ~10 MB per cached
   kernel loaded. Loaded kernels never run LLVM again. So, on Linux, those pages are handed back
   (madvise MADV_DONTNEED on the library's read-only mappings that hold no private page, i.e. code
   and constants, never relocated data) when numba's compiler lock is released (its event API), and
   also after each LLVM call made while a cached kernel or numba's runtime loads (not during a
   compilation: there every call runs the code again). The pages stay in the page cache; the next
   LLVM call faults back in what it touches.
2. scipy's BLAS bindings. When numba's numpy support first loads (at the first kernel), it imports
   scipy.linalg.cython_blas only to check that BLAS exists (~17 MB: scipy.linalg, its own OpenBLAS and
   f2py modules). tlkit's kernels call no BLAS inside numba. That one check is answered "no", only
   when scipy.linalg is not loaded yet: numba then sums the inner products of np.correlate / np.convolve
   with a loop; any np.dot or np.linalg call in a jitted function still imports scipy as usual.
"""
import ctypes
import os
import re
import sys

MADV_DONTNEED = 4
LIBRARY = "libllvmlite"
OFF_VALUES = ("keep", "0", "off")
_state = {"installed": False, "ranges": None, "compiling": 0}


def llvm_code_ranges():
    """(address, length) of libllvmlite's read-only mappings holding no private (written) page."""
    ranges, current = [], None
    with open("/proc/self/smaps") as f:
        for line in f:
            if re.match(r"[0-9a-f]+-[0-9a-f]+ ", line):
                fields = line.split()
                current = None
                if len(fields) > 5 and os.path.basename(fields[5]).startswith(LIBRARY) and "w" not in fields[1]:
                    current = [int(x, 16) for x in fields[0].split("-")]
            elif current and line.startswith("Anonymous:") and int(line.split()[1]) == 0:
                ranges.append((current[0], current[1] - current[0]))
    return ranges


def release_llvm_code():
    """Unmap LLVM's resident code pages from this process (they stay in the page cache)."""
    if _state["ranges"] is None:  # looked up once, after `import numba` loaded the library (never unloaded)
        _state["ranges"] = llvm_code_ranges()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
        _state["madvise"] = libc.madvise
    for address, length in _state["ranges"]:
        _state["madvise"](address, length, MADV_DONTNEED)


class _ScipyBlasCheck:
    """A meta-path finder that refuses scipy to numba.np.arraymath's import-time BLAS check only."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        if fullname.partition(".")[0] != "scipy" or "scipy.linalg" in sys.modules:
            return None  # not scipy, or its BLAS bindings are a small step from what is loaded
        frame = sys._getframe(1)
        while frame is not None:
            code = frame.f_code
            if code.co_name == "_check_blas" and frame.f_globals.get("__name__") == "numba.np.arraymath":
                if _ScipyBlasCheck in sys.meta_path:
                    sys.meta_path.remove(_ScipyBlasCheck)  # asked once
                raise ModuleNotFoundError(f"{fullname}: not loaded for numba's BLAS check (tlkit.utils.numba_memory)")
            frame = frame.f_back
        return None


def install(environ=os.environ):
    """Set both up, once; a no-op off Linux or with TLKIT_NUMBA_MEMORY=keep."""
    if _state["installed"] or not sys.platform.startswith("linux") \
            or environ.get("TLKIT_NUMBA_MEMORY", "").lower() in OFF_VALUES:
        return
    _state["installed"] = True
    if "numba.np.arraymath" not in sys.modules and "scipy.linalg.cython_blas" not in sys.modules:
        sys.meta_path.insert(0, _ScipyBlasCheck)
    from numba.core import event
    from numba.core.compiler_lock import global_compiler_lock

    class Compiling(event.Listener):
        def on_start(self, ev):
            _state["compiling"] += 1

        def on_end(self, ev):
            _state["compiling"] -= 1

    class CompilerLock(event.Listener):
        def on_start(self, ev):
            pass

        def on_end(self, ev):
            if not global_compiler_lock.is_locked():  # the outermost hold ended
                release_llvm_code()

    class LLVMCall(event.Listener):
        def on_start(self, ev):
            pass

        def on_end(self, ev):
            if not _state["compiling"] and global_compiler_lock.is_locked():
                release_llvm_code()  # a cached kernel or numba's runtime is loading

    event.register("numba:compile", Compiling())
    event.register("numba:compiler_lock", CompilerLock())
    event.register("numba:llvm_lock", LLVMCall())
    release_llvm_code()  # what `import numba` ran
