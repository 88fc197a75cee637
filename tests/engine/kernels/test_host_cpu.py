"""The CPU-keyed rules (host_cpu.py) fed fake CPUs: each rule's choice on AMD Zen 4 (AVX-512 on 256-bit
units), an Intel Xeon (AVX-512 at full width) and an AVX2-only CPU, whatever CPU runs the tests."""
import numpy as np
import pytest

from tlkit.engine.kernels import gemm_blocks, host_cpu, recurrent_products

ZEN4 = ("znver4", {"avx512f": True, "avx2": True, "fma": True})
XEON = ("sapphirerapids", {"avx512f": True, "avx2": True, "fma": True, "amx-tile": True})
# LLVM names this session's KVM Xeon "rocketlake" (its CPUID model), with the features above
XEON_KVM = ("rocketlake", XEON[1])
AVX2 = ("znver3", {"avx512f": False, "avx2": True, "fma": True})
# a Zen 4 as an LLVM older than 16 names it
ZEN4_OLD_LLVM = ("znver3", ZEN4[1])


def test_lanes_and_width_follow_the_features_and_the_name():
    assert [host_cpu.lanes(c) for c in (ZEN4, XEON, XEON_KVM, AVX2)] == [16, 16, 16, 8]
    assert [host_cpu.full_width(c) for c in (ZEN4, XEON, XEON_KVM, AVX2)] == [False, True, True, False]
    assert host_cpu.lanes(ZEN4_OLD_LLVM) == 16 and not host_cpu.full_width(ZEN4_OLD_LLVM)
    name, features = host_cpu.host_cpu()
    assert isinstance(name, str) and host_cpu.lanes() == (16 if features.get("avx512f") else 8)


@pytest.mark.parametrize("k, f, zen4, xeon", [
    (672, 112, (14, 1), (6, 4)),    # EfficientNet's 672 -> 112 project: 14 x 1 pads least, slow on a Xeon
    (256, 80, (14, 1), (8, 3)),     # F = 80
    (64, 16, (14, 1), (14, 1)),     # one vector: 14 x 1 on both
    (144, 24, (12, 2), (12, 2)),    # F = 24 pads to 32 with 12 x 2 on both
    (256, 48, (8, 3), (8, 3)),
    (2048, 512, (6, 4), (6, 4)),
])
def test_block_shape_by_cpu(k, f, zen4, xeon):
    assert gemm_blocks.block_shape(k, f, cpu=ZEN4) == zen4
    assert gemm_blocks.block_shape(k, f, cpu=XEON) == xeon
    assert gemm_blocks.block_shape(k, f, cpu=AVX2) == (6, 2)


def test_zen4_keeps_the_fewest_padded_columns_rule():
    for f in range(1, 300):
        mr, nv = gemm_blocks.block_shape(256, f, cpu=ZEN4)
        assert -(-f // (nv * 16)) * nv * 16 == min(-(-f // (v * 16)) * v * 16 for _, v in gemm_blocks.SHAPES[16])


def test_recurrent_block_shape_by_cpu():
    # LSTM(256)'s 32-row blocks: forward 8 x 3, backward 6 x 4 on both
    for cpu in (ZEN4, XEON):
        assert recurrent_products.block_shape(32, 256, 1024, cpu=cpu) == (8, 3)
        assert recurrent_products.block_shape(32, 1024, 256, cpu=cpu) == (6, 4)
    # 28 rows on 112 columns: 14 x 1 computes the fewest, but runs at ~0.6x on a Xeon
    assert recurrent_products.block_shape(28, 64, 112, cpu=ZEN4) == (14, 1)
    assert recurrent_products.block_shape(28, 64, 112, cpu=XEON) == (6, 4)


def test_row_passes_by_cpu():
    assert gemm_blocks.ROWS_BYTES[host_cpu.full_width(ZEN4)] == 128 << 10
    assert gemm_blocks.ROWS_BYTES[host_cpu.full_width(XEON)] == 512 << 10


@pytest.mark.parametrize("k, f", [(2048, 512), (1536, 256), (49, 1000)])
def test_deep_products_match_float64_with_this_cpus_row_passes(k, f):
    # rows past one pass of ROWS_BYTES (and a block) on either CPU's passes
    m = (512 << 10) // (4 * k) * 2 + 7
    rng = np.random.default_rng(k)
    x = rng.standard_normal((m, k), dtype=np.float32)
    w = rng.standard_normal((k, f), dtype=np.float32)
    b = rng.standard_normal(f, dtype=np.float32)
    y = np.full((m, f), np.nan, np.float32)
    gemm_blocks.product_epilogue(x, gemm_blocks.pack(w, b), y, None, 0.0, np.inf)
    ref = np.maximum(x.astype(np.float64) @ w + b, 0)
    np.testing.assert_allclose(y, ref, atol=1e-4 * np.sqrt(k) * 4, rtol=1e-4)


def test_weight_gradient_chunks_one_a_thread_at_full_width_only():
    from tlkit.utils import threads

    got = [recurrent_products.weight_grad_chunks(c) for c in (ZEN4, ZEN4_OLD_LLVM, XEON, XEON_KVM, AVX2)]
    assert got == [threads.CHUNKS_PER_THREAD, threads.CHUNKS_PER_THREAD, 1, 1, threads.CHUNKS_PER_THREAD]
    assert threads.CHUNKS_PER_THREAD > 1  # the rule keys a difference
