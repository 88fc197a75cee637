"""Small LLVM-level helpers for numba kernels.

``stack_floats(N)``: a float32 pointer to N floats in the calling kernel's stack frame (N a compile-time
constant, e.g. a module-level int). Kernels view it with ``numba.carray(stack_floats(N), N)`` to keep
per-pass sums there: LLVM then knows no array overlaps them, so the loop over channels vectorizes with
the sums in registers, where a heap scratch array (which may alias the inputs) would not.

``float32_from_bits(i)``: the float32 whose bit pattern is the low 32 bits of integer i (a register
move, so loops using it still vectorize; gate_math builds 2**n in the exponent bits with it).

``serial_kernel``: ``njit(cache=True, nogil=True)`` whose array arguments are declared not to overlap
(LLVM ``noalias``), as numba declares them for the bodies of its parallel loops. Without it LLVM must
assume an output may overlap an input and vectorizes such a kernel's loops less (a Winograd input
transform ran 1.8x slower); with ``parallel=True`` instead, the kernel takes about 4x as long to compile.
Only for kernels whose array arguments never share memory.
"""
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.compiler import Compiler
from numba.extending import intrinsic


class _NoAliasCompiler(Compiler):
    """numba's default pipeline with the ``noalias`` flag set (numba sets it itself only for the
    functions its parallel loops are outlined into)."""

    def define_pipelines(self):
        self.state.flags.noalias = True
        return super().define_pipelines()


def serial_kernel(function):
    """Decorator: see the module's docstring."""
    return njit(cache=True, nogil=True, pipeline_class=_NoAliasCompiler)(function)


@intrinsic
def stack_floats(typingctx, count):
    if not isinstance(count, types.IntegerLiteral):
        return None  # the size must be known when the kernel compiles
    size = count.literal_value

    def codegen(context, builder, signature, args):
        return cgutils.alloca_once(builder, context.get_value_type(types.float32), size=size)
    return types.CPointer(types.float32)(count), codegen


@intrinsic
def float32_from_bits(typingctx, bits):
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = context.cast(builder, args[0], signature.args[0], types.int32)
        return builder.bitcast(low, ir.FloatType())
    return types.float32(bits), codegen
