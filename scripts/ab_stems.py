"""The stem routes of the tlkit revision on the path against the ones of a base revision, in one
process, rounds interleaved (before, after, before, ...), same model and input.

    python scripts/ab_stems.py --base 0e01cc2                              # SqueezeNet b32, MobileNetV2 b32
    python scripts/ab_stems.py --base 0e01cc2 --models vgg16:8 efficientnet_lite0:32 --rounds 6

"before" runs the base revision's stem routes: direct_conv's crossover for strided convs (MAX_K
before MAX_K_STRIDED existed) and conv_pool_bands' pool kernel and band size, loaded from ``git show BASE:...`` as a second module and swapped in; the rest of the
engine is the revision on the path for both. Each timing: max(2, 64 // batch) predict_on_batch
calls; the median img/s per route, every round's figure, and the largest difference of the outputs
relative to their largest value.
"""
import argparse
import importlib.util
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import machine

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def base_module(base, path, name):
    """The module at ``path`` as the base revision has it, imported under ``name``."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{base}:{path}"], capture_output=True, text=True,
                            check=True).stdout
    folder = pathlib.Path(tempfile.mkdtemp(prefix="ab_stems_"))
    (folder / f"{name}.py").write_text(source)  # numba caches beside it, apart from the tree's kernels
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(name):
    from tlkit import zoo

    if name == "efficientnet_lite0":
        return zoo.EfficientNetLite0(weights=None)
    if name == "vgg16":
        return zoo.VGG16(weights=None, include_top=False, input_shape=(224, 224, 3))
    return {"squeezenet": zoo.SqueezeNet, "mobilenet_v2": zoo.MobileNetV2, "resnet50": zoo.ResNet50}[name](
        weights=None)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True, help="the revision whose stem routes run as 'before'")
    p.add_argument("--models", nargs="+", default=["squeezenet:32", "mobilenet_v2:32"], help="name:batch")
    p.add_argument("--rounds", type=int, default=6)
    args = p.parse_args()
    from tlkit.engine.kernels import conv_pool_bands, direct_conv

    old_bands = base_module(args.base, "tlkit/engine/kernels/conv_pool_bands.py", "ab_old_conv_pool_bands")
    old_direct = base_module(args.base, "tlkit/engine/kernels/direct_conv.py", "ab_old_direct_conv")
    old_strided = getattr(old_direct, "MAX_K_STRIDED", old_direct.MAX_K)
    settings = {"before": (old_strided, old_bands.pool_band_bias_relu, old_bands.BAND_BYTES),
                "after": (direct_conv.MAX_K_STRIDED, conv_pool_bands.pool_band_bias_relu, conv_pool_bands.BAND_BYTES)}

    def use(route):
        direct_conv.MAX_K_STRIDED, conv_pool_bands.pool_band_bias_relu, conv_pool_bands.BAND_BYTES = settings[route]

    load_before = machine.loadavg()
    lines = []
    for spec in args.models:
        name, batch = spec.split(":")
        batch = int(batch)
        model = build(name)
        model.trainable = False
        x = np.random.default_rng(0).standard_normal((batch, 224, 224, 3)).astype(np.float32)
        outputs = {}
        for route in settings:  # warm-up: compilation, each route's buffers
            use(route)
            outputs[route] = model.predict_on_batch(x).copy()
            model.predict_on_batch(x)
        diff = np.abs(outputs["after"] - outputs["before"]).max() / np.abs(outputs["before"]).max()
        reps = max(2, 64 // batch)
        rates = {route: [] for route in settings}
        for _ in range(args.rounds):
            for route in settings:
                use(route)
                start = time.perf_counter()
                for _ in range(reps):
                    model.predict_on_batch(x)
                rates[route].append(batch * reps / (time.perf_counter() - start))
        use("after")
        med = {route: statistics.median(r) for route, r in rates.items()}
        lines.append(f"{name} batch {batch}: outputs differ by {diff:.1e} (relative); after / before "
                     f"{med['after'] / med['before']:.3f}x")
        for route, r in rates.items():
            lines.append(f"  {route:6s} median {med[route]:7.1f} img/s  rounds {[round(v, 1) for v in r]}")
        print("\n".join(lines[-3:]), flush=True)
    print(f"{machine.header(load_before=load_before)}; {args.rounds} interleaved rounds")


if __name__ == "__main__":
    sys.exit(main())
