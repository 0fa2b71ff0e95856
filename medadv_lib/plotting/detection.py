"""Figures of detector benchmarks: metric heat-maps and ROC curves.

Both take the tidy tables of :class:`~medadv_lib.metrics.DetectionProtocol` and
:func:`~medadv_lib.pipeline.detection_benchmark` (``results`` and ``scores``); the tables of the
same results are in :mod:`medadv_lib.tables`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..tables import _KEYS, METRIC_LABELS, _check, _order, run_label
from .style import PALETTE, natural_datasets, new_figure


def detection_heatmap(results: pd.DataFrame, metrics: Sequence[str] = ("auroc", "tpr90"), *,
                      detectors: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
                      natural: Sequence[str] | None = None, annotate: bool = True,
                      decimals: int = 2, title: str | None = None) -> Figure:
    """Heat-maps of detector metrics: one row of panels per metric, one panel per data set.

    In each panel the rows are detectors and the columns the (attack, budget) runs, labelled with
    the number of held-out adversarial examples behind them. AUROC uses a
    diverging map centred on chance (0.5: red below, blue above); TPR at 90 % TNR a sequential
    map from 0 to 1 (a chance detector scores 0.1). Cells without a value (too few successful
    adversarial examples) stay blank. Natural-image panels (``natural``, default: the registry's
    domain) are titled as such.
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
    natural = natural_datasets(names, natural)
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
               datasets: Sequence[str] | None = None, natural: Sequence[str] | None = None) -> Figure:
    """ROC curves of ``detectors`` for one attack, one panel per data set (held-out scores).

    ``scores`` is ``detection_benchmark(...).scores`` (several data sets concatenated). ``eps="max"``
    takes each data set's largest budget for that attack. The dotted line marks 10 % false
    positives, where the TPR at 90 % TNR is read.
    """
    from sklearn.metrics import roc_curve

    frame = scores[scores["attack"].str.lower() == attack.lower()]
    names = _order(frame, "dataset", datasets) if not frame.empty else []
    fig = new_figure(width=2.7 * max(1, len(names)) + 0.6, height=3.0)
    axes = np.atleast_1d(fig.subplots(1, max(1, len(names)), sharey=True, squeeze=False).ravel())
    natural = natural_datasets(names, natural)
    for ax, name in zip(axes, names):
        part = frame[frame["dataset"] == name]
        e = part["eps"].max() if isinstance(eps, str) and eps == "max" else float(eps)
        part = part[np.isclose(part["eps"].astype(float), float(e))]
        for k, det in enumerate(detectors):
            d = part[part["detector"] == det]
            if d.empty or d["is_adv"].nunique() < 2:
                continue
            fpr, tpr, _ = roc_curve(d["is_adv"].astype(int), d["score"].astype(float))
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
