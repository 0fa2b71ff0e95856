"""A cached detector benchmark: every detector against several attacks and budgets on one model.

This is glue between the other cached stages of :mod:`medadv_lib.pipeline` (trained models and
adversarial sets) and :class:`~medadv_lib.metrics.DetectionProtocol`, the pure scoring protocol
(moved here from ``metrics/`` so that ``metrics`` does not import the stage layer). One call
covers one data set:

* the adversarial sets come from :func:`medadv_lib.pipeline.adversarial_examples` (cached): the
  same seeded subset of correctly classified test images is attacked by every (attack, eps);
* the protocol is prepared **once** (clean training features, the noisy set, the 70/30 split)
  and shared by every (attack, eps), and only when some result is not cached yet;
* each (attack, eps) result (the tidy table and the held-out scores) is itself a cache stage
  ``detection``, keyed by the adversarial set, the detectors' hyper-parameters and the protocol
  settings, so a rerun only reads tables.

Like the other stages, it receives the :class:`~medadv_lib.config.Profile` only to hand it
to :func:`~medadv_lib.pipeline.adversarial_examples`; every setting of its own is an argument.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..cache import Cache
from ..data import stratified_subset
from ..metrics.protocol import DetectionProtocol, result_columns
from .adversarial import adversarial_examples

log = logging.getLogger(__name__)

#: Bump when the protocol or a detector changes its numbers (invalidates cached ``detection`` stages).
DETECTION_VERSION = "1"


def benchmark_runs(attacks: Sequence[str], eps: Sequence[float],
                   sweep_attacks: Sequence[str] | None = None) -> list[tuple[str, float]]:
    """The (attack, eps) pairs of a benchmark.

    Every attack in ``attacks`` runs at the largest eps; the attacks in ``sweep_attacks`` (default:
    all of ``attacks``) run at every eps. Order: attacks as given, budgets ascending.

    Examples
    --------
    >>> benchmark_runs(["bim", "pgd"], [2 / 256, 8 / 256], sweep_attacks=["bim"])
    [('bim', 0.0078125), ('bim', 0.03125), ('pgd', 0.03125)]
    """
    attacks = list(dict.fromkeys(a.lower() for a in attacks))
    if not attacks:
        raise ValueError("attacks is empty; name at least one attack, e.g. ['bim'].")
    budgets = sorted({float(e) for e in eps})
    if not budgets:
        raise ValueError("eps is empty; give at least one budget.")
    sweep = set(attacks if sweep_attacks is None else (a.lower() for a in sweep_attacks))
    unknown = sorted(sweep - set(attacks))
    if unknown:
        raise ValueError(f"sweep_attacks {unknown} are not in attacks {attacks}.")
    return [(a, e) for a in attacks for e in (budgets if a in sweep else budgets[-1:])]


def detector_spec(detectors: Mapping) -> dict:
    """JSON-able description of unfitted detectors (class and hyper-parameters), for cache keys."""
    spec = {}
    for name, det in detectors.items():
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in det.get_params(deep=False).items()}
        spec[str(name)] = {"class": type(det).__name__, **params}
    return spec


@dataclass
class DetectionBenchmark:
    """Results of :func:`detection_benchmark` for one data set.

    Attributes
    ----------
    results : pandas.DataFrame
        One row per (detector, attack, eps): :func:`~medadv_lib.metrics.result_columns` plus
        ``eps_k`` (eps x 256) and ``cached`` (whether the row was read from the cache).
    scores : pandas.DataFrame
        Held-out scores: detector, kind (clean/noisy/adv), index, is_adv, score, plus dataset,
        attack, eps.
    cache_keys : list of str
        Keys of the model, adversarial and detection stages used.
    prepare_seconds : float
        Time spent preparing the protocol in this call (0 when every result was cached).
    """

    results: pd.DataFrame
    scores: pd.DataFrame
    cache_keys: list[str] = field(default_factory=list)
    prepare_seconds: float = 0.0


def detection_benchmark(tm, profile, runs: Iterable[tuple[str, float]], detectors: Mapping, *, n_images: int,
                        n_reference: int | None = None, seed: int = 0, targeted: bool = True,
                        noise: float = 2 / 256, split: float = 0.7, n_boot: int = 1000, ci: float = 0.95,
                        tnr: float = 0.9, batch_size: int = 256, cache: Cache | None = None) -> DetectionBenchmark:
    """Evaluate ``detectors`` against each (attack, eps) of ``runs`` on one trained model, cached.

    Parameters
    ----------
    tm : medadv_lib.pipeline.TrainedModel
    profile : medadv_lib.config.Profile
        Handed to :func:`~medadv_lib.pipeline.adversarial_examples` (attack steps and batch size).
    runs : iterable of (str, float)
        Attack names (:func:`~medadv_lib.attacks.get_attack`) and L-infinity budgets; see
        :func:`benchmark_runs`.
    detectors : dict[str, BaseDetector]
        Unfitted detectors (cloned by the protocol for every run).
    n_images : int
        Correctly classified test images attacked (a seeded, stratified subset; all of them when
        fewer are correct).
    n_reference : int, optional
        Clean training images (a seeded, stratified subset) whose features fit the class
        statistics; None uses the model's whole training subset.
    seed : int
        Seeds the image subsets, the attacks (random start, targets), the protocol and the
        detectors' own randomness where they take it from the caller.
    targeted : bool, default True
        Targeted attacks as in the HFC work: the other class for two classes, a seeded random
        other class for more; success then means reaching the target.
    noise, split, n_boot, ci, tnr, batch_size
        As in :class:`~medadv_lib.metrics.DetectionProtocol`.
    cache : Cache, optional

    Returns
    -------
    DetectionBenchmark
    """
    cache = cache or Cache()
    name = tm.dataset.name
    ref_idx = stratified_subset(tm.train.labels, n_reference, seed)
    settings = {"detectors": detector_spec(detectors), "noise": float(noise), "split": float(split), "seed": int(seed),
                "n_boot": int(n_boot), "ci": float(ci), "tnr": float(tnr), "only_successful": True,
                "n_reference": None if n_reference is None else int(n_reference), "n_train": len(tm.train),
                "targeted": bool(targeted)}
    state: dict = {"protocol": None, "x": None, "seconds": 0.0}

    def protocol_for(x, y):
        if state["protocol"] is None or not torch.equal(state["x"], x):
            start = time.perf_counter()
            ref = tm.train.subset(ref_idx)
            protocol = DetectionProtocol(tm.model, detectors, noise=noise, split=split, seed=seed, n_boot=n_boot,
                                         ci=ci, tnr=tnr, batch_size=batch_size)
            state["protocol"] = protocol.prepare(ref.float(), ref.labels, x, y)
            state["x"] = x
            state["seconds"] += time.perf_counter() - start
            log.info("%s: protocol prepared in %.1f s (%d reference images, %d kept test images)", name,
                     time.perf_counter() - start, len(ref_idx), protocol.kept_.size)
        return state["protocol"]

    results, scores, keys = [], [], [tm.cache.key]
    for attack, eps in runs:
        adv = adversarial_examples(tm, attack, eps, profile, seed=seed, targeted=targeted, n_images=n_images,
                                   correct_only=True, cache=cache)
        keys.append(adv["cache_key"])

        def compute(adv=adv, attack=attack, eps=eps):
            protocol = protocol_for(adv["x"], adv["y"])
            start = time.perf_counter()
            table = protocol.evaluate(adv["x_adv"], attack_name=attack, dataset=name, eps=float(eps),
                                      targets=adv["target"] if targeted else None)
            log.info("%s %s eps=%.4f: detectors evaluated in %.1f s", name, attack, eps, time.perf_counter() - start)
            return {"results": table, "scores": protocol.scores_.copy()}

        payload, entry = cache.get_or_compute(
            "detection", {**settings, "attack": attack, "eps": float(eps)}, compute, version=DETECTION_VERSION,
            upstream=[adv["cache_key"]], command=f"medadv run detection -p profile {profile.name}",
            meta={"dataset": name, "profile": profile.name})
        keys.append(entry.key)
        table = payload["results"].copy()
        table["eps_k"] = np.round(table["eps"].astype(float) * 256, 6)
        table["cached"] = entry.hit
        results.append(table)
        s = payload["scores"].copy()
        s["dataset"], s["attack"], s["eps"] = name, attack, float(eps)
        if len(s):  # a run without AEs has no scores; its empty object-typed frame would make is_adv object
            scores.append(s)
    columns = result_columns(tnr) + ["eps_k", "cached"]
    frame = pd.concat(results, ignore_index=True)[columns] if results else pd.DataFrame(columns=columns)
    return DetectionBenchmark(results=frame, scores=pd.concat(scores, ignore_index=True) if scores else pd.DataFrame(),
                              cache_keys=keys, prepare_seconds=state["seconds"])
