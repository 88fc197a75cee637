"""torchvision's RandAugment, TrivialAugmentWide and AugMix as preprocessing layers.

The policy (``tlkit.augment.policies``) draws each image's chain; the layer hands the fusion its
parts: colour ops drawn before any geometric op (a ``SourceStep`` on the pictures the warp reads),
the chain's geometric ops as ONE matrix per image (a ``GeometricStep``: it fuses with adjacent
flips and crops, and with neighbours of the same fill and interpolation), and the remaining colour
ops after the warp. AugMix blends several chains, so it runs as its own step (one warp per chain).
Pixel values 0-255 as torchvision's uint8 path, or ``value_range`` (Keras's argument) mapped onto
it; the fill value is in the pictures' own units. Active only with training=True.
"""
import numpy as np

from tlkit.augment import policies
from tlkit.augment.layers.base import ImagePreprocessingLayer
from tlkit.augment.layers.fusion import ArrayStep, GeometricStep, SourceStep
from tlkit.augment.policy_ops import apply_colors


class _PolicyLayer(ImagePreprocessingLayer):
    """``value_range`` (low, high): the pictures' value scale, mapped to torchvision's 0-255 for the ops."""

    def __init__(self, policy, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.policy = policy
        low, high = (float(v) for v in value_range)
        if not high > low:
            raise ValueError(f"value_range must be (low, high) with high > low, got {value_range!r}.")
        self.value_range = (low, high)

    def _to_255(self, x):
        low, high = self.value_range
        return x if (low, high) == (0.0, 255.0) else (x - low) * (255.0 / (high - low))

    def _from_255(self, x):
        low, high = self.value_range
        return x if (low, high) == (0.0, 255.0) else x * ((high - low) / 255.0) + low

    def _color_step(self, kind, ops_per_image):
        if not any(ops_per_image):
            return None

        def apply(x):
            for i, ops in enumerate(ops_per_image):
                if ops:
                    x[i] = self._from_255(apply_colors(self._to_255(x[i]), ops))

        return kind(apply)

    def get_config(self):
        return {**super().get_config(), "value_range": list(self.value_range)}


class _ChainPolicyLayer(_PolicyLayer):

    def draw(self, n, h, w, training):
        if not training:
            return None
        rng = self.rng()
        plans = [self.policy.sample(rng, h, w) for _ in range(n)]
        mats = np.stack([m[:2] for _, m, _ in plans]) if plans else np.zeros((0, 2, 3))
        geometric = None
        if not np.allclose(mats, np.eye(3)[:2]):
            geometric = GeometricStep(mats, (h, w), ("padded", self.policy.fill),
                                      policies.INTERPOLATIONS[self.policy.interpolation])
        return [self._color_step(SourceStep, [b for b, _, _ in plans]), geometric,
                self._color_step(ArrayStep, [a for _, _, a in plans])]

    def get_config(self):
        return {**super().get_config(), "interpolation": self.policy.interpolation, "fill": self.policy.fill}


class RandAugment(_ChainPolicyLayer):
    """torchvision's RandAugment (num_ops ops at bin ``magnitude`` of ``num_magnitude_bins``)."""

    def __init__(self, num_ops=2, magnitude=9, num_magnitude_bins=31, interpolation="nearest", fill=0.0,
                 value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(policies.RandAugment(num_ops, magnitude, num_magnitude_bins, interpolation, fill), value_range,
                         seed, data_format, **kwargs)

    def get_config(self):
        p = self.policy
        return {**super().get_config(), "num_ops": p.num_ops, "magnitude": p.magnitude,
                "num_magnitude_bins": p.num_magnitude_bins}


class TrivialAugmentWide(_ChainPolicyLayer):
    """torchvision's TrivialAugmentWide (one op per image at a uniformly drawn bin)."""

    def __init__(self, num_magnitude_bins=31, interpolation="nearest", fill=0.0, value_range=(0, 255), seed=None,
                 data_format=None, **kwargs):
        super().__init__(policies.TrivialAugmentWide(num_magnitude_bins, interpolation, fill), value_range, seed,
                         data_format, **kwargs)

    def get_config(self):
        return {**super().get_config(), "num_magnitude_bins": self.policy.num_magnitude_bins}


class AugMix(_PolicyLayer):
    """torchvision's AugMix (severity, mixture_width, chain_depth, alpha; Dirichlet/Beta mixing)."""

    def __init__(self, severity=3, mixture_width=3, chain_depth=-1, alpha=1.0, all_ops=True, interpolation="bilinear",
                 fill=0.0, value_range=(0, 255), seed=None, data_format=None, **kwargs):
        super().__init__(policies.AugMix(severity, mixture_width, chain_depth, alpha, all_ops, interpolation, fill),
                         value_range, seed, data_format, **kwargs)
        self.fill = float(fill)
        self.policy.fill = float(self._to_255(self.fill))  # AugMix warps on the 0-255 scale

    def draw(self, n, h, w, training):
        if not training:
            return None
        rng = self.rng()
        draws = [self.policy.sample(rng, h, w) for _ in range(n)]

        def apply(x):
            x[...] = self._from_255(self.policy.apply(self._to_255(x), draws))

        return ArrayStep(apply)

    def get_config(self):
        p = self.policy
        return {**super().get_config(), "severity": p.severity, "mixture_width": p.mixture_width,
                "chain_depth": p.chain_depth, "alpha": p.alpha, "all_ops": p.all_ops, "interpolation": p.interpolation,
                "fill": self.fill}
