"""Figures of the risk chapter: the every-system-against-every-attack heat-map of the adversarial
risk (Li, Pan & Zhu, Eq. 2 and 3) with its intervals, and the risk against the budget and against
UAD's false-positive rate. They draw :class:`~medadv_lib.pipeline.risk.RiskExperiment`'s tables."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .style import PALETTE, new_figure


def _need(frame: pd.DataFrame, columns, what: str) -> None:
    missing = sorted(set(columns) - set(frame.columns))
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; pass the matching RiskExperiment table.")


def risk_heatmap(table: pd.DataFrame, *, attack_labels: Mapping[str, str] | None = None,
                 datasets: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """Heat-map of the risk ``r``: one panel per data set, rows regime x detector, columns attacks.

    Each cell shows ``r`` and, below it, its bootstrap interval; the colour runs from 0 (no risk)
    to 2 (every clean image and every AE costs once), so panels and chapters compare. ``table``
    is :attr:`RiskExperiment.table` (columns dataset, regime, detector, attack, r, r_lo, r_hi).
    """
    import seaborn as sns

    _need(table, ("dataset", "regime", "detector", "attack", "r", "r_lo", "r_hi"), "table")
    names = list(datasets) if datasets is not None else list(dict.fromkeys(table["dataset"]))
    if not names:
        raise ValueError("table is empty; nothing to draw.")
    labels = dict(attack_labels or {})
    attacks = list(dict.fromkeys(table["attack"]))
    rows_per = [table[table["dataset"] == n][["regime", "detector"]].drop_duplicates().shape[0] for n in names]
    fig = new_figure(width=min(16.0, 2.4 + 1.05 * len(attacks) * len(names)), height=1.2 + 0.36 * max(rows_per))
    axes = np.atleast_1d(fig.subplots(1, len(names), squeeze=False)[0])
    for ax, name in zip(axes, names):
        part = table[table["dataset"] == name]
        index = list(dict.fromkeys(f"{r} + {d}" if d != "none" else f"{r} (no detector)"
                                   for r, d in zip(part["regime"], part["detector"])))
        values = pd.DataFrame(np.nan, index=index, columns=[labels.get(a, a) for a in attacks])
        notes = pd.DataFrame("", index=index, columns=values.columns)
        for r in part.itertuples():
            row = f"{r.regime} + {r.detector}" if r.detector != "none" else f"{r.regime} (no detector)"
            col = labels.get(r.attack, r.attack)
            values.loc[row, col] = r.r
            interval = "" if np.isnan(r.r_lo) else f"\n[{r.r_lo:.2f}, {r.r_hi:.2f}]"
            notes.loc[row, col] = f"{r.r:.2f}{interval}"
        sns.heatmap(values.astype(float), ax=ax, cmap="Reds", vmin=0.0, vmax=2.0, annot=notes.to_numpy(), fmt="",
                    annot_kws={"fontsize": 6.5}, linewidths=0.5, linecolor="white", cbar=ax is axes[-1],
                    cbar_kws={"label": "risk r = R / N"})
        ax.grid(False)
        ax.set(title=name, xlabel="", ylabel="")
        ax.tick_params(axis="both", length=0, labelsize=8)
        ax.set_xticklabels(ax.get_xticklabels(), rotation=35, ha="right")
        ax.set_yticklabels(ax.get_yticklabels(), rotation=0)
    if title:
        fig.suptitle(title)
    return fig


def risk_budget_plot(budget: pd.DataFrame, *, datasets: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """Risk under PGD against the absolute budget, one panel per data set, one colour per regime;
    solid without a detector, dashed with UAD, bands the bootstrap intervals."""
    _need(budget, ("dataset", "regime", "detector", "eps", "r", "r_lo", "r_hi"), "budget")
    names = list(datasets) if datasets is not None else list(dict.fromkeys(budget["dataset"]))
    fig = new_figure(width=3.6 * len(names), height=3.2)
    axes = np.atleast_1d(fig.subplots(1, len(names), sharey=True, squeeze=False)[0])
    for ax, name in zip(axes, names):
        part = budget[budget["dataset"] == name]
        for i, regime in enumerate(dict.fromkeys(part["regime"])):
            for detector, style in (("none", "-"), ("UAD", "--")):
                line = part[(part["regime"] == regime) & (part["detector"] == detector)].sort_values("eps")
                if line.empty:
                    continue
                color = PALETTE[i % len(PALETTE)]
                ax.plot(line["eps"], line["r"], style, marker="o", ms=3, color=color,
                        label=f"{regime}" + (" + UAD" if detector == "UAD" else ""))
                ax.fill_between(line["eps"], line["r_lo"], line["r_hi"], color=color, alpha=0.08, lw=0)
        ax.set(title=name, xlabel="\u03b5 (absolute, L\u221e)", ylim=(-0.02, 2.02))
    axes[0].set_ylabel("risk r under PGD")
    axes[-1].legend(fontsize=7, ncol=2, loc="upper left")
    if title:
        fig.suptitle(title)
    return fig


def risk_fpr_plot(curve: pd.DataFrame, *, datasets: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """Risk under PGD against UAD's clean false-positive rate (0: no UAD), one line per regime,
    the FPR of least risk starred."""
    _need(curve, ("dataset", "regime", "fpr", "r", "best"), "fpr_curve")
    names = list(datasets) if datasets is not None else list(dict.fromkeys(curve["dataset"]))
    fig = new_figure(width=3.6 * len(names), height=3.2)
    axes = np.atleast_1d(fig.subplots(1, len(names), sharey=True, squeeze=False)[0])
    for ax, name in zip(axes, names):
        part = curve[curve["dataset"] == name]
        for i, regime in enumerate(dict.fromkeys(part["regime"])):
            line = part[part["regime"] == regime].sort_values("fpr")
            color = PALETTE[i % len(PALETTE)]
            ax.plot(line["fpr"], line["r"], marker="o", ms=3, color=color, label=regime)
            best = line[line["best"]]
            ax.plot(best["fpr"], best["r"], "*", ms=11, color=color, markeredgecolor="black", markeredgewidth=0.5)
        ax.set(title=name, xlabel="UAD's clean false-positive rate", ylim=(-0.02, 2.02))
    axes[0].set_ylabel("risk r under PGD")
    axes[-1].legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title)
    return fig
