"""The adversarial risk of a classifier with or without a reject option (Li, Pan & Zhu, ISBI 2021).

A deployed system is a classifier ``f`` and, optionally, a detector ``g`` that rejects inputs it
finds adversarial. Li, Pan & Zhu charge such a system for three kinds of mistakes on a test set of
``N`` clean images and their adversarial counterparts (their Eq. 2 and 3, Methods page
:ref:`methods-risk`):

.. math::

    R(f, g) = w_{cln}^{prd} N_{cln}^{inc}(f, g) + w_{cln}^{uad} N_{cln}^{rej}(g) + w_{adv}^{prd} N_{adv}^{inc}(f, g)

    R(f) = w_{cln}^{prd} N_{cln}^{inc}(f) + w_{adv}^{prd} N_{adv}^{inc}(f)

with ``N_cln_inc(f, g)`` the clean images that are accepted but misclassified, ``N_cln_rej(g)`` the
clean images rejected, ``N_adv_inc(f, g)`` the adversarial images accepted and misclassified
(without a detector every image is accepted). The risk is reported as ``r = R / N``; since every
clean image can cost once and its adversarial copy once more, ``r`` lies in ``[0, 2]`` for unit
weights. The weights default to 1 (the paper's Eq. 2 and 3).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["RiskResult", "adversarial_risk"]


@dataclass
class RiskResult:
    """The risk of one system on one test set.

    Attributes
    ----------
    r : float
        ``R / N``, the paper's reported value.
    risk : float
        ``R``, the weighted count.
    n : int
        Number of clean test images ``N``.
    counts : dict
        ``cln_inc``, ``cln_rej``, ``adv_inc`` (the three counts of Eq. 2; ``cln_rej`` is 0 without a
        detector), plus ``adv_rej`` (adversarial images rejected) and ``n_adv``.
    ci : tuple of float
        Bootstrap interval of ``r`` (``(nan, nan)`` when ``n_boot=0``).
    weights : dict
        The weights used.
    """

    r: float
    risk: float
    n: int
    counts: dict
    ci: tuple[float, float] = (float("nan"), float("nan"))
    weights: dict = field(default_factory=dict)


def _as_labels(a, name: str) -> np.ndarray:
    a = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one entry per image), got shape {a.shape}.")
    if a.size == 0:
        return a.astype(np.int64)
    if a.dtype.kind == "b" or a.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices, got dtype {a.dtype}.")
    return a.astype(np.int64)


def _as_mask(a, n: int, name: str) -> np.ndarray:
    if a is None:
        return np.zeros(n, dtype=bool)
    a = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) (one flag per image), got {a.shape}.")
    if a.dtype.kind not in "biu" or not np.isin(a, (0, 1)).all():
        raise TypeError(f"{name} must be booleans (True = rejected by the detector), got dtype {a.dtype}.")
    return a.astype(bool)


def _weight(value, name: str) -> float:
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite weight >= 0, got {value!r}.")
    return value


def adversarial_risk(y, clean_pred, adv_pred, *, clean_rejected=None, adv_rejected=None, adv_y=None,
                     w_cln_prd: float = 1.0, w_cln_uad: float = 1.0, w_adv_prd: float = 1.0,
                     n_boot: int = 0, confidence: float = 0.95, seed: int = 0) -> RiskResult:
    """Adversarial risk ``r = R / N`` of a system (Eq. 2 with a detector, Eq. 3 without).

    Parameters
    ----------
    y : array-like of int, shape (N,)
        True labels of the clean test images.
    clean_pred : array-like of int, shape (N,)
        The classifier's predictions on the clean images.
    adv_pred : array-like of int, shape (M,)
        Its predictions on the adversarial images (an AE that failed to fool the model counts as a
        correctly classified adversarial input, as in the paper, where all 1000 AEs enter).
    clean_rejected, adv_rejected : array-like of bool, optional
        The detector's decisions (True = rejected, e.g. ``detector.predict(...) == 1`` of a calibrated
        detector). Both ``None``: no detector, Eq. 3. Give both or neither.
    adv_y : array-like of int, shape (M,), optional
        True labels of the adversarial images' sources. ``None`` (default): the adversarial set is
        paired with the clean one (``M = N``, image i's AE at index i), and the bootstrap resamples
        pairs; otherwise the two sets are resampled independently.
    w_cln_prd, w_cln_uad, w_adv_prd : float
        The per-case costs ``r_cln^prd``, ``r_cln^uad``, ``r_adv^prd`` of the paper (default 1).
    n_boot : int
        Bootstrap resamples over images for the interval (0: none).
    confidence : float
        Coverage of the percentile interval.
    seed : int
        Seeds the bootstrap.

    Returns
    -------
    RiskResult

    Examples
    --------
    >>> res = adversarial_risk([0, 1, 1], [0, 1, 0], [1, 1, 1])
    >>> res.counts["cln_inc"], res.counts["adv_inc"], round(res.r, 3)
    (1, 2, 1.0)
    """
    y = _as_labels(y, "y")
    n = len(y)
    if n == 0:
        raise ValueError("y is empty: the risk needs at least one clean test image.")
    clean_pred = _as_labels(clean_pred, "clean_pred")
    if len(clean_pred) != n:
        raise ValueError(f"clean_pred has {len(clean_pred)} entries but y has {n}.")
    adv_pred = _as_labels(adv_pred, "adv_pred")
    paired = adv_y is None
    adv_y = y if paired else _as_labels(adv_y, "adv_y")
    if len(adv_pred) != len(adv_y):
        raise ValueError(f"adv_pred has {len(adv_pred)} entries but "
                         f"{'y (paired adversarial set)' if paired else 'adv_y'} has {len(adv_y)}.")
    if (clean_rejected is None) != (adv_rejected is None):
        raise ValueError("give both clean_rejected and adv_rejected (a system with a detector) or neither.")
    with_detector = clean_rejected is not None
    clean_rej = _as_mask(clean_rejected, n, "clean_rejected")
    adv_rej = _as_mask(adv_rejected, len(adv_pred), "adv_rejected")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}.")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be an int >= 0, got {n_boot!r}.")
    weights = {"w_cln_prd": _weight(w_cln_prd, "w_cln_prd"), "w_cln_uad": _weight(w_cln_uad, "w_cln_uad"),
               "w_adv_prd": _weight(w_adv_prd, "w_adv_prd")}

    # per-image costs, so the bootstrap is a resampled sum
    cln_inc = (clean_pred != y) & ~clean_rej
    adv_inc = (adv_pred != adv_y) & ~adv_rej
    clean_cost = weights["w_cln_prd"] * cln_inc + weights["w_cln_uad"] * clean_rej
    adv_cost = weights["w_adv_prd"] * adv_inc
    risk = float(clean_cost.sum() + adv_cost.sum())
    counts = {"cln_inc": int(cln_inc.sum()), "cln_rej": int(clean_rej.sum()), "adv_inc": int(adv_inc.sum()),
              "adv_rej": int(adv_rej.sum()), "n_adv": int(len(adv_pred)), "with_detector": with_detector}

    ci = (float("nan"), float("nan"))
    if n_boot:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_boot, n))
        if paired:
            boot = (clean_cost[idx].sum(1) + adv_cost[idx].sum(1)) / n
        else:
            adv_idx = rng.integers(0, len(adv_cost), size=(n_boot, len(adv_cost)))
            boot = (clean_cost[idx].sum(1) + adv_cost[adv_idx].sum(1)) / n
        tail = (1 - confidence) / 2
        ci = (float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail)))
    return RiskResult(r=risk / n, risk=risk, n=n, counts=counts, ci=ci, weights=weights)
