"""Cached stage: the SSAT + UAD experiment of Li, Pan & Zhu (ISBI 2021) on one data set.

For every training regime (:mod:`.defenses`) it measures, on a seeded, stratified subset of the
test split:

* Figure 4: accuracy under white-box FGSM, PGD and C&W-L2 against the absolute L-infinity budget
  (eps = 0 is the clean accuracy of the subset). C&W-L2 has no L-infinity budget; it runs once at
  constant ``c`` and its perturbation is clipped into each eps-ball (an eps-bounded C&W), the
  reading of the paper's "increasing perturbation budget and constant c" that we adopt;
* Table 1: UAD's AUPRC per class under PGD at ``defense.table_eps``. A successful AE is a test
  image the model classifies correctly whose PGD version it misclassifies. Images are grouped by
  the class UAD scores them against, their *predicted* class: the clean test images predicted as
  class c (negatives) against the successful AEs predicted as c (positives);
* Figure 1: a 2-D PCA view of the penultimate features (clean images by true class, successful AEs
  by predicted class, and whether UAD, calibrated at ``defense.uad_fpr`` on clean test images
  outside the attacked subset, rejects them).

One cache entry per (regime model, settings); the adversarial sets are the cached
:func:`~medadv_lib.pipeline.adversarial_examples`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.metrics import average_precision_score

from ..cache import Cache
from ..config import Profile
from ..detectors import extract_features, uad
from ..data import stratified_subset
from ..models import predict_proba
from .adversarial import adversarial_examples, attack_subset
from .defenses import REGIME_LABELS, regime_model, regimes_for
from .defenses import defense_profile
from .models import get_dataset

log = logging.getLogger(__name__)
SSAT_UAD_VERSION = "1"
ATTACKS = ("fgsm", "pgd", "cw_l2")


@dataclass
class SSATUADResult:
    """What :func:`ssat_uad_experiment` measured on one data set.

    Attributes
    ----------
    regimes : DataFrame
        dataset, regime, accuracy, balanced_accuracy (whole test subset), train_seconds, labelled,
        unlabelled, epochs.
    robustness : DataFrame
        dataset, regime, attack, eps, accuracy (Figure 4).
    uad : DataFrame
        dataset, regime, class, class_name, auprc, n_adv, n_clean (Table 1; auprc is NaN for a
        class with no successful AE or no clean image predicted as it).
    summary : DataFrame
        dataset, regime, mean_auprc (over classes with a defined AUPRC), chance_auprc (the same mean
        of each class's share of AEs, the AUPRC of a detector that ranks at random), n_successful, n_attacked,
        pgd_accuracy, reject_adv (share of successful AEs UAD rejects), reject_clean (share of
        clean attacked images rejected; the calibration targets ``uad_fpr`` on other images).
    embedding : DataFrame
        dataset, regime, pc1, pc2, kind ("clean"/"adv"), cls (true class for clean, predicted for
        adv), rejected (bool).
    skipped : dict
        Regime -> why it was left out (GCE on a binary set).
    """

    regimes: pd.DataFrame
    robustness: pd.DataFrame
    uad: pd.DataFrame
    summary: pd.DataFrame
    embedding: pd.DataFrame
    skipped: dict = field(default_factory=dict)
    cache_keys: list = field(default_factory=list)


def _accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict_proba(model, x).argmax(1) == y).float().mean())


def clip_to_budget(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> torch.Tensor:
    """``x_adv`` with its perturbation clipped into the L-infinity ball of radius ``eps`` (and [0, 1])."""
    return (x + (x_adv - x).clamp(-eps, eps)).clamp(0.0, 1.0)


def class_auprc(clean_scores, clean_pred, adv_scores, adv_pred, num_classes: int) -> pd.DataFrame:
    """AUPRC of separating successful AEs (positives) from clean images (negatives), per predicted class.

    Returns a frame with class, auprc (NaN when a class lacks positives or negatives), n_adv, n_clean.
    """
    rows = []
    clean_scores, adv_scores = np.asarray(clean_scores, float), np.asarray(adv_scores, float)
    clean_pred, adv_pred = np.asarray(clean_pred), np.asarray(adv_pred)
    for c in range(num_classes):
        neg, pos = clean_scores[clean_pred == c], adv_scores[adv_pred == c]
        auprc = float("nan")
        if len(neg) and len(pos):
            labels = np.r_[np.zeros(len(neg)), np.ones(len(pos))]
            auprc = float(average_precision_score(labels, np.r_[neg, pos]))
        rows.append({"class": c, "auprc": auprc, "n_adv": int(len(pos)), "n_clean": int(len(neg))})
    return pd.DataFrame(rows)


def chance_auprc(per_class: pd.DataFrame) -> float:
    """The mean AUPRC a random ranking gets: each class's share of AEs, averaged as ``mean_auprc`` is.

    A detector's AUPRC is only as good as its distance from this baseline: with few successful
    AEs among many clean images it is small, and so is a detector's AUPRC.

    Examples
    --------
    >>> chance_auprc(pd.DataFrame({"auprc": [0.5, float("nan")], "n_adv": [10, 0], "n_clean": [30, 5]}))
    0.25
    """
    defined = per_class["auprc"].notna()
    if not defined.any():
        return float("nan")
    share = per_class["n_adv"] / (per_class["n_adv"] + per_class["n_clean"])
    return float(share[defined].mean())


def _regime_result(tm, regime: str, profile: Profile, seed: int, cache: Cache) -> dict:
    cfg = profile.defense
    name, k = tm.dataset.name, tm.dataset.num_classes
    # the positions attack_subset draws (so that the calibration images below are disjoint from them)
    positions = np.asarray(stratified_subset(tm.test.labels, cfg.eval_images, seed)).reshape(-1)
    subset = attack_subset(tm, cfg.eval_images, seed)
    x, y = subset.float(), subset.labels
    rows = [{"attack": a, "eps": 0.0, "accuracy": _accuracy(tm.model, x, y)} for a in ATTACKS]
    adv = {}
    for attack in ("fgsm", "pgd"):
        for eps in sorted({e for e in cfg.eps if e > 0} | ({cfg.table_eps} if attack == "pgd" else set())):
            out = adversarial_examples(tm, attack, eps, profile, seed=seed, n_images=cfg.eval_images,
                                       steps=cfg.pgd_steps, cache=cache)
            adv[(attack, eps)] = out["x_adv"]
            if eps in cfg.eps:
                rows.append({"attack": attack, "eps": eps, "accuracy": _accuracy(tm.model, out["x_adv"], y)})
    cw = adversarial_examples(tm, "cw_l2", None, profile, seed=seed, n_images=cfg.eval_images, c=cfg.cw_c,
                              steps=cfg.cw_steps, cache=cache)
    for eps in (e for e in cfg.eps if e > 0):
        rows.append({"attack": "cw_l2", "eps": eps,
                     "accuracy": _accuracy(tm.model, clip_to_budget(x, cw["x_adv"], eps), y)})

    # UAD (Table 1, Figure 1): fitted on the clean labelled images, calibrated on clean test images
    # outside the attacked subset, scored on the attacked subset and its successful PGD AEs
    x_adv = adv[("pgd", cfg.table_eps)]
    pred_clean = predict_proba(tm.model, x).argmax(1)
    pred_adv = predict_proba(tm.model, x_adv).argmax(1)
    successful = ((pred_clean == y) & (pred_adv != y)).numpy()
    feats = lambda images: extract_features(tm.model, images, ["penultimate"])  # noqa: E731
    ref = feats(tm.train.float())
    detector = uad(fpr=cfg.uad_fpr, random_state=seed).fit(ref.layer("penultimate"), tm.train.labels.numpy())
    rest = np.setdiff1d(np.arange(len(tm.test)), positions)
    f_clean, f_adv = feats(x), (feats(x_adv[torch.from_numpy(successful)]) if successful.any() else None)
    calib = feats(tm.test.subset(rest).float()) if len(rest) >= 10 else f_clean
    detector.calibrate(calib.layer("penultimate"), calib.pred)
    s_clean = detector.decision_function(f_clean.layer("penultimate"), f_clean.pred)
    s_adv = np.empty(0) if f_adv is None else detector.decision_function(f_adv.layer("penultimate"), f_adv.pred)
    table = class_auprc(s_clean, f_clean.pred, s_adv, np.empty(0, int) if f_adv is None else f_adv.pred, k)
    table["class_name"] = [tm.dataset.classes[c] for c in table["class"]]
    pca = PCA(n_components=2, random_state=seed).fit(f_clean.layer("penultimate"))
    emb_clean = pca.transform(f_clean.layer("penultimate"))
    emb = [pd.DataFrame({"pc1": emb_clean[:, 0], "pc2": emb_clean[:, 1], "kind": "clean", "cls": y.numpy(),
                         "rejected": s_clean > detector.threshold_})]
    if f_adv is not None:
        emb_adv = pca.transform(f_adv.layer("penultimate"))
        emb.append(pd.DataFrame({"pc1": emb_adv[:, 0], "pc2": emb_adv[:, 1], "kind": "adv", "cls": f_adv.pred,
                                 "rejected": s_adv > detector.threshold_}))
    pgd_acc = float((pred_adv == y).float().mean())
    summary = {"mean_auprc": float(np.nanmean(table["auprc"])) if table["auprc"].notna().any() else float("nan"),
               "n_successful": int(successful.sum()), "n_attacked": int(len(y)), "pgd_accuracy": pgd_acc,
               "reject_adv": float((s_adv > detector.threshold_).mean()) if len(s_adv) else float("nan"),
               "reject_clean": float((s_clean > detector.threshold_).mean())}
    log.info("%s %s: PGD accuracy %.3f, %d successful AEs, mean AUPRC %.3f", name, regime, pgd_acc,
             summary["n_successful"], summary["mean_auprc"])
    return {"robustness": pd.DataFrame(rows), "uad": table, "summary": summary,
            "embedding": pd.concat(emb, ignore_index=True)}


def ssat_uad_experiment(name: str, profile: Profile, *, seed: int = 0, device: str | None = None,
                        cache: Cache | None = None, progress: bool = True) -> SSATUADResult:
    """Train (or load) every regime of ``profile.defense.regimes`` defined for ``name`` and measure them.

    GCE is left out of a two-class data set (``skipped`` says why). See the module docstring for
    what each table holds.
    """
    cache = cache or Cache()
    cfg = profile.defense
    profile = defense_profile(profile)  # the regimes' own image size
    dataset = get_dataset(name, profile, seed=seed, cache=cache)
    regimes = regimes_for(dataset.num_classes, cfg.regime_list)
    skipped = {r: (f"GCE is undefined for {dataset.num_classes} classes: the complement of the true class is a "
                   "single class, so the loss is identically zero") for r in cfg.regime_list if r not in regimes}
    keys = []
    frames = {"regimes": [], "robustness": [], "uad": [], "summary": [], "embedding": []}
    for regime in regimes:
        tm = regime_model(name, regime, profile, seed=seed, device=device, cache=cache, progress=progress)
        settings = {"defense": {k: getattr(cfg, k) for k in ("eps_milli", "table_eps_milli", "pgd_steps", "cw_c",
                                                              "cw_steps", "eval_images", "uad_fpr")},
                    "uad": uad().get_params(), "seed": int(seed), "attack_batch": profile.attack.batch_size}
        out, entry = cache.get_or_compute("ssat_uad", settings, lambda: _regime_result(tm, regime, profile, seed, cache),
                                      version=SSAT_UAD_VERSION, upstream=[tm.cache.key],
                                      command=f"medadv run ssat_uad --profile {profile.name}",
                                      meta={"dataset": name, "regime": regime})
        keys += [tm.cache.key, entry.key]
        tag = {"dataset": name, "regime": REGIME_LABELS[regime]}
        m = tm.metrics
        frames["regimes"].append({**tag, "accuracy": m["accuracy"], "balanced_accuracy": m["balanced_accuracy"],
                                  "train_seconds": m["train_seconds"], "labelled": m["labelled"],
                                  "unlabelled": m["unlabelled"] if regime == "ssat" else 0, "epochs": m["epochs"]})
        frames["summary"].append({**tag, **out["summary"], "chance_auprc": chance_auprc(out["uad"])})
        for key in ("robustness", "uad", "embedding"):
            frames[key].append(out[key].assign(**tag))
    lead = ["dataset", "regime"]
    tables = {k: (pd.DataFrame(v) if k in ("regimes", "summary") else pd.concat(v, ignore_index=True))
              for k, v in frames.items()}
    tables = {k: t[lead + [c for c in t.columns if c not in lead]] for k, t in tables.items()}
    return SSATUADResult(**tables, skipped=skipped, cache_keys=keys)


#: Table 1 of Li, Pan & Zhu (OCT, 4 balanced classes, ResNet-18 at 224 px, PGD eps = 0.005): UAD
#: AUPRC per class, its mean and the number of successful AEs of 1000; and Table 2's accuracy under
#: that attack.
PAPER_TABLE1 = pd.DataFrame({
    "regime": ["NT", "GCE", "AT", "SSAT"],
    "CNV": [0.897, 0.943, 0.890, 0.965], "DME": [0.802, 0.902, 0.932, 0.987],
    "DRUSEN": [0.852, 0.930, 0.841, 0.967], "NORMAL": [0.859, 0.931, 0.903, 0.974],
    "mean_auprc": [0.852, 0.927, 0.892, 0.973], "n_successful": [885, 970, 580, 136],
    "pgd_accuracy": [0.115, 0.003, 0.42, 0.864]})


def claim_flags(summary: pd.DataFrame, regimes: pd.DataFrame, *, clean_margin: float = 0.03) -> dict:
    """The paper's three claims on one data set, as booleans with the numbers behind them.

    ``ssat_most_robust``: SSAT has the highest PGD accuracy at Table 1's budget of the regimes run;
    ``ssat_clean_close``: SSAT's clean accuracy is at most ``clean_margin`` below NT's;
    ``uad_better_on_ssat``: UAD's mean AUPRC is higher on SSAT than on NT (False when undefined).
    """
    s, r = summary.set_index("regime"), regimes.set_index("regime")
    best = s["pgd_accuracy"].idxmax()
    flags = {"ssat_most_robust": bool(s.loc["SSAT", "pgd_accuracy"] >= s["pgd_accuracy"].max()),
             "most_robust": best, "pgd_ssat": float(s.loc["SSAT", "pgd_accuracy"]),
             "pgd_best": float(s["pgd_accuracy"].max()), "n_attacked": int(s.loc["SSAT", "n_attacked"]),
             "ssat_clean_close": bool(r.loc["SSAT", "accuracy"] >= r.loc["NT", "accuracy"] - clean_margin),
             "clean_gap": float(r.loc["NT", "accuracy"] - r.loc["SSAT", "accuracy"]),
             "uad_better_on_ssat": bool(s.loc["SSAT", "mean_auprc"] > s.loc["NT", "mean_auprc"]),
             "auprc_nt": float(s.loc["NT", "mean_auprc"]), "auprc_ssat": float(s.loc["SSAT", "mean_auprc"]),
             "n_successful": {k: int(v) for k, v in s["n_successful"].items()}}
    if "chance_auprc" in s:
        flags["chance_nt"], flags["chance_ssat"] = float(s.loc["NT", "chance_auprc"]), float(s.loc["SSAT", "chance_auprc"])
    return flags


def claim_text(name: str, flags: dict) -> str:
    """One sentence per claim, saying whether it holds on data set ``name`` and by what numbers."""
    n = flags["n_attacked"]
    if flags["ssat_most_robust"]:
        robust = f"SSAT is the most robust regime under PGD ({100 * flags['pgd_ssat']:.1f} % accuracy)"
    else:
        robust = (f"SSAT is not the most robust regime under PGD ({flags['most_robust']} is: "
                  f"{100 * flags['pgd_best']:.1f} % against SSAT's {100 * flags['pgd_ssat']:.1f} %), a difference of "
                  f"{round((flags['pgd_best'] - flags['pgd_ssat']) * n)} images of {n}")
    clean = ("its clean accuracy is within 3 points of NT's" if flags["ssat_clean_close"]
             else f"its clean accuracy is {100 * flags['clean_gap']:.1f} points below NT's")
    auprc = (f"mean AUPRC {flags['auprc_ssat']:.3f} for SSAT vs {flags['auprc_nt']:.3f} for NT")
    if "chance_ssat" in flags:
        auprc += f"; a random ranking scores {flags['chance_ssat']:.3f} and {flags['chance_nt']:.3f}"
    auprc += f"; on {flags['n_successful']['SSAT']} and {flags['n_successful']['NT']} successful AEs"
    uad = ("UAD separates SSAT's AEs better than NT's" if flags["uad_better_on_ssat"]
           else "UAD does not separate SSAT's AEs better than NT's")
    return f"On {name}, {robust}; {clean}; and {uad} ({auprc})."
