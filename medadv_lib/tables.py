"""DataFrame tables of the book: the data and the models, and detector benchmarks.

Data tables take loaded :class:`~medadv_lib.data.Dataset` objects or
:class:`~medadv_lib.pipeline.TrainedModel` objects. Detection tables take the tidy ``results``
table of :class:`~medadv_lib.metrics.DetectionProtocol` and
:func:`~medadv_lib.pipeline.detection_benchmark` (one row per detector, attack, dataset and eps,
with ``auroc``, ``auroc_lo``, ``auroc_hi``, ``tpr90``, ...). Every function returns a
:class:`pandas.DataFrame` and draws nothing: figures are in :mod:`medadv_lib.plotting`, and
:func:`medadv_lib.plotting.table` formats a frame for display.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .attacks.budget import format_budget


# ----------------------------------------------------------------------------------------------
# Data and models
# ----------------------------------------------------------------------------------------------

def class_balance(datasets: Mapping[str, Any]) -> pd.DataFrame:
    """Long table of class counts: one row per (dataset, split, class) with count and share of the split.

    ``datasets`` maps a name to a loaded :class:`medadv_lib.data.Dataset`.
    """
    rows = []
    for name, ds in datasets.items():
        for split in ("train", "val", "test"):
            if split not in ds.splits:
                continue
            counts = ds[split].class_counts(ds.num_classes)
            total = max(1, sum(counts))
            rows += [{"dataset": name, "split": split, "class": str(ds.classes[c]), "count": int(n),
                      "share": n / total} for c, n in enumerate(counts)]
    return pd.DataFrame(rows, columns=["dataset", "split", "class", "count", "share"])


def split_summary(models: Mapping[str, Any]) -> pd.DataFrame:
    """One row per dataset: classes, channels, px (file -> model), split sizes, the profile's subsets, rarest class.

    ``rarest class`` is the share of the rarest class in the full training split.

    ``models`` maps a name to a :class:`medadv_lib.pipeline.TrainedModel` (its ``dataset`` holds the
    full splits, its ``train`` / ``test`` the seeded subsets the profile trains and tests on).
    """
    rows = []
    for name, tm in models.items():
        ds = tm.dataset
        counts = np.asarray(ds.train.class_counts(ds.num_classes), dtype=float)
        rows.append({
            "dataset": name, "classes": ds.num_classes, "channels": ds.channels,
            "px": f"{ds.info.native_size}\u2192{ds.size}",
            "train": len(ds.train), "val": len(ds.val), "test": len(ds.test),
            "train used": len(tm.train), "test used": len(tm.test),
            "rarest class": float(counts.min() / max(1.0, counts.sum())),
        })
    return pd.DataFrame(rows)


def model_summary(models: Mapping[str, Any]) -> pd.DataFrame:
    """One row per dataset: architecture, subset sizes, clean test metrics, chance level, cache status."""
    rows = []
    for name, tm in models.items():
        spec = getattr(tm.model, "spec", {}) or {}
        m = tm.metrics
        rows.append({
            "dataset": name, "model": spec.get("arch", type(tm.model).__name__),
            "n train": len(tm.train), "n test": m.get("n", len(tm.test)),
            "accuracy": m["accuracy"], "balanced acc.": m["balanced_accuracy"], "AUROC": m["auroc"],
            "chance (1/K)": 1.0 / tm.dataset.num_classes,
            "model from": "cache" if tm.cache.hit else "trained now",
        })
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------
# Detector benchmarks
# ----------------------------------------------------------------------------------------------

#: Display names of the metric columns.
METRIC_LABELS = {"auroc": "AUROC", "tpr90": "TPR at 90 % TNR", "auprc": "AUPRC"}
#: Attack display names (upper case except where the literature writes otherwise).
ATTACK_LABELS = {"fgsm": "FGSM", "bim": "BIM", "pgd": "PGD", "mim": "MIM", "di": "DI", "cw": "CW"}
_KEYS = ["dataset", "attack", "eps"]


def attack_label(attack: str) -> str:
    return ATTACK_LABELS.get(str(attack).lower(), str(attack))


def budget_label(eps: float) -> str:
    """``8/256`` for a budget on the k/256 grid, else the absolute value."""
    return format_budget(float(eps)).split(" ")[0]


def run_label(attack: str, eps: float) -> str:
    """``"BIM 8/256"``."""
    return f"{attack_label(attack)} {budget_label(eps)}"


def ci_text(point: float, lo: float, hi: float, decimals: int = 2) -> str:
    """``"0.97 (0.94-0.99)"``; ``"-"`` for a missing value, the point alone without an interval."""
    if point is None or not np.isfinite(point):
        return "-"
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{point:.{decimals}f}"
    return f"{point:.{decimals}f} ({lo:.{decimals}f}\u2013{hi:.{decimals}f})"


def _order(results: pd.DataFrame, column: str, first: Sequence | None = None) -> list:
    seen = list(dict.fromkeys(results[column]))
    if first is None:
        return seen
    return [v for v in first if v in seen] + [v for v in seen if v not in first]


def _check(results: pd.DataFrame, metric: str) -> None:
    missing = [c for c in [*_KEYS, "detector", metric] if c not in results.columns]
    if missing:
        raise KeyError(f"results lack column(s) {missing}; pass the tidy table of DetectionProtocol.evaluate "
                       "or detection_benchmark(...).results.")


def ci_table(results: pd.DataFrame, metric: str = "auroc", *, decimals: int = 2,
             detectors: Sequence[str] | None = None, datasets: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (dataset, attack, budget), one column per detector, cells ``point (lo-hi)``.

    Also reports the held-out adversarial examples behind each row (``AEs``), so a wide interval
    can be read against its sample size.
    """
    _check(results, metric)
    dets = _order(results, "detector", detectors)
    rows = []
    for (dataset, attack, eps), part in results.groupby(_KEYS, sort=False):
        part = part.set_index("detector")
        row = {"dataset": dataset, "attack": attack_label(attack), "eps": budget_label(eps),
               "AEs": int(part["n_adv"].iloc[0]) if "n_adv" in part else None}
        for d in dets:
            if d in part.index:
                r = part.loc[d]
                row[d] = ci_text(r[metric], r.get(f"{metric}_lo"), r.get(f"{metric}_hi"), decimals)
            else:
                row[d] = "-"
        rows.append(row)
    frame = pd.DataFrame(rows)
    order = _order(results, "dataset", datasets)
    frame["_d"] = frame["dataset"].map({d: i for i, d in enumerate(order)})
    return frame.sort_values("_d", kind="stable").drop(columns="_d").reset_index(drop=True)


def metric_pivot(results: pd.DataFrame, metric: str = "auroc", *, eps: float | str | None = "max",
                 attacks: Sequence[str] | None = None, detectors: Sequence[str] | None = None,
                 datasets: Sequence[str] | None = None, flatten: bool = False) -> pd.DataFrame:
    """Numbers only: detectors as rows, (dataset, attack) as columns, at one budget.

    Parameters
    ----------
    eps : float, "max" or None
        The budget to show: ``"max"`` (default) takes each data set's largest budget, a float
        picks that budget, None keeps every budget (columns then include ``eps``).
    attacks : sequence of str, optional
        Attacks to keep (default all).
    flatten : bool, default False
        Join the column levels into strings (``"chestxray BIM"``) and make ``detector`` a column,
        ready for :func:`medadv_lib.plotting.table`.
    """
    _check(results, metric)
    frame = results.copy()
    if attacks is not None:
        frame = frame[frame["attack"].str.lower().isin([a.lower() for a in attacks])]
    if isinstance(eps, str) and eps == "max":
        frame = frame[frame["eps"] == frame.groupby("dataset")["eps"].transform("max")]
        columns = ["dataset", "attack"]
    elif eps is None:
        columns = ["dataset", "attack", "eps"]
    else:
        frame = frame[np.isclose(frame["eps"].astype(float), float(eps))]
        columns = ["dataset", "attack"]
    frame = frame.assign(attack=frame["attack"].map(attack_label))
    table = frame.pivot_table(index="detector", columns=columns, values=metric, sort=False)
    rows = _order(frame, "detector", detectors)
    table = table.reindex([r for r in rows if r in table.index])
    data_order = _order(frame, "dataset", datasets)
    cols = sorted(table.columns, key=lambda c: (data_order.index(c[0]), *([] if len(c) < 3 else [c[2]])))
    table = table[cols]
    if flatten:
        table.columns = [" ".join(budget_label(v) if isinstance(v, float) else str(v) for v in c) for c in table.columns]
        table = table.rename_axis(None, axis=1).reset_index()
    return table


def attack_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, attack, budget): attack success rate and the images behind the detector metrics."""
    _check(results, "attack_success_rate")
    first = results.groupby(_KEYS, sort=False).first().reset_index()
    return pd.DataFrame({
        "dataset": first["dataset"], "attack": first["attack"].map(attack_label),
        "eps": first["eps"].map(budget_label), "attacked": first["n_kept"].astype(int),
        "success rate": first["attack_success_rate"].astype(float),
        "AEs (fit)": first["n_fit_adv"].astype(int), "AEs (held out)": first["n_adv"].astype(int),
        "normal (held out)": first["n_normal"].astype(int),
    })


def best_detector(results: pd.DataFrame, detectors: Sequence[str], metric: str = "auroc", *,
                  eps: float | str | None = "max", attacks: Sequence[str] | None = None) -> pd.DataFrame:
    """The best of ``detectors`` per (dataset, attack, eps), with its interval.

    Columns: dataset, attack, eps, detector, ``metric``, ``metric_lo``, ``metric_hi``. Rows whose
    metric is NaN for every detector (too few successful adversarial examples) are kept with a
    NaN value and detector ``None``.
    """
    _check(results, metric)
    frame = results[results["detector"].isin(list(detectors))]
    if attacks is not None:
        frame = frame[frame["attack"].str.lower().isin([a.lower() for a in attacks])]
    if isinstance(eps, str) and eps == "max":
        frame = frame[frame["eps"] == frame.groupby("dataset")["eps"].transform("max")]
    elif eps is not None:
        frame = frame[np.isclose(frame["eps"].astype(float), float(eps))]
    rows = []
    for (dataset, attack, e), part in frame.groupby(_KEYS, sort=False):
        valid = part.dropna(subset=[metric])
        if valid.empty:
            rows.append({"dataset": dataset, "attack": attack, "eps": e, "detector": None, metric: np.nan,
                         f"{metric}_lo": np.nan, f"{metric}_hi": np.nan})
            continue
        best = valid.loc[valid[metric].idxmax()]
        rows.append({"dataset": dataset, "attack": attack, "eps": e, "detector": best["detector"],
                     metric: float(best[metric]), f"{metric}_lo": float(best.get(f"{metric}_lo", np.nan)),
                     f"{metric}_hi": float(best.get(f"{metric}_hi", np.nan))})
    return pd.DataFrame(rows, columns=["dataset", "attack", "eps", "detector", metric, f"{metric}_lo",
                                       f"{metric}_hi"])
