"""Cached stage: the adversarial risk of every training regime x detector against every attack.

Li, Pan & Zhu (ISBI 2021, Eq. 2 and 3; Methods page :ref:`methods-risk`) charge a deployed system
(a classifier ``f`` and optionally a detector ``g``) for every clean test image it misclassifies
and accepts, every clean image it rejects, and every adversarial example (AE) it accepts and
misclassifies; ``r = R / N`` with ``N`` the clean test images
(:func:`~medadv_lib.metrics.risk.adversarial_risk`). Their Table 2 compares NT, GCE, AT and SSAT
with and without UAD under PGD. This stage puts every regime of :mod:`.defenses` with every
detector (none, UAD, MAHA, LID, KD, DNN) against every attack of the book (FGSM, PGD, C&W-L2,
SMIA, HFC and the adaptive attacks on KD and MAHA), on the same images.

The images (per regime model, seeded):

* the attacked subset is the SSAT chapter's (:func:`~medadv_lib.pipeline.attack_subset` with
  ``defense.eval_images``), and FGSM, PGD and C&W-L2 are built with exactly the calls of
  :mod:`.ssat_uad`, so the two chapters share their cached adversarial sets;
* a seeded, class-stratified half of it (the *fitting half*) fits the supervised parts of the
  detectors with its clean images and their PGD AEs (the defender's known attack; only the AEs
  that fool the model, as the detection protocol does, unless fewer than two do);
* the other half (the *measured half*) is where every risk is measured: every clean image and
  every AE of every attack, successful or not, counts, as in the paper (all 1000 AEs enter);
* every detector's reject threshold is calibrated at ``defense.uad_fpr`` on clean test images
  outside the attacked subset (as :mod:`.ssat_uad` calibrates UAD), never on images it is fitted on.

The attacks, all untargeted at the same L-infinity budget with ``defense.pgd_steps`` steps: FGSM
(one step), PGD (step eps / 5, random start), C&W-L2 (constant c, clipped into the eps-ball as
:mod:`.ssat_uad` does), SMIA (the library's default ``beta2``), HFC on PGD (Yao et al., MICCAI
2021) whose constraint is **UAD's own per-class mixtures on the penultimate layer**, so the AE is
pulled into exactly the density UAD tests (the cross-paper question: does HFC remove UAD's
benefit?), and the adaptive attacks on KD and MAHA (:func:`~medadv_lib.pipeline.hfc.adaptive_penalties`)
on the same base, step and steps as HFC (step eps / 5, as PGD's).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..attacks.hfc import HFCConstraint
from ..cache import Cache, stage_key
from ..config import Profile
from ..data import stratified_subset
from ..density import TorchGaussianMixture
from ..detectors import Features, extract_features, stage_outputs, standard_detectors, uad
from ..detectors.base import calibrate_threshold
from ..metrics.risk import adversarial_risk
from .adversarial import adversarial_examples, attack_subset
from .defenses import REGIME_LABELS, regime_model, regimes_for
from .detection import detector_spec
from .hfc import adaptive_penalties
from .defenses import defense_profile
from .models import get_dataset
from .ssat_uad import clip_to_budget

log = logging.getLogger(__name__)

__all__ = ["ATTACKS", "ATTACK_LABELS", "DETECTORS", "FPR_GRID", "PAPER_TABLE2", "RISK_VERSION", "RiskExperiment",
           "deployment_text", "hfc_verdict", "mark_best", "risk_experiment", "table2_frame", "table2_verdict", "worst_case"]

#: Bump when the stage's numbers change (invalidates every ``risk`` entry, never the attacks).
RISK_VERSION = "1"
#: Every attack of the chapter, in display order.
ATTACKS = ("fgsm", "pgd", "cw_l2", "smia", "hfc", "adaptive_kd", "adaptive_maha")
#: Reader labels of the attacks.
ATTACK_LABELS = {"fgsm": "FGSM", "pgd": "PGD", "cw_l2": "C&W-L2", "smia": "SMIA", "hfc": "HFC (on UAD's mixtures)",
                 "adaptive_kd": "adaptive KD", "adaptive_maha": "adaptive MAHA"}
#: Every detector of the chapter ("none" is added to each regime on top of these).
DETECTORS = ("UAD", "MAHA", "LID", "KD", "DNN")
#: UAD's clean false-positive rates of the risk-against-FPR curve (0 is the system without UAD).
FPR_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)
#: HFC's and the adaptive attacks' step as a fraction of eps: PGD's default (eps / 5), so that
#: with ``defense.pgd_steps`` steps the only difference from PGD is the penalty.
STEP_FRACTION = 0.2
TABLE_COLUMNS = ["dataset", "regime", "detector", "attack", "eps", "r", "r_lo", "r_hi", "cln_inc", "cln_rej",
                 "adv_inc", "adv_rej", "n", "accuracy_under_attack"]

#: Table 2 of Li, Pan & Zhu (OCT, 1000 test images, ResNet-18): the risk without and with UAD and
#: the accuracy under PGD at eps = 0.005, and SSAT's under PGD at eps = 0.01 (their "SSAT*").
PAPER_TABLE2 = pd.DataFrame({
    "regime": ["NT", "GCE", "AT", "SSAT", "SSAT"], "eps": [0.005, 0.005, 0.005, 0.005, 0.01],
    "r_none": [0.965, 1.057, 0.647, 0.223, 0.912], "r_uad": [0.892, 0.713, 0.634, 0.215, 0.450],
    "accuracy_under_attack": [0.115, 0.003, 0.42, 0.864, 0.175]})


@dataclass
class RiskExperiment:
    """What :func:`risk_experiment` measured on one data set.

    Attributes
    ----------
    table : DataFrame
        One row per (regime, detector incl. ``"none"``, attack) at ``eps``: dataset, regime,
        detector, attack, eps, r, r_lo, r_hi (bootstrap interval over images), cln_inc, cln_rej,
        adv_inc, adv_rej (the counts of Eq. 2; ``cln_rej = adv_rej = 0`` for ``"none"``), n (the
        measured clean images), accuracy_under_attack (of the classifier alone on the AEs).
    budget : DataFrame
        dataset, regime, detector (``"none"``/``"UAD"``), attack (``"pgd"``), eps (every
        ``defense.eps``; 0 is the unattacked system), r, r_lo, r_hi, accuracy_under_attack.
    fpr_curve : DataFrame
        dataset, regime, fpr (UAD's calibration target; 0 = no UAD), realised_fpr (on the
        measured clean images), r, r_lo, r_hi, best (the FPR of least risk, per regime), under
        PGD at ``eps``.
    fits : DataFrame
        dataset, regime, n_fit, n_fit_adv (fitting half: clean images and the PGD AEs that fitted
        the supervised parts), n_measured, n_calibration.
    skipped : dict
        Regime -> why it was left out (GCE on a binary set).
    cache_keys : list of str
    """

    table: pd.DataFrame
    budget: pd.DataFrame
    fpr_curve: pd.DataFrame
    fits: pd.DataFrame
    skipped: dict = field(default_factory=dict)
    cache_keys: list = field(default_factory=list)


def _check_names(given, known: Sequence[str], what: str) -> list[str]:
    names = [given] if isinstance(given, str) else list(given)
    lower = {k.lower(): k for k in known}
    out, unknown = [], []
    for n in names:
        (out if str(n).lower() in lower else unknown).append(lower.get(str(n).lower(), n))
    if unknown:
        raise ValueError(f"unknown {what}(s) {unknown}; choose from {list(known)}.")
    if not out:
        raise ValueError(f"{what}s is empty; name at least one of {list(known)}.")
    return list(dict.fromkeys(out))


def split_halves(labels, seed: int) -> np.ndarray:
    """A seeded, class-stratified boolean mask: True for the fitting half, False for the measured half.

    Per class the images are shuffled and the first ``floor(n_c / 2)`` go to the fitting half, so
    the measured half holds at least as many of every class.

    Examples
    --------
    >>> split_halves([0, 0, 1, 1, 1], 0).sum()
    2
    """
    y = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    fit = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        fit[rows[:len(rows) // 2]] = True
    return fit


def _detectors(names: Sequence[str], tm, profile: Profile, seed: int) -> dict:
    """Unfitted detectors by name: UAD the SSAT chapter's preset, the others the detection chapter's."""
    d, cfg = profile.detect, profile.defense
    out = {}
    others = [n for n in names if n != "UAD"]
    if others:
        dnn_layers = list(stage_outputs(tm.model)[-d.dnn_stages:])
        # LID draws its reference minibatches from the clean training images: at most all of them
        minibatch = min(100, len(tm.train))
        out.update(standard_detectors(bu_passes=d.bu_passes, dnn_iterations=d.dnn_iterations, dnn_layers=dnn_layers,
                                      maha_noise=d.maha_noise, lid_minibatch=minibatch, lid_k=min(20, minibatch - 1),
                                      seed=seed, include=others))
    if "UAD" in names:
        out["UAD"] = uad(fpr=cfg.uad_fpr, random_state=seed)
    return {n: out[n] for n in names}


def _uad_constraint(detector, tm, seed: int) -> HFCConstraint:
    """HFC's constraint from a fitted UAD: its per-class mixtures on the penultimate layer."""
    mixtures = {int(c): {"penultimate": TorchGaussianMixture.from_sklearn(g)} for c, g in detector.gmms_.items()}
    key = stage_key("risk_uad_mixtures", {"uad": detector.get_params(), "seed": int(seed)}, version=RISK_VERSION,
                    upstream=[tm.cache.key])
    return HFCConstraint(mixtures, lam=1.0, state_key=key)


def _risk_row(y, clean_pred, adv_pred, clean_rej, adv_rej, n_boot: int, seed: int) -> dict:
    res = adversarial_risk(y, clean_pred, adv_pred, clean_rejected=clean_rej, adv_rejected=adv_rej,
                           n_boot=n_boot, seed=seed)
    c = res.counts
    return {"r": res.r, "r_lo": res.ci[0], "r_hi": res.ci[1], "cln_inc": c["cln_inc"], "cln_rej": c["cln_rej"],
            "adv_inc": c["adv_inc"], "adv_rej": c["adv_rej"], "n": res.n,
            "accuracy_under_attack": float(np.mean(np.asarray(adv_pred) == np.asarray(y)))}


def _regime_result(tm, profile: Profile, *, seed: int, detectors: Sequence[str], attacks: Sequence[str],
                   eps: float, n_boot: int, cache: Cache) -> dict:
    cfg = profile.defense
    positions = np.asarray(stratified_subset(tm.test.labels, cfg.eval_images, seed)).reshape(-1)
    subset = attack_subset(tm, cfg.eval_images, seed)
    x, y = subset.float(), subset.labels
    fit_side = split_halves(y.numpy(), seed)
    measured = ~fit_side
    y_m = y.numpy()[measured]
    dets = _detectors(detectors, tm, profile, seed)
    images = any(getattr(d, "needs_images", False) for d in dets.values())
    feats = lambda imgs, **kw: extract_features(tm.model, imgs, None, keep_images=images, **kw)  # noqa: E731
    adv_kw = {"seed": seed, "n_images": cfg.eval_images, "cache": cache}
    keys = []

    def pgd(e):
        out = adversarial_examples(tm, "pgd", e, profile, steps=cfg.pgd_steps, **adv_kw)
        keys.append(out["cache_key"])
        return out["x_adv"]

    # the detectors: unsupervised statistics on the clean training (labelled) images, supervised
    # parts on the fitting half (clean + the PGD AEs that fool the model), thresholds on clean
    # test images outside the attacked subset
    reference = feats(tm.train.float(), labels=tm.train.labels)
    clean = feats(x, labels=y)
    x_pgd = pgd(eps)
    adv_pgd = feats(x_pgd, labels=y)
    fit_idx = np.flatnonzero(fit_side)
    fooled = fit_idx[adv_pgd.pred[fit_idx] != y.numpy()[fit_idx]]
    fit_adv = fooled if len(fooled) >= 2 else fit_idx
    data = Features.concat([clean.subset(fit_idx), adv_pgd.subset(fit_adv)])
    is_adv = np.r_[np.zeros(len(fit_idx), dtype=np.int64), np.ones(len(fit_adv), dtype=np.int64)]
    rest = np.setdiff1d(np.arange(len(tm.test)), positions)
    calib = feats(tm.test.subset(rest).float()) if len(rest) >= 10 else clean.subset(fit_idx)
    thresholds = {}
    for name, det in dets.items():
        det.fit_from_features(reference, data, is_adv, model=tm.model)
        thresholds[name] = calibrate_threshold(det.score_from_features(calib, model=tm.model), cfg.uad_fpr)
    clean_m = clean.subset(measured)
    clean_scores = {n: np.asarray(d.score_from_features(clean_m, model=tm.model)) for n, d in dets.items()}

    def decisions(adv_m, only=None):
        """(detector, clean rejected, adv rejected) for the system without a detector and each detector."""
        yield "none", None, None
        for n, d in dets.items():
            if only is None or n in only:
                yield n, clean_scores[n] > thresholds[n], np.asarray(d.score_from_features(adv_m, model=tm.model)) > thresholds[n]

    # the attacks (FGSM, PGD, C&W-L2 with the SSAT chapter's calls, so their sets are shared)
    penalties = {}
    if "hfc" in attacks:
        uad_det = dets["UAD"] if "UAD" in dets else uad(fpr=cfg.uad_fpr, random_state=seed).fit(
            reference.layer("penultimate"), reference.labels)
        penalties["hfc"] = _uad_constraint(uad_det, tm, seed)
    if {"adaptive_kd", "adaptive_maha"} & set(attacks):
        penalties.update(adaptive_penalties(tm, seed=seed))
    rows = []
    for attack in attacks:
        if attack == "pgd":
            x_adv = x_pgd
        elif attack == "fgsm":
            out = adversarial_examples(tm, "fgsm", eps, profile, steps=cfg.pgd_steps, **adv_kw)
        elif attack == "cw_l2":
            out = adversarial_examples(tm, "cw_l2", None, profile, c=cfg.cw_c, steps=cfg.cw_steps, **adv_kw)
        elif attack == "smia":
            out = adversarial_examples(tm, "smia", eps, profile, steps=cfg.pgd_steps, **adv_kw)
        else:  # HFC and the adaptive attacks: PGD with a penalty, PGD's step and steps, untargeted
            out = adversarial_examples(tm, "hfc", eps, profile, base="pgd", constraint=penalties[attack],
                                       step_fraction=STEP_FRACTION, steps=cfg.pgd_steps, targeted=False, **adv_kw)
        if attack != "pgd":
            keys.append(out["cache_key"])
            x_adv = clip_to_budget(x, out["x_adv"], eps) if attack == "cw_l2" else out["x_adv"]
        adv_m = adv_pgd.subset(measured) if attack == "pgd" else feats(x_adv[torch.from_numpy(measured)])
        for name, c_rej, a_rej in decisions(adv_m):
            rows.append({"detector": name, "attack": attack, "eps": float(eps),
                         **_risk_row(y_m, clean_m.pred, adv_m.pred, c_rej, a_rej, n_boot, seed)})

    # risk against the budget (PGD, with and without UAD; eps = 0 is the unattacked system)
    budget = []
    uad_det = dets.get("UAD")
    for e in sorted(set(cfg.eps) | {float(eps)}):
        if e == 0:
            adv_m = clean_m
        else:
            adv_m = adv_pgd.subset(measured) if math.isclose(e, eps) else feats(pgd(e)[torch.from_numpy(measured)])
        for name, c_rej, a_rej in decisions(adv_m, only=("UAD",)):
            budget.append({"detector": name, "attack": "pgd", "eps": float(e),
                           **_risk_row(y_m, clean_m.pred, adv_m.pred, c_rej, a_rej, n_boot, seed)})

    # risk against UAD's clean false-positive rate (PGD at eps)
    curve = []
    if uad_det is not None:
        calib_scores = np.asarray(uad_det.score_from_features(calib))
        adv_scores = np.asarray(uad_det.score_from_features(adv_pgd.subset(measured)))
        for fpr in FPR_GRID:
            t = math.inf if fpr == 0 else calibrate_threshold(calib_scores, fpr)
            c_rej, a_rej = clean_scores["UAD"] > t, adv_scores > t
            row = _risk_row(y_m, clean_m.pred, adv_pgd.pred[measured], c_rej if fpr else None,
                            a_rej if fpr else None, n_boot, seed)
            curve.append({"fpr": float(fpr), "realised_fpr": float(c_rej.mean()), "r": row["r"], "r_lo": row["r_lo"],
                          "r_hi": row["r_hi"]})
    fits = {"n_fit": int(len(fit_idx)), "n_fit_adv": int(len(fit_adv)), "n_fit_fooled": int(len(fooled)),
            "n_measured": int(measured.sum()), "n_calibration": int(len(rest) if len(rest) >= 10 else len(fit_idx))}
    return {"table": pd.DataFrame(rows), "budget": pd.DataFrame(budget), "fpr_curve": pd.DataFrame(curve),
            "fits": fits, "adversarial_keys": list(dict.fromkeys(keys))}


def risk_experiment(name: str, profile: Profile, *, seed: int = 0, detectors: Sequence[str] = DETECTORS,
                    attacks: Sequence[str] = ATTACKS, eps: float | None = None, n_boot: int | None = None,
                    cache: Cache | None = None, device: str | None = None, progress: bool = True) -> RiskExperiment:
    """The adversarial risk of every regime x detector against every attack on data set ``name`` (cached).

    Parameters
    ----------
    name : str
        A data set of the registry (``retinamnist``, ``chestxray``, ``octmnist`` where present).
    profile : Profile
        Its ``defense`` section sets the regimes, the attacked images, the steps, UAD's FPR and
        the budgets of :attr:`RiskExperiment.budget`; its ``detect`` section the detectors' costs.
    seed : int
        Seeds the attacked subset, the halves, the attacks, the detectors and the bootstrap.
    detectors : sequence of str
        Of :data:`DETECTORS`; the system without a detector (``"none"``) is always measured. HFC's
        constraint is UAD's mixtures whether or not UAD is in the list.
    attacks : sequence of str
        Of :data:`ATTACKS`; PGD is always run (it fits the supervised detectors and gives the
        budget and FPR curves) but only tabulated when listed.
    eps : float, optional
        L-infinity budget of every attack (default ``defense.table_eps``, the paper's 0.005).
    n_boot : int, optional
        Bootstrap resamples of every interval (default ``detect.n_boot``).
    cache, device, progress
        As for :func:`~medadv_lib.pipeline.regime_model`.

    Returns
    -------
    RiskExperiment

    Raises
    ------
    ValueError
        For an unknown detector or attack name (the message lists the valid ones), or a budget
        outside (0, 1].
    """
    cache = cache or Cache()
    cfg = profile.defense
    detectors = _check_names(detectors, DETECTORS, "detector")
    attacks = _check_names(attacks, ATTACKS, "attack")
    eps = float(cfg.table_eps if eps is None else eps)
    if not 0 < eps <= 1:
        raise ValueError(f"eps must be an absolute L-infinity budget in (0, 1], got {eps!r} (the paper: 0.005).")
    n_boot = int(profile.detect.n_boot if n_boot is None else n_boot)
    profile = defense_profile(profile)  # the regimes' own image size
    dataset = get_dataset(name, profile, seed=seed, cache=cache)
    regimes = regimes_for(dataset.num_classes, cfg.regime_list)
    skipped = {r: (f"GCE is undefined for {dataset.num_classes} classes: the complement of the true class is a "
                   "single class, so the loss is identically zero") for r in cfg.regime_list if r not in regimes}
    settings = {"defense": {k: getattr(cfg, k) for k in ("eps_milli", "pgd_steps", "cw_c", "cw_steps", "eval_images",
                                                          "uad_fpr")},
                "detectors": detectors, "attacks": attacks, "eps": eps, "n_boot": n_boot,
                "seed": int(seed), "attack_batch": profile.attack.batch_size, "step_fraction": STEP_FRACTION,
                "fpr_grid": list(FPR_GRID)}
    frames = {"table": [], "budget": [], "fpr_curve": [], "fits": []}
    keys = []
    for regime in regimes:
        tm = regime_model(name, regime, profile, seed=seed, device=device, cache=cache, progress=progress)
        spec = detector_spec(_detectors(detectors, tm, profile, seed))
        out, entry = cache.get_or_compute(
            "risk", {**settings, "detector_spec": spec}, lambda: _regime_result(tm, profile, seed=seed, detectors=detectors, attacks=attacks,
                                                     eps=eps, n_boot=n_boot, cache=cache),
            version=RISK_VERSION, upstream=[tm.cache.key], command=f"medadv run risk --profile {profile.name}",
            meta={"dataset": name, "regime": regime})
        keys += [tm.cache.key, *out["adversarial_keys"], entry.key]
        tag = {"dataset": name, "regime": REGIME_LABELS[regime]}
        for k in ("table", "budget", "fpr_curve"):
            frames[k].append(out[k].assign(**tag))
        frames["fits"].append({**tag, **out["fits"]})
    lead = ["dataset", "regime"]
    tables = {k: pd.concat(v, ignore_index=True) for k, v in frames.items() if k != "fits"}
    tables = {k: t[lead + [c for c in t.columns if c not in lead]] for k, t in tables.items()}
    curve = mark_best(tables["fpr_curve"]) if len(tables["fpr_curve"]) else tables["fpr_curve"]
    return RiskExperiment(table=tables["table"][TABLE_COLUMNS], budget=tables["budget"], fpr_curve=curve,
                          fits=pd.DataFrame(frames["fits"]), skipped=skipped, cache_keys=list(dict.fromkeys(keys)))


def mark_best(curve: pd.DataFrame) -> pd.DataFrame:
    """``curve`` with a ``best`` column: True at the least-risk FPR of each (dataset, regime), the
    smallest such FPR on ties."""
    curve = curve.copy()
    order = curve.sort_values("fpr", kind="stable").index
    least = curve.groupby(["dataset", "regime"])["r"].transform("min")
    first = ~curve.loc[order].duplicated(["dataset", "regime", "r"]).reindex(curve.index)
    curve["best"] = curve["r"].eq(least) & first
    return curve


# ------------------------------------------------------------------------------------------ verdicts
def _check_columns(table: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = sorted(set(columns) - set(table.columns))
    if missing:
        raise ValueError(f"{what} lacks column(s) {missing}; pass RiskExperiment.table.")


def table2_frame(table: pd.DataFrame, budget: pd.DataFrame, *, eps: float = 0.005, strong_eps: float = 0.01
                 ) -> pd.DataFrame:
    """Our Table 2 beside the paper's: per (dataset, regime), the risk without and with UAD and
    the accuracy under PGD at ``eps``, and SSAT's at ``strong_eps`` (from ``budget``), with the
    paper's values in ``paper_*`` columns.
    """
    _check_columns(table, ("dataset", "regime", "detector", "attack", "eps", "r", "accuracy_under_attack"), "table")
    rows = []
    sources = [(table, eps, None), (budget, strong_eps, "SSAT")]
    for frame, e, only in sources:
        part = frame[(frame["attack"] == "pgd") & np.isclose(frame["eps"], e) & frame["detector"].isin(["none", "UAD"])]
        if only:
            part = part[part["regime"] == only]
        for (dataset, regime), grp in part.groupby(["dataset", "regime"], sort=False):
            g = grp.set_index("detector")
            if not {"none", "UAD"} <= set(g.index):
                continue
            rows.append({"dataset": dataset, "regime": regime, "eps": float(e), "r_none": float(g.loc["none", "r"]),
                         "r_uad": float(g.loc["UAD", "r"]),
                         "accuracy_under_attack": float(g.loc["none", "accuracy_under_attack"])})
    out = pd.DataFrame(rows, columns=["dataset", "regime", "eps", "r_none", "r_uad", "accuracy_under_attack"])
    paper = PAPER_TABLE2.rename(columns={c: f"paper_{c}" for c in ("r_none", "r_uad", "accuracy_under_attack")})
    out["_e"] = out["eps"].round(6)
    paper = paper.assign(_e=paper["eps"].round(6)).drop(columns="eps")
    return out.merge(paper, on=["regime", "_e"], how="left").drop(columns="_e")


def table2_verdict(table: pd.DataFrame, *, eps: float | None = None) -> dict:
    """Does UAD lower the risk of every regime under PGD at ``eps`` (the paper's Table 2 claim)?

    Parameters
    ----------
    table : DataFrame
        :attr:`RiskExperiment.table` (one or several data sets).
    eps : float, optional
        The budget (default: the table's only PGD budget).

    Returns
    -------
    dict
        ``rows`` (dataset, regime, r_none, r_uad, lowered), ``all_lowered`` (bool), ``n_lowered``,
        ``n`` and ``text`` (one sentence).
    """
    _check_columns(table, ("dataset", "regime", "detector", "attack", "eps", "r"), "table")
    pgd = table[(table["attack"] == "pgd") & table["detector"].isin(["none", "UAD"])]
    if pgd.empty:
        raise ValueError("table has no PGD rows with detector 'none' and 'UAD'; run attacks with 'pgd' and "
                         "detectors with 'UAD'.")
    e = float(pgd["eps"].iloc[0]) if eps is None else float(eps)
    wide = pgd[np.isclose(pgd["eps"], e)].pivot_table(index=["dataset", "regime"], columns="detector", values="r",
                                                      sort=False)
    rows = pd.DataFrame({"r_none": wide["none"], "r_uad": wide["UAD"]}).reset_index()
    rows["lowered"] = rows["r_uad"] < rows["r_none"]
    n, k = len(rows), int(rows["lowered"].sum())
    if k == n:
        text = f"Under PGD at eps = {e:g}, UAD lowers the risk of every regime on every data set ({n} of {n} systems)."
    else:
        not_lowered = ", ".join(f"{r.regime} on {r.dataset} ({r.r_none:.3f} without, {r.r_uad:.3f} with)"
                                for r in rows[~rows["lowered"]].itertuples())
        text = (f"Under PGD at eps = {e:g}, UAD lowers the risk in {k} of {n} systems; it does not for "
                f"{not_lowered}, so the paper's Table 2 claim does not hold everywhere at this scale.")
    return {"rows": rows, "all_lowered": k == n, "n_lowered": k, "n": n, "eps": e, "text": text}


def hfc_verdict(table: pd.DataFrame, *, regime: str = "SSAT") -> dict:
    """Does HFC on UAD's mixtures raise the UAD-protected ``regime`` system's risk towards its risk without UAD?

    UAD's benefit under an attack is ``r(none) - r(UAD)``. Per data set this gives the four risks
    (``r_uad_pgd``, ``r_uad_hfc``, ``r_none_pgd``, ``r_none_hfc``), whether HFC raises the
    protected risk (``raised``: ``r_uad_hfc > r_uad_pgd``), and ``gap_closed``, the fraction of
    UAD's PGD benefit that HFC removes, ``1 - benefit_hfc / benefit_pgd`` (1: UAD no longer helps;
    NaN when UAD did not help under PGD).

    Returns
    -------
    dict
        ``rows`` (one per data set), ``any_raised``, ``all_raised``, ``text``.
    """
    _check_columns(table, ("dataset", "regime", "detector", "attack", "r"), "table")
    part = table[(table["regime"] == regime) & table["attack"].isin(["pgd", "hfc"])
                 & table["detector"].isin(["none", "UAD"])]
    if part.empty:
        raise ValueError(f"table has no {regime} rows under PGD and HFC with detectors 'none' and 'UAD'.")
    rows = []
    for dataset, grp in part.groupby("dataset", sort=False):
        r = grp.set_index(["detector", "attack"])["r"]
        if not all(k in r.index for k in [("none", "pgd"), ("UAD", "pgd"), ("none", "hfc"), ("UAD", "hfc")]):
            continue
        b_pgd, b_hfc = r[("none", "pgd")] - r[("UAD", "pgd")], r[("none", "hfc")] - r[("UAD", "hfc")]
        rows.append({"dataset": dataset, "r_uad_pgd": float(r[("UAD", "pgd")]), "r_uad_hfc": float(r[("UAD", "hfc")]),
                     "r_none_pgd": float(r[("none", "pgd")]), "r_none_hfc": float(r[("none", "hfc")]),
                     "benefit_pgd": float(b_pgd), "benefit_hfc": float(b_hfc),
                     "gap_closed": float(1 - b_hfc / b_pgd) if b_pgd > 0 else float("nan"),
                     "raised": bool(r[("UAD", "hfc")] > r[("UAD", "pgd")])})
    if not rows:
        raise ValueError(f"table lacks one of {regime}'s four systems (none/UAD x PGD/HFC) on every data set.")
    frame = pd.DataFrame(rows)
    parts = []
    for r in frame.itertuples():
        closed = ("UAD did not lower the risk under PGD, so there was no benefit to remove" if math.isnan(r.gap_closed)
                  else f"HFC removes {100 * r.gap_closed:.0f} % of UAD's benefit under PGD "
                       f"({r.benefit_pgd:.3f} -> {r.benefit_hfc:.3f})")
        parts.append(f"On {r.dataset}, HFC {'raises' if r.raised else 'does not raise'} the risk of {regime} + UAD "
                     f"({r.r_uad_pgd:.3f} under PGD, {r.r_uad_hfc:.3f} under HFC; without UAD {r.r_none_hfc:.3f} "
                     f"under HFC): {closed}.")
    return {"rows": frame, "any_raised": bool(frame["raised"].any()), "all_raised": bool(frame["raised"].all()),
            "text": " ".join(parts)}


def worst_case(table: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, regime, detector): the worst attack, its risk, and the number of attacks.

    Sorted by dataset, then worst-case risk (lowest first): the first row of a data set is the
    system with the lowest worst-case risk.
    """
    _check_columns(table, ("dataset", "regime", "detector", "attack", "r"), "table")
    idx = table.groupby(["dataset", "regime", "detector"], sort=False)["r"].idxmax()
    out = table.loc[idx, ["dataset", "regime", "detector", "attack", "r"]].rename(
        columns={"attack": "worst_attack", "r": "worst_r"})
    out["n_attacks"] = table.groupby(["dataset", "regime", "detector"], sort=False)["attack"].nunique().to_numpy()
    order = {d: i for i, d in enumerate(dict.fromkeys(table["dataset"]))}
    return out.sort_values(["dataset", "worst_r"], key=lambda s: s.map(order) if s.name == "dataset" else s,
                           kind="stable").reset_index(drop=True)


def deployment_text(table: pd.DataFrame) -> str:
    """The plain-language reading: per data set, the system (regime x detector) with the lowest
    worst-case risk over the attacks, the attack it fails against, and how it compares with the
    undefended NT system's worst case."""
    worst = worst_case(table)
    parts = []
    for dataset, grp in worst.groupby("dataset", sort=False):
        best = grp.iloc[0]
        system = f"{best.regime}" + ("" if best.detector == "none" else f" with {best.detector}")
        label = ATTACK_LABELS.get(best.worst_attack, best.worst_attack)
        text = (f"On {dataset}, the system with the lowest worst-case risk over {int(best.n_attacks)} attacks is "
                f"{system}: r = {best.worst_r:.2f} under its worst attack, {label}")
        nt = grp[(grp["regime"] == "NT") & (grp["detector"] == "none")]
        if len(nt) and not (best.regime == "NT" and best.detector == "none"):
            text += f" (undefended NT: r = {nt['worst_r'].iloc[0]:.2f} under " \
                    f"{ATTACK_LABELS.get(nt['worst_attack'].iloc[0], nt['worst_attack'].iloc[0])})"
        parts.append(text + ".")
    return " ".join(parts)
