"""Detection metrics with bootstrap confidence intervals.

Conventions: ``y_true`` is 1 for adversarial (positive) and 0 for normal; scores are higher for
"more adversarial". Point estimates equal scikit-learn's (``roc_auc_score``,
``average_precision_score``, and the ROC curve for TPR at a fixed TNR), ties included. The
bootstrap is vectorised over resamples (ranks and cumulative sums on a (n_boot, n) matrix), so a
thousand resamples cost milliseconds rather than a thousand scikit-learn calls.

TPR at 90 % TNR follows the HFC evaluation (Methods page, :ref:`methods-protocol`): the threshold is the score that
keeps 90 % of the *normal* test samples at or below it, and the TPR is the fraction of
adversarial samples strictly above it; equivalently the highest TPR on the ROC curve whose FPR is
at most 10 %.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata


def _check(y_true, scores):
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"y_true and scores must be 1-D of the same length, got {y.shape} and {s.shape}.")
    if y.size == 0:
        raise ValueError("no samples to evaluate.")
    if not set(np.unique(y).tolist()) <= {0, 1}:
        raise ValueError("y_true must hold 0 (normal) and 1 (adversarial).")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values.")
    y = y.astype(bool)
    if y.all() or not y.any():
        raise ValueError("both normal (0) and adversarial (1) samples are needed.")
    return s[~y], s[y]


# vectorised kernels: each row of ``neg`` (B, n0) and ``pos`` (B, n1) is one sample ----------------
def _auroc_rows(neg: np.ndarray, pos: np.ndarray) -> np.ndarray:
    n0, n1 = neg.shape[1], pos.shape[1]
    # Mann-Whitney U with average ranks: ties count one half, as in roc_auc_score
    ranks = rankdata(np.concatenate([neg, pos], axis=1), axis=1)
    return (ranks[:, n0:].sum(1) - n1 * (n1 + 1) / 2.0) / (n0 * n1)


def fpr_threshold(normal_scores, fpr: float):
    """The threshold that lets at most ``floor(fpr * n)`` of ``n`` normal scores lie strictly above it.

    It is the ``(floor(fpr * n) + 1)``-th largest normal score (``-inf`` when every sample may
    be flagged), so exactly ``floor(fpr * n)`` lie above it when there are no ties, also when
    ``fpr * n`` is whole. One rule for the TPR-at-TNR metric (``fpr = 1 - tnr``) and for
    detector calibration (:func:`medadv_lib.detectors.base.calibrate_threshold`).

    Parameters
    ----------
    normal_scores : array (..., n)
        Scores of normal samples along the last axis (one threshold per row).
    fpr : float
        Allowed fraction of normal samples above the threshold.

    Returns
    -------
    ndarray (...) of float
    """
    neg = np.asarray(normal_scores, dtype=np.float64)
    n0 = neg.shape[-1]
    # round before flooring so that e.g. 0.1 * 60 = 6.000000000000001 allows 6
    a = math.floor(round(fpr * n0, 9))
    if a >= n0:
        return np.full(neg.shape[:-1], -np.inf)
    return -np.partition(-neg, a, axis=-1)[..., a]


def _tpr_rows(neg: np.ndarray, pos: np.ndarray, tnr: float) -> np.ndarray:
    thr = fpr_threshold(neg, 1.0 - tnr)
    return (pos > thr[:, None]).mean(1)


def _ap_rows(neg: np.ndarray, pos: np.ndarray) -> np.ndarray:
    n0, n1 = neg.shape[1], pos.shape[1]
    s = np.concatenate([neg, pos], axis=1)
    y = np.concatenate([np.zeros(n0), np.ones(n1)])
    order = np.argsort(-s, axis=1, kind="stable")
    s_sorted = np.take_along_axis(s, order, axis=1)
    y_sorted = y[order]
    n = s.shape[1]
    tp = np.cumsum(y_sorted, axis=1)
    precision = tp / np.arange(1, n + 1)
    # tied scores form one threshold: every positive in a tie group gets the precision at the
    # group's end, exactly as average_precision_score's step-wise sum over distinct thresholds
    is_end = np.ones_like(s_sorted, dtype=bool)
    is_end[:, :-1] = s_sorted[:, :-1] != s_sorted[:, 1:]
    end = np.where(is_end, np.arange(n), n)
    end = np.minimum.accumulate(end[:, ::-1], axis=1)[:, ::-1]
    return (y_sorted * np.take_along_axis(precision, end, axis=1)).sum(1) / n1


METRICS = {"auroc": _auroc_rows, "auprc": _ap_rows}


def _rows(metric: str, neg, pos, tnr):
    if metric == "tpr":
        return _tpr_rows(neg, pos, tnr)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose 'auroc', 'tpr' or 'auprc'.")
    return METRICS[metric](neg, pos)


def auroc(y_true, scores) -> float:
    """Area under the ROC curve (equals ``sklearn.metrics.roc_auc_score``)."""
    neg, pos = _check(y_true, scores)
    return float(_auroc_rows(neg[None], pos[None])[0])


def tpr_at_tnr(y_true, scores, tnr: float = 0.9) -> float:
    """True-positive rate at the threshold that keeps a fraction ``tnr`` of normal scores below it."""
    if not 0.0 < tnr <= 1.0:
        raise ValueError(f"tnr must be in (0, 1], got {tnr}")
    neg, pos = _check(y_true, scores)
    return float(_tpr_rows(neg[None], pos[None], tnr)[0])


def auprc(y_true, scores) -> float:
    """Area under the precision-recall curve as average precision (``average_precision_score``)."""
    neg, pos = _check(y_true, scores)
    return float(_ap_rows(neg[None], pos[None])[0])


def bootstrap_ci(y_true, scores, metric: str = "auroc", *, n_boot: int = 1000, ci: float = 0.95, seed: int = 0,
                 tnr: float = 0.9, max_cells: int = 20_000_000) -> tuple[float, float, float]:
    """Point estimate and percentile bootstrap confidence interval of a detection metric.

    Normal and adversarial samples are resampled separately (stratified bootstrap), so every
    resample keeps both classes and the original class sizes.

    Parameters
    ----------
    y_true, scores : array-like (n,)
    metric : {"auroc", "tpr", "auprc"}
    n_boot : int, default 1000
        Resamples; 0 returns NaN bounds.
    ci : float, default 0.95
        Coverage of the percentile interval.
    seed : int, default 0
    tnr : float, default 0.9
        For ``metric="tpr"``.
    max_cells : int
        Resamples are processed in chunks of at most this many scores (memory bound).

    Returns
    -------
    (point, lo, hi) : tuple of float
    """
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    neg, pos = _check(y_true, scores)
    point = float(_rows(metric, neg[None], pos[None], tnr)[0])
    if n_boot <= 0:
        return point, math.nan, math.nan
    # one stream per class, consumed row by row: the resamples do not depend on the chunking
    rng_neg, rng_pos = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    chunk = max(1, max_cells // (neg.size + pos.size))
    stats = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        stats.append(_rows(metric, neg[rng_neg.integers(0, neg.size, (b, neg.size))],
                           pos[rng_pos.integers(0, pos.size, (b, pos.size))], tnr))
    stats = np.concatenate(stats)
    alpha = (1.0 - ci) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return point, float(lo), float(hi)


def tpr_column(tnr: float) -> str:
    """Column name of TPR at ``tnr``: ``"tpr90"`` for 0.9."""
    return f"tpr{round(100 * tnr):d}"


def detection_metrics(y_true, scores, *, tnr: float = 0.9, n_boot: int = 1000, ci: float = 0.95,
                      seed: int = 0) -> dict[str, float]:
    """AUROC, TPR at ``tnr`` and AUPRC with bootstrap intervals.

    Returns
    -------
    dict
        ``auroc, auroc_lo, auroc_hi, tpr90, tpr90_lo, tpr90_hi, auprc, auprc_lo, auprc_hi``
        (the TPR key follows :func:`tpr_column`).
    """
    out = {}
    for key, metric in (("auroc", "auroc"), (tpr_column(tnr), "tpr"), ("auprc", "auprc")):
        point, lo, hi = bootstrap_ci(y_true, scores, metric, n_boot=n_boot, ci=ci, seed=seed, tnr=tnr)
        out.update({key: point, f"{key}_lo": lo, f"{key}_hi": hi})
    return out
