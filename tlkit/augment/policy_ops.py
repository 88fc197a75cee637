"""The operations of torchvision's automatic augmentation policies, as pure functions.

Geometric operations (shears, translations, rotation) are matrices taking an output (row, col) to
the source position it reads, so a chain of them folds into one matrix and costs one pass of the
fused warp. Colour operations act on one (H, W, C) float image holding pixel values 0-255 and,
like torchvision on uint8 images, end each step on whole values (rounded down after clamping to
0-255): on whole-valued input they give torchvision's uint8 results.

Magnitude tables follow torchvision.transforms.autoaugment: ``augmentation_space(name, bins, h, w)``
-> {op: (magnitudes or None, signed)}, in torchvision's order (a policy draws an index into it).
"""
import math

import numpy as np

from tlkit.augment import policy_kernels

GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


def _posterize_bits(bins, top, span):
    return top - np.round(np.arange(bins) / ((bins - 1) / span)).astype(int)


def augmentation_space(policy, bins, h, w):
    """torchvision's op table of ``policy`` ('rand', 'trivial_wide', 'augmix', 'augmix_all')."""
    lin = (lambda hi: np.linspace(0.0, hi, bins))
    if policy == "rand":
        return {"Identity": (None, False), "ShearX": (lin(0.3), True), "ShearY": (lin(0.3), True),
                "TranslateX": (lin(150.0 / 331.0 * w), True), "TranslateY": (lin(150.0 / 331.0 * h), True),
                "Rotate": (lin(30.0), True), "Brightness": (lin(0.9), True), "Color": (lin(0.9), True),
                "Contrast": (lin(0.9), True), "Sharpness": (lin(0.9), True),
                "Posterize": (_posterize_bits(bins, 8, 4), False), "Solarize": (np.linspace(255.0, 0.0, bins), False),
                "AutoContrast": (None, False), "Equalize": (None, False)}
    if policy == "trivial_wide":
        return {"Identity": (None, False), "ShearX": (lin(0.99), True), "ShearY": (lin(0.99), True),
                "TranslateX": (lin(32.0), True), "TranslateY": (lin(32.0), True), "Rotate": (lin(135.0), True),
                "Brightness": (lin(0.99), True), "Color": (lin(0.99), True), "Contrast": (lin(0.99), True),
                "Sharpness": (lin(0.99), True), "Posterize": (_posterize_bits(bins, 8, 6), False),
                "Solarize": (np.linspace(255.0, 0.0, bins), False), "AutoContrast": (None, False),
                "Equalize": (None, False)}
    space = {"ShearX": (lin(0.3), True), "ShearY": (lin(0.3), True), "TranslateX": (lin(w / 3.0), True),
             "TranslateY": (lin(h / 3.0), True), "Rotate": (lin(30.0), True),
             "Posterize": (_posterize_bits(bins, 4, 4), False), "Solarize": (np.linspace(255.0, 0.0, bins), False),
             "AutoContrast": (None, False), "Equalize": (None, False)}
    if policy == "augmix_all":
        space.update({"Brightness": (lin(0.9), True), "Color": (lin(0.9), True), "Contrast": (lin(0.9), True),
                      "Sharpness": (lin(0.9), True)})
    return space


# ----- geometry: 3x3 matrices, output (row, col, 1) -> source (row, col, 1), torchvision's conventions -----
def op_matrix(name, magnitude, h, w):
    """The matrix of a geometric op. Shears act about the top-left corner (torchvision's center=[0, 0]),
    translations move by whole pixels (int(magnitude)), rotations turn counter-clockwise about the centre."""
    m = np.eye(3)
    if name == "ShearX":      # source col = col + m (row + 1/2)
        m[1, 0], m[1, 2] = magnitude, 0.5 * magnitude
    elif name == "ShearY":    # source row = row + m (col + 1/2)
        m[0, 1], m[0, 2] = magnitude, 0.5 * magnitude
    elif name == "TranslateX":
        m[1, 2] = -int(magnitude)
    elif name == "TranslateY":
        m[0, 2] = -int(magnitude)
    elif name == "Rotate":
        t = math.radians(magnitude)
        cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
        cos, sin = math.cos(t), math.sin(t)
        m[:2, :2] = [[cos, sin], [-sin, cos]]  # (row, col) order of torchvision's inverse (x, y) matrix
        m[:2, 2] = [cy, cx] - m[:2, :2] @ [cy, cx]
    else:
        raise ValueError(f"{name} is not a geometric op; choose one of {', '.join(GEOMETRIC)}.")
    return m


# ----- colour: (H, W, C) float images, values 0-255 (the loops are policy_kernels) -----
_BLENDS = {"Brightness": 0, "Color": 1, "Contrast": 2}


def apply_color(name, magnitude, img):
    """One colour op on a float image of values 0-255 (a new float32 array; whole values out)."""
    x = np.array(img, np.float32)
    if x.ndim != 3:
        raise ValueError(f"{name}: expected one (H, W, C) image, got shape {x.shape}.")
    policy_kernels.make_whole(x)
    if name in _BLENDS:
        policy_kernels.blend(x, 1.0 + magnitude, _BLENDS[name])
    elif name == "Sharpness":
        policy_kernels.sharpen(x, 1.0 + magnitude)
    elif name == "Posterize":
        policy_kernels.posterize(x, int(magnitude))
    elif name == "Solarize":
        policy_kernels.solarize(x, float(magnitude))
    elif name == "AutoContrast":
        policy_kernels.autocontrast(x)
    elif name == "Equalize":
        policy_kernels.equalize(x)
    elif name != "Identity":
        raise ValueError(f"Unknown augmentation op {name!r}.")
    return x


def sample_ops(rs, space, count, magnitude_index):
    """``count`` (name, magnitude) pairs drawn as torchvision does: an op uniformly, its magnitude
    at ``magnitude_index(len(magnitudes))`` (an index, drawn or fixed), negated with probability
    1/2 when signed. ``rs``: a numpy RandomState or Generator."""
    names = list(space)
    ops = []
    for _ in range(count):
        name = names[min(int(rs.uniform() * len(names)), len(names) - 1)]
        magnitudes, signed = space[name]
        value = 0.0 if magnitudes is None else float(magnitudes[magnitude_index(rs, len(magnitudes))])
        if signed and rs.uniform() < 0.5:
            value = -value
        ops.append((name, value))
    return ops


def plan_chain(ops, h, w):
    """A chain of ops -> (colour ops before the warp, one 3x3 matrix, colour ops after it).

    Colour ops drawn before the chain's first geometric op run on the picture before the warp, the
    others after it; for chains of up to two ops (RandAugment's default, TrivialAugmentWide) that
    is torchvision's order exactly, and pointwise ops commute with a nearest-neighbour warp anyway."""
    before, after, m, seen_geometry = [], [], np.eye(3), False
    for name, value in ops:
        if name in GEOMETRIC:
            # torchvision applies the ops in turn: image_k = op_k(image_{k-1}), so source maps compose outward
            m = m @ op_matrix(name, value, h, w)
            seen_geometry = True
        elif name != "Identity":
            (after if seen_geometry else before).append((name, value))
    return before, m, after


def apply_colors(img, ops):
    for name, value in ops:
        img = apply_color(name, value, img)
    return img
