"""torchvision's RandAugment, TrivialAugmentWide and AugMix as preprocessing layers.

The policy (``tlkit.augment.policies``) draws each image's chain; the layer hands the fusion its
parts: colour ops drawn before any geometric op (a ``SourceStep`` on the pictures the warp reads),
the chain's geometric ops as ONE matrix per image (a ``GeometricStep``: it fuses with adjacent
flips and crops, and with neighbours of the same fill and interpolation), and the remaining colour
ops after the warp. AugMix blends several chains, so it runs as its own step (one warp per chain).
Pixel values 0-255, as torchvision's uint8 path; active only with training=True.
"""
import numpy as np

from tlkit.augment import policies
from tlkit.augment.layers.base import ImagePreprocessingLayer
from tlkit.augment.layers.fusion import ArrayStep, GeometricStep, SourceStep
from tlkit.augment.policy_ops import apply_colors


def _color_step(kind, ops_per_image):
    if not any(ops_per_image):
        return None

    def apply(x):
        for i, ops in enumerate(ops_per_image):
            if ops:
                x[i] = apply_colors(x[i], ops)

    return kind(apply)


class _ChainPolicyLayer(ImagePreprocessingLayer):
    def __init__(self, policy, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.policy = policy

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
        return [_color_step(SourceStep, [b for b, _, _ in plans]), geometric,
                _color_step(ArrayStep, [a for _, _, a in plans])]

    def get_config(self):
        return {**super().get_config(), "interpolation": self.policy.interpolation, "fill": self.policy.fill}


class RandAugment(_ChainPolicyLayer):
    """torchvision's RandAugment (num_ops ops at bin ``magnitude`` of ``num_magnitude_bins``)."""

    def __init__(self, num_ops=2, magnitude=9, num_magnitude_bins=31, interpolation="nearest", fill=0.0, seed=None,
                 data_format=None, **kwargs):
        super().__init__(policies.RandAugment(num_ops, magnitude, num_magnitude_bins, interpolation, fill), seed,
                         data_format, **kwargs)

    def get_config(self):
        p = self.policy
        return {**super().get_config(), "num_ops": p.num_ops, "magnitude": p.magnitude,
                "num_magnitude_bins": p.num_magnitude_bins}


class TrivialAugmentWide(_ChainPolicyLayer):
    """torchvision's TrivialAugmentWide (one op per image at a uniformly drawn bin)."""

    def __init__(self, num_magnitude_bins=31, interpolation="nearest", fill=0.0, seed=None, data_format=None,
                 **kwargs):
        super().__init__(policies.TrivialAugmentWide(num_magnitude_bins, interpolation, fill), seed, data_format,
                         **kwargs)

    def get_config(self):
        return {**super().get_config(), "num_magnitude_bins": self.policy.num_magnitude_bins}


class AugMix(ImagePreprocessingLayer):
    """torchvision's AugMix (severity, mixture_width, chain_depth, alpha; Dirichlet/Beta mixing)."""

    def __init__(self, severity=3, mixture_width=3, chain_depth=-1, alpha=1.0, all_ops=True, interpolation="bilinear",
                 fill=0.0, seed=None, data_format=None, **kwargs):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        self.policy = policies.AugMix(severity, mixture_width, chain_depth, alpha, all_ops, interpolation, fill)

    def draw(self, n, h, w, training):
        if not training:
            return None
        rng = self.rng()
        draws = [self.policy.sample(rng, h, w) for _ in range(n)]

        def apply(x):
            x[...] = self.policy.apply(x, draws)

        return ArrayStep(apply)

    def get_config(self):
        p = self.policy
        return {**super().get_config(), "severity": p.severity, "mixture_width": p.mixture_width,
                "chain_depth": p.chain_depth, "alpha": p.alpha, "all_ops": p.all_ops, "interpolation": p.interpolation,
                "fill": p.fill}
