"""The frozen base's outputs for a run: images preprocessed for the base, the flips the augmentation can
make, their outputs computed once (with a progress bar), and training batches drawn from that cache."""
import numpy as np

from tlkit.utils.progbar import Progbar


class Preprocessed:
    """A batch iterator whose images get the base's preprocessing (and optionally go through the base)."""

    def __init__(self, source, mode, base=None):
        self.source, self.mode, self.base = source, mode, base

    def __len__(self):
        return len(self.source)

    def __iter__(self):
        return self

    def __next__(self):
        from tlkit.zoo.preprocessing import preprocess_input

        x, y = next(self.source)[:2]
        x = preprocess_input(x, self.mode, inplace=True)
        return (self.base.predict_on_batch(x) if self.base is not None else x), y


NO_FLIP = (False, False)
HEAD_POOLING = {None: "none", "gap": "avg", "gmp": "max"}  # a head's first layer -> feature_file.pooled's name


def flip_variants(config):
    """[(horizontal, vertical), ...]: every picture the augmentation can make of an image, when it
    only flips (so the base's outputs for all of them can be cached); None when it does more."""
    if not config.augment:
        return [NO_FLIP]
    if config.rotation or config.shift or config.zoom or config.shear or config.brightness is not None:
        return None
    across = [False, True] if config.flip in ("horizontal", "both") else [False]
    down = [False, True] if config.flip in ("vertical", "both") else [False]
    return [(h, v) for v in down for h in across]


def compute_features(base, iterator, mode, label, verbose=1, flips=(NO_FLIP,), pool=None):
    """The frozen base's outputs for every image of a non-shuffled iterator, with a progress bar.

    Returns ([outputs for each of ``flips``], labels). ``pool`` ('gap' or 'gmp') keeps only the
    globally pooled outputs: what a head starting with that pooling sees, at a fraction of the memory.
    """
    from tlkit.apps.feature_file import flipped_outputs

    iterator.reset()
    bar = Progbar(len(iterator), verbose=verbose, unit_name="batch")
    feats, labels = [[] for _ in flips], []
    if verbose:
        mirrored = f", {len(flips)} flips of each" if len(flips) > 1 else ""
        print(f"Caching base features for {label} ({iterator.samples} images{mirrored})", flush=True)
    for i in range(len(iterator)):
        x, y = next(iterator)[:2]
        for k, f in enumerate(flipped_outputs(base, x, mode, flips, HEAD_POOLING[pool])):
            feats[k].append(f)
        labels.append(y)
        bar.update(i + 1)
    iterator.reset()
    return [np.concatenate(f) for f in feats], np.concatenate(labels)


class CachedVariants:
    """Training batches of cached base outputs: each epoch a new shuffle, and each sample one of
    its cached variants (e.g. the image or its mirror) drawn at random, as the augmentation would.

        >>> batches = CachedVariants([feats, feats_mirrored], labels, batch_size=32, seed=0)
        >>> head.fit(batches, epochs=10)
    """

    def __init__(self, variants, labels, batch_size, seed):
        self.variants, self.labels, self.batch_size, self.seed = variants, labels, batch_size, seed
        self.epoch = 0

    def __len__(self):
        return -(-len(self.labels) // self.batch_size)

    def __getitem__(self, i):
        rs = np.random.RandomState([self.seed % 2**32, self.epoch])
        order = rs.permutation(len(self.labels))
        choice = rs.randint(len(self.variants), size=len(self.labels))
        idx = order[i * self.batch_size:(i + 1) * self.batch_size]
        x = np.empty((len(idx),) + self.variants[0].shape[1:], self.variants[0].dtype)
        for k, v in enumerate(self.variants):
            mask = choice[idx] == k
            x[mask] = v[idx[mask]]
        return x, self.labels[idx]

    def on_epoch_end(self):
        self.epoch += 1

    def start_epoch(self, epoch):
        self.epoch = epoch
