"""Cached stages of the SMIA chapter: SMIA against FGSM, BIM and PGD on one trained model.

SMIA (Qi, Gong, Song, Ma & Zheng, "Stabilized medical image attacks", ICLR 2021; METHODS.md
section 7; :class:`medadv_lib.attacks.SMIA`) adds a loss-stabilisation term to the usual
cross-entropy ascent. The paper claims, qualitatively (its tables are not available offline), that
at equal budget and steps SMIA lowers the accuracy under attack more than FGSM, BIM and PGD, on
several medical modalities, and that its loss and perturbations vary less across iterations and
random restarts. This module measures those claims on one data set per call:

* :func:`smia_experiment`: (a) accuracy under attack against the budget for the four attacks,
  (b) stability (the per-step cross-entropy over images, and the spread of the final
  cross-entropy and of the per-image success over random restarts, SMIA against PGD),
  (c) the perturbations (total variation, high-frequency energy fraction, L2 norm, examples);
* :func:`beta2_sweep`: SMIA's stabilisation weight ``beta2`` against accuracy and spread;
* verdicts the chapter's prose uses (:func:`accuracy_verdict`, :func:`spread_verdict`,
  :func:`choose_beta2`, :func:`detectability_verdict`), tested functions rather than if/elif in cells.

The adversarial sets of (a) and (c) are :func:`~medadv_lib.pipeline.adversarial_examples` (cached
by the attack's spec, shared with other chapters); the restarts record per-step traces, which that
stage does not keep, so they run here, inside this stage's own cache entry.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..cache import Cache
from ..config import Profile
from ..models import PENULTIMATE
from .adversarial import adversarial_examples, attack_subset

__all__ = ["CHAPTER_SETTINGS", "COMPARED", "SMIA_VERSION", "SMIAExperiment", "accuracy_verdict", "beta2_sweep", "chapter_settings",
           "choose_beta2", "detectability_verdict", "high_frequency_fraction", "perturbation_stats", "spread_verdict",
           "smia_experiment", "total_variation"]

#: Bump when this module changes its numbers (invalidates the cached ``smia`` stages).
SMIA_VERSION = "1"
#: The attacks compared, in the order the chapter shows them.
COMPARED = ("fgsm", "bim", "pgd", "smia")
#: The attacks compared over random restarts (FGSM and BIM have no random start).
RESTARTED = ("pgd", "smia")
#: Per-profile sizes of the chapter's costlier sections (the accuracy curves use the profile's
#: ``attack`` section and share PGD's sets with the stress test). ``restart_images`` of the attacked
#: images are restarted ``restarts`` times; the beta2 sweep attacks ``sweep_images`` images with
#: ``sweep_restarts`` restarts; the detection section attacks ``detect_images`` images.
CHAPTER_SETTINGS = {
    "smoke": {"restart_images": 12, "restarts": 5, "sweep_images": 12, "sweep_restarts": 2, "detect_images": 60},
    "cpu": {"restart_images": 32, "restarts": 5, "sweep_images": 32, "sweep_restarts": 2, "detect_images": 100},
    "paper": {"restart_images": 200, "restarts": 5, "sweep_images": 200, "sweep_restarts": 3, "detect_images": 500},
}


def chapter_settings(profile: Profile) -> dict:
    """The SMIA chapter's sample sizes for a profile (a user profile gets the ``cpu`` sizes)."""
    return dict(CHAPTER_SETTINGS.get(profile.name, CHAPTER_SETTINGS["cpu"]))


# ----------------------------------------------------------------------------------------------
# Perturbation statistics
# ----------------------------------------------------------------------------------------------

def total_variation(delta: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation per image, as a mean absolute neighbour difference (N,).

    ``delta`` is (N, C, H, W). The mean (not the sum) over horizontal and vertical neighbour pairs
    and channels makes images of different sizes comparable; a constant perturbation scores 0, a
    +-e checkerboard 2e. Divide by eps to compare budgets.
    """
    if delta.dim() != 4:
        raise ValueError(f"delta must be (N, C, H, W), got shape {tuple(delta.shape)}.")
    d = delta.double()
    dh = (d[..., 1:, :] - d[..., :-1, :]).abs().flatten(1)
    dw = (d[..., :, 1:] - d[..., :, :-1]).abs().flatten(1)
    return (torch.cat([dh, dw], 1).mean(1)).float()


def high_frequency_fraction(delta: torch.Tensor, cutoff: float = 0.25) -> torch.Tensor:
    """Share of each perturbation's spectral energy above ``cutoff`` cycles per pixel (N,).

    The radial frequency of the 2-D DFT bin (u, v) is ``sqrt(u^2 + v^2)`` in cycles per pixel
    (Nyquist 0.5 per axis); the default cutoff is half of Nyquist. A smooth perturbation scores
    near 0, white noise about ``1 - pi/16 ~ 0.80`` on a large image. A zero perturbation scores 0.
    """
    if delta.dim() != 4:
        raise ValueError(f"delta must be (N, C, H, W), got shape {tuple(delta.shape)}.")
    if not 0 < cutoff < math.sqrt(0.5):
        raise ValueError(f"cutoff must be in (0, sqrt(0.5)) cycles per pixel, got {cutoff!r}.")
    power = torch.fft.fft2(delta.double()).abs() ** 2
    fu = torch.fft.fftfreq(delta.shape[-2], dtype=torch.float64)
    fv = torch.fft.fftfreq(delta.shape[-1], dtype=torch.float64)
    high = (fu[:, None] ** 2 + fv[None, :] ** 2).sqrt() > cutoff
    total = power.flatten(1).sum(1)
    part = (power * high).flatten(1).sum(1)
    return torch.where(total > 0, part / total.clamp(min=1e-300), torch.zeros_like(total)).float()


def perturbation_stats(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> pd.DataFrame:
    """Per-image smoothness and size of ``x_adv - x``: ``tv_over_eps``, ``hf_fraction``, ``l2``, ``linf``."""
    delta = (x_adv - x).float()
    return pd.DataFrame({"image": np.arange(len(delta)),
                         "tv_over_eps": (total_variation(delta) / eps).numpy() if eps > 0 else np.nan,
                         "hf_fraction": high_frequency_fraction(delta).numpy(),
                         "l2": delta.flatten(1).norm(dim=1).numpy(),
                         "linf": delta.flatten(1).abs().amax(1).numpy()})


# ----------------------------------------------------------------------------------------------
# The experiment
# ----------------------------------------------------------------------------------------------

@dataclass
class SMIAExperiment:
    """Results of :func:`smia_experiment` for one data set.

    Attributes
    ----------
    dataset, domain : str
        Registry name and ``DatasetInfo.domain`` ("medical" or "natural").
    curve : DataFrame
        Accuracy under attack: ``attack`` (``"clean"`` for eps 0), ``eps``, ``eps_k``, ``accuracy``,
        ``n``; one row per (attack, budget) plus the clean row.
    trace : DataFrame
        Cross-entropy at every iterate of the first restart, per (attack, step): ``mean``, ``q25``,
        ``q75`` over images (step 0 is the clean image, step t the iterate after t steps).
    restarts : DataFrame
        Per (attack, image): ``ce_std`` (std over restarts of the final cross-entropy),
        ``success_std`` (std over restarts of the 0/1 success), ``ce_mean``, ``success_mean``.
    spread : DataFrame
        Per attack: the means over images of the ``restarts`` columns, plus ``n_images``, ``n_restarts``.
    perturbations : DataFrame
        Per (attack, image) at ``stability_eps``: :func:`perturbation_stats` columns.
    examples : dict
        ``x`` (a few clean images) and, per attack, their perturbations ``x_adv - x`` at ``stability_eps``.
    stability_eps : float
        Budget of the restarts, the perturbations and the examples.
    beta2 : float
        SMIA's stabilisation weight used.
    cache_keys : list of str
    cached : bool
        Whether the result was read from the cache.
    """

    dataset: str
    domain: str
    curve: pd.DataFrame
    trace: pd.DataFrame
    restarts: pd.DataFrame
    spread: pd.DataFrame
    perturbations: pd.DataFrame
    examples: dict
    stability_eps: float
    beta2: float
    cache_keys: list[str] = field(default_factory=list)
    cached: bool = False


def _middle_budget(eps_list: Sequence[float]) -> float:
    budgets = sorted(eps_list)
    return budgets[(len(budgets) - 1) // 2]


def _ce_from_penultimate(model, features: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy at every recorded iterate, (steps + 1, N), from the penultimate features.

    The penultimate tap is the input of the classifier's last linear layer, so ``classifier(h)``
    are the logits of that iterate: one trace, comparable across attacks whatever their objective
    (SMIA's recorded ``"loss"`` is its whole objective, CE minus the stabilisation term).
    """
    with torch.no_grad():
        weight, bias = model.classifier.weight.detach().cpu(), model.classifier.bias
        logits = features.float() @ weight.T + (0 if bias is None else bias.detach().cpu())
        steps, n, k = logits.shape
        return F.cross_entropy(logits.reshape(-1, k), y.repeat(steps), reduction="none").reshape(steps, n)


def _restart_runs(tm, attack: str, eps: float, x: torch.Tensor, y: torch.Tensor, *, steps: int, seed: int,
                  restarts: int, batch_size: int, beta2: float):
    """Final CE (R, N), success (R, N) and the first restart's CE trace (steps + 1, N)."""
    from ..attacks import get_attack

    device = next(tm.model.parameters()).device
    finals, successes, trace = [], [], None
    kwargs = {"beta2": beta2} if attack == "smia" else {}
    for r in range(restarts):
        atk = get_attack(attack, tm.model, eps=eps, steps=steps, seed=seed + r, random_start=True, **kwargs)
        ce, ok, feats = [], [], []
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size].to(device), y[start:start + batch_size].to(device)
            res = atk.run(xb, yb, record=() if r else (f"features:{PENULTIMATE}",))
            ce.append(F.cross_entropy(res.logits.float(), yb, reduction="none").cpu())
            ok.append(res.success.cpu())
            if not r:
                feats.append(res.records[f"features:{PENULTIMATE}"].cpu())
        finals.append(torch.cat(ce))
        successes.append(torch.cat(ok).float())
        if not r:
            trace = _ce_from_penultimate(tm.model, torch.cat(feats, 1), y.cpu())
    return torch.stack(finals), torch.stack(successes), trace


def smia_experiment(tm, profile: Profile, *, seed: int = 0, n_images: int | None = None,
                    beta2: float | None = None, stability_eps: float | None = None, restarts: int = 5,
                    restart_images: int | None = None, n_examples: int = 4,
                    cache: Cache | None = None) -> SMIAExperiment:
    """SMIA against FGSM, BIM and PGD on one trained model, at equal budgets and steps, untargeted.

    Parameters
    ----------
    tm : medadv_lib.pipeline.TrainedModel
    profile : medadv_lib.config.Profile
        Budgets ``attack.eps`` (k/256), steps ``attack.steps`` (every attack but FGSM takes that
        many steps of eps / 5), batch size ``attack.batch_size``.
    seed : int
        Seeds the test subset, PGD's random start and the restarts (seeds ``seed .. seed + restarts - 1``).
    n_images : int, optional
        Test images attacked (seeded, stratified; correct or not, so the curve starts at the
        clean accuracy); default ``attack.curve_images``.
    beta2 : float, optional
        SMIA's stabilisation weight; default the library's (:class:`~medadv_lib.attacks.SMIA`).
    stability_eps : float, optional
        Budget of the restarts and the perturbation statistics; default the middle budget of the
        profile (the lower one of the two middle ones: 2/256 at ``cpu``), where the attacks do not
        all saturate at 0 % accuracy.
    restarts : int, default 5
        Random restarts per image (PGD and SMIA, both with a uniform random start in the ball).
    restart_images : int, optional
        Restart only the first this many attacked images (the restarts cost ``2 * restarts`` attacks
        of them); default all of them.
    n_examples : int, default 4
        Clean images whose perturbations are kept for display.
    cache : Cache, optional

    Returns
    -------
    SMIAExperiment
    """
    from ..attacks import SMIA
    from ..data import dataset_names, get_info

    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 2:
        raise ValueError(f"restarts must be an int >= 2 (a spread needs two runs), got {restarts!r}.")
    if restart_images is not None and (isinstance(restart_images, bool) or not isinstance(restart_images, int)
                                       or restart_images < 2):
        raise ValueError(f"restart_images must be an int >= 2 or None (every attacked image), got {restart_images!r}.")
    cache = cache or Cache()
    n_images = n_images or profile.attack.curve_images
    eps_list = [float(e) for e in profile.attack.eps]
    if not eps_list:
        raise ValueError("profile.attack.eps_k is empty; give at least one budget.")
    stab_eps = float(stability_eps) if stability_eps is not None else _middle_budget(eps_list)
    beta2 = float(SMIA.__init__.__kwdefaults__["beta2"] if beta2 is None else beta2)
    name = tm.dataset.name
    domain = get_info(name).domain if name in dataset_names() else "medical"

    sets, keys = {}, [tm.cache.key]
    for attack in COMPARED:
        kwargs = {"beta2": beta2} if attack == "smia" else {}
        for eps in sorted({*eps_list, stab_eps}):
            adv = adversarial_examples(tm, attack, eps, profile, seed=seed, n_images=n_images, cache=cache, **kwargs)
            sets[attack, eps] = adv
            keys.append(adv["cache_key"])

    def compute():
        from ..analysis.robustness import predictions

        first = next(iter(sets.values()))
        x, y = first["x"], first["y"]
        rows = [{"attack": "clean", "eps": 0.0, "accuracy": float((predictions(tm.model, x) == y).float().mean()),
                 "n": len(y)}]
        for (attack, eps), adv in sets.items():
            if eps in eps_list:
                rows.append({"attack": attack, "eps": eps, "accuracy": 1.0 - float(adv["success"].float().mean()),
                             "n": len(y)})
        curve = pd.DataFrame(rows)
        curve["eps_k"] = np.round(curve["eps"] * 256, 6)

        traces, per_image = [], []
        xr, yr = x[:restart_images], y[:restart_images]
        for attack in RESTARTED:
            ce, ok, trace = _restart_runs(tm, attack, stab_eps, xr, yr, steps=profile.attack.steps, seed=seed,
                                          restarts=restarts, batch_size=profile.attack.batch_size, beta2=beta2)
            t = trace.numpy()
            traces.append(pd.DataFrame({"attack": attack, "step": np.arange(t.shape[0]), "mean": t.mean(1),
                                        "q25": np.quantile(t, 0.25, axis=1), "q75": np.quantile(t, 0.75, axis=1)}))
            per_image.append(pd.DataFrame({"attack": attack, "image": np.arange(len(yr)),
                                           "ce_std": ce.std(0, unbiased=True).numpy(),
                                           "success_std": ok.std(0, unbiased=True).numpy(),
                                           "ce_mean": ce.mean(0).numpy(), "success_mean": ok.mean(0).numpy()}))
        restarts_frame = pd.concat(per_image, ignore_index=True)
        spread = restarts_frame.groupby("attack", sort=False)[["ce_std", "success_std", "ce_mean", "success_mean"]] \
            .mean().reset_index()
        spread["n_images"], spread["n_restarts"] = len(yr), restarts

        stats = [perturbation_stats(sets[a, stab_eps]["x"], sets[a, stab_eps]["x_adv"], stab_eps).assign(attack=a)
                 for a in COMPARED]
        perturbations = pd.concat(stats, ignore_index=True)[["attack", "image", "tv_over_eps", "hf_fraction",
                                                              "l2", "linf"]]
        k = min(n_examples, len(y))
        examples = {"x": x[:k].clone(), "y": y[:k].clone(),
                    **{a: (sets[a, stab_eps]["x_adv"][:k] - x[:k]).clone() for a in COMPARED}}
        return {"curve": curve, "trace": pd.concat(traces, ignore_index=True), "restarts": restarts_frame,
                "spread": spread, "perturbations": perturbations, "examples": examples}

    params = {"n_images": int(n_images), "eps": eps_list, "stability_eps": stab_eps, "steps": profile.attack.steps,
              "beta2": beta2, "restarts": restarts, "seed": int(seed), "n_examples": int(n_examples)}
    if restart_images is not None:  # absent = every image, so earlier entries keep their keys
        params["restart_images"] = int(restart_images)
    out, entry = cache.get_or_compute("smia", params, compute, version=SMIA_VERSION, upstream=keys,
                                      command=f"medadv run smia -p profile {profile.name}",
                                      meta={"dataset": name, "profile": profile.name})
    return SMIAExperiment(dataset=name, domain=domain, stability_eps=stab_eps, beta2=beta2,
                          cache_keys=[*keys, entry.key], cached=entry.hit, **out)


def beta2_sweep(tm, profile: Profile, betas: Sequence[float], *, eps: float | None = None, seed: int = 0,
                n_images: int | None = None, restarts: int = 3, cache: Cache | None = None) -> pd.DataFrame:
    """SMIA's stabilisation weight ``beta2`` against accuracy under attack, spread and smoothness.

    For every ``beta2`` (0 is BIM exactly): the accuracy under SMIA at ``eps`` (no random start,
    the cached set of :func:`~medadv_lib.pipeline.adversarial_examples`), the mean over images of
    the std of the final cross-entropy over ``restarts`` random starts (seeds ``seed ..``), and
    the perturbation's mean total variation over eps and high-frequency fraction.

    Returns
    -------
    DataFrame
        One row per ``beta2``: ``beta2``, ``eps``, ``accuracy``, ``ce_std``, ``success_std``,
        ``tv_over_eps``, ``hf_fraction``, ``n``.
    """
    betas = [float(b) for b in betas]
    if not betas or any(not math.isfinite(b) or b < 0 for b in betas):
        raise ValueError(f"betas must be a non-empty list of finite weights >= 0, got {betas!r}.")
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 2:
        raise ValueError(f"restarts must be an int >= 2, got {restarts!r}.")
    cache = cache or Cache()
    n_images = n_images or profile.attack.curve_images
    eps = float(eps) if eps is not None else _middle_budget([float(e) for e in profile.attack.eps])
    sets = {b: adversarial_examples(tm, "smia", eps, profile, seed=seed, n_images=n_images, beta2=b, cache=cache)
            for b in betas}

    def compute():
        rows = []
        for b, adv in sets.items():
            ce, ok, _ = _restart_runs(tm, "smia", eps, adv["x"], adv["y"], steps=profile.attack.steps, seed=seed,
                                      restarts=restarts, batch_size=profile.attack.batch_size, beta2=b)
            stats = perturbation_stats(adv["x"], adv["x_adv"], eps)
            rows.append({"beta2": b, "eps": eps, "accuracy": 1.0 - float(adv["success"].float().mean()),
                         "ce_std": float(ce.std(0).mean()), "success_std": float(ok.std(0).mean()),
                         "tv_over_eps": float(stats["tv_over_eps"].mean()),
                         "hf_fraction": float(stats["hf_fraction"].mean()), "n": len(adv["y"])})
        return pd.DataFrame(rows)

    params = {"betas": betas, "eps": eps, "n_images": int(n_images), "restarts": restarts, "seed": int(seed),
              "steps": profile.attack.steps}
    frame, _ = cache.get_or_compute("smia_beta2", params, compute, version=SMIA_VERSION,
                                    upstream=[tm.cache.key, *(a["cache_key"] for a in sets.values())],
                                    command=f"medadv run smia -p profile {profile.name}",
                                    meta={"dataset": tm.dataset.name, "profile": profile.name})
    return frame


# ----------------------------------------------------------------------------------------------
# Verdicts for the prose
# ----------------------------------------------------------------------------------------------

def _by_attack(curve: pd.DataFrame, attack: str) -> pd.Series:
    part = curve[curve["attack"] == attack]
    if part.empty:
        raise ValueError(f"the curve has no rows for attack {attack!r}; it has {sorted(set(curve['attack']))}.")
    return part.set_index("eps")["accuracy"].sort_index()


def accuracy_verdict(curves: Mapping[str, pd.DataFrame], *, against: str = "pgd", tol: float = 1e-9) -> dict:
    """Where accuracy under SMIA is at most the accuracy under ``against`` at every budget.

    Parameters
    ----------
    curves : mapping name -> curve frame (:attr:`SMIAExperiment.curve`)
    against : str
        The attack SMIA is compared with.

    Returns
    -------
    dict
        ``holds`` (names where SMIA <= ``against`` at every budget), ``fails`` (the others),
        ``mean_gap`` (name -> mean over budgets of accuracy under SMIA minus under ``against``;
        negative: SMIA stronger) and ``text`` ("on 3 of 4 data sets (a, b, c)").
    """
    holds, fails, gap = [], [], {}
    for name, curve in curves.items():
        diff = _by_attack(curve, "smia") - _by_attack(curve, against)
        gap[name] = float(diff.mean())
        (holds if bool((diff <= tol).all()) else fails).append(name)
    text = f"on {len(holds)} of {len(curves)} data sets" + (f" ({', '.join(holds)})" if holds else "")
    return {"holds": holds, "fails": fails, "mean_gap": gap, "text": text}


def spread_verdict(spreads: Mapping[str, pd.DataFrame], column: str = "ce_std", *, against: str = "pgd") -> dict:
    """Where SMIA's restart spread (``column`` of :attr:`SMIAExperiment.spread`) is below ``against``'s.

    Returns
    -------
    dict
        ``smaller`` / ``not_smaller`` (names), ``ratio`` (name -> SMIA / ``against``; nan when
        ``against``'s spread is 0) and ``text`` ("smaller on 2 of 5 data sets").
    """
    smaller, other, ratio = [], [], {}
    for name, spread in spreads.items():
        s = spread.set_index("attack")[column]
        if "smia" not in s or against not in s:
            raise ValueError(f"{name}: the spread has no row for 'smia' or {against!r}.")
        ratio[name] = float(s["smia"] / s[against]) if s[against] > 0 else float("nan")
        (smaller if s["smia"] < s[against] else other).append(name)
    return {"smaller": smaller, "not_smaller": other, "ratio": ratio,
            "text": f"smaller on {len(smaller)} of {len(spreads)} data sets"}


def choose_beta2(sweep: pd.DataFrame, *, tol: float = 0.02) -> dict:
    """Pick SMIA's ``beta2`` from a :func:`beta2_sweep`: the strongest attack, then the steadiest, then the smallest.

    ``beta2 = 0`` is BIM exactly, the sweep's reference row, never the choice: the chapter compares
    SMIA with its stabilisation term against the usual attacks. Among the positive weights whose
    accuracy under attack is within ``tol`` (absolute) of the lowest, the one with the smallest
    restart spread of the final cross-entropy; ties go to the smaller weight. Accuracy first
    because it is the paper's headline claim; within noise of it, stability is SMIA's reason to
    exist. The text also says whether BIM (``beta2 = 0``) was as strong and as steady.

    Returns
    -------
    dict
        ``beta2`` (float), ``row`` (its row as a dict) and ``text`` (why, for the prose).
    """
    candidates = sweep[sweep["beta2"] > 0]
    if candidates.empty:
        raise ValueError("the sweep has no beta2 > 0; run beta2_sweep with at least one positive weight "
                         "(beta2 = 0 is BIM, the reference).")
    best = float(candidates["accuracy"].min())
    near = candidates[candidates["accuracy"] <= best + tol].sort_values(["ce_std", "beta2"])
    row = near.iloc[0].to_dict()
    text = (f"beta2 = {row['beta2']:g}: among the positive weights within {tol:.0%} of the lowest accuracy under "
            f"attack ({best:.0%}), it has the smallest spread of the final cross-entropy over restarts "
            f"({row['ce_std']:.3f})")
    bim = sweep[sweep["beta2"] == 0]
    if not bim.empty:
        b = bim.iloc[0]
        same = abs(float(b["accuracy"]) - float(row["accuracy"])) <= tol and float(b["ce_std"]) <= float(row["ce_std"])
        text += (f"; BIM (beta2 = 0) is {'as strong and as steady' if same else 'different'} here "
                 f"({float(b['accuracy']):.0%}, spread {float(b['ce_std']):.3f})")
    return {"beta2": float(row["beta2"]), "row": row, "text": text}


def detectability_verdict(results: pd.DataFrame, *, metric: str = "auroc", attack: str = "smia",
                          against: str = "pgd", margin: float = 0.02) -> dict:
    """Whether ``attack``'s AEs are easier, harder or as easy to detect as ``against``'s.

    ``results`` are :attr:`~medadv_lib.pipeline.DetectionBenchmark.results` rows (several data sets
    allowed) at one budget. The comparison is the mean over (data set, detector) of ``metric``
    for ``attack`` minus ``against``; within ``margin`` counts as "about as easy".

    Returns
    -------
    dict
        ``difference`` (float), ``word`` ("harder" / "easier" / "about as easy"), ``wins``
        (share of (data set, detector) pairs where ``attack`` is detected worse) and ``text``.
    """
    rows = results.dropna(subset=[metric])
    pivot = rows.pivot_table(index=["dataset", "detector"], columns="attack", values=metric)
    if attack not in pivot or against not in pivot:
        raise ValueError(f"results need rows for both {attack!r} and {against!r}; they have {list(pivot.columns)}.")
    pivot = pivot[[attack, against]].dropna()
    if pivot.empty:
        raise ValueError(f"no (dataset, detector) pair has a {metric} for both {attack!r} and {against!r}.")
    diff = float((pivot[attack] - pivot[against]).mean())
    word = "harder" if diff < -margin else ("easier" if diff > margin else "about as easy")
    wins = float((pivot[attack] < pivot[against]).mean())
    text = (f"{word} to detect than {against.upper()}'s (mean {metric.upper()} difference {diff:+.3f} over "
            f"{len(pivot)} detector and data-set pairs)")
    return {"difference": diff, "word": word, "wins": wins, "text": text}
