"""The chapters' prose as tested functions: the numbers a chapter glues, and the sentences it chooses.

Each ``*_numbers`` function takes a chapter's result tables and returns ``{glue name: value}``;
the chapter glues them all in one hidden cell (``for k, v in numbers.items(): glue(k, v,
display=False)``). Sentences that depend on the results (what an ``if/elif`` chain in a cell
used to choose) are made here, so they are tested and the cells stay thin. Nothing here
computes an experiment: the inputs are the tables of :mod:`medadv_lib.analysis` and
:mod:`medadv_lib.tables`.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .attacks.budget import format_budget


def _budget(k: float) -> str:
    return format_budget(float(k) / 256.0)  # "1/256 (0.0039)", as the chapters have always written budgets


def compare_word(gap: float, *, tolerance: float = 0.01) -> str:
    """``"more than"``, ``"less than"`` or ``"about as much as"`` for a difference ``gap`` (within ``tolerance``)."""
    if math.isnan(gap):
        raise ValueError("gap is NaN; compare two measured values")
    return "about as much as" if abs(gap) < tolerance else ("more than" if gap > 0 else "less than")


def finding_word(n_agree: int, n_total: int, *, claim: str = "the HFC finding") -> str:
    """Whether ``n_agree`` of ``n_total`` comparisons reproduce ``claim``: all, none, or in part."""
    if not 0 <= n_agree <= n_total or n_total == 0:
        raise ValueError(f"n_agree={n_agree} must lie in [0, n_total={n_total}] with n_total > 0")
    if n_agree == n_total:
        return f"reproduces {claim}"
    return f"does not reproduce {claim}" if n_agree == 0 else f"reproduces {claim} only in part"


def curve_numbers(curve_frame: pd.DataFrame, eps_k: Sequence[float], natural: str) -> dict:
    """Glue values of the stress-test chapter's accuracy-under-attack paragraph.

    Parameters
    ----------
    curve_frame : DataFrame
        Columns ``dataset``, ``eps_k`` (0 = clean), ``accuracy``, ``n``
        (:func:`~medadv_lib.analysis.concat_labelled` of robustness curves).
    eps_k : sequence of float
        The attacked budgets, in k/256.
    natural : str
        The natural-image contrast set; every other data set is medical.
    """
    acc = curve_frame.pivot(index="dataset", columns="eps_k", values="accuracy")
    if natural not in acc.index:
        raise KeyError(f"natural={natural!r} is not among the curves' data sets {list(acc.index)}")
    small, large = float(min(eps_k)), float(max(eps_k))
    medical = [n for n in acc.index if n != natural]
    drop = acc[0.0] - acc[small]
    gap = float(drop[medical].mean() - drop[natural])
    return {"curve_n": int(curve_frame["n"].iloc[0]), "eps_small": _budget(small), "eps_large": _budget(large),
            "drop_small_med": float(drop[medical].mean()), "drop_small_nat": float(drop[natural]),
            "acc_large_med_max": float(acc.loc[medical, large].max()), "acc_large_nat": float(acc.loc[natural, large]),
            "curve_compare": compare_word(gap)}


def stress_numbers(summary: pd.DataFrame, comparisons: Mapping[str, pd.DataFrame], eps_k: Sequence[float],
                   natural: str) -> dict:
    """Glue values of the stress-test chapter's findings.

    Parameters
    ----------
    summary : DataFrame
        :func:`~medadv_lib.analysis.stress_summary` of every data set.
    comparisons : mapping
        Direction (``"max"``, ``"min"``) -> :func:`~medadv_lib.analysis.stress_comparison`.
    eps_k : sequence of float
        The stress budgets in k/256 (the first and the last are described).
    natural : str
        The natural-image contrast set.

    Returns
    -------
    dict
        ``verdict_<max|min>_<pen|int>_<first|last>`` sentences
        (:func:`~medadv_lib.analysis.stress_verdict`), the share of maximising pushes beyond p99 in
        the penultimate layer at the first budget (medical range and natural), the number of
        comparisons in which every medical set is farther out, and the size of the first budget's
        effect.
    """
    from .analysis import stress_verdict

    first, last = float(min(eps_k)), float(max(eps_k))
    out = {}
    for direction, comp in comparisons.items():
        for _, row in comp.iterrows():
            where = "pen" if row["layer"] == "penultimate" else "int"
            for when in [w for w, k in (("first", first), ("last", last)) if k == row["eps_k"]]:
                out[f"verdict_{direction}_{where}_{when}"] = stress_verdict(row)
    pen = summary[(summary["direction"] == "max") & (summary["eps_k"] == first)
                  & (summary["layer"] == "penultimate")].set_index("dataset")
    medical = [n for n in pen.index if n != natural]
    n_all = int(sum(c["medical_all_farther"].sum() for c in comparisons.values()))
    n_comp = int(sum(len(c) for c in comparisons.values()))
    at_first = summary[summary["eps_k"] == first]
    max_shift = float(at_first["median_shift_z"].abs().max())
    out.update({
        "beyond_pen_med_lo": float(pen.loc[medical, "share_beyond"].min()),
        "beyond_pen_med_hi": float(pen.loc[medical, "share_beyond"].max()),
        "beyond_pen_nat": float(pen.loc[natural, "share_beyond"]),
        "first_eps": _budget(first), "last_eps": _budget(last),
        "n_all_farther": n_all, "n_comparisons": n_comp, "stress_finding": finding_word(n_all, n_comp),
        "max_shift_first": max_shift, "max_beyond_first": float(at_first["share_beyond"].max()),
        "first_budget_effect": ("stays well inside its clean range" if max_shift < 1 else
                                "is pushed a clean standard deviation or more"),
    })
    return out


#: Reader labels of :func:`~medadv_lib.analysis.stress_summary`'s columns.
STRESS_LABELS = {"eps_k": "eps (k/256)", "median_z": "median z", "median_clean_z": "median clean z",
                 "median_shift_z": "median shift (z)", "share_beyond": "beyond p99 / p1",
                 "share_outside_range": "outside clean range"}


def init_text(profile) -> str:
    """How a profile's models start: ``"fine-tuned from ImageNet weights"`` or ``"trained from scratch"``.

    Read through :func:`medadv_lib.weights.resolve_imagenet`, so a profile that asks for ImageNet
    weights this machine does not have is described as what it trains: from scratch.
    """
    from .weights import resolve_imagenet

    weights = resolve_imagenet(profile.train.arch, profile.train.weights)[0]
    if weights is None:
        return "trained from scratch"
    return "fine-tuned from ImageNet weights" if profile.train.weights == "imagenet" else "fine-tuned from given weights"


def model_numbers(results: pd.DataFrame, profile) -> dict:
    """Glue values of a chapter's scale sentence: ``arch``, ``init`` (:func:`init_text`), ``image_px``,
    ``n_train`` (largest), ``profile_name``.

    ``results`` is :func:`~medadv_lib.tables.model_summary` (columns ``model`` and ``n train``).
    """
    return {"arch": str(results["model"].iloc[0]), "init": init_text(profile), "image_px": profile.data.image_size,
            "n_train": int(results["n train"].max()), "profile_name": profile.name}


def stress_scale_numbers(stress: Mapping, frame: pd.DataFrame, natural: str) -> dict:
    """Glue values of the stress test's sample sizes.

    ``stress`` maps data sets to :class:`~medadv_lib.pipeline.stress.StressResult`, ``frame`` is
    their labelled concatenation (column ``dataset``).
    """
    return {"n_stats": stress[natural].n_reference,
            "n_stress_images": int(frame.groupby("dataset")["image"].nunique().min()),
            "n_stress_channels": int(frame.groupby(["dataset", "layer"])["channel"].nunique().min()),
            "intermediate": ", ".join(sorted({r.layers[0] for r in stress.values()}))}


def budget_k_to_eps(frame: pd.DataFrame, column: str = "eps_k") -> pd.DataFrame:
    """A copy of ``frame`` whose budget column in k/256 becomes ``eps`` on the pixel scale, in place,
    so that :func:`~medadv_lib.formatting.format_frame` shows it as ``k/256``."""
    if column not in frame.columns:
        raise KeyError(f"column {column!r} is not in the table; its columns are {list(frame.columns)}")
    out = frame.copy()
    out[column] = out[column].astype(float) / 256.0
    return out.rename(columns={column: "eps"})


def stress_table(summary: pd.DataFrame):
    """The reader's table of :func:`~medadv_lib.analysis.stress_summary`: budgets as k/256, shares as %."""
    from .formatting import reader_table

    shown = budget_k_to_eps(summary.drop(columns=[c for c in ("q25_z", "q75_z") if c in summary.columns]))
    return reader_table(shown, rates=["share_beyond", "share_outside_range"], decimals=2,
                        labels={k: v for k, v in STRESS_LABELS.items() if k != "eps_k"})


def data_numbers(splits: pd.DataFrame, results: pd.DataFrame, comparison: pd.DataFrame, profile,
                 n_per_class: int) -> dict:
    """Glue values of the data-and-models chapter.

    Parameters
    ----------
    splits : DataFrame
        :func:`~medadv_lib.tables.split_summary` (columns ``dataset``, ``train``, ``rarest class``).
    results : DataFrame
        :func:`~medadv_lib.tables.model_summary` (``model``, ``balanced acc.``, ``AUROC``).
    comparison : DataFrame
        :func:`~medadv_lib.papers.comparison_frame` (``dataset``, ``AUROC gap``; may be empty when
        no set has a published baseline).
    """
    smallest = splits.loc[splits["train"].idxmin()]
    skewed = splits.loc[splits["rarest class"].idxmin()]
    worst = results.loc[results["balanced acc."].idxmin()]
    best = results.loc[results["balanced acc."].idxmax()]
    out = {"n_datasets": len(results), "image_px": profile.data.image_size, "profile_name": profile.name,
           "n_per_class_shown": n_per_class, "total_train": int(splits["train"].sum()),
           "smallest_name": smallest["dataset"], "smallest_train": int(smallest["train"]),
           "skewed_name": skewed["dataset"], "skewed_share": float(skewed["rarest class"]),
           "arch": str(results["model"].iloc[0]), "init": init_text(profile), "epochs": profile.train.epochs,
           "best_name": best["dataset"], "best_bacc": float(best["balanced acc."]),
           "worst_name": worst["dataset"], "worst_bacc": float(worst["balanced acc."]),
           "auroc_min": float(results["AUROC"].min()), "auroc_max": float(results["AUROC"].max()),
           "gap_name": "none", "gap_auroc": 0.0}
    if len(comparison):
        gap = comparison.loc[comparison["AUROC gap"].idxmin()]
        out.update(gap_name=gap["dataset"], gap_auroc=float(-gap["AUROC gap"]))
    return out


#: Columns of the fixed-direction chapter's per-data-set table, and those shown as percentages.
DIRECTION_COLUMNS = ["dataset", "classes", "images", "success_rate", "mean_cos_step", "median_cos_step",
                     "share_cos_step_above", "mean_cos_total", "mean_grad_cos", "min_grad_cos"]
DIRECTION_RATES = ["success_rate", "share_cos_step_above"]
#: Columns of its per-budget table, and those shown as percentages.
DIRECTION_EPS_COLUMNS = ["dataset", "eps_k", "success_rate", "median_projection_gain", "median_projection_pct_last",
                         "share_projection_beyond", "median_distance_first", "median_distance_last",
                         "share_distance_grew"]
DIRECTION_EPS_RATES = ["success_rate", "share_projection_beyond", "share_distance_grew"]


def alignment_word(mean_cos: float) -> str:
    """How closely per-step feature changes follow ``w_t - w_y``, from their mean cosine."""
    return "only loosely" if mean_cos < 0.5 else ("fairly closely" if mean_cos < 0.9 else "closely")


def direction_numbers(summary: pd.DataFrame, by_eps: pd.DataFrame, results: Mapping, binary: str,
                      eps_k: Sequence[float], image_px: int, steps: int) -> dict:
    """Glue values of the fixed-direction chapter.

    Parameters
    ----------
    summary : DataFrame
        :func:`~medadv_lib.analysis.direction_summary` by data set.
    by_eps : DataFrame
        :func:`~medadv_lib.analysis.direction_summary` by data set and budget (``eps_k``).
    results : mapping
        Data set -> :class:`~medadv_lib.pipeline.direction.DirectionResult`.
    binary : str
        The two-class set; every other is a multi-class one.
    eps_k : sequence of float
        The budgets in k/256.
    """
    row = summary.set_index("dataset")
    multi = [n for n in row.index if n != binary]
    largest = by_eps[by_eps["eps_k"] == max(eps_k)].set_index("dataset")
    gains = by_eps.pivot(index="eps_k", columns="dataset", values="median_projection_gain")
    cos_b = float(row.loc[binary, "mean_cos_step"])
    frame = pd.concat([r.frame.assign(dataset=n) for n, r in results.items()])
    return {
        "n_images": int(frame.groupby("dataset")["image"].nunique().min()), "n_steps": steps,
        "n_reference": int(min(r.n_reference for r in results.values())),
        "feature_dim": results[binary].feature_dim, "grad_error": float(max(r.grad_error for r in results.values())),
        "binary": binary, "cos_step_binary": cos_b,
        "cos_step_multi": ", ".join(f"{n} {row.loc[n, 'mean_cos_step']:.2f}" for n in multi),
        "cos_total_binary": float(row.loc[binary, "mean_cos_total"]),
        "grad_cos_binary_min": float(row.loc[binary, "min_grad_cos"]),
        "grad_cos_multi": ", ".join(f"{n} {row.loc[n, 'mean_grad_cos']:.3f} (min {row.loc[n, 'min_grad_cos']:.2f})"
                                    for n in multi),
        "binary_above_multi": "higher" if all(cos_b > row.loc[n, "mean_cos_step"] for n in multi) else "not higher",
        "eps_large": format_budget(max(eps_k) / 256.0),
        "gain_monotone": "grows" if bool((gains.diff().dropna() > 0).all().all()) else "does not always grow",
        "success_binary": float(largest.loc[binary, "success_rate"]),
        "pct_binary": float(largest.loc[binary, "median_projection_pct_last"]),
        "beyond_binary": float(largest.loc[binary, "share_projection_beyond"]),
        "pct_multi": ", ".join(f"{n} {largest.loc[n, 'median_projection_pct_last']:.0f}" for n in multi),
        "maha_binary_first": float(largest.loc[binary, "median_distance_first"]),
        "maha_binary_last": float(largest.loc[binary, "median_distance_last"]),
        "maha_binary_train": results[binary].train_distance,
        "grew_binary": float(largest.loc[binary, "share_distance_grew"]),
        "grew_multi": ", ".join(f"{n} {largest.loc[n, 'share_distance_grew']:.0%}" for n in multi),
        "alignment": alignment_word(cos_b),
        "hfc_answer": ("the one the argument predicts" if cos_b >= 0.9 and largest.loc[binary, "share_projection_beyond"]
                       > 0.5 else "weaker than the argument suggests"),
        "image_px": image_px,
        "grew_most": ("more than half of the images in every set" if bool((largest["share_distance_grew"] > 0.5).all())
                      else "half of the images or fewer in at least one set"),
    }


#: The feature-space claim of the detection chapter: the best of KD, LID and MAHA reaches this AUROC.
DETECTION_CLAIM_AUROC = 0.90


def base_attacks(attacks: Sequence[str]) -> list[str]:
    """The base attacks of the detection claim: BIM and PGD where run, else the first attack."""
    return [a for a in ("bim", "pgd") if a in attacks] or list(attacks)[:1]


def kd_sentence(kd_mean: float) -> str:
    """What KD's mean AUROC on the medical runs says (below chance, weak, or fine)."""
    if kd_mean < 0.5:
        note = (", below chance: at this scale the adversarial penultimate features sit in *denser* regions of "
                "their target class than clean features do in theirs (KD's score has a fixed direction; the "
                "KD+BU row lets a logistic regression choose it).")
    elif kd_mean < 0.7:
        note = ": at this scale the adversarial penultimate features are not in clearly low-density regions."
    else:
        note = "."
    return f"KD, a density of the penultimate features alone, averages {kd_mean:.3f} on the medical runs{note}"


def supervised_sentence(sup_min: float, feature_max: float) -> str:
    """How the supervised detectors (DNN, SVM) compare with the best feature-space one."""
    return (f"The supervised detectors that see adversarial examples while fitting (DNN and SVM) are "
            f"{'the most reliable' if sup_min >= feature_max else 'strong'} here: "
            f"the better of the two reaches at least {sup_min:.3f} on every medical run.")


def natural_sentence(gap: float, has_natural: bool) -> str:
    """The medical-versus-natural contrast of feature-space detection, from the AUROC ``gap`` (medical - natural)."""
    if not has_natural or math.isnan(gap):
        return "No natural-image set was run, so there is no contrast on this page."
    if gap > 0.05:
        return ("Feature-space detection is clearly easier on the medical sets, as the HFC argument "
                "(fragile medical features pushed into outlier regions) predicts.")
    if gap < -0.05:
        return ("Here natural-image AEs are even easier to detect than medical ones: at this scale the "
                "medical/natural contrast of the HFC argument does not show in the detectors.")
    return ("The difference is within 0.05 AUROC: at this scale the detectors do not separate "
            "medical from natural AEs clearly.")


def claim_sentence(verdict: pd.DataFrame) -> str:
    """Whether the feature-space claim holds on every, no, or some medical run (``verdict`` has ``passed``)."""
    from .tables import attack_label

    failed = verdict[~verdict["passed"]]
    if failed.empty:
        return ("It holds on every medical run: at this scale, too, simple feature-space statistics "
                "separate medical AEs from clean and noisy images.")
    if len(failed) == len(verdict):
        return "It does not hold on any medical run at this scale."
    return ("So it holds only in part at this scale: below the threshold are "
            + "; ".join(f"{r.dataset} {attack_label(r.attack)} (best {r.detector}, {r.auroc:.3f})"
                        for r in failed.itertuples()) + ".")


def detection_claim(results: pd.DataFrame, medical: Sequence[str], attacks: Sequence[str],
                    threshold: float = DETECTION_CLAIM_AUROC) -> pd.DataFrame:
    """The best feature-space detector per medical (data set, base attack) at the largest budget, with ``passed``."""
    from .detectors.standard import FEATURE_SPACE
    from .tables import best_detector

    best = best_detector(results, FEATURE_SPACE, attacks=base_attacks(attacks))
    best = best[best["dataset"].isin(medical)]
    return best.assign(passed=best["auroc"] >= threshold)


def detection_numbers(results: pd.DataFrame, summary: pd.DataFrame, medical: Sequence[str],
                      natural: Sequence[str], attacks: Sequence[str], largest: float) -> dict:
    """Glue values of the detection chapter's prose.

    Parameters
    ----------
    results : DataFrame
        Every data set's :attr:`DetectionBenchmark.results`.
    summary : DataFrame
        :func:`~medadv_lib.tables.attack_summary` of ``results``.
    medical, natural : sequence of str
        The data sets by role.
    attacks : sequence of str
        The profile's attacks (the base attacks are chosen among them).
    largest : float
        The largest budget.
    """
    from .detectors.standard import FEATURE_SPACE
    from .tables import attack_label, best_detector, budget_label, metric_pivot

    base = base_attacks(attacks)
    feature_best = best_detector(results, FEATURE_SPACE, attacks=base)
    overall_best = best_detector(results, list(results["detector"].unique()), attacks=base)
    med_feat = feature_best[feature_best["dataset"].isin(medical)]
    med_all = overall_best[overall_best["dataset"].isin(medical)]
    pivot = metric_pivot(results, "auroc", attacks=base)
    supervised = [d for d in ("DNN", "SVM") if d in pivot.index]
    success = summary[summary["eps"] == budget_label(largest)]
    med_success = success[success["dataset"].isin(medical)]["success rate"]
    rank = pivot[list(medical)].mean(axis=1).sort_values(ascending=False)
    nat_best = feature_best[feature_best["dataset"].isin(natural)]
    nat_auroc = float(nat_best["auroc"].mean()) if len(nat_best) else math.nan
    med_auroc = float(med_feat["auroc"].mean())
    verdict = detection_claim(results, medical, attacks)
    weakest = summary.loc[summary["success rate"].idxmin(), ["dataset", "attack", "eps"]]
    return {
        "min_success": float(summary["success rate"].min()), "min_success_run": " ".join(weakest),
        "base_attacks": " and ".join(attack_label(a) for a in base), "largest_eps": budget_label(largest),
        "med_feat_min": float(med_feat["auroc"].min()), "med_feat_max": float(med_feat["auroc"].max()),
        "med_all_min": float(med_all["auroc"].min()),
        "med_all_names": ", ".join(sorted(set(med_all["detector"].dropna()))),
        "n_98": int((med_all["auroc"] > 0.98).sum()), "n_med_runs": len(med_all),
        "sup_text": supervised_sentence(float(pivot.loc[supervised, list(medical)].max().min()),
                                        float(med_feat["auroc"].max())),
        "kd_text": kd_sentence(float(pivot.loc["KD", list(medical)].mean())),
        "strongest": " and ".join(rank.index[:2]), "weakest": str(rank.index[-1]),
        "success_lo": float(med_success.min()), "success_hi": float(med_success.max()),
        "nat_auroc": nat_auroc, "med_auroc": med_auroc,
        "natural_text": natural_sentence(med_auroc - nat_auroc, bool(natural)),
        "claim_threshold": DETECTION_CLAIM_AUROC, "claim_passed": int(verdict["passed"].sum()),
        "claim_total": len(verdict), "claim_text": claim_sentence(verdict),
    }


def detection_papers_table(results: pd.DataFrame, attacks: Sequence[str], arch: str, image_px: int) -> pd.DataFrame:
    """The papers' detection findings (in their own words) beside this page's best detector per run."""
    from .tables import best_detector, ci_text, run_label

    best = best_detector(results, list(results["detector"].unique()), attacks=base_attacks(attacks))
    papers = [
        {"source": "Ma et al. 2021 (Pattern Recognition)", "setting": "their medical image sets",
         "detectors": "simple detectors on deep features", "AUROC": "above 0.98 (reported)"},
        {"source": "HFC, Yao et al. 2021 (MICCAI)", "setting": "APTOS fundus, Kaggle chest X-ray; 224 px, ResNet-50",
         "detectors": "KD, BU, LID, MAHA, DNN, SVM", "AUROC": "\"easy to distinguish in the feature space\" (abstract)"},
    ]
    ours = [{"source": f"this page: {r.dataset}", "setting": f"{arch}, {image_px} px, {run_label(r.attack, r.eps)}",
             "detectors": f"best of all: {r.detector}", "AUROC": ci_text(r.auroc, r.auroc_lo, r.auroc_hi)}
            for r in best.itertuples()]
    return pd.DataFrame(papers + ours)


def _cells(rows: pd.DataFrame) -> str:
    return ", ".join(f"{int(r.image_px)} px {r.init}" for r in rows.itertuples())


def _ratio(value: float) -> str:
    return "undefined (CIFAR-10 not moved)" if not math.isfinite(value) else f"{value:.2f}"


def scale_numbers(answer: pd.DataFrame, models: pd.DataFrame, *, natural: str, eps_k: float) -> dict:
    """Glue values of the scale chapter: where the HFC claim appears, and what each factor does.

    Parameters
    ----------
    answer : DataFrame
        :func:`~medadv_lib.pipeline.scale.fragility_table` (one row per image size and initialisation).
    models : DataFrame
        :attr:`~medadv_lib.pipeline.scale.ScaleStudy.models`.
    natural : str
        The natural contrast set.
    eps_k : float
        The stress budget the shifts were read at (k/256).

    Returns
    -------
    dict
        ``scale_where`` (the cells in which every comparison has every medical set farther),
        ``ratio_range`` (medical / natural shift over the cells), ``scale_resolution`` and
        ``scale_pretraining`` (sentences: the medical sets' mean shift and PGD accuracy drop across
        sizes and initialisations), ``scale_factor`` (the factor that multiplies the shift more),
        ``pretraining_gain`` and ``resolution_gain`` (those multipliers: geometric means over the
        other factor's levels), ``ratio_imagenet`` (the ImageNet cells' medical / natural ratios),
        ``scale_holds``, ``scale_cells``.
    """
    if answer.empty:
        raise ValueError("answer is empty; run the study first")
    holds = answer[answer["n_farther"] == answer["n_comparisons"]]
    n = len(answer)
    cells = "cell" if n == 1 else "cells"
    if len(holds) == n:
        where = f"in every one of the {n} {cells}"
    elif holds.empty:
        where = f"in none of the {n} {cells}"
    else:
        where = f"in {len(holds)} of the {n} {cells} ({_cells(holds)})"
    ratios = answer["medical / natural"].dropna()
    ratio_range = f"{ratios.min():.2f} to {ratios.max():.2f}" if len(ratios) else "an undefined number of"
    medical = [c for c in answer.columns if c.startswith("shift ") and c != f"shift {natural}"]
    drops = [c.replace("shift ", "drop ", 1) for c in medical]
    frame = answer.assign(med_shift=answer[medical].mean(axis=1), med_drop=answer[drops].mean(axis=1))
    shift = frame.pivot(index="image_px", columns="init", values="med_shift")
    drop = frame.pivot(index="image_px", columns="init", values="med_drop")
    nat = frame.pivot(index="image_px", columns="init", values=f"shift {natural}")
    lo, hi = int(shift.index.min()), int(shift.index.max())
    out = {"scale_where": where, "scale_holds": len(holds), "scale_cells": n, "ratio_range": ratio_range}
    out["scale_resolution"] = ("Resolution: from " + f"{lo} to {hi} px the medical median shift at {eps_k:g}/256 goes "
                               + "; ".join(f"from {shift.loc[lo, i]:.2f} to {shift.loc[hi, i]:.2f} ({i})" for i in shift.columns)
                               + f", {natural}'s " + "; ".join(f"from {nat.loc[lo, i]:.2f} to {nat.loc[hi, i]:.2f} ({i})"
                                                             for i in nat.columns) + ".")
    out["scale_pretraining"] = out["scale_factor"] = out["ratio_imagenet"] = ""
    if {"imagenet", "scratch"} <= set(shift.columns):
        out["scale_pretraining"] = (
            "Pre-training: at the same size the medical shift is "
            + ", ".join(f"{shift.loc[s, 'imagenet']:.2f} from ImageNet against {shift.loc[s, 'scratch']:.2f} from "
                        f"scratch at {int(s)} px" for s in shift.index)
            + "; PGD at the smallest curve budget costs the medical models "
            + ", ".join(f"{drop.loc[s, 'imagenet']:.0%} against {drop.loc[s, 'scratch']:.0%}" for s in drop.index)
            + " of accuracy (same sizes).")

        def gain(a, b):  # geometric mean of a / b over the positive pairs
            ok = (a > 0) & (b > 0)
            return float(np.exp(np.log(a[ok] / b[ok]).mean())) if ok.any() else float("nan")

        pre = gain(shift["imagenet"], shift["scratch"])
        res = gain(shift.loc[hi], shift.loc[lo])
        out["pretraining_gain"], out["resolution_gain"] = pre, res
        if math.isfinite(pre) and math.isfinite(res):
            bigger = "ImageNet pre-training" if pre > res else f"resolution ({lo} to {hi} px)"
            per_init = " and ".join(f"{shift.loc[hi, i] / shift.loc[lo, i]:.1f} {'from ImageNet' if i == 'imagenet' else 'from scratch'}"
                                    for i in ("imagenet", "scratch") if shift.loc[lo, i] > 0)
            out["scale_factor"] = (f"Of the two factors, {bigger} moves the medical features more: pre-training "
                                   f"multiplies the median shift by {pre:.1f} on average over the sizes, going from "
                                   f"{lo} to {hi} px by {res:.1f} on average over the initialisations "
                                   f"({per_init}).")
        ratio = frame.pivot(index="image_px", columns="init", values="medical / natural")
        out["ratio_imagenet"] = ", ".join(f"{_ratio(ratio.loc[s, 'imagenet'])} at {int(s)} px" for s in ratio.index)
    return out
