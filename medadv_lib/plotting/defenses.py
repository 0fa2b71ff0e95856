"""Figures of the SSAT + UAD chapter: accuracy of the training regimes under attack (the paper's
Figure 4) and the 2-D view of penultimate features with UAD's decisions (its Figure 1)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .style import PALETTE, new_figure

ATTACK_TITLES = {"fgsm": "FGSM", "pgd": "PGD (10 steps)", "cw_l2": "C&W-L2 (constant c, clipped to \u03b5)"}


def regime_robustness_plot(robustness: pd.DataFrame, *, attacks: Sequence[str] = ("fgsm", "pgd", "cw_l2"),
                           title: str | None = None) -> Figure:
    """Accuracy against the absolute L-infinity budget, one panel per attack, one line per regime.

    ``robustness`` is :attr:`~medadv_lib.pipeline.ssat_uad.SSATUADResult.robustness` of one data
    set (columns regime, attack, eps, accuracy); eps = 0 is the clean accuracy.
    """
    missing = {"regime", "attack", "eps", "accuracy"} - set(robustness.columns)
    if missing:
        raise ValueError(f"robustness lacks column(s) {sorted(missing)}; pass SSATUADResult.robustness.")
    attacks = [a for a in attacks if a in set(robustness["attack"])]
    if not attacks:
        raise ValueError(f"robustness has none of the attacks {list(ATTACK_TITLES)}.")
    regimes = list(dict.fromkeys(robustness["regime"]))
    fig = new_figure(width=3.2 * len(attacks), height=3.2)
    axes = np.atleast_1d(fig.subplots(1, len(attacks), sharey=True))
    for ax, attack in zip(axes, attacks):
        part = robustness[robustness["attack"] == attack]
        for i, regime in enumerate(regimes):
            line = part[part["regime"] == regime].sort_values("eps")
            ax.plot(line["eps"], line["accuracy"], marker="o", ms=4, color=PALETTE[i % len(PALETTE)], label=regime)
        ax.set(title=ATTACK_TITLES.get(attack, attack), xlabel="\u03b5 (absolute, L\u221e)", ylim=(-0.02, 1.02))
    axes[0].set_ylabel("accuracy on the attacked test images")
    axes[-1].legend(fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title)
    return fig


def uad_embedding_plot(embedding: pd.DataFrame, *, regimes: Sequence[str] | None = None,
                       classes: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """Penultimate features in 2-D: clean test images by true class (dots), successful AEs by
    predicted class (crosses where UAD rejects them, triangles where it accepts them).

    ``embedding`` is :attr:`~medadv_lib.pipeline.ssat_uad.SSATUADResult.embedding` of one data set.
    """
    missing = {"regime", "pc1", "pc2", "kind", "cls", "rejected"} - set(embedding.columns)
    if missing:
        raise ValueError(f"embedding lacks column(s) {sorted(missing)}; pass SSATUADResult.embedding.")
    regimes = list(regimes or dict.fromkeys(embedding["regime"]))
    fig = new_figure(width=3.6 * len(regimes), height=3.6)
    axes = np.atleast_1d(fig.subplots(1, len(regimes)))
    for ax, regime in zip(axes, regimes):
        part = embedding[embedding["regime"] == regime]
        for c in sorted(set(part["cls"])):
            color = PALETTE[int(c) % len(PALETTE)]
            name = classes[int(c)] if classes is not None else str(c)
            clean = part[(part["kind"] == "clean") & (part["cls"] == c)]
            ax.scatter(clean["pc1"], clean["pc2"], s=8, color=color, alpha=0.5, label=f"clean {name}")
            adv = part[(part["kind"] == "adv") & (part["cls"] == c)]
            for rejected, marker in ((True, "x"), (False, "^")):
                pts = adv[adv["rejected"] == rejected]
                if len(pts):
                    ax.scatter(pts["pc1"], pts["pc2"], s=22, marker=marker, color=color, edgecolor="black"
                               if marker == "^" else None, linewidths=0.6)
        n_adv = int((part["kind"] == "adv").sum())
        n_rej = int(((part["kind"] == "adv") & part["rejected"]).sum())
        ax.set(title=f"{regime}: {n_rej} of {n_adv} AEs rejected", xlabel="PC 1", ylabel="PC 2")
    axes[0].legend(fontsize=7, loc="best", markerscale=1.5)
    if title:
        fig.suptitle(title)
    return fig
