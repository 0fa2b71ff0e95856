"""Seeded, stratified subsets: the mirror's splits may be class-sorted, so never take "the first N"."""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split


def _labels(labels) -> np.ndarray:
    return np.asarray(labels.numpy() if hasattr(labels, "numpy") else labels).reshape(-1)


def stratified_split(labels, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (kept, held-out) with ``fraction`` of every class held out, seeded."""
    y = _labels(labels)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    idx = np.arange(len(y))
    keep, held = train_test_split(idx, test_size=fraction, stratify=y, random_state=seed)
    return np.sort(keep), np.sort(held)


def stratified_subset(labels, n: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded subset of ``n`` items with the class proportions of ``labels``.

    ``n=None`` or ``n >= len(labels)`` returns every index. Every class present keeps at least
    one item when ``n`` allows it.
    """
    y = _labels(labels)
    if n is None or n >= len(y):
        return np.arange(len(y))
    if n < 1:
        raise ValueError(f"subset size must be >= 1, got {n}")
    strata = _strata(y)
    n_strata = len(np.unique(strata))
    if n < n_strata or len(y) - n < n_strata:
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(len(y), size=n, replace=False))
    _, chosen = train_test_split(np.arange(len(y)), test_size=n, stratify=strata, random_state=seed)
    return np.sort(chosen)


def _strata(y: np.ndarray) -> np.ndarray:
    """``y``, with classes of a single item pooled into one stratum (scikit-learn cannot split a class
    of one; this happens to the correctly classified images of a weak model). A pooled stratum of one
    item joins the largest class. Labels without such classes are returned unchanged, so their subsets
    are the same as before this existed."""
    classes, counts = np.unique(y, return_counts=True)
    rare = classes[counts < 2]
    if not len(rare):
        return y
    strata = y.astype(np.int64).copy()
    pooled = np.isin(y, rare)
    strata[pooled] = int(classes.max()) + 1
    if pooled.sum() < 2:
        strata[pooled] = int(classes[np.argmax(counts)])
    return strata
