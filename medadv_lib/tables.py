"""Tables and figures of detector benchmarks (the tidy tables of
:class:`~medadv_lib.metrics.DetectionProtocol` and :func:`~medadv_lib.metrics.detection_benchmark`).

Every function takes the tidy ``results`` table (one row per detector, attack, dataset and eps,
with ``auroc``, ``auroc_lo``, ``auroc_hi``, ``tpr90``, ...) and returns a
:class:`pandas.DataFrame` or a matplotlib :class:`~matplotlib.figure.Figure` in the house style
(:mod:`medadv_lib.plotting`); nothing is displayed or written here.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..attacks.budget import format_budget
from ..plotting import new_figure

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


def detection_heatmap(results: pd.DataFrame, metrics: Sequence[str] = ("auroc", "tpr90"), *,
                      detectors: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
                      natural: Sequence[str] = ("cifar10",), annotate: bool = True,
                      decimals: int = 2, title: str | None = None) -> Figure:
    """Heat-maps of detector metrics: one row of panels per metric, one panel per data set.

    In each panel the rows are detectors and the columns the (attack, budget) runs, labelled with
    the number of held-out adversarial examples behind them. AUROC uses a
    diverging map centred on chance (0.5: red below, blue above); TPR at 90 % TNR a sequential
    map from 0 to 1 (a chance detector scores 0.1). Cells without a value (too few successful
    adversarial examples) stay blank. Natural-image panels are titled as such.
    """
    import seaborn as sns

    for m in metrics:
        _check(results, m)
    dets = _order(results, "detector", detectors)
    names = _order(results, "dataset", datasets)
    runs = {d: list(dict.fromkeys(zip(results.loc[results["dataset"] == d, "attack"],
                                      results.loc[results["dataset"] == d, "eps"]))) for d in names}
    held_out = results.groupby(_KEYS, sort=False)["n_adv"].first() if "n_adv" in results else None

    def column(name, attack, eps):
        label = run_label(attack, eps)
        return label if held_out is None else f"{label}\n({int(held_out[(name, attack, eps)])} AEs)"

    widths = [max(1, len(runs[d])) for d in names]
    fig = new_figure(width=min(16.0, 2.2 + 0.85 * sum(widths) + 0.9 * len(names)),
                     height=0.6 + len(metrics) * (0.9 + 0.32 * len(dets)))
    grid = fig.add_gridspec(len(metrics), len(names), width_ratios=widths)
    natural = set(natural)
    for i, metric in enumerate(metrics):
        if metric == "auroc":
            style = {"cmap": "RdBu", "vmin": 0.0, "vmax": 1.0, "center": 0.5}
        else:
            style = {"cmap": "Blues", "vmin": 0.0, "vmax": 1.0}
        row_axes = []
        for j, name in enumerate(names):
            ax = fig.add_subplot(grid[i, j])
            row_axes.append(ax)
            part = results[results["dataset"] == name]
            table = pd.DataFrame(index=dets, columns=[column(name, a, e) for a, e in runs[name]], dtype=float)
            for _, r in part.iterrows():
                if r["detector"] in table.index:
                    table.loc[r["detector"], column(name, r["attack"], r["eps"])] = r[metric]
            sns.heatmap(table.astype(float), ax=ax, cbar=False, annot=annotate, fmt=f".{decimals}f",
                        annot_kws={"fontsize": 8}, linewidths=0.5, linecolor="white", square=False, **style)
            ax.grid(False)
            ax.set_xlabel("")
            ax.set_ylabel(METRIC_LABELS.get(metric, metric) if j == 0 else "")
            ax.tick_params(axis="both", length=0, labelsize=8)
            ax.set_xticklabels(ax.get_xticklabels(), rotation=35 if len(runs[name]) > 1 else 0,
                               ha="right" if len(runs[name]) > 1 else "center")
            if j > 0:
                ax.set_yticklabels([])
            else:
                ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
            if i == 0:
                ax.set_title(f"{name}\n(natural images)" if name in natural else f"{name}\n(medical)", fontsize=10)
        fig.colorbar(row_axes[0].collections[0], ax=row_axes, shrink=0.9, pad=0.01,
                     label=METRIC_LABELS.get(metric, metric))
    if title:
        fig.suptitle(title)
    return fig


def roc_figure(scores: pd.DataFrame, *, detectors: Sequence[str], attack: str, eps: float | str = "max",
               datasets: Sequence[str] | None = None, natural: Sequence[str] = ("cifar10",)) -> Figure:
    """ROC curves of ``detectors`` for one attack, one panel per data set (held-out scores).

    ``scores`` is ``detection_benchmark(...).scores`` (several data sets concatenated). ``eps="max"``
    takes each data set's largest budget for that attack. The dotted line marks 10 % false
    positives, where the TPR at 90 % TNR is read.
    """
    from sklearn.metrics import roc_curve

    from ..plotting import PALETTE

    frame = scores[scores["attack"].str.lower() == attack.lower()]
    names = _order(frame, "dataset", datasets) if not frame.empty else []
    fig = new_figure(width=2.7 * max(1, len(names)) + 0.6, height=3.0)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(names)), sharey=True, squeeze=False).ravel())
    natural = set(natural)
    for ax, name in zip(axes, names):
        part = frame[frame["dataset"] == name]
        e = part["eps"].max() if isinstance(eps, str) and eps == "max" else float(eps)
        part = part[np.isclose(part["eps"].astype(float), float(e))]
        for k, det in enumerate(detectors):
            d = part[part["detector"] == det]
            if d.empty or d["is_adv"].nunique() < 2:
                continue
            fpr, tpr, _ = roc_curve(d["is_adv"], d["score"])
            ax.plot(fpr, tpr, color=PALETTE[k % len(PALETTE)], lw=1.6, label=det)
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
        ax.axvline(0.1, color="0.4", lw=0.8, ls=":")
        kind = "natural" if name in natural else "medical"
        ax.set(title=f"{name} ({kind})\n{run_label(attack, e)}", xlabel="false-positive rate", xlim=(0, 1),
               ylim=(0, 1.02))
        ax.title.set_fontsize(9.5)
    axes[0].set_ylabel("true-positive rate")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside right center", fontsize=8)
    return fig
