"""torchvision's automatic augmentation policies: RandAugment, TrivialAugmentWide, AugMix.

Each policy has three parts, apart (the albumentations style): ``sample(rs, h, w)`` draws one
image's parameters (the chains of (op, magnitude) pairs), ``plan_chain`` (policy_ops) turns a
chain into colour ops before the warp, one matrix and colour ops after it, and ``apply_plans``
(a pure function of the images and the plans) runs a batch: colour ops, then every image's
geometric ops in ONE pass of the fused warp kernel, then colour ops. The same classes are
``Pipeline`` steps (their matrix folds into the pipeline's one warp) and back the Keras-style
layers of ``tlkit.augment.layers.policies``.

Pixel values are 0-255 (uint8 pictures, or floats on that scale), as torchvision's uint8 path.

    >>> batch = Pipeline([RandomFlip("horizontal"), RandAugment(num_ops=2, magnitude=9)])(images, seed=0)
"""
import numpy as np

from tlkit.augment import affine
from tlkit.augment.policy_ops import apply_colors, augmentation_space, plan_chain, sample_ops

INTERPOLATIONS = {"nearest": 0, "bilinear": 1}


def _check(value, name, low, high=None):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low \
            or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a whole number {bound}, got {value!r}.")
    return int(value)


def apply_plans(images, plans, order=0, fill=0.0, parallel=True):
    """(N, H, W, C) images through one plan per image (before, 3x3 matrix, after) -> float32."""
    images = np.asarray(images)
    x = images
    if any(before for before, _, _ in plans):
        x = images.astype(np.float32)
        for i, (before, _, _) in enumerate(plans):
            if before:
                x[i] = apply_colors(x[i], before)
    mats = np.stack([m[:2] for _, m, _ in plans]) if plans else np.zeros((0, 2, 3))
    if np.allclose(mats, np.eye(3)[:2]):
        out = np.array(x, np.float32)
    else:
        out = affine.warp_padded(x, mats, fill, order, parallel=parallel)
    for i, (_, _, after) in enumerate(plans):
        if after:
            out[i] = apply_colors(out[i], after)
    return out


class _ChainPolicy:
    """A policy of one chain of ops per image (RandAugment, TrivialAugmentWide)."""

    space = "rand"

    def __init__(self, num_magnitude_bins, interpolation, fill):
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be 'nearest' or 'bilinear', got {interpolation!r}.")
        self.num_magnitude_bins = _check(num_magnitude_bins, "num_magnitude_bins", 2)
        self.interpolation, self.fill = interpolation, float(fill)

    def ops(self, rs, h, w):
        raise NotImplementedError

    def sample(self, rs, h, w):
        """One image's plan: (colour ops before the warp, 3x3 matrix, colour ops after)."""
        return plan_chain(self.ops(rs, h, w), h, w)

    def __call__(self, images, seed=None):
        """Augment an (N, H, W, C) batch with this policy alone (``seed``: repeatable)."""
        images = np.asarray(images)
        rs = np.random.default_rng(seed)
        n, h, w = images.shape[:3]
        return apply_plans(images, [self.sample(rs, h, w) for _ in range(n)], INTERPOLATIONS[self.interpolation],
                           self.fill)

    def draw(self, rs, d, h, w):
        """The Pipeline protocol: fold this image's matrix into the pipeline's warp."""
        before, m, after = self.sample(rs, h, w)
        d.policy(before, m, after, type(self).__name__)


class RandAugment(_ChainPolicy):
    """torchvision's RandAugment: ``num_ops`` ops drawn uniformly from its 14, each at the fixed
    bin ``magnitude`` of ``num_magnitude_bins``, signed ops negated with probability 1/2."""

    def __init__(self, num_ops=2, magnitude=9, num_magnitude_bins=31, interpolation="nearest", fill=0.0):
        super().__init__(num_magnitude_bins, interpolation, fill)
        self.num_ops = _check(num_ops, "num_ops", 0)
        self.magnitude = _check(magnitude, "magnitude", 0, self.num_magnitude_bins - 1)

    def ops(self, rs, h, w):
        space = augmentation_space("rand", self.num_magnitude_bins, h, w)
        return sample_ops(rs, space, self.num_ops, lambda _rs, _k: self.magnitude)


class TrivialAugmentWide(_ChainPolicy):
    """torchvision's TrivialAugmentWide: one op from its 14, at a uniformly drawn bin."""

    def __init__(self, num_magnitude_bins=31, interpolation="nearest", fill=0.0):
        super().__init__(num_magnitude_bins, interpolation, fill)

    def ops(self, rs, h, w):
        space = augmentation_space("trivial_wide", self.num_magnitude_bins, h, w)
        return sample_ops(rs, space, 1, lambda r, k: min(int(r.uniform() * k), k - 1))


class AugMix:
    """torchvision's AugMix: ``mixture_width`` chains of ``chain_depth`` ops (1-3 drawn when -1) at
    bins below ``severity`` (of 10), mixed with Dirichlet(alpha) weights, then blended with the
    original by a Beta(alpha, alpha) weight. One warp per chain for the whole batch."""

    BINS = 10  # torchvision's _PARAMETER_MAX

    def __init__(self, severity=3, mixture_width=3, chain_depth=-1, alpha=1.0, all_ops=True,
                 interpolation="bilinear", fill=0.0):
        self.severity = _check(severity, "severity", 1, self.BINS)
        self.mixture_width = _check(mixture_width, "mixture_width", 1)
        if not isinstance(chain_depth, (int, np.integer)) or chain_depth == 0 or chain_depth < -1:
            raise ValueError(f"chain_depth must be -1 (1 to 3 ops drawn per chain) or a whole number >= 1, "
                             f"got {chain_depth!r}.")
        self.chain_depth = int(chain_depth)
        if not alpha > 0:
            raise ValueError(f"alpha must be above 0, got {alpha!r}.")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be 'nearest' or 'bilinear', got {interpolation!r}.")
        self.alpha, self.all_ops = float(alpha), bool(all_ops)
        self.interpolation, self.fill = interpolation, float(fill)

    def sample(self, rs, h, w):
        """One image's draws: (weight of the original, the chains' weights, one plan per chain)."""
        space = augmentation_space("augmix_all" if self.all_ops else "augmix", self.BINS, h, w)
        original = rs.dirichlet([self.alpha, self.alpha])
        weights = rs.dirichlet([self.alpha] * self.mixture_width) * original[1]
        plans = []
        for _ in range(self.mixture_width):
            depth = self.chain_depth if self.chain_depth > 0 else 1 + min(int(rs.uniform() * 3), 2)
            ops = sample_ops(rs, space, depth, lambda r, k: min(int(r.uniform() * self.severity), self.severity - 1))
            plans.append(plan_chain(ops, h, w))
        return original[0], weights, plans

    def apply(self, images, draws, parallel=True):
        """Mix a batch given one ``sample`` per image (pure: the draws decide everything)."""
        images = np.asarray(images)
        out = images.astype(np.float32) * np.array([d[0] for d in draws], np.float32)[:, None, None, None]
        for k in range(self.mixture_width):
            chain = apply_plans(images, [d[2][k] for d in draws], INTERPOLATIONS[self.interpolation], self.fill,
                                parallel)
            out += chain * np.array([d[1][k] for d in draws], np.float32)[:, None, None, None]
        return out

    def __call__(self, images, seed=None):
        images = np.asarray(images)
        rs = np.random.default_rng(seed)
        n, h, w = images.shape[:3]
        return self.apply(images, [self.sample(rs, h, w) for _ in range(n)])

    def transform_images(self, images, rs, parallel=True):
        """The Pipeline protocol of a batch step: applied between the pipeline's fused passes."""
        n, h, w = images.shape[:3]
        return self.apply(images, [self.sample(rs, h, w) for _ in range(n)], parallel)
