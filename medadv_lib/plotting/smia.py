"""Figures of the SMIA chapter: accuracy under four attacks, per-step loss bands, perturbations, the beta2 sweep.

They draw the tables of :mod:`medadv_lib.pipeline.smia` (:class:`~medadv_lib.pipeline.smia.SMIAExperiment`
and :func:`~medadv_lib.pipeline.smia.beta2_sweep`); nothing here computes a result.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..tables import attack_label
from .style import PALETTE, natural_datasets, new_figure

#: One colour per attack, the same in every SMIA figure.
ATTACK_COLORS = {"fgsm": PALETTE[1], "bim": PALETTE[2], "pgd": PALETTE[0], "smia": PALETTE[3]}


def _panel_title(name: str, natural: set) -> str:
    return f"{name} ({'natural' if name in natural else 'medical'})"


def attack_curves_plot(curves: Mapping[str, pd.DataFrame], *, attacks: Sequence[str] = ("fgsm", "bim", "pgd", "smia"),
                       natural: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """Accuracy under attack against the budget, one panel per data set, one line per attack.

    ``curves`` maps a data set to :attr:`~medadv_lib.pipeline.smia.SMIAExperiment.curve`; the clean
    accuracy (``attack == "clean"``) starts every line at eps = 0.
    """
    names = list(curves)
    if not names:
        raise ValueError("curves is empty; give at least one data set.")
    natural = natural_datasets(names, natural)
    fig = new_figure(width=min(16.0, 2.9 * len(names) + 0.6), height=3.2)
    axes = np.atleast_1d(fig.subplots(1, len(names), sharey=True))
    for ax, name in zip(axes, names):
        curve = curves[name]
        clean = curve[curve["attack"] == "clean"]
        for attack in attacks:
            part = pd.concat([clean, curve[curve["attack"] == attack]]).sort_values("eps_k")
            ax.plot(part["eps_k"], part["accuracy"], marker="o", ms=3.5, color=ATTACK_COLORS.get(attack),
                    ls="--" if attack == "smia" else "-", label=attack_label(attack))
        ticks = sorted(set(curve["eps_k"].round(6)))
        ax.set_xticks(ticks)
        ax.set_xticklabels(["clean" if t == 0 else f"{t:g}" for t in ticks])
        ax.set(title=_panel_title(name, natural), xlabel="\u03b5 (k/256)", ylim=(-0.02, 1.02))
    axes[0].set_ylabel("accuracy under attack")
    axes[-1].legend(fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title)
    return fig


def loss_trace_plot(traces: Mapping[str, pd.DataFrame], *, natural: Sequence[str] | None = None,
                    title: str | None = None) -> Figure:
    """Cross-entropy over the iterations: mean line and inter-quartile band over images, per attack.

    ``traces`` maps a data set to :attr:`~medadv_lib.pipeline.smia.SMIAExperiment.trace` (step 0
    is the clean image).
    """
    names = list(traces)
    if not names:
        raise ValueError("traces is empty; give at least one data set.")
    natural = natural_datasets(names, natural)
    fig = new_figure(width=min(16.0, 2.9 * len(names) + 0.6), height=3.0)
    axes = np.atleast_1d(fig.subplots(1, len(names)))
    for ax, name in zip(axes, names):
        for attack, part in traces[name].groupby("attack", sort=False):
            color = ATTACK_COLORS.get(attack)
            ax.plot(part["step"], part["mean"], color=color, label=attack_label(attack))
            ax.fill_between(part["step"], part["q25"], part["q75"], color=color, alpha=0.2, lw=0)
        ax.set(title=_panel_title(name, natural), xlabel="step")
    axes[0].set_ylabel("cross-entropy")
    axes[-1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def perturbation_grid(examples: Mapping[str, Mapping], *, attacks: Sequence[str] = ("pgd", "smia"),
                      eps: float | None = None, title: str | None = None) -> Figure:
    """A clean image and its perturbations, one row per data set, one column per attack.

    ``examples`` maps a data set to :attr:`~medadv_lib.pipeline.smia.SMIAExperiment.examples`; the
    first image of each is shown, the perturbation of each attack on a shared diverging scale
    (``eps``, default the largest absolute value shown), averaged over channels.
    """
    names = list(examples)
    if not names:
        raise ValueError("examples is empty; give at least one data set.")
    deltas = {(n, a): examples[n][a][0].float().mean(0).numpy() for n in names for a in attacks}
    scale = float(eps) if eps else max(float(np.abs(d).max()) for d in deltas.values()) or 1.0
    fig = new_figure(width=1.7 * (1 + len(attacks)) + 0.8, height=1.7 * len(names) + 0.4)
    axes = np.asarray(fig.subplots(len(names), 1 + len(attacks), squeeze=False))
    image = None
    for i, name in enumerate(names):
        x = examples[name]["x"][0].float()
        shown = x.permute(1, 2, 0).numpy() if x.shape[0] == 3 else x[0].numpy()
        axes[i, 0].imshow(shown, cmap=None if x.shape[0] == 3 else "gray", vmin=0, vmax=1)
        axes[i, 0].set_ylabel(name, fontsize=8)
        for j, attack in enumerate(attacks, start=1):
            image = axes[i, j].imshow(deltas[name, attack], cmap="RdBu_r", vmin=-scale, vmax=scale)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    for j, label in enumerate(["clean", *(attack_label(a) for a in attacks)]):
        axes[0, j].set_title(label, fontsize=9)
    fig.colorbar(image, ax=axes[:, 1:].ravel().tolist(), shrink=0.8, label="perturbation")
    if title:
        fig.suptitle(title)
    return fig


def beta2_plot(sweep: pd.DataFrame, *, chosen: float | None = None, title: str | None = None) -> Figure:
    """Accuracy under SMIA (left) and restart spread of the final cross-entropy (right) against beta2.

    ``sweep`` is :func:`~medadv_lib.pipeline.smia.beta2_sweep`; beta2 = 0 (BIM) sits at the left of
    a symmetric-log axis; ``chosen`` is marked with a vertical line.
    """
    if sweep.empty:
        raise ValueError("the sweep is empty.")
    fig = new_figure(width=7.0, height=2.8)
    axes = fig.subplots(1, 2)
    part = sweep.sort_values("beta2")
    for ax, column, label in zip(axes, ("accuracy", "ce_std"), ("accuracy under SMIA", "std of final CE (restarts)")):
        ax.plot(part["beta2"], part[column], marker="o", color=ATTACK_COLORS["smia"])
        ax.set_xscale("symlog", linthresh=max(1e-3, float(part.loc[part["beta2"] > 0, "beta2"].min())
                                              if (part["beta2"] > 0).any() else 1.0))
        if chosen is not None:
            ax.axvline(chosen, color="0.4", ls=":", lw=1)
        ax.set(xlabel="\u03b2\u2082 (0 = BIM)", ylabel=label)
    axes[0].set_ylim(-0.02, 1.02)
    if title:
        fig.suptitle(title)
    return fig
