"""Figures of the analysis chapters: accuracy under attack, the stress test, the fixed-direction
effect (cosines, trajectories, PCA views)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .style import DOMAIN_COLORS, PALETTE, dataset_colors, natural_datasets, new_figure


def robustness_plot(curves: pd.DataFrame, *, natural: Sequence[str] | None = None, chance: Mapping[str, float] | None = None,
                    title: str | None = None) -> Figure:
    """Accuracy against the budget (k/256), one line per data set; eps = 0 is the clean accuracy.

    ``curves`` is a long frame with ``dataset``, ``eps_k`` and ``accuracy`` columns (e.g.
    :func:`medadv_lib.analysis.concat_labelled` of :func:`medadv_lib.analysis.curve_from_examples`
    frames). Natural sets (``natural``, default: the registry's domain) are drawn dashed;
    ``chance`` (name -> 1/K) adds dotted chance levels.
    """
    names = list(dict.fromkeys(curves["dataset"]))
    natural = natural_datasets(names, natural)
    colors = dataset_colors(names, natural)
    fig = new_figure(width=6.4, height=3.8)
    ax = fig.subplots()
    for name in names:
        part = curves[curves["dataset"] == name].sort_values("eps_k")
        style = "--" if name in natural else "-"
        ax.plot(part["eps_k"], part["accuracy"], style, marker="o", ms=4, color=colors[name],
                label=f"{name} ({'natural' if name in natural else 'medical'})")
        if chance and name in chance:
            ax.axhline(chance[name], color=colors[name], ls=":", lw=0.8, alpha=0.7)
    ticks = sorted(set(curves["eps_k"].round(6)))
    ax.set_xticks(ticks)
    ax.set_xticklabels(["clean" if t == 0 else f"{t:g}/256" for t in ticks])
    ax.set(xlabel="L\u221e budget \u03b5 (untargeted PGD)", ylabel="test accuracy", ylim=(-0.02, 1.02))
    ax.legend(fontsize=8, loc="upper right")
    if title:
        ax.set_title(title)
    return fig


def stress_plot(frame: pd.DataFrame, *, value: str = "z_score", natural: Sequence[str] | None = None,
                kind: str = "box", symlog: bool = True, title: str | None = None) -> Figure:
    """Reached z-scores (or percentiles) per data set: one panel per (layer, budget), max and min side by side.

    ``frame`` holds rows of :func:`medadv_lib.analysis.stress_sweep` with a ``dataset`` column.
    ``kind`` is ``"box"`` or ``"violin"`` (seaborn). With ``symlog`` the z axis is linear within
    +-3 and logarithmic beyond, so both a push to 2 and a push to 200 standard deviations read.
    """
    import seaborn as sns

    if kind not in ("box", "violin"):
        raise ValueError(f"kind must be 'box' or 'violin', got {kind!r}")
    names = list(dict.fromkeys(frame["dataset"]))
    natural = natural_datasets(names, natural)
    layers = list(dict.fromkeys(frame["layer"]))
    budgets = sorted(set(frame["eps_k"]))
    colors = {"max": PALETTE[3], "min": PALETTE[0]}
    fig = new_figure(width=max(6.0, 1.2 * len(names) * len(budgets) + 1.5), height=3.1 * len(layers))
    axes = np.atleast_2d(fig.subplots(len(layers), len(budgets), squeeze=False, sharey="row"))
    for i, layer in enumerate(layers):
        for j, eps_k in enumerate(budgets):
            ax = axes[i, j]
            part = frame[(frame["layer"] == layer) & (frame["eps_k"] == eps_k)]
            common = dict(data=part, x="dataset", y=value, hue="direction", order=names, hue_order=["max", "min"],
                          palette=colors, ax=ax)
            if kind == "box":
                sns.boxplot(**common, fliersize=1.5, linewidth=0.8, width=0.7)
            else:
                sns.violinplot(**common, cut=0, inner="quartile", linewidth=0.7, density_norm="width")
            if value == "z_score":
                ax.axhline(0, color="0.4", lw=0.6)
                for level in (-3, 3):
                    ax.axhline(level, color="0.6", lw=0.6, ls=":")
                if symlog:
                    _symlog_axis(ax, part[value].to_numpy(dtype=float))
            ax.set_title(f"{layer}, \u03b5 = {eps_k:g}/256", fontsize=10)
            ax.set_xlabel("")
            ax.set_ylabel("reached z-score (clean training units)" if value == "z_score" and j == 0 else
                          (value if j == 0 else ""))
            ax.tick_params(axis="x", labelrotation=20)
            for label in ax.get_xticklabels():
                if label.get_text() in natural:
                    label.set_color(DOMAIN_COLORS["natural"])
            legend = ax.get_legend()
            if legend is not None:
                legend.remove()
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colors[d], edgecolor="0.2", label=label)
               for d, label in (("max", "maximise"), ("min", "minimise"))]
    fig.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=9, title="push the channel")
    if title:
        fig.suptitle(title)
    return fig


def _symlog_axis(ax, values: np.ndarray, linthresh: float = 3.0) -> None:
    """Symmetric-log y axis, linear within +-linthresh, with plain tick labels (1, 3, 10, 30, ...)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter

    ax.set_yscale("symlog", linthresh=linthresh, linscale=1.0)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
    steps = [1, 3, 10, 30, 100, 300, 1000, 3000, 10000]
    ticks = [0.0] + [v for v in steps if v <= max(hi, linthresh) * 1.05] + \
        [-v for v in steps if -v >= min(lo, -linthresh) * 1.05]
    ax.yaxis.set_major_locator(FixedLocator(sorted(ticks)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(FixedLocator([]))


def cosine_plot(frame: pd.DataFrame, *, natural: Sequence[str] | None = None, title: str | None = None) -> Figure:
    """Distributions of the cosine with ``w_t - w_y``: per-step feature change, and the analytic gradient.

    ``frame`` holds rows of :func:`medadv_lib.analysis.fixed_direction_sweep` with a ``dataset`` column.
    """
    import seaborn as sns

    names = list(dict.fromkeys(frame["dataset"]))
    palette = dataset_colors(names, natural)
    moving = frame[frame["step"] >= 1]
    fig = new_figure(width=8.6, height=3.4)
    ax_step, ax_grad = fig.subplots(1, 2, sharey=True)
    sns.violinplot(data=moving, x="dataset", y="cos_step", hue="dataset", order=names, palette=palette, cut=0,
                   inner="quartile", linewidth=0.7, ax=ax_step, legend=False)
    sns.stripplot(data=frame, x="dataset", y="grad_cos", hue="dataset", order=names, palette=palette, size=2,
                  alpha=0.4, jitter=0.25, ax=ax_grad, legend=False)
    ax_step.set(title="per-step feature change h\u209b \u2212 h\u209b\u208b\u2081", xlabel="",
                ylabel="cosine with w\u209c \u2212 w\u1d67", ylim=(-1.05, 1.05))
    ax_grad.set(title="analytic step direction \u2212\u2202L/\u2202h", xlabel="", ylabel="")
    for ax in (ax_step, ax_grad):
        ax.axhline(1, color="0.5", lw=0.6, ls=":")
        ax.axhline(0, color="0.5", lw=0.6)
    if title:
        fig.suptitle(title)
    return fig


def trajectory_plot(frame: pd.DataFrame, *, values: Sequence[str] = ("projection_gain", "maha_gain"),
                    labels: Mapping[str, str] | None = None, hue: str = "eps_k", title: str | None = None) -> Figure:
    """Median (line) and inter-quartile range (band) of each value against the step, one column per data set.

    ``frame`` holds rows of :func:`medadv_lib.analysis.fixed_direction_sweep` with a ``dataset``
    column; one line per ``hue`` level (default the budget).
    """
    labels = {"projection_gain": "projection on w\u209c \u2212 w\u1d67\n(gain since clean)",
              "maha_gain": "Mahalanobis distance to nearest\nclean class (gain since clean)",
              "projection_pct": "projection as percentile of\nclean target-class training",
              "maha_min": "Mahalanobis distance\nto nearest clean class", "maha_true": "Mahalanobis distance\nto true class",
              "maha_target": "Mahalanobis distance\nto target class", "cos_step": "cosine of step",
              "p_target": "p(target)", **(labels or {})}
    names = list(dict.fromkeys(frame["dataset"]))
    levels = sorted(set(frame[hue]))
    colors = {level: matplotlib.colormaps["viridis"](0.15 + 0.7 * k / max(1, len(levels) - 1))
              for k, level in enumerate(levels)}
    fig = new_figure(width=3.0 * len(names) + 0.8, height=2.6 * len(values) + 0.5)
    axes = np.atleast_2d(fig.subplots(len(values), len(names), squeeze=False, sharex=True))
    for j, name in enumerate(names):
        part = frame[frame["dataset"] == name]
        for i, value in enumerate(values):
            ax = axes[i, j]
            for level in levels:
                stats = part[part[hue] == level].groupby("step")[value].quantile([0.25, 0.5, 0.75]).unstack()
                label = f"{level:g}/256" if hue == "eps_k" else str(level)
                ax.plot(stats.index, stats[0.5], color=colors[level], lw=1.5, label=label)
                ax.fill_between(stats.index, stats[0.25], stats[0.75], color=colors[level], alpha=0.18, lw=0)
            if i == 0:
                ax.set_title(name)
            if j == 0:
                ax.set_ylabel(labels.get(value, value))
            if i == len(values) - 1:
                ax.set_xlabel("attack step (0 = clean)")
    handles, texts = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, texts, loc="outside lower center", ncols=len(levels), fontsize=8,
               title="\u03b5" if hue == "eps_k" else hue)
    if title:
        fig.suptitle(title)
    return fig


def pca_plot(views: Mapping[str, pd.DataFrame], *, classes: Mapping[str, Sequence[str]] | None = None,
             max_arrows: int = 40, title: str | None = None) -> Figure:
    """2-D PCA views (:func:`medadv_lib.analysis.pca_view`), one panel per data set.

    Clean training features are faint dots coloured by class, attacked images open circles at their
    clean position joined by a line to their adversarial position (crosses), coloured by true class.
    The axes are cut at the 1st and 99th percentiles of the points shown (plus a margin), so a few
    far-out points may fall outside.
    """
    from matplotlib.lines import Line2D

    names = list(views)
    fig = new_figure(width=3.4 * len(names) + 0.4, height=3.6)
    axes = np.atleast_1d(fig.subplots(1, len(names), squeeze=False).ravel())
    for ax, name in zip(axes, names):
        view = views[name]
        labels = sorted(set(view["label"]))
        colours = PALETTE if len(labels) <= len(PALETTE) else [matplotlib.colormaps["tab10"](k % 10) for k in range(len(labels))]
        cmap = {c: colours[k % len(colours)] for k, c in enumerate(labels)}
        train = view[view["set"] == "clean training"]
        ax.scatter(train["pc1"], train["pc2"], s=3, c=[cmap[c] for c in train["label"]], alpha=0.25, lw=0)
        clean = view[view["set"] == "clean attacked"].set_index("image")
        adv = view[view["set"] == "adversarial"].set_index("image").loc[clean.index]
        shown = clean.index[:max_arrows]
        for i in shown:
            ax.plot([clean.at[i, "pc1"], adv.at[i, "pc1"]], [clean.at[i, "pc2"], adv.at[i, "pc2"]],
                    color=cmap[clean.at[i, "label"]], lw=0.5, alpha=0.6)
        ax.scatter(clean.loc[shown, "pc1"], clean.loc[shown, "pc2"], s=18, facecolors="none",
                   edgecolors=[cmap[c] for c in clean.loc[shown, "label"]], lw=0.9)
        ax.scatter(adv.loc[shown, "pc1"], adv.loc[shown, "pc2"], s=20, marker="x",
                   c=[cmap[c] for c in adv.loc[shown, "label"]], lw=0.9)
        # a few far-out points would squeeze the rest into a corner: cut the axes at the 1st and 99th
        # percentiles of the points shown, padded
        shown_points = pd.concat([train, clean.loc[shown], adv.loc[shown]])
        for axis, col in ((ax.set_xlim, "pc1"), (ax.set_ylim, "pc2")):
            lo, hi = np.nanpercentile(shown_points[col].to_numpy(dtype=float), [1, 99])
            pad = 0.15 * max(hi - lo, 1e-9)
            axis(lo - pad, hi + pad)
        ratio = view.attrs.get("explained_variance_ratio")
        ax.set_xlabel("PC 1" + (f" ({ratio[0]:.0%})" if ratio else ""))
        ax.set_ylabel("PC 2" + (f" ({ratio[1]:.0%})" if ratio else ""))
        ax.set_title(name)
        names_c = (classes or {}).get(name)
        handles = [Line2D([], [], color=cmap[c], marker="o", ls="", ms=4,
                                           label=str(names_c[c])[:14] if names_c else str(c)) for c in labels]
        handles += [Line2D([], [], color="0.3", marker="o", mfc="none", ls="", ms=5, label="clean"),
                    Line2D([], [], color="0.3", marker="x", ls="", ms=5, label="adversarial")]
        ax.legend(handles=handles, fontsize=7, loc="best", ncols=1 if len(labels) <= 3 else 2)
    if title:
        fig.suptitle(title)
    return fig


def scale_plot(stress: pd.DataFrame, *, eps_k: float, natural: Sequence[str] | None = None,
               title: str | None = None) -> Figure:
    """The scale study at one budget: median shift against the image size, one panel per (layer, initialisation).

    ``stress`` is :attr:`medadv_lib.pipeline.scale.ScaleStudy.stress` (columns ``image_px``,
    ``init``, ``dataset``, ``layer``, ``direction``, ``eps_k``, ``median_shift_z``, ``q25_z``,
    ``q75_z``). Maximising pushes only; one line per data set, natural sets dashed. The y axis is
    the median shift in clean standard deviations (reached minus clean z), so the line's height is
    how far 1/256 (or ``eps_k``/256) moves a channel at that size.
    """
    sub = stress[(stress["direction"] == "max") & (stress["eps_k"] == float(eps_k))]
    if sub.empty:
        raise ValueError(f"no maximising rows at eps_k={eps_k}; the study's budgets are {sorted(set(stress['eps_k']))}")
    names = list(dict.fromkeys(sub["dataset"]))
    natural = natural_datasets(names, natural)
    colors = dataset_colors(names, natural)
    layers, inits = list(dict.fromkeys(sub["layer"])), list(dict.fromkeys(sub["init"]))
    fig = new_figure(width=3.3 * len(inits), height=2.7 * len(layers))
    axes = fig.subplots(len(layers), len(inits), sharex=True, sharey="row", squeeze=False)
    sizes = sorted(set(sub["image_px"]))
    for i, layer in enumerate(layers):
        for j, init in enumerate(inits):
            ax = axes[i, j]
            for name in names:
                part = sub[(sub["layer"] == layer) & (sub["init"] == init) & (sub["dataset"] == name)]
                part = part.sort_values("image_px")
                ax.plot(part["image_px"], part["median_shift_z"], "--" if name in natural else "-", marker="o",
                        ms=4, color=colors[name], label=f"{name} ({'natural' if name in natural else 'medical'})")
            ax.set_xscale("log", base=2)
            ax.set_xticks(sizes)
            ax.set_xticklabels([str(s) for s in sizes])
            ax.axhline(0, color="grey", lw=0.6)
            ax.set_title(f"{layer}, {init}", fontsize=9)
            if i == len(layers) - 1:
                ax.set_xlabel("image size (px)")
            if j == 0:
                ax.set_ylabel(f"median shift (z) at {eps_k:g}/256")
    axes[0, 0].legend(fontsize=7, loc="upper left")
    if title:
        fig.suptitle(title)
    return fig
