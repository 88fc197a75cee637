"""The LSTM's whole time loop over one block of the batch as one numba call, forward and backward: each
step's recurrent product is numba's ``np.dot`` (scipy's BLAS, ``scipy.linalg.cython_blas``) and its gate
maths the kernels of recurrent_cells.py, with no return to Python between steps. A loop that returns to
Python twice a step pays the call overhead and, with two blocks on two threads, waits for the GIL turn
by turn (the per-step products, 32 x 256 @ 256 x 1024, take ~0.2 ms, so this is ~10% of a step).

recurrent.py uses these when ``available()`` (scipy installed), else its Python loops; both give the
same results (the same BLAS product and gate kernels).
"""
import numpy as np
from numba import njit

from tlkit.engine.kernels import recurrent_cells as cells
from tlkit.utils import threads

_state = {"available": None}


def available():
    """True when numba's np.dot can run, i.e. scipy's BLAS is importable; its BLAS (loaded now, maybe
    after tlkit limited the others) is set to one thread too."""
    if _state["available"] is None:
        try:
            import scipy.linalg.cython_blas  # noqa: F401  (numba's np.dot calls it)
        except ImportError:
            _state["available"] = False
        else:
            threads.limit_blas(new_libraries=True)
            _state["available"] = True
    return _state["available"]


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_forward_loop(gates, recurrent_kernel, bias, h, c, out, m, act, ract, zero_out, rec, lo, hi):
    """All steps of ``recurrent._forward_steps`` for samples lo:hi of an LSTM without recurrent dropout.
    The sequences are the whole batch's C-contiguous arrays, sliced per step here: a step's rows of a
    C array stay typed C-contiguous, so the gate kernels vectorize (a strided block would not).
    ``gates`` holds the input projection and becomes the activated gates in place; rec: (hi-lo, 4u) scratch."""
    for t in range(gates.shape[0]):
        np.dot(h[t][lo:hi], recurrent_kernel, rec)
        prev_out = out[t - 1][lo:hi] if t > 0 else zero_out
        cells.lstm_step_forward(gates[t][lo:hi], rec, bias, c[t][lo:hi], h[t][lo:hi], prev_out, m[t][lo:hi], act,
                                ract, gates[t][lo:hi], c[t + 1][lo:hi], h[t + 1][lo:hi], out[t][lo:hi])


@njit(cache=True, nogil=True, error_model="numpy")
def lstm_backward_loop(d_out, has_d_out, zeros, carry_o, carry_h, carry_c, gates, c, m, act, ract, dz, rkt, back,
                       lo, hi):
    """All steps of ``recurrent._backward_steps`` for samples lo:hi of an LSTM without recurrent dropout
    (whole-batch sequences, as ``lstm_forward_loop``; carry_* and zeros are the block's rows). ``d_out``
    is the output sequence's gradient when ``has_d_out``, else any (1, batch, units) array (not read)."""
    for t in range(gates.shape[0] - 1, -1, -1):
        dout = d_out[t][lo:hi] if has_d_out else zeros
        dzt = dz[t][lo:hi]
        cells.lstm_step_backward(dout, carry_o, carry_h, carry_c, gates[t][lo:hi], c[t + 1][lo:hi], c[t][lo:hi],
                                 m[t][lo:hi], act, ract, dzt)
        np.dot(dzt, rkt, back)
        carry_h += back
