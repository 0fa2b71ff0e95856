"""The semi-supervised split of the SSAT work: labelled, unlabelled and test images, class-balanced."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SemiSupervisedSplit", "balanced_indices", "semi_supervised_split"]


@dataclass(frozen=True)
class SemiSupervisedSplit:
    """Indices into one pool of training images: ``labelled`` (used with labels) and ``unlabelled``
    (labels never read by the training objective). ``counts`` gives the per-class sizes of each part."""

    labelled: np.ndarray
    unlabelled: np.ndarray
    counts: dict

    def key(self) -> dict:
        """JSON-able description for a cache key."""
        return {"labelled": self.labelled.tolist(), "unlabelled": self.unlabelled.tolist()}


def balanced_indices(labels, n: int, rng: np.random.Generator, exclude=()) -> np.ndarray:
    """``n`` seeded indices with classes as equal as the data allows.

    Class sizes differ by at most one, except that a class with too few images gives all it has
    and its shortfall goes to the classes with images left; exactly ``n`` indices come back
    whenever the pool holds ``n``.
    """
    y = np.asarray(labels).reshape(-1)
    mask = np.ones(len(y), dtype=bool)
    mask[np.asarray(list(exclude), dtype=int)] = False
    pools = {c: rng.permutation(np.flatnonzero(mask & (y == c))) for c in np.unique(y[mask])}
    if n > sum(len(p) for p in pools.values()):
        raise ValueError(f"asked for {n} images but only {sum(len(p) for p in pools.values())} are available.")
    # water-filling: the smallest classes first, each taking its share of what is left, so a scarce
    # class gives all it has and the others split its shortfall; the remainder goes one each at random
    take, remaining = {}, n
    by_size = sorted(pools, key=lambda c: len(pools[c]))
    for i, c in enumerate(by_size):
        take[c] = min(len(pools[c]), remaining // (len(by_size) - i))
        remaining -= take[c]
    for c in rng.permutation(by_size):
        if remaining and take[c] < len(pools[c]):
            take[c] += 1
            remaining -= 1
    return np.sort(np.concatenate([pools[c][:take[c]] for c in pools]).astype(np.int64))


def semi_supervised_split(labels, n_labelled: int, n_unlabelled: int, *, seed: int = 0,
                          balanced: bool = True) -> SemiSupervisedSplit:
    """Disjoint labelled and unlabelled subsets of a training pool, seeded.

    The SSAT paper samples 4000 labelled, 1000 unlabelled (and 1000 test) OCT images with "the 4
    classes balanced in each data set"; ``balanced=True`` does the same where the data allows
    (:func:`balanced_indices`), ``balanced=False`` keeps the pool's class proportions.

    Parameters
    ----------
    labels : array-like of int
        Labels of the training pool (only used to balance the classes).
    n_labelled, n_unlabelled : int
        Sizes; ``n_unlabelled`` may be 0 (then the split is plain supervised).
    """
    y = np.asarray(labels.numpy() if hasattr(labels, "numpy") else labels).reshape(-1)
    for name, value in (("n_labelled", n_labelled), ("n_unlabelled", n_unlabelled)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}.")
    if n_labelled < 2:
        raise ValueError(f"n_labelled must be >= 2 (a training set), got {n_labelled}.")
    if n_labelled + n_unlabelled > len(y):
        raise ValueError(f"n_labelled + n_unlabelled = {n_labelled + n_unlabelled} exceeds the {len(y)} training "
                         "images; lower them or use a larger training subset.")
    rng = np.random.default_rng(seed)
    if balanced:
        lab = balanced_indices(y, n_labelled, rng)
        unl = balanced_indices(y, n_unlabelled, rng, exclude=lab) if n_unlabelled else np.array([], np.int64)
    else:
        order = rng.permutation(len(y))
        lab, unl = np.sort(order[:n_labelled]), np.sort(order[n_labelled:n_labelled + n_unlabelled])
    k = int(y.max()) + 1 if len(y) else 0
    counts = {"labelled": np.bincount(y[lab], minlength=k).tolist(),
              "unlabelled": np.bincount(y[unl], minlength=k).tolist()}
    return SemiSupervisedSplit(lab, unl, counts)
