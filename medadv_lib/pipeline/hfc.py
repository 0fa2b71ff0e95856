"""Cached stages of the HFC chapter: the mixture fit and the detection experiment (METHODS.md section 5).

* :func:`hfc_fit`: one ``BayesianGaussianMixture`` per (class, layer) on the spatial-mean features
  of clean **training** images (:func:`~medadv_lib.attacks.hfc.fit_hfc_mixtures`), cached under a
  key of the model, the layers, K, the reference images and the seed, and returned as an
  :class:`~medadv_lib.attacks.HFCConstraint` whose ``state_key`` is that key, so every adversarial
  set built with it (:func:`~medadv_lib.pipeline.adversarial_examples`) is keyed by the fit.
* :func:`hfc_experiment`: the detection protocol of :mod:`medadv_lib.metrics.protocol` in the two
  settings of the HFC evaluation, for each base attack: (1) "as in the paper", the supervised
  parts are fitted on the fitting side with the **base** AEs and the held-out side is scored with
  the base, the HFC and the adaptive versions of the same images; (2) "the defender adapts", the
  supervised parts are refitted on HFC AEs. Adaptive attacks (Carlini & Wagner 2017 style) are
  the base attack with a penalty that lowers KD's or MAHA's score, at HFC's eps and steps.
* :func:`hfc_sweep`: the HFC attack at several K and ``lam`` on one data set, scored in setting 1.

Yao, He, Lin, Ma, Zheng & Zhou, "A hierarchical feature constraint to camouflage medical
adversarial attacks", MICCAI 2021 (arXiv 2012.09501).
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..attacks.hfc import HFCConstraint, KDPenalty, MahalanobisPenalty, default_hfc_layers, fit_hfc_mixtures
from ..cache import Cache, stage_key
from ..data import stratified_subset
from ..detectors import KD, Mahalanobis, extract_features
from ..metrics.protocol import DetectionProtocol, result_columns
from .adversarial import adversarial_examples
from .detection import detector_spec

log = logging.getLogger(__name__)

#: Bump when the mixture fit changes (invalidates ``hfc_fit`` entries and every set attacked with them).
HFC_FIT_VERSION = "1"
#: Bump when the experiment's protocol changes its numbers (invalidates ``hfc_detection`` entries).
HFC_DETECTION_VERSION = "1"
#: Attack kinds per base attack, in display order.
KINDS = ("base", "hfc", "adaptive_kd", "adaptive_maha")
#: Protocol settings: which AEs fit the supervised parts.
SETTINGS = {"paper": "fitted on base AEs (as in the paper)", "adapted": "refitted on HFC AEs (the defender adapts)"}


def attack_label(base: str, kind: str) -> str:
    """The run name of an attack kind on a base attack: ``bim``, ``hfc_bim``, ``adaptive_kd_bim``...

    Examples
    --------
    >>> attack_label("bim", "base"), attack_label("pgd", "hfc")
    ('bim', 'hfc_pgd')
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    return base.lower() if kind == "base" else f"{kind}_{base.lower()}"


def _images_digest(split) -> str:
    """A short hash of a set of uint8 images and labels: the reference images enter the fit's key."""
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(split.images.cpu().numpy()).tobytes())
    h.update(np.ascontiguousarray(np.asarray(split.labels.cpu())).tobytes())
    return h.hexdigest()[:16]


@dataclass
class HFCFit:
    """Result of :func:`hfc_fit`.

    Attributes
    ----------
    constraint : HFCConstraint
        The penalty, ``state_key`` = :attr:`cache_key`, weight ``lam``.
    layers : list of str
    n_components : int
        K.
    seconds : float
        Wall time of the fit when it was computed (also logged); read from the cache on a hit.
    layer_seconds : pandas.DataFrame
        class, layer, dim, n, seconds: one row per mixture.
    cache_key : str
    cached : bool
        Whether this call read the fit from the cache.
    """

    constraint: HFCConstraint
    layers: list[str]
    n_components: int
    seconds: float
    layer_seconds: pd.DataFrame
    cache_key: str
    cached: bool


def hfc_fit(tm, *, n_components: int = 1, layers: Sequence[str] | None = None, n_reference: int | None = None,
            seed: int = 0, lam: float = 1.0, classes: Sequence[int] | None = None, batch_size: int = 256,
            cache: Cache | None = None) -> HFCFit:
    """Fit (or load) HFC's per-(class, layer) mixtures on clean training features of ``tm``.

    Parameters
    ----------
    tm : medadv_lib.pipeline.TrainedModel
    n_components : int
        K of every ``BayesianGaussianMixture`` (full covariance, ``n_init=2``, ``max_iter=1000``).
    layers : sequence of str, optional
        Constrained taps; default :func:`~medadv_lib.attacks.hfc.default_hfc_layers` (every ReLU
        tap with at most 512 channels, penultimate excluded, as the authors' code).
    n_reference : int, optional
        A seeded, stratified subset of the model's training images (None: all of them); the same
        subset as the detectors' reference for equal ``n_reference`` and ``seed``.
    seed : int
        Seeds the subset and the mixtures' initialisation.
    lam : float
        Weight of the constraint (not part of the fit's key: one fit serves every ``lam``).
    classes : sequence of int, optional
        Classes to fit (default: every class, so any target works).

    Returns
    -------
    HFCFit
    """
    cache = cache or Cache()
    ref = tm.train.subset(stratified_subset(tm.train.labels, n_reference, seed))
    x_ref = ref.float()
    layers = list(layers) if layers is not None else default_hfc_layers(tm.model, x_ref[:1].to(_device(tm)))
    if not layers:
        raise ValueError("layers is empty; give at least one tap of the model (tm.model.feature_names).")
    params = {"layers": layers, "n_components": int(n_components), "seed": int(seed), "n_reference": len(ref),
              "reference": _images_digest(ref), "classes": None if classes is None else sorted(int(c) for c in classes)}

    def compute():
        feats = extract_features(tm.model, x_ref, layers, labels=ref.labels, batch_size=batch_size)
        start, rows, mixtures = time.perf_counter(), [], {}
        for layer in layers:
            t0 = time.perf_counter()
            fitted = fit_hfc_mixtures({layer: feats.layers[layer]}, feats.labels, n_components=n_components,
                                      seed=seed, classes=classes)
            seconds = time.perf_counter() - t0
            for c, per_layer in fitted.items():
                mixtures.setdefault(c, {})[layer] = per_layer[layer]
                rows.append({"class": c, "layer": layer, "dim": int(feats.layers[layer].shape[1]),
                             "n": int((feats.labels == c).sum()), "seconds": seconds / len(fitted)})
        total = time.perf_counter() - start
        log.info("%s: HFC mixtures (K=%d, %d layers, %d images) fitted in %.1f s", tm.dataset.name, n_components,
                 len(layers), len(ref), total)
        return {"mixtures": mixtures, "seconds": total, "layer_seconds": pd.DataFrame(rows)}

    payload, entry = cache.get_or_compute("hfc_fit", params, compute, version=HFC_FIT_VERSION,
                                          upstream=[tm.cache.key], command="medadv run hfc",
                                          meta={"dataset": tm.dataset.name})
    constraint = HFCConstraint(payload["mixtures"], lam=lam, state_key=entry.key)
    return HFCFit(constraint, layers, int(n_components), float(payload["seconds"]), payload["layer_seconds"],
                  entry.key, entry.hit)


def _device(tm):
    return next(tm.model.parameters()).device


def adaptive_penalties(tm, *, n_reference: int | None = None, seed: int = 0, kd_bandwidth: float = 1.0,
                       lam: float = 1.0, batch_size: int = 256) -> dict[str, object]:
    """The adaptive attacks' penalties, from KD and MAHA detectors fitted on clean training features.

    ``adaptive_kd`` lowers KD's score (negative log kernel density of the target class's clean
    penultimate features at the detector's bandwidth); ``adaptive_maha`` lowers MAHA's (squared
    Mahalanobis distance to the target class mean under each layer's tied covariance, every tap as
    the detector reads). The reference is the detectors' own (same ``n_reference`` and ``seed``).
    Each penalty's ``state_key`` hashes the model key, the reference and the detector settings
    (cheap to refit, so it is not stored).
    """
    ref = tm.train.subset(stratified_subset(tm.train.labels, n_reference, seed))
    feats = extract_features(tm.model, ref.float(), None, labels=ref.labels, batch_size=batch_size)
    common = {"reference": _images_digest(ref), "seed": int(seed)}
    kd = KD(bandwidth=kd_bandwidth).fit(feats.layers, feats.labels)
    maha = Mahalanobis().fit(X_ref=feats.layers, y_ref=feats.labels)
    return {
        "adaptive_kd": KDPenalty.from_detector(kd, lam=lam, state_key=stage_key(
            "adaptive_kd", {**common, "bandwidth": float(kd_bandwidth)}, version="1", upstream=[tm.cache.key])),
        "adaptive_maha": MahalanobisPenalty.from_detector(maha, lam=lam, state_key=stage_key(
            "adaptive_maha", {**common, "layers": list(maha.layers_)}, version="1", upstream=[tm.cache.key])),
    }


def attack_stats(adv: Mapping, *, dataset: str, base: str, kind: str, eps: float) -> dict:
    """Success rate, mean L-inf and L2 of the perturbations and seconds per image of one adversarial set."""
    delta = (adv["x_adv"] - adv["x"]).flatten(1)
    n = int(delta.shape[0])
    return {"dataset": dataset, "base": base, "kind": kind, "attack": attack_label(base, kind), "eps": float(eps),
            "n_images": n, "success_rate": float(adv["success"].float().mean()),
            "linf": float(delta.abs().amax(1).mean()), "l2": float(delta.norm(dim=1).mean()),
            "seconds_per_image": None if adv.get("seconds") is None else float(adv["seconds"]) / max(n, 1)}


@dataclass
class HFCExperiment:
    """Result of :func:`hfc_experiment` for one data set.

    Attributes
    ----------
    results : pandas.DataFrame
        One row per (setting, base, held-out attack, detector): :func:`~medadv_lib.metrics.result_columns`
        plus ``fit_attack``, ``setting`` (a key of :data:`SETTINGS`), ``base``, ``kind`` and ``eps_k``.
    attacks : pandas.DataFrame
        One row per attack (:func:`attack_stats`).
    scores : pandas.DataFrame
        Held-out scores with setting and base columns.
    fit : HFCFit
    adversarial : dict
        (base, kind) -> the adversarial set (``x``, ``x_adv``, ``target``, ``success``...).
    cache_keys : list of str
    """

    results: pd.DataFrame
    attacks: pd.DataFrame
    scores: pd.DataFrame
    fit: HFCFit
    adversarial: dict = field(repr=False)
    cache_keys: list[str] = field(default_factory=list)


def hfc_experiment(tm, profile, detectors: Mapping, *, eps: float, bases: Sequence[str] = ("bim",),
                   n_images: int, n_reference: int | None = None, n_components: int = 1, lam: float = 1.0,
                   layers: Sequence[str] | None = None, adaptive: bool | Sequence[str] = True,
                   step_fraction: float = 1 / 40,
                   seed: int = 0, noise: float = 2 / 256, split: float = 0.7, n_boot: int = 1000, ci: float = 0.95,
                   tnr: float = 0.9, batch_size: int = 256, cache: Cache | None = None) -> HFCExperiment:
    """The HFC detection experiment on one trained model, in both protocol settings, cached.

    For each base attack, the same seeded subset of correctly classified test images is attacked
    (targeted) by the base attack (the profile's steps), by HFC (the authors' step rule,
    ``step = eps * step_fraction``, ``2 / step_fraction`` steps) and, when ``adaptive``, by the two
    adaptive attacks at HFC's eps and steps. The protocol (clean training statistics, the noisy
    set, one 70/30 split by image) is prepared once; then

    * setting ``"paper"``: every detector is fitted on the fitting side with base AEs and scores
      the held-out side with each attack's AEs of the same images
      (:meth:`~medadv_lib.metrics.DetectionProtocol.evaluate_transfer`);
    * setting ``"adapted"``: every detector is refitted on HFC AEs and scores HFC AEs.

    Each (base) result is a cache stage ``hfc_detection`` keyed by the adversarial sets, the
    detectors and the protocol settings.

    Parameters
    ----------
    tm : TrainedModel
    profile : Profile
        Handed to :func:`~medadv_lib.pipeline.adversarial_examples` (base steps, batch size).
    detectors : dict[str, BaseDetector]
        Unfitted detectors.
    eps : float
        L-infinity budget of every attack.
    bases : sequence of str
        Base attacks (``"bim"``, ``"pgd"``, ``"mim"``, ``"di"``, ``"cw"``).
    n_images : int
        Correctly classified test images attacked (HFC takes ``2 / step_fraction`` steps: keep it modest).
    n_reference : int, optional
        Clean training images of the detectors' statistics, the adaptive penalties and the HFC fit.
    n_components, lam, layers
        The HFC constraint (:func:`hfc_fit`).
    adaptive : bool or sequence of str
        Also run the adaptive attacks: on every base (True), on none (False) or on the bases named.
    noise, split, n_boot, ci, tnr, batch_size
        As in :class:`~medadv_lib.metrics.DetectionProtocol`.

    Returns
    -------
    HFCExperiment
    """
    cache = cache or Cache()
    name = tm.dataset.name
    bases = [b.lower() for b in bases]
    if not bases:
        raise ValueError("bases is empty; name at least one base attack, e.g. ('bim',).")
    fit = hfc_fit(tm, n_components=n_components, layers=layers, n_reference=n_reference, seed=seed, lam=lam,
                  batch_size=batch_size, cache=cache)
    penalties = {"hfc": fit.constraint}
    if adaptive:
        penalties.update(adaptive_penalties(tm, n_reference=n_reference, seed=seed, lam=lam, batch_size=batch_size))
    adaptive_bases = set(bases if adaptive is True else (adaptive or ()))
    unknown = adaptive_bases - set(bases)
    if unknown:
        raise ValueError(f"adaptive names {sorted(unknown)}, which are not among the bases {bases}.")
    adv_kw = {"seed": seed, "targeted": True, "n_images": n_images, "correct_only": True, "cache": cache}
    settings = {"detectors": detector_spec(detectors), "noise": float(noise), "split": float(split), "seed": int(seed),
                "n_boot": int(n_boot), "ci": float(ci), "tnr": float(tnr), "n_train": len(tm.train),
                "n_reference": None if n_reference is None else int(n_reference), "eps": float(eps)}
    state: dict = {"protocol": None}
    advs, stats, results, scores, keys = {}, [], [], [], [tm.cache.key, fit.cache_key]
    for base in bases:
        kinds = ["base", *(k for k in penalties if k == "hfc" or base in adaptive_bases)]
        for kind in kinds:
            if kind == "base":
                adv = adversarial_examples(tm, base, eps, profile, **adv_kw)
            else:
                adv = adversarial_examples(tm, "hfc", eps, profile, base=base, constraint=penalties[kind],
                                           step_fraction=step_fraction, **adv_kw)
            advs[(base, kind)] = adv
            keys.append(adv["cache_key"])
            stats.append(attack_stats(adv, dataset=name, base=base, kind=kind, eps=eps))

        def compute(base=base, kinds=tuple(kinds)):
            if state["protocol"] is None:
                ref = tm.train.subset(stratified_subset(tm.train.labels, n_reference, seed))
                x = advs[(base, "base")]
                state["protocol"] = DetectionProtocol(tm.model, detectors, noise=noise, split=split, seed=seed,
                                                      n_boot=n_boot, ci=ci, tnr=tnr, batch_size=batch_size
                                                      ).prepare(ref.float(), ref.labels, x["x"], x["y"])
            protocol = state["protocol"]
            held = {attack_label(base, k): advs[(base, k)]["x_adv"] for k in kinds}
            targets = {attack_label(base, k): advs[(base, k)]["target"] for k in kinds}
            tables, long = [], []
            for setting, fit_kind, scored in (("paper", "base", list(held)), ("adapted", "hfc", [attack_label(base, "hfc")])):
                fit_name = attack_label(base, fit_kind)
                t = protocol.evaluate_transfer(held[fit_name], {k: held[k] for k in scored}, fit_name=fit_name,
                                               dataset=name, eps=float(eps), targets=targets[fit_name],
                                               held_out_targets={k: targets[k] for k in scored})
                tables.append(t.assign(setting=setting))
                long.append(protocol.scores_.assign(setting=setting))
            return {"results": pd.concat(tables, ignore_index=True), "scores": pd.concat(long, ignore_index=True)}

        payload, entry = cache.get_or_compute(
            "hfc_detection", {**settings, "base": base, "kinds": kinds}, compute, version=HFC_DETECTION_VERSION,
            upstream=[advs[(base, k)]["cache_key"] for k in kinds], command="medadv run hfc",
            meta={"dataset": name})
        keys.append(entry.key)
        kind_of = {attack_label(base, k): k for k in kinds}
        table = payload["results"].assign(base=base)
        table["kind"] = table["attack"].map(kind_of)
        results.append(table)
        scores.append(payload["scores"].assign(base=base, dataset=name))
    frame = pd.concat(results, ignore_index=True)
    frame["eps_k"] = np.round(frame["eps"].astype(float) * 256, 6)
    columns = result_columns(tnr) + ["fit_attack", "setting", "base", "kind", "eps_k"]
    return HFCExperiment(results=frame[columns], attacks=pd.DataFrame(stats),
                         scores=pd.concat(scores, ignore_index=True), fit=fit, adversarial=advs, cache_keys=keys)


def hfc_sweep(tm, profile, detectors: Mapping, *, eps: float, n_components: Sequence[int] = (1, 2),
              lams: Sequence[float] = (0.1, 1.0, 10.0), base: str = "bim", n_images: int, **kwargs) -> pd.DataFrame:
    """HFC at every (K, lam) on one data set, scored in setting 1 (detectors fitted on base AEs).

    Returns one row per (K, lam, detector): ``n_components``, ``lam``, ``detector``, ``auroc``,
    ``tpr90``, ``attack_success_rate``. ``kwargs`` go to :func:`hfc_experiment`.
    """
    rows = []
    for k in n_components:
        for lam in lams:
            exp = hfc_experiment(tm, profile, detectors, eps=eps, bases=(base,), n_images=n_images,
                                 n_components=int(k), lam=float(lam), adaptive=False, **kwargs)
            r = exp.results[(exp.results["setting"] == "paper") & (exp.results["kind"] == "hfc")]
            rows.append(r.assign(n_components=int(k), lam=float(lam)))
    cols = ["n_components", "lam", "detector", "auroc", "auroc_lo", "auroc_hi", "tpr90", "attack_success_rate"]
    return pd.concat(rows, ignore_index=True)[cols]


def sweep_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """The K x lambda sweep for readers: one row per (K, lambda), the AUROC of every detector and HFC's success."""
    wide = sweep.pivot_table(index=["n_components", "lam"], columns="detector", values="auroc", sort=False)
    wide.columns = [f"AUROC {d}" for d in wide.columns]
    success = sweep.groupby(["n_components", "lam"], sort=False)["attack_success_rate"].first()
    out = wide.join(success.rename("HFC success")).reset_index()
    return out.rename(columns={"n_components": "K", "lam": "lambda"}).round(3)


def lam_text(sweep: pd.DataFrame) -> str:
    """HFC's targeted success against lambda at the smallest K of a :func:`hfc_sweep`, in words.

    Examples
    --------
    >>> frame = pd.DataFrame({"n_components": [1, 1], "lam": [0.1, 1.0], "detector": ["KD", "KD"],
    ...                       "attack_success_rate": [0.19, 0.03]})
    >>> lam_text(frame)
    'at K = 1, HFC reaches the target for 19 % of the images at lambda = 0.1 and 3 % at lambda = 1'
    """
    k = int(sweep["n_components"].min())
    rates = sweep[sweep["n_components"] == k].groupby("lam")["attack_success_rate"].first().sort_index()
    parts = [f"{100 * r:.0f} % of the images at lambda = {lam:g}" if i == 0 else f"{100 * r:.0f} % at lambda = {lam:g}"
             for i, (lam, r) in enumerate(rates.items())]
    return f"at K = {k}, HFC reaches the target for " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1
                                                         else parts[0])


def pca_view(tm, exp: HFCExperiment, *, base: str, layers: Sequence[str], n_reference: int | None = None,
             seed: int = 0, batch_size: int = 256, kinds: Sequence[str] = ("base", "hfc")) -> dict[str, pd.DataFrame]:
    """2-D PCA of clean target-class training features, with attacked images projected on it.

    The target class is the most frequent target of the ``base`` attack's AEs that succeed for
    every kind in ``kinds``; per layer, the PCA is fitted on the clean training features of that
    class only (so the axes are the clean class's main directions), and the clean and adversarial
    versions of the images attacked towards it are projected. Returns one view per (layer, kind),
    named ``"<layer>: <kind label>"``, in the format of :func:`medadv_lib.plotting.pca_plot`
    (columns set, label, image, pc1, pc2; ``attrs["explained_variance_ratio"]``).
    """
    from sklearn.decomposition import PCA

    sets = {k: exp.adversarial[(base, k)] for k in kinds}
    first = sets[kinds[0]]
    if first["target"] is None:
        raise ValueError("pca_view needs a targeted experiment (targets to pick the class from).")
    ok = torch.stack([a["success"] for a in sets.values()]).all(0)
    if not bool(ok.any()):
        raise ValueError(f"no image was attacked successfully by every kind {list(kinds)}.")
    target = int(torch.mode(first["target"][ok]).values)
    ref = tm.train.subset(stratified_subset(tm.train.labels, n_reference, seed))
    ref = ref.subset(torch.nonzero(ref.labels == target).flatten())
    rows = torch.nonzero((first["target"] == target) & ok).flatten()
    feats = {"clean training": extract_features(tm.model, ref.float(), list(layers), batch_size=batch_size),
             "clean attacked": extract_features(tm.model, first["x"][rows], list(layers), batch_size=batch_size)}
    for k, a in sets.items():
        feats[k] = extract_features(tm.model, a["x_adv"][rows], list(layers), batch_size=batch_size)
    y = np.asarray(first["y"][rows])
    views = {}
    for layer in layers:
        pca = PCA(n_components=2, random_state=seed).fit(feats["clean training"].layers[layer])
        train = pca.transform(feats["clean training"].layers[layer])
        clean = pca.transform(feats["clean attacked"].layers[layer])
        for k in kinds:
            z = pca.transform(feats[k].layers[layer])
            view = pd.concat([
                pd.DataFrame({"set": "clean training", "label": target, "image": -1, "pc1": train[:, 0], "pc2": train[:, 1]}),
                pd.DataFrame({"set": "clean attacked", "label": y, "image": np.arange(len(y)), "pc1": clean[:, 0],
                              "pc2": clean[:, 1]}),
                pd.DataFrame({"set": "adversarial", "label": y, "image": np.arange(len(y)), "pc1": z[:, 0], "pc2": z[:, 1]}),
            ], ignore_index=True)
            view.attrs["explained_variance_ratio"] = [float(v) for v in pca.explained_variance_ratio_]
            view.attrs["target"] = target
            views[f"{layer}: {display_label(base, k)}"] = view
    return views

_KIND_LABELS = {"base": "{b}", "hfc": "HFC ({b})", "adaptive_kd": "adaptive KD ({b})",
                "adaptive_maha": "adaptive MAHA ({b})"}
#: The detector each adaptive attack targets (the others are "not targeted" by it).
ADAPTIVE_TARGETS = {"adaptive_kd": ("KD", "KD+BU"), "adaptive_maha": ("MAHA",)}


def display_label(base: str, kind: str) -> str:
    """Reader label of an attack kind: ``"HFC (BIM)"``, ``"adaptive KD (PGD)"``, ``"BIM"``."""
    from ..tables import attack_label as human

    return _KIND_LABELS[kind].format(b=human(base))


def for_display(results: pd.DataFrame) -> pd.DataFrame:
    """``results`` with ``attack`` replaced by its reader label (for the formatting tables)."""
    return results.assign(attack=[display_label(b, k) for b, k in zip(results["base"], results["kind"])])


def hfc_claims(results: pd.DataFrame, attacks: pd.DataFrame, *, feature_space: Sequence[str] = ("KD", "LID", "MAHA"),
               setting: str = "paper") -> pd.DataFrame:
    """The chapter's claims, measured, one row per (dataset, base): the values and a pass flag each.

    * ``success_gap``: base success rate minus HFC's, in points (claim: at most 5);
    * ``fs_drop``: mean AUROC of ``feature_space`` on base AEs minus on HFC AEs (claim: >= 0.15);
    * ``tpr_all_fall``: every detector's TPR at 90 % TNR is lower on HFC AEs than on base AEs;
    * ``hfc_vs_<adaptive>``: HFC's mean AUROC over the detectors the adaptive attack does not
      target, minus that adaptive attack's mean over the same detectors (claim: < 0).

    Scores come from ``setting`` (default ``"paper"``: detectors fitted on base AEs).
    """
    res = results[results["setting"] == setting]
    rows = []
    for (dataset, base), grp in res.groupby(["dataset", "base"], sort=False):
        by = {k: g.set_index("detector") for k, g in grp.groupby("kind")}
        att = attacks[(attacks["dataset"] == dataset) & (attacks["base"] == base)].set_index("kind")
        gap = 100 * (att.loc["base", "success_rate"] - att.loc["hfc", "success_rate"])
        fs = [d for d in feature_space if d in by["base"].index]
        drop = float(by["base"].loc[fs, "auroc"].mean() - by["hfc"].loc[fs, "auroc"].mean())
        common = by["base"].index.intersection(by["hfc"].index)
        tb, th = by["base"].loc[common, "tpr90"], by["hfc"].loc[common, "tpr90"]
        row = {"dataset": dataset, "base": base, "success_base": float(att.loc["base", "success_rate"]),
               "success_hfc": float(att.loc["hfc", "success_rate"]), "success_gap": float(gap),
               "success_ok": bool(abs(gap) <= 5 or gap < 0), "fs_drop": drop, "fs_drop_ok": bool(drop >= 0.15),
               "tpr_falls": int((th < tb).sum()), "tpr_total": int(len(common)),
               "tpr_all_fall": bool((th < tb).all())}
        for kind, targeted in ADAPTIVE_TARGETS.items():
            if kind not in by:
                continue
            others = [d for d in by[kind].index if d not in targeted]
            diff = float(by["hfc"].loc[others, "auroc"].mean() - by[kind].loc[others, "auroc"].mean())
            row[f"hfc_vs_{kind}"] = diff
            row[f"hfc_vs_{kind}_ok"] = bool(diff < 0)
        rows.append(row)
    return pd.DataFrame(rows)


def claims_text(claims: pd.DataFrame) -> str:
    """One sentence per measured claim, saying plainly where it holds and where it does not."""
    if claims.empty:
        return "No run had enough successful adversarial examples to check the claims."
    parts = []
    n = len(claims)
    parts.append(f"HFC's targeted success is within 5 points of the base attack's (or above it) in "
                 f"{int(claims['success_ok'].sum())} of {n} runs.")
    parts.append(f"The mean AUROC of KD, LID and MAHA falls by at least 0.15 from base to HFC AEs in "
                 f"{int(claims['fs_drop_ok'].sum())} of {n} runs (drops between {claims['fs_drop'].min():.2f} "
                 f"and {claims['fs_drop'].max():.2f}).")
    parts.append(f"Every detector's TPR at 90 % TNR falls in {int(claims['tpr_all_fall'].sum())} of {n} runs.")
    for kind in ADAPTIVE_TARGETS:
        col = f"hfc_vs_{kind}_ok"
        if col in claims and claims[col].notna().any():
            ran = claims[col].dropna().astype(bool)
            parts.append(f"Over the detectors {display_label('bim', kind).split(' (')[0]} does not target, HFC's "
                         f"mean AUROC is below that adaptive attack's in {int(ran.sum())} of {len(ran)} runs "
                         f"with that attack.")
    return " ".join(parts)


#: What the HFC paper reports (its abstract; the tables are not available offline).
PAPER_RESULT = {"source": "HFC, Yao et al. 2021 (MICCAI), abstract",
                "data": "APTOS fundus, Kaggle chest X-ray; 224 px, ResNet-50",
                "result": "HFC AEs bypass KD, BU, LID, MAHA, DNN, SVM; beat adaptive attacks"}


def beside_the_paper(claims: pd.DataFrame, *, arch: str, image_size: int) -> pd.DataFrame:
    """The paper's result and ours (one row per measured run of :func:`hfc_claims`), side by side."""
    from ..tables import attack_label as human

    rows = [dict(PAPER_RESULT)]
    for r in claims.itertuples():
        rows.append({"source": f"this page: {r.dataset}, {human(r.base)}", "data": f"{arch}, {image_size} px",
                     "result": f"KD/LID/MAHA mean AUROC falls by {r.fs_drop:.2f}; TPR falls for {r.tpr_falls} of "
                               f"{r.tpr_total} detectors; success {r.success_base:.0%} base, {r.success_hfc:.0%} HFC"})
    return pd.DataFrame(rows)


#: Per-profile choices of the chapter. K: 1 at smoke and cpu (the authors' attack script loads 1;
#: the chapter's sweep measures K = 2 beside it), 64 at paper (the authors' README). Steps: the
#: authors' rule (step eps / 40, 80 steps) at paper; at smoke and cpu step eps / 10 and 20 steps,
#: the same total path of 2 eps at a quarter of the cost. Adaptive attacks on BIM only below paper.
CHAPTER_SETTINGS = {
    "smoke": {"bases": ("bim",), "adaptive": ("bim",), "max_images": 60, "n_components": 1, "step_fraction": 0.1,
              "sweep_k": (1, 2), "sweep_lam": (0.1, 1.0)},
    "cpu": {"bases": ("bim", "pgd"), "adaptive": ("bim",), "max_images": 100, "n_components": 1,
            "step_fraction": 0.1, "sweep_k": (1, 2), "sweep_lam": (0.01, 0.1, 1.0)},
    "paper": {"bases": ("bim", "pgd", "mim", "di", "cw"), "adaptive": ("bim", "pgd", "mim", "di", "cw"),
              "max_images": 1000, "n_components": 64, "step_fraction": 1 / 40, "sweep_k": (1, 2, 8, 64),
              "sweep_lam": (0.01, 0.1, 1.0, 10.0)},
}


def steps_text(step_fraction: float) -> str:
    """HFC's step rule in words: ``"step eps/40, 80 steps (the authors' rule)"``.

    Examples
    --------
    >>> steps_text(0.1)
    'step eps/10, 20 steps (the authors use eps/40 and 80 steps: the same total path of 2 eps)'
    """
    inverse = 1 / float(step_fraction)
    label = f"{inverse:g}" if abs(inverse - round(inverse)) < 1e-9 else f"{inverse:.2f}"
    steps = int(round(2 * inverse))
    if abs(inverse - 40) < 1e-9:
        return f"step eps/40, {steps} steps (the authors' rule)"
    return f"step eps/{label}, {steps} steps (the authors use eps/40 and 80 steps: the same total path of 2 eps)"


def chapter_settings(profile) -> dict:
    """The HFC chapter's settings for a profile: bases, attacked images, K, the sweep grid."""
    out = dict(CHAPTER_SETTINGS.get(profile.name, CHAPTER_SETTINGS["cpu"]))
    out["n_images"] = min(int(profile.detect.n_images), out.pop("max_images"))
    return out
