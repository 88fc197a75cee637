"""What the kernels' CPU-specific rules are keyed on: LLVM's name for the host CPU and its features (as
numba compiles for them; numba's cache is keyed on both, so a kernel compiled with a rule's constant never
runs on a CPU another rule serves). Never a timing taken at run time.

    lanes()        # 16 with AVX-512, else 8: float32 lanes of the widest vectors
    full_width()   # AVX-512 run at full width (two 512-bit FMA units: Intel Xeon), not on 256-bit units
    rule(cpu=("znver4", {"avx512f": True}))   # every function takes a (name, features) pair for tests
"""
import functools

from llvmlite import binding as llvm

__all__ = ["HALF_WIDTH", "full_width", "host_cpu", "lanes"]

# CPUs (LLVM's names) whose AVX-512 runs on 256-bit units, one 512-bit FMA a cycle: AMD Zen 4, where most
# rules were first measured ("znver3" with AVX-512 is a Zen 4 named by an LLVM older than 16: Zen 3 has
# none). Other AVX-512 CPUs (Intel Xeon: two 512-bit FMA units a core, 2 MB of L2) run twice the FMAs a
# cycle, so loads, cache traffic and BLAS's kernels weigh differently there (measured on a Xeon only).
HALF_WIDTH = ("znver3", "znver4")


@functools.cache
def host_cpu():
    """(LLVM's name for this CPU, its features {name: bool})."""
    return llvm.get_host_cpu_name(), dict(llvm.get_host_cpu_features())


def lanes(cpu=None):
    """Float32 lanes of the widest vectors the CPU runs: 16 with AVX-512, 8 otherwise (``cpu``: a
    (name, features) pair as host_cpu's, this CPU's by default)."""
    return 16 if (host_cpu() if cpu is None else cpu)[1].get("avx512f", False) else 8


def full_width(cpu=None):
    """Whether the CPU runs 16-lane FMAs at full width: AVX-512, and not one of HALF_WIDTH."""
    name, features = host_cpu() if cpu is None else cpu
    return bool(features.get("avx512f", False)) and not name.startswith(HALF_WIDTH)
